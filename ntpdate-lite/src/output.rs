//! Printing a [`Summary`]: the ntpdate lines and the ctime line by default, one of the
//! `--format`s, the -v table, or one JSON object.

use std::io::{self, Write};

use ntp_proto::packet::LeapIndicator;
use ntp_proto::query::{AddressReport, Reply};
use ntp_proto::sample::PHI;
use ntp_proto::select::Verdict;
use ntp_proto::{NtpDuration, NtpTimestamp, ReplyLimits};
use serde_json::{Value, json};

use crate::civil::Civil;
use crate::cli::Format;
use crate::clock::{Action, STEP_THRESHOLD};
use crate::report::{Entry, Outcome, Summary};

/// How to print.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// `--format`, or `None` for the default (ntpdate lines, then the ctime line).
    pub format: Option<Format>,
    /// Dates in UTC rather than local time.
    pub utc: bool,
    /// Print every exchange.
    pub verbose: bool,
}

/// Seconds of a duration, for printing.
fn secs(d: NtpDuration) -> f64 {
    d.to_seconds_f64()
}

/// `server 127.0.0.1, stratum 2, offset +0.000123, delay 0.000456`, as ntpdate -q prints it.
fn server_line(entry: &Entry, best: &Reply) -> String {
    format!(
        "server {}, stratum {}, offset {:+.6}, delay {:.6}",
        entry.address_text(),
        best.packet.stratum.get(),
        secs(best.sample.offset),
        secs(best.sample.delay)
    )
}

/// Text output: results on `out`; warnings, failures and the -v table on `err`.
pub fn print_text(
    summary: &Summary,
    style: Style,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    warn_failures(summary, err)?;
    if style.verbose {
        print_table(summary, style, err)?;
    }
    let lines_wanted = matches!(style.format, None | Some(Format::Ntpdate));
    if lines_wanted {
        for entry in &summary.entries {
            if let Some(best) = entry.best() {
                writeln!(out, "{}", server_line(entry, best))?;
            }
        }
    }
    if let Some(reason) = summary.failure() {
        return writeln!(err, "ntpdate-lite: {reason}");
    }
    let Some(line) = result_line(summary, style) else {
        return Ok(());
    };
    writeln!(out, "{line}")?;
    if let Some(note) = leap_note(summary) {
        writeln!(err, "ntpdate-lite: {note}")?;
    }
    Ok(())
}

/// The system peer's leap indicator, if there is one.
fn peer_leap(summary: &Summary) -> Option<LeapIndicator> {
    summary.system_peer().map(|(_, best)| best.packet.leap)
}

/// What to say when the system peer announces a leap second.
fn leap_note(summary: &Summary) -> Option<&'static str> {
    match peer_leap(summary)? {
        LeapIndicator::InsertSecond => Some(
            "leap second pending: the server announces 23:59:60 at the end of this UTC day (add-leap)",
        ),
        LeapIndicator::DeleteSecond => Some(
            "leap second pending: the server announces that 23:59:59 is skipped at the end of this UTC day (del-leap)",
        ),
        _ => None,
    }
}

/// The final line of the chosen format, from the system peer and the combined offset.
fn result_line(summary: &Summary, style: Style) -> Option<String> {
    let combined = summary.combined?;
    let (entry, best) = summary.system_peer()?;
    let tx = Civil::at(
        summary.unix_nanos(best.packet.transmit_timestamp)?,
        style.utc,
    );
    let offset = secs(combined.offset);
    Some(match style.format {
        None | Some(Format::Ctime) => tx.ctime(),
        Some(Format::Iso) => tx.rfc3339(),
        Some(Format::Unix) => format!(
            "{:.6}",
            summary.unix_nanos(best.packet.transmit_timestamp)? as f64 / 1e9
        ),
        Some(Format::Ntpdate) => {
            let now = Civil::at(summary.unix_nanos(best.t4)?, style.utc);
            let verb = if combined.offset.abs() >= STEP_THRESHOLD {
                "step"
            } else {
                "adjust"
            };
            format!(
                "{} ntpdate-lite[{}]: {verb} time server {} offset {offset:.6} sec",
                now.ntpdate_stamp(),
                std::process::id(),
                entry.address_text()
            )
        }
        Some(Format::Sntp) => sntp_line(entry, best, offset, &tx),
    })
}

