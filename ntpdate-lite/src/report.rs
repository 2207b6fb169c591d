//! What a run found: one entry per queried address (or per name that did not resolve), the
//! selection's verdicts, and the exit status they imply.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::SystemTime;

use ntp_proto::query::{AddressReport, Reply, select_reports};
use ntp_proto::select::{Combined, Verdict};
use ntp_proto::{NtpTimestamp, ReplyLimits};

use crate::cli::Host;
use crate::net::Resolution;

/// The exit statuses of the contract.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    /// At least one usable reply and enough agreement.
    Ok = 0,
    /// No usable reply from any address.
    NoUsableReply = 1,
    /// Bad command line.
    Usage = 2,
    /// No server name resolved.
    Unresolved = 3,
    /// The clock could not or may not be changed.
    ClockFailed = 4,
    /// Not enough servers agree.
    Disagree = 5,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        ExitCode::from(status as u8)
    }
}

/// How one address or name fared.
#[derive(Debug)]
pub enum Outcome {
    /// No valid reply (or no address): why.
    Failed(String),
    /// At least one valid reply, and what the selection made of it.
    Answered(Verdict),
}

/// One line of the result: a server argument's address.
#[derive(Debug)]
pub struct Entry {
    /// The server argument as given.
    pub name: String,
    /// The address queried, if the name resolved.
    pub address: Option<SocketAddr>,
    /// The port queried.
    pub port: u16,
    /// What happened.
    pub outcome: Outcome,
    /// Every exchange (none for names that did not resolve).
    pub report: AddressReport,
}

impl Entry {
    /// The best valid reply, if any.
    pub fn best(&self) -> Option<&Reply> {
        match self.outcome {
            Outcome::Answered(_) => self.report.best(),
            Outcome::Failed(_) => None,
        }
    }

    /// The host name of the argument, without its port; `None` for an address literal.
    pub fn host_name(&self) -> Option<String> {
        match crate::cli::parse_server(&self.name).ok()?.host {
            Host::Name(name) => Some(name),
            Host::Address(_) => None,
        }
    }

    /// The address as text, or the name when it never resolved.
    pub fn address_text(&self) -> String {
        self.address
            .map_or_else(|| self.name.clone(), |a| a.ip().to_string())
    }
}

/// Everything a run found.
#[derive(Debug)]
pub struct Summary {
    /// In argument order, each name's addresses in resolver order.
    pub entries: Vec<Entry>,
    /// The survivors' combined estimate; `system_peer` indexes `entries`.
    pub combined: Option<Combined>,
    /// How many addresses agreed with the majority.
    pub truechimers: usize,
    /// The --min-agree asked for.
    pub min_agree: usize,
    /// True when no name resolved.
    pub nothing_resolved: bool,
    /// The local clock when the answers were in: the era pivot for turning NTP timestamps into
    /// dates (RFC 5905 section 6), so that 2036 and later print right.
    pub pivot: SystemTime,
}

impl Summary {
    /// Builds the summary from the resolutions and the reports of the resolved addresses (in the
    /// order the resolutions list them).
    pub fn new(
        resolutions: Vec<Resolution>,
        reports: Vec<AddressReport>,
        limits: &ReplyLimits,
        min_agree: usize,
    ) -> Self {
        let selection = select_reports(&reports, limits, min_agree);
        let nothing_resolved = resolutions.iter().all(|r| r.addresses.is_err());
        let mut reports = reports.into_iter().zip(selection.verdicts);
        let mut entries = Vec::new();
        let mut report_to_entry = Vec::new();
        for resolution in resolutions {
            let port = resolution.port;
            let addresses = match resolution.addresses {
                Ok(addresses) => addresses,
                Err(e) => {
                    entries.push(Entry {
                        name: resolution.name,
                        address: None,
                        port,
                        outcome: Outcome::Failed(e.to_string()),
                        report: AddressReport::default(),
                    });
                    continue;
                }
            };
            for address in addresses {
                let Some((report, verdict)) = reports.next() else {
                    break;
                };
                report_to_entry.push(entries.len());
                entries.push(entry(resolution.name.clone(), address, report, verdict));
            }
        }
        Self {
            entries,
            combined: selection.combined.map(|c| Combined {
                system_peer: report_to_entry[c.system_peer],
                ..c
            }),
            truechimers: selection.truechimers,
            min_agree,
            nothing_resolved,
            pivot: SystemTime::now(),
        }
    }

    /// The exit status this result implies (before any clock change).
    pub fn status(&self) -> Status {
        if self.nothing_resolved {
            Status::Unresolved
        } else if self.answered() == 0 {
            Status::NoUsableReply
        } else if self.combined.is_none() {
            Status::Disagree
        } else {
            Status::Ok
        }
    }

    /// Why the run failed, in words; `None` on success.
    pub fn failure(&self) -> Option<String> {
        match self.status() {
            Status::Ok => None,
            Status::Unresolved => Some("name resolution failed for every server".to_owned()),
            Status::NoUsableReply => Some("no server suitable for synchronization found".into()),
            _ if self.truechimers == 0 => Some(format!(
                "no majority: the {} servers that answered disagree with each other, \
                 so none can be trusted (add servers to outvote a falseticker)",
                self.answered()
            )),
            _ => Some(format!(
                "only {} of {} answering servers agree; --min-agree {} needs more",
                self.truechimers,
                self.answered(),
                self.min_agree
            )),
        }
    }

