//! One upstream association, a server, a symmetric peer or a broadcast server (RFC 5905 sections 9
//! and 13, RFC 4330 section 5): when to poll, the request to send, how long to wait for its reply,
//! what a reply (or a broadcast) means, the reach register, kiss-o'-death handling, the source's
//! statistics, and whether it is fit to be selected.
//!
//! The [`crate::client::Client`] drives it: [`Source::poll_timeout`] says when it next needs
//! attention, [`Source::handle_timeout`] ends a request whose reply did not come,
//! [`Source::poll_transmit`] gives the request to send once the poll is due, and
//! [`Source::handle_reply`] takes a datagram with its T1 and T4. Waking early is harmless.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::auth::{self, AuthError, SymmetricKey};
use crate::broadcast::{self, Delay, Heard, Listener, Verdict};
use crate::discipline::Discipline;
use crate::interleave::{ClientInterleave, ReplyKind};
use crate::nts::ClientSession;
use crate::packet::{
    LeapIndicator, Packet, PollInterval, Precision, ReferenceId, Stratum, Version,
};
use crate::sample::{
    self, AssociationKind, MAX_DISTANCE, MIN_DISPERSION, PHI, ReplyError, ReplyLimits, Sample,
    SentRequest,
};
use crate::select::Candidate;
use crate::stats::{RawSample, SourceStats};
use crate::time::{NtpDuration, NtpTimestamp};

/// Requests in an initial burst (chrony's iburst sends four; RFC 5905 sends eight).
pub const IBURST_COUNT: u8 = 4;
/// Longest spacing of burst requests (RFC 5905 appendix A.5.7.3: 2 s).
pub const BURST_SPACING: Duration = Duration::from_secs(2);
/// Longest wait for one reply; never longer than the poll interval.
pub const MAX_REPLY_WAIT: Duration = Duration::from_secs(4);
/// Polls without a reply after which the source counts as unreachable and its poll interval
/// backs off, one step per further unanswered poll, up to maxpoll (RFC 5905 section 13).
pub const UNREACH_POLLS: u32 = 8;
/// Samples the regression should hold: fewer shorten the poll, more lengthen it (chrony's
/// `polltarget`).
pub const DEFAULT_POLL_TARGET: u8 = 8;

/// A source's stable identity within a client: never reused, so that removing one source cannot
/// shift another's state.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SourceId(pub u64);

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

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
    /// Samples the statistics should hold at the adapted poll interval.
    pub poll_target: u8,
    /// A server we are a client of, a symmetric peer, or a broadcast server.
    pub kind: AssociationKind,
    /// Broadcast associations: the one-way delay to add to each broadcast.
    pub broadcast_delay: Delay,
    /// The key our requests are signed with and every reply must be signed with (RFC 8573).
    pub key: Option<SymmetricKey>,
    /// How the selection treats it: `prefer`, `noselect`, `trust`, `min-samples`.
    pub selection: SelectOptions,
    /// Replies whose round-trip delay exceeds this are not used (chrony's `maxdelay`).
    pub max_delay: Option<NtpDuration>,
    /// Ask a server for interleaved mode (RFC 9769, chrony's `xleave`).
    pub xleave: bool,
}

/// How the selection treats one source (chrony's source options of the same names).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SelectOptions {
    /// Among the sources that survive selection, a preferred one is the system peer, and only
    /// preferred ones are combined.
    pub prefer: bool,
    /// Measured and shown, never selected.
    pub noselect: bool,
    /// Assumed to be a truechimer: the majority is sought among the trusted sources, and a
    /// source that disagrees with them is a falseticker, however many agree with it.
    pub trust: bool,
    /// Samples its statistics must hold before it may be selected.
    pub min_samples: u8,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            min_poll: PollInterval::new(6),
            max_poll: PollInterval::new(10),
            iburst: false,
            version: Version::V4,
            poll_target: DEFAULT_POLL_TARGET,
            kind: AssociationKind::Server,
            broadcast_delay: Delay::Calibrated,
            key: None,
            selection: SelectOptions::default(),
            max_delay: None,
            xleave: false,
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

