//! Interleaved mode (RFC 9769, chrony's `xleave`) over real UDP on loopback: chronyd as an
//! interleaving client of our server; our client of chronyd's server; and attackers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ntp_lite_tests::chrony::{Chronyd, ChronydClient};
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::fake_server::{Behavior, FakeServer};
use ntp_lite_tests::lab::{Node, clock_error, wait_for};
use ntp_lite_tests::tools::free_udp_port;

/// A local-reference ntpd-lite server on a free port of 127.0.0.1.
fn local_server(name: &str) -> (Daemon, SocketAddr) {
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

/// The status of our daemon's only source.
fn source(status: &serde_json::Value) -> &serde_json::Value {
    &status["sources"][0]
}

/// Our daemon, its virtual clock 0.3 s off and 20 ppm fast, as an `xleave` client of `server`,
/// until it is synchronized within 1 ms and `interleaved` replies were used; returns its status.
fn interleaving_client(name: &str, host: u8, server: SocketAddr) -> (Daemon, serde_json::Value) {
    let mut daemon = Node::new(name, host)
        .offset(0.3)
        .drift(20.0)
        .sources(&[server])
        .source_options("xleave = true")
        .start();
    let status = wait_for(
        &mut daemon,
        Duration::from_secs(60),
        "synchronized with interleaved replies",
        |s| {
            s["synchronized"] == true
                && clock_error(s).abs() < 0.001
                && source(s)["interleaved"].as_u64().unwrap_or(0) >= 5
        },
    );
    // Every reply was usable: an interleaved one is not refused for the server's reference time
    // having moved on since the earlier reply left.
    assert_eq!(source(&status)["rejected"], 0, "{status}");
    (daemon, status)
}

#[test]
fn our_client_interleaves_with_chronyd() {
    if !ntp_lite_tests::tools::require("chronyd", Chronyd::installed(), "chrony interop") {
        return;
    }
    let chronyd = Chronyd::start().expect("chronyd starts");
    let (_daemon, status) = interleaving_client("xleave-chrony", 61, chronyd.v4());
    let s = source(&status);
    ntp_lite_tests::figures!(
        "our xleave client of chronyd: {} accepted, {} interleaved, error {:+.1} us",
        s["accepted"],
        s["interleaved"],
        clock_error(&status) * 1e6
    );
    assert_eq!(status["refid"], "127.0.0.1");
}

#[test]
fn our_client_interleaves_with_our_server() {
    let (_server, address) = local_server("xleave-ours");
    let (_daemon, status) = interleaving_client("xleave-ours-client", 62, address);
    let s = source(&status);
    ntp_lite_tests::figures!(
        "our xleave client of our server: {} accepted, {} interleaved, error {:+.1} us",
        s["accepted"],
        s["interleaved"],
        clock_error(&status) * 1e6
    );
}

#[test]
fn a_server_without_interleaved_mode_is_used_in_basic_mode() {
    // A fake server answers every request in basic mode (origin = the request's transmit).
    let server = FakeServer::v4(Behavior::Honest(ntp_proto::NtpDuration::ZERO));
    let mut daemon = Node::new("xleave-basic", 63)
        .sources(&[server.addr()])
        .source_options("xleave = true")
        .start();
    let status = wait_for(
        &mut daemon,
        Duration::from_secs(60),
        "synchronized in basic mode",
        |s| s["synchronized"] == true && source(s)["accepted"].as_u64().unwrap_or(0) >= 5,
    );
    assert_eq!(source(&status)["interleaved"], 0);
    assert_eq!(source(&status)["rejected"], 0);
    // Our requests asked for it all along: a receive timestamp unlike the transmit timestamp,
    // and from the second on, the previous reply's receive timestamp as origin.
    let requests = server.requests();
    assert!(requests.len() >= 5);
    assert!(requests.iter().all(|r| {
        !r.packet.receive_timestamp.is_zero()
            && r.packet.receive_timestamp != r.packet.transmit_timestamp
    }));
    assert!(
        requests[1..]
            .iter()
            .any(|r| !r.packet.origin_timestamp.is_zero())
    );
}

#[test]
fn many_interleaving_clients_behind_one_address_all_get_interleaved_replies() {
    use ntp_lite_tests::client::Client;
    use ntp_proto::NtpTimestamp;
    use ntp_proto::packet::{Packet, PollInterval, Version};

    // Forty clients on 127.0.0.1, as behind a NAT: five times the eight entries a set of client
    // addresses held before the transmit log was keyed by receive timestamp.
    let (_server, address) = local_server("xleave-nat");
    let clients: Vec<Client> = (0..40)
        .map(|_| Client::connect(address).expect("client"))
        .collect();
    let mut previous_t2 = vec![NtpTimestamp::ZERO; clients.len()];
    let mut interleaved = Vec::new();
    for round in 0..3 {
        let mut count = 0;
        for (client, t2) in clients.iter().zip(previous_t2.iter_mut()) {
            let transmit = NtpTimestamp::from_bits(rand::random());
            let receive = NtpTimestamp::from_bits(rand::random());
            let mut request = Packet::client_request(Version::V4, PollInterval::new(0), transmit);
            request.origin_timestamp = *t2;
            request.receive_timestamp = receive;
            client.send_raw(&request.serialize()).expect("send");
            let bytes = client
                .receive_raw(Duration::from_secs(5))
                .expect("receive")
                .expect("a reply within 5 s");
            let (reply, _) = Packet::parse(&bytes).expect("a well-formed reply");
            assert!(
                reply.origin_timestamp == transmit || reply.origin_timestamp == receive,
                "round {round}: the reply answers neither of our timestamps"
            );
            if reply.origin_timestamp == receive {
                count += 1;
            }
            *t2 = reply.receive_timestamp;
        }
        interleaved.push(count);
    }
    ntp_lite_tests::figures!(
        "40 interleaving clients behind one address: interleaved replies per round {interleaved:?}"
    );
    // The first round names nothing; every later request names a reply the log still holds.
    assert_eq!(interleaved, vec![0, clients.len(), clients.len()]);
}
