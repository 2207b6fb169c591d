//! The clock discipline (RFC 5905 section 11.3, in chrony's manner): from the combined estimate of
//! each selection round it decides whether to step, slew or refuse, sets the frequency, and keeps
//! the exact record of every correction it ordered.
//!
//! # Why no PLL/FLL
//!
//! The RFC 5905 PLL/FLL is a feedback loop whose time constant is tied to the poll interval: it
//! needs tens of polls to settle a frequency error, and each of its updates is one filtered
//! offset. Here the frequency is measured directly, as chrony does: every source keeps its samples
//! in the *uncorrected timescale* (see [`crate::stats`]), where a free-running oscillator draws a
//! straight line, and the slope of that line is the frequency correction to set. The discipline
//! only has to apply what the estimate says: slew away the offset the line gives for now, and run
//! at the frequency it gives. For that it must know, to the nanosecond, what it has already done
//! to the clock: [`Discipline::correction`] is that record, kept as a [`SoftClock`] over the
//! uncorrected time axis, exactly the model the clocks themselves apply (a frequency correction
//! acts on the time of the clock underneath, not on the corrected time: at 0.5 % the difference
//! is 25 ppm).
//!
//! # Contract with the clock
//!
//! [`ClockAction::Slew`] means: from now on run at `frequency_ppm`, and add `offset` by running
//! `rate_ppm` faster (or slower) until it is in, replacing what is left of an earlier slew
//! (the model of [`SoftClock::slew`]). [`ClockAction::Step`] adds `offset` at once, cancels any
//! slew and then sets `frequency_ppm`. Time never runs backwards under a slew.

use std::collections::VecDeque;

use crate::leap::{Leap, LeapConfig, LeapFile, LeapKind, LeapMode, Leaps};
use crate::soft_clock::SoftClock;
use crate::time::{NtpDuration, NtpTimestamp};

/// Step threshold, 0.128 s (RFC 5905 appendix A.1.1, STEPT).
pub const DEFAULT_STEP_THRESHOLD: NtpDuration = NtpDuration::from_bits(549_755_814); // 0.128 * 2^32
/// Panic threshold, 1000 s (RFC 5905 appendix A.1.1, PANICT).
pub const DEFAULT_PANIC_THRESHOLD: NtpDuration = NtpDuration::from_seconds(1000);
/// Slew rate, 83333 ppm: a 0.1 s offset is slewed in 1.2 s (chrony's `maxslewrate`; the virtual
/// and simulated clocks apply any rate, the kernel's `adjtime` only 500 ppm).
pub const DEFAULT_MAX_SLEW_PPM: f64 = 83_333.0;
/// Largest frequency correction, 500000 ppm (chrony's `maxdrift`; RFC 5905 MAXFREQ is 500 ppm,
/// which a real oscillator that is 0.5% off would exceed).
pub const DEFAULT_MAX_FREQUENCY_PPM: f64 = 500_000.0;
/// Clock orders remembered: enough for every exchange in flight.
const MAX_RECORDS: usize = 32;
/// An estimate this many times less certain than the frequency in force is blended, not obeyed.
const POORER: f64 = 3.0;
/// Uncertainty of a frequency read from a drift file, ppm.
const SEEDED_SD_PPM: f64 = 5.0;

/// Thresholds and limits of the discipline.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct DisciplineConfig {
    /// Offsets above this are stepped, below it slewed.
    pub step_threshold: NtpDuration,
    /// After the first update, offsets above this are refused; `None` never refuses.
    pub panic_threshold: Option<NtpDuration>,
    /// How long an offset must stay above the step threshold after the first update before it is
    /// stepped (RFC 5905 WATCH is 900 s; 0 steps at once).
    pub stepout: NtpDuration,
    /// The fastest rate at which the clock slews away an offset, ppm: the clock's own.
    pub max_slew_ppm: f64,
    /// The slowest: a clock that slews at one fixed rate (the kernel's `adjtime`, 500 ppm) has
    /// both equal; others spread a small correction over part of the poll interval instead of
    /// slewing it at full speed, which would be a needless burst of frequency error.
    pub min_slew_ppm: f64,
    /// The largest frequency correction the clock accepts, ppm.
    pub max_frequency_ppm: f64,
    /// What the clock does at a leap second.
    pub leap: LeapConfig,
}

