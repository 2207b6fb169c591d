//! A simulated clock: an oscillator with a constant frequency error and a random-walk wander,
//! read through the same [`SoftClock`] model that the daemon's virtual clock applies, so steps and
//! slews act exactly as they would there.

use ntp_proto::{ClockAction, SoftClock};
use rand::rngs::StdRng;

use super::net::normal;

/// How a node's oscillator is off.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct ClockSpec {
    /// Reading minus true time at the start, seconds.
    pub offset: f64,
    /// Constant frequency error, ppm (positive runs fast).
    pub freq_ppm: f64,
    /// Random walk of the frequency: standard deviation of its change per second, as a fraction
    /// (1e-9 = 1 ppb per second, chrony's tests' default).
    pub wander: f64,
}

impl ClockSpec {
    /// A perfect clock.
    pub const PERFECT: Self = Self {
        offset: 0.0,
        freq_ppm: 0.0,
        wander: 0.0,
    };
}

/// The oscillator integrated over whole simulated seconds, plus the corrections on top.
#[derive(Clone, Debug)]
pub struct SimClock {
    spec: ClockSpec,
    /// True time of the last whole-second update.
    tick: f64,
    /// Oscillator reading at `tick`, seconds.
    oscillator: f64,
    /// Frequency error during the current second (fraction).
    frequency: f64,
    corrections: SoftClock,
    slew_ppm: f64,
    /// Every step made to the clock so far, seconds.
    stepped: f64,
}

impl SimClock {
    /// A clock at true time 0, slewing at `slew_ppm` when told to.
    pub fn new(spec: ClockSpec, slew_ppm: f64) -> Self {
        Self {
            spec,
            tick: 0.0,
            oscillator: spec.offset,
            frequency: spec.freq_ppm * 1e-6,
            corrections: SoftClock::new(0, 0),
            slew_ppm,
            stepped: 0.0,
        }
    }

    /// Advances the oscillator to whole second `t` and draws the next second's wander.
    pub fn tick(&mut self, t: f64, rng: &mut StdRng) {
        self.oscillator = self.oscillator_at(t);
        self.tick = t;
        if self.spec.wander > 0.0 {
            self.frequency += self.spec.wander * normal(rng);
        }
    }

    fn oscillator_at(&self, t: f64) -> f64 {
        self.oscillator + (t - self.tick) * (1.0 + self.frequency)
    }

    fn base_nanos(&self, t: f64) -> i128 {
        (self.oscillator_at(t) * 1e9).round() as i128
    }

    /// The node's monotonic clock at true time `t`, seconds since its start: the oscillator
    /// without corrections, as a kernel's monotonic clock runs on the same crystal.
    pub fn monotonic(&self, t: f64) -> f64 {
        self.oscillator_at(t) - self.spec.offset
    }

    /// The true time at which the monotonic clock reads `monotonic` (not before the last tick).
    pub fn true_time_of(&self, monotonic: f64) -> f64 {
        let at_tick = self.oscillator - self.spec.offset;
        self.tick + (monotonic - at_tick) / (1.0 + self.frequency)
    }

    /// The clock's reading at true time `t` (not before the last tick), seconds.
    pub fn read(&self, t: f64) -> f64 {
        let base = self.base_nanos(t);
        self.oscillator_at(t) + self.corrections.correction(base) as f64 * 1e-9
    }

    /// Reading minus true time.
    pub fn error(&self, t: f64) -> f64 {
        self.read(t) - t
    }

    /// Applies what the client core asked for, at true time `t`.
    pub fn apply(&mut self, t: f64, action: ClockAction) {
        let base = self.base_nanos(t);
        match action {
            ClockAction::Step {
                offset,
                frequency_ppm,
            }
            | ClockAction::Leap {
                offset,
                frequency_ppm,
            } => {
                self.corrections.step(base, offset.as_nanos());
                self.corrections.slew(base, 0, frequency_ppm, self.slew_ppm);
                self.stepped += offset.as_nanos() as f64 * 1e-9;
            }
            ClockAction::Slew {
                offset,
                frequency_ppm,
                rate_ppm,
            } => self
                .corrections
                .slew(base, offset.as_nanos(), frequency_ppm, rate_ppm),
            ClockAction::Refused { .. } | ClockAction::Ignored => {}
        }
    }

    /// Someone else sets the clock by `offset` seconds at true time `t` (the core is not told).
    pub fn external_step(&mut self, t: f64, offset: f64) {
        let base = self.base_nanos(t);
        let nanos = (offset * 1e9).round() as i128;
        self.corrections.step(base, nanos);
        self.stepped += nanos as f64 * 1e-9;
    }

    /// Every step made to the clock so far (by the core or by someone else), seconds.
    pub fn stepped(&self) -> f64 {
        self.stepped
    }

    /// The oscillator's current frequency error plus the ordered correction, as a fraction.
    pub fn frequency_error(&self) -> f64 {
        self.frequency + self.corrections.frequency_ppm() * 1e-6
    }
}
