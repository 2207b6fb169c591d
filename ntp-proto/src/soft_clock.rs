//! The model of a disciplined clock: a base clock plus steps, a frequency correction, and slews
//! that end by themselves (RFC 5905 section 11.3: the clock adjust process). One model serves
//! three users, so that the clock the discipline assumes is the clock that is applied: the
//! daemon's virtual clock (base = the system clock), the simulator's clocks (base = a drifting
//! oscillator), and the client core's record of the corrections it ordered (base = local time).
//!
//! Times are nanoseconds on the base clock's axis, as `i128` so that no realistic run overflows.

/// A base clock corrected by steps, a frequency and a slew in progress.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct SoftClock {
    /// Base time at which the current segment began.
    base0: i128,
    /// The reading at `base0`.
    reading0: i128,
    /// Frequency correction, ppm, for the whole segment.
    frequency_ppm: f64,
    /// Extra rate while the slew runs, ppm (signed).
    slew_ppm: f64,
    /// Base time at which the slew ends.
    slew_end: i128,
}

impl SoftClock {
    /// A clock that reads `reading` at base time `base` and runs at the base clock's rate.
    pub const fn new(base: i128, reading: i128) -> Self {
        Self {
            base0: base,
            reading0: reading,
            frequency_ppm: 0.0,
            slew_ppm: 0.0,
            slew_end: base,
        }
    }

    /// The reading at base time `base`.
    pub fn read(&self, base: i128) -> i128 {
        let elapsed = base - self.base0;
        let slewing = elapsed.clamp(0, (self.slew_end - self.base0).max(0));
        self.reading0
            + elapsed
            + scaled(elapsed, self.frequency_ppm)
            + scaled(slewing, self.slew_ppm)
    }

    /// The reading minus the base time: everything the corrections have added so far.
    pub fn correction(&self, base: i128) -> i128 {
        self.read(base) - base
    }

    /// The frequency correction in force, ppm.
    pub fn frequency_ppm(&self) -> f64 {
        self.frequency_ppm
    }

    /// Jumps the reading by `offset` nanoseconds at `base`; the frequency stays, a slew in
    /// progress is cancelled.
    pub fn step(&mut self, base: i128, offset: i128) {
        let reading = self.read(base) + offset;
        *self = Self {
            base0: base,
            reading0: reading,
            frequency_ppm: self.frequency_ppm,
            slew_ppm: 0.0,
            slew_end: base,
        };
    }

    /// The base time at which the clock reads `reading`: the inverse of [`SoftClock::read`],
    /// exact to the nanosecond's rounding (the reading rises with the base at every rate the
    /// discipline may set, so there is exactly one).
    pub fn base_at(&self, reading: i128) -> i128 {
        let frequency = 1.0 + self.frequency_ppm * 1e-6;
        let slew_end = self.slew_end.max(self.base0);
        let at_slew_end = self.read(slew_end);
        let elapsed = if reading <= self.reading0 {
            (reading - self.reading0) as f64 / frequency
        } else if reading <= at_slew_end {
            (reading - self.reading0) as f64 / (frequency + self.slew_ppm * 1e-6)
        } else {
            (slew_end - self.base0) as f64 + (reading - at_slew_end) as f64 / frequency
        };
        self.base0 + elapsed.round() as i128
    }

    /// From `base` on: run at `frequency_ppm`, and add `offset` nanoseconds by running
    /// `rate_ppm` faster (or slower) until it is in; replaces any slew in progress.
    pub fn slew(&mut self, base: i128, offset: i128, frequency_ppm: f64, rate_ppm: f64) {
        let reading = self.read(base);
        let rate = rate_ppm.abs().max(f64::MIN_POSITIVE);
        let duration = (offset.unsigned_abs() as f64 / (rate * 1e-6)).ceil() as i128;
        let signed_rate = if offset < 0 { -rate } else { rate };
        // The duration is rounded up, so the slew would overshoot by a few ns: trim the rate.
        let exact_rate = if duration > 0 {
            offset as f64 / duration as f64 * 1e6
        } else {
            signed_rate
        };
        *self = Self {
            base0: base,
            reading0: reading,
            frequency_ppm,
            slew_ppm: exact_rate,
            slew_end: base + duration,
        };
    }
}

fn scaled(nanos: i128, ppm: f64) -> i128 {
    (nanos as f64 * ppm * 1e-6).round() as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn a_slew_adds_exactly_its_offset_at_its_rate_and_then_stops() {
        let mut clock = SoftClock::new(10 * S, 10 * S);
        clock.slew(10 * S, 1_000_000, 0.0, 500.0);
        // 1 ms at 500 ppm takes 2 s; half of it is in after 1 s.
        assert_eq!(clock.correction(11 * S), 500_000);
        assert_eq!(clock.correction(12 * S), 1_000_000);
        assert_eq!(clock.correction(100 * S), 1_000_000);
    }

    #[test]
    fn frequency_step_and_replaced_slew_compose() {
        let mut clock = SoftClock::new(0, 0);
        clock.slew(0, -2_000_000, 10.0, 1000.0);
        // After 1 s: -1 ms of the slew and +10 us of frequency.
        assert_eq!(clock.correction(S), -1_000_000 + 10_000);
        // A new slew replaces what is left of the old one.
        clock.slew(S, 0, 20.0, 1000.0);
        assert_eq!(clock.correction(2 * S), -1_000_000 + 10_000 + 20_000);
        clock.step(2 * S, 300_000_000);
        assert_eq!(clock.correction(2 * S), 300_000_000 - 970_000);
        assert_eq!(clock.frequency_ppm(), 20.0);
    }

    #[test]
    fn base_at_inverts_read_before_during_and_after_a_slew() {
        let mut clock = SoftClock::new(0, 0);
        clock.slew(10 * S, -3_000_000, -50_000.0, 83_333.0);
        for base in [
            -5 * S,
            0,
            10 * S,
            10 * S + 20_000_000,
            10 * S + 36_000_000,
            400 * S,
        ] {
            let reading = clock.read(base);
            assert!((clock.base_at(reading) - base).abs() <= 1, "{base}");
        }
        clock.step(500 * S, 1_000 * S);
        assert_eq!(clock.base_at(clock.read(500 * S)), 500 * S);
    }

    #[test]
    fn time_never_runs_backwards_while_slewing_at_any_rate_below_a_million_ppm() {
        let mut clock = SoftClock::new(0, 0);
        clock.slew(0, -S, -50_000.0, 83_333.0);
        let mut last = clock.read(0);
        for ms in 1..20_000 {
            let now = clock.read(ms * 1_000_000);
            assert!(now > last);
            last = now;
        }
    }
}
