//! One source's measurement history and the weighted least-squares line through it, in the
//! uncorrected timescale (the clock filter of RFC 5905 section 10, done as chrony's sourcestats).
//!
//! Every sample is stored as the offset the clock would have shown had it never been corrected
//! (measured offset plus every correction the discipline had applied by then), against local time
//! less those corrections. In that timescale the points of a free-running oscillator lie on a
//! line whose slope is the clock's frequency error, whatever the discipline did meanwhile; so the
//! line through all of them gives both the offset now and the frequency, with known errors.
//!
//! - Weights: queueing only ever adds delay, and a sample's offset error is bounded by half its
//!   extra delay, so a sample's variance grows with the square of its delay above the lowest.
//! - How many samples: as many as a straight line explains. When a quadratic fits significantly
//!   better (the frequency wandered), the oldest samples are dropped until it does not. (chrony
//!   uses a runs test on the residuals here; in simulation the curvature test halved the error
//!   under a 1 ppb/s random walk at the same request rate.)
//! - At fast polls more samples than chrony's 64 are kept, as long as they span at most
//!   [`MAX_SPAN`]: where the oscillator is steady, the error falls with the samples averaged.

use std::collections::VecDeque;

use crate::time::{NtpDuration, NtpTimestamp};

/// Samples always kept if they fit a line, however long they span (chrony's default
/// `maxsamples`).
pub const SPAN_FREE_SAMPLES: usize = 64;
/// Most samples kept: beyond [`SPAN_FREE_SAMPLES`], only those within [`MAX_SPAN`] of the newest.
pub const MAX_SAMPLES: usize = 512;
/// How far back the samples beyond [`SPAN_FREE_SAMPLES`] may reach: about where a quartz
/// oscillator's wander overtakes a LAN's measurement noise (its Allan intercept). In simulation at
/// polls of 0.25-1 s this window took the error under 1 ms of exponential jitter each way from
/// 62 to 16 us; at a fixed 16 s poll under a 1 ppb/s random walk, a 2048 s window made it 15 %
/// worse than 64 samples.
pub const MAX_SPAN: NtpDuration = NtpDuration::from_seconds(1024);
/// Fewest samples that give a frequency: two points always fit a line exactly.
pub const MIN_REGRESSION: usize = 3;
/// How fast the offset of a source with an unknown slope (one or two samples) may drift, s/s:
/// an oscillator's error, bounded as chrony bounds it (`WORST_CASE_FREQ_BOUND`, 2000 ppm).
pub const UNKNOWN_SLOPE_BOUND: f64 = 2000e-6;
/// How strongly extra delay lowers a sample's weight: a sample whose delay exceeds the lowest by
/// the mean excess counts (1 + 10)^2 times less (chrony's SD_TO_DIST_RATIO is 0.7; a sample's
/// offset error is bounded by half its excess delay, so its variance grows with its square).
const DELAY_WEIGHT: f64 = 10.0;
/// Curvature beyond this many standard errors means the oldest samples no longer fit a line.
const CURVATURE_GATE: f64 = 2.0;
/// How far a real oscillator's frequency may wander between two samples, as a fraction: an error
/// within this much per second since the newest sample is the line's to follow, not a jump.
const MAX_WANDER: f64 = 100e-6;
/// A level change is this many standard errors of the line away from it.
const LEVEL_GATE: f64 = 10.0;
/// Fewest samples the curvature test may leave.
const MIN_KEPT: usize = 4;

/// One measurement, in the uncorrected timescale.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RawSample {
    /// Local time less every correction applied by then.
    pub time: NtpTimestamp,
    /// Measured offset plus every correction applied by then (server minus uncorrected clock).
    pub offset: NtpDuration,
    /// The exchange's round-trip delay.
    pub delay: NtpDuration,
    /// Its dispersion (precisions and PHI over the round trip).
    pub dispersion: NtpDuration,
}

/// The line through the kept samples.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Fit {
    /// The weighted centroid's time: the line is most certain here.
    pub time: NtpTimestamp,
    /// The line's offset at `time`.
    pub offset: NtpDuration,
    /// The slope: the uncorrected clock's frequency error (s/s); the correction to set.
    pub frequency: f64,
    /// Standard error of `offset` at `time`, seconds.
    pub offset_sd: f64,
    /// Standard error of `frequency` (chrony's skew).
    pub frequency_sd: f64,
    /// Standard deviation of a lowest-weight sample around the line, seconds.
    pub residual_sd: f64,
    /// Samples the line rests on.
    pub samples: usize,
}

