//! The clocks the daemon reads and disciplines: the kernel clock (`system`), a software clock
//! (`virtual`) and the kernel clock read-only (`monitor`). Reads are lock-free: server workers read
//! the clock for every request.

mod system;
mod virtual_clock;

use std::time::SystemTime;

use ntp_proto::{LeapKind, NtpDuration, NtpTimestamp, Precision};

pub use system::SystemClock;
pub use virtual_clock::VirtualClock;

use crate::config::{ClockConfig, ClockMode};

/// A clock adjustment that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// The kernel refused (usually: no CAP_SYS_TIME).
    #[error(
        "the kernel refused to adjust the clock: {0}; run with CAP_SYS_TIME or use clock mode \"virtual\" or \"monitor\""
    )]
    Kernel(std::io::Error),
}

/// The daemon's clock.
#[derive(Debug)]
pub enum Clock {
    /// The kernel clock, adjusted with adjtimex (needs CAP_SYS_TIME).
    System(SystemClock),
    /// A software clock: system time + offset + frequency * elapsed.
    Virtual(VirtualClock),
    /// The kernel clock, never adjusted.
    Monitor,
}

impl Clock {
    /// The clock the configuration asks for, with its slew limit.
    pub fn from_config(config: &ClockConfig, max_slew_ppm: f64) -> Self {
        match config.mode {
            ClockMode::System => Self::System(SystemClock::new()),
            ClockMode::Virtual => Self::Virtual(VirtualClock::new(
                SystemTime::now(),
                NtpDuration::from_seconds_f64(config.initial_offset),
                config.drift_ppm,
                max_slew_ppm,
            )),
            ClockMode::Monitor => Self::Monitor,
        }
    }

    /// Which kind of clock this is.
    pub fn mode(&self) -> ClockMode {
        match self {
            Self::System(_) => ClockMode::System,
            Self::Virtual(_) => ClockMode::Virtual,
            Self::Monitor => ClockMode::Monitor,
        }
    }

    /// What this clock read when the system clock read `system` (kernel receive timestamps are
    /// system-clock times).
    pub fn at(&self, system: SystemTime) -> NtpTimestamp {
        match self {
            Self::Virtual(v) => NtpTimestamp::from_unix_nanos(v.at_unix_nanos(system)),
            Self::System(_) | Self::Monitor => NtpTimestamp::from_system_time(system),
        }
    }

    /// The time now.
    pub fn now(&self) -> NtpTimestamp {
        self.at(SystemTime::now())
    }

    /// Jumps the clock by `offset`.
    pub fn step(&self, offset: NtpDuration) -> Result<(), ClockError> {
        match self {
            Self::System(s) => s.step(offset),
            Self::Virtual(v) => {
                v.step(SystemTime::now(), offset);
                Ok(())
            }
            Self::Monitor => Ok(()),
        }
    }

    /// The leap second itself, at its instant: a system clock whose kernel was told of it (see
    /// [`Clock::announce_leap`]) has made it already; any other clock steps.
    pub fn leap(&self, offset: NtpDuration) -> Result<(), ClockError> {
        match self {
            Self::System(s) if s.leap_armed() => s.announce_leap(None),
            _ => self.step(offset),
        }
    }

    /// Tells a system clock's kernel of the coming leap (STA_INS/STA_DEL), or that none is
    /// coming; the kernel then inserts or deletes the second at midnight UTC by itself. Other
    /// clocks are stepped by [`Clock::leap`].
    pub fn announce_leap(&self, kind: Option<LeapKind>) -> Result<(), ClockError> {
        match self {
            Self::System(s) => s.announce_leap(kind),
            Self::Virtual(_) | Self::Monitor => Ok(()),
        }
    }

    /// Sets the frequency correction to `frequency_ppm` and slews away `offset` at `rate_ppm`
    /// (the clock's fastest if `None`; the system clock always slews at the kernel's 500 ppm,
    /// and the core is configured to ask for exactly that).
    pub fn slew(
        &self,
        offset: NtpDuration,
        frequency_ppm: f64,
        rate_ppm: Option<f64>,
    ) -> Result<(), ClockError> {
        match self {
            Self::System(s) => s.slew(offset, frequency_ppm),
            Self::Virtual(v) => {
                v.slew(SystemTime::now(), offset, frequency_ppm, rate_ppm);
                Ok(())
            }
            Self::Monitor => Ok(()),
        }
    }

    /// The frequency correction last applied, in ppm (the kernel's own for the system clock is
    /// not read back; the daemon's last setting is reported).
    pub fn frequency_ppm(&self) -> f64 {
        match self {
            Self::Virtual(v) => v.frequency_ppm(),
            Self::System(s) => s.frequency_ppm(),
            Self::Monitor => 0.0,
        }
    }

    /// This clock minus the system clock: the true error of a virtual clock in a lab whose
    /// reference runs on the system clock; zero for the others.
    pub fn error(&self) -> NtpDuration {
        match self {
            Self::Virtual(v) => {
                let now = SystemTime::now();
                NtpDuration::from_nanos(v.at_unix_nanos(now) - unix_nanos(now))
            }
            Self::System(_) | Self::Monitor => NtpDuration::ZERO,
        }
    }
}

/// Measures how finely the clock can be read (RFC 5905 section 7.3 precision): the smallest
/// non-zero step between successive reads, as a log2 of seconds, rounded up.
pub fn measure_precision(clock: &Clock) -> Precision {
    let mut smallest = u64::MAX;
    let mut last = clock.now();
    for _ in 0..1000 {
        let now = clock.now();
        let step = (now - last).to_bits();
        if step > 0 {
            smallest = smallest.min(step as u64);
        }
        last = now;
    }
    // 2^-32 s units: log2(seconds) = log2(bits) - 32.
    let log2 = 64 - i32::try_from(smallest.max(1).leading_zeros()).unwrap_or(0) - 32;
    Precision::new(log2.clamp(-32, 0) as i8)
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos(time: SystemTime) -> i128 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_is_sub_millisecond() {
        let p = measure_precision(&Clock::Monitor);
        assert!((-32..=-10).contains(&p.get()), "{p:?}");
    }

    #[test]
    fn monitor_reads_the_system_clock_and_never_moves() {
        let clock = Clock::Monitor;
        clock.step(NtpDuration::from_seconds(5)).expect("no-op");
        let error = (clock.now() - NtpTimestamp::from_system_time(SystemTime::now())).abs();
        assert!(error < NtpDuration::from_seconds_f64(0.01));
        assert_eq!(clock.error(), NtpDuration::ZERO);
    }
}
