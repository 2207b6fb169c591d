//! The system clock: read for T1 and T4, and changed only when -b, -B or --set asks, after the
//! CAP_SYS_TIME check.

use std::io;
use std::time::SystemTime;

use ntp_proto::{NtpDuration, NtpTimestamp};

use crate::cli::Adjust;

/// Bit of CAP_SYS_TIME in the capability sets (linux/capability.h).
const CAP_SYS_TIME: u32 = 25;
/// --set steps at this offset or more and slews below it, like ntpdate (0.5 s).
pub const STEP_THRESHOLD: NtpDuration = NtpDuration::from_bits(1 << 31);

/// The system clock now, as an NTP timestamp.
pub fn now() -> NtpTimestamp {
    NtpTimestamp::from_system_time(SystemTime::now())
}

/// Why the clock was not changed.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// The process lacks the capability; nothing was sent.
    #[error(
        "setting the clock needs CAP_SYS_TIME, which this process does not have \
         (run as root or grant cap_sys_time; -q queries without setting)"
    )]
    NoCapability,
    /// /proc/self/status could not be read or has no CapEff line.
    #[error("cannot read the capabilities from /proc/self/status: {0}")]
    Capabilities(io::Error),
    /// clock_gettime or clock_settime failed.
    #[error("stepping the clock failed: {0}")]
    Step(io::Error),
    /// adjtime failed.
    #[error("slewing the clock failed: {0}")]
    Slew(io::Error),
}

/// A change to make to the clock.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Jump by the offset.
    Step(NtpDuration),
    /// Let the kernel slew by the offset.
    Slew(NtpDuration),
}

/// The action the flags ask for, for this offset; `None` for a query.
pub fn choose(adjust: Adjust, offset: NtpDuration) -> Option<Action> {
    match adjust {
        Adjust::None => None,
        Adjust::Step => Some(Action::Step(offset)),
        Adjust::Slew => Some(Action::Slew(offset)),
        Adjust::Set if offset.abs() >= STEP_THRESHOLD => Some(Action::Step(offset)),
        Adjust::Set => Some(Action::Slew(offset)),
    }
}

/// Fails unless this process has CAP_SYS_TIME in its effective set. Called before any query.
pub fn require_cap_sys_time() -> Result<(), ClockError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(ClockError::Capabilities)?;
    let effective = effective_capabilities(&status).ok_or_else(|| {
        ClockError::Capabilities(io::Error::new(io::ErrorKind::InvalidData, "no CapEff line"))
    })?;
    if effective & (1 << CAP_SYS_TIME) == 0 {
        return Err(ClockError::NoCapability);
    }
    Ok(())
}

/// The `CapEff:` hex mask of a /proc/PID/status text.
fn effective_capabilities(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// Changes the system clock. Never called by a test.
pub fn apply(action: Action) -> Result<(), ClockError> {
    match action {
        Action::Step(offset) => step(offset),
        Action::Slew(offset) => slew(offset),
    }
}

fn step(offset: NtpDuration) -> Result<(), ClockError> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        return Err(ClockError::Step(io::Error::last_os_error()));
    }
    let nanos = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec) + offset.as_nanos();
    let target = libc::timespec {
        tv_sec: nanos.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: nanos.rem_euclid(1_000_000_000) as libc::c_long,
    };
    // SAFETY: `target` is a valid timespec with 0 <= tv_nsec < 1e9; the kernel only reads it.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &target) } != 0 {
        return Err(ClockError::Step(io::Error::last_os_error()));
    }
    Ok(())
}

fn slew(offset: NtpDuration) -> Result<(), ClockError> {
    let micros = offset.as_nanos() / 1000;
    let delta = libc::timeval {
        tv_sec: micros.div_euclid(1_000_000) as libc::time_t,
        tv_usec: micros.rem_euclid(1_000_000) as libc::suseconds_t,
    };
    // SAFETY: `delta` is a valid timeval the kernel only reads; a null old-delta pointer is
    // allowed by adjtime(3).
    if unsafe { libc::adjtime(&delta, std::ptr::null_mut()) } != 0 {
        return Err(ClockError::Slew(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tntpdate-lite\nCapInh:\t0000000000000000\n\
                          CapPrm:\t0000000002000000\nCapEff:\t%EFF%\nCapBnd:\t000001ffffffffff\n";

    #[test]
    fn cap_eff_is_read_from_a_status_text() {
        let with = STATUS.replace("%EFF%", "0000000002000000");
        let mask = effective_capabilities(&with).expect("parses");
        assert_eq!(mask, 1 << CAP_SYS_TIME);
        // Every capability except CAP_SYS_TIME.
        let without = STATUS.replace("%EFF%", "000001fffdffffff");
        let mask = effective_capabilities(&without).expect("parses");
        assert_eq!(mask & (1 << CAP_SYS_TIME), 0);
        assert_eq!(effective_capabilities("Name:\tx\n"), None);
        assert_eq!(effective_capabilities("CapEff:\tzz\n"), None);
    }

    #[test]
    fn set_steps_at_half_a_second_and_slews_below() {
        let half = NtpDuration::from_seconds_f64(0.5);
        let small = NtpDuration::from_seconds_f64(-0.499);
        assert_eq!(choose(Adjust::Set, half), Some(Action::Step(half)));
        assert_eq!(choose(Adjust::Set, -half), Some(Action::Step(-half)));
        assert_eq!(choose(Adjust::Set, small), Some(Action::Slew(small)));
        assert_eq!(choose(Adjust::Step, small), Some(Action::Step(small)));
        assert_eq!(choose(Adjust::Slew, half), Some(Action::Slew(half)));
        assert_eq!(choose(Adjust::None, half), None);
    }
}