impl Default for DisciplineConfig {
    fn default() -> Self {
        Self {
            step_threshold: DEFAULT_STEP_THRESHOLD,
            panic_threshold: Some(DEFAULT_PANIC_THRESHOLD),
            stepout: NtpDuration::ZERO,
            max_slew_ppm: DEFAULT_MAX_SLEW_PPM,
            min_slew_ppm: 0.0,
            max_frequency_ppm: DEFAULT_MAX_FREQUENCY_PPM,
            leap: LeapConfig::default(),
        }
    }
}

/// What the discipline asks of the clock after an update.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum ClockAction {
    /// Add `offset` to the clock at once, then set its frequency correction to `frequency_ppm`.
    Step {
        /// The correction: positive moves the clock forward.
        offset: NtpDuration,
        /// The frequency correction to set, ppm (positive makes the clock run faster).
        frequency_ppm: f64,
    },
    /// Set the frequency correction to `frequency_ppm` and slew away `offset` at `rate_ppm`.
    Slew {
        /// The correction still to apply: positive moves the clock forward.
        offset: NtpDuration,
        /// The frequency correction to set, ppm (positive makes the clock run faster).
        frequency_ppm: f64,
        /// How fast to slew, ppm: between the config's `min_slew_ppm` and `max_slew_ppm`.
        rate_ppm: f64,
    },
    /// The leap second itself (`step` mode): add `offset` (-1 s for an inserted second) at once,
    /// as [`ClockAction::Step`] does. A clock whose kernel was told of the leap (and made it)
    /// does nothing.
    Leap {
        /// The correction: -1 s or +1 s.
        offset: NtpDuration,
        /// The frequency correction to set, ppm.
        frequency_ppm: f64,
    },
    /// The offset exceeds the panic threshold: nothing was changed; an operator must look.
    Refused {
        /// The offending offset.
        offset: NtpDuration,
    },
    /// A step waits out the stepout: nothing to do yet.
    Ignored,
}

/// What the sources say the clock should do now.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Estimate {
    /// The correction needed now: server minus local clock.
    pub offset: NtpDuration,
    /// The frequency correction the clock needs (s/s) and its standard error, if known.
    pub frequency: Option<(f64, f64)>,
    /// Over how long a small correction may be spread: a fraction of the poll interval, so it is
    /// in well before the next measurement.
    pub settle: NtpDuration,
}

/// The clock discipline: step, slew or refuse; frequency; the record of corrections.
#[derive(Clone, Debug)]
pub struct Discipline {
    config: DisciplineConfig,
    /// The corrections ordered so far (base = uncorrected time, reading = local time, both in
    /// nanoseconds from `epoch`, the local time of the first update, when the two were equal):
    /// the clock model after each order, with the uncorrected time from which it holds, newest
    /// last. The uncorrected time never jumps, so an exchange in flight while a new order was
    /// given is read in the model of its own time.
    records: VecDeque<(i128, SoftClock)>,
    /// Local time of the first update, the origin of the record; `None` before it (then the
    /// discipline has never acted: nothing is corrected, anything may be stepped).
    epoch: Option<NtpTimestamp>,
    /// The frequency correction in force (s/s) and the standard error it was known with (a
    /// drift file's, or the sources'), so that a much poorer estimate (a source that just
    /// restarted its line) is blended in rather than obeyed.
    frequency: f64,
    frequency_sd: f64,
    excursion_since: Option<NtpTimestamp>,
    /// The leaps: the clock's target is the leap-free time plus their correction.
    leaps: Leaps,
    /// The leap correction made so far by leap steps (`step` mode).
    leap_stepped: NtpDuration,
    /// The rate of the leap curve a primary clock was last told to follow, s/s.
    leap_rate: f64,
}

impl Discipline {
    /// A discipline that has not yet seen an estimate. `initial_frequency_ppm` is a drift-file
    /// value (what [`Discipline::frequency_ppm`] returned in an earlier run).
    pub fn new(config: DisciplineConfig, initial_frequency_ppm: Option<f64>) -> Self {
        let limit = config.max_frequency_ppm.abs();
        let seed = initial_frequency_ppm
            .filter(|f| f.is_finite())
            .map(|f| (f.clamp(-limit, limit) * 1e-6, SEEDED_SD_PPM * 1e-6));
        Self {
            config,
            records: VecDeque::from([(0, SoftClock::new(0, 0))]),
            epoch: None,
            frequency: seed.map_or(0.0, |s| s.0),
            frequency_sd: seed.map_or(f64::INFINITY, |s| s.1),
            excursion_since: None,
            leaps: Leaps::new(
                LeapConfig {
                    // Leave half of what the clock can do for the sources' corrections.
                    slew_rate: config
                        .leap
                        .slew_rate
                        .min(0.5e-6 * config.max_slew_ppm)
                        .min(0.5e-6 * config.max_frequency_ppm),
                    ..config.leap
                },
                None,
            ),
            leap_stepped: NtpDuration::ZERO,
            leap_rate: 0.0,
        }
    }

