//! Third-party tools the tests compare against (chronyd, python ntplib, ntpdig), and the rule for
//! when one is missing: under CI (`CI=true`) a missing tool fails the test; locally the test is
//! skipped with a loud message on stderr.

use std::net::SocketAddr;
use std::process::Command;

/// True when running under CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns `available`; if it is false, panics under CI and prints a loud skip notice locally.
pub fn require(tool: &str, available: bool, test: &str) -> bool {
    if !available {
        assert!(
            !in_ci(),
            "{tool} is required under CI but missing (test {test})"
        );
        eprintln!(
            "\n*** SKIPPING {test}: {tool} is not available (install it to run this test) ***\n"
        );
    }
    available
}

/// True if this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|uids| uids.split_whitespace().nth(1) == Some("0"))
    })
}

/// True if `python3 -c 'import ntplib'` works.
pub fn ntplib_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import ntplib"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The ntplib example, generalised: query `server` once and print the fields as JSON.
pub const NTPLIB_SCRIPT: &str = r#"
import json, sys, ntplib
host, port = sys.argv[1], int(sys.argv[2])
r = ntplib.NTPClient().request(host, version=int(sys.argv[3]), port=port, timeout=2)
print(json.dumps({
    "offset": r.offset, "delay": r.delay, "stratum": r.stratum, "leap": r.leap,
    "version": r.version, "mode": r.mode, "precision": r.precision,
    "ref_id": ntplib.ref_id_to_text(r.ref_id, r.stratum), "tx_time": r.tx_time,
}))
"#;

/// What ntplib says about `server` (NTP version 4), as JSON.
pub fn ntplib_query(server: SocketAddr) -> serde_json::Value {
    ntplib_query_version(server, 4)
}

/// What ntplib says about `server` when it asks with `version`, as JSON.
pub fn ntplib_query_version(server: SocketAddr, version: u8) -> serde_json::Value {
    let output = Command::new("python3")
        .args(["-c", NTPLIB_SCRIPT])
        .arg(server.ip().to_string())
        .arg(server.port().to_string())
        .arg(version.to_string())
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "ntplib query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ntplib script prints JSON")
}

/// True if `program` runs (`program check...` exits 0).
pub fn runs(program: &str, check: &[&str]) -> bool {
    Command::new(program)
        .args(check)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A UDP port free on both 0.0.0.0 and [::] right now.
pub fn free_udp_port() -> u16 {
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
    for _ in 0..100 {
        let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind an ephemeral port");
        let port = v4.local_addr().expect("bound").port();
        drop(v4);
        // A dual-stack [::] bind also claims the IPv4 port: it succeeds only if both are free.
        if UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port found");
}
