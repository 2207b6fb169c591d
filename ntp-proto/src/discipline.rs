//! The clock discipline (RFC 5905 section 11.3 and appendix A.5.5.6, in chrony's manner): from the
//! combined offset of each selection round it decides whether to step or slew the clock, estimates
//! the clock's frequency error, and adapts the poll interval.
//!
//! # Why a least-squares frequency estimate, not the RFC's PLL/FLL
//!
//! The RFC 5905 PLL/FLL is a feedback loop whose time constant is tied to the poll interval: at
//! poll 0 it still needs tens of updates to settle a frequency error, its FLL half needs the
//! Allan intercept (about 1500 s) before it trusts itself, and ntpd's start-up measures the
//! frequency over a fixed 900 s. Here the frequency is measured directly instead, as chrony does:
//! every offset is moved into the *uncorrected timescale* (the offset the clock would show had we
//! never corrected it: measured offset plus every correction applied so far, which this module
//! knows exactly because it issued them), and a least-squares line through the last
//! [`FIT_SAMPLES`] points gives the frequency error as its slope. Its standard error is known, so
//! the estimate is blended with the prior (a drift-file value, or nothing) by inverse variance.
//! Two updates already give a frequency, a handful give it to a few ppm whatever the poll
//! interval, and at long polls the same line spans hours and is correspondingly precise. The phase
//! is closed at every update by slewing away the fitted offset, so errors in the frequency never
//! accumulate.
//!
//! A point that the line does not predict (beyond six sigma) is held once; if the next one is just
//! as surprising the offset really changed (a server was stepped, the system peer changed), so the
//! fit restarts from those two points, keeping the frequency as the prior.
//!
//! # Contract with the clock
//!
//! [`ClockAction::Slew`] means: set the clock's frequency correction to `frequency_ppm`, and remove
//! `offset` by running an extra `max_slew_ppm` faster (or slower) until it is gone, exactly as
//! Linux's `adjtime` does at 500 ppm; a new action cancels what is left of the previous slew.
//! [`slew_progress`] computes how much of a slew such a clock has applied, for clock
//! implementations and for [`Discipline::correction_since`]. Time never runs backwards: the slew
//! changes the rate by at most `max_slew_ppm`. After a [`ClockAction::Step`] the caller must clear
//! every clock filter, whose samples are now wrong.

use std::collections::VecDeque;

use crate::packet::PollInterval;
use crate::time::{NtpDuration, NtpTimestamp};

/// Step threshold, 0.128 s (RFC 5905 appendix A.1.1, STEPT).
pub const DEFAULT_STEP_THRESHOLD: NtpDuration = NtpDuration::from_bits(549_755_814); // 0.128 * 2^32
/// Panic threshold, 1000 s (RFC 5905 appendix A.1.1, PANICT).
pub const DEFAULT_PANIC_THRESHOLD: NtpDuration = NtpDuration::from_seconds(1000);
/// Largest slew rate, 500 ppm (RFC 5905 section 11.3; Linux `adjtime`).
pub const DEFAULT_MAX_SLEW_PPM: f64 = 500.0;
/// Largest frequency correction, 500 ppm (RFC 5905 appendix A.1.1, MAXFREQ).
pub const DEFAULT_MAX_FREQUENCY_PPM: f64 = 500.0;
/// Points in the frequency fit: enough to average noise, few enough to follow thermal wander.
pub const FIT_SAMPLES: usize = 16;
/// An offset under this many noise sigmas counts toward a longer poll (RFC 5905 appendix A.1.1,
/// PGATE).
pub const POLL_GATE: f64 = 4.0;
/// Net good updates to double the poll interval; a bad update counts -2, so three halve it (the
/// RFC's LIMIT of 30 with its increments of `poll` and `2 * poll` at poll 6, appendix A.5.5.2).
const POLL_LIMIT: i32 = 6;
/// A point beyond this many sigmas of the fitted line is a surprise.
const OUTLIER_GATE: f64 = 6.0;
/// The fit must hold this many points before it judges new ones.
const MIN_GATE_POINTS: usize = 4;
/// Uncertainty of a frequency read from a drift file, ppm.
const SEEDED_SKEW_PPM: f64 = 5.0;
/// Floor of the measurement noise, seconds: about the best a user-space timestamp achieves, so
/// that a near-perfect path does not make the outlier gate hair-trigger.
const MIN_NOISE: f64 = 10e-6;
/// Correction segments kept for [`Discipline::correction_since`].
const MAX_SEGMENTS: usize = 64;

/// Thresholds and limits of the discipline.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct DisciplineConfig {
    /// Offsets above this are stepped, below it slewed.
    pub step_threshold: NtpDuration,
    /// After the first update, offsets above this are refused; `None` never refuses.
    pub panic_threshold: Option<NtpDuration>,
    /// How long an offset must stay above the step threshold before a step (RFC 5905 WATCH is
    /// 900 s; 0 steps on the second consecutive update that confirms it).
    pub stepout: NtpDuration,
    /// The rate at which the clock slews away an offset, ppm.
    pub max_slew_ppm: f64,
    /// The largest frequency correction the clock accepts, ppm.
    pub max_frequency_ppm: f64,
    /// The shortest poll interval.
    pub min_poll: PollInterval,
    /// The longest poll interval.
    pub max_poll: PollInterval,
}

