//! The clock filter (RFC 5905 section 10, appendix A.5.2): the last eight samples of one source,
//! of which the one with the lowest round-trip delay is the best estimate, since queueing only
//! ever adds delay and asymmetric error.
//!
//! Each [`ClockFilter::add`] shifts a sample in and picks the lowest-delay stage. The pick is
//! released to the caller only if it is newer than the last release (the RFC's prime directive: a
//! sample counts once, so a duplicated reply or an old low-delay stage never moves the clock twice)
//! and if it is not a popcorn spike (an offset jump beyond SGATE times the jitter, within two poll
//! intervals of the last release). A spike is held once: if the next pick agrees with it, the
//! level change is real and passes. Unlike the RFC's code, the jump is judged against the jitter
//! known *before* the new sample (see `is_spike`).
//!
//! Dispersions are stored as measured and aged at PHI when read, which is the RFC's "add PHI * dt
//! at every shift" without the bookkeeping.

use crate::packet::{PollInterval, Precision};
use crate::sample::{MAX_DISPERSION, PHI, Sample};
use crate::time::{NtpDuration, NtpTimestamp};

/// Number of filter stages, 8 (RFC 5905 section 7.2, NSTAGE).
pub const STAGES: usize = 8;
/// Popcorn spike gate: an offset jump beyond this many jitters is a spike, 3 (RFC 5905 section
/// 10, SGATE).
pub const SPIKE_GATE: f64 = 3.0;
/// Fewest earlier samples whose jitter may call a new pick a spike.
const SPIKE_HISTORY: usize = 3;
/// Poll interval assumed until [`ClockFilter::set_poll`] is called, 2^6 s (RFC 5905 MINPOLL).
pub const DEFAULT_POLL: PollInterval = PollInterval::new(6);

/// The filter's estimate of one source (RFC 5905 section 10: θ, δ, ε, ψ and t).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FilterOutput {
    /// Offset of the lowest-delay stage: add it to the local clock to correct it.
    pub offset: NtpDuration,
    /// Round-trip delay of that stage.
    pub delay: NtpDuration,
    /// Filter dispersion: stage dispersions aged at PHI, weighted 1/2, 1/4, ... in delay order.
    pub dispersion: NtpDuration,
    /// Peer jitter: RMS of the other stages' offsets from the chosen one, floored at the precision.
    pub jitter: NtpDuration,
    /// When the chosen sample was measured (its T4), local time.
    pub time: NtpTimestamp,
}

/// The 8-stage clock filter of one source (RFC 5905 section 10).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClockFilter {
    /// Newest first; `None` is an empty stage or a missed poll (MAXDISP).
    stages: [Option<Sample>; STAGES],
    jitter_floor: NtpDuration,
    poll: PollInterval,
    /// The latest pick, released or held, and when it was computed.
    estimate: Option<FilterOutput>,
    updated: NtpTimestamp,
    last_released: Option<NtpTimestamp>,
}

impl Default for ClockFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl ClockFilter {
    /// An empty filter for a clock of precision 2^-20 s (about 1 µs).
    pub fn new() -> Self {
        Self::with_precision(Precision::new(-20))
    }

    /// An empty filter whose jitter is never reported below the local clock's `precision`.
    pub fn with_precision(precision: Precision) -> Self {
        Self {
            stages: [None; STAGES],
            jitter_floor: precision.to_duration(),
            poll: DEFAULT_POLL,
            estimate: None,
            updated: NtpTimestamp::ZERO,
            last_released: None,
        }
    }

    /// Tells the filter the current poll interval, which sets the popcorn spike window.
    pub fn set_poll(&mut self, poll: PollInterval) {
        self.poll = poll;
    }

    /// Shifts in a sample received by `now` and returns the new best estimate, if it should be
    /// used: newer than the last one released and not a popcorn spike (RFC 5905 section 10).
    pub fn add(&mut self, sample: Sample, now: NtpTimestamp) -> Option<FilterOutput> {
        self.shift(Some(sample), now);
        let previous = self.estimate;
        self.estimate = self.evaluate(now);
        let out = self.estimate?;
        if let Some(last) = self.last_released
            && out.time - last <= NtpDuration::ZERO
        {
            return None;
        }
        if self.is_spike(&out, previous) {
            return None;
        }
        self.last_released = Some(out.time);
        Some(out)
    }

    /// Records a poll that got no reply: shifts in an empty stage of dispersion MAXDISP, so the
    /// estimate's dispersion grows (RFC 5905 section 13, `clock_filter(p, 0, 0, MAXDISP)`).
    pub fn add_missing(&mut self, now: NtpTimestamp) {
        self.shift(None, now);
        self.estimate = self.evaluate(now);
    }