impl ReplyInfo {
    /// The server-side facts a packet carries.
    fn of(packet: &Packet) -> Self {
        Self {
            leap: packet.leap,
            stratum: packet.stratum,
            reference_id: packet.reference_id,
            precision: packet.precision,
            root_delay: packet.root_delay.to_duration(),
            root_dispersion: packet.root_dispersion.to_duration(),
        }
    }
}

/// What a datagram from the source turned out to be.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum ReplyOutcome {
    /// A valid reply; its sample is in the statistics.
    Accepted,
    /// A reply that failed a check. When [`ReplyError::is_unmatched`], it did not answer our
    /// request and changed nothing: the request stays outstanding for the genuine reply.
    Rejected(ReplyError),
    /// A valid reply to a request that was sent before the clock was stepped and answered after:
    /// its timestamps straddle the step, so it is no sample.
    Straddled,
    /// Not an NTP packet.
    Malformed,
    /// No request is outstanding: a duplicate, a late or a stray packet; or a broadcast no newer
    /// than one already used (a replay). Never used.
    Unexpected,
    /// A broadcast kept to calibrate the one-way delay against the exchange it asked for (or to
    /// check an outlier against): not a sample.
    Held,
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
    /// Configured `noselect`: measured, never selected.
    #[error("noselect")]
    NoSelect,
    /// Fewer samples than its `min-samples`.
    #[error("{have} of the {need} samples needed")]
    TooFewSamples {
        /// Samples it has.
        have: usize,
        /// Samples it needs.
        need: u8,
    },
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
    /// Duplicates, stray, late, straddling and malformed datagrams, never used; broadcasts held
    /// for calibration.
    pub ignored: u64,
    /// Of the accepted, interleaved replies (RFC 9769), whose sample has the server's precise
    /// transmit time.
    pub interleaved: u64,
}

/// The request in flight.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Outstanding {
    cookie: NtpTimestamp,
    /// The receive timestamp an interleaving request carries (zero otherwise): the origin of an
    /// interleaved reply.
    receive_cookie: NtpTimestamp,
    deadline: Instant,
    straddled: bool,
}

/// One upstream server or symmetric peer.
#[derive(Clone, Debug)]
pub struct Source {
    address: SocketAddr,
    local_address: Option<IpAddr>,
    config: SourceConfig,
    reach: u8,
    poll: PollInterval,
    poll_score: f64,
    kiss_poll: PollInterval,
    next_poll: Instant,
    burst_left: u8,
    outstanding: Option<Outstanding>,
    unanswered: u32,
    stats: SourceStats,
    last: Option<ReplyInfo>,
    last_error: Option<ReplyError>,
    denied: Option<ReferenceId>,
    counters: SourceCounters,
    /// The transmit timestamp of the last reply that matched our request: the same again is a
    /// duplicate (RFC 5905 section 9.2, test 1).
    last_transmit: Option<NtpTimestamp>,
    /// Peers only: the transmit timestamp of our last symmetric passive answer to the peer's own
    /// poll, which is also when it left (the server stamps it just before sending). The peer's
    /// next packet may carry it as its origin (chrony's do): that completes an exchange too.
    passive: Option<NtpTimestamp>,
    /// Broadcast associations only: the delay calibration and the broadcasts' checks.
    listener: Option<Listener>,
    /// Servers with `xleave` only: the exchange the next interleaved request names.
    interleave: ClientInterleave,
    /// False while the operator has taken it offline: no polls, nothing else changes.
    online: bool,
    /// NTS associations only (RFC 8915): keys, cookies, the request in flight.
    nts: Option<ClientSession>,
}

impl Source {
    /// A source at `address`, polled first at `now`.
    pub fn new(address: SocketAddr, config: SourceConfig, now: Instant) -> Self {
        Self {
            address,
            local_address: None,
            config,
            reach: 0,
            poll: config.min_poll,
            poll_score: 0.0,
            kiss_poll: config.min_poll,
            next_poll: now,
            burst_left: if config.iburst { IBURST_COUNT } else { 0 },
            outstanding: None,
            unanswered: 0,
            stats: SourceStats::new(),
            last: None,
            last_error: None,
            denied: None,
            counters: SourceCounters::default(),
            last_transmit: None,
            passive: None,
            interleave: ClientInterleave::default(),
            listener: (config.kind == AssociationKind::Broadcast)
                .then(|| Listener::new(config.broadcast_delay)),
            online: true,
            nts: None,
        }
    }

