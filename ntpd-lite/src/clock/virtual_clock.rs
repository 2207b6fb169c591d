//! A software clock: system time plus an offset plus a frequency times the elapsed time. The
//! daemon disciplines it exactly as it would the kernel clock and serves from it, so a whole
//! stratum hierarchy runs on one machine without privileges and without touching the real clock.
//! Its arithmetic is `ntp_proto::SoftClock`, the model the discipline assumes, on the axis of the
//! system time in Unix nanoseconds.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use ntp_proto::{NtpDuration, SoftClock};

use super::unix_nanos;

/// A disciplined software clock. Reads are lock-free; adjustments replace the model whole (only
/// the sync task adjusts it).
#[derive(Debug)]
pub struct VirtualClock {
    /// The model; its frequency is the natural drift plus the ordered correction.
    clock: ArcSwap<SoftClock>,
    /// The clock's natural frequency error, which the discipline must learn.
    drift_ppm: f64,
    /// The rate at which an offset is slewed away.
    max_slew_ppm: f64,
}

impl VirtualClock {
    /// A clock that reads `system + initial_offset` at `system` and runs `drift_ppm` fast.
    pub fn new(
        system: SystemTime,
        initial_offset: NtpDuration,
        drift_ppm: f64,
        max_slew_ppm: f64,
    ) -> Self {
        let base = unix_nanos(system);
        let mut clock = SoftClock::new(base, base + initial_offset.as_nanos());
        clock.slew(base, 0, drift_ppm, max_slew_ppm);
        Self {
            clock: ArcSwap::from_pointee(clock),
            drift_ppm,
            max_slew_ppm,
        }
    }

    /// The clock's reading, in nanoseconds since the Unix epoch, when the system clock read `system`.
    pub fn at_unix_nanos(&self, system: SystemTime) -> i128 {
        self.clock.load().read(unix_nanos(system))
    }

    /// The frequency correction the discipline last set, in ppm.
    pub fn frequency_ppm(&self) -> f64 {
        self.clock.load().frequency_ppm() - self.drift_ppm
    }

    /// Jumps by `offset`; a slew in progress is abandoned, the frequency correction kept.
    pub fn step(&self, system: SystemTime, offset: NtpDuration) {
        let mut clock = **self.clock.load();
        clock.step(unix_nanos(system), offset.as_nanos());
        self.clock.store(Arc::new(clock));
    }

    /// Sets the frequency correction to `frequency_ppm` and adds `offset` by running `rate_ppm`
    /// (at most `max_slew_ppm`, which is also the default) faster or slower until it is in,
    /// replacing any slew in progress ([`SoftClock::slew`], as `ntp_proto::ClockAction::Slew`
    /// means).
    pub fn slew(
        &self,
        system: SystemTime,
        offset: NtpDuration,
        frequency_ppm: f64,
        rate_ppm: Option<f64>,
    ) {
        let mut clock = **self.clock.load();
        let rate = rate_ppm.map_or(self.max_slew_ppm, |r| r.min(self.max_slew_ppm));
        clock.slew(
            unix_nanos(system),
            offset.as_nanos(),
            self.drift_ppm + frequency_ppm,
            rate,
        );
        self.clock.store(Arc::new(clock));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECOND: i128 = 1_000_000_000;

    fn at(clock: &VirtualClock, t0: SystemTime, seconds: f64) -> f64 {
        let system = t0 + Duration::from_secs_f64(seconds);
        (clock.at_unix_nanos(system) - unix_nanos(system)) as f64 / 1e9
    }

    #[test]
    fn offset_and_drift() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = VirtualClock::new(t0, NtpDuration::from_seconds_f64(0.3), 100.0, 500.0);
        assert!((at(&clock, t0, 0.0) - 0.3).abs() < 1e-9);
        assert!(
            (at(&clock, t0, 1000.0) - 0.4).abs() < 1e-9,
            "100 ppm over 1000 s is 0.1 s"
        );
    }

    #[test]
    fn slew_corrects_gradually_and_never_runs_backwards() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = VirtualClock::new(t0, NtpDuration::from_seconds_f64(0.05), 0.0, 500.0);
        clock.slew(t0, NtpDuration::from_seconds_f64(-0.05), 0.0, None);
        // 0.05 s at 500 ppm takes 100 s; halfway it is half done.
        assert!((at(&clock, t0, 50.0) - 0.025).abs() < 1e-6);
        assert!(at(&clock, t0, 100.0).abs() < 1e-6);
        assert!(at(&clock, t0, 500.0).abs() < 1e-6, "the slew ends");
        let mut last = i128::MIN;
        for ms in 0..200_000 {
            let now = clock.at_unix_nanos(t0 + Duration::from_millis(ms));
            assert!(now > last, "time ran backwards at {ms} ms");
            last = now;
        }
    }

    #[test]
    fn frequency_correction_cancels_drift_and_step_jumps() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = VirtualClock::new(t0, NtpDuration::ZERO, 20.0, 500.0);
        clock.slew(t0, NtpDuration::ZERO, -20.0, None);
        assert!(at(&clock, t0, 10_000.0).abs() < 1e-6);
        clock.step(
            t0 + Duration::from_secs(10_000),
            NtpDuration::from_seconds(-2),
        );
        assert!((at(&clock, t0, 10_001.0) + 2.0).abs() < 1e-6);
        assert_eq!(SECOND, 1_000_000_000);
    }

    #[test]
    fn a_new_slew_replaces_what_is_left_of_the_last_as_the_discipline_assumes() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = VirtualClock::new(t0, NtpDuration::ZERO, 0.0, 500.0);
        clock.slew(t0, NtpDuration::from_seconds_f64(0.001), 0.0, None);
        // Halfway through (1 s at 500 ppm), a zero slew stops it: half of it stays in.
        clock.slew(t0 + Duration::from_secs(1), NtpDuration::ZERO, 0.0, None);
        assert!((at(&clock, t0, 100.0) - 0.0005).abs() < 1e-9);
        // The same as the model the discipline keeps.
        let mut model = SoftClock::new(0, 0);
        model.slew(0, 1_000_000, 0.0, 500.0);
        model.slew(SECOND, 0, 0.0, 500.0);
        assert_eq!(model.correction(100 * SECOND), 500_000);
        assert!((clock.frequency_ppm()).abs() < 1e-12);
    }
}