    /// The leaps known and in play.
    pub fn leaps(&self) -> &Leaps {
        &self.leaps
    }

    /// Uses `file` (or none) to know the coming leaps.
    pub fn set_leap_file(&mut self, file: Option<LeapFile>) {
        self.leaps.set_file(file);
    }

    /// Records the leap the selected sources announce at local time `now`.
    pub fn set_leap_vote(&mut self, now: NtpTimestamp, vote: Option<LeapKind>) {
        self.leaps.set_vote(now, vote);
    }

    /// What the leaps in play add to the clock's target at local time `now`: the sources'
    /// offsets are measured from the leap-free time, the clock should read that plus this.
    pub fn leap_target(&self, now: NtpTimestamp) -> NtpDuration {
        self.leaps.correction(now).0
    }

    /// Begins the coming leap once its time has come, and says what the clock must do for it at
    /// local time `now`, besides what the sources' estimate asks: in `step` mode the leap second
    /// itself at its instant; for a clock that follows no source (`primary`: a local reference),
    /// a slew or smear as a change of frequency at each turn of the curve (a disciplined clock
    /// gets those from its updates). A clock never disciplined does nothing: its first update
    /// includes the leap.
    pub fn advance_leap(
        &mut self,
        now: NtpTimestamp,
        primary: bool,
    ) -> (Option<Leap>, Option<ClockAction>) {
        let began = self.leaps.advance(now);
        let (target, rate) = self.leaps.correction(now);
        let acting = self.epoch.is_some() || primary;
        let step = target - self.leap_stepped;
        let frequency_ppm = (self.frequency + rate) * 1e6;
        let action = match self.leaps.mode() {
            LeapMode::Step if step != NtpDuration::ZERO => {
                self.leap_stepped = target;
                acting.then_some(ClockAction::Leap {
                    offset: step,
                    frequency_ppm,
                })
            }
            LeapMode::Slew | LeapMode::Smear if primary && rate != self.leap_rate => {
                self.leap_rate = rate;
                Some(ClockAction::Slew {
                    offset: NtpDuration::ZERO,
                    frequency_ppm,
                    rate_ppm: self.config.max_slew_ppm,
                })
            }
            _ => None,
        };
        if let Some(action) = action {
            self.epoch.get_or_insert(now);
            let (at, mut record) = self.base_of(now).unwrap_or((0, SoftClock::new(0, 0)));
            record.slew(at, 0, frequency_ppm, self.config.max_slew_ppm);
            if let ClockAction::Leap { offset, .. } = action {
                record.step(at, offset.as_nanos());
            }
            self.push_record(at, record);
        }
        (began, action)
    }

    /// The uncorrected time (counted from `epoch`, ns) at which the clock reads `local`, and the
    /// clock model in force then: the newest whose uncorrected start that reading falls after.
    /// (After a step back, readings repeat; they are taken as the later ones.)
    fn base_of(&self, local: NtpTimestamp) -> Option<(i128, SoftClock)> {
        let reading = (local - self.epoch?).as_nanos();
        let found = self.records.iter().rev().find_map(|(start, record)| {
            let base = record.base_at(reading);
            // A microsecond of slack: the reading at a model's own start must find that model.
            (base >= *start - 1000).then_some((base, *record))
        });
        let (_, oldest) = self.records.front()?;
        Some(found.unwrap_or((oldest.base_at(reading), *oldest)))
    }

    /// Everything the discipline has added to the clock up to local time `local`.
    pub fn correction(&self, local: NtpTimestamp) -> NtpDuration {
        self.base_of(local)
            .map_or(NtpDuration::ZERO, |(base, record)| {
                NtpDuration::from_nanos(record.correction(base))
            })
    }

