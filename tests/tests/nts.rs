//! Network Time Security (RFC 8915) over real TLS and UDP on loopback, with a CA and certificates
//! the test makes: chronyd (always `-x`) synchronizes to our NTS server, our client to chronyd's
//! NTS server, and ntpd-lite to ntpd-lite; then what must fail: a wrong CA, an expired
//! certificate, a wrong ALPN, a forged cookie, a replayed reply and an unauthenticated reply
//! racing the authenticated one.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use ntp_lite_tests::chrony::{Chronyd, ChronydClient};
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::lab::{clock_error, wait_for};
use ntp_lite_tests::pki::{Pki, ServerFiles};
use ntp_lite_tests::tools::{self, free_udp_port};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// A TCP port nobody listens on now.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port()
}

/// Our NTS server: NTP on 127.0.0.1:`ntp` from a local stratum-1 reference, NTS-KE on
/// 127.0.0.1:`ke`, telling clients NTP port `advertise` (a proxy's) if given.
fn nts_server_config(files: &ServerFiles, ntp: u16, ke: u16, advertise: Option<u16>) -> String {
    let port_line = advertise.map_or_else(String::new, |p| format!("ntp-port = {p}\n"));
    format!(
        "[server]\nlisten = [\"127.0.0.1:{ntp}\"]\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n\
         [nts-ke-server]\nlisten = [\"127.0.0.1:{ke}\"]\ncertificate = \"{}\"\nprivate-key = \"{}\"\n\
         key-file = \"{{dir}}/nts.keys\"\n{port_line}\
         [control]\nsocket = \"{{dir}}/control.sock\"\n",
        files.certificate.display(),
        files.private_key.display()
    )
}

/// Starts our NTS server; returns it and its NTP and NTS-KE addresses.
fn nts_server(
    name: &str,
    files: &ServerFiles,
    advertise: Option<u16>,
) -> (Daemon, SocketAddr, u16) {
    let (ntp, ke) = (free_udp_port(), free_tcp_port());
    let mut daemon = Daemon::start(name, &nts_server_config(files, ntp, ke, advertise));
    let address: SocketAddr = format!("127.0.0.1:{ntp}").parse().expect("address");
    daemon.wait_serving(address);
    daemon.wait_log("serving NTS-KE", DEADLINE);
    (daemon, address, ke)
}

/// Our NTS client of the NTS-KE server `ke` (`host:port`), trusting `ca`, its virtual clock
/// `offset` seconds off.
fn nts_client(name: &str, ke: &str, ca: &Path, offset: f64) -> Daemon {
    let config = format!(
        "[clock]\nmode = \"virtual\"\ninitial-offset = {offset:?}\n\
         [[source]]\naddress = \"{ke}\"\nnts = true\nca-file = \"{}\"\nminpoll = -2\nmaxpoll = 0\niburst = true\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n",
        ca.display()
    );
    Daemon::start(name, &config)
}

