//! One-shot query: ask one server address for a few samples, judge every reply, keep the best
//! (RFC 4330 section 5, RFC 5905 sections 8 and 10), then choose among addresses with the
//! intersection selection (section 11.2).
//!
//! DESIGN.md has no `query.rs`: its client path is `source.rs`, a long-lived association with a
//! poll timer, reach register and clock filter. A one-shot query is none of that (a fixed number of
//! exchanges, then an answer), so it lives here instead of bending `source.rs` to fit. It has the
//! same shape: [`AddressQuery`] is driven with `poll_transmit(now, cookie)` / `on_sent(now, t1)` /
//! `handle_reply(now, bytes, t4)` / `handle_timeout(now)` and asked for its next deadline with
//! `poll_timeout()`; the caller owns the socket, the clocks and the random numbers.
//!
//! Call order for one address:
//! 1. `poll_transmit(now, cookie)`; if it gives bytes, read T1, send them, call `on_sent(now, t1)`
//!    (or `handle_network_error` if the send failed).
//! 2. Wait for a datagram until `poll_timeout()`; give each to `handle_reply`, and call
//!    `handle_timeout(now)` when the deadline passes (early calls are harmless).
//! 3. Repeat until `poll_timeout()` is `None`, then `finish()`.

use std::time::{Duration, Instant};

use crate::auth::{self, Seal, Sealed, SymmetricKey};
use crate::nts::ClientSession;
use crate::packet::{Packet, ParseError, PollInterval, Version};
use crate::sample::{AssociationKind, ReplyError, ReplyLimits, Sample, SentRequest, judge_reply};
use crate::select::{Candidate, Combined, Verdict, select};
use crate::time::{NtpDuration, NtpTimestamp};

/// Poll exponent a one-shot request advertises: 2^6 s, RFC 5905's MINPOLL default, so that a
/// server's rate limiting sees an ordinary client.
pub const REQUEST_POLL: PollInterval = PollInterval::new(6);
/// How much later than the clock read before the send a kernel transmit timestamp may be
/// (chrony's MAX_TX_DELAY): a later one is not this request's.
const TX_STAMP_WINDOW: NtpDuration = NtpDuration::from_seconds(1);

/// How one address is queried.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueryConfig {
    /// Version of the requests (ntpdate-lite sends 2, 3 or 4; the reply's version need not match).
    pub version: Version,
    /// Exchanges to make; the lowest-delay valid one is used (RFC 5905 section 10).
    pub samples: u32,
    /// How long to wait for the reply to each request.
    pub timeout: Duration,
    /// Time from one request to the next.
    pub gap: Duration,
    /// What a reply must satisfy.
    pub limits: ReplyLimits,
    /// Sign each request with this key and use only replies signed with it (RFC 8573).
    pub key: Option<SymmetricKey>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            version: Version::V4,
            samples: 1,
            timeout: Duration::from_secs(2),
            gap: Duration::from_secs(2),
            limits: ReplyLimits::default(),
            key: None,
        }
    }
}

/// A datagram that could not be the answer to our request, so we kept waiting.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum IgnoredReply {
    /// Not an NTP packet.
    #[error("malformed reply: {0}")]
    Malformed(ParseError),
    /// An NTP packet that fails the checks made before and at the origin match (mode, version,
    /// origin): a stale, duplicate or forged reply, or not a reply at all.
    #[error("{0}")]
    Unmatched(ReplyError),
}

/// Why an exchange gave no usable sample.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum QueryError {
    /// The server answered our request, but the answer is unusable (kiss-o'-death,
    /// unsynchronized, zero timestamps, root distance).
    #[error("{0}")]
    Rejected(ReplyError),
    /// Nothing that answers our request arrived in time.
    #[error("no reply within {} s", .waited.as_secs_f64())]
    Timeout {
        /// The timeout that passed.
        waited: Duration,
    },
    /// Datagrams arrived but none answered our request.
    #[error("no valid reply within {} s; ignored: {ignored}", .waited.as_secs_f64())]
    OnlyIgnored {
        /// The timeout that passed.
        waited: Duration,
        /// The last datagram that was not an answer.
        ignored: IgnoredReply,
    },
    /// An ICMP port unreachable came back: nothing listens on that address and port.
    #[error("connection refused (ICMP port unreachable): no NTP server at this address and port")]
    Refused,
    /// The socket failed for another reason.
    #[error("network error: {0}")]
    Network(std::io::ErrorKind),
}