impl Default for DisciplineConfig {
    fn default() -> Self {
        Self {
            step_threshold: DEFAULT_STEP_THRESHOLD,
            panic_threshold: Some(DEFAULT_PANIC_THRESHOLD),
            stepout: NtpDuration::ZERO,
            max_slew_ppm: DEFAULT_MAX_SLEW_PPM,
            max_frequency_ppm: DEFAULT_MAX_FREQUENCY_PPM,
            min_poll: PollInterval::new(6),
            max_poll: PollInterval::new(10),
        }
    }
}

/// What the discipline asks of the clock after an update.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum ClockAction {
    /// Add `offset` to the clock at once, then set its frequency correction to `frequency_ppm`.
    /// Clear every clock filter afterwards.
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
    /// The update was held (a possible spike, or a step waiting out the stepout) or repeated the
    /// previous update's time; nothing to do.
    Ignored,
}

/// How much of a slew of `offset` a clock slewing at `max_slew_ppm` has applied after `elapsed`.
pub fn slew_progress(offset: NtpDuration, max_slew_ppm: f64, elapsed: NtpDuration) -> NtpDuration {
    if elapsed <= NtpDuration::ZERO {
        return NtpDuration::ZERO;
    }
    let done = elapsed.mul_f64(max_slew_ppm * 1e-6);
    if done >= offset.abs() {
        offset
    } else if offset.is_negative() {
        -done
    } else {
        done
    }
}

/// One measurement in the uncorrected timescale.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Point {
    /// Local time of the measurement.
    time: NtpTimestamp,
    /// Measured offset plus all corrections applied up to `time`.
    uncorrected: NtpDuration,
}

/// What the discipline did to the clock from `start` on, in the current local timescale.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Segment {
    start: NtpTimestamp,
    /// Total correction applied before `start`.
    base: NtpDuration,
    frequency_ppm: f64,
    slew: NtpDuration,
}

/// A frequency correction and its standard error, ppm.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Estimate {
    frequency_ppm: f64,
    skew_ppm: f64,
}

/// The fitted line: the centroid of the points; the slope is the current [`Estimate`].
#[derive(Clone, Copy, PartialEq, Debug)]
struct Centroid {
    time: NtpTimestamp,
    uncorrected: NtpDuration,
}

/// The clock discipline: step, slew or refuse; frequency; poll interval (RFC 5905 section 11.3).
#[derive(Clone, Debug)]
pub struct Discipline {
    config: DisciplineConfig,
    synchronized: bool,
    points: VecDeque<Point>,
    centroid: Option<Centroid>,
    prior: Estimate,
    estimate: Estimate,
    /// Measurement noise in seconds: fit residuals or the caller's jitter, whichever is larger.
    noise: f64,
    segments: VecDeque<Segment>,
    suspect: Option<Point>,
    excursion_since: Option<NtpTimestamp>,
    poll: PollInterval,
    poll_score: i32,
}

impl Discipline {
    /// A discipline that has not yet seen an offset. `initial_frequency_ppm` is a drift-file value
    /// (the frequency correction saved by [`Discipline::frequency_ppm`] in an earlier run).
    pub fn new(config: DisciplineConfig, initial_frequency_ppm: Option<f64>) -> Self {
        let limit = config.max_frequency_ppm.abs();
        let prior = match initial_frequency_ppm.filter(|f| f.is_finite()) {
            Some(f) => Estimate {
                frequency_ppm: f.clamp(-limit, limit),
                skew_ppm: SEEDED_SKEW_PPM,
            },
            None => Estimate {
                frequency_ppm: 0.0,
                skew_ppm: limit.max(SEEDED_SKEW_PPM),
            },
        };
        Self {
            config,
            synchronized: false,
            points: VecDeque::with_capacity(FIT_SAMPLES + 1),
            centroid: None,
            prior,
            estimate: prior,
            noise: MIN_NOISE,
            segments: VecDeque::new(),
            suspect: None,
            excursion_since: None,
            poll: config.min_poll,
            poll_score: 0,
        }
    }

    /// Feeds the combined offset measured at local time `now` (server minus local clock) with its
    /// jitter, and returns what to do to the clock. Offsets measured earlier should first be
    /// brought up to `now` by subtracting [`Discipline::correction_since`] their measurement.
    pub fn update(
        &mut self,
        now: NtpTimestamp,
        offset: NtpDuration,
        jitter: NtpDuration,
    ) -> ClockAction {
        if !self.synchronized {
            return self.first_update(now, offset, jitter);
        }
        match self.points.back().map(|p| now - p.time) {
            Some(elapsed) if elapsed == NtpDuration::ZERO => return ClockAction::Ignored,
            Some(elapsed) if elapsed.is_negative() => self.rebase(now),
            _ => {}
        }
        if self
            .config
            .panic_threshold
            .is_some_and(|p| offset.abs() > p)
        {
            return ClockAction::Refused { offset };
        }
        let point = Point {
            time: now,
            uncorrected: offset + self.correction_at(now),
        };
        if self.is_surprising(point, offset, jitter) {
            let Some(first) = self.suspect.replace(point) else {
                return ClockAction::Ignored;
            };
            self.restart_fit(first);
        }
        self.suspect = None;
        self.add_point(point, jitter);
        if offset.abs() > self.config.step_threshold {
            let since = *self.excursion_since.get_or_insert(now);
            if now - since < self.config.stepout {
                return ClockAction::Ignored;
            }
            return self.step(now, offset);
        }
        self.excursion_since = None;
        self.adapt_poll(offset);
        self.slew(now)
    }

