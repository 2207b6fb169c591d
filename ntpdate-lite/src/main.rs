//! ntpdate-lite: ask NTP servers for the time, once, safely.
//!
//! A thin shell over `ntp_proto::query`: parse the command line, resolve the names, run one
//! [`ntp_proto::query::AddressQuery`] per address, each on its own socket, select among the
//! answers with ntp-proto's intersection algorithm, print, and only if asked (-b, -B, --set) and
//! allowed (CAP_SYS_TIME) change the clock.

mod civil;
mod cli;
mod clock;
mod net;
mod nts;
mod output;
mod report;

use std::ffi::OsString;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use ntp_proto::query::QueryConfig;
use ntp_proto::{ReplyLimits, Version};

use crate::cli::{Adjust, Cli};
use crate::clock::Action;
use crate::net::{Family, Resolution};
use crate::output::Style;
use crate::report::{Status, Summary};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => run(&cli).into(),
        Err(e) => usage_error(&e, wants_json(&args)),
    }
}

/// Prints clap's message (help and version go to stdout and exit 0); a real usage error exits 2,
/// with a JSON object on stdout if --json was among the arguments.
fn usage_error(e: &clap::Error, json: bool) -> ExitCode {
    let code = e.exit_code();
    if code != 0 && json {
        let text = e.to_string();
        let first_line = text.lines().next().unwrap_or_default();
        let first_line = first_line.strip_prefix("error: ").unwrap_or(first_line);
        print_json(&output::early_failure_json(first_line));
    }
    let _ = e.print();
    ExitCode::from(u8::try_from(code).unwrap_or(Status::Usage as u8))
}

/// True if `-j` or `--json` appears before any `--`, alone or in a cluster of short flags.
fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .any(|a| {
            a == "--json"
                || (a.starts_with('-')
                    && !a.starts_with("--")
                    && a[1..].chars().all(|c| c.is_ascii_alphanumeric())
                    && a.contains('j'))
        })
}

fn run(cli: &Cli) -> Status {
    let adjust = cli.adjust();
    if adjust != Adjust::None {
        // Checked before any name is resolved or packet sent: a run that cannot do what it was
        // asked fails at once instead of after the queries.
        if let Err(e) = clock::require_cap_sys_time() {
            report_early_failure(cli, &e.to_string());
            return Status::ClockFailed;
        }
    }
    let key = match load_key(cli) {
        Ok(key) => key,
        Err(message) => {
            report_early_failure(cli, &message);
            return Status::Usage;
        }
    };
    let config = QueryConfig {
        version: Version::new(cli.ntp_version),
        samples: cli.samples,
        timeout: cli.timeout,
        gap: cli.gap,
        limits: ReplyLimits::default(),
        key,
    };
    let family = match (cli.ipv4, cli.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    };
    let (mut resolutions, sessions) = if cli.nts {
        nts::exchange_all(&cli.servers, cli.nts_ca.as_deref())
    } else {
        let resolutions = net::resolve_all(&cli.servers, cli.port, family);
        (resolutions, std::collections::HashMap::new())
    };
    let addresses = distinct_addresses(&mut resolutions);
    let reports = net::query_all(&addresses, config, sessions);
    let summary = Summary::new(resolutions, reports, &config.limits, cli.min_agree as usize);
    finish(cli, &summary, &config.limits)
}

/// The key `-a ID` names in `-k FILE`, if given: a file others can read or change, one that does
/// not parse, or an ID it lacks is an error that says what to do.
fn load_key(cli: &Cli) -> Result<Option<ntp_proto::SymmetricKey>, String> {
    use std::os::unix::fs::MetadataExt as _;
    let (Some(path), Some(id)) = (&cli.key_file, cli.key) else {
        return Ok(None);
    };
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("keys file {shown}: {e}"))?;
    let mode = file
        .metadata()
        .map_err(|e| format!("keys file {shown}: {e}"))?
        .mode();
    if mode & 0o066 != 0 {
        return Err(format!(
            "keys file {shown}: mode {:03o} lets group or others read or write the keys; run `chmod 600 {shown}`",
            mode & 0o777
        ));
    }
    let text = io::read_to_string(file).map_err(|e| format!("keys file {shown}: {e}"))?;
    let keys = ntp_proto::Keys::parse(&text).map_err(|e| format!("keys file {shown}: {e}"))?;
    keys.get(ntp_proto::KeyId(id))
        .copied()
        .map(Some)
        .ok_or_else(|| format!("keys file {shown} has no key {id}; check -a"))
}

