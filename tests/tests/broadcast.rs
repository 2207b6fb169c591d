//! Broadcast mode over real UDP, in a LAN of the test's own (two network namespaces joined by a
//! veth pair; nothing leaves them): ntpd-lite announcing to an IPv4 broadcast address, an IPv4
//! multicast group and an IPv6 one, chronyd's `broadcast` directive as the sender, each with
//! ntpd-lite as the broadcast client that calibrates the delay first; and forged broadcasts that
//! must change nothing. (ntpsec 1.2 has neither a broadcast server nor a broadcast client: it
//! dropped both, see the README.)

use std::net::SocketAddr;
use std::time::Duration;

use ntp_lite_tests::chrony::ChronydClient;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::lab::{clock_error, wait_for, worst_error_over};
use ntp_lite_tests::netns::Lan;
use ntp_proto::{
    LeapIndicator, Mode, NtpDuration, NtpTimestamp, Packet, PollInterval, ReferenceId, Stratum,
    Version,
};
use serde_json::Value;

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The broadcast source in `status`.
fn broadcast_source(status: &Value) -> Value {
    status["sources"]
        .as_array()
        .and_then(|sources| sources.iter().find(|s| s["kind"] == "broadcast"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Synchronized to the broadcaster, within 1 ms of it, with broadcasts (not only the calibration
/// exchanges) used: at least 8 more samples accepted than requests sent.
fn synchronized_by_broadcasts(status: &Value) -> bool {
    let source = broadcast_source(status);
    let (sent, accepted) = (source["sent"].as_u64(), source["accepted"].as_u64());
    status["synchronized"] == true
        && source["state"] == "selected"
        && sent.zip(accepted).is_some_and(|(s, a)| a >= s + 8)
        && clock_error(status).abs() < 0.001
}

/// `interface = "lan0"` (for an IPv6 group), or nothing.
fn interface_line(needed: bool) -> String {
    if needed {
        format!("interface = \"{}\"\n", Lan::INTERFACE)
    } else {
        String::new()
    }
}

/// The broadcast client on host 1: its virtual clock starts 50 ms off; broadcasts from `server`
/// arrive at `listen`.
fn client_config(server: SocketAddr, listen: SocketAddr, interface: bool) -> String {
    let interface = interface_line(interface);
    format!(
        "[clock]\nmode = \"virtual\"\ninitial-offset = 0.05\n\n[control]\nsocket = \"{{dir}}/control.sock\"\n\n\
         [[source]]\nkind = \"broadcast\"\naddress = \"{server}\"\nlisten = \"{listen}\"\n{interface}minpoll = 0\n"
    )
}

/// An ntpd-lite broadcaster on host 0, serving at `listen` from a local stratum-1 clock and
/// announcing to `to` every half second.
fn broadcaster_config(listen: SocketAddr, to: SocketAddr, interface: bool) -> String {
    let interface = interface_line(interface);
    format!(
        "[server]\nlisten = [\"{listen}\"]\n\n[local]\nstratum = 1\n\n\
         [[broadcast]]\naddress = \"{to}\"\ninterval = -1\n{interface}"
    )
}

/// ntpd-lite broadcasting to `to` from host 0, ntpd-lite listening at `to` on host 1: the client
/// calibrates, then follows the broadcasts. Returns the LAN, both daemons and the synced status.
fn broadcast_between_ntpd_lites(
    tag: &str,
    server: SocketAddr,
    to: SocketAddr,
    interface: bool,
) -> Option<(Lan, Daemon, Daemon, Value)> {
    let lan = Lan::create(tag)?;
    let broadcaster = Daemon::start_in(
        &format!("{tag}-server"),
        &broadcaster_config(server, to, interface),
        Some(&lan.hosts[0]),
    );
    let mut client = Daemon::start_in(
        &format!("{tag}-client"),
        &client_config(server, to, interface),
        Some(&lan.hosts[1]),
    );
    let status = wait_for(
        &mut client,
        SYNC_TIMEOUT,
        "synchronized by broadcasts",
        synchronized_by_broadcasts,
    );
    let source = broadcast_source(&status);
    ntp_lite_tests::figures!(
        "{tag}: ntpd-lite broadcast client of {server} via {to}: error {:+.1} us, {} exchanges, {} samples, stratum {}",
        clock_error(&status) * 1e6,
        source["sent"],
        source["accepted"],
        status["stratum"]
    );
    assert_eq!(status["stratum"], 2);
    Some((lan, broadcaster, client, status))
}

#[test]
fn ntpd_lite_follows_ntpd_lite_broadcasts_on_an_ipv4_lan() {
    let server = SocketAddr::new(Lan::v4(0).into(), 123);
    let to = SocketAddr::new(Lan::BROADCAST.into(), 123);
    broadcast_between_ntpd_lites("bcast4", server, to, false);
}

#[test]
fn ntpd_lite_follows_ntpd_lite_multicast_on_ipv4_and_ipv6() {
    let server = SocketAddr::new(Lan::v4(0).into(), 123);
    let group: SocketAddr = "224.0.1.1:123".parse().expect("group");
    broadcast_between_ntpd_lites("mcast4", server, group, false);
    let server = SocketAddr::new(Lan::v6(0).into(), 123);
    let group: SocketAddr = "[ff02::101]:123".parse().expect("group");
    broadcast_between_ntpd_lites("mcast6", server, group, true);
}

#[test]
fn ntpd_lite_follows_chronyd_broadcasts() {
    let Some(lan) = Lan::create("chrony-bcast") else {
        return;
    };
    let directives = format!(
        "local stratum 3\nbindaddress {}\nallow 10.77.0.0/24\nbroadcast 1 {}\n",
        Lan::v4(0),
        Lan::BROADCAST
    );
    let Some(chronyd) = ChronydClient::start_in(&directives, &lan.hosts[0]) else {
        return;
    };
    let server = SocketAddr::new(Lan::v4(0).into(), 123);
    let to = SocketAddr::new(Lan::BROADCAST.into(), 123);
    let mut client = Daemon::start_in(
        "chrony-bcast-client",
        &client_config(server, to, false),
        Some(&lan.hosts[1]),
    );
    let status = wait_for(
        &mut client,
        SYNC_TIMEOUT,
        "synchronized by chronyd's broadcasts",
        synchronized_by_broadcasts,
    );
    let source = broadcast_source(&status);
    ntp_lite_tests::figures!(
        "chronyd 4.3 `broadcast 1 {to}` -> ntpd-lite: error {:+.1} us, {} exchanges, {} samples, stratum {}",
        clock_error(&status) * 1e6,
        source["sent"],
        source["accepted"],
        status["stratum"]
    );
    assert_eq!(status["stratum"], 4, "chronyd's stratum 3 plus one");
    drop(chronyd);
}

/// A mode 5 packet as a broadcaster would send it, with `transmit` as its time.
fn broadcast_packet(transmit: NtpTimestamp) -> [u8; 48] {
    let mut packet = Packet::client_request(Version::V4, PollInterval::new(-1), transmit);
    packet.mode = Mode::BROADCAST;
    packet.stratum = Stratum::PRIMARY;
    packet.leap = LeapIndicator::NoWarning;
    packet.reference_id = ReferenceId::LOCL;
    packet.reference_timestamp = transmit;
    packet.serialize()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends each datagram (hex) `repeat` times from `from` to `to` inside `host`, with SO_BROADCAST.
fn send_from(
    lan: &Lan,
    host: usize,
    from: &str,
    to: SocketAddr,
    datagrams: &[String],
    repeat: u32,
) {
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
        s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\n\
        s.bind((sys.argv[1],0))\n\
        for _ in range(int(sys.argv[4])):\n\
        \x20   for d in sys.argv[5:]:\n\
        \x20       s.sendto(bytes.fromhex(d),(sys.argv[2],int(sys.argv[3])))\n";
    let status = lan.hosts[host]
        .command("python3")
        .args([
            "-c",
            script,
            from,
            &to.ip().to_string(),
            &to.port().to_string(),
        ])
        .arg(repeat.to_string())
        .args(datagrams)
        .status()
        .expect("run python3");
    assert!(status.success(), "the forger failed");
}

#[test]
fn forged_broadcasts_are_counted_and_change_nothing() {
    let server = SocketAddr::new(Lan::v4(0).into(), 123);
    let to = SocketAddr::new(Lan::BROADCAST.into(), 123);
    let Some((lan, _broadcaster, mut client, before)) =
        broadcast_between_ntpd_lites("forged", server, to, false)
    else {
        return;
    };
    let rejected_before = broadcast_source(&before)["rejected"]
        .as_u64()
        .expect("rejected");
    let now = NtpTimestamp::from_system_time(std::time::SystemTime::now());
    let far = NtpDuration::from_seconds(1000);
    // From the broadcaster's own address: 1000 s ahead and behind (with a transmit time that
    // would block the genuine ones if believed), a replay of an old one, wrong modes, garbage.
    let mut unsynchronized = broadcast_packet(now);
    unsynchronized[0] |= 0xc0;
    let mut server_mode = broadcast_packet(now);
    server_mode[0] = (server_mode[0] & !7) | 4;
    let forged = [
        hex(&broadcast_packet(now + far)),
        hex(&broadcast_packet(now - far)),
        hex(&unsynchronized),
        hex(&server_mode),
        hex(&[0x1d; 20]),
    ];
    const ROUNDS: u32 = 40;
    send_from(&lan, 0, &Lan::v4(0).to_string(), to, &forged, ROUNDS);
    // And from a stranger on the LAN, perfectly formed and on time.
    lan.hosts[0].ip(&["addr", "add", "10.77.0.9/24", "dev", Lan::INTERFACE]);
    let stranger = [hex(&broadcast_packet(now))];
    send_from(&lan, 0, "10.77.0.9", to, &stranger, ROUNDS);
    let worst = worst_error_over(&mut client, Duration::from_secs(3));
    let after = wait_for(&mut client, SYNC_TIMEOUT, "every forgery counted", |s| {
        let rejected = broadcast_source(s)["rejected"].as_u64().unwrap_or(0);
        rejected >= rejected_before + u64::from(ROUNDS) * 3
            && s["broadcast_strays"].as_u64() >= Some(u64::from(ROUNDS))
    });
    let source = broadcast_source(&after);
    ntp_lite_tests::figures!(
        "{} forged broadcasts from the broadcaster's address and {ROUNDS} from a stranger: {} rejected, {} ignored, {} strays; worst error over 3 s {:.1} us",
        ROUNDS * 5,
        source["rejected"],
        source["ignored"],
        after["broadcast_strays"],
        worst * 1e6
    );
    assert!(worst < 0.001, "the forgeries moved the clock: {worst}");
    assert!(synchronized_by_broadcasts(&after), "{after}");
    assert!(
        !client.log().contains("clock stepped"),
        "a forgery stepped the clock"
    );
}

#[test]
fn the_broadcaster_is_silent_while_unsynchronized() {
    // A broadcaster with a source that never answers: nothing may go out.
    let Some(lan) = Lan::create("bcast-quiet") else {
        return;
    };
    let server = SocketAddr::new(Lan::v4(0).into(), 123);
    let to = SocketAddr::new(Lan::BROADCAST.into(), 123);
    let config = format!(
        "[server]\nlisten = [\"{server}\"]\n\n[[source]]\naddress = \"10.77.0.2:123\"\nminpoll = -2\nmaxpoll = -2\n\n\
         [[broadcast]]\naddress = \"{to}\"\ninterval = -2\n"
    );
    let mut broadcaster = Daemon::start_in("bcast-quiet-server", &config, Some(&lan.hosts[0]));
    let capture = lan.hosts[1]
        .command("python3")
        .args([
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('10.77.0.255',123))\n\
             s.settimeout(3)\nn=0\ntry:\n    while True:\n        s.recv(100); n+=1\nexcept socket.timeout:\n    print(n)\n",
        ])
        .output()
        .expect("run python3");
    broadcaster.assert_running();
    let heard = String::from_utf8_lossy(&capture.stdout).trim().to_owned();
    assert_eq!(heard, "0", "an unsynchronized broadcaster announced");
}

/// Why the ntpsec broadcast tests cannot be run: the ntpsec Debian ships (1.2) refuses
/// both `broadcast` (the sender) and `broadcastclient` (the receiver) as syntax errors.
#[test]
fn ntpsec_1_2_has_neither_a_broadcast_server_nor_a_broadcast_client() {
    use ntp_lite_tests::netns::Netns;
    use ntp_lite_tests::ntpsec::NtpsecNtpd;
    if !ntp_lite_tests::tools::require(
        "ntpsec ntpd (unpacked by .ci/run)",
        NtpsecNtpd::installed(),
        "ntpsec broadcast",
    ) {
        return;
    }
    for directive in ["broadcast 127.255.255.255", "broadcastclient"] {
        let Some(netns) = Netns::create("ntpsec-bcast") else {
            return;
        };
        let ntpd = NtpsecNtpd::orphan_with(&netns, 5, &format!("{directive}\n"));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        // The directive is the file's fifth line, after the orphan and restrict lines.
        while !ntpd.log().contains("line 5 column 0 syntax error") {
            assert!(
                std::time::Instant::now() < deadline,
                "ntpsec accepted `{directive}`?\n{}",
                ntpd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ntp_lite_tests::figures!("ntpsec 1.2 on `{directive}`: syntax error");
    }
}
