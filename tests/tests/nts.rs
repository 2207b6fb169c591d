//! Network Time Security (RFC 8915) over real TLS and UDP on loopback, with a CA and certificates
//! the test makes: chronyd (always `-x`) synchronizes to our NTS server, our client to chronyd's
//! NTS server, and ntpd-lite to ntpd-lite; then what must fail: a wrong CA, an expired
//! certificate, a wrong ALPN, a forged cookie, a replayed reply and an unauthenticated reply
//! racing the authenticated one.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ntp_lite_tests::chrony::{Chronyd, ChronydClient};
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::fake_server;
use ntp_lite_tests::lab::{clock_error, wait_for};
use ntp_lite_tests::nts;
use ntp_lite_tests::pki::{Pki, ServerFiles};
use ntp_lite_tests::tools::{self, free_udp_port};
use ntp_proto::auth::AuthError;
use ntp_proto::nts::{AeadKey, SessionKeys};
use ntp_proto::{NtpDuration, NtpTimestamp, Packet, PollInterval, ReferenceId, Version};
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

/// The NTS-KE address of our server on port `ke`.
fn ke_address(ke: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ke))
}

#[test]
fn a_wrong_alpn_gets_no_keys() {
    let pki = Pki::new("ntp-lite test CA");
    let files = pki.server("server", false);
    let (_server, _, ke) = nts_server("nts-alpn", &files, None);
    for alpn in [&b"http/1.1"[..], b""] {
        let config = nts::client_config(&pki.ca_file(), alpn);
        let result = nts::key_exchange(ke_address(ke), &config);
        ntp_lite_tests::figures!(
            "ALPN {:?}: {:?}",
            String::from_utf8_lossy(alpn),
            result.as_ref().map(|o| o.cookies.len())
        );
        assert!(result.is_err(), "no keys without ntske/1: {result:?}");
    }
    let config = nts::client_config(&pki.ca_file(), ntp_proto::nts::ALPN);
    let genuine = nts::key_exchange(ke_address(ke), &config).expect("ntske/1 works");
    assert_eq!(genuine.cookies.len(), 8);
}

/// A client request header with a random transmit timestamp.
fn request_header() -> [u8; 48] {
    Packet::client_request(
        Version::V4,
        PollInterval::new(6),
        NtpTimestamp::from_bits(rand::random()),
    )
    .serialize()
}

/// Sends `request` to `to` and returns the reply, if one comes within a second.
fn exchange(socket: &UdpSocket, to: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(request, to).expect("send");
    let mut buffer = [0u8; 2048];
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let (len, _) = socket.recv_from(&mut buffer).ok()?;
    Some(buffer[..len].to_vec())
}

