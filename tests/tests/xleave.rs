//! Interleaved mode (RFC 9769, chrony's `xleave`) over real UDP on loopback: chronyd as an
//! interleaving client of our server; our client of chronyd's server; and attackers.

use std::time::{Duration, Instant};

use ntp_lite_tests::chrony::ChronydClient;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::tools::free_udp_port;

/// A local-reference ntpd-lite server on a free port of 127.0.0.1.
fn local_server(name: &str) -> (Daemon, std::net::SocketAddr) {
    let port = free_udp_port();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\
         [local]\nstratum = 1\nrefid = \"LOCL\"\n[clock]\nmode = \"monitor\"\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n"
    );
    let mut daemon = Daemon::start(name, &config);
    let address = format!("127.0.0.1:{port}").parse().expect("address");
    daemon.wait_serving(address);
    (daemon, address)
}

/// The value of `field` in the `chronyc ntpdata` report (e.g. "Interleaved").
fn ntpdata_field<'a>(report: &'a str, field: &str) -> Option<&'a str> {
    report
        .lines()
        .find(|l| l.trim_start().starts_with(field))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

#[test]
fn chronyd_interleaves_with_our_server() {
    let (_daemon, server) = local_server("xleave-server");
    let directives = format!(
        "server {} port {} xleave minpoll -2 maxpoll 0\nport 0\n",
        server.ip(),
        server.port()
    );
    let Some(chronyd) = ChronydClient::start(&directives) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut report = String::new();
    let mut interleaved = 0;
    while Instant::now() < deadline && interleaved < 5 {
        std::thread::sleep(Duration::from_millis(250));
        report = chronyd.ntpdata();
        if ntpdata_field(&report, "Interleaved") == Some("Yes") {
            interleaved += 1;
        }
    }
    ntp_lite_tests::figures!("chronyc ntpdata of our server:\n{report}");
    assert!(
        interleaved >= 5,
        "chronyd's exchanges with our server were not interleaved\n{report}\n{}",
        chronyd.log()
    );
    let sources = chronyd.wait_sources(Duration::from_secs(30), |s| {
        s.iter().any(|s| s.state == '*')
    });
    assert!(sources.iter().any(|s| s.state == '*'), "{sources:?}");
}
