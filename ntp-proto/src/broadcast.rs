//! Broadcast mode, the client's side (RFC 5905 sections 8 and 9.2, mode 5): a server announces
//! its time to a whole LAN on a schedule (`server::Broadcaster`), and a client uses the
//! announcements without asking.
//!
//! [`Listener`] is one broadcast client association's side. A broadcast carries only the server's
//!   transmit time T3, so its offset is T3 + d - T4 with d the one-way delay. The listener measures
//!   d as ntpd's broadcast delay calibration does: each broadcast it cannot yet use asks for an
//!   ordinary client/server exchange with the broadcaster, and the exchange's offset minus the
//!   broadcast's raw offset (T3 - T4), taken milliseconds apart, is d. A broadcast is a sample only
//!   once [`CALIBRATION_PAIRS`] such pairs anchor it, only in order (no replay), and only where it
//!   agrees with what the exchanges measured: a forged broadcast changes nothing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::packet::{LeapIndicator, Mode, Packet, PollInterval, Stratum};
use crate::sample::ReplyError;
use crate::time::{NtpDuration, NtpTimestamp};

/// Broadcast/exchange pairs that calibrate the one-way delay; the median of the latest this many
/// is used, so one bad pair cannot move it beyond the good ones.
pub const CALIBRATION_PAIRS: usize = 4;
/// Longest time between a broadcast and the exchange it is paired with: the clock's frequency
/// error over this span (500 ppm at worst before the discipline) is the pair's error.
pub const PAIR_SPAN: NtpDuration = NtpDuration::from_seconds(1);
/// Longest one-way delay a broadcast may have (a LAN's is well under a millisecond).
pub const MAX_ONE_WAY: NtpDuration = NtpDuration::from_bits(429_496_730); // 0.1 s
/// Narrowest agreement window of a broadcast with the exchanges' estimate.
pub const MIN_WINDOW: NtpDuration = NtpDuration::from_bits(8_589_935); // 2 ms
/// Widest agreement window: a broadcast further from the estimate is never a sample.
pub const MAX_WINDOW: NtpDuration = NtpDuration::from_bits(549_755_814); // 0.128 s (STEPT)
/// ntpd's default broadcast delay when it is not calibrated (`broadcastdelay`), 4 ms.
pub const DEFAULT_DELAY: NtpDuration = NtpDuration::from_bits(17_179_869);
/// Announcement intervals accepted from a broadcaster, log2 s.
const INTERVALS: (i8, i8) = (-4, 17);

/// The one-way delay a listener adds to each broadcast.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Delay {
    /// Measured against client/server exchanges (ntpd's calibration).
    #[default]
    Calibrated,
    /// Assumed (ntpd's `broadcastdelay`); exchanges still anchor the broadcasts.
    Fixed(NtpDuration),
}

/// The checks a broadcast's header must pass before anything else: mode 5, a supported version,
/// a synchronized sender, a transmit time, and a reference time not after it (RFC 5905 section
/// 9.2 and appendix A.5.1.1).
pub fn check_header(packet: &Packet) -> Result<(), ReplyError> {
    if packet.mode != Mode::BROADCAST {
        return Err(ReplyError::WrongMode(packet.mode));
    }
    if !packet.version.is_supported() {
        return Err(ReplyError::BadVersion(packet.version));
    }
    if packet.leap == LeapIndicator::Unsynchronized
        || packet.stratum >= Stratum::UNSYNCHRONIZED
        || packet.stratum == Stratum::UNSPECIFIED
    {
        return Err(ReplyError::Unsynchronized);
    }
    if packet.transmit_timestamp.is_zero() {
        return Err(ReplyError::ZeroTimestamp);
    }
    if !packet.reference_timestamp.is_zero()
        && packet.transmit_timestamp - packet.reference_timestamp < NtpDuration::ZERO
    {
        return Err(ReplyError::ReferenceAfterTransmit);
    }
    Ok(())
}

/// A broadcast as heard, in the uncorrected timescale of the source's statistics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Heard {
    /// T4 less every correction applied by then.
    pub time: NtpTimestamp,
    /// T3 - T4 plus every correction applied by then (and the leap-free shift): the offset if
    /// the broadcast had taken no time to arrive.
    pub raw_offset: NtpDuration,
    /// The broadcaster's transmit timestamp, to order broadcasts.
    pub transmit: NtpTimestamp,
    /// The broadcaster's interval, from the packet's poll field.
    pub interval: PollInterval,
    /// The monotonic time it arrived.
    pub at: Instant,
}