    /// Local time `local` without the corrections: the time axis of the uncorrected timescale.
    pub fn uncorrected(&self, local: NtpTimestamp) -> NtpTimestamp {
        local - self.correction(local)
    }

    /// What the local clock reads at `uncorrected` time, by the newest clock model: the inverse of
    /// [`Discipline::uncorrected`].
    pub fn local_at(&self, uncorrected: NtpTimestamp) -> NtpTimestamp {
        let Some(epoch) = self.epoch else {
            return uncorrected;
        };
        let base = (uncorrected - epoch).as_nanos();
        let record = self
            .records
            .iter()
            .rev()
            .find(|(start, _)| *start <= base)
            .or(self.records.front())
            .map_or(SoftClock::new(0, 0), |(_, record)| *record);
        epoch + NtpDuration::from_nanos(record.read(base))
    }

    /// Someone else set the local clock by `jump`, seen at local time `now` (after it): recorded
    /// as a step of the reading, so the uncorrected timescale runs on unbroken and the sources'
    /// lines see the jump as an offset to correct.
    pub fn clock_jumped(&mut self, now: NtpTimestamp, jump: NtpDuration) {
        let Some((at, mut record)) = self.base_of(now - jump) else {
            return;
        };
        record.step(at, jump.as_nanos());
        self.push_record(at, record);
        if let Some(since) = &mut self.excursion_since {
            *since += jump;
        }
    }

    /// Decides what to do with the clock at local time `now`, given what the sources estimate.
    pub fn update(&mut self, now: NtpTimestamp, estimate: Estimate) -> ClockAction {
        let offset = estimate.offset;
        let first = self.epoch.is_none();
        if !first
            && self
                .config
                .panic_threshold
                .is_some_and(|p| offset.abs() > p)
        {
            return ClockAction::Refused { offset };
        }
        (self.frequency, self.frequency_sd) = self.frequency_from(estimate.frequency);
        // A leap slew or smear in progress moves the target at its own rate: run with it.
        let frequency_ppm = (self.frequency + self.leaps.correction(now).1) * 1e6;
        self.epoch.get_or_insert(now);
        let (at, mut record) = self.base_of(now).unwrap_or((0, SoftClock::new(0, 0)));
        if offset.abs() > self.config.step_threshold {
            let since = *self.excursion_since.get_or_insert(now);
            if !first && now - since < self.config.stepout {
                return ClockAction::Ignored;
            }
            self.excursion_since = None;
            return self.step_record(at, record, offset, frequency_ppm);
        }
        self.excursion_since = None;
        let rate_ppm = self.slew_rate(offset, estimate.settle);
        record.slew(at, offset.as_nanos(), frequency_ppm, rate_ppm);
        self.push_record(at, record);
        ClockAction::Slew {
            offset,
            frequency_ppm,
            rate_ppm,
        }
    }

    /// Steps the clock by `offset` at local time `now` whatever the thresholds say (an operator's
    /// `makestep`): a slew in progress ends, the frequency stays. Never refused: the operator
    /// asked for it.
    pub fn step_now(&mut self, now: NtpTimestamp, offset: NtpDuration) -> ClockAction {
        let frequency_ppm = (self.frequency + self.leaps.correction(now).1) * 1e6;
        self.epoch.get_or_insert(now);
        self.excursion_since = None;
        let (at, record) = self.base_of(now).unwrap_or((0, SoftClock::new(0, 0)));
        self.step_record(at, record, offset, frequency_ppm)
    }

    fn step_record(
        &mut self,
        at: i128,
        mut record: SoftClock,
        offset: NtpDuration,
        frequency_ppm: f64,
    ) -> ClockAction {
        record.slew(at, 0, frequency_ppm, self.config.max_slew_ppm);
        // The clock underneath does not jump: the reading does.
        record.step(at, offset.as_nanos());
        self.push_record(at, record);
        ClockAction::Step {
            offset,
            frequency_ppm,
        }
    }

    /// The rate that puts `offset` in over `settle`, within the clock's limits: a large offset is
    /// slewed as fast as the clock can, a small one gently (chrony spreads a correction similarly,
    /// over `corrtimeratio` update intervals; a short spread keeps the time error low).
    fn slew_rate(&self, offset: NtpDuration, settle: NtpDuration) -> f64 {
        let (min, max) = (self.config.min_slew_ppm, self.config.max_slew_ppm);
        let settle = settle.to_seconds_f64();
        let wanted = if settle > 0.0 {
            offset.to_seconds_f64().abs() / settle * 1e6
        } else {
            max
        };
        wanted.clamp(min.min(max), max)
    }