/// sntp / ntpdig: `2025-07-30 12:34:56.123456 (+0200) +0.000123 +/- 0.000456 name addr s2 no-leap`.
fn sntp_line(entry: &Entry, best: &Reply, offset: f64, tx: &Civil) -> String {
    let address = entry.address_text();
    let host = match entry.host_name() {
        Some(name) => format!("{name} {address}"),
        None => address,
    };
    format!(
        "{} {offset:+.6} +/- {:.6} {host} s{} {}",
        tx.sntp_stamp(),
        sntp_error(best),
        best.packet.stratum.get(),
        leap_text(best.packet.leap)
    )
}

/// The `+/-` figure of sntp and ntpdig, as ntpdig computes it (`synchd()` in ntpsec's
/// ntp/packet.py, "synchronization distance"): half the round-trip delay, plus 15 ppm (PHI) of
/// the time from T1 to T4, plus the server's precision. Unlike the root distance (in `--json`), it
/// leaves out the server's own root delay and root dispersion.
fn sntp_error(reply: &Reply) -> f64 {
    let round_trip = secs(reply.t4 - reply.t1);
    let delay = round_trip - secs(reply.packet.transmit_timestamp - reply.packet.receive_timestamp);
    let precision = 2f64.powi(i32::from(reply.packet.precision.get()));
    (delay / 2.0 + PHI * round_trip + precision).abs()
}

fn leap_text(leap: LeapIndicator) -> &'static str {
    match leap {
        LeapIndicator::NoWarning => "no-leap",
        LeapIndicator::InsertSecond => "add-leap",
        LeapIndicator::DeleteSecond => "del-leap",
        LeapIndicator::Unsynchronized => "unsync",
    }
}

/// One warning per address that failed or was voted out.
fn warn_failures(summary: &Summary, err: &mut impl Write) -> io::Result<()> {
    for entry in &summary.entries {
        let why = match &entry.outcome {
            Outcome::Failed(why) => why.as_str(),
            Outcome::Answered(Verdict::Falseticker) => {
                "falseticker: disagrees with the majority, not used"
            }
            Outcome::Answered(_) => continue,
        };
        writeln!(err, "ntpdate-lite: server {}: {why}", place(entry))?;
    }
    Ok(())
}

/// `127.0.0.1 port 123` or `::1 port 4123 (localhost)`.
fn place(entry: &Entry) -> String {
    let address = entry.address_text();
    match entry.address {
        Some(_) => match entry.host_name() {
            Some(name) => format!("{address} port {} ({name})", entry.port),
            None => format!("{address} port {}", entry.port),
        },
        None => entry.name.clone(),
    }
}

/// The -v table: every exchange of every address.
fn print_table(summary: &Summary, style: Style, err: &mut impl Write) -> io::Result<()> {
    for entry in summary.entries.iter().filter(|e| e.address.is_some()) {
        let verdict = match entry.outcome {
            Outcome::Answered(v) => verdict_text(v),
            Outcome::Failed(_) => "no valid reply",
        };
        writeln!(err, "{}: {verdict}", place(entry))?;
        writeln!(
            err,
            "  #  sent                        offset      delay       dispersion  result"
        )?;
        for (i, exchange) in entry.report.exchanges.iter().enumerate() {
            let sent = summary
                .unix_nanos(exchange.sent.t1)
                .map_or_else(|| "-".to_owned(), |n| Civil::at(n, style.utc).rfc3339());
            let row = match &exchange.result {
                Ok(r) => format!(
                    "{:+.6}   {:.6}    {:.6}    ok, stratum {}, {}",
                    secs(r.sample.offset),
                    secs(r.sample.delay),
                    secs(r.sample.dispersion),
                    r.packet.stratum.get(),
                    leap_text(r.packet.leap)
                ),
                Err(e) => format!("{:38}{e}", "-"),
            };
            writeln!(err, "  {:<2} {sent:27} {row}", i + 1)?;
        }
    }
    Ok(())
}

fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::SystemPeer => "system peer",
        Verdict::Survivor => "survivor",
        Verdict::Outlier => "outlier (agrees, pruned by clustering)",
        Verdict::Falseticker => "falseticker",
    }
}

fn verdict_key(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::SystemPeer => "system_peer",
        Verdict::Survivor => "survivor",
        Verdict::Outlier => "outlier",
        Verdict::Falseticker => "falseticker",
    }
}