/// What the listener makes of a broadcast that passed the header checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// A sample: this offset (uncorrected timescale) and round-trip delay.
    Use {
        /// T3 + d - T4 in the statistics' timescale.
        offset: NtpDuration,
        /// The round trip the exchanges measured (for the root distance).
        round_trip: NtpDuration,
    },
    /// Not usable yet: kept to pair with the exchange it asked for.
    Held,
    /// The same or an older transmit time than a broadcast already used: a duplicate or replay.
    Replay,
    /// Disagrees with the exchanges' estimate by this much, beyond the window: not used; an
    /// exchange checks whether the server moved.
    Outlier(NtpDuration),
}

/// One broadcast client association's calibration and checks (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct Listener {
    delay: Delay,
    /// One-way delays measured by the latest pairs.
    pairs: VecDeque<NtpDuration>,
    /// The least round trip of the exchanges.
    round_trip: Option<NtpDuration>,
    /// A broadcast waiting for the exchange it asked for.
    pending: Option<Heard>,
    /// The transmit time of the newest broadcast used or paired.
    last_transmit: Option<NtpTimestamp>,
    /// The broadcaster's interval and when the reach register next shifts.
    tick: Option<(Duration, Instant)>,
    /// An exchange is wanted.
    wants_exchange: bool,
}

impl Listener {
    /// A listener that adds `delay` to each broadcast.
    pub fn new(delay: Delay) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// True while the listener wants a client/server exchange with the broadcaster.
    pub fn wants_exchange(&self) -> bool {
        self.wants_exchange
    }

    /// True if an exchange sent at `now` could still pair with the broadcast held for it; a
    /// stale one is dropped, and the next broadcast asks again.
    pub fn exchange_useful(&mut self, now: Instant) -> bool {
        let fresh = self
            .pending
            .is_some_and(|p| now.saturating_duration_since(p.at) <= PAIR_SPAN.to_std());
        if !fresh {
            self.pending = None;
            self.wants_exchange = false;
        }
        fresh
    }

    /// The exchange it wanted has been sent.
    pub fn exchange_sent(&mut self) {
        self.wants_exchange = false;
    }

    /// The one-way delay in use: the configured one, or the median of the pairs once there are
    /// [`CALIBRATION_PAIRS`] of them.
    pub fn one_way_delay(&self) -> Option<NtpDuration> {
        match self.delay {
            Delay::Fixed(delay) => Some(delay),
            Delay::Calibrated => self.measured_delay(),
        }
    }

    /// What the pairs measured, once there are enough.
    pub fn measured_delay(&self) -> Option<NtpDuration> {
        if self.pairs.len() < CALIBRATION_PAIRS {
            return None;
        }
        let mut sorted: Vec<NtpDuration> = self.pairs.iter().copied().collect();
        sorted.sort();
        let middle = sorted.len() / 2;
        Some(sorted[middle - 1].midpoint(sorted[middle]))
    }

    /// True once broadcasts can be samples.
    pub fn is_calibrated(&self) -> bool {
        self.pairs.len() >= CALIBRATION_PAIRS && self.round_trip.is_some()
    }

    /// A broadcast that passed [`check_header`]. `predicted` is the source's estimate of the
    /// offset at `heard.time` (uncorrected timescale) with its error, from the exchanges and
    /// broadcasts used so far.
    pub fn hear(&mut self, heard: Heard, predicted: Option<(NtpDuration, NtpDuration)>) -> Verdict {
        if self
            .last_transmit
            .is_some_and(|last| heard.transmit - last <= NtpDuration::ZERO)
        {
            return Verdict::Replay;
        }
        let (Some(delay), Some(round_trip), Some((estimate, error))) =
            (self.one_way_delay(), self.round_trip, predicted)
        else {
            self.hold(heard);
            return Verdict::Held;
        };
        if !self.is_calibrated() {
            self.hold(heard);
            return Verdict::Held;
        }
        let offset = heard.raw_offset + delay;
        let miss = (offset - estimate).abs();
        if miss > self.window(round_trip, error) {
            // The server may have moved: an exchange settles it, and recalibrates on the way.
            self.hold(heard);
            return Verdict::Outlier(miss);
        }
        self.last_transmit = Some(heard.transmit);
        self.start_ticking(heard.interval, heard.at);
        Verdict::Use { offset, round_trip }
    }

