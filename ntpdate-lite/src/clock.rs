//! The system clock: read for T1 and T4, and changed only when -b, -B or --set asks, after the
//! CAP_SYS_TIME check, through `ntp_os` (the daemon's kernel clock code too).

use std::io;
use std::time::SystemTime;

use ntp_proto::{NtpDuration, NtpTimestamp};

use crate::cli::Adjust;

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
    /// The capabilities could not be read.
    #[error("cannot read this process's capabilities: {0}")]
    Capabilities(io::Error),
    /// clock_adjtime (ADJ_SETOFFSET) failed.
    #[error("stepping the clock failed: {0}")]
    Step(io::Error),
    /// clock_adjtime (ADJ_OFFSET_SINGLESHOT) failed.
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
    match ntp_os::capability::has_cap_sys_time() {
        Ok(true) => Ok(()),
        Ok(false) => Err(ClockError::NoCapability),
        Err(e) => Err(ClockError::Capabilities(e)),
    }
}

/// Changes the system clock: one atomic step (ADJ_SETOFFSET: the kernel adds the offset to the
/// time it keeps, no read-then-set), or a kernel slew. Never called by a test.
pub fn apply(action: Action) -> Result<(), ClockError> {
    match action {
        Action::Step(offset) => ntp_os::kernel_clock::step(offset).map_err(ClockError::Step),
        Action::Slew(offset) => ntp_os::kernel_clock::slew(offset).map_err(ClockError::Slew),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