    /// Forgets every sample, as after a clock step, which makes them all wrong (RFC 5905 section
    /// 10, `clear()`).
    pub fn clear(&mut self) {
        self.stages = [None; STAGES];
        self.estimate = None;
        self.last_released = None;
    }

    /// The latest estimate, released or held; `None` while no stage holds a sample.
    pub fn estimate(&self) -> Option<FilterOutput> {
        self.estimate
    }

    /// The filter dispersion aged to `now`: it grows at PHI since the last update, and is MAXDISP
    /// while the filter is empty (RFC 5905 section 11.2, root_dist()).
    pub fn dispersion(&self, now: NtpTimestamp) -> NtpDuration {
        self.estimate.map_or(MAX_DISPERSION, |e| {
            (e.dispersion + aging(self.updated, now)).min(MAX_DISPERSION)
        })
    }

    /// The measurement time of the last released sample.
    pub fn last_released(&self) -> Option<NtpTimestamp> {
        self.last_released
    }

    /// How many stages hold a real sample.
    pub fn valid_stages(&self) -> usize {
        self.stages.iter().flatten().count()
    }

    fn shift(&mut self, stage: Option<Sample>, now: NtpTimestamp) {
        self.stages.rotate_right(1);
        self.stages[0] = stage;
        self.updated = now;
    }

    /// Picks the lowest-delay stage (newest on ties) and computes dispersion and jitter at `now`.
    fn evaluate(&self, now: NtpTimestamp) -> Option<FilterOutput> {
        let mut valid: Vec<(usize, &Sample)> = self
            .stages
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .collect();
        valid.sort_by_key(|(i, s)| (s.delay, *i));
        let best = valid.first()?.1;
        Some(FilterOutput {
            offset: best.offset,
            delay: best.delay,
            dispersion: self.filter_dispersion(&valid, now),
            jitter: self.jitter(&valid, best.offset),
            time: best.time,
        })
    }

    /// ε = Σ ε_i / 2^(i+1) over the stages in delay order, empty stages last at MAXDISP.
    fn filter_dispersion(&self, sorted: &[(usize, &Sample)], now: NtpTimestamp) -> NtpDuration {
        (0..STAGES)
            .map(|rank| {
                let aged = sorted.get(rank).map_or(MAX_DISPERSION, |(_, s)| {
                    (s.dispersion + aging(s.time, now)).min(MAX_DISPERSION)
                });
                NtpDuration::from_bits(aged.to_bits() >> (rank + 1))
            })
            .fold(NtpDuration::ZERO, |sum, d| sum + d)
    }

    /// ψ = sqrt(Σ (θ_i - θ_0)^2 / (m - 1)) over the m valid stages (RFC 5905 section 10).
    fn jitter(&self, valid: &[(usize, &Sample)], best: NtpDuration) -> NtpDuration {
        let sum: f64 = valid
            .iter()
            .map(|(_, s)| (s.offset - best).to_seconds_f64().powi(2))
            .sum();
        let rms = (sum / valid.len().saturating_sub(1).max(1) as f64).sqrt();
        NtpDuration::from_seconds_f64(rms).max(self.jitter_floor)
    }

    /// A jump beyond SGATE jitters from the previous pick, within two poll intervals of the last
    /// release, is a popcorn spike (RFC 5905 section 10). The jitter is the one known before this
    /// sample: the RFC's formula measures it from the new pick, so a lone spike picked as best
    /// would set the jitter to its own jump and never be caught. It must rest on a few samples.
    fn is_spike(&self, out: &FilterOutput, previous: Option<FilterOutput>) -> bool {
        let (Some(previous), Some(last)) = (previous, self.last_released) else {
            return false;
        };
        let jump = (out.offset - previous.offset).abs().to_seconds_f64();
        let window = self.poll.to_duration() + self.poll.to_duration();
        self.valid_stages() > SPIKE_HISTORY
            && jump > SPIKE_GATE * previous.jitter.to_seconds_f64()
            && out.time - last < window
    }
}