    fn push_record(&mut self, start: i128, record: SoftClock) {
        self.records.push_back((start, record));
        while self.records.len() > MAX_RECORDS {
            self.records.pop_front();
        }
    }

    /// The sources' frequency and its error, unless it is much poorer than the one in force
    /// ([`POORER`] times its error): then the inverse-variance blend of both.
    fn frequency_from(&self, measured: Option<(f64, f64)>) -> (f64, f64) {
        let limit = self.config.max_frequency_ppm.abs() * 1e-6;
        let (frequency, sd) = match measured.filter(|m| m.0.is_finite() && m.1 > 0.0) {
            Some((f, sd)) if sd > POORER * self.frequency_sd => {
                let (w, current) = (sd.powi(-2), self.frequency_sd.powi(-2));
                (
                    (f * w + self.frequency * current) / (w + current),
                    self.frequency_sd,
                )
            }
            Some(measured) => measured,
            None => (self.frequency, self.frequency_sd),
        };
        (frequency.clamp(-limit, limit), sd)
    }

    /// The current frequency correction, ppm: what the clock is told to run at, and the value to
    /// save in a drift file.
    pub fn frequency_ppm(&self) -> f64 {
        self.frequency * 1e6
    }

    /// True once the first estimate has been applied.
    pub fn is_synchronized(&self) -> bool {
        self.epoch.is_some()
    }

    /// The thresholds and limits in force.
    pub fn config(&self) -> &DisciplineConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: NtpTimestamp = NtpTimestamp::from_parts(3_900_000_000, 0);

    fn s(seconds: f64) -> NtpDuration {
        NtpDuration::from_seconds_f64(seconds)
    }

    fn estimate(offset: f64, frequency: Option<f64>) -> Estimate {
        Estimate {
            offset: s(offset),
            frequency: frequency.map(|f| (f, 1e-9)),
            settle: NtpDuration::ZERO,
        }
    }

    #[test]
    fn the_record_follows_the_slews_it_ordered() {
        let config = DisciplineConfig {
            max_slew_ppm: 500.0,
            ..DisciplineConfig::default()
        };
        let mut d = Discipline::new(config, None);
        assert_eq!(d.correction(T0), NtpDuration::ZERO);
        let action = d.update(T0, estimate(0.001, Some(10e-6)));
        assert_eq!(
            action,
            ClockAction::Slew {
                offset: s(0.001),
                frequency_ppm: 10.0,
                rate_ppm: 500.0,
            }
        );
        // 500 ppm removes 1 ms in 2 s of the clock underneath; the frequency adds 10 us per
        // second of it throughout. The local clock reads that time plus the corrections.
        for (under, slewed) in [(1.0, 0.0005), (2.0, 0.001), (5.0, 0.001)] {
            let expected = slewed + 10e-6 * under;
            let local = T0 + s(under + expected);
            let got = d.correction(local).to_seconds_f64();
            assert!(
                (got - expected).abs() < 1e-9,
                "{under} s: {got} vs {expected}"
            );
            assert!((d.uncorrected(local) - (T0 + s(under))).abs() < s(1e-9));
        }
    }

    #[test]
    fn a_step_moves_the_reading_not_the_clock_underneath() {
        let mut d = Discipline::new(DisciplineConfig::default(), None);
        let action = d.update(T0, estimate(0.3, Some(20e-6)));
        assert_eq!(
            action,
            ClockAction::Step {
                offset: s(0.3),
                frequency_ppm: 20.0
            }
        );
        // Just after the step the local clock reads T0 + 0.3 s; the uncorrected time is T0.
        let after = T0 + s(0.3);
        assert!((d.correction(after).to_seconds_f64() - 0.3).abs() < 1e-9);
        assert!((d.uncorrected(after) - T0).abs() < s(1e-9));
        // 100 s of the clock underneath later, 2 ms more of frequency correction.
        let later = after + s(100.002);
        assert!((d.correction(later).to_seconds_f64() - 0.302).abs() < 1e-9);
        assert!((d.uncorrected(later) - (T0 + s(100.0))).abs() < s(1e-9));
    }

