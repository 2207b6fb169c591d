//! Symmetric peers (RFC 5905 modes 1 and 2) over real UDP: two ntpd-lite peers, each with its own
//! upstream, on their own 127.0.0.x addresses (so that reference IDs name them and loops show).
//! True time is the system clock; every clock here is virtual.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ntp_lite_tests::chrony::ChronydClient;
use ntp_lite_tests::client::Client;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::lab::{Node, clock_error, wait_for};
use ntp_proto::{Mode, NtpTimestamp, Packet, PollInterval, Stratum, Version};
use serde_json::Value;

const SYNC_TIMEOUT: Duration = Duration::from_secs(40);
/// Eight unanswered polls at up to 1 s make the upstream unreachable; then selection moves.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(60);

fn source(status: &Value, address: SocketAddr) -> Value {
    status["sources"]
        .as_array()
        .and_then(|sources| sources.iter().find(|s| s["address"] == address.to_string()))
        .cloned()
        .unwrap_or(Value::Null)
}

fn following(stratum: u64, refid: SocketAddr) -> impl Fn(&Value) -> bool {
    move |s| {
        s["synchronized"] == true
            && s["stratum"] == stratum
            && s["refid"] == refid.ip().to_string()
            && clock_error(s).abs() < 0.001
    }
}