/// PHI times the time elapsed from `since` to `now` (never negative).
fn aging(since: NtpTimestamp, now: NtpTimestamp) -> NtpDuration {
    (now - since).max(NtpDuration::ZERO).mul_f64(PHI)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(seconds: f64) -> NtpDuration {
        NtpDuration::from_seconds_f64(seconds)
    }

    fn at(seconds: f64) -> NtpTimestamp {
        NtpTimestamp::from_parts(3_900_000_000, 0) + s(seconds)
    }

    fn sample(time: f64, offset: f64, delay: f64) -> Sample {
        Sample {
            offset: s(offset),
            delay: s(delay),
            dispersion: s(0.000_1),
            time: at(time),
        }
    }

    /// Feeds one sample per second, received at its own time.
    fn feed(filter: &mut ClockFilter, samples: &[Sample]) -> Vec<Option<FilterOutput>> {
        samples.iter().map(|x| filter.add(*x, x.time)).collect()
    }

    fn close(a: NtpDuration, b: f64, tolerance: f64) -> bool {
        (a.to_seconds_f64() - b).abs() <= tolerance
    }

    #[test]
    fn the_first_sample_is_released_with_seven_empty_stages_of_dispersion() {
        let mut f = ClockFilter::new();
        assert_eq!(f.estimate(), None);
        assert_eq!(f.dispersion(at(0.0)), MAX_DISPERSION);
        let out = f.add(sample(0.0, 0.002, 0.010), at(0.0)).expect("first");
        assert_eq!(
            (out.offset, out.delay, out.time),
            (s(0.002), s(0.010), at(0.0))
        );
        // 0.1 ms / 2 + 16 s * (1/4 + 1/8 + ... + 1/256) = 0.00005 + 7.9375.
        assert!(
            close(out.dispersion, 0.000_05 + 7.9375, 1e-6),
            "{}",
            out.dispersion
        );
        assert_eq!(out.jitter, Precision::new(-20).to_duration());
        assert_eq!(f.estimate(), Some(out));
    }

    #[test]
    fn the_lowest_delay_stage_wins_and_is_released_once() {
        let mut f = ClockFilter::new();
        f.set_poll(PollInterval::new(0));
        let out = feed(
            &mut f,
            &[
                sample(0.0, 0.003, 0.030),
                sample(1.0, 0.001, 0.010),
                sample(2.0, 0.002, 0.020),
                sample(3.0, 0.0015, 0.015),
            ],
        );
        assert_eq!(out[0].map(|o| o.offset), Some(s(0.003)));
        assert_eq!(out[1].map(|o| o.offset), Some(s(0.001)));
        // The 10 ms stage is still best but already released: nothing new to say.
        assert_eq!(out[2], None);
        assert_eq!(out[3], None);
        assert_eq!(f.estimate().map(|e| e.time), Some(at(1.0)));
        let newer = f.add(sample(4.0, 0.0012, 0.005), at(4.0));
        assert_eq!(
            newer.map(|o| (o.offset, o.time)),
            Some((s(0.0012), at(4.0)))
        );
    }

    #[test]
    fn a_duplicate_or_older_sample_never_counts_twice() {
        let mut f = ClockFilter::new();
        let x = sample(10.0, 0.001, 0.010);
        assert!(f.add(x, at(10.0)).is_some());
        assert_eq!(f.add(x, at(10.5)), None, "duplicate reply");
        // Older than the last release, even with a lower delay.
        assert_eq!(f.add(sample(9.0, 0.001, 0.001), at(11.0)), None);
        assert_eq!(f.last_released(), Some(at(10.0)));
        assert_eq!(f.valid_stages(), 3);
    }

    #[test]
    fn jitter_is_the_rms_of_offset_differences_from_the_pick() {
        let mut f = ClockFilter::with_precision(Precision::new(-30));
        let offsets = [0.004, -0.002, 0.001, 0.003];
        for (i, o) in offsets.iter().enumerate() {
            // Equal delays: the newest stage (the last offset) is the pick.
            f.add(sample(i as f64, *o, 0.010), at(i as f64));
        }
        let e = f.estimate().expect("four stages");
        assert_eq!(e.offset, s(0.003));
        let expected = (offsets.iter().map(|o| (o - 0.003f64).powi(2)).sum::<f64>() / 3.0).sqrt();
        assert!(
            close(e.jitter, expected, 1e-9),
            "{} vs {expected}",
            e.jitter
        );
    }

    #[test]
    fn a_popcorn_spike_is_held_once_and_a_real_level_change_passes() {
        let mut f = ClockFilter::new();
        f.set_poll(PollInterval::new(0));
        let steady: Vec<Sample> = (0..8)
            .map(|i| {
                sample(
                    f64::from(i),
                    0.001 + 1e-5 * f64::from(i % 3),
                    0.010 - 1e-4 * f64::from(i),
                )
            })
            .collect();
        assert!(feed(&mut f, &steady).iter().all(Option::is_some));
        // +50 ms with the lowest delay yet, one poll after the last release: a spike.
        assert_eq!(f.add(sample(8.0, 0.050, 0.001), at(8.0)), None);
        assert_eq!(f.estimate().map(|e| e.offset), Some(s(0.050)));
        // It happens again: the level really changed.
        let out = f
            .add(sample(9.0, 0.0501, 0.0009), at(9.0))
            .expect("confirmed");
        assert_eq!(out.offset, s(0.0501));
    }

    #[test]
    fn a_jump_after_a_long_silence_is_not_a_spike() {
        let mut f = ClockFilter::new();
        f.set_poll(PollInterval::new(0));
        let steady: Vec<Sample> = (0..5)
            .map(|i| sample(f64::from(i), 0.001, 0.010 - 0.001 * f64::from(i)))
            .collect();
        assert!(feed(&mut f, &steady).iter().all(Option::is_some));
        let jump = |time: f64| sample(time, 0.080, 0.001);
        // One second after the last release it is a spike...
        assert_eq!(f.clone().add(jump(5.0), at(5.0)), None);
        // ...three seconds after, beyond two poll intervals of 1 s, it is news.
        let out = f.add(jump(7.0), at(7.0));
        assert_eq!(out.map(|o| o.offset), Some(s(0.080)));
    }

    #[test]
    fn dispersion_ages_at_phi() {
        let mut f = ClockFilter::new();
        let out = f.add(sample(0.0, 0.0, 0.010), at(0.0)).expect("first");
        let later = f.dispersion(at(1000.0)) - f.dispersion(at(0.0));
        assert!(close(later, PHI * 1000.0, 1e-9), "{later}");
        assert_eq!(f.dispersion(at(0.0)), out.dispersion);
        // A higher-delay sample leaves the old stage best (and already released), but the old
        // stage carries its age into the new dispersion.
        assert_eq!(f.add(sample(1000.0, 0.0, 0.020), at(1000.0)), None);
        let next = f.estimate().expect("two stages");
        assert_eq!(next.time, at(0.0), "lower delay still wins");
        let expected = (0.000_1 + PHI * 1000.0) / 2.0 + 0.000_1 / 4.0 + 16.0 * (0.25 - 1.0 / 256.0);
        assert!(
            close(next.dispersion, expected, 1e-6),
            "{}",
            next.dispersion
        );
    }

    #[test]
    fn missed_polls_shift_in_maxdisp_and_release_nothing() {
        let mut f = ClockFilter::new();
        // The lowest delay comes first, then the filter fills with eight real samples.
        let full: Vec<Sample> = (0..8)
            .map(|i| sample(f64::from(i), 0.001, 0.010 + 0.001 * f64::from(i)))
            .collect();
        feed(&mut f, &full);
        let mut before = f.dispersion(at(8.0));
        for i in 0..STAGES {
            let now = at(8.0 + i as f64);
            f.add_missing(now);
            assert!(f.dispersion(now) > before, "miss {i}");
            before = f.dispersion(now);
            if i < STAGES - 1 {
                assert_eq!(f.estimate().map(|e| e.offset), Some(s(0.001)));
            }
        }
        assert_eq!(f.valid_stages(), 0);
        assert_eq!(f.estimate(), None);
        assert_eq!(f.dispersion(at(16.0)), MAX_DISPERSION);
        assert_eq!(f.last_released(), Some(at(0.0)), "misses release nothing");
        // An empty stage is never picked.
        let out = f
            .add(sample(17.0, 0.002, 0.050), at(17.0))
            .expect("real sample");
        assert_eq!(out.offset, s(0.002));
    }

    #[test]
    fn clear_forgets_everything_so_a_stepped_timescale_starts_fresh() {
        let mut f = ClockFilter::with_precision(Precision::new(-10));
        f.set_poll(PollInterval::new(2));
        f.add(sample(100.0, 0.3, 0.010), at(100.0));
        f.clear();
        assert_eq!(f.estimate(), None);
        assert_eq!(f.valid_stages(), 0);
        assert_eq!(f.last_released(), None);
        // After stepping back 60 s, timestamps are earlier than the last release: still used.
        let out = f.add(sample(40.0, 0.0, 0.010), at(40.0)).expect("fresh");
        assert_eq!(out.jitter, Precision::new(-10).to_duration(), "floor kept");
        assert_eq!(f, {
            let mut g = ClockFilter::with_precision(Precision::new(-10));
            g.set_poll(PollInterval::new(2));
            g.add(sample(40.0, 0.0, 0.010), at(40.0));
            g
        });
    }

    #[test]
    fn samples_across_the_2036_rollover_keep_their_order() {
        let end_of_era = NtpTimestamp::from_parts(u32::MAX, 0);
        let mut f = ClockFilter::new();
        let first = Sample {
            time: end_of_era,
            ..sample(0.0, 0.001, 0.010)
        };
        let second = Sample {
            time: end_of_era + s(2.0),
            ..sample(0.0, 0.001, 0.005)
        };
        assert!(f.add(first, first.time).is_some());
        assert_eq!(second.time.seconds(), 1, "era 1");
        assert_eq!(
            f.add(second, second.time).map(|o| o.time),
            Some(second.time)
        );
    }
}