#[test]
fn a_forged_cookie_gets_a_nak_and_a_forged_authenticator_or_a_replay_nothing_usable() {
    let pki = Pki::new("ntp-lite test CA");
    let files = pki.server("server", false);
    let (server, ntp, ke) = nts_server("nts-forged", &files, None);
    let config = nts::client_config(&pki.ca_file(), ntp_proto::nts::ALPN);
    let genuine = nts::key_exchange(ke_address(ke), &config).expect("keys");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");

    let mut session = genuine.session(rand::random());
    let request = session.seal_request(&request_header()).expect("a cookie");
    let reply = exchange(&socket, ntp, &request).expect("an answer");
    let packet = Packet::parse(&reply).expect("parses").0;
    assert_eq!(session.check_reply(&reply, &packet), Ok(()));
    assert!(reply.len() <= request.len(), "no amplification");

    // The same request again: the server is stateless and answers, but the answer is no use to
    // the client, whose request is no longer in flight.
    let replayed = exchange(&socket, ntp, &request).expect("an answer to the replay");
    let packet = Packet::parse(&replayed).expect("parses").0;
    assert_eq!(
        session.check_reply(&replayed, &packet),
        Err(AuthError::NtsUnauthenticated)
    );

    // A cookie of the right length that is not ours: an NTS NAK, no longer than the request.
    let forged_cookie = nts::KeOutcome {
        cookies: vec![vec![0x5a; genuine.cookies[0].len()]],
        ..genuine.clone()
    };
    let mut forged = forged_cookie.session(rand::random());
    let request = forged.seal_request(&request_header()).expect("a cookie");
    let nak = exchange(&socket, ntp, &request).expect("a NAK");
    let packet = Packet::parse(&nak).expect("parses").0;
    assert_eq!(packet.reference_id, ReferenceId::from_bytes(*b"NTSN"));
    assert_eq!(forged.check_reply(&nak, &packet), Err(AuthError::NtsNak));
    assert!(nak.len() <= request.len());

    // A genuine cookie with an authenticator under another key: dropped, and counted.
    let wrong_key = nts::KeOutcome {
        keys: SessionKeys {
            c2s: AeadKey([7; 32]),
            ..genuine.keys
        },
        ..genuine.clone()
    };
    let request = wrong_key
        .session(rand::random())
        .seal_request(&request_header())
        .expect("a cookie");
    assert_eq!(exchange(&socket, ntp, &request), None, "no answer");
    let status = server.status();
    ntp_lite_tests::figures!(
        "forged NTS requests: server nts {}, nts_naks {}, dropped {}",
        status["server"]["nts"],
        status["server"]["nts_naks"],
        status["server"]["dropped"]
    );
    assert_eq!(status["server"]["nts_naks"], 1);
    assert_eq!(status["server"]["dropped"]["nts_unauthenticated"], 1);
}

/// A man in the middle between an NTS client and `server`: each request goes on to the server,
/// and the client gets first a forged unauthenticated reply from a clock 10 s ahead, then the
/// genuine reply, then the genuine reply to the request before (a replay). Returns how many
/// requests it passed on once `stop` is set.
fn meddler(socket: UdpSocket, server: SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let upstream = UdpSocket::bind("127.0.0.1:0").expect("upstream socket");
        upstream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let (mut passed, mut previous) = (0, None::<Vec<u8>>);
        let mut buffer = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok((len, client)) = socket.recv_from(&mut buffer) else {
                continue;
            };
            let request = buffer[..len].to_vec();
            let Ok((header, _)) = Packet::parse(&request) else {
                continue;
            };
            let forged =
                fake_server::reply(&header, fake_server::now(), NtpDuration::from_seconds(10));
            let _ = socket.send_to(&forged.serialize(), client);
            upstream.send_to(&request, server).expect("forward");
            passed += 1;
            if let Ok(len) = upstream.recv(&mut buffer) {
                let genuine = buffer[..len].to_vec();
                let _ = socket.send_to(&genuine, client);
                if let Some(old) = previous.replace(genuine) {
                    let _ = socket.send_to(&old, client);
                }
            }
        }
        passed
    })
}

#[test]
fn forged_and_replayed_replies_racing_the_genuine_ones_change_nothing() {
    let pki = Pki::new("ntp-lite test CA");
    let files = pki.server("server", false);
    let proxy = UdpSocket::bind("127.0.0.1:0").expect("proxy socket");
    let proxy_port = proxy.local_addr().expect("address").port();
    let (server, ntp, ke) = nts_server("nts-race-server", &files, Some(proxy_port));
    let stop = Arc::new(AtomicBool::new(false));
    let meddling = meddler(proxy, ntp, Arc::clone(&stop));
    let mut client = nts_client(
        "nts-race-client",
        &format!("127.0.0.1:{ke}"),
        &pki.ca_file(),
        0.2,
    );
    let status = wait_for(
        &mut client,
        DEADLINE,
        "synchronized through the meddler",
        |s| s["synchronized"] == true && s["sources"][0]["accepted"].as_u64() >= Some(8),
    );
    stop.store(true, Ordering::Relaxed);
    let passed = meddling.join().expect("meddler");
    let source = &status["sources"][0];
    ntp_lite_tests::figures!(
        "through the meddler: {passed} requests passed on; accepted {}, rejected {}, ignored {}, cookies {}, clock error {:.6} s; server NTS responses {}",
        source["accepted"],
        source["rejected"],
        source["ignored"],
        source["nts_cookies"],
        clock_error(&status),
        server_counter(&server, "nts")
    );
    assert_eq!(source["address"], format!("127.0.0.1:{proxy_port}"));
    assert!(
        source_counter(&status, "rejected") >= source_counter(&status, "accepted"),
        "each forged reply was rejected: {status}"
    );
    assert_eq!(source["nts_cookies"], 8);
    assert!(
        clock_error(&status).abs() < 0.01,
        "the forged 10 s moved nothing: {status}"
    );
}