impl Fit {
    /// The line's offset at `time`, and its standard error there.
    pub fn predict(&self, time: NtpTimestamp) -> (NtpDuration, f64) {
        let dt = (time - self.time).to_seconds_f64();
        let offset = self.offset + NtpDuration::from_seconds_f64(self.frequency * dt);
        if !self.frequency_sd.is_finite() {
            // A level line (one or two samples): the slope is unknown, not infinitely wrong. In
            // the uncorrected timescale the offset drifts at the oscillator's own error, which
            // no sample has measured yet: PHI (15 ppm) would not cover a 100 ppm clock.
            return (offset, self.offset_sd + UNKNOWN_SLOPE_BOUND * dt.abs());
        }
        (offset, self.offset_sd.hypot(self.frequency_sd * dt))
    }
}

/// The samples of one source and the line through them.
#[derive(Clone, Debug, Default)]
pub struct SourceStats {
    samples: VecDeque<RawSample>,
    fit: Option<Fit>,
    /// A sample far off the line, held until the next one confirms or refutes it.
    suspect: Option<RawSample>,
}

impl SourceStats {
    /// No samples.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample; returns how far it fell from the line that existed before it (the
    /// prediction error, for poll adaptation), if there was one.
    pub fn add(&mut self, sample: RawSample) -> Option<NtpDuration> {
        // A sample older than the newest one is a duplicate or out of order: never used twice.
        if self
            .samples
            .back()
            .is_some_and(|last| sample.time - last.time <= NtpDuration::ZERO)
        {
            return None;
        }
        let fit = self.fit.filter(|f| f.samples >= MIN_REGRESSION);
        let surprise = fit.map(|f| (sample.offset - f.predict(sample.time).0).abs());
        if let (Some(fit), Some(error)) = (fit, surprise)
            && is_level_change(&fit, self.samples.back().copied(), sample, error)
        {
            // The server's time (or the path) changed under the line: held once, so that a lone
            // wild reply changes nothing; confirmed by the next, the line starts again from both.
            match self.suspect.replace(sample) {
                Some(first) if (sample.offset - first.offset).abs() <= error.half() => {
                    self.samples.clear();
                    self.samples.push_back(first);
                    self.suspect = None;
                }
                _ => return surprise,
            }
        } else {
            self.suspect = None;
        }
        self.samples.push_back(sample);
        while self.samples.len() > MAX_SAMPLES
            || (self.samples.len() > SPAN_FREE_SAMPLES
                && sample.time - self.samples[0].time > MAX_SPAN)
        {
            self.samples.pop_front();
        }
        self.refit();
        surprise
    }

    /// The current line, once there is at least one sample (with one or two, a level line
    /// with an unknown slope: `frequency_sd` is infinite).
    pub fn fit(&self) -> Option<Fit> {
        self.fit
    }

    /// How many samples are kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True with no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The newest sample.
    pub fn newest(&self) -> Option<RawSample> {
        self.samples.back().copied()
    }

    /// The lowest delay among the kept samples.
    pub fn min_delay(&self) -> Option<NtpDuration> {
        self.samples.iter().map(|s| s.delay).min()
    }

    fn refit(&mut self) {
        let Some(newest) = self.samples.back().copied() else {
            self.fit = None;
            return;
        };
        let points = self.points(newest);
        let mut start = 0;
        let mut fit = regress(&points[start..]);
        while fit.as_ref().is_some_and(|f| !f.straight) && points.len() - start > MIN_KEPT {
            start += 1;
            fit = regress(&points[start..]);
        }
        for _ in 0..start {
            self.samples.pop_front();
        }
        self.fit = fit
            .map(|f| f.at(newest))
            .or_else(|| Some(level(&points[start..], newest)));
    }