#[test]
fn a_peer_that_loses_its_upstream_carries_on_from_its_peer_without_a_loop() {
    let upstream_a = Node::new("upstream-a", 40).local(1);
    let upstream_b = Node::new("upstream-b", 41).local(1);
    let peer_a = Node::new("peer-a", 42)
        .offset(0.3)
        .drift(20.0)
        .sources(&[upstream_a.address]);
    let peer_b = Node::new("peer-b", 43)
        .offset(-0.2)
        .sources(&[upstream_b.address])
        .peers(&[peer_a.address]);
    let peer_a = peer_a.peers(&[peer_b.address]);
    let mut up_a = upstream_a.start();
    let _up_b = upstream_b.start();
    let mut a = peer_a.start();
    let mut b = peer_b.start();

    // Both follow their own upstream, and each hears its peer (mode 1 out, mode 2 back).
    for (daemon, upstream, other) in [
        (&mut a, upstream_a.address, peer_b.address),
        (&mut b, upstream_b.address, peer_a.address),
    ] {
        let status = wait_for(daemon, SYNC_TIMEOUT, "synchronized to its upstream", |s| {
            following(2, upstream)(s) && source(s, other)["reach"].as_u64().unwrap_or(0) > 0
        });
        let peer = source(&status, other);
        assert_eq!(peer["kind"], "peer", "{peer}");
        assert_eq!(peer["stratum"], 2, "{peer}");
        assert_eq!(source(&status, upstream)["kind"], "server");
        assert!(peer["accepted"].as_u64() > Some(0), "{peer}");
    }

    // Cut peer A's upstream: A falls back to B (stratum 3, refid B).
    let cut = Instant::now();
    up_a.stop();
    let status = wait_for(&mut a, FALLBACK_TIMEOUT, "peer A follows peer B", |s| {
        following(3, peer_b.address)(s)
    });
    let fallback = cut.elapsed();
    assert_eq!(source(&status, upstream_a.address)["state"], "unreachable");
    assert_eq!(source(&status, peer_b.address)["state"], "selected");

    // B learns that A follows it from A's next answer (A's reference ID names B): a loop, so B
    // rejects A, within a poll or so.
    wait_for(&mut b, SYNC_TIMEOUT, "B rejects A (loop)", |s| {
        source(s, peer_a.address)["state"] == "rejected" && following(2, upstream_b.address)(s)
    });
    // No loop and no oscillation: for 5 s A stays on B within 1 ms, B stays on its upstream and
    // never takes A back.
    let watch = Instant::now();
    let (mut worst, mut rounds) = (0.0f64, 0);
    while watch.elapsed() < Duration::from_secs(5) {
        let (sa, sb) = (a.status(), b.status());
        assert!(following(3, peer_b.address)(&sa), "A left B: {sa}");
        assert!(
            following(2, upstream_b.address)(&sb),
            "B left its upstream: {sb}"
        );
        let a_at_b = source(&sb, peer_a.address);
        assert_eq!(
            a_at_b["state"], "rejected",
            "B must not use A, which follows B"
        );
        worst = worst.max(clock_error(&sa).abs());
        rounds += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    ntp_lite_tests::figures!(
        "peer A fell back to peer B {:.1} s after its upstream stopped; worst error over 5 s \
         ({rounds} looks) {worst:.6} s; B stayed on its upstream and rejected A (loop)",
        fallback.as_secs_f64()
    );
    assert!(worst < 0.001, "worst {worst} s");
}

#[test]
fn chronyd_peers_with_ntpd_lite_selects_it_and_is_kept_out_of_a_loop() {
    let upstream = Node::new("upstream", 50).local(1);
    let chrony_address = SocketAddr::new(
        "127.0.0.52".parse().expect("address"),
        ntp_lite_tests::tools::free_udp_port(),
    );
    let ours = Node::new("ntpd-lite-peer", 51)
        .offset(0.2)
        .sources(&[upstream.address])
        .peers(&[chrony_address]);
    let _upstream = upstream.start();
    let mut daemon = ours.start();
    let Some(chronyd) = ChronydClient::peer_of(ours.address, chrony_address, None) else {
        return;
    };
    wait_for(
        &mut daemon,
        SYNC_TIMEOUT,
        "synchronized to its upstream",
        |s| following(2, upstream.address)(s),
    );
    // chronyd takes our mode 2 answers to its mode 1 polls: it selects us, at our stratum.
    let sources = chronyd.wait_sources(SYNC_TIMEOUT, |s| {
        s.iter()
            .any(|s| s.state == '*' && s.address == "127.0.0.51")
    });
    let us = sources
        .iter()
        .find(|s| s.address == "127.0.0.51")
        .unwrap_or_else(|| panic!("chronyd lists its peer: {sources:?}\n{}", chronyd.log()));
    assert_eq!(
        us.state,
        '*',
        "chronyd selected its peer: {sources:?}\n{}",
        chronyd.log()
    );
    assert_eq!(us.stratum, 2);
    assert!(
        us.offset.abs() <= us.error + 20e-6,
        "offset {} +/- {}",
        us.offset,
        us.error
    );
    // And we hear chronyd's polls answer ours, but it follows us now (its reference ID is our
    // address): a loop, so it is never selected, and we stay on our upstream.
    let status = wait_for(
        &mut daemon,
        SYNC_TIMEOUT,
        "chronyd's peer association",
        |s| {
            let peer = source(s, chrony_address);
            peer["reach"].as_u64().unwrap_or(0) > 0 && peer["state"] == "rejected"
        },
    );
    let peer = source(&status, chrony_address);
    ntp_lite_tests::figures!(
        "chronyd peer: selects ntpd-lite at stratum {} offset {:+.6} s reach {:o}; ntpd-lite's \
         view of chronyd: {peer}",
        us.stratum,
        us.offset,
        us.reach
    );
    assert_eq!(peer["kind"], "peer");
    assert!(peer["accepted"].as_u64() > Some(0), "{peer}");
    assert!(following(2, upstream.address)(&status), "{status}");
}

/// A symmetric active packet from a stranger, with our transmit timestamp `cookie`.
fn symmetric_active(cookie: u64) -> [u8; 48] {
    let mut packet = Packet::client_request(
        Version::V4,
        PollInterval::new(6),
        NtpTimestamp::from_bits(cookie),
    );
    packet.mode = Mode::SYMMETRIC_ACTIVE;
    packet.serialize()
}

#[test]
fn a_stranger_in_symmetric_mode_is_answered_only_with_passive_peers_and_gets_no_association() {
    for passive in [false, true] {
        let node = Node::new(&format!("passive-{passive}"), 60 + u8::from(passive)).local(2);
        let config = node.toml().replacen(
            "[server]\n",
            &format!("[server]\npassive-peers = {passive}\n"),
            1,
        );
        let mut daemon = Daemon::start(&node.name, &config);
        daemon.wait_serving(node.address);
        // Its local reference is in force once the first round has run: answers say stratum 2.
        wait_for(&mut daemon, SYNC_TIMEOUT, "local reference", |s| {
            s["synchronized"] == true
        });
        let client = Client::connect(node.address).expect("client socket");
        client
            .send_raw(&symmetric_active(0x1234_5678_9abc_def0))
            .expect("send");
        if passive {
            let bytes = client
                .receive_raw(Duration::from_secs(5))
                .expect("receive")
                .expect("a mode 2 answer");
            let (reply, _) = Packet::parse(&bytes).expect("an NTP packet");
            assert_eq!(reply.mode, Mode::SYMMETRIC_PASSIVE, "{reply:?}");
            assert_eq!(
                reply.origin_timestamp,
                NtpTimestamp::from_bits(0x1234_5678_9abc_def0)
            );
            assert_eq!((reply.stratum, bytes.len()), (Stratum::new(2), 48));
        }
        // Whatever answers the mode 1 comes before the answer to this mode 3 query: without
        // passive peers, nothing does.
        let answer = client.query(4, 6).expect("a mode 4 answer");
        assert!(answer.sample.is_ok(), "nothing else came first: {answer:?}");
        let status = daemon.status();
        let dropped = status["server"]["dropped"]["unsupported_mode"].as_u64();
        assert_eq!(dropped, Some(u64::from(!passive)), "{status}");
        assert_eq!(
            status["sources"].as_array().map(Vec::len),
            Some(0),
            "a passive answer creates no association: {status}"
        );
    }
}

#[test]
fn ntpd_lite_that_loses_its_upstream_follows_its_chronyd_peer() {
    let ours_upstream = Node::new("our-upstream", 70).local(1);
    let chrony_upstream = Node::new("chrony-upstream", 71).local(1);
    let chrony_address = SocketAddr::new(
        "127.0.0.72".parse().expect("address"),
        ntp_lite_tests::tools::free_udp_port(),
    );
    let ours = Node::new("ntpd-lite-peer", 73)
        .offset(0.2)
        .sources(&[ours_upstream.address])
        .peers(&[chrony_address]);
    let mut upstream = ours_upstream.start();
    let _chrony_upstream = chrony_upstream.start();
    let mut daemon = ours.start();
    let Some(chronyd) =
        ChronydClient::peer_of(ours.address, chrony_address, Some(chrony_upstream.address))
    else {
        return;
    };
    let sources = chronyd.wait_sources(SYNC_TIMEOUT, |s| {
        s.iter()
            .any(|s| s.state == '*' && s.address == "127.0.0.71")
    });
    assert!(
        sources
            .iter()
            .any(|s| s.state == '*' && s.address == "127.0.0.71"),
        "chronyd follows its own upstream: {sources:?}\n{}",
        chronyd.log()
    );
    wait_for(
        &mut daemon,
        SYNC_TIMEOUT,
        "ours on its upstream, chronyd heard",
        |s| {
            following(2, ours_upstream.address)(s)
                && source(s, chrony_address)["state"] == "candidate"
        },
    );
    // Cut our upstream: we follow chronyd (stratum 3, refid chronyd's address) within 1 ms.
    let cut = Instant::now();
    upstream.stop();
    let status = wait_for(&mut daemon, FALLBACK_TIMEOUT, "ours follows chronyd", |s| {
        following(3, chrony_address)(s)
    });
    let peer = source(&status, chrony_address);
    ntp_lite_tests::figures!(
        "ntpd-lite followed its chronyd peer {:.1} s after its upstream stopped: error {:+.6} s, \
         chronyd as seen: {peer}",
        cut.elapsed().as_secs_f64(),
        clock_error(&status)
    );
    assert_eq!(peer["state"], "selected");
    assert_eq!(peer["stratum"], 2);
    // chronyd does not follow us back: it stays on its upstream.
    let sources = chronyd.sources();
    assert!(
        sources
            .iter()
            .any(|s| s.state == '*' && s.address == "127.0.0.71"),
        "{sources:?}"
    );
}

/// ntpsec 1.2 has no symmetric mode left: `peer` is a synonym for `server` (its NEWS for 1.0), so
/// an ntpsec that lists us as `peer` polls us in client mode, and it answers no symmetric active
/// packet at all (not even in mode 2, whatever its NEWS says: tried with LI 0 and 3). This test
/// pins that down in a LAN of the test's own (ntpsec's ntpd only uses port 123): ntpsec's `peer`
/// is our client, and our `[[peer]]` to ntpsec hears nothing back, so a user lists ntpsec as a
/// `[[source]]` instead (the README's chrony/ntpsec notes say so).
#[test]
fn ntpsec_peer_is_a_client_of_ours_and_never_answers_symmetric_mode() {
    use ntp_lite_tests::netns::Lan;
    use ntp_lite_tests::ntpsec::NtpsecNtpd;
    if !ntp_lite_tests::tools::require(
        "ntpsec ntpd (unpacked by .ci/run)",
        NtpsecNtpd::installed(),
        "ntpsec peer",
    ) {
        return;
    }
    let Some(lan) = Lan::create("ntpsec-peer") else {
        return;
    };
    let (ntpsec, ours) = (Lan::v4(0), Lan::v4(1));
    let lines =
        format!("restrict 10.77.0.0 mask 255.255.255.0\npeer {ours} minpoll 3 maxpoll 3 iburst\n");
    let ntpd = NtpsecNtpd::orphan_with(&lan.hosts[0], 5, &lines);
    let ntpsec_address = SocketAddr::new(ntpsec.into(), 123);
    let config = format!(
        "[server]\nlisten = [\"{ours}:123\"]\n\n[local]\nstratum = 3\n\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n\n[[peer]]\naddress = \"{ntpsec_address}\"\nminpoll = -1\nmaxpoll = -1\n"
    );
    let mut daemon = Daemon::start_in("ntpsec-peer", &config, Some(&lan.hosts[1]));
    let status = wait_for(
        &mut daemon,
        FALLBACK_TIMEOUT,
        "ntpsec's `peer` polls us as a client; ours asked ntpsec 8 times",
        |s| {
            s["server"]["responses"].as_u64().is_some_and(|n| n >= 2)
                && source(s, ntpsec_address)["sent"].as_u64() >= Some(8)
        },
    );
    let peer = source(&status, ntpsec_address);
    ntp_lite_tests::figures!(
        "ntpsec 1.2 `peer {ours}`: our server answered {} client polls from it; our [[peer]] to it: {peer}",
        status["server"]["responses"]
    );
    assert_eq!(
        status["server"]["received"], status["server"]["responses"],
        "only client polls"
    );
    assert_eq!(peer["accepted"], 0);
    assert_eq!(peer["rejected"], 0);
    assert!(
        ntpd.log().contains("peer deprecated, treated as server"),
        "{}",
        ntpd.log()
    );
}