    /// The current frequency correction, ppm: what the clock is told to run at, and the value to
    /// save in a drift file.
    pub fn frequency_ppm(&self) -> f64 {
        self.estimate.frequency_ppm
    }

    /// The standard error of the frequency estimate, ppm (chrony's "skew").
    pub fn frequency_skew_ppm(&self) -> f64 {
        self.estimate.skew_ppm
    }

    /// The poll interval the discipline wants (RFC 5905 section 13 and appendix A.5.5.2).
    pub fn poll(&self) -> PollInterval {
        self.poll
    }

    /// True once the first offset has been applied.
    pub fn is_synchronized(&self) -> bool {
        self.synchronized
    }

    /// The thresholds and limits in force.
    pub fn config(&self) -> &DisciplineConfig {
        &self.config
    }

    /// Measurement noise as the discipline sees it: the fit's residuals or the last jitter.
    pub fn noise(&self) -> NtpDuration {
        NtpDuration::from_seconds_f64(self.noise)
    }

    /// The correction this discipline's actions applied to the clock between local times `then`
    /// and `now` (slews and frequency; steps only within the history it keeps). An offset measured
    /// at `then` minus this is the offset at `now`.
    pub fn correction_since(&self, then: NtpTimestamp, now: NtpTimestamp) -> NtpDuration {
        self.correction_at(now) - self.correction_at(then)
    }

    fn first_update(
        &mut self,
        now: NtpTimestamp,
        offset: NtpDuration,
        jitter: NtpDuration,
    ) -> ClockAction {
        self.synchronized = true;
        self.segments.push_back(Segment {
            start: now,
            base: NtpDuration::ZERO,
            frequency_ppm: self.estimate.frequency_ppm,
            slew: NtpDuration::ZERO,
        });
        let point = Point {
            time: now,
            uncorrected: offset,
        };
        self.add_point(point, jitter);
        if offset.abs() > self.config.step_threshold {
            self.step(now, offset)
        } else {
            self.slew(now)
        }
    }

    /// Appends a point (dropping the oldest beyond [`FIT_SAMPLES`]) and refits.
    fn add_point(&mut self, point: Point, jitter: NtpDuration) {
        self.points.push_back(point);
        while self.points.len() > FIT_SAMPLES {
            self.points.pop_front();
        }
        self.refit(jitter.to_seconds_f64());
    }

    /// Least squares through the points, blended with the prior by inverse variance.
    fn refit(&mut self, jitter: f64) {
        let Some(newest) = self.points.back().copied() else {
            return;
        };
        let n = self.points.len() as f64;
        let xy: Vec<(f64, f64)> = self
            .points
            .iter()
            .map(|p| {
                let x = (p.time - newest.time).to_seconds_f64();
                (x, (p.uncorrected - newest.uncorrected).to_seconds_f64())
            })
            .collect();
        let (mean_x, mean_y) = xy
            .iter()
            .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
        let sxx: f64 = xy.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
        let sxy: f64 = xy.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
        self.centroid = Some(Centroid {
            time: newest.time + NtpDuration::from_seconds_f64(mean_x),
            uncorrected: newest.uncorrected + NtpDuration::from_seconds_f64(mean_y),
        });
        self.noise = residual_rms(&xy, mean_x, mean_y, sxx, sxy)
            .max(jitter)
            .max(MIN_NOISE);
        self.estimate = if sxx > 0.0 {
            let measured = Estimate {
                frequency_ppm: sxy / sxx * 1e6,
                skew_ppm: self.noise / sxx.sqrt() * 1e6,
            };
            blend(self.prior, measured, self.config.max_frequency_ppm)
        } else {
            self.prior
        };
    }

    /// The uncorrected offset the fitted line predicts at `time`.
    fn predict(&self, time: NtpTimestamp) -> Option<NtpDuration> {
        self.centroid
            .map(|c| c.uncorrected + (time - c.time).mul_f64(self.estimate.frequency_ppm * 1e-6))
    }

    /// A point is a surprise if the line (once it has enough points) does not predict it within
    /// [`OUTLIER_GATE`] sigmas; before that, if it starts an excursion beyond the step threshold.
    fn is_surprising(&self, point: Point, offset: NtpDuration, jitter: NtpDuration) -> bool {
        let centroid = self
            .centroid
            .filter(|_| self.points.len() >= MIN_GATE_POINTS);
        let (Some(predicted), Some(centroid)) = (self.predict(point.time), centroid) else {
            return offset.abs() > self.config.step_threshold && self.excursion_since.is_none();
        };
        let noise = self.noise.max(jitter.to_seconds_f64());
        let extrapolation = (point.time - centroid.time).to_seconds_f64() * self.estimate.skew_ppm;
        let sigma = noise.hypot(extrapolation * 1e-6);
        (point.uncorrected - predicted).to_seconds_f64().abs() > OUTLIER_GATE * sigma
    }