/// Every address to query, once: an address that an earlier argument already gave is dropped, so
/// that one server cannot vote twice in the selection.
fn distinct_addresses(resolutions: &mut [Resolution]) -> Vec<SocketAddr> {
    let mut all: Vec<SocketAddr> = Vec::new();
    for resolution in resolutions {
        if let Ok(addresses) = &mut resolution.addresses {
            addresses.retain(|a| !all.contains(a));
            all.extend(addresses.iter().copied());
        }
    }
    all
}

/// Changes the clock if asked and the result allows, prints, and returns the exit status.
fn finish(cli: &Cli, summary: &Summary, limits: &ReplyLimits) -> Status {
    let mut status = summary.status();
    let action = match (status, summary.combined) {
        (Status::Ok, Some(combined)) => clock::choose(cli.adjust(), combined.offset),
        _ => None,
    };
    let clock_error = action
        .and_then(|a| clock::apply(a).err())
        .map(|e| e.to_string());
    if clock_error.is_some() {
        status = Status::ClockFailed;
    }
    let adjusted = action.filter(|_| clock_error.is_none());
    if cli.json {
        let value = output::to_json(
            summary,
            limits,
            cli.verbose,
            adjusted,
            clock_error.as_deref(),
        );
        print_json(&value);
        return status;
    }
    let style = Style {
        format: cli.format,
        utc: cli.utc,
        verbose: cli.verbose,
    };
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let _ = output::print_text(summary, style, &mut out, &mut err);
    let _ = out.flush();
    match (adjusted, clock_error) {
        (Some(Action::Step(d)), _) => eprintln!("ntpdate-lite: stepped the clock by {d}"),
        (Some(Action::Slew(d)), _) => eprintln!("ntpdate-lite: slewing the clock by {d}"),
        (None, Some(e)) => eprintln!("ntpdate-lite: {e}"),
        (None, None) => {}
    }
    status
}

fn report_early_failure(cli: &Cli, message: &str) {
    if cli.json {
        print_json(&output::early_failure_json(message));
    }
    eprintln!("ntpdate-lite: {message}");
}

fn print_json(value: &serde_json::Value) {
    let mut out = io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, value);
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn json_is_spotted_in_raw_arguments() {
        assert!(wants_json(&args(&["x", "--json", "-q", "-b"])));
        assert!(wants_json(&args(&["x", "-qj", "h"])));
        assert!(!wants_json(&args(&["x", "-q", "h"])));
        assert!(!wants_json(&args(&["x", "--", "-j"])));
        assert!(!wants_json(&args(&["x", "--jitter"])));
    }

    #[test]
    fn an_address_is_queried_once() {
        let sa = |s: &str| s.parse::<SocketAddr>().expect("addr");
        let mut resolutions = vec![
            Resolution {
                name: "a".into(),
                port: 123,
                addresses: Ok(vec![sa("127.0.0.1:123"), sa("[::1]:123")]),
            },
            Resolution {
                name: "127.0.0.1".into(),
                port: 123,
                addresses: Ok(vec![sa("127.0.0.1:123")]),
            },
        ];
        let all = distinct_addresses(&mut resolutions);
        assert_eq!(all, vec![sa("127.0.0.1:123"), sa("[::1]:123")]);
        assert!(resolutions[1].addresses.as_ref().expect("ok").is_empty());
    }
}