    #[test]
    fn a_small_correction_is_spread_over_the_settle_time_within_the_clock_limits() {
        let config = DisciplineConfig {
            min_slew_ppm: 1.0,
            max_slew_ppm: 1000.0,
            ..DisciplineConfig::default()
        };
        let mut d = Discipline::new(config, None);
        let rate = |d: &mut Discipline, t: f64, offset: f64, settle: f64| {
            let estimate = Estimate {
                offset: s(offset),
                frequency: None,
                settle: s(settle),
            };
            match d.update(T0 + s(t), estimate) {
                ClockAction::Slew { rate_ppm, .. } => rate_ppm,
                other => panic!("slew expected, got {other:?}"),
            }
        };
        // 100 us over 16 s: 6.25 ppm; 100 ms over 16 s would be 6250 ppm: the clock's 1000.
        assert!((rate(&mut d, 0.0, 100e-6, 16.0) - 6.25).abs() < 1e-4);
        assert_eq!(rate(&mut d, 1.0, 0.1, 16.0), 1000.0);
        // 1 us over 16 s is below the slowest rate; no settle time means full speed.
        assert_eq!(rate(&mut d, 2.0, 1e-6, 16.0), 1.0);
        assert_eq!(rate(&mut d, 3.0, 1e-6, 0.0), 1000.0);
        // The record follows the chosen rate: half of 100 us is in after 8 s.
        rate(&mut d, 10.0, 100e-6, 16.0);
        let slewed = (d.correction(T0 + s(18.0)) - d.correction(T0 + s(10.0))).to_seconds_f64();
        assert!((slewed - 50e-6).abs() < 1e-7, "{slewed}");
    }

    #[test]
    fn the_first_update_may_step_2000_s_but_later_ones_are_refused() {
        let mut d = Discipline::new(DisciplineConfig::default(), None);
        assert!(matches!(
            d.update(T0, estimate(2000.0, None)),
            ClockAction::Step { .. }
        ));
        let later = T0 + s(2100.0);
        assert_eq!(
            d.update(later, estimate(2000.0, Some(1e-6))),
            ClockAction::Refused { offset: s(2000.0) }
        );
        assert_eq!(d.frequency_ppm(), 0.0, "a refusal changes nothing");
    }

    #[test]
    fn stepout_delays_a_step_after_synchronization() {
        let config = DisciplineConfig {
            stepout: NtpDuration::from_seconds(10),
            ..DisciplineConfig::default()
        };
        let mut d = Discipline::new(config, None);
        d.update(T0, estimate(0.0, None));
        for t in 1..=10 {
            assert_eq!(
                d.update(T0 + s(f64::from(t)), estimate(0.5, None)),
                ClockAction::Ignored
            );
        }
        assert!(matches!(
            d.update(T0 + s(11.0), estimate(0.5, None)),
            ClockAction::Step { .. }
        ));
    }

    #[test]
    fn a_drift_file_value_is_used_until_the_sources_know_better() {
        let mut d = Discipline::new(DisciplineConfig::default(), Some(-57.3));
        assert_eq!(d.frequency_ppm(), -57.3);
        // Unknown frequency: the drift file's.
        let ClockAction::Slew { frequency_ppm, .. } = d.update(T0, estimate(0.0, None)) else {
            panic!("slew expected");
        };
        assert!((frequency_ppm + 57.3).abs() < 1e-9);
        // A much poorer estimate is blended; one about as good wins.
        let poor = Estimate {
            offset: NtpDuration::ZERO,
            frequency: Some((-40e-6, 20e-6)),
            settle: NtpDuration::ZERO,
        };
        d.update(T0 + s(1.0), poor);
        assert!(
            (d.frequency_ppm() + 56.28).abs() < 0.01,
            "{}",
            d.frequency_ppm()
        );
        d.update(T0 + s(2.0), estimate(0.0, Some(-50e-6)));
        assert!((d.frequency_ppm() + 50.0).abs() < 1e-9);
        // Out-of-range seeds are clamped, nonsense is ignored.
        let clamped = Discipline::new(DisciplineConfig::default(), Some(9e9));
        assert_eq!(clamped.frequency_ppm(), DEFAULT_MAX_FREQUENCY_PPM);
        let nan = Discipline::new(DisciplineConfig::default(), Some(f64::NAN));
        assert_eq!(nan.frequency_ppm(), 0.0);
    }
}
