//! One upstream association (RFC 5905 sections 9 and 13, RFC 4330 section 5): when to poll, the
//! request to send, what a reply means, the reach register, kiss-o'-death handling, the clock
//! filter, and whether the source is fit to be selected.
//!
//! Call order, quinn-style: [`Source::poll_timeout`] says when to wake; at or after that instant
//! [`Source::poll_transmit`] gives the request to send (from a fresh socket with a random source
//! port, RFC 9109), carrying a random cookie in its transmit timestamp; the IO layer records the
//! real send time T1 and the arrival time T4 and hands the reply to [`Source::handle_reply`].
//! Waking early is harmless: `poll_transmit` returns `None` until the deadline.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::filter::{ClockFilter, FilterOutput};
use crate::packet::{
    LeapIndicator, Packet, PollInterval, Precision, ReferenceId, Stratum, Version,
};
use crate::sample::{
    self, MAX_DISTANCE, MIN_DISPERSION, PHI, ReplyError, ReplyLimits, SentRequest,
};
use crate::select::Candidate;
use crate::time::{NtpDuration, NtpTimestamp};

/// Requests in an initial burst (chrony's iburst sends four; RFC 5905 sends eight).
pub const IBURST_COUNT: u8 = 4;
/// Longest spacing of burst requests (RFC 5905 appendix A.5.7.3: 2 s).
pub const BURST_SPACING: Duration = Duration::from_secs(2);
/// Polls without a reply after which the source counts as unreachable and its poll interval
/// backs off, one step per further unanswered poll, up to maxpoll (RFC 5905 section 13).
pub const UNREACH_POLLS: u32 = 8;

/// How a source is configured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SourceConfig {
    /// Shortest poll interval.
    pub min_poll: PollInterval,
    /// Longest poll interval.
    pub max_poll: PollInterval,
    /// Send a burst of requests at start-up to synchronize quickly.
    pub iburst: bool,
    /// The protocol version of requests.
    pub version: Version,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            min_poll: PollInterval::new(6),
            max_poll: PollInterval::new(10),
            iburst: false,
            version: Version::V4,
        }
    }
}

/// The server-side facts of the last valid reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReplyInfo {
    /// Leap indicator.
    pub leap: LeapIndicator,
    /// The server's stratum.
    pub stratum: Stratum,
    /// Its reference ID.
    pub reference_id: ReferenceId,
    /// Its precision.
    pub precision: Precision,
    /// Its root delay.
    pub root_delay: NtpDuration,
    /// Its root dispersion.
    pub root_dispersion: NtpDuration,
}

/// What a datagram from the source turned out to be.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum ReplyOutcome {
    /// A valid reply; `released` is set when the clock filter produced a new estimate.
    Accepted {
        /// The new filter output, if any.
        released: Option<FilterOutput>,
    },
    /// A reply that failed a check. For [`ReplyError::BogusOrigin`] the request stays
    /// outstanding, since the genuine reply may still come.
    Rejected(ReplyError),
    /// Not an NTP packet.
    Malformed,
    /// No request is outstanding: a duplicate or a stray packet. Never used twice.
    Unexpected,
}

/// Why a source may not take part in selection (RFC 5905 appendix A.5.2, fit()).
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Unfit {
    /// It sent a kiss-o'-death DENY or RSTR: we stopped polling it.
    #[error("denied by the server (kiss-o'-death {0:?})")]
    Denied(ReferenceId),
    /// None of the last eight polls was answered.
    #[error("unreachable")]
    Unreachable,
    /// No valid sample yet.
    #[error("no samples yet")]
    NoSamples,
    /// Its root distance is too large to trust.
    #[error("root distance {0} too large")]
    TooFar(NtpDuration),
    /// It is synchronized to us: using it would make a loop.
    #[error("synchronization loop: the source is synchronized to us")]
    Loop,
}

/// One upstream server.
#[derive(Clone, Debug)]
pub struct Source {
    address: IpAddr,
    local_address: Option<IpAddr>,
    config: SourceConfig,
    reach: u8,
    system_poll: PollInterval,
    kiss_poll: PollInterval,
    next_poll: Instant,
    burst_left: u8,
    outstanding: Option<NtpTimestamp>,
    unanswered: u32,
    filter: ClockFilter,
    last: Option<ReplyInfo>,
    last_error: Option<ReplyError>,
    denied: Option<ReferenceId>,
    counters: SourceCounters,
}

