//! Harness for the ntp-lite end-to-end tests: the real binaries, talking over real UDP on
//! 127.0.0.1 and ::1, with real peers (chrony, ntpsec's ntpdig, Python's ntplib).
//!
//! - [`bins`]: finds (and first builds) the workspace binaries a test runs.
//! - [`daemon`]: `ntpd-lite` daemons from generated TOML, their status and logs.
//! - [`client`]: a minimal NTP client on ntp-proto.
//! - [`lab`]: nodes of a lab (each on its own 127.0.0.x, virtual clocks) and waiting on status.
//! - [`fake_server`]: scriptable misbehaving NTP servers.
//! - [`load`]: the request bookkeeping of the `ntp-load` load generator.
//! - [`link`]: a link emulator (delay, jitter, loss, duplication, reordering) between a client
//!   and a server, seeded so runs repeat.
//! - [`kernel_time`]: kernel receive timestamps and timer slack for plain UDP sockets.
//! - [`chrony`]: chronyd (always `-x`) as a server or as a client.
//! - [`netns`]: network namespaces of the test's own, for tools that only use port 123.
//! - [`nts`]: a blocking NTS-KE client, for crafted NTS packets and the load generator.
//! - [`pki`]: a private CA and server certificates for NTS-KE, made by the test.
//! - [`ntpsec`]: ntpsec's ntpd (unpacked from its .deb) as a server inside such a namespace.
//! - [`scenario`], [`plot`]: lab scenarios from `config/lab/`, run and drawn (the `lab` binary).
//! - [`side_by_side`]: ntpd-lite and chronyd synchronizing through equal emulated links, their
//!   served time probed (`daemon-vs-chronyd link`).
//! - [`sim`]: the simulator: the real client core and server in simulated time (`ntp-sim`).
//! - [`tools`]: the rule for missing peers (a failure under CI), ntplib, free ports.

pub mod bins;
pub mod chrony;
pub mod client;
pub mod daemon;
pub mod dns;
pub mod fake_server;
pub mod kernel_time;
pub mod lab;
pub mod link;
pub mod load;
pub mod netns;
pub mod ntpsec;
pub mod nts;
pub mod pki;
pub mod plot;
pub mod scenario;
pub mod side_by_side;
pub mod sim;
pub mod tools;

/// How far a one-shot query of a server that reads the same clock as the client may be off: half
/// the round-trip delay it measured (wherever in the round trip the server read its clock, the
/// offset is at most that, RFC 5905 section 8), plus 20 us for the two clocks' reading. A bound
/// that holds however loaded the machine, unlike a fixed one.
pub fn offset_bound(delay: f64) -> f64 {
    delay / 2.0 + 20e-6
}

/// Prints a line of figures that shows in the test output even when the test passes: it writes to
/// the stderr handle directly, which the test harness does not capture (it captures `print!`).
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "FIGURES {line}");
}

/// `format!`-style [`report`].
#[macro_export]
macro_rules! figures {
    ($($arg:tt)*) => {
        $crate::report(&format!($($arg)*))
    };
}