/// The one JSON object printed with --json, on success and on failure.
pub fn to_json(
    summary: &Summary,
    limits: &ReplyLimits,
    verbose: bool,
    adjusted: Option<Action>,
    clock_error: Option<&str>,
) -> Value {
    let peer = summary.system_peer();
    let time = peer.and_then(|(_, best)| rfc3339_utc(summary, best.packet.transmit_timestamp));
    let error = clock_error.map(str::to_owned).or_else(|| summary.failure());
    let servers: Vec<Value> = summary
        .entries
        .iter()
        .map(|e| server_json(summary, e, limits, verbose))
        .collect();
    json!({
        "offset": summary.combined.map(|c| secs(c.offset)),
        "jitter": summary.combined.map(|c| secs(c.jitter)),
        "time": time,
        "system_peer": peer.map(|(e, _)| e.address_text()),
        "leap": peer_leap(summary).map(leap_text),
        "leap_pending": leap_note(summary).is_some(),
        "agree": summary.truechimers,
        "min_agree": summary.min_agree,
        "adjusted": adjusted.map(|a| match a { Action::Step(_) => "step", Action::Slew(_) => "slew" }),
        "error": error,
        "servers": servers,
    })
}

fn server_json(summary: &Summary, entry: &Entry, limits: &ReplyLimits, verbose: bool) -> Value {
    let mut object = json!({
        "name": entry.name,
        "address": entry.address.map(|a| a.ip().to_string()),
        "port": entry.port,
    });
    let fields = match (&entry.outcome, entry.best()) {
        (Outcome::Answered(verdict), Some(best)) => {
            reply_json(summary, entry, best, *verdict, limits)
        }
        (Outcome::Failed(why), _) => json!({ "error": why }),
        (Outcome::Answered(_), None) => json!({ "error": "no valid reply" }),
    };
    merge(&mut object, fields);
    if verbose {
        merge(
            &mut object,
            json!({ "exchanges": exchanges_json(summary, &entry.report) }),
        );
    }
    object
}

/// The best sample under ntplib's field names, plus ours.
fn reply_json(
    summary: &Summary,
    entry: &Entry,
    best: &Reply,
    verdict: Verdict,
    limits: &ReplyLimits,
) -> Value {
    let p = &best.packet;
    let unix = |ts: NtpTimestamp| summary.unix_nanos(ts).map(|n| n as f64 / 1e9);
    let over_ipv6 = entry.address.is_some_and(|a| a.is_ipv6());
    json!({
        "offset": secs(best.sample.offset),
        "delay": secs(best.sample.delay),
        "dispersion": secs(best.sample.dispersion),
        "jitter": secs(entry.report.jitter(limits)),
        "root_distance": secs(best.root_distance()),
        "stratum": p.stratum.get(),
        "leap": p.leap.to_bits(),
        "version": p.version.get(),
        "mode": p.mode.get(),
        "poll": p.poll.get(),
        "precision": p.precision.get(),
        "root_delay": p.root_delay.to_seconds_f64(),
        "root_dispersion": p.root_dispersion.to_seconds_f64(),
        "ref_id": p.reference_id.display(p.stratum, over_ipv6),
        "ref_id_hex": p.reference_id.hex(),
        "ref_time": unix(p.reference_timestamp),
        "orig_time": unix(best.t1),
        "recv_time": unix(p.receive_timestamp),
        "tx_time": unix(p.transmit_timestamp),
        "dest_time": unix(best.t4),
        "time": rfc3339_utc(summary, p.transmit_timestamp),
        "ref_time_utc": rfc3339_utc(summary, p.reference_timestamp),
        "samples": entry.report.valid().count(),
        "selected": verdict.is_survivor(),
        "verdict": verdict_key(verdict),
    })
}

fn exchanges_json(summary: &Summary, report: &AddressReport) -> Vec<Value> {
    report
        .exchanges
        .iter()
        .map(|x| match &x.result {
            Ok(r) => json!({
                "sent": rfc3339_utc(summary, x.sent.t1),
                "t1": if x.kernel_t1 { "kernel" } else { "user" },
                "offset": secs(r.sample.offset),
                "delay": secs(r.sample.delay),
                "dispersion": secs(r.sample.dispersion),
            }),
            Err(e) => json!({
                "sent": rfc3339_utc(summary, x.sent.t1),
                "error": e.to_string(),
            }),
        })
        .collect()
}