/// A reply that passed every check, and the exchange it completes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Reply {
    /// The header as received.
    pub packet: Packet,
    /// What the exchange measured.
    pub sample: Sample,
    /// T1, the real local send time (the packet's origin field holds the random cookie instead).
    pub t1: NtpTimestamp,
    /// T4, the local receive time.
    pub t4: NtpTimestamp,
}

impl Reply {
    /// Root distance through this server: its root delay and dispersion plus this exchange
    /// (RFC 5905 section 11.2, root_dist()).
    pub fn root_distance(&self) -> NtpDuration {
        self.sample.root_distance(
            self.packet.root_delay.to_duration(),
            self.packet.root_dispersion.to_duration(),
        )
    }
}

/// One exchange and how it ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExchangeRecord {
    /// The cookie it carried and when it was sent.
    pub sent: SentRequest,
    /// The valid reply, or why there was none.
    pub result: Result<Reply, QueryError>,
    /// T1 is the kernel's transmit timestamp, not the clock read before the send.
    pub kernel_t1: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Between exchanges.
    Idle,
    /// `poll_transmit` built a request; `on_sent` has not been called yet.
    Sending { cookie: NtpTimestamp },
    /// A request is out, waiting for its reply until `deadline`.
    InFlight {
        sent: SentRequest,
        deadline: Instant,
        ignored: Option<IgnoredReply>,
        kernel_t1: bool,
    },
}

/// The one-shot query of one server address: up to `samples` exchanges, `gap` apart.
#[derive(Clone, Debug)]
pub struct AddressQuery {
    config: QueryConfig,
    state: State,
    next_send: Instant,
    sent: u32,
    stopped: bool,
    exchanges: Vec<ExchangeRecord>,
    /// NTS (RFC 8915): the session every request is sealed with and every reply must
    /// authenticate under.
    nts: Option<ClientSession>,
}

impl AddressQuery {
    /// A query whose first request is due at `now`.
    pub fn new(config: QueryConfig, now: Instant) -> Self {
        Self {
            config,
            state: State::Idle,
            next_send: now,
            sent: 0,
            stopped: false,
            exchanges: Vec::new(),
            nts: None,
        }
    }

    /// Queries over NTS with the keys and cookies of an NTS-KE exchange: each request carries a
    /// cookie, and only replies that authenticate with our unique identifier count (RFC 8915
    /// section 5.7). A query runs out when its cookies do and no reply brought new ones.
    pub fn with_nts(mut self, session: ClientSession) -> Self {
        self.nts = Some(session);
        self
    }

    /// The next request, if one is due: a client packet whose transmit timestamp is `cookie`, a
    /// fresh random value (RFC 9109), never our clock. Call [`Self::on_sent`] once it is sent.
    pub fn poll_transmit(&mut self, now: Instant, cookie: NtpTimestamp) -> Option<Sealed> {
        if self.state != State::Idle || !self.wants_more() || now < self.next_send {
            return None;
        }
        let header = Packet::client_request(self.config.version, REQUEST_POLL, cookie).serialize();
        let request = match &mut self.nts {
            Some(session) => session.seal_request(&header),
            None => Some(Seal::with(self.config.key.as_ref()).seal(header)),
        };
        if request.is_none() {
            // Out of cookies: no more exchanges.
            self.stopped = true;
        } else {
            self.state = State::Sending { cookie };
        }
        request
    }

    /// The request from `poll_transmit` left at local time `t1` (read just before sending).
    pub fn on_sent(&mut self, now: Instant, t1: NtpTimestamp) {
        if let State::Sending { cookie } = self.state {
            self.state = State::InFlight {
                sent: SentRequest { cookie, t1 },
                deadline: now + self.config.timeout,
                ignored: None,
                kernel_t1: false,
            };
            self.sent += 1;
            self.next_send = now + self.config.gap;
        }
    }

