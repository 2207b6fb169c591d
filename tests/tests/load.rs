//! The load generator `ntp-load` against real servers for a second: every reply is matched and
//! valid, nothing is lost (within a generous 1 s), and it refuses to load anything but loopback.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ntp_lite_tests::chrony::Chronyd;
use ntp_lite_tests::client::Client;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::tools::{self, free_udp_port};
use serde_json::Value;

/// Runs `ntp-load` against `server` for one second; the exit code and the JSON report.
fn load(server: SocketAddr, extra: &[&str]) -> (Option<i32>, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_ntp-load"))
        .arg("--server")
        .arg(server.to_string())
        .args([
            "--seconds",
            "1",
            "--warmup-ms",
            "100",
            "--timeout-ms",
            "1000",
            "--json",
        ])
        .args(extra)
        .output()
        .expect("run ntp-load");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), report)
}

fn assert_clean(report: &Value, server: &str) {
    ntp_lite_tests::figures!("{server}: {report}");
    assert!(
        report["valid"].as_u64().is_some_and(|v| v > 1000),
        "{server}: {report}"
    );
    for field in ["invalid", "unmatched", "lost", "errors"] {
        assert_eq!(report[field], 0, "{server}: {field} in {report}");
    }
    let number = |field: &str| report[field].as_u64().unwrap_or(0);
    let (sent, valid, in_flight) = (number("sent"), number("valid"), number("in_flight"));
    // Counting starts after the warm-up: replies counted may answer requests sent before it, at
    // most a full window per socket; requests counted are answered or still in flight.
    let windows = number("sockets") * number("window");
    assert!(
        valid <= sent + windows && sent <= valid + in_flight,
        "sent {sent}, valid {valid}, in flight {in_flight}, windows {windows}"
    );
}

#[test]
fn every_reply_of_ntpd_lite_is_matched_and_valid() {
    let port = free_udp_port();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\", \"[::1]:{port}\"]\n\
         [local]\nstratum = 1\n[clock]\nmode = \"monitor\"\n"
    );
    let mut daemon = Daemon::start("load", &config);
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let v6: SocketAddr = format!("[::1]:{port}").parse().expect("address");
    daemon.wait_serving(v4);
    for (server, extra) in [
        (v4, &[][..]),
        (v6, &[][..]),
        (v4, &["--no-gso", "--threads", "2"][..]),
    ] {
        let (code, report) = load(server, extra);
        assert_eq!(code, Some(0), "{report}");
        assert_clean(&report, "ntpd-lite");
    }
    daemon.assert_running();
}

#[test]
fn every_reply_of_chronyd_is_matched_and_valid() {
    if !tools::require("chronyd", Chronyd::installed(), "load against chronyd") {
        return;
    }
    let chronyd = Chronyd::start().expect("chronyd starts");
    let server = chronyd.v4();
    wait_answering(server);
    let (code, report) = load(server, &["--sockets", "2", "--window", "16"]);
    assert_eq!(code, Some(0), "{report}");
    assert_clean(&report, "chronyd");
}

/// Waits until `server` answers a query with a usable reply (at most 10 s).
fn wait_answering(server: SocketAddr) {
    for _ in 0..40 {
        let client = Client::connect(server).expect("connect");
        if client.query(4, 6).is_ok_and(|answer| answer.sample.is_ok()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{server} gave no usable reply within 10 s");
}

#[test]
fn only_loopback_may_be_loaded() {
    for target in [
        "192.0.2.1:123",
        "[2001:db8::1]:123",
        "[::ffff:192.0.2.1]:123",
    ] {
        let (code, _) = load(target.parse().expect("address"), &[]);
        assert_eq!(code, Some(2), "{target} must be refused");
    }
}