/// `ntpd-lite sources` of `daemon`, the table.
fn sources_table(daemon: &Daemon) -> String {
    let output = std::process::Command::new(ntp_lite_tests::bins::binary("ntpd-lite", "ntpd-lite"))
        .arg("sources")
        .arg("--socket")
        .arg(daemon.control_socket())
        .output()
        .expect("ntpd-lite sources");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until chronyd accepts connections on its NTS-KE port.
fn wait_listening(port: u16, chronyd: &ChronydClient) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < DEADLINE,
            "chronyd's NTS-KE port:\n{}",
            chronyd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn server_counter(daemon: &Daemon, name: &str) -> u64 {
    daemon.status()["server"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("server.{name}"))
}

fn source_counter(status: &Value, name: &str) -> u64 {
    status["sources"][0][name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

#[test]
fn chronyd_synchronizes_to_our_nts_server() {
    if !tools::require("chronyd", Chronyd::installed(), "chronyd NTS client") {
        return;
    }
    let pki = Pki::new("ntp-lite test CA");
    let files = pki.server("server", false);
    let (daemon, ntp, ke) = nts_server("nts-server", &files, None);
    let chronyd = ChronydClient::start(&format!(
        "server 127.0.0.1 port {} nts ntsport {ke} iburst minpoll -2 maxpoll 0\n\
         ntstrustedcerts {}\nport 0\n",
        ntp.port(),
        pki.ca_file().display()
    ))
    .expect("chronyd is installed");
    let sources = chronyd.wait_sources(DEADLINE, |s| s.iter().any(|s| s.state == '*'));
    let authdata = chronyd.authdata();
    let nts = server_counter(&daemon, "nts");
    ntp_lite_tests::figures!(
        "chronyd with NTS to our server: sources {sources:?}; authdata {authdata:?}; our server sent {nts} NTS responses, {} NAKs",
        server_counter(&daemon, "nts_naks")
    );
    assert!(
        sources
            .iter()
            .any(|s| s.state == '*' && s.address == "127.0.0.1"),
        "chronyd selected our server: {sources:?}\n{}",
        chronyd.log()
    );
    assert!(
        authdata.iter().any(|l| l.starts_with("127.0.0.1,NTS,")),
        "chronyd authenticates our server with NTS: {authdata:?}"
    );
    assert!(nts >= 4, "our server answered with NTS");
    assert_eq!(server_counter(&daemon, "nts_naks"), 0);
}

#[test]
fn our_client_synchronizes_to_chronyds_nts_server() {
    if !tools::require("chronyd", Chronyd::installed(), "chronyd NTS server") {
        return;
    }
    let pki = Pki::new("ntp-lite test CA");
    let files = pki.server("chronyd", false);
    let (ntp, ke) = (free_udp_port(), free_tcp_port());
    // As root (`-u root`, which ChronydClient passes): chronyd's dropped user could not read the
    // test's key.
    let chronyd = ChronydClient::start(&format!(
        "port {ntp}\nlocal stratum 2\nallow 127.0.0.1\nntsserverkey {}\nntsservercert {}\n\
         ntsport {ke}\nntsdumpdir {}\n",
        files.private_key.display(),
        files.certificate.display(),
        pki.dir().display()
    ))
    .expect("chronyd is installed");
    wait_listening(ke, &chronyd);
    let mut client = nts_client(
        "nts-client",
        &format!("127.0.0.1:{ke}"),
        &pki.ca_file(),
        0.3,
    );
    let status = wait_for(&mut client, DEADLINE, "synchronized over NTS", |s| {
        s["synchronized"] == true && s["sources"][0]["accepted"].as_u64() >= Some(4)
    });
    ntp_lite_tests::figures!(
        "our NTS client to chronyd: source {}, accepted {}, rejected {}, cookies {}, clock error {:.6} s",
        status["sources"][0]["address"],
        source_counter(&status, "accepted"),
        source_counter(&status, "rejected"),
        status["sources"][0]["nts_cookies"],
        clock_error(&status)
    );
    assert_eq!(
        status["sources"][0]["address"],
        format!("127.0.0.1:{ntp}"),
        "the NTP port came from chronyd's NTS-KE"
    );
    assert!(status["sources"][0]["nts_cookies"].as_u64() >= Some(1));
    assert_eq!(source_counter(&status, "rejected"), 0, "{status}");
    assert!(clock_error(&status).abs() < 0.01, "{status}");
}

#[test]
fn ntpd_lite_synchronizes_to_ntpd_lite_over_nts() {
    let pki = Pki::new("ntp-lite test CA");
    let files = pki.server("server", false);
    let (server, ntp, ke) = nts_server("nts-ours-server", &files, None);
    let mut client = nts_client(
        "nts-ours-client",
        &format!("localhost:{ke}"),
        &pki.ca_file(),
        -0.4,
    );
    let status = wait_for(&mut client, DEADLINE, "synchronized over NTS", |s| {
        s["synchronized"] == true && s["sources"][0]["accepted"].as_u64() >= Some(8)
    });
    let text = sources_table(&client);
    ntp_lite_tests::figures!(
        "ntpd-lite to ntpd-lite over NTS: accepted {}, cookies {}, clock error {:.6} s, server NTS responses {}\n{text}",
        source_counter(&status, "accepted"),
        status["sources"][0]["nts_cookies"],
        clock_error(&status),
        server_counter(&server, "nts")
    );
    assert_eq!(status["sources"][0]["address"], ntp.to_string());
    assert_eq!(
        status["sources"][0]["nts_cookies"], 8,
        "the pool stays full"
    );
    assert!(
        text.contains("NTS8"),
        "status shows the source as NTS: {text}"
    );
    assert_eq!(source_counter(&status, "rejected"), 0, "{status}");
    assert!(clock_error(&status).abs() < 0.01, "{status}");
}

#[test]
fn a_wrong_ca_or_an_expired_certificate_gives_no_source() {
    let pki = Pki::new("ntp-lite test CA");
    let other = Pki::new("another CA");
    let good = pki.server("server", false);
    let expired = pki.server("expired", true);
    let (_server, _, ke) = nts_server("nts-ca-server", &good, None);
    let (_old, _, old_ke) = nts_server("nts-expired-server", &expired, None);
    for (name, ke, ca, why) in [
        ("nts-wrong-ca", ke, other.ca_file(), "UnknownIssuer"),
        ("nts-expired", old_ke, pki.ca_file(), "certificate expired"),
    ] {
        let mut client = nts_client(name, &format!("127.0.0.1:{ke}"), &ca, 0.0);
        let line = client.wait_log("NTS-KE failed", DEADLINE);
        let status = client.status();
        ntp_lite_tests::figures!("{name}: {line}; sources {}", status["sources"]);
        assert!(line.contains(why), "{name}: {line}");
        assert_eq!(status["sources"].as_array().map(Vec::len), Some(0));
    }
}