    /// The kernel says the request in flight left at local time `t1` (its software transmit
    /// timestamp): T1 without the time between reading the clock and the datagram leaving. Taken
    /// only before the reply is judged, and only if it is no earlier than the T1 read before the
    /// send (a stamp of another datagram, or a confused kernel, changes nothing).
    pub fn on_transmit_timestamp(&mut self, t1: NtpTimestamp) {
        if let State::InFlight {
            sent, kernel_t1, ..
        } = &mut self.state
            && !*kernel_t1
            && (NtpDuration::ZERO..TX_STAMP_WINDOW).contains(&(t1 - sent.t1))
        {
            sent.t1 = t1;
            *kernel_t1 = true;
        }
    }

    /// A datagram arrived at local time `t4`. An answer to the request in flight ends the
    /// exchange; anything else (stale, forged, malformed, unasked) is noted and waiting goes on.
    pub fn handle_reply(&mut self, bytes: &[u8], t4: NtpTimestamp) {
        let State::InFlight { sent, ignored, .. } = &mut self.state else {
            return; // a late reply between exchanges answers nothing we still wait for
        };
        let sent = *sent;
        match judge_datagram(bytes, &sent, t4, &self.config, self.nts.as_mut()) {
            Judgement::Ignored(why) => *ignored = Some(why),
            Judgement::Answer(result) => {
                if let Err(ReplyError::Kiss(_)) = result {
                    // RFC 5905 section 7.4: a kiss-o'-death says stop (DENY, RSTR) or slow down
                    // (RATE); a one-shot query does either by asking no more.
                    self.stopped = true;
                }
                self.end_exchange(sent, result.map_err(QueryError::Rejected));
            }
        }
    }

    /// Time passed; ends the exchange in flight if its deadline is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::InFlight {
            sent,
            deadline,
            ignored,
            ..
        } = self.state
        else {
            return;
        };
        if now >= deadline {
            let waited = self.config.timeout;
            let error = match ignored {
                Some(ignored) => QueryError::OnlyIgnored { waited, ignored },
                None => QueryError::Timeout { waited },
            };
            self.end_exchange(sent, Err(error));
        }
    }

    /// The socket reported an error (`ConnectionRefused` is the ICMP port unreachable of a
    /// connected UDP socket). The address is given up: a refused port fails at once.
    pub fn handle_network_error(&mut self, kind: std::io::ErrorKind) {
        let error = match kind {
            std::io::ErrorKind::ConnectionRefused => QueryError::Refused,
            other => QueryError::Network(other),
        };
        let sent = match self.state {
            State::InFlight { sent, .. } => sent,
            State::Sending { cookie } => SentRequest {
                cookie,
                t1: NtpTimestamp::ZERO,
            },
            State::Idle => SentRequest {
                cookie: NtpTimestamp::ZERO,
                t1: NtpTimestamp::ZERO,
            },
        };
        self.stopped = true;
        self.end_exchange(sent, Err(error));
    }

    /// When to call again: the reply deadline, or the next send; `None` once the query is over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::InFlight { deadline, .. } => Some(deadline),
            State::Sending { .. } => Some(self.next_send),
            State::Idle if self.wants_more() => Some(self.next_send),
            State::Idle => None,
        }
    }

    /// Every exchange made, in order.
    pub fn finish(self) -> AddressReport {
        AddressReport {
            exchanges: self.exchanges,
        }
    }

    fn wants_more(&self) -> bool {
        !self.stopped && self.sent < self.config.samples
    }

    fn end_exchange(&mut self, sent: SentRequest, result: Result<Reply, QueryError>) {
        let kernel_t1 = matches!(
            self.state,
            State::InFlight {
                kernel_t1: true,
                ..
            }
        );
        self.exchanges.push(ExchangeRecord {
            sent,
            result,
            kernel_t1,
        });
        self.state = State::Idle;
    }
}

enum Judgement {
    Ignored(IgnoredReply),
    Answer(Result<Reply, ReplyError>),
}