    /// The offset changed under the fit: start again from `first`, keeping the frequency as the
    /// prior, with its uncertainty at least what a drift file would have, and poll more often.
    fn restart_fit(&mut self, first: Point) {
        self.restart_fit_empty();
        self.points.push_back(first);
        let shorter = self
            .poll
            .get()
            .saturating_sub(1)
            .max(self.config.min_poll.get());
        self.poll = PollInterval::new(shorter);
    }

    fn restart_fit_empty(&mut self) {
        self.prior = Estimate {
            frequency_ppm: self.estimate.frequency_ppm,
            skew_ppm: self.estimate.skew_ppm.max(SEEDED_SKEW_PPM),
        };
        self.points.clear();
        self.centroid = None;
        self.suspect = None;
        self.poll_score = 0;
    }

    /// Local time went backwards: someone else stepped the clock. Nothing remembered is in the
    /// current timescale any more; keep only the frequency.
    fn rebase(&mut self, now: NtpTimestamp) {
        self.restart_fit_empty();
        self.segments.clear();
        self.push_segment(now, NtpDuration::ZERO, NtpDuration::ZERO);
        self.poll = self.config.min_poll;
    }

    fn step(&mut self, now: NtpTimestamp, offset: NtpDuration) -> ClockAction {
        self.excursion_since = None;
        let base = self.correction_at(now) + offset;
        // Everything remembered moves into the stepped timescale.
        for point in &mut self.points {
            point.time += offset;
        }
        for segment in &mut self.segments {
            segment.start += offset;
        }
        if let Some(centroid) = &mut self.centroid {
            centroid.time += offset;
        }
        self.push_segment(now + offset, base, NtpDuration::ZERO);
        self.poll = self.config.min_poll;
        self.poll_score = 0;
        ClockAction::Step {
            offset,
            frequency_ppm: self.estimate.frequency_ppm,
        }
    }

    /// Slews away the offset the fitted line gives for `now`.
    fn slew(&mut self, now: NtpTimestamp) -> ClockAction {
        let applied = self.correction_at(now);
        let offset = self.predict(now).map_or(NtpDuration::ZERO, |u| u - applied);
        self.push_segment(now, applied, offset);
        ClockAction::Slew {
            offset,
            frequency_ppm: self.estimate.frequency_ppm,
        }
    }

    fn push_segment(&mut self, start: NtpTimestamp, base: NtpDuration, slew: NtpDuration) {
        self.segments.push_back(Segment {
            start,
            base,
            frequency_ppm: self.estimate.frequency_ppm,
            slew,
        });
        while self.segments.len() > MAX_SEGMENTS {
            self.segments.pop_front();
        }
    }

    /// Total correction applied up to local time `time` (before the first segment, its start).
    fn correction_at(&self, time: NtpTimestamp) -> NtpDuration {
        let found = self
            .segments
            .iter()
            .rev()
            .find(|s| time - s.start >= NtpDuration::ZERO)
            .or(self.segments.front());
        let Some(segment) = found else {
            return NtpDuration::ZERO;
        };
        let elapsed = (time - segment.start).max(NtpDuration::ZERO);
        segment.base
            + elapsed.mul_f64(segment.frequency_ppm * 1e-6)
            + slew_progress(segment.slew, self.config.max_slew_ppm, elapsed)
    }

    /// Doubles the poll interval after enough small offsets with a settled frequency, halves it
    /// after large ones (RFC 5905 appendix A.5.5.2, with PGATE against the noise).
    fn adapt_poll(&mut self, offset: NtpDuration) {
        let gate = POLL_GATE * self.noise;
        let magnitude = offset.abs().to_seconds_f64();
        let next_interval = PollInterval::new(self.poll.get().saturating_add(1))
            .to_duration()
            .to_seconds_f64();
        let settled = self.estimate.skew_ppm * 1e-6 * next_interval < self.noise;
        if magnitude < gate && settled {
            self.poll_score += 1;
        } else if magnitude >= gate {
            self.poll_score -= 2;
        }
        let (min, max) = (self.config.min_poll.get(), self.config.max_poll.get());
        let mut poll = self.poll.get();
        if self.poll_score >= POLL_LIMIT {
            poll = poll.saturating_add(1);
            self.poll_score = 0;
        } else if self.poll_score <= -POLL_LIMIT {
            poll = poll.saturating_sub(1);
            self.poll_score = 0;
        }
        self.poll = PollInterval::new(poll.min(max.max(min)).max(min));
    }
}

/// RMS of the residuals around the fitted line, with n - 2 degrees of freedom (0 below 3 points).
fn residual_rms(xy: &[(f64, f64)], mean_x: f64, mean_y: f64, sxx: f64, sxy: f64) -> f64 {
    if xy.len() < 3 || sxx <= 0.0 {
        return 0.0;
    }
    let slope = sxy / sxx;
    let sum: f64 = xy
        .iter()
        .map(|(x, y)| (y - mean_y - slope * (x - mean_x)).powi(2))
        .sum();
    (sum / (xy.len() - 2) as f64).sqrt()
}