    /// Takes the source offline (no more polls; its statistics, reach and poll stay) or back
    /// online, polled at `now` (chrony's `offline` and `online`).
    pub fn set_online(&mut self, online: bool, now: Instant) {
        if online && !self.online {
            self.next_poll = self.next_poll.min(now);
        }
        self.online = online;
    }

    /// False while the operator has taken it offline.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Sends [`IBURST_COUNT`] requests from `now`, [`BURST_SPACING`] apart (or a poll interval,
    /// if shorter), then polls on as before (chrony's `burst`). Nothing for a broadcast
    /// association, whose broadcasts set the pace.
    pub fn burst(&mut self, now: Instant) {
        if self.listener.is_none() {
            // The first of them is the poll due now; the rest follow it.
            self.burst_left = IBURST_COUNT - 1;
            self.next_poll = self.next_poll.min(now);
        }
    }

    /// Applies a changed configuration to a running source: its samples, reach and poll stay
    /// (the poll within the new limits); a new key applies to the next request.
    pub fn reconfigure(&mut self, config: SourceConfig) {
        self.config = config;
        self.poll = self.poll.clamp(config.min_poll, config.max_poll);
        self.kiss_poll = self.kiss_poll.clamp(config.min_poll, config.max_poll);
    }

    /// Makes this an NTS association (RFC 8915 section 5.7) with the keys and cookies of a new
    /// NTS-KE exchange: from now on only NTS-authenticated replies count.
    pub fn set_nts(&mut self, session: ClientSession) {
        self.nts = Some(session);
    }

    /// The NTS session of an NTS association.
    pub fn nts(&self) -> Option<&ClientSession> {
        self.nts.as_ref()
    }

    /// The NTS session of an NTS association, to seal a request with.
    pub fn nts_mut(&mut self) -> Option<&mut ClientSession> {
        self.nts.as_mut()
    }