fn rfc3339_utc(summary: &Summary, ts: NtpTimestamp) -> Option<String> {
    Some(Civil::at(summary.unix_nanos(ts)?, true).rfc3339())
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

/// The JSON for a run that never started (usage error, missing capability).
pub fn early_failure_json(error: &str) -> Value {
    json!({ "offset": null, "servers": [], "error": error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{report, summary};
    use std::time::SystemTime;

    fn text(s: &Summary, format: Option<Format>) -> (String, String) {
        let style = Style {
            format,
            utc: true,
            verbose: false,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        print_text(s, style, &mut out, &mut err).expect("write to memory");
        (
            String::from_utf8(out).expect("utf8"),
            String::from_utf8(err).expect("utf8"),
        )
    }

    #[test]
    fn default_output_is_the_ntpdate_lines_then_ctime() {
        // T1 = 2023-11-14 22:13:20 UTC (Unix 1_700_000_000); the servers are 5 and 6 ms ahead.
        let t1 = NtpTimestamp::from_parts(1_700_000_000 + 2_208_988_800, 0);
        let s = summary(vec![report(t1, 5), report(t1, 6)], SystemTime::now());
        let (out, err) = text(&s, None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "server 10.0.0.0, stratum 2, offset +0.005000, delay 0.002000"
        );
        assert_eq!(
            lines[1],
            "server 10.0.0.1, stratum 2, offset +0.006000, delay 0.002000"
        );
        assert!(lines[2].starts_with("Tue Nov 14 22:13:20"), "{}", lines[2]);
        assert!(lines[2].ends_with(" 2023"));
        assert!(err.is_empty(), "{err}");
        let (out, _) = text(&s, Some(Format::Unix));
        assert!(out.starts_with("1700000000.00"), "{out}");
    }

    #[test]
    fn failures_go_to_stderr_with_the_address() {
        let t1 = NtpTimestamp::from_parts(1_700_000_000 + 2_208_988_800, 0);
        let s = summary(vec![report(t1, 0), report(t1, 3000)], SystemTime::now());
        let (out, err) = text(&s, None);
        assert_eq!(out.lines().count(), 2, "no ctime line without agreement");
        assert!(err.contains("no majority"), "{err}");
    }

    #[test]
    fn the_sntp_error_is_ntpdigs_synchronization_distance() {
        use ntp_proto::{Exchange, Mode, NtpShort, Packet, PollInterval, Precision, Version};
        // T1 = 0, T2 = 10 ms, T3 = 12 ms, T4 = 30 ms (local); precision 2^-6; a root delay and
        // dispersion of 1 s each, which ntpdig's figure leaves out.
        let ms = |n: i128| NtpDuration::from_nanos(n * 1_000_000);
        let t1 = NtpTimestamp::from_parts(3_900_000_000, 0);
        let (t2, t3, t4) = (t1 + ms(10), t1 + ms(12), t1 + ms(30));
        let mut packet = Packet::client_request(Version::V4, PollInterval::new(6), t3);
        packet.mode = Mode::SERVER;
        packet.precision = Precision::new(-6);
        packet.receive_timestamp = t2;
        packet.root_delay = NtpShort::from_duration(NtpDuration::from_seconds(1));
        packet.root_dispersion = NtpShort::from_duration(NtpDuration::from_seconds(1));
        let exchange = Exchange { t1, t2, t3, t4 };
        let reply = Reply {
            packet,
            sample: exchange.sample(packet.precision, Precision::new(-20)),
            t1,
            t4,
        };
        // delay 28 ms: 14 ms + 15e-6 * 30 ms + 1/64 s, as ntpdig's abs(delta/2 + epsilon).
        let expected = 0.014 + 15e-6 * 0.030 + 0.015_625;
        assert!(
            (sntp_error(&reply) - expected).abs() < 1e-9,
            "{}",
            sntp_error(&reply)
        );
        assert!(
            secs(reply.root_distance()) > 1.0,
            "the root distance counts the root"
        );
    }

    #[test]
    fn json_has_the_contract_fields() {
        let t1 = NtpTimestamp::from_parts(1_700_000_000 + 2_208_988_800, 0);
        let s = summary(vec![report(t1, 5)], SystemTime::now());
        let v = to_json(&s, &ReplyLimits::default(), false, None, None);
        assert!((v["offset"].as_f64().expect("offset") - 0.005).abs() < 1e-6);
        let server = &v["servers"][0];
        assert_eq!(server["address"], "10.0.0.0");
        assert_eq!(server["port"], 123);
        assert_eq!(server["selected"], true);
        assert_eq!(server["ref_id"], "0.0.0.0");
        assert!((server["orig_time"].as_f64().expect("t1") - 1_700_000_000.0).abs() < 1e-3);
        assert_eq!(
            server["ref_time"],
            Value::Null,
            "zero reference time is unknown"
        );
        assert!(v["error"].is_null());
    }
}