/// What a source has sent and received. `accepted` never exceeds `sent`: each request is
/// answered at most once, and duplicates count as `ignored`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SourceCounters {
    /// Requests sent.
    pub sent: u64,
    /// Valid replies used.
    pub accepted: u64,
    /// Replies that failed a check (including kiss-o'-death and forged origins).
    pub rejected: u64,
    /// Duplicates, stray and malformed datagrams, never used.
    pub ignored: u64,
}

impl Source {
    /// A source at `address`, polled first at `now`.
    pub fn new(address: IpAddr, config: SourceConfig, now: Instant) -> Self {
        let mut filter = ClockFilter::new();
        filter.set_poll(config.min_poll);
        Self {
            address,
            local_address: None,
            config,
            reach: 0,
            system_poll: config.min_poll,
            kiss_poll: config.min_poll,
            next_poll: now,
            burst_left: if config.iburst { IBURST_COUNT } else { 0 },
            outstanding: None,
            unanswered: 0,
            filter,
            last: None,
            last_error: None,
            denied: None,
            counters: SourceCounters::default(),
        }
    }

    /// When [`Source::poll_transmit`] next has a request; `None` once the server denied us.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.denied.is_none().then_some(self.next_poll)
    }

    /// The request to send now, if the poll deadline has come. `local` is our clock's time, and
    /// `cookie` 64 random bits for the transmit timestamp (RFC 9109, and chrony's practice).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        local: NtpTimestamp,
        cookie: NtpTimestamp,
    ) -> Option<[u8; 48]> {
        if self.denied.is_some() || now < self.next_poll {
            return None;
        }
        if self.outstanding.take().is_some() {
            self.unanswered = self.unanswered.saturating_add(1);
        }
        // Three polls in a row unanswered: age the filter with a dummy stage (RFC 5905 A.5.7.3).
        if self.reach & 0b111 == 0 && self.filter.valid_stages() > 0 {
            self.filter.add_missing(local);
        }
        self.reach <<= 1;
        self.outstanding = Some(cookie);
        self.counters.sent += 1;
        let poll = self.poll();
        let interval = if self.burst_left > 0 {
            self.burst_left -= 1;
            BURST_SPACING.min(duration_of(poll))
        } else {
            duration_of(poll)
        };
        self.next_poll = now + interval;
        Some(Packet::client_request(self.config.version, poll, cookie).serialize())
    }

    /// Handles a datagram from the source: T1 is when our request really left, T4 when this
    /// arrived, both our clock's time.
    pub fn handle_reply(
        &mut self,
        t1: NtpTimestamp,
        t4: NtpTimestamp,
        bytes: &[u8],
        limits: &ReplyLimits,
    ) -> ReplyOutcome {
        let outcome = self.judge_reply(t1, t4, bytes, limits);
        let counter = match outcome {
            ReplyOutcome::Accepted { .. } => &mut self.counters.accepted,
            ReplyOutcome::Rejected(_) => &mut self.counters.rejected,
            ReplyOutcome::Malformed | ReplyOutcome::Unexpected => &mut self.counters.ignored,
        };
        *counter += 1;
        outcome
    }

    fn judge_reply(
        &mut self,
        t1: NtpTimestamp,
        t4: NtpTimestamp,
        bytes: &[u8],
        limits: &ReplyLimits,
    ) -> ReplyOutcome {
        let Ok((reply, _)) = Packet::parse(bytes) else {
            return ReplyOutcome::Malformed;
        };
        let Some(cookie) = self.outstanding else {
            return ReplyOutcome::Unexpected;
        };
        match sample::process_reply(&reply, &SentRequest { cookie, t1 }, t4, limits) {
            Ok(sample) => {
                self.outstanding = None;
                self.reach |= 1;
                self.unanswered = 0;
                self.last_error = None;
                self.last = Some(ReplyInfo {
                    leap: reply.leap,
                    stratum: reply.stratum,
                    reference_id: reply.reference_id,
                    precision: reply.precision,
                    root_delay: reply.root_delay.to_duration(),
                    root_dispersion: reply.root_dispersion.to_duration(),
                });
                ReplyOutcome::Accepted {
                    released: self.filter.add(sample, t4),
                }
            }
            Err(error @ ReplyError::BogusOrigin) => ReplyOutcome::Rejected(error),
            Err(error) => {
                self.outstanding = None;
                self.last_error = Some(error);
                if let ReplyError::Kiss(code) = error {
                    self.handle_kiss(code, reply.poll);
                }
                ReplyOutcome::Rejected(error)
            }
        }
    }

    /// RATE: poll less often (at least one step more, or what the server asked); DENY and RSTR:
    /// stop (RFC 5905 section 7.4).
    fn handle_kiss(&mut self, code: ReferenceId, server_poll: PollInterval) {
        match code {
            ReferenceId::RATE => {
                let raised =
                    PollInterval::new(self.poll().get().saturating_add(1)).max(server_poll);
                self.kiss_poll = raised.min(self.config.max_poll);
                self.burst_left = 0;
            }
            ReferenceId::DENY | ReferenceId::RSTR => self.denied = Some(code),
            _ => {}
        }
    }

    /// The poll interval the system (the discipline) would like; the source keeps within its own
    /// limits.
    pub fn set_system_poll(&mut self, poll: PollInterval) {
        self.system_poll = poll;
        self.filter.set_poll(self.poll());
    }

    /// The current poll interval: the system's, within minpoll..maxpoll, raised by a rate kiss and
    /// backing off while unreachable.
    pub fn poll(&self) -> PollInterval {
        let base = self
            .system_poll
            .max(self.kiss_poll)
            .clamp(self.config.min_poll, self.config.max_poll);
        let backoff = self.unanswered.saturating_sub(UNREACH_POLLS).min(32) as i8;
        PollInterval::new(base.get().saturating_add(backoff)).min(self.config.max_poll.max(base))
    }

    /// The local address we reach this source from, for loop detection (the IO layer learns it
    /// when it connects a socket).
    pub fn set_local_address(&mut self, address: IpAddr) {
        self.local_address = Some(address);
    }

    /// Whether the source may be selected, and as what (RFC 5905 appendix A.5.2, fit()).
    pub fn candidate(&self, now: NtpTimestamp) -> Result<Candidate, Unfit> {
        if let Some(code) = self.denied {
            return Err(Unfit::Denied(code));
        }
        if self.reach == 0 {
            // A new source has had no chance to answer yet: it is not unreachable until it has
            // ignored a whole reach register's worth of polls.
            let new = self.last.is_none() && self.counters.sent < UNREACH_POLLS.into();
            return Err(if new {
                Unfit::NoSamples
            } else {
                Unfit::Unreachable
            });
        }
        let (Some(last), Some(estimate)) = (self.last, self.filter.estimate()) else {
            return Err(Unfit::NoSamples);
        };
        let distance = self.root_distance(now).unwrap_or(NtpDuration::MAX);
        if distance > MAX_DISTANCE + self.poll().to_duration().mul_f64(PHI) {
            return Err(Unfit::TooFar(distance));
        }
        if self
            .local_address
            .is_some_and(|a| is_our_reference(a, last.reference_id))
        {
            return Err(Unfit::Loop);
        }
        Ok(Candidate {
            offset: estimate.offset,
            root_distance: distance,
            jitter: estimate.jitter,
            stratum: last.stratum,
        })
    }

    /// Root distance through this source at `now` (RFC 5905 appendix A.5.5.2, root_dist()).
    pub fn root_distance(&self, now: NtpTimestamp) -> Option<NtpDuration> {
        let (last, estimate) = (self.last?, self.filter.estimate()?);
        let age = (now - estimate.time).max(NtpDuration::ZERO);
        Some(
            (last.root_delay + estimate.delay)
                .max(MIN_DISPERSION)
                .half()
                + last.root_dispersion
                + self.filter.dispersion(now)
                + age.mul_f64(PHI)
                + estimate.jitter,
        )
    }

    /// Forgets every sample, after the clock was stepped and they are all wrong.
    pub fn clear_filter(&mut self) {
        self.filter.clear();
    }

    /// The source's address.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The 8-bit reach register: bit 0 is the latest poll, 1 if it was answered.
    pub fn reach(&self) -> u8 {
        self.reach
    }

    /// The clock filter's current estimate.
    pub fn estimate(&self) -> Option<FilterOutput> {
        self.filter.estimate()
    }

    /// The server-side facts of the last valid reply.
    pub fn last_reply(&self) -> Option<ReplyInfo> {
        self.last
    }

    /// Why the last reply was rejected, if it was.
    pub fn last_error(&self) -> Option<ReplyError> {
        self.last_error
    }

    /// What this source has sent and received.
    pub fn counters(&self) -> SourceCounters {
        self.counters
    }

    /// True while a request waits for its reply.
    pub fn is_waiting(&self) -> bool {
        self.outstanding.is_some()
    }
}

