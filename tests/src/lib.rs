//! Test harness for the ntp-lite end-to-end tests.
//!
//! The binaries under test are found next to the test executable and rebuilt first if needed; see
//! [`bins`] for how and why (`CARGO_BIN_EXE_*` only covers this package's own binaries).

pub mod bins;
pub mod chrony;
pub mod fake_server;
pub mod tools;
