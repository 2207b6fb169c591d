//! # ntp-os: what both ntp-lite binaries need of Linux, written once
//!
//! - [`socket`]: kernel receive timestamps on a UDP socket (SO_TIMESTAMPNS) and reading a
//!   datagram with its timestamp; kernel software transmit timestamps (SO_TIMESTAMPING, from the
//!   error queue).
//! - [`kernel_clock`]: the kernel clock through `clock_adjtime(2)`: one atomic step
//!   (ADJ_SETOFFSET, never read-then-set), a slew, the frequency, the leap second flags.
//! - [`capability`]: whether this process may set the clock (CAP_SYS_TIME).
//!
//! Nothing here decides anything about NTP; `ntp-proto` does.

pub mod capability;
pub mod kernel_clock;
pub mod socket;