    /// How far a broadcast may be from the estimate: the estimate's error and the round trip,
    /// plus, with an assumed delay, how far the assumption is from what the pairs measured.
    fn window(&self, round_trip: NtpDuration, error: NtpDuration) -> NtpDuration {
        let assumption = match (self.delay, self.measured_delay()) {
            (Delay::Fixed(fixed), Some(measured)) => (fixed - measured).abs(),
            _ => NtpDuration::ZERO,
        };
        (round_trip.mul_f64(3.0) + error.mul_f64(8.0)).clamp(MIN_WINDOW, MAX_WINDOW) + assumption
    }

    /// Keeps `heard` for the next exchange, unless a fresh one already waits for its exchange
    /// (a flood of forgeries cannot displace it).
    fn hold(&mut self, heard: Heard) {
        let stale = |p: &Heard| heard.at.saturating_duration_since(p.at) > PAIR_SPAN.to_std();
        if self.pending.as_ref().is_none_or(stale) {
            self.pending = Some(heard);
        }
        self.wants_exchange = true;
    }

    /// A client/server exchange with the broadcaster gave `offset` at `time` (uncorrected
    /// timescale) over `round_trip`: paired with the broadcast held for it, it measures the
    /// one-way delay. Returns false when the pair was implausible and discarded.
    pub fn exchanged(
        &mut self,
        time: NtpTimestamp,
        offset: NtpDuration,
        round_trip: NtpDuration,
    ) -> bool {
        self.round_trip = Some(self.round_trip.map_or(round_trip, |r| r.min(round_trip)));
        let Some(heard) = self.pending.take() else {
            return true;
        };
        if (time - heard.time).abs() > PAIR_SPAN {
            return false;
        }
        // d = true offset - (T3 - T4); the exchange's offset errs by at most half its round trip.
        let one_way = offset - heard.raw_offset;
        let half = round_trip.half();
        if one_way < -half || one_way > MAX_ONE_WAY + half {
            return false;
        }
        if self.pairs.len() == CALIBRATION_PAIRS {
            self.pairs.pop_front();
        }
        self.pairs.push_back(one_way.max(NtpDuration::ZERO));
        if self
            .last_transmit
            .is_none_or(|last| heard.transmit - last > NtpDuration::ZERO)
        {
            self.last_transmit = Some(heard.transmit);
        }
        self.start_ticking(heard.interval, heard.at);
        true
    }

    fn start_ticking(&mut self, interval: PollInterval, now: Instant) {
        let interval = interval.clamp(
            PollInterval::new(INTERVALS.0),
            PollInterval::new(INTERVALS.1),
        );
        let period = interval.to_duration().to_std();
        // Half a period of grace: a broadcast that comes a little late is not a missed one.
        let first = now + period + period / 2;
        self.tick = Some(match self.tick {
            Some((old, next)) if old == period => (period, next),
            _ => (period, first),
        });
    }

    /// When the reach register next shifts: once per broadcast interval after the first
    /// broadcast was used.
    pub fn next_tick(&self) -> Option<Instant> {
        self.tick.map(|(_, next)| next)
    }

    /// Shifts past every tick due at `now`; returns how many were.
    pub fn handle_tick(&mut self, now: Instant) -> u32 {
        let Some((period, mut next)) = self.tick else {
            return 0;
        };
        let mut ticks = 0;
        while now >= next && ticks < 8 {
            next += period;
            ticks += 1;
        }
        if now >= next {
            next = now + period;
        }
        self.tick = Some((period, next));
        ticks
    }