/// Inverse-variance mean of two estimates, clamped to the frequency limit.
fn blend(prior: Estimate, measured: Estimate, limit_ppm: f64) -> Estimate {
    let wp = prior.skew_ppm.powi(-2);
    let wm = measured.skew_ppm.powi(-2);
    let frequency = (prior.frequency_ppm * wp + measured.frequency_ppm * wm) / (wp + wm);
    let limit = limit_ppm.abs();
    Estimate {
        frequency_ppm: if frequency.is_finite() {
            frequency.clamp(-limit, limit)
        } else {
            prior.frequency_ppm
        },
        skew_ppm: (wp + wm).powf(-0.5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(seconds: f64) -> NtpDuration {
        NtpDuration::from_seconds_f64(seconds)
    }

    /// Deterministic Gaussian noise: xorshift64* and Box-Muller.
    struct Noise(u64);

    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
            (bits as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn gaussian(&mut self, sigma: f64) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            sigma * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    /// A clock that drifts and obeys [`ClockAction`]s as a slewing kernel clock would, against a
    /// true time that advances in f64 seconds.
    struct SimClock {
        true_time: f64,
        reading: f64,
        drift_ppm: f64,
        frequency_ppm: f64,
        slew_left: f64,
        max_slew_ppm: f64,
    }

    impl SimClock {
        fn new(initial_error: f64, drift_ppm: f64, max_slew_ppm: f64) -> Self {
            Self {
                true_time: 1000.0,
                reading: 1000.0 + initial_error,
                drift_ppm,
                frequency_ppm: 0.0,
                slew_left: 0.0,
                max_slew_ppm,
            }
        }

        fn now(&self) -> NtpTimestamp {
            NtpTimestamp::from_parts(3_900_000_000, 0) + s(self.reading)
        }

        /// True minus clock: what a perfect measurement gives.
        fn error(&self) -> f64 {
            self.true_time - self.reading
        }

        /// Advances true time by `dt`, asserting the clock never runs backwards.
        fn advance(&mut self, mut dt: f64) {
            while dt > 0.0 {
                let rate = 1.0 + (self.drift_ppm + self.frequency_ppm) * 1e-6;
                let slew_rate = self.max_slew_ppm * 1e-6;
                let slewing = (self.slew_left.abs() / slew_rate).min(dt);
                let (step, extra) = if slewing > 0.0 {
                    let extra = (slewing * slew_rate).copysign(self.slew_left);
                    (slewing, extra)
                } else {
                    (dt, 0.0)
                };
                let before = self.reading;
                self.reading += step * rate + extra;
                assert!(
                    self.reading > before,
                    "clock ran backwards at {}",
                    self.true_time
                );
                self.slew_left -= extra;
                if slewing > 0.0 && slewing >= self.slew_left.abs() / slew_rate {
                    self.slew_left = if self.slew_left.abs() < 1e-12 {
                        0.0
                    } else {
                        self.slew_left
                    };
                }
                self.true_time += step;
                dt -= step;
            }
        }

        fn apply(&mut self, action: ClockAction) {
            match action {
                ClockAction::Step {
                    offset,
                    frequency_ppm,
                } => {
                    self.reading += offset.to_seconds_f64();
                    self.slew_left = 0.0;
                    self.frequency_ppm = frequency_ppm;
                }
                ClockAction::Slew {
                    offset,
                    frequency_ppm,
                } => {
                    self.slew_left = offset.to_seconds_f64();
                    self.frequency_ppm = frequency_ppm;
                }
                ClockAction::Refused { .. } | ClockAction::Ignored => {}
            }
        }
    }

    /// What a simulated run saw at each update.
    #[derive(Debug)]
    struct Step {
        action: ClockAction,
        /// True clock error just after the action, seconds.
        error_after: f64,
        /// Largest true clock error until the next update, seconds.
        worst_between: f64,
        frequency_error_ppm: f64,
        poll: i8,
    }

    struct Run {
        clock: SimClock,
        discipline: Discipline,
        noise: Noise,
        sigma: f64,
    }

    impl Run {
        fn new(
            config: DisciplineConfig,
            seed: Option<f64>,
            error: f64,
            drift: f64,
            sigma: f64,
        ) -> Self {
            Self {
                clock: SimClock::new(error, drift, config.max_slew_ppm),
                discipline: Discipline::new(config, seed),
                noise: Noise(0x9e37_79b9_7f4a_7c15),
                sigma,
            }
        }

        fn measure(&mut self) -> NtpDuration {
            s(self.clock.error() + self.noise.gaussian(self.sigma))
        }

        fn update_with(&mut self, offset: NtpDuration) -> Step {
            let action = self
                .discipline
                .update(self.clock.now(), offset, s(self.sigma));
            self.clock.apply(action);
            let error_after = self.clock.error();
            let interval = self.discipline.poll().to_duration().to_seconds_f64();
            let mut worst_between = error_after.abs();
            for _ in 0..16 {
                self.clock.advance(interval / 16.0);
                worst_between = worst_between.max(self.clock.error().abs());
            }
            Step {
                action,
                error_after,
                worst_between,
                frequency_error_ppm: self.discipline.frequency_ppm() + self.clock.drift_ppm,
                poll: self.discipline.poll().get(),
            }
        }

        fn update(&mut self) -> Step {
            let offset = self.measure();
            self.update_with(offset)
        }

        fn steps(&mut self, n: usize) -> Vec<Step> {
            (0..n).map(|_| self.update()).collect()
        }
    }

    fn slewed(action: ClockAction) -> Option<f64> {
        match action {
            ClockAction::Slew { offset, .. } => Some(offset.to_seconds_f64()),
            _ => None,
        }
    }

    fn stepped(action: ClockAction) -> Option<f64> {
        match action {
            ClockAction::Step { offset, .. } => Some(offset.to_seconds_f64()),
            _ => None,
        }
    }

    fn fixed_poll(poll: i8) -> DisciplineConfig {
        DisciplineConfig {
            min_poll: PollInterval::new(poll),
            max_poll: PollInterval::new(poll),
            ..DisciplineConfig::default()
        }
    }

    /// Index of the first update from which every later one meets `good`.
    fn settled_from(steps: &[Step], good: impl Fn(&Step) -> bool) -> Option<usize> {
        let last_bad = steps.iter().rposition(|x| !good(x));
        match last_bad {
            None => Some(0),
            Some(i) if i + 1 < steps.len() => Some(i + 1),
            Some(_) => None,
        }
    }

    fn rms(values: impl Iterator<Item = f64>) -> f64 {
        let (n, sum) = values.fold((0.0, 0.0), |(n, sum), v| (n + 1.0, sum + v * v));
        (sum / n).sqrt()
    }

    #[test]
    fn a_100_ppm_drift_converges_at_poll_0() {
        let mut run = Run::new(fixed_poll(0), None, 0.010, 100.0, 20e-6);
        let steps = run.steps(300);
        let good = |x: &Step| x.frequency_error_ppm.abs() < 5.0 && x.worst_between < 1e-3;
        let settled = settled_from(&steps, good);
        let tail = &steps[200..];
        let offset_rms = rms(tail.iter().map(|x| x.error_after));
        let frequency_error = steps[299].frequency_error_ppm;
        let figures = format!(
            "settled after {settled:?} updates, final frequency error {frequency_error:.3} ppm, \
             RMS offset {:.1} us over the last 100",
            offset_rms * 1e6
        );
        assert!(settled.is_some_and(|n| n <= 40), "{figures}");
        assert!(frequency_error.abs() < 3.0, "{figures}");
        assert!(offset_rms < 50e-6, "{figures}");
        assert!(
            matches!(steps[0].action, ClockAction::Slew { .. }),
            "10 ms is slewed"
        );
    }

    #[test]
    fn a_1000_ppm_drift_is_held_within_50_ms_with_max_frequency_2000() {
        for (min, max) in [(0, 0), (-2, 2)] {
            let config = DisciplineConfig {
                max_frequency_ppm: 2000.0,
                min_poll: PollInterval::new(min),
                max_poll: PollInterval::new(max),
                ..DisciplineConfig::default()
            };
            let mut run = Run::new(config, None, 0.0, 1000.0, 50e-6);
            let steps = run.steps(400);
            let worst = steps.iter().map(|x| x.worst_between).fold(0.0, f64::max);
            let frequency_error = steps[399].frequency_error_ppm;
            let settled = settled_from(&steps, |x| x.worst_between < 1e-3);
            let figures = format!(
                "poll {min}..{max}: worst {:.3} ms, settled below 1 ms after {settled:?} updates, \
                 final frequency error {frequency_error:.3} ppm",
                worst * 1e3
            );
            assert!(worst < 0.050, "{figures}");
            assert!(settled.is_some_and(|n| n <= 60), "{figures}");
            assert!(frequency_error.abs() < 5.0, "{figures}");
            assert!(
                steps
                    .iter()
                    .all(|x| matches!(x.action, ClockAction::Slew { .. })),
                "{figures}"
            );
        }
    }

    #[test]
    fn an_initial_offset_of_0_3_s_is_stepped() {
        let mut run = Run::new(fixed_poll(0), None, -0.3, 20.0, 20e-6);
        let steps = run.steps(60);
        let ClockAction::Step { offset, .. } = steps[0].action else {
            panic!("expected a step, got {:?}", steps[0].action);
        };
        assert!((offset.to_seconds_f64() - 0.3).abs() < 1e-4, "{offset}");
        assert!(
            steps[0].error_after.abs() < 1e-4,
            "{}",
            steps[0].error_after
        );
        assert!(
            steps[1..]
                .iter()
                .all(|x| matches!(x.action, ClockAction::Slew { .. }))
        );
        assert!(steps[59].worst_between < 1e-3, "{:?}", steps[59]);
    }

    #[test]
    fn an_offset_of_0_05_s_is_slewed_and_time_never_runs_backwards() {
        for error in [0.05, -0.05] {
            let mut run = Run::new(fixed_poll(0), None, error, -30.0, 20e-6);
            // SimClock::advance asserts the clock only ever moves forward.
            let steps = run.steps(300);
            assert!(
                steps
                    .iter()
                    .all(|x| matches!(x.action, ClockAction::Slew { .. }))
            );
            // 50 ms at 500 ppm takes 100 s; it is never stepped, never overshoots far.
            let overshoot = steps
                .iter()
                .map(|x| x.error_after * -error.signum())
                .fold(0.0, f64::min);
            let settled = settled_from(&steps, |x| x.worst_between < 1e-3);
            let figures =
                format!("error {error}: settled after {settled:?}, overshoot {overshoot}");
            assert!(settled.is_some_and(|n| n <= 150), "{figures}");
            assert!(overshoot > -0.005, "{figures}");
        }
    }

    #[test]
    fn the_first_update_may_step_2000_s_but_later_ones_are_refused() {
        let mut run = Run::new(fixed_poll(0), None, 2000.0, 0.0, 20e-6);
        let first = run.update();
        assert!(
            stepped(first.action).is_some_and(|o| (o + 2000.0).abs() < 1e-3),
            "{first:?}"
        );
        run.steps(10);
        let frequency = run.discipline.frequency_ppm();
        let refused = run.update_with(s(2000.0));
        assert_eq!(refused.action, ClockAction::Refused { offset: s(2000.0) });
        assert_eq!(run.discipline.frequency_ppm(), frequency, "nothing changed");
        assert!(matches!(run.update().action, ClockAction::Slew { .. }));
        // No panic threshold, no refusal: a confirmed 2000 s offset is stepped.
        let config = DisciplineConfig {
            panic_threshold: None,
            ..fixed_poll(0)
        };
        let mut run = Run::new(config, None, 0.0, 0.0, 20e-6);
        run.steps(10);
        // Someone sets the clock back 2000 s: local time runs backwards, the fit starts over.
        run.clock.reading -= 2000.0;
        assert_eq!(run.update().action, ClockAction::Ignored, "held once");
        assert!(matches!(run.update().action, ClockAction::Step { .. }));
        assert!(run.clock.error().abs() < 1e-3);
        let after = run.steps(30);
        assert!(
            after
                .iter()
                .all(|x| matches!(x.action, ClockAction::Slew { .. }))
        );
        assert!(after[29].worst_between < 1e-3, "{:?}", after[29]);
    }

    #[test]
    fn a_drift_file_value_seeds_the_frequency_and_is_read_back() {
        // At poll 4 an unknown 57.3 ppm costs 0.9 ms in the first 16 s; a known one costs nothing.
        let mut seeded = Run::new(fixed_poll(4), Some(-57.3), 0.0, 57.3, 20e-6);
        assert_eq!(seeded.discipline.frequency_ppm(), -57.3);
        let steps = seeded.steps(40);
        let ClockAction::Slew { frequency_ppm, .. } = steps[0].action else {
            panic!("expected a slew, got {:?}", steps[0].action);
        };
        assert_eq!(frequency_ppm, -57.3);
        let seeded_worst = steps.iter().map(|x| x.worst_between).fold(0.0, f64::max);
        let mut cold = Run::new(fixed_poll(4), None, 0.0, 57.3, 20e-6);
        let cold_worst = cold
            .steps(40)
            .iter()
            .map(|x| x.worst_between)
            .fold(0.0, f64::max);
        let figures = format!("worst offset seeded {seeded_worst:.6} s, cold {cold_worst:.6} s");
        assert!(seeded_worst < 0.2e-3, "{figures}");
        assert!(cold_worst > 0.5e-3, "{figures}");
        assert!(
            (seeded.discipline.frequency_ppm() + 57.3).abs() < 1.0,
            "{figures}"
        );
        // Out-of-range seeds are clamped, nonsense is ignored.
        let clamped = Discipline::new(DisciplineConfig::default(), Some(9000.0));
        assert_eq!(clamped.frequency_ppm(), DEFAULT_MAX_FREQUENCY_PPM);
        let nan = Discipline::new(DisciplineConfig::default(), Some(f64::NAN));
        assert_eq!(nan.frequency_ppm(), 0.0);
    }

    #[test]
    fn the_poll_interval_rises_when_settled_and_falls_when_disturbed() {
        let config = DisciplineConfig {
            min_poll: PollInterval::new(-2),
            max_poll: PollInterval::new(4),
            ..DisciplineConfig::default()
        };
        let mut run = Run::new(config, None, 0.0, 30.0, 20e-6);
        let steps = run.steps(200);
        let reached = steps.iter().position(|x| x.poll == 4);
        assert!(
            reached.is_some_and(|n| n < 120),
            "reached poll 4 at {reached:?}"
        );
        assert_eq!(steps[0].poll, -2);
        // The oscillator jumps by 40 ppm: offsets grow, polls shorten, then recover.
        run.clock.drift_ppm += 40.0;
        let after = run.steps(200);
        let lowest = after.iter().map(|x| x.poll).min().unwrap_or(4);
        let worst = after.iter().map(|x| x.worst_between).fold(0.0, f64::max);
        let figures = format!("lowest poll {lowest}, worst {:.3} ms", worst * 1e3);
        assert!(lowest < 4, "{figures}");
        assert_eq!(after[199].poll, 4, "{figures}");
        assert!(after[199].frequency_error_ppm.abs() < 1.0, "{figures}");
        assert!(worst < 2e-3, "{figures}");
    }

    #[test]
    fn long_polls_are_stable() {
        let mut run = Run::new(DisciplineConfig::default(), None, 0.02, 50.0, 200e-6);
        let steps = run.steps(300);
        let tail = &steps[150..];
        let offset_rms = rms(tail.iter().map(|x| x.error_after));
        let worst = tail.iter().map(|x| x.worst_between).fold(0.0, f64::max);
        let frequency_error = steps[299].frequency_error_ppm;
        let figures = format!(
            "RMS offset {:.1} us, worst {:.1} us, frequency error {frequency_error:.4} ppm, \
             poll {}",
            offset_rms * 1e6,
            worst * 1e6,
            steps[299].poll
        );
        assert_eq!(steps[299].poll, 10, "{figures}");
        assert!(tail.iter().all(|x| x.poll >= 9), "{figures}");
        assert!(offset_rms < 300e-6, "{figures}");
        assert!(worst < 1.5e-3, "{figures}");
        assert!(frequency_error.abs() < 0.2, "{figures}");
    }

    #[test]
    fn a_lone_spike_is_held_and_a_level_change_confirmed() {
        let mut run = Run::new(fixed_poll(0), None, 0.0, 10.0, 20e-6);
        run.steps(40);
        let frequency = run.discipline.frequency_ppm();
        let spike = run.clock.error() + 0.020;
        assert_eq!(run.update_with(s(spike)).action, ClockAction::Ignored);
        assert!(slewed(run.update().action).is_some_and(|o| o.abs() < 1e-3));
        assert!((run.discipline.frequency_ppm() - frequency).abs() < 1.0);
        // The reference moves by 20 ms for good: held once, then slewed; the frequency survives.
        run.clock.reading -= 0.020;
        assert_eq!(run.update().action, ClockAction::Ignored);
        let confirmed = run.update();
        assert!(
            slewed(confirmed.action).is_some_and(|o| (o - 0.020).abs() < 1e-3),
            "{confirmed:?}"
        );
        let after = run.steps(100);
        assert!(
            after.iter().all(|x| x.frequency_error_ppm.abs() < 5.0),
            "{:?}",
            after
                .iter()
                .map(|x| x.frequency_error_ppm)
                .collect::<Vec<_>>()
        );
        assert!(after[99].worst_between < 1e-3);
    }

    #[test]
    fn stepout_delays_a_step_after_synchronization() {
        let config = DisciplineConfig {
            stepout: NtpDuration::from_seconds(10),
            ..fixed_poll(0)
        };
        let mut run = Run::new(config, None, 0.0, 0.0, 20e-6);
        run.steps(10);
        run.clock.reading += 0.5;
        let held: Vec<Step> = run.steps(12);
        let first_step = held
            .iter()
            .position(|x| matches!(x.action, ClockAction::Step { .. }));
        // Held once as a surprise, then ten seconds of stepout.
        assert_eq!(first_step, Some(11), "{held:?}");
        assert!(held[..11].iter().all(|x| x.action == ClockAction::Ignored));
        assert!(run.clock.error().abs() < 1e-3);
    }

    #[test]
    fn correction_since_follows_the_slews_it_ordered() {
        let config = DisciplineConfig::default();
        let mut d = Discipline::new(config, Some(10.0));
        let t0 = NtpTimestamp::from_parts(3_900_000_000, 0);
        let ClockAction::Slew {
            offset,
            frequency_ppm,
        } = d.update(t0, s(0.001), s(1e-5))
        else {
            panic!("1 ms is slewed");
        };
        assert_eq!((offset, frequency_ppm), (s(0.001), 10.0));
        // 500 ppm removes 1 ms in 2 s; the frequency adds 10 us per second throughout.
        for (elapsed, slewed) in [(1.0, 0.0005), (2.0, 0.001), (5.0, 0.001)] {
            let got = d.correction_since(t0, t0 + s(elapsed)).to_seconds_f64();
            let expected = slewed + 10e-6 * elapsed;
            assert!(
                (got - expected).abs() < 1e-9,
                "{elapsed} s: {got} vs {expected}"
            );
        }
        assert_eq!(slew_progress(s(-0.001), 500.0, s(1.0)), s(-0.0005));
        assert_eq!(slew_progress(s(0.001), 500.0, s(-1.0)), NtpDuration::ZERO);
    }

    #[test]
    fn a_repeated_update_time_is_ignored() {
        let mut d = Discipline::new(fixed_poll(0), None);
        let t0 = NtpTimestamp::from_parts(3_900_000_000, 0);
        assert!(!d.is_synchronized());
        assert!(matches!(
            d.update(t0, s(0.001), s(1e-5)),
            ClockAction::Slew { .. }
        ));
        assert!(d.is_synchronized());
        assert_eq!(d.update(t0, s(0.001), s(1e-5)), ClockAction::Ignored);
        // Earlier than the last update (the clock was set back): used, on a fresh fit.
        assert!(matches!(
            d.update(t0 - s(1.0), s(0.001), s(1e-5)),
            ClockAction::Slew { .. }
        ));
    }
}
