//! The kernel clock, adjusted through `ntp_os::kernel_clock` (`clock_adjtime(2)`, needs
//! CAP_SYS_TIME). Only an explicit `mode = "system"` in a configuration ever reaches this code; no
//! test or CI step does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ntp_os::kernel_clock;
use ntp_proto::{LeapKind, NtpDuration};

use super::ClockError;

/// The kernel's realtime clock.
#[derive(Debug, Default)]
pub struct SystemClock {
    frequency_ppm_bits: AtomicU64,
    /// The kernel was told of a leap second (and will make it).
    leap_armed: AtomicBool,
}

impl SystemClock {
    /// A handle on the kernel clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frequency this daemon last set, in ppm.
    pub fn frequency_ppm(&self) -> f64 {
        f64::from_bits(self.frequency_ppm_bits.load(Ordering::Relaxed))
    }

    /// Steps the clock by `offset` at once (ADJ_SETOFFSET).
    pub fn step(&self, offset: NtpDuration) -> Result<(), ClockError> {
        kernel_clock::step(offset).map_err(ClockError::Kernel)
    }

    /// Sets the frequency (ADJ_FREQUENCY) and lets the kernel slew `offset` away at its fixed
    /// 500 ppm (ADJ_OFFSET_SINGLESHOT, the adjtime(3) interface).
    pub fn slew(&self, offset: NtpDuration, frequency_ppm: f64) -> Result<(), ClockError> {
        kernel_clock::set_frequency(frequency_ppm).map_err(ClockError::Kernel)?;
        self.frequency_ppm_bits
            .store(frequency_ppm.to_bits(), Ordering::Relaxed);
        kernel_clock::slew(offset).map_err(ClockError::Kernel)
    }

    /// True while the kernel was told of a leap second.
    pub fn leap_armed(&self) -> bool {
        self.leap_armed.load(Ordering::Relaxed)
    }

    /// Sets or clears the kernel's leap flags: the kernel inserts or deletes the second at the
    /// next midnight UTC.
    pub fn announce_leap(&self, kind: Option<LeapKind>) -> Result<(), ClockError> {
        kernel_clock::set_leap(kind).map_err(ClockError::Kernel)?;
        self.leap_armed.store(kind.is_some(), Ordering::Relaxed);
        Ok(())
    }
}