/// How often `daemon` has logged `what`.
fn logged(daemon: &Daemon, what: &str) -> usize {
    daemon.log().matches(what).count()
}

#[test]
fn the_key_file_keeps_cookies_valid_across_a_restart_and_a_nak_sends_the_client_back_to_ke() {
    let pki = Pki::new("ntp-lite test CA");
    let files = pki.server("server", false);
    let keys = pki.dir().join("shared.keys");
    let (ntp, ke) = (free_udp_port(), free_tcp_port());
    let config = |key_file: &Path| {
        nts_server_config(&files, ntp, ke, None).replace(
            "key-file = \"{dir}/nts.keys\"",
            &format!("key-file = \"{}\"", key_file.display()),
        )
    };
    let address: SocketAddr = format!("127.0.0.1:{ntp}").parse().expect("address");
    let start = |key_file: &Path| {
        let mut server = Daemon::start("nts-restart-server", &config(key_file));
        server.wait_serving(address);
        server.wait_log("serving NTS-KE", DEADLINE);
        server
    };
    let mut server = start(&keys);
    let mut client = nts_client(
        "nts-restart-client",
        &format!("127.0.0.1:{ke}"),
        &pki.ca_file(),
        0.0,
    );
    let accepted = |s: &Value| s["sources"][0]["accepted"].as_u64().unwrap_or(0);
    let before = accepted(&wait_for(&mut client, DEADLINE, "4 replies", |s| {
        accepted(s) >= 4
    }));
    server.stop();

    // Same key file: the cookies the client holds still open.
    let mut server = start(&keys);
    wait_for(&mut client, DEADLINE, "4 more replies", |s| {
        accepted(s) >= before + 4
    });
    let exchanges = logged(&client, "NTS-KE done");
    ntp_lite_tests::figures!(
        "after a restart with the same key file: {exchanges} NTS-KE exchange(s), server NAKs {}",
        server_counter(&server, "nts_naks")
    );
    assert_eq!(exchanges, 1, "no new NTS-KE: {}", client.log());
    assert_eq!(server_counter(&server, "nts_naks"), 0);
    server.stop();

    // A new key file: the old cookies get NTS NAKs, and the client goes back to NTS-KE.
    let _server = start(&pki.dir().join("other.keys"));
    let waited = std::time::Instant::now();
    while logged(&client, "NTS-KE done") < 2 {
        client.assert_running();
        assert!(
            waited.elapsed() < DEADLINE,
            "no new NTS-KE: {}",
            client.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let target = accepted(&client.status()) + 4;
    let status = wait_for(
        &mut client,
        DEADLINE,
        "4 replies after the new NTS-KE",
        |s| accepted(s) >= target,
    );
    ntp_lite_tests::figures!(
        "after a restart with a new key file: {} NTS-KE exchanges, accepted {}, cookies {}",
        logged(&client, "NTS-KE done"),
        accepted(&status),
        status["sources"][0]["nts_cookies"]
    );
    assert!(clock_error(&status).abs() < 0.01, "{status}");
}

#[test]
fn sighup_reloads_the_certificate() {
    let pki = Pki::new("ntp-lite test CA");
    let expired = pki.server("server", true);
    let (mut server, _, ke) = nts_server("nts-sighup-server", &expired, None);
    let mut client = nts_client(
        "nts-sighup-client",
        &format!("127.0.0.1:{ke}"),
        &pki.ca_file(),
        0.0,
    );
    client.wait_log("certificate expired", DEADLINE);
    let fresh = pki.server("fresh", false);
    std::fs::copy(&fresh.certificate, &expired.certificate).expect("replace the certificate");
    std::fs::copy(&fresh.private_key, &expired.private_key).expect("replace the key");
    let pid = server.pid().expect("the server runs");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    server.wait_log("NTS-KE certificate reloaded", DEADLINE);
    let status = wait_for(
        &mut client,
        DEADLINE,
        "synchronized after the reload",
        |s| s["synchronized"] == true,
    );
    ntp_lite_tests::figures!(
        "after SIGHUP with a fresh certificate: source {}, cookies {}",
        status["sources"][0]["address"],
        status["sources"][0]["nts_cookies"]
    );
    assert!(status["sources"][0]["nts_cookies"].as_u64() >= Some(1));
}

/// `ntpdate-lite --nts --nts-ca CA -j -p 2 SERVER`: its JSON and exit status.
fn ntpdate_nts(server: &str, ca: &Path) -> (Value, bool) {
    let output =
        std::process::Command::new(ntp_lite_tests::bins::binary("ntpdate-lite", "ntpdate-lite"))
            .args(["--nts", "--nts-ca"])
            .arg(ca)
            .args(["-j", "-p", "2", "--gap", "0.2", server])
            .output()
            .expect("run ntpdate-lite");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "ntpdate-lite JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (json, output.status.success())
}

#[test]
fn ntpdate_lite_queries_our_and_chronyds_nts_servers() {
    let pki = Pki::new("ntp-lite test CA");
    let files = pki.server("server", false);
    let (_server, ntp, ke) = nts_server("nts-ntpdate-server", &files, None);
    let (json, ok) = ntpdate_nts(&format!("127.0.0.1:{ke}"), &pki.ca_file());
    ntp_lite_tests::figures!("ntpdate-lite --nts to ntpd-lite: {json}");
    assert!(ok, "{json}");
    assert_eq!(
        json["servers"][0]["port"],
        ntp.port(),
        "the NTP port from NTS-KE"
    );
    assert_eq!(
        json["servers"][0]["samples"], 2,
        "both authenticated: {json}"
    );
    let other = Pki::new("another CA");
    let (json, ok) = ntpdate_nts(&format!("127.0.0.1:{ke}"), &other.ca_file());
    assert!(!ok && json.to_string().contains("NTS-KE failed"), "{json}");
    if !tools::require("chronyd", Chronyd::installed(), "chronyd NTS server") {
        return;
    }
    let chrony_files = pki.server("chronyd", false);
    let (ntp, ke) = (free_udp_port(), free_tcp_port());
    let chronyd = ChronydClient::start(&format!(
        "port {ntp}\nlocal stratum 2\nallow 127.0.0.1\nntsserverkey {}\nntsservercert {}\n\
         ntsport {ke}\nntsdumpdir {}\n",
        chrony_files.private_key.display(),
        chrony_files.certificate.display(),
        pki.dir().display()
    ))
    .expect("chronyd is installed");
    wait_listening(ke, &chronyd);
    let (json, ok) = ntpdate_nts(&format!("127.0.0.1:{ke}"), &pki.ca_file());
    ntp_lite_tests::figures!("ntpdate-lite --nts to chronyd: {json}");
    assert!(ok, "{json}\n{}", chronyd.log());
    assert_eq!(json["servers"][0]["port"], ntp, "{json}");
    assert_eq!(json["servers"][0]["samples"], 2, "{json}");
}
