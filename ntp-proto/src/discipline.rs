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
//! to the clock: [`Discipline::correction`] is that record, kept as a [`SoftClock`] on the local
//! time axis, the same model the clocks themselves apply.
//!
//! # Contract with the clock
//!
//! [`ClockAction::Slew`] means: from now on run at `frequency_ppm`, and add `offset` by running
//! `max_slew_ppm` faster (or slower) until it is in, replacing what is left of an earlier slew
//! (the model of [`SoftClock::slew`]). [`ClockAction::Step`] adds `offset` at once, cancels any
//! slew and then sets `frequency_ppm`. Time never runs backwards under a slew.

use std::collections::VecDeque;

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
    /// The rate at which the clock slews away an offset, ppm: the clock's own.
    pub max_slew_ppm: f64,
    /// The largest frequency correction the clock accepts, ppm.
    pub max_frequency_ppm: f64,
}

impl Default for DisciplineConfig {
    fn default() -> Self {
        Self {
            step_threshold: DEFAULT_STEP_THRESHOLD,
            panic_threshold: Some(DEFAULT_PANIC_THRESHOLD),
            stepout: NtpDuration::ZERO,
            max_slew_ppm: DEFAULT_MAX_SLEW_PPM,
            max_frequency_ppm: DEFAULT_MAX_FREQUENCY_PPM,
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
    /// Set the frequency correction to `frequency_ppm` and slew away `offset` at `max_slew_ppm`.
    Slew {
        /// The correction still to apply: positive moves the clock forward.
        offset: NtpDuration,
        /// The frequency correction to set, ppm (positive makes the clock run faster).
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
}

/// The clock discipline: step, slew or refuse; frequency; the record of corrections.
#[derive(Clone, Debug)]
pub struct Discipline {
    config: DisciplineConfig,
    synchronized: bool,
    /// The corrections ordered so far, on the local time axis counted from `epoch` (nanoseconds):
    /// the clock model after each order, with the local time from which it holds, newest last.
    /// Exchanges in flight while a new order was given are read in the model of their time.
    records: VecDeque<(i128, SoftClock)>,
    epoch: Option<NtpTimestamp>,
    /// The frequency correction in force (s/s) and the standard error it was known with (a
    /// drift file's, or the sources'), so that a much poorer estimate (a source that just
    /// restarted its line) is blended in rather than obeyed.
    frequency: f64,
    frequency_sd: f64,
    excursion_since: Option<NtpTimestamp>,
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
            synchronized: false,
            records: VecDeque::from([(i128::MIN, SoftClock::new(0, 0))]),
            epoch: None,
            frequency: seed.map_or(0.0, |s| s.0),
            frequency_sd: seed.map_or(f64::INFINITY, |s| s.1),
            excursion_since: None,
        }
    }

    /// Everything the discipline has added to the clock up to local time `local`.
    pub fn correction(&self, local: NtpTimestamp) -> NtpDuration {
        match self.epoch {
            Some(epoch) => {
                let at = (local - epoch).as_nanos();
                NtpDuration::from_nanos(self.record_at(at).correction(at))
            }
            None => NtpDuration::ZERO,
        }
    }

    /// Local time `local` without the corrections: the time axis of the uncorrected timescale.
    pub fn uncorrected(&self, local: NtpTimestamp) -> NtpTimestamp {
        local - self.correction(local)
    }

    /// What is left of the slew in progress at `local`.
    pub fn remaining_slew(&self, local: NtpTimestamp) -> NtpDuration {
        match self.epoch {
            Some(epoch) => {
                let at = (local - epoch).as_nanos();
                NtpDuration::from_nanos(self.record_at(at).remaining_slew(at))
            }
            None => NtpDuration::ZERO,
        }
    }

    /// Someone else set the local clock by `jump`: the same instants now have local times `jump`
    /// later, and what this discipline added stays what it was.
    pub fn clock_jumped(&mut self, jump: NtpDuration) {
        if let Some(epoch) = &mut self.epoch {
            *epoch += jump;
        }
        if let Some(since) = &mut self.excursion_since {
            *since += jump;
        }
    }

    /// Decides what to do with the clock at local time `now`, given what the sources estimate.
    pub fn update(&mut self, now: NtpTimestamp, estimate: Estimate) -> ClockAction {
        let offset = estimate.offset;
        let first = !self.synchronized;
        if !first
            && self
                .config
                .panic_threshold
                .is_some_and(|p| offset.abs() > p)
        {
            return ClockAction::Refused { offset };
        }
        (self.frequency, self.frequency_sd) = self.frequency_from(estimate.frequency);
        let frequency_ppm = self.frequency * 1e6;
        let epoch = *self.epoch.get_or_insert(now);
        let at = (now - epoch).as_nanos();
        self.synchronized = true;
        if offset.abs() > self.config.step_threshold {
            let since = *self.excursion_since.get_or_insert(now);
            if !first && now - since < self.config.stepout {
                return ClockAction::Ignored;
            }
            self.excursion_since = None;
            let mut record = self.record_at(at);
            record.slew(at, 0, frequency_ppm, self.config.max_slew_ppm);
            record.step(at, offset.as_nanos());
            record.shift_base(offset.as_nanos());
            self.push_record(at + offset.as_nanos(), record);
            return ClockAction::Step {
                offset,
                frequency_ppm,
            };
        }
        self.excursion_since = None;
        let mut record = self.record_at(at);
        record.slew(
            at,
            offset.as_nanos(),
            frequency_ppm,
            self.config.max_slew_ppm,
        );
        self.push_record(at, record);
        ClockAction::Slew {
            offset,
            frequency_ppm,
        }
    }

    /// The clock model in force at `at` (nanoseconds from the epoch).
    fn record_at(&self, at: i128) -> SoftClock {
        self.records
            .iter()
            .rev()
            .find(|(start, _)| *start <= at)
            .or(self.records.front())
            .map_or(SoftClock::new(0, 0), |(_, record)| *record)
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
        self.synchronized
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
                frequency_ppm: 10.0
            }
        );
        // 500 ppm removes 1 ms in 2 s; the frequency adds 10 us per second throughout.
        for (elapsed, slewed) in [(1.0, 0.0005), (2.0, 0.001), (5.0, 0.001)] {
            let got = d.correction(T0 + s(elapsed)).to_seconds_f64();
            let expected = slewed + 10e-6 * elapsed;
            assert!(
                (got - expected).abs() < 1e-9,
                "{elapsed} s: {got} vs {expected}"
            );
        }
        assert!((d.remaining_slew(T0 + s(1.0)).to_seconds_f64() - 0.0005).abs() < 1e-9);
    }

    #[test]
    fn a_step_moves_the_local_axis_and_the_record_with_it() {
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
        // 100 s later (local), 2 ms more of frequency correction.
        let later = after + s(100.0);
        assert!((d.correction(later).to_seconds_f64() - 0.302).abs() < 1e-9);
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
