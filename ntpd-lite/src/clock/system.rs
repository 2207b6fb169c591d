//! The kernel clock, adjusted through `clock_adjtime(2)` (needs CAP_SYS_TIME). Only an explicit
//! `mode = "system"` in a configuration ever reaches this code; no test or CI step does.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ntp_proto::{LeapKind, NtpDuration};

use super::ClockError;
use crate::config::KERNEL_MAX_FREQUENCY_PPM;

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
        let nanos = offset.as_nanos();
        let mut tx = zeroed_timex();
        tx.modes = libc::ADJ_SETOFFSET | libc::ADJ_NANO;
        tx.time.tv_sec = nanos.div_euclid(1_000_000_000) as libc::time_t;
        tx.time.tv_usec = nanos.rem_euclid(1_000_000_000) as libc::suseconds_t;
        adjtime(&mut tx)
    }

    /// Sets the frequency (ADJ_FREQUENCY) and lets the kernel slew `offset` away at its fixed
    /// 500 ppm (ADJ_OFFSET_SINGLESHOT, the adjtime(3) interface).
    pub fn slew(&self, offset: NtpDuration, frequency_ppm: f64) -> Result<(), ClockError> {
        let mut tx = zeroed_timex();
        tx.modes = libc::ADJ_FREQUENCY;
        // The kernel's unit is ppm with a 16-bit binary fraction.
        tx.freq = (frequency_ppm.clamp(-KERNEL_MAX_FREQUENCY_PPM, KERNEL_MAX_FREQUENCY_PPM)
            * 65536.0) as libc::c_long;
        adjtime(&mut tx)?;
        self.frequency_ppm_bits
            .store(frequency_ppm.to_bits(), Ordering::Relaxed);
        let mut tx = zeroed_timex();
        tx.modes = libc::ADJ_OFFSET_SINGLESHOT;
        tx.offset = (offset.as_nanos() / 1000).clamp(-500_000_000, 500_000_000) as libc::c_long;
        adjtime(&mut tx)
    }
}

impl SystemClock {
    /// True while the kernel was told of a leap second.
    pub fn leap_armed(&self) -> bool {
        self.leap_armed.load(Ordering::Relaxed)
    }

    /// Sets or clears the kernel's leap flags (ADJ_STATUS with STA_INS or STA_DEL), keeping the
    /// other status bits: the kernel inserts or deletes the second at the next midnight UTC.
    pub fn announce_leap(&self, kind: Option<LeapKind>) -> Result<(), ClockError> {
        let mut tx = zeroed_timex();
        adjtime(&mut tx)?;
        let mut status = tx.status & !(libc::STA_INS | libc::STA_DEL);
        status |= match kind {
            Some(LeapKind::Insert) => libc::STA_INS,
            Some(LeapKind::Delete) => libc::STA_DEL,
            None => 0,
        };
        let mut tx = zeroed_timex();
        tx.modes = libc::ADJ_STATUS;
        tx.status = status;
        adjtime(&mut tx)?;
        self.leap_armed.store(kind.is_some(), Ordering::Relaxed);
        Ok(())
    }
}

fn zeroed_timex() -> libc::timex {
    // SAFETY: timex is a plain C struct of integers; all-zero is a valid value (modes = 0: read only).
    unsafe { std::mem::zeroed() }
}

fn adjtime(tx: &mut libc::timex) -> Result<(), ClockError> {
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the duration of the call.
    let result = unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, tx) };
    if result < 0 {
        Err(ClockError::Kernel(io::Error::last_os_error()))
    } else {
        Ok(())
    }
}
