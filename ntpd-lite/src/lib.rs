//! The part of ntpd-lite that is a library: its configuration (parsing and validation, no IO but
//! reading the file), so that the fuzz target in `ntpd-lite/fuzz` can feed it arbitrary text. The
//! daemon itself is the binary (`main.rs` and its modules), which uses this.

pub mod config;
pub mod nts_config;