    /// When the source next needs [`Source::handle_timeout`] or [`Source::poll_transmit`];
    /// `None` once the server denied us.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let reply = self.outstanding.map(|o| o.deadline);
        let tick = self.listener.as_ref().and_then(Listener::next_tick);
        reply.into_iter().chain(self.next_poll()).chain(tick).min()
    }

    /// When the next poll is due; `None` once the server denied us, and for a broadcast
    /// association while it wants no exchange.
    pub fn next_poll(&self) -> Option<Instant> {
        let wanted = self.listener.as_ref().is_none_or(Listener::wants_exchange);
        (self.denied.is_none() && self.online && wanted).then_some(self.next_poll)
    }

    /// When the reply to the request in flight stops being awaited, if one is.
    pub fn reply_deadline(&self) -> Option<Instant> {
        self.outstanding.map(|o| o.deadline)
    }

    /// True when a poll is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next_poll().is_some_and(|due| now >= due)
    }

    /// Gives up on a request whose reply is overdue at `now`; shifts a broadcast association's
    /// reach register once per broadcast interval. Returns true if either happened.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let ticks = self.listener.as_mut().map_or(0, |l| l.handle_tick(now));
        self.reach = self.reach.checked_shl(ticks).unwrap_or(0);
        if self.outstanding.is_some_and(|o| now >= o.deadline) {
            self.outstanding = None;
            self.unanswered = self.unanswered.saturating_add(1);
            return true;
        }
        ticks > 0
    }

    /// The request to send now, if the poll is due, and how long to wait for its reply. `cookie`
    /// is 64 random bits for the transmit timestamp (RFC 9109, and chrony's practice).
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        cookie: NtpTimestamp,
    ) -> Option<([u8; 48], Duration)> {
        if !self.is_due(now) {
            return None;
        }
        if let Some(listener) = &mut self.listener {
            if !listener.exchange_useful(now) {
                return None;
            }
            listener.exchange_sent();
        }
        if self.outstanding.take().is_some() {
            self.unanswered = self.unanswered.saturating_add(1);
        }
        self.counters.sent += 1;
        let poll = self.poll();
        let interval = match &self.listener {
            // Broadcasts drive the reach register; exchanges only calibrate, then check.
            Some(listener) if listener.is_calibrated() => {
                duration_of(self.config.min_poll).max(BURST_SPACING)
            }
            Some(_) => BURST_SPACING,
            None => {
                self.reach <<= 1;
                if self.burst_left > 0 {
                    self.burst_left -= 1;
                    BURST_SPACING.min(duration_of(poll))
                } else {
                    duration_of(poll)
                }
            }
        };
        self.next_poll = now + interval;
        // A peer that does not answer at once answers with its own next poll (chrony does): its
        // reply is awaited until ours.
        let wait = match self.config.kind {
            AssociationKind::Server | AssociationKind::Broadcast => interval.min(MAX_REPLY_WAIT),
            AssociationKind::Peer => interval,
        };
        let mut request = Packet::client_request(self.config.version, poll, cookie);
        request.mode = self.config.kind.request_mode();
        let mut receive_cookie = NtpTimestamp::ZERO;
        if self.interleaves() {
            receive_cookie = receive_cookie_of(cookie);
            (request.origin_timestamp, request.receive_timestamp) =
                self.interleave.request_fields(receive_cookie);
        }
        self.outstanding = Some(Outstanding {
            cookie,
            receive_cookie,
            deadline: now + wait,
            straddled: false,
        });
        Some((request.serialize(), wait))
    }

    /// The clock was stepped: a request in flight cannot give a sample any more, nor can an
    /// exchange an interleaved reply would complete.
    pub fn clock_stepped(&mut self) {
        if let Some(o) = &mut self.outstanding {
            o.straddled = true;
        }
        self.passive = None;
        self.interleave.forget();
    }

    /// True if this source asks for interleaved mode: a server with `xleave`.
    fn interleaves(&self) -> bool {
        self.config.xleave && self.config.kind == AssociationKind::Server
    }

    /// Peers only: we answered the peer's poll with a symmetric passive packet whose transmit
    /// timestamp, read just before it left, is `transmit` (RFC 5905 section 9.2: every packet to a
    /// peer is a request its next packet may answer).
    pub fn passive_sent(&mut self, transmit: NtpTimestamp) {
        if self.config.kind == AssociationKind::Peer {
            self.passive = Some(transmit);
        }
    }

    /// Handles a datagram from the source: T1 is when our request really left, T4 when this
    /// arrived, both our clock's time; `discipline` says what had been corrected by then.
    pub fn handle_reply(
        &mut self,
        t1: NtpTimestamp,
        t4: NtpTimestamp,
        bytes: &[u8],
        limits: &ReplyLimits,
        discipline: &Discipline,
    ) -> ReplyOutcome {
        let outcome = self.judge_reply(t1, t4, bytes, limits, discipline);
        self.count(outcome)
    }

    /// Handles a broadcast from the source's address that arrived at `t4` (monotonic `now`):
    /// a sample once calibrated and in agreement, else counted and held, refused or ignored. A
    /// client or peer association never takes one.
    pub fn handle_broadcast(
        &mut self,
        now: Instant,
        t4: NtpTimestamp,
        bytes: &[u8],
        limits: &ReplyLimits,
        discipline: &Discipline,
    ) -> ReplyOutcome {
        let outcome = self.judge_broadcast(now, t4, bytes, limits, discipline);
        self.count(outcome)
    }

    fn count(&mut self, outcome: ReplyOutcome) -> ReplyOutcome {
        let counter = match outcome {
            ReplyOutcome::Accepted => &mut self.counters.accepted,
            ReplyOutcome::Rejected(_) => &mut self.counters.rejected,
            ReplyOutcome::Straddled
            | ReplyOutcome::Malformed
            | ReplyOutcome::Unexpected
            | ReplyOutcome::Held => &mut self.counters.ignored,
        };
        *counter += 1;
        outcome
    }

    fn judge_broadcast(
        &mut self,
        now: Instant,
        t4: NtpTimestamp,
        bytes: &[u8],
        limits: &ReplyLimits,
        discipline: &Discipline,
    ) -> ReplyOutcome {
        let Ok((packet, _)) = Packet::parse(bytes) else {
            return ReplyOutcome::Malformed;
        };
        let Some(listener) = &mut self.listener else {
            return ReplyOutcome::Rejected(ReplyError::WrongMode(packet.mode));
        };
        if let Err(error) = broadcast::check_header(&packet) {
            return ReplyOutcome::Rejected(error);
        }
        let transmit = packet.transmit_timestamp;
        let Some(leap_shift) = discipline.leaps().leap_free_shift(transmit, transmit) else {
            return ReplyOutcome::Straddled;
        };
        let correction = discipline.correction(t4);
        let heard = Heard {
            time: t4 - correction,
            raw_offset: (transmit - t4) + correction + leap_shift,
            transmit,
            interval: packet.poll,
            at: now,
        };
        let predicted = self.stats.fit().map(|fit| {
            let (offset, sd) = fit.predict(heard.time);
            let error = NtpDuration::from_seconds_f64((sd + fit.residual_sd).min(1e6));
            (offset, error)
        });
        let (offset, round_trip) = match listener.hear(heard, predicted) {
            Verdict::Use { offset, round_trip } => (offset, round_trip),
            Verdict::Held => return ReplyOutcome::Held,
            Verdict::Replay => return ReplyOutcome::Unexpected,
            Verdict::Outlier(miss) => {
                let error = ReplyError::BroadcastOutlier(miss);
                self.last_error = Some(error);
                return ReplyOutcome::Rejected(error);
            }
        };
        let sample = Sample {
            offset,
            delay: round_trip,
            dispersion: packet.precision.to_duration() + limits.local_precision.to_duration(),
            time: t4,
        };
        let distance = sample.root_distance(
            packet.root_delay.to_duration(),
            packet.root_dispersion.to_duration(),
        );
        if distance > limits.max_root_distance {
            return ReplyOutcome::Rejected(ReplyError::RootDistance(distance));
        }
        self.poll = packet.poll;
        self.reach |= 1;
        self.last_error = None;
        self.last = Some(ReplyInfo::of(&packet));
        self.stats.add(RawSample {
            time: heard.time,
            offset,
            delay: sample.delay,
            dispersion: sample.dispersion,
        });
        ReplyOutcome::Accepted
    }

    fn judge_reply(
        &mut self,
        t1: NtpTimestamp,
        t4: NtpTimestamp,
        bytes: &[u8],
        limits: &ReplyLimits,
        discipline: &Discipline,
    ) -> ReplyOutcome {
        let Ok((reply, trailer)) = Packet::parse(bytes) else {
            return ReplyOutcome::Malformed;
        };
        // What the packet may answer: our poll, or our passive answer to the peer's poll.
        let (sent, straddled, polled) = match (self.outstanding, self.passive) {
            (_, Some(passive)) if reply.origin_timestamp == passive => {
                let sent = SentRequest {
                    cookie: passive,
                    t1: passive,
                };
                (sent, false, false)
            }
            (Some(o), _) => {
                let sent = SentRequest {
                    cookie: o.cookie,
                    t1,
                };
                (sent, o.straddled, true)
            }
            (None, _) => return ReplyOutcome::Unexpected,
        };
        // Interleaved mode: a reply naming our receive timestamp completes the previous exchange.
        let (current_t1, current_t4, current) = (t1, t4, reply);
        let mut reply = reply;
        let (mut sent, mut t4) = (sent, t4);
        let mut kind = None;
        let mut plausible = true;
        if let Some(o) = self.outstanding.filter(|_| polled && self.interleaves()) {
            kind = self.interleave.classify(&reply, o.cookie, o.receive_cookie);
            if let Some(ReplyKind::Interleaved(previous)) = kind {
                plausible = ClientInterleave::plausible(previous, &reply);
                reply = ClientInterleave::completed_exchange(previous, &reply);
                sent = SentRequest {
                    cookie: o.receive_cookie,
                    t1: previous.t1,
                };
                t4 = previous.t4;
            }
        }
        if self.last_transmit == Some(reply.transmit_timestamp) {
            return ReplyOutcome::Unexpected;
        }
        // In the leap-free timescale (see `leap`); unplaceable right at a leap.
        let leap_shift = discipline
            .leaps()
            .leap_free_shift(reply.receive_timestamp, reply.transmit_timestamp);
        let authentic = match &mut self.nts {
            Some(session) => session.check_reply(bytes, &reply),
            None => auth::check_reply(self.config.key.as_ref(), bytes, trailer.mac()),
        };
        let judged = sample::judge_reply(self.config.kind, &reply, authentic, &sent, t4, limits)
            // Only once it proved itself an answer: an implausible transmit time is the server's.
            .and_then(|sample| {
                plausible
                    .then_some(sample)
                    .ok_or(ReplyError::ImpossibleDelay)
            });
        // The judge checks the origin before authentication: this NAK answers our request.
        if judged == Err(ReplyError::Unauthenticated(AuthError::NtsNak))
            && let Some(session) = &mut self.nts
        {
            session.nak();
        }
        if !judged.is_err_and(ReplyError::is_unmatched) {
            self.last_transmit = Some(reply.transmit_timestamp);
            if kind.is_some() {
                if judged.is_ok() {
                    if matches!(kind, Some(ReplyKind::Interleaved(_))) {
                        self.counters.interleaved += 1;
                    }
                    self.interleave.answered(current_t1, &current, current_t4);
                } else {
                    self.interleave.forget();
                }
            }
        }
        match judged {
            Err(error) if error.is_unmatched() => ReplyOutcome::Rejected(error),
            _ if straddled || leap_shift.is_none() => {
                self.consumed(polled);
                ReplyOutcome::Straddled
            }
            Err(error) => {
                self.consumed(polled);
                self.last_error = Some(error);
                if let ReplyError::Kiss(code) = error {
                    self.handle_kiss(code, reply.poll);
                }
                ReplyOutcome::Rejected(error)
            }
            Ok(sample) if self.config.max_delay.is_some_and(|max| sample.delay > max) => {
                // The server answered (it is reachable); the path was too slow to use the sample.
                self.consumed(polled);
                self.reach |= 1;
                let error = ReplyError::DelayTooLarge(sample.delay);
                self.last_error = Some(error);
                ReplyOutcome::Rejected(error)
            }
            Ok(sample) => {
                let leap_shift = leap_shift.unwrap_or_default();
                self.consumed(polled);
                self.reach |= 1;
                self.last_error = None;
                self.last = Some(ReplyInfo::of(&reply));
                // The offset is the mean of the clock's errors at T1 and T4, so the corrections
                // to add back are the mean of those at T1 and T4, exactly, whatever the slew.
                let t1 = sent.t1;
                let correction = discipline
                    .correction(t1)
                    .midpoint(discipline.correction(t4));
                let middle = t1 + (t4 - t1).half();
                let raw = RawSample {
                    time: middle - correction,
                    offset: sample.offset + correction + leap_shift,
                    delay: sample.delay,
                    dispersion: sample.dispersion,
                };
                let surprise = self.stats.add(raw);
                match &mut self.listener {
                    // The poll is the broadcaster's; the exchange calibrates.
                    Some(listener) => {
                        listener.exchanged(raw.time, raw.offset, raw.delay);
                    }
                    None => self.adapt_poll(surprise, raw),
                }
                ReplyOutcome::Accepted
            }
        }
    }

    /// The packet answered our poll (`polled`) or our passive answer: that request is done, and
    /// the peer is alive either way.
    fn consumed(&mut self, polled: bool) {
        if polled {
            self.answered();
        } else {
            self.passive = None;
            self.unanswered = 0;
        }
    }

    fn answered(&mut self) {
        self.outstanding = None;
        self.unanswered = 0;
    }

    /// chrony's poll adaptation: a sample the line did not predict within its peer distance
    /// shortens the poll by how badly it missed; otherwise the poll follows the number of samples
    /// the line rests on, towards the poll target (RFC 5905 section 13 leaves the rule open).
    fn adapt_poll(&mut self, surprise: Option<NtpDuration>, raw: RawSample) {
        let distance =
            (raw.delay.to_seconds_f64() / 2.0 + raw.dispersion.to_seconds_f64()).max(1e-9);
        let target = f64::from(self.config.poll_target.max(1));
        let adjust = match surprise.map(NtpDuration::to_seconds_f64) {
            Some(error) if error > distance => -(error / distance).log2(),
            _ => {
                let ratio = (self.stats.len() as f64 / target - 1.0) / target;
                if ratio < 0.0 { 2.0 * ratio } else { ratio }
            }
        };
        self.poll_score += adjust;
        let mut poll = i32::from(self.poll.get());
        if self.poll_score >= 1.0 {
            poll += self.poll_score.floor() as i32;
            self.poll_score -= self.poll_score.floor();
        } else if self.poll_score < 0.0 {
            let down = (-self.poll_score).ceil();
            poll -= down as i32;
            self.poll_score += down;
        }
        let (min, max) = (
            i32::from(self.config.min_poll.get()),
            i32::from(self.config.max_poll.get()),
        );
        // At a limit the score saturates half way, so that leaving the limit takes as long in
        // either direction.
        if poll < min {
            poll = min;
            self.poll_score = 0.5;
        } else if poll > max {
            poll = max;
            self.poll_score = 0.5;
        }
        self.poll = PollInterval::new(poll as i8);
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

    /// The current poll interval: the adapted one, raised by a rate kiss and backing off while
    /// unreachable, within minpoll..maxpoll.
    pub fn poll(&self) -> PollInterval {
        if self.listener.is_some() {
            // The broadcaster's interval, as its broadcasts say.
            return self.poll;
        }
        let base = self
            .poll
            .max(self.kiss_poll)
            .clamp(self.config.min_poll, self.config.max_poll);
        let backoff = self.unanswered.saturating_sub(UNREACH_POLLS).min(32) as i8;
        PollInterval::new(base.get().saturating_add(backoff)).min(self.config.max_poll.max(base))
    }

    /// The current poll interval as a duration.
    pub fn poll_interval(&self) -> Duration {
        duration_of(self.poll())
    }

    /// The local address we reach this source from, for loop detection (the IO layer learns it
    /// when it connects a socket).
    pub fn set_local_address(&mut self, address: IpAddr) {
        self.local_address = Some(address);
    }

    /// Whether the source may be selected at local time `now`, and as what (RFC 5905 appendix
    /// A.5.2, fit()): its offset now, from the line through its samples, with the estimate it
    /// came from.
    pub fn candidate(
        &self,
        now: NtpTimestamp,
        discipline: &Discipline,
    ) -> Result<(Candidate, SourceEstimate), Unfit> {
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
        let (Some(last), Some(estimate)) = (self.last, self.estimate(now, discipline)) else {
            return Err(Unfit::NoSamples);
        };
        let limit = MAX_DISTANCE + self.poll().to_duration().mul_f64(PHI);
        if estimate.root_distance > limit {
            return Err(Unfit::TooFar(estimate.root_distance));
        }
        if self
            .local_address
            .is_some_and(|a| is_our_reference(a, last.reference_id))
        {
            return Err(Unfit::Loop);
        }
        let options = self.config.selection;
        if options.noselect {
            return Err(Unfit::NoSelect);
        }
        if estimate.samples < usize::from(options.min_samples) {
            return Err(Unfit::TooFewSamples {
                have: estimate.samples,
                need: options.min_samples,
            });
        }
        let candidate = Candidate {
            offset: estimate.offset,
            root_distance: estimate.root_distance,
            jitter: estimate.jitter,
            stratum: last.stratum,
            prefer: options.prefer,
            trust: options.trust,
        };
        Ok((candidate, estimate))
    }

    /// What the source's samples say at local time `now`.
    pub fn estimate(&self, now: NtpTimestamp, discipline: &Discipline) -> Option<SourceEstimate> {
        let (last, fit, newest) = (self.last?, self.stats.fit()?, self.stats.newest()?);
        let raw_now = discipline.uncorrected(now);
        let (raw_offset, offset_sd) = fit.predict(raw_now);
        // From the leap-free time to the clock's target, which carries the leaps in play.
        let offset = raw_offset - discipline.correction(now) + discipline.leap_target(now);
        let min_delay = self.stats.min_delay().unwrap_or(newest.delay);
        let age = (raw_now - newest.time).max(NtpDuration::ZERO);
        let sd = NtpDuration::from_seconds_f64(offset_sd.min(1e6));
        let root_distance = (last.root_delay + min_delay).max(MIN_DISPERSION).half()
            + last.root_dispersion
            + newest.dispersion
            + age.mul_f64(PHI)
            + sd;
        Some(SourceEstimate {
            offset,
            offset_sd,
            frequency: (fit.frequency_sd.is_finite()).then_some((fit.frequency, fit.frequency_sd)),
            delay: min_delay,
            jitter: NtpDuration::from_seconds_f64(fit.residual_sd.min(1e6)),
            root_distance,
            samples: fit.samples,
        })
    }

    /// A server, a symmetric peer or a broadcast server.
    pub fn kind(&self) -> AssociationKind {
        self.config.kind
    }

    /// The key its packets are signed with, if it is authenticated.
    pub fn key(&self) -> Option<&SymmetricKey> {
        self.config.key.as_ref()
    }

    /// The source's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The 8-bit reach register: bit 0 is the latest poll, 1 if it was answered.
    pub fn reach(&self) -> u8 {
        self.reach
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

    /// True once the server sent a kiss-o'-death DENY or RSTR: it is polled no more.
    pub fn is_denied(&self) -> bool {
        self.denied.is_some()
    }

    /// True while a request waits for its reply.
    pub fn is_waiting(&self) -> bool {
        self.outstanding.is_some()
    }

    /// How many samples the statistics hold.
    pub fn samples(&self) -> usize {
        self.stats.len()
    }
}

/// One source's view of the clock at some instant.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct SourceEstimate {
    /// Server minus local clock now, from the line through the samples.
    pub offset: NtpDuration,
    /// Its standard error, seconds.
    pub offset_sd: f64,
    /// The clock's frequency error (s/s) and its standard error, once the line has a slope.
    pub frequency: Option<(f64, f64)>,
    /// The lowest round-trip delay of the samples.
    pub delay: NtpDuration,
    /// The samples' scatter around the line.
    pub jitter: NtpDuration,
    /// Root distance through this source now (RFC 5905 appendix A.5.5.2, root_dist()).
    pub root_distance: NtpDuration,
    /// Samples the line rests on.
    pub samples: usize,
}