    /// The broadcaster's interval, once one broadcast was used.
    pub fn interval(&self) -> Option<Duration> {
        self.tick.map(|(period, _)| period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Version;
    use std::sync::LazyLock;

    const T0: NtpTimestamp = NtpTimestamp::from_parts(3_900_000_000, 0);
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);

    fn ms(ms: f64) -> NtpDuration {
        NtpDuration::from_seconds_f64(ms / 1000.0)
    }

    /// A broadcast heard `at_s` seconds in, reading `raw_offset_ms`, sent at `transmit_s`.
    fn heard(at_s: f64, raw_offset_ms: f64, transmit_s: f64) -> Heard {
        Heard {
            time: T0 + NtpDuration::from_seconds_f64(at_s),
            raw_offset: ms(raw_offset_ms),
            transmit: T0 + NtpDuration::from_seconds_f64(transmit_s),
            interval: PollInterval::new(0),
            at: *START + Duration::from_secs_f64(at_s),
        }
    }

    /// A listener calibrated by `CALIBRATION_PAIRS` pairs a second apart on a path of
    /// `one_way_ms`, with the server `offset_ms` ahead.
    fn calibrated(one_way_ms: f64, offset_ms: f64) -> Listener {
        let mut listener = Listener::new(Delay::Calibrated);
        for i in 0..CALIBRATION_PAIRS {
            let at = i as f64;
            let b = heard(at, offset_ms - one_way_ms, at);
            assert_eq!(listener.hear(b, None), Verdict::Held);
            assert!(listener.wants_exchange() && listener.exchange_useful(b.at));
            listener.exchange_sent();
            let time = b.time + ms(3.0);
            assert!(listener.exchanged(time, ms(offset_ms), ms(2.0 * one_way_ms)));
        }
        assert!(listener.is_calibrated());
        listener
    }

    #[test]
    fn pairs_measure_the_one_way_delay() {
        let listener = calibrated(0.4, 25.0);
        let delay = listener.one_way_delay().expect("calibrated");
        assert!((delay - ms(0.4)).abs() < ms(0.001), "{delay}");
    }

    #[test]
    fn a_calibrated_broadcast_gives_its_offset() {
        let mut listener = calibrated(0.4, 25.0);
        let b = heard(10.0, 25.0 - 0.4, 10.0);
        let verdict = listener.hear(b, Some((ms(25.0), ms(0.01))));
        let Verdict::Use { offset, round_trip } = verdict else {
            panic!("{verdict:?}");
        };
        assert!((offset - ms(25.0)).abs() < ms(0.001));
        assert_eq!(round_trip, ms(0.8));
        assert!(!listener.wants_exchange());
    }

    #[test]
    fn broadcasts_are_held_until_calibrated_even_with_a_fixed_delay() {
        let mut listener = Listener::new(Delay::Fixed(DEFAULT_DELAY));
        let verdict = listener.hear(heard(0.0, 1.0, 0.0), Some((ms(1.0), ms(0.1))));
        assert_eq!(verdict, Verdict::Held);
        assert!(listener.wants_exchange());
    }

    #[test]
    fn replays_and_duplicates_are_refused() {
        let mut listener = calibrated(0.4, 25.0);
        let b = heard(10.0, 24.6, 10.0);
        let estimate = Some((ms(25.0), ms(0.01)));
        assert!(matches!(listener.hear(b, estimate), Verdict::Use { .. }));
        assert_eq!(listener.hear(b, estimate), Verdict::Replay);
        let older = heard(11.0, 24.6, 9.0);
        assert_eq!(listener.hear(older, estimate), Verdict::Replay);
    }

    #[test]
    fn a_forged_broadcast_far_off_is_an_outlier_and_moves_nothing() {
        let mut listener = calibrated(0.4, 25.0);
        let estimate = Some((ms(25.0), ms(0.01)));
        // 1000 s ahead, with a transmit time far in the future.
        let forged = heard(10.0, 1_000_000.0, 1010.0);
        assert!(matches!(
            listener.hear(forged, estimate),
            Verdict::Outlier(_)
        ));
        assert!(listener.wants_exchange());
        // Its far-future transmit time did not become the replay mark: the genuine one is used.
        let genuine = heard(10.5, 24.6, 10.5);
        assert!(matches!(
            listener.hear(genuine, estimate),
            Verdict::Use { .. }
        ));
        // The exchange the outlier asked for cannot pair with it: implausible one-way delay.
        let delay = listener.one_way_delay();
        assert!(!listener.exchanged(forged.time + ms(2.0), ms(25.0), ms(0.8)));
        assert_eq!(listener.one_way_delay(), delay);
    }

    #[test]
    fn a_flood_cannot_displace_the_broadcast_held_for_an_exchange() {
        let mut listener = Listener::new(Delay::Calibrated);
        let genuine = heard(0.0, 9.6, 0.0);
        listener.hear(genuine, None);
        for i in 1..100 {
            let forged = heard(0.001 * f64::from(i), -5000.0, 0.001 * f64::from(i));
            assert_eq!(listener.hear(forged, None), Verdict::Held);
        }
        assert!(listener.exchanged(genuine.time + ms(2.0), ms(10.0), ms(1.0)));
        assert_eq!(listener.pairs.back(), Some(&ms(0.4)));
    }

    #[test]
    fn a_forged_calibration_pair_cannot_move_the_delay_beyond_the_genuine_ones() {
        let mut listener = Listener::new(Delay::Calibrated);
        // Three genuine pairs at 0.3-0.5 ms and one forged broadcast 50 ms early (plausible).
        for (i, one_way) in [0.3, 50.0, 0.4, 0.5].into_iter().enumerate() {
            let b = heard(i as f64 * 2.0, 10.0 - one_way, i as f64 * 2.0);
            listener.hear(b, None);
            listener.exchange_sent();
            listener.exchanged(b.time + ms(2.0), ms(10.0), ms(1.0));
        }
        let delay = listener.one_way_delay().expect("calibrated");
        assert!(
            delay >= ms(0.3) && delay <= ms(0.5),
            "median of the middle two: {delay}"
        );
    }

    #[test]
    fn a_pair_too_far_apart_in_time_is_discarded() {
        let mut listener = Listener::new(Delay::Calibrated);
        let b = heard(0.0, 9.6, 0.0);
        listener.hear(b, None);
        assert!(!listener.exchange_useful(b.at + Duration::from_secs(2)));
        assert!(!listener.wants_exchange());
        listener.hear(b, None);
        let late = b.time + NtpDuration::from_seconds(2);
        assert!(!listener.exchanged(late, ms(10.0), ms(1.0)));
        assert!(listener.measured_delay().is_none());
    }

    #[test]
    fn an_assumed_delay_widens_the_window_by_its_error() {
        let mut listener = calibrated(0.4, 25.0);
        listener.delay = Delay::Fixed(DEFAULT_DELAY);
        // With the 4 ms assumption, a broadcast reads 3.6 ms late; the window allows for it.
        let b = heard(10.0, 24.6, 10.0);
        let verdict = listener.hear(b, Some((ms(25.0), ms(0.01))));
        let Verdict::Use { offset, .. } = verdict else {
            panic!("{verdict:?}");
        };
        assert!((offset - ms(28.6)).abs() < ms(0.001));
    }

    #[test]
    fn ticks_follow_the_broadcast_interval() {
        let mut listener = calibrated(0.4, 25.0);
        // Ticking began with the first pair, a period and a half after its broadcast.
        let tick = listener.next_tick().expect("ticking after a pair");
        assert_eq!(tick, *START + Duration::from_millis(1500));
        assert_eq!(listener.handle_tick(tick - Duration::from_millis(1)), 0);
        assert_eq!(listener.handle_tick(tick + Duration::from_millis(2100)), 3);
        assert_eq!(listener.next_tick(), Some(tick + Duration::from_secs(3)));
    }

    #[test]
    fn check_header_refuses_what_no_broadcaster_sends() {
        let mut packet = Packet::client_request(Version::V4, PollInterval::new(6), T0);
        packet.mode = Mode::BROADCAST;
        packet.stratum = Stratum::new(2);
        packet.leap = LeapIndicator::NoWarning;
        assert_eq!(check_header(&packet), Ok(()));
        let with = |change: fn(&mut Packet)| {
            let mut p = packet;
            change(&mut p);
            check_header(&p)
        };
        assert!(with(|p| p.mode = Mode::SERVER).is_err());
        assert!(with(|p| p.version = Version::new(5)).is_err());
        assert!(with(|p| p.leap = LeapIndicator::Unsynchronized).is_err());
        assert!(with(|p| p.stratum = Stratum::UNSPECIFIED).is_err());
        assert!(with(|p| p.transmit_timestamp = NtpTimestamp::ZERO).is_err());
        assert!(
            with(|p| p.reference_timestamp = p.transmit_timestamp + NtpDuration::from_seconds(5))
                .is_err()
        );
    }
}
