//! Test harness for the ntp-lite end-to-end tests.

pub mod link;