/// True if `reference_id` names `local` (RFC 5905 appendix A.5.2: the source is synchronized to
/// us). A loopback address names no particular host (every host is 127.0.0.1, and ntpd's orphan
/// parents advertise it), so it never signals a loop.
fn is_our_reference(local: IpAddr, reference_id: ReferenceId) -> bool {
    let local = local.to_canonical();
    !local.is_loopback() && reference_id == ReferenceId::from_ip(local)
}

/// 2^poll seconds as a [`Duration`] (at least 1/16 s).
pub fn duration_of(poll: PollInterval) -> Duration {
    Duration::from_secs_f64(2f64.powi(i32::from(poll.get().max(-4))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Mode;

    const T0: NtpTimestamp = NtpTimestamp::from_parts(3_900_000_000, 0);

    fn lab_config() -> SourceConfig {
        SourceConfig {
            min_poll: PollInterval::new(-2),
            max_poll: PollInterval::new(2),
            iburst: true,
            version: Version::V4,
        }
    }

    fn reply_to(request: &[u8; 48], server_offset_s: f64, t1: NtpTimestamp) -> Vec<u8> {
        let (req, _) = Packet::parse(request).expect("our request parses");
        let server_time = t1 + NtpDuration::from_seconds_f64(server_offset_s + 0.001);
        let mut reply = Packet::client_request(Version::V4, req.poll, server_time);
        reply.mode = Mode::SERVER;
        reply.stratum = Stratum::new(1);
        reply.reference_id = ReferenceId::LOCL;
        reply.precision = Precision::new(-20);
        reply.origin_timestamp = req.transmit_timestamp;
        reply.receive_timestamp = server_time;
        reply.serialize().to_vec()
    }

    /// Runs one poll: request at `local`, a reply 2 ms later from a server `offset` ahead.
    fn exchange(
        source: &mut Source,
        now: Instant,
        local: NtpTimestamp,
        cookie: u64,
        offset: f64,
    ) -> ReplyOutcome {
        let request = source
            .poll_transmit(now, local, NtpTimestamp::from_bits(cookie))
            .expect("due");
        let reply = reply_to(&request, offset, local);
        source.handle_reply(
            local,
            local + NtpDuration::from_seconds_f64(0.002),
            &reply,
            &ReplyLimits::default(),
        )
    }

    #[test]
    fn iburst_then_regular_polls() {
        let start = Instant::now();
        let mut source = Source::new(
            "127.0.0.1".parse().expect("ip"),
            SourceConfig {
                min_poll: PollInterval::new(4),
                max_poll: PollInterval::new(6),
                ..lab_config()
            },
            start,
        );
        assert_eq!(source.poll_timeout(), Some(start));
        let mut now = start;
        let mut gaps = Vec::new();
        for i in 0..6 {
            let request = source
                .poll_transmit(now, T0, NtpTimestamp::from_bits(i + 1))
                .expect("due");
            assert_eq!(
                Packet::parse(&request)
                    .expect("parses")
                    .0
                    .transmit_timestamp,
                NtpTimestamp::from_bits(i + 1)
            );
            let next = source.poll_timeout().expect("active");
            gaps.push(next - now);
            now = next;
        }
        let expected = [2, 2, 2, 2, 16, 16].map(Duration::from_secs);
        assert_eq!(
            gaps, expected,
            "four burst requests 2 s apart, then 2^minpoll"
        );
        assert_eq!(
            source.poll_transmit(
                now - Duration::from_millis(1),
                T0,
                NtpTimestamp::from_bits(9)
            ),
            None,
            "early wake-up is harmless"
        );
    }

    /// A source that has answered `polls` polls from a server 0.25 s ahead; returns it and the
    /// local time after the last poll.
    fn answered(polls: u64) -> (Source, NtpTimestamp) {
        let start = Instant::now();
        let mut source = Source::new("127.0.0.1".parse().expect("ip"), lab_config(), start);
        let (mut local, mut now) = (T0, start);
        for i in 0..polls {
            let outcome = exchange(&mut source, now, local, 100 + i, 0.25);
            assert!(
                matches!(outcome, ReplyOutcome::Accepted { .. }),
                "{outcome:?}"
            );
            now = source.poll_timeout().expect("active");
            local += NtpDuration::from_seconds(1);
        }
        (source, local)
    }

    #[test]
    fn replies_fill_the_reach_register_and_the_filter() {
        let (source, local) = answered(8);
        assert_eq!(source.reach(), 0xff);
        let estimate = source.estimate().expect("filter has output");
        assert!(
            (estimate.offset.to_seconds_f64() - 0.25).abs() < 1e-6,
            "{:?}",
            estimate.offset
        );
        let candidate = source.candidate(local).expect("fit");
        assert_eq!(candidate.stratum, Stratum::PRIMARY);
        assert!(
            candidate.root_distance < NtpDuration::from_seconds_f64(0.01),
            "{:?}",
            candidate.root_distance
        );
    }

    #[test]
    fn a_new_source_needs_a_few_samples_before_it_is_fit() {
        // Empty filter stages count as MAXDISP (RFC 5905 section 10), so one sample is far from
        // trustworthy; iburst's four fill enough stages to bring the distance under MAXDIST.
        let (one, local) = answered(1);
        assert!(matches!(one.candidate(local), Err(Unfit::TooFar(_))));
        let (four, local) = answered(4);
        assert!(four.candidate(local).is_ok());
    }

    #[test]
    fn duplicates_and_forgeries_are_never_used() {
        let start = Instant::now();
        let mut source = Source::new("127.0.0.1".parse().expect("ip"), lab_config(), start);
        let request = source
            .poll_transmit(start, T0, NtpTimestamp::from_bits(77))
            .expect("due");
        let reply = reply_to(&request, 0.0, T0);
        let mut forged = reply.clone();
        forged[24..32].copy_from_slice(&5u64.to_be_bytes());
        let t4 = T0 + NtpDuration::from_seconds_f64(0.002);
        let limits = ReplyLimits::default();
        assert_eq!(
            source.handle_reply(T0, t4, &forged, &limits),
            ReplyOutcome::Rejected(ReplyError::BogusOrigin)
        );
        assert!(source.is_waiting(), "a forgery does not cancel the request");
        assert!(matches!(
            source.handle_reply(T0, t4, &reply, &limits),
            ReplyOutcome::Accepted { .. }
        ));
        assert_eq!(
            source.handle_reply(T0, t4, &reply, &limits),
            ReplyOutcome::Unexpected,
            "the duplicate"
        );
        assert_eq!(
            source.handle_reply(T0, t4, &[1, 2, 3], &limits),
            ReplyOutcome::Malformed
        );
        assert_eq!(source.reach(), 1);
        let counters = source.counters();
        assert_eq!(
            (
                counters.sent,
                counters.accepted,
                counters.rejected,
                counters.ignored
            ),
            (1, 1, 1, 2)
        );
    }

    fn kiss(request: &[u8; 48], code: ReferenceId) -> Vec<u8> {
        let mut reply = Packet::parse(&reply_to(request, 0.0, T0))
            .expect("parses")
            .0;
        reply.stratum = Stratum::UNSPECIFIED;
        reply.leap = LeapIndicator::Unsynchronized;
        reply.reference_id = code;
        reply.serialize().to_vec()
    }

    #[test]
    fn kiss_rate_raises_the_poll_and_deny_stops() {
        let start = Instant::now();
        let mut source = Source::new(
            "127.0.0.1".parse().expect("ip"),
            SourceConfig {
                iburst: false,
                ..lab_config()
            },
            start,
        );
        let request = source
            .poll_transmit(start, T0, NtpTimestamp::from_bits(1))
            .expect("due");
        let before = source.poll();
        let outcome = source.handle_reply(
            T0,
            T0,
            &kiss(&request, ReferenceId::RATE),
            &ReplyLimits::default(),
        );
        assert_eq!(
            outcome,
            ReplyOutcome::Rejected(ReplyError::Kiss(ReferenceId::RATE))
        );
        assert!(
            source.poll() > before,
            "{:?} -> {:?}",
            before,
            source.poll()
        );

        let now = source.poll_timeout().expect("still polling");
        let request = source
            .poll_transmit(now, T0, NtpTimestamp::from_bits(2))
            .expect("due");
        source.handle_reply(
            T0,
            T0,
            &kiss(&request, ReferenceId::DENY),
            &ReplyLimits::default(),
        );
        assert_eq!(source.poll_timeout(), None, "DENY: never poll again");
        assert_eq!(source.candidate(T0), Err(Unfit::Denied(ReferenceId::DENY)));
    }

    #[test]
    fn unreachable_source_backs_off_to_maxpoll() {
        let start = Instant::now();
        let config = SourceConfig {
            min_poll: PollInterval::new(0),
            max_poll: PollInterval::new(4),
            iburst: false,
            version: Version::V4,
        };
        let mut source = Source::new("127.0.0.1".parse().expect("ip"), config, start);
        let mut now = start;
        let mut polls = Vec::new();
        for i in 0..16 {
            source
                .poll_transmit(now, T0, NtpTimestamp::from_bits(i + 1))
                .expect("due");
            polls.push(source.poll().get());
            now = source.poll_timeout().expect("active");
        }
        assert_eq!(source.reach(), 0);
        assert_eq!(source.candidate(T0), Err(Unfit::Unreachable));
        let fresh = Source::new("127.0.0.1".parse().expect("ip"), config, start);
        assert_eq!(
            fresh.candidate(T0),
            Err(Unfit::NoSamples),
            "not unreachable before it was asked"
        );
        assert_eq!(polls[..9], [0; 9]);
        assert_eq!(
            polls[9..],
            [1, 2, 3, 4, 4, 4, 4],
            "backs off one step per unanswered poll"
        );
    }

    #[test]
    fn a_source_synchronized_to_us_is_a_loop() {
        let (mut source, local) = answered(8);
        let now = source.poll_timeout().expect("active");
        let request = source
            .poll_transmit(now, local, NtpTimestamp::from_bits(5))
            .expect("due");
        let mut reply = Packet::parse(&reply_to(&request, 0.25, local))
            .expect("parses")
            .0;
        reply.stratum = Stratum::new(3);
        reply.reference_id = ReferenceId::from_ip("192.0.2.7".parse().expect("ip"));
        let t4 = local + NtpDuration::from_seconds_f64(0.002);
        source.handle_reply(local, t4, &reply.serialize(), &ReplyLimits::default());
        source.set_local_address("192.0.2.8".parse().expect("ip"));
        assert!(source.candidate(t4).is_ok());
        source.set_local_address("192.0.2.7".parse().expect("ip"));
        assert_eq!(source.candidate(t4), Err(Unfit::Loop));
        // A loopback address names no host: an orphan parent's refid 127.0.0.1 is no loop.
        let loopback = "127.0.0.1".parse().expect("ip");
        assert!(!is_our_reference(loopback, ReferenceId::from_ip(loopback)));
    }

    #[test]
    fn missed_polls_age_the_filter() {
        let (mut source, local) = answered(8);
        let fresh = source.root_distance(local).expect("has samples");
        let mut now = source.poll_timeout().expect("active");
        for i in 0..4 {
            source
                .poll_transmit(now, local, NtpTimestamp::from_bits(10 + i))
                .expect("due");
            now = source.poll_timeout().expect("active");
        }
        let aged = source.root_distance(local).expect("still has samples");
        assert!(aged > fresh, "{fresh:?} -> {aged:?}");
    }
}
