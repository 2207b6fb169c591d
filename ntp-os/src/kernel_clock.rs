//! The kernel's realtime clock through `clock_adjtime(2)` (needs CAP_SYS_TIME). Only a daemon
//! with `mode = "system"` and ntpdate-lite's -b, -B or --set reach this code; no test or CI step
//! does.

use std::io;

use ntp_proto::{LeapKind, NtpDuration};

/// The largest frequency correction the kernel accepts (ADJ_FREQUENCY, its MAXFREQ), ppm.
pub const MAX_FREQUENCY_PPM: f64 = 500.0;
/// The largest offset ADJ_OFFSET_SINGLESHOT takes, microseconds (the kernel's limit, 0.5 s).
const MAX_SLEW_MICROS: i128 = 500_000_000;

/// Steps the clock by `offset` at once: the kernel adds it to the time it keeps (ADJ_SETOFFSET),
/// so no time passes between reading the clock and setting it.
pub fn step(offset: NtpDuration) -> io::Result<()> {
    let nanos = offset.as_nanos();
    let mut tx = zeroed_timex();
    tx.modes = libc::ADJ_SETOFFSET | libc::ADJ_NANO;
    tx.time.tv_sec = nanos.div_euclid(1_000_000_000) as libc::time_t;
    tx.time.tv_usec = nanos.rem_euclid(1_000_000_000) as libc::suseconds_t;
    adjtime(&mut tx)
}

/// Lets the kernel slew `offset` away at its fixed 500 ppm (ADJ_OFFSET_SINGLESHOT, the adjtime(3)
/// interface; at most 0.5 s).
pub fn slew(offset: NtpDuration) -> io::Result<()> {
    let mut tx = zeroed_timex();
    tx.modes = libc::ADJ_OFFSET_SINGLESHOT;
    tx.offset = (offset.as_nanos() / 1000).clamp(-MAX_SLEW_MICROS, MAX_SLEW_MICROS) as libc::c_long;
    adjtime(&mut tx)
}

/// Sets the frequency correction (ADJ_FREQUENCY), within the kernel's +-500 ppm.
pub fn set_frequency(ppm: f64) -> io::Result<()> {
    let mut tx = zeroed_timex();
    tx.modes = libc::ADJ_FREQUENCY;
    // The kernel's unit is ppm with a 16-bit binary fraction.
    tx.freq = (ppm.clamp(-MAX_FREQUENCY_PPM, MAX_FREQUENCY_PPM) * 65536.0) as libc::c_long;
    adjtime(&mut tx)
}

/// Sets or clears the kernel's leap flags (ADJ_STATUS with STA_INS or STA_DEL), keeping the
/// other status bits: the kernel inserts or deletes the second at the next midnight UTC.
pub fn set_leap(kind: Option<LeapKind>) -> io::Result<()> {
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
    adjtime(&mut tx)
}

fn zeroed_timex() -> libc::timex {
    // SAFETY: timex is a plain C struct of integers; all-zero is a valid value (modes = 0: read only).
    unsafe { std::mem::zeroed() }
}

fn adjtime(tx: &mut libc::timex) -> io::Result<()> {
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the duration of the call.
    let result = unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, tx) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_the_kernel_clock_state_changes_nothing() {
        // modes = 0 only reads: the one call a test may make.
        let mut tx = zeroed_timex();
        assert!(adjtime(&mut tx).is_ok());
    }
}