/// The reply checks of RFC 4330 section 5 via the one judge ([`judge_reply`]), NTS
/// authentication (RFC 8915 section 5.7) included for an NTS query, split by whether the
/// datagram provably answers our request: failures up to and including the origin match and
/// the authentication mean it does not.
fn judge_datagram(
    bytes: &[u8],
    sent: &SentRequest,
    t4: NtpTimestamp,
    config: &QueryConfig,
    nts: Option<&mut ClientSession>,
) -> Judgement {
    let (packet, trailer) = match Packet::parse(bytes) {
        Ok(parsed) => parsed,
        Err(e) => return Judgement::Ignored(IgnoredReply::Malformed(e)),
    };
    let authentic = match nts {
        Some(session) => session.check_reply(bytes, &packet),
        None => auth::check_reply(config.key.as_ref(), bytes, trailer.mac()),
    };
    match judge_reply(
        AssociationKind::Server,
        &packet,
        authentic,
        sent,
        t4,
        &config.limits,
    ) {
        Err(e) if e.is_unmatched() => Judgement::Ignored(IgnoredReply::Unmatched(e)),
        Err(e) => Judgement::Answer(Err(e)),
        Ok(sample) => Judgement::Answer(Ok(Reply {
            packet,
            sample,
            t1: sent.t1,
            t4,
        })),
    }
}

/// Every exchange one address made, and what to make of them.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct AddressReport {
    /// The exchanges in the order they were made.
    pub exchanges: Vec<ExchangeRecord>,
}

impl AddressReport {
    /// The valid replies.
    pub fn valid(&self) -> impl Iterator<Item = &Reply> {
        self.exchanges.iter().filter_map(|e| e.result.as_ref().ok())
    }

    /// The lowest-delay valid reply: the one least disturbed by queueing (RFC 5905 section 10).
    pub fn best(&self) -> Option<&Reply> {
        self.valid().min_by_key(|r| r.sample.delay)
    }

    /// Why this address gave nothing usable: the last failure, when no reply was valid.
    pub fn error(&self) -> Option<&QueryError> {
        if self.best().is_some() {
            return None;
        }
        self.exchanges
            .iter()
            .rev()
            .find_map(|e| e.result.as_ref().err())
    }

    /// RMS of the other valid offsets about the best one, floored at the local clock's precision
    /// (RFC 5905 section 10, peer jitter).
    pub fn jitter(&self, limits: &ReplyLimits) -> NtpDuration {
        let floor = limits.local_precision.to_duration();
        let Some(best) = self.best() else {
            return floor;
        };
        let others: Vec<f64> = self
            .valid()
            .filter(|r| !core::ptr::eq(*r, best))
            .map(|r| (r.sample.offset - best.sample.offset).to_seconds_f64())
            .collect();
        if others.is_empty() {
            return floor;
        }
        let mean_square = others.iter().map(|d| d * d).sum::<f64>() / others.len() as f64;
        NtpDuration::from_seconds_f64(mean_square.sqrt()).max(floor)
    }

    /// What the selection sees of this address: its best sample, with a correctness interval of
    /// root distance plus jitter (RFC 5905 section 11.2, root_dist()); `None` without a valid reply.
    pub fn candidate(&self, limits: &ReplyLimits) -> Option<Candidate> {
        let best = self.best()?;
        let jitter = self.jitter(limits);
        Some(Candidate {
            offset: best.sample.offset,
            root_distance: best.root_distance() + jitter,
            jitter,
            stratum: best.packet.stratum,
            prefer: false,
            trust: false,
        })
    }
}

/// The addresses' verdicts and the combined offset of those that agree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QuerySelection {
    /// One per report, in order: its verdict, or `None` if it gave no valid reply.
    pub verdicts: Vec<Option<Verdict>>,
    /// The survivors' combined estimate; `system_peer` indexes the reports. `None` when no
    /// majority agrees or fewer than `min_agree` do.
    pub combined: Option<Combined>,
    /// How many addresses agreed with the majority.
    pub truechimers: usize,
}