    /// (x seconds from the newest, y seconds from the newest's offset, variance weight).
    fn points(&self, newest: RawSample) -> Vec<Point> {
        let half_delays = self
            .samples
            .iter()
            .map(|s| (s.delay.to_seconds_f64() / 2.0 + s.dispersion.to_seconds_f64()).max(0.0));
        let min = half_delays.clone().fold(f64::INFINITY, f64::min);
        let mean = half_delays.clone().sum::<f64>() / self.samples.len() as f64;
        let mut spread = mean - min;
        if spread > min || spread <= 0.0 {
            spread = min.max(1e-9);
        }
        self.samples
            .iter()
            .zip(half_delays)
            .map(|(s, d)| Point {
                x: (s.time - newest.time).to_seconds_f64(),
                y: (s.offset - newest.offset).to_seconds_f64(),
                w: (1.0 + DELAY_WEIGHT * (d - min) / spread).powi(2),
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
struct Point {
    x: f64,
    y: f64,
    /// Relative variance: 1 for the lowest-delay sample.
    w: f64,
}

/// A weighted least-squares line, relative to the newest sample.
#[derive(Clone, Copy, Debug)]
struct Line {
    x: f64,
    y: f64,
    slope: f64,
    /// Unit-weight residual variance.
    variance: f64,
    sum_w: f64,
    sxx: f64,
    n: usize,
    /// No significant curvature: the samples fit a straight line.
    straight: bool,
}

impl Line {
    fn at(&self, newest: RawSample) -> Fit {
        let sd = self.variance.sqrt();
        Fit {
            time: newest.time + NtpDuration::from_seconds_f64(self.x),
            offset: newest.offset + NtpDuration::from_seconds_f64(self.y),
            frequency: self.slope,
            offset_sd: sd / self.sum_w.sqrt(),
            frequency_sd: sd / self.sxx.sqrt(),
            residual_sd: sd,
            samples: self.n,
        }
    }
}

/// Weighted least squares over `points`, or `None` below [`MIN_REGRESSION`] points or when they
/// all share one time.
fn regress(points: &[Point]) -> Option<Line> {
    let n = points.len();
    if n < MIN_REGRESSION {
        return None;
    }
    let sum_w: f64 = points.iter().map(|p| 1.0 / p.w).sum();
    let x = points.iter().map(|p| p.x / p.w).sum::<f64>() / sum_w;
    let y = points.iter().map(|p| p.y / p.w).sum::<f64>() / sum_w;
    let sxx: f64 = points.iter().map(|p| (p.x - x).powi(2) / p.w).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.x - x) * (p.y - y) / p.w).sum();
    let slope = sxy / sxx;
    let residuals: Vec<f64> = points.iter().map(|p| p.y - y - slope * (p.x - x)).collect();
    let variance = residuals
        .iter()
        .zip(points)
        .map(|(r, p)| r * r / p.w)
        .sum::<f64>()
        / (n - 2) as f64;
    Some(Line {
        x,
        y,
        slope,
        variance,
        sum_w,
        sxx,
        n,
        straight: !curved(points, x),
    })
}

/// A sample off the line by more than its delay (its offset error is at most half its delay,
/// plus dispersion) and an oscillator wandering by up to [`MAX_WANDER`] since the newest sample can
/// explain, twice over, and by [`LEVEL_GATE`] times the line's own uncertainty.
fn is_level_change(
    fit: &Fit,
    newest: Option<RawSample>,
    sample: RawSample,
    error: NtpDuration,
) -> bool {
    let error = error.to_seconds_f64();
    let distance = sample.delay.to_seconds_f64() / 2.0 + sample.dispersion.to_seconds_f64();
    let since = newest.map_or(0.0, |n| (sample.time - n.time).to_seconds_f64().abs());
    let (_, predicted_sd) = fit.predict(sample.time);
    error > 2.0 * (distance + MAX_WANDER * since)
        && error > LEVEL_GATE * predicted_sd.hypot(fit.residual_sd)
}

/// True when a weighted quadratic fits significantly better than the line: its curvature term
/// is more than [`CURVATURE_GATE`] standard errors from zero. A wandering frequency bends the
/// uncorrected offsets into a curve; this sees it sooner than a runs test on the residuals.
fn curved(points: &[Point], x0: f64) -> bool {
    let n = points.len();
    if n < 5 {
        return false;
    }
    // Normal equations for y = a + b u + c u^2, u = x - x0, weights 1/w.
    let mut m = [[0.0f64; 3]; 3];
    let mut v = [0.0f64; 3];
    for p in points {
        let u = p.x - x0;
        let basis = [1.0, u, u * u];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += basis[i] * basis[j] / p.w;
            }
            v[i] += basis[i] * p.y / p.w;
        }
    }
    let Some(inv) = invert3(&m) else {
        return false;
    };
    let coef: Vec<f64> = (0..3)
        .map(|i| (0..3).map(|j| inv[i][j] * v[j]).sum())
        .collect();
    let rss: f64 = points
        .iter()
        .map(|p| {
            let u = p.x - x0;
            (p.y - coef[0] - coef[1] * u - coef[2] * u * u).powi(2) / p.w
        })
        .sum();
    // Nanosecond noise at least: an exact line (in tests) must not make rounding look curved.
    let variance = (rss / (n - 3) as f64).max(1e-18);
    let se = (variance * inv[2][2]).max(0.0).sqrt();
    se > 0.0 && coef[2].abs() > CURVATURE_GATE * se
}

fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < f64::MIN_POSITIVE || !det.is_finite() {
        return None;
    }
    let c =
        |r1: usize, c1: usize, r2: usize, c2: usize| m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1];
    Some([
        [
            c(1, 1, 2, 2) / det,
            -c(0, 1, 2, 2) / det,
            c(0, 1, 1, 2) / det,
        ],
        [
            -c(1, 0, 2, 2) / det,
            c(0, 0, 2, 2) / det,
            -c(0, 0, 1, 2) / det,
        ],
        [
            c(1, 0, 2, 1) / det,
            -c(0, 0, 2, 1) / det,
            c(0, 0, 1, 1) / det,
        ],
    ])
}

/// With one or two samples: the newest, slope unknown.
fn level(points: &[Point], newest: RawSample) -> Fit {
    // With no slope to carry older samples forward, the newest says most about now (chrony
    // does the same); their mean would lag by the unknown drift over half their span.
    let spread = points.iter().map(|p| p.y.abs()).fold(0.0, f64::max);
    Fit {
        time: newest.time,
        offset: newest.offset,
        frequency: 0.0,
        offset_sd: 0.0,
        frequency_sd: f64::INFINITY,
        residual_sd: spread,
        samples: points.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: NtpTimestamp = NtpTimestamp::from_parts(3_900_000_000, 0);

    fn s(seconds: f64) -> NtpDuration {
        NtpDuration::from_seconds_f64(seconds)
    }

    fn sample(t: f64, offset: f64, delay: f64) -> RawSample {
        RawSample {
            time: T0 + s(t),
            offset: s(offset),
            delay: s(delay),
            dispersion: s(1e-6),
        }
    }

    /// A tiny deterministic generator (xorshift) for noise in tests.
    fn noise(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn a_straight_line_gives_its_slope_and_offset() {
        let mut stats = SourceStats::new();
        for i in 0..10 {
            let t = f64::from(i) * 64.0;
            stats.add(sample(t, 0.001 + 20e-6 * t, 0.002));
        }
        let fit = stats.fit().expect("fit");
        assert!((fit.frequency - 20e-6).abs() < 1e-12, "{}", fit.frequency);
        let (now, sd) = fit.predict(T0 + s(640.0));
        assert!((now.to_seconds_f64() - (0.001 + 20e-6 * 640.0)).abs() < 1e-9);
        assert!(sd < 1e-9);
        assert_eq!(stats.len(), 10);
    }

    #[test]
    fn low_delay_samples_dominate() {
        // Offsets err by half of each sample's extra delay, in random directions.
        let mut stats = SourceStats::new();
        let mut rng = 7u64;
        for i in 0..32 {
            let extra = -50e-6 * noise(&mut rng).ln();
            let sign = if noise(&mut rng) < 0.5 { -1.0 } else { 1.0 };
            stats.add(sample(
                f64::from(i) * 16.0,
                sign * extra / 2.0,
                0.002 + extra,
            ));
        }
        let fit = stats.fit().expect("fit");
        let (offset, _) = fit.predict(T0 + s(31.0 * 16.0));
        assert!(offset.to_seconds_f64().abs() < 10e-6, "{offset}");
        assert!(fit.frequency.abs() < 0.1e-6, "{}", fit.frequency);
    }

    #[test]
    fn samples_that_no_longer_fit_a_line_are_dropped() {
        // The frequency changed by 1 ppm half way: the old half stops fitting.
        let mut stats = SourceStats::new();
        for i in 0..60 {
            let t = f64::from(i) * 16.0;
            let bend = if i < 30 { 0.0 } else { 1e-6 * (t - 480.0) };
            let wiggle = if i % 2 == 0 { 1e-6 } else { -1e-6 };
            stats.add(sample(t, bend + wiggle, 0.002));
        }
        let fit = stats.fit().expect("fit");
        assert!(stats.len() < 40, "kept {}", stats.len());
        assert!((fit.frequency - 1e-6).abs() < 0.05e-6, "{}", fit.frequency);
    }

    #[test]
    fn a_lone_wild_sample_is_held_and_a_confirmed_jump_restarts_the_line() {
        let mut stats = SourceStats::new();
        for i in 0..10 {
            stats.add(sample(
                f64::from(i) * 64.0,
                20e-6 * f64::from(i) * 64.0,
                0.002,
            ));
        }
        let before = stats.fit().expect("fit");
        // One reply 10 s off: held, the line is unchanged.
        assert!(stats.add(sample(640.0, 10.0, 0.002)).is_some());
        assert_eq!(stats.fit(), Some(before));
        // The next agrees with the line again: the wild one is forgotten.
        stats.add(sample(704.0, 20e-6 * 704.0, 0.002));
        assert_eq!(stats.len(), 11);
        // The server jumps by 10 s for good: held once, then the line restarts from both.
        stats.add(sample(768.0, 10.0, 0.002));
        stats.add(sample(832.0, 10.0 + 64.0 * 20e-6, 0.002));
        assert_eq!(stats.len(), 2);
        let fit = stats.fit().expect("level");
        assert!((fit.offset.to_seconds_f64() - 10.0).abs() < 0.01);
    }

    #[test]
    fn two_samples_of_a_drifting_clock_predict_the_newest_with_room_for_any_drift() {
        // An oscillator 100 ppm fast: the offset falls 6.4 ms every 64 s.
        let mut stats = SourceStats::new();
        stats.add(sample(0.0, 0.0, 0.001));
        stats.add(sample(64.0, -0.0064, 0.001));
        let fit = stats.fit().expect("level");
        assert!(fit.frequency_sd.is_infinite(), "no slope from two samples");
        let (offset, sd) = fit.predict(T0 + s(128.0));
        assert_eq!(offset, s(-0.0064), "the newest, not the mean");
        let truth = -0.0128;
        assert!((offset.to_seconds_f64() - truth).abs() <= sd, "{sd}");
    }

    #[test]
    fn duplicates_and_old_samples_are_ignored() {
        let mut stats = SourceStats::new();
        stats.add(sample(10.0, 0.0, 0.001));
        stats.add(sample(10.0, 5.0, 0.001));
        stats.add(sample(5.0, 5.0, 0.001));
        assert_eq!(stats.len(), 1);
        let fit = stats.fit().expect("level");
        assert_eq!(fit.offset, NtpDuration::ZERO);
        assert!(fit.frequency_sd.is_infinite());
    }

    #[test]
    fn the_prediction_error_of_a_new_sample_is_reported() {
        let mut stats = SourceStats::new();
        for i in 0..5 {
            assert_eq!(
                stats.add(sample(f64::from(i), 0.0, 0.001)).is_some(),
                i >= 3
            );
        }
        let surprise = stats
            .add(sample(5.0, 0.010, 0.001))
            .expect("a line existed");
        assert!((surprise.to_seconds_f64() - 0.010).abs() < 1e-9);
    }

    #[test]
    fn fast_polls_keep_more_than_64_samples_within_the_span() {
        let mut stats = SourceStats::new();
        for i in 0..2000 {
            stats.add(sample(f64::from(i), 0.0, 0.001));
        }
        assert_eq!(stats.len(), MAX_SAMPLES);
        // At 16 s polls the span, not the count, is the limit: 1024 s is 64 intervals.
        let mut stats = SourceStats::new();
        for i in 0..200 {
            stats.add(sample(f64::from(i) * 16.0, 0.0, 0.001));
        }
        assert_eq!(stats.len(), SPAN_FREE_SAMPLES + 1);
        // At 1024 s polls, 64 samples are kept whatever their span, as chrony keeps them.
        let mut stats = SourceStats::new();
        for i in 0..100 {
            stats.add(sample(f64::from(i) * 1024.0, 0.0, 0.001));
        }
        assert_eq!(stats.len(), SPAN_FREE_SAMPLES);
    }
}