    /// The system peer's entry and best reply.
    pub fn system_peer(&self) -> Option<(&Entry, &Reply)> {
        let entry = &self.entries[self.combined?.system_peer];
        Some((entry, entry.best()?))
    }

    /// Addresses with at least one valid reply.
    pub fn answered(&self) -> usize {
        self.entries.iter().filter(|e| e.best().is_some()).count()
    }

    /// Nanoseconds since the Unix epoch of an NTP timestamp, in the era nearest the pivot;
    /// `None` for the zero timestamp, which means "unknown".
    pub fn unix_nanos(&self, ts: NtpTimestamp) -> Option<i128> {
        if ts.is_zero() {
            return None;
        }
        let pivot = match self.pivot.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        Some(ts.to_unix_nanos(pivot))
    }
}

fn entry(
    name: String,
    address: SocketAddr,
    report: AddressReport,
    verdict: Option<Verdict>,
) -> Entry {
    let outcome = match (verdict, report.error()) {
        (Some(verdict), _) => Outcome::Answered(verdict),
        (None, Some(error)) => Outcome::Failed(error.to_string()),
        (None, None) => Outcome::Failed("no request was sent".to_owned()),
    };
    Entry {
        name,
        address: Some(address),
        port: address.port(),
        outcome,
        report,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ntp_proto::query::{AddressQuery, QueryConfig};
    use ntp_proto::{Mode, NtpDuration, Packet, PollInterval, Stratum, Version};
    use std::time::{Duration, Instant};

    /// A report of one exchange with a server `offset_ms` ahead, T1 at `t1`, 1 ms each way.
    pub(crate) fn report(t1: NtpTimestamp, offset_ms: i64) -> AddressReport {
        let now = Instant::now();
        let mut q = AddressQuery::new(QueryConfig::default(), now);
        let cookie = NtpTimestamp::from_bits(0x0123_4567_89ab_cdef);
        q.poll_transmit(now, cookie).expect("due");
        q.on_sent(now, t1);
        let ms = |n: i64| NtpDuration::from_nanos(i128::from(n) * 1_000_000);
        let mut p =
            Packet::client_request(Version::V4, PollInterval::new(6), t1 + ms(1 + offset_ms));
        p.mode = Mode::SERVER;
        p.stratum = Stratum::new(2);
        p.origin_timestamp = cookie;
        p.receive_timestamp = t1 + ms(1 + offset_ms);
        q.handle_reply(&p.serialize(), t1 + ms(2));
        q.finish()
    }

    /// A summary of `reports` for one name per report, with the local clock at `pivot`.
    pub(crate) fn summary(reports: Vec<AddressReport>, pivot: SystemTime) -> Summary {
        let resolutions = (0..reports.len())
            .map(|i| Resolution {
                name: format!("10.0.0.{i}"),
                port: 123,
                addresses: Ok(vec![SocketAddr::from(([10, 0, 0, i as u8], 123))]),
            })
            .collect();
        let mut s = Summary::new(resolutions, reports, &ReplyLimits::default(), 1);
        s.pivot = pivot;
        s
    }

    #[test]
    fn timestamps_are_placed_in_the_era_of_the_local_clock() {
        // Local clock a day after the 2036 rollover; a server stamp 12 hours into era 1.
        let era1 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_085_978_496);
        let s = summary(vec![], era1 + Duration::from_secs(86_400));
        let stamp = NtpTimestamp::from_parts(43_200, 0);
        let nanos = s.unix_nanos(stamp).expect("nonzero");
        assert_eq!(nanos, (2_085_978_496 + 43_200) * 1_000_000_000);
        assert_eq!(s.unix_nanos(NtpTimestamp::ZERO), None, "zero means unknown");
    }

    #[test]
    fn status_follows_the_contract() {
        let t1 = NtpTimestamp::from_parts(3_900_000_000, 0);
        let now = SystemTime::now();
        assert_eq!(summary(vec![report(t1, 0)], now).status(), Status::Ok);
        let split = summary(vec![report(t1, 0), report(t1, 3000)], now);
        assert_eq!(split.status(), Status::Disagree);
        assert!(split.failure().is_some_and(|f| f.contains("no majority")));
        let none = summary(vec![AddressReport::default()], now);
        assert_eq!(none.status(), Status::NoUsableReply);
        let unresolved = Summary::new(
            vec![Resolution {
                name: "x".into(),
                port: 123,
                addresses: Err(crate::net::ResolveError::NoAddressOfFamily(
                    "IPv6",
                    "1.2.3.4".into(),
                )),
            }],
            vec![],
            &ReplyLimits::default(),
            1,
        );
        assert_eq!(unresolved.status(), Status::Unresolved);
        assert_eq!(unresolved.entries.len(), 1);
    }
}
