//! Harness for the ntp-lite end-to-end tests: the real binaries, talking over real UDP on
//! 127.0.0.1 and ::1, with real peers (chrony, ntpsec, ntplib) where the machine has them.
//!
//! Binaries are found next to the test executable (`target/<profile>/`). `cargo test --workspace`
//! builds them before any test runs, because `ntpd-lite` and `ntpdate-lite` each have integration
//! tests of their own (cargo builds a package's binaries for its integration tests).

pub mod client;
pub mod daemon;
pub mod load;
pub mod peers;

use std::path::PathBuf;

/// The path of a workspace binary built alongside the running test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test>-<hash>  ->  target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

/// True when running under CI, where a missing real peer is a failure, never a silent skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// A free UDP port on 127.0.0.1 (and, very likely, on ::1).
pub fn free_udp_port() -> u16 {
    loop {
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = v4.local_addr().expect("bound").port();
        if std::net::UdpSocket::bind(("::1", port)).is_ok() {
            return port;
        }
    }
}