/// Drops falsetickers with the intersection algorithm and combines the survivors (RFC 5905
/// section 11.2); never "lowest stratum wins". `min_agree` is the fewest agreeing addresses.
pub fn select_reports(
    reports: &[AddressReport],
    limits: &ReplyLimits,
    min_agree: usize,
) -> QuerySelection {
    let indexed: Vec<(usize, Candidate)> = reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.candidate(limits).map(|c| (i, c)))
        .collect();
    let candidates: Vec<Candidate> = indexed.iter().map(|(_, c)| *c).collect();
    let selection = select(&candidates, min_agree, None);
    let mut verdicts = vec![None; reports.len()];
    for ((report_index, _), verdict) in indexed.iter().zip(&selection.verdicts) {
        verdicts[*report_index] = Some(*verdict);
    }
    QuerySelection {
        verdicts,
        combined: selection.combined.map(|c| Combined {
            system_peer: indexed[c.system_peer].0,
            ..c
        }),
        truechimers: selection.truechimers(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{LeapIndicator, Mode, Precision, ReferenceId, Stratum};
    use crate::time::NtpShort;

    const BASE: u32 = 3_900_000_000;

    fn at_ms(ms: i64) -> NtpTimestamp {
        NtpTimestamp::from_parts(BASE, 0) + NtpDuration::from_nanos(i128::from(ms) * 1_000_000)
    }

    fn config(samples: u32) -> QueryConfig {
        QueryConfig {
            samples,
            timeout: Duration::from_millis(500),
            gap: Duration::from_secs(1),
            ..QueryConfig::default()
        }
    }

    /// A server whose clock is `offset_ms` ahead, answering the request in `request` at `t1_ms`
    /// after `one_way_ms` each way.
    fn answer(request: &[u8], t1_ms: i64, one_way_ms: i64, offset_ms: i64) -> [u8; 48] {
        let (req, _) = Packet::parse(request).expect("request parses");
        let mut p = Packet::client_request(Version::V4, PollInterval::new(6), NtpTimestamp::ZERO);
        p.mode = Mode::SERVER;
        p.stratum = Stratum::new(2);
        p.precision = Precision::new(-20);
        p.reference_id = ReferenceId::from_bytes([127, 127, 1, 1]);
        p.root_dispersion = NtpShort::from_duration(NtpDuration::from_nanos(1_000_000));
        p.origin_timestamp = req.transmit_timestamp;
        p.receive_timestamp = at_ms(t1_ms + one_way_ms + offset_ms);
        p.transmit_timestamp = at_ms(t1_ms + one_way_ms + offset_ms);
        p.serialize()
    }

    /// Sends the next request at `now` with `cookie` and T1 = `t1_ms`; returns its bytes.
    fn send(q: &mut AddressQuery, now: Instant, cookie: u64, t1_ms: i64) -> Sealed {
        let bytes = q
            .poll_transmit(now, NtpTimestamp::from_bits(cookie))
            .expect("a request is due");
        q.on_sent(now, at_ms(t1_ms));
        bytes
    }

    #[test]
    fn an_nts_query_counts_only_the_authenticated_reply() {
        use crate::nts::{AeadKey, CookieKey, CookieKeys, NtsVerdict, SessionKeys, ntp};
        let server = CookieKeys::new(CookieKey {
            id: 1,
            key: AeadKey([3; 32]),
            created: 0,
        });
        let keys = SessionKeys {
            c2s: AeadKey([1; 32]),
            s2c: AeadKey([2; 32]),
        };
        let cookies = vec![server.encrypt(&keys, [0; 16]).to_vec()];
        let now = Instant::now();
        let mut q =
            AddressQuery::new(config(1), now).with_nts(ClientSession::new(keys, cookies, [5; 32]));
        let request = send(&mut q, now, 0x1111_2222_3333_4444, 0);
        assert!(request.len() > 48, "the request carries NTS fields");
        // An unauthenticated answer with the right origin is ignored; the genuine one counts.
        let plain = answer(&request, 0, 5, 100);
        q.handle_reply(&plain, at_ms(10));
        let NtsVerdict::Answer(reply) = ntp::check_request(&request, &server, [7; 16]) else {
            panic!("the server authenticates the request");
        };
        let header: [u8; 48] = plain;
        q.handle_reply(&reply.seal(&header), at_ms(10));
        let report = q.finish();
        let best = report.best().expect("the authenticated reply");
        assert!((best.sample.offset.to_seconds_f64() - 0.1).abs() < 1e-6);
    }

    #[test]
    fn a_kernel_transmit_timestamp_replaces_t1_only_while_the_request_is_in_flight() {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(3), now);
        // The clock read 0 ms before the send; the kernel stamped the datagram at 2 ms. The
        // server, 100 ms ahead, answers after 5 ms each way from the real departure.
        let request = send(&mut q, now, 1, 0);
        q.on_transmit_timestamp(at_ms(2));
        q.handle_reply(&answer(&request, 2, 5, 100), at_ms(12));
        // A stamp earlier than the clock read, or seconds later, is not this request's.
        let later = now + Duration::from_secs(1);
        let request = send(&mut q, later, 2, 1000);
        q.on_transmit_timestamp(at_ms(999));
        q.on_transmit_timestamp(at_ms(3000));
        q.handle_reply(&answer(&request, 1000, 5, 100), at_ms(1010));
        // After the reply, a stamp changes nothing.
        q.on_transmit_timestamp(at_ms(1001));
        let report = q.finish();
        let kernel: Vec<bool> = report.exchanges.iter().map(|x| x.kernel_t1).collect();
        assert_eq!(kernel, [true, false]);
        let replies: Vec<&Reply> = report.valid().collect();
        assert_eq!(replies[0].t1, at_ms(2));
        assert_eq!(
            replies[0].sample.offset,
            NtpDuration::from_nanos(100_000_000)
        );
        assert_eq!(replies[1].t1, at_ms(1000));
    }

    #[test]
    fn request_carries_the_cookie_not_the_clock() {
        let now = Instant::now();
        let mut q = AddressQuery::new(
            QueryConfig {
                version: Version::V3,
                ..config(1)
            },
            now,
        );
        let bytes = send(&mut q, now, 0xdead_beef_0123_4567, 0);
        let (p, _) = Packet::parse(&bytes).expect("parses");
        assert_eq!(p.mode, Mode::CLIENT);
        assert_eq!(p.version, Version::V3);
        assert_eq!(p.transmit_timestamp.to_bits(), 0xdead_beef_0123_4567);
        assert!(p.origin_timestamp.is_zero() && p.receive_timestamp.is_zero());
        // One sample asked for: nothing more to send, only the reply deadline to wait for.
        assert_eq!(q.poll_transmit(now, NtpTimestamp::from_bits(1)), None);
        assert_eq!(q.poll_timeout(), Some(now + Duration::from_millis(500)));
    }

    #[test]
    fn a_keyed_query_signs_its_request_and_uses_only_a_reply_signed_with_its_key() {
        use crate::auth::{DigestType, KeyId};
        let key = SymmetricKey::new(KeyId(7), DigestType::Sha1, b"secret").expect("key");
        let now = Instant::now();
        let mut q = AddressQuery::new(
            QueryConfig {
                key: Some(key),
                ..config(1)
            },
            now,
        );
        let request = q
            .poll_transmit(now, NtpTimestamp::from_bits(0x5555))
            .expect("due");
        q.on_sent(now, at_ms(0));
        assert_eq!(request.len(), 48 + 4 + 20, "header, key ID, SHA-1 digest");
        let unsigned = answer(&request, 0, 10, 0);
        // Unsigned, then signed with another key: neither answers us; the signed one does.
        q.handle_reply(&unsigned, at_ms(20));
        let other = SymmetricKey::new(KeyId(7), DigestType::Sha1, b"other").expect("key");
        q.handle_reply(&Seal::Key(other).seal(unsigned), at_ms(20));
        let deadline = Some(now + Duration::from_millis(500));
        assert_eq!(
            q.poll_timeout(),
            deadline,
            "still waiting for a signed reply"
        );
        q.handle_reply(&Seal::Key(key).seal(unsigned), at_ms(20));
        let report = q.finish();
        assert!(report.best().is_some(), "{report:?}");
    }

    #[test]
    fn valid_reply_gives_the_sample_with_the_real_t1() {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(1), now);
        let req = send(&mut q, now, 0x1111_2222_3333_4444, 1000);
        q.handle_reply(&answer(&req, 1000, 10, 250), at_ms(1020));
        assert_eq!(q.poll_timeout(), None, "done after one valid sample");
        let report = q.finish();
        let best = report.best().expect("valid");
        assert!((best.sample.offset.to_seconds_f64() - 0.250).abs() < 1e-6);
        assert!((best.sample.delay.to_seconds_f64() - 0.020).abs() < 1e-6);
        assert_eq!(best.t1, at_ms(1000));
        assert_eq!(report.error(), None);
    }

    #[test]
    fn forged_origin_is_ignored_until_the_real_reply() {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(1), now);
        let req = send(&mut q, now, 0x1111_2222_3333_4444, 0);
        let mut forged = answer(&req, 0, 10, 0);
        forged[24..32].copy_from_slice(&7u64.to_be_bytes());
        q.handle_reply(&forged, at_ms(15));
        q.handle_reply(b"short", at_ms(16));
        assert!(q.poll_timeout().is_some(), "still waiting");
        q.handle_reply(&answer(&req, 0, 10, 0), at_ms(20));
        assert!(q.finish().best().is_some());
    }

    #[test]
    fn only_forged_replies_time_out_with_the_reason() {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(1), now);
        let req = send(&mut q, now, 0x1111_2222_3333_4444, 0);
        let mut forged = answer(&req, 0, 10, 0);
        forged[24..32].copy_from_slice(&7u64.to_be_bytes());
        q.handle_reply(&forged, at_ms(15));
        q.handle_timeout(now + Duration::from_millis(499)); // early: harmless
        assert!(q.poll_timeout().is_some());
        q.handle_timeout(now + Duration::from_millis(500));
        let report = q.finish();
        let error = report.error().expect("failed");
        assert_eq!(
            error,
            &QueryError::OnlyIgnored {
                waited: Duration::from_millis(500),
                ignored: IgnoredReply::Unmatched(ReplyError::BogusOrigin),
            }
        );
        assert!(
            error
                .to_string()
                .contains("origin timestamp does not match")
        );
    }

    #[test]
    fn broadcast_packet_does_not_answer_a_unicast_request() {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(1), now);
        let req = send(&mut q, now, 0x1111_2222_3333_4444, 0);
        let mut bcast = answer(&req, 0, 10, 0);
        bcast[0] = (bcast[0] & !0b111) | 5;
        bcast[24..32].copy_from_slice(&[0; 8]);
        q.handle_reply(&bcast, at_ms(15));
        q.handle_timeout(now + Duration::from_secs(1));
        assert!(matches!(
            q.finish().error(),
            Some(QueryError::OnlyIgnored {
                ignored: IgnoredReply::Unmatched(ReplyError::WrongMode(_)),
                ..
            })
        ));
    }

    #[test]
    fn kiss_of_death_ends_the_query_with_its_code() {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(4), now);
        let req = send(&mut q, now, 0x1111_2222_3333_4444, 0);
        let mut kod = answer(&req, 0, 10, 0);
        kod[1] = 0;
        kod[12..16].copy_from_slice(b"RATE");
        q.handle_reply(&kod, at_ms(20));
        assert_eq!(q.poll_timeout(), None, "no more requests after a KoD");
        let report = q.finish();
        let error = report.error().expect("failed");
        assert_eq!(
            error,
            &QueryError::Rejected(ReplyError::Kiss(ReferenceId::RATE))
        );
        assert_eq!(error.to_string(), "kiss-o'-death RATE");
    }

    #[test]
    fn unsynchronized_server_is_rejected() {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(1), now);
        let req = send(&mut q, now, 0x1111_2222_3333_4444, 0);
        let mut unsync = answer(&req, 0, 10, 0);
        unsync[0] |= LeapIndicator::Unsynchronized.to_bits() << 6;
        q.handle_reply(&unsync, at_ms(20));
        assert_eq!(
            q.finish().error(),
            Some(&QueryError::Rejected(ReplyError::Unsynchronized))
        );
    }

    #[test]
    fn refused_port_gives_up_at_once() {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(3), now);
        send(&mut q, now, 0x1111_2222_3333_4444, 0);
        q.handle_network_error(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(q.poll_timeout(), None);
        assert_eq!(q.finish().error(), Some(&QueryError::Refused));
    }

    #[test]
    fn samples_are_gap_apart_and_the_lowest_delay_wins() {
        let t0 = Instant::now();
        let gap = Duration::from_secs(1);
        let mut q = AddressQuery::new(config(3), t0);
        // Delays 40 ms, 10 ms (offset +5 ms), then a timeout.
        let r1 = send(&mut q, t0, 0xa1, 0);
        q.handle_reply(&answer(&r1, 0, 20, 0), at_ms(40));
        assert_eq!(q.poll_transmit(t0, NtpTimestamp::from_bits(0xa2)), None);
        assert_eq!(q.poll_timeout(), Some(t0 + gap));
        let r2 = send(&mut q, t0 + gap, 0xa2, 1000);
        // A late duplicate of the first reply is stale now.
        q.handle_reply(&answer(&r1, 0, 20, 0), at_ms(1001));
        q.handle_reply(&answer(&r2, 1000, 5, 5), at_ms(1010));
        send(&mut q, t0 + 2 * gap, 0xa3, 2000);
        q.handle_timeout(t0 + 2 * gap + Duration::from_millis(500));
        assert_eq!(q.poll_timeout(), None);
        let report = q.finish();
        assert_eq!(report.exchanges.len(), 3);
        assert_eq!(report.valid().count(), 2);
        let best = report.best().expect("valid");
        assert!((best.sample.delay.to_seconds_f64() - 0.010).abs() < 1e-6);
        assert!((best.sample.offset.to_seconds_f64() - 0.005).abs() < 1e-6);
        assert_eq!(report.error(), None);
        // One other sample 5 ms away: jitter 5 ms.
        let jitter = report.jitter(&ReplyLimits::default()).to_seconds_f64();
        assert!((jitter - 0.005).abs() < 1e-6, "{jitter}");
    }

    #[test]
    fn reply_between_exchanges_is_dropped() {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(1), now);
        q.handle_reply(&[0u8; 48], at_ms(0));
        q.handle_timeout(now + Duration::from_secs(10));
        assert!(q.poll_transmit(now, NtpTimestamp::from_bits(1)).is_some());
    }

    #[test]
    fn timeout_message_names_the_wait() {
        let e = QueryError::Timeout {
            waited: Duration::from_millis(1500),
        };
        assert_eq!(e.to_string(), "no reply within 1.5 s");
    }

    /// A report with one valid exchange measuring `offset_ms` at stratum `stratum`.
    fn report_at(offset_ms: i64, stratum: u8) -> AddressReport {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(1), now);
        let req = send(&mut q, now, 0x55, 0);
        let mut reply = answer(&req, 0, 1, offset_ms);
        reply[1] = stratum;
        q.handle_reply(&reply, at_ms(2));
        let report = q.finish();
        assert!(report.best().is_some());
        report
    }

    fn failed_report() -> AddressReport {
        let now = Instant::now();
        let mut q = AddressQuery::new(config(1), now);
        send(&mut q, now, 0x56, 0);
        q.handle_network_error(std::io::ErrorKind::ConnectionRefused);
        q.finish()
    }

    #[test]
    fn falseticker_at_stratum_1_loses_to_two_agreeing_servers() {
        // The +2.5 s server has the best stratum; "lowest stratum wins" would pick it.
        let reports = [
            report_at(2500, 1),
            report_at(1, 3),
            failed_report(),
            report_at(-1, 3),
        ];
        let sel = select_reports(&reports, &ReplyLimits::default(), 1);
        assert_eq!(sel.verdicts[0], Some(Verdict::Falseticker));
        assert_eq!(sel.verdicts[2], None);
        assert_eq!(sel.truechimers, 2);
        let combined = sel.combined.expect("a majority agrees");
        assert!(combined.system_peer == 1 || combined.system_peer == 3);
        assert!(
            combined.offset.to_seconds_f64().abs() < 0.002,
            "{}",
            combined.offset
        );
        // Asking for three agreeing servers fails: only two agree.
        assert_eq!(
            select_reports(&reports, &ReplyLimits::default(), 3).combined,
            None
        );
    }

    #[test]
    fn two_disagreeing_servers_give_no_answer() {
        let reports = [report_at(0, 2), report_at(2500, 2)];
        let sel = select_reports(&reports, &ReplyLimits::default(), 1);
        assert_eq!(sel.combined, None);
        assert_eq!(sel.truechimers, 0);
    }

    #[test]
    fn a_single_server_is_its_own_majority() {
        let reports = [failed_report(), report_at(40, 2)];
        let sel = select_reports(&reports, &ReplyLimits::default(), 1);
        let combined = sel.combined.expect("one valid server");
        assert_eq!(combined.system_peer, 1);
        assert!((combined.offset.to_seconds_f64() - 0.040).abs() < 1e-6);
        assert_eq!(sel.verdicts, vec![None, Some(Verdict::SystemPeer)]);
    }
}