/// True if `reference_id` names `local` (RFC 5905 appendix A.5.2: the source is synchronized to
/// us). 127.0.0.1 and ::1 name no particular host (every host has them, and ntpd's orphan parents
/// advertise 127.0.0.1), so they never signal a loop; another loopback address (a lab's
/// 127.0.0.x) names one daemon as well as any address does.
fn is_our_reference(local: IpAddr, reference_id: ReferenceId) -> bool {
    let local = local.to_canonical();
    let anyone = local == IpAddr::from([127, 0, 0, 1])
        || local == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        || local.is_unspecified();
    !anyone && reference_id == ReferenceId::from_ip(local)
}

/// The shortest spacing between requests to different sources: 2^(poll - 3) s, within 2 ms and
/// 0.2 s (chrony's sampling separation), so that a client with many sources never sends a burst
/// of its own, and eight sources still fit in one short poll interval.
pub fn sampling_separation(poll: PollInterval) -> Duration {
    let seconds = 2f64.powi(i32::from(poll.get()) - 3);
    Duration::from_secs_f64(seconds.clamp(0.002, 0.2))
}

/// 2^poll seconds as a [`Duration`] (at least 1/16 s).
pub fn duration_of(poll: PollInterval) -> Duration {
    Duration::from_secs_f64(2f64.powi(i32::from(poll.get().max(-4))))
}

/// The receive timestamp of an interleaving request: a bijective mix of the random transmit
/// cookie (SplitMix64's finalizer), so as unpredictable to an off-path attacker as the cookie
/// itself, and never equal to it (RFC 9769 section 2: the server interleaves only when they
/// differ).
fn receive_cookie_of(cookie: NtpTimestamp) -> NtpTimestamp {
    let mut x = cookie.to_bits() ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    if x == cookie.to_bits() || x == 0 {
        x = !cookie.to_bits() | 1;
    }
    NtpTimestamp::from_bits(x)
}
