//! A software clock: system time plus an offset plus a frequency times the elapsed time. The
//! daemon disciplines it exactly as it would the kernel clock and serves from it, so a whole
//! stratum hierarchy runs on one machine without privileges and without touching the real clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use ntp_proto::NtpDuration;

use super::unix_nanos;

/// One linear piece of the clock: from system time `system0` on, the clock reads `clock0` plus the
/// elapsed system time scaled by `1 + rate_ppm * 1e-6` until `slew_end`, and by
/// `1 + rate_after_ppm * 1e-6` from then on (the slew is over).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Segment {
    system0: i128,
    clock0: i128,
    rate_ppm: f64,
    slew_end: i128,
    rate_after_ppm: f64,
}

impl Segment {
    fn at(&self, system: i128) -> i128 {
        let elapsed = system - self.system0;
        let slewing = elapsed.min(self.slew_end - self.system0);
        let after = (elapsed - slewing).max(0);
        self.clock0 + elapsed + scaled(slewing, self.rate_ppm) + scaled(after, self.rate_after_ppm)
    }
}

fn scaled(nanos: i128, ppm: f64) -> i128 {
    (nanos as f64 * ppm * 1e-6).round() as i128
}

/// A disciplined software clock. Reads are lock-free; adjustments replace the segment whole.
#[derive(Debug)]
pub struct VirtualClock {
    segment: ArcSwap<Segment>,
    /// The clock's natural frequency error, which the discipline must learn.
    drift_ppm: f64,
    /// The fastest slew.
    max_slew_ppm: f64,
    /// The frequency correction the discipline last set.
    frequency_ppm_bits: AtomicU64,
}

impl VirtualClock {
    /// A clock that reads `system + initial_offset` at `system` and runs `drift_ppm` fast.
    pub fn new(
        system: SystemTime,
        initial_offset: NtpDuration,
        drift_ppm: f64,
        max_slew_ppm: f64,
    ) -> Self {
        let system0 = unix_nanos(system);
        let segment = Segment {
            system0,
            clock0: system0 + initial_offset.as_nanos(),
            rate_ppm: drift_ppm,
            slew_end: system0,
            rate_after_ppm: drift_ppm,
        };
        Self {
            segment: ArcSwap::from_pointee(segment),
            drift_ppm,
            max_slew_ppm,
            frequency_ppm_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// The clock's reading, in nanoseconds since the Unix epoch, when the system clock read `system`.
    pub fn at_unix_nanos(&self, system: SystemTime) -> i128 {
        self.segment.load().at(unix_nanos(system))
    }

    /// The frequency correction the discipline last set, in ppm.
    pub fn frequency_ppm(&self) -> f64 {
        f64::from_bits(self.frequency_ppm_bits.load(Ordering::Relaxed))
    }

    /// Jumps by `offset`; a slew in progress is abandoned, the frequency correction kept.
    pub fn step(&self, system: SystemTime, offset: NtpDuration) {
        let now = unix_nanos(system);
        let rate = self.drift_ppm + self.frequency_ppm();
        self.replace(now, offset.as_nanos(), rate, now, rate);
    }

    /// Sets the frequency correction and slews `offset` away at the maximum slew rate, so the
    /// clock never runs backwards (the rate stays positive).
    pub fn slew(&self, system: SystemTime, offset: NtpDuration, frequency_ppm: f64) {
        let now = unix_nanos(system);
        self.frequency_ppm_bits
            .store(frequency_ppm.to_bits(), Ordering::Relaxed);
        let rate = self.drift_ppm + frequency_ppm;
        let nanos = offset.as_nanos();
        let duration = (nanos.unsigned_abs() as f64 / (self.max_slew_ppm * 1e-6)) as i128;
        let slew_ppm = if nanos < 0 {
            -self.max_slew_ppm
        } else {
            self.max_slew_ppm
        };
        self.replace(now, 0, rate + slew_ppm, now + duration, rate);
    }

    fn replace(&self, now: i128, jump: i128, rate_ppm: f64, slew_end: i128, rate_after_ppm: f64) {
        let clock0 = self.segment.load().at(now) + jump;
        self.segment.store(Arc::new(Segment {
            system0: now,
            clock0,
            rate_ppm,
            slew_end,
            rate_after_ppm,
        }));
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
        clock.slew(t0, NtpDuration::from_seconds_f64(-0.05), 0.0);
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
        clock.slew(t0, NtpDuration::ZERO, -20.0);
        assert!(at(&clock, t0, 10_000.0).abs() < 1e-6);
        clock.step(
            t0 + Duration::from_secs(10_000),
            NtpDuration::from_seconds(-2),
        );
        assert!((at(&clock, t0, 10_001.0) + 2.0).abs() < 1e-6);
        assert_eq!(SECOND, 1_000_000_000);
    }
}
