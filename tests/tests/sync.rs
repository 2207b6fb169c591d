//! ntpd-lite keeping its (virtual) clock on time from upstream servers over real UDP, each daemon
//! on its own 127.0.0.x address. True time is the system clock, which every virtual clock is
//! measured against (`status.clock.error`); nothing here touches the system clock.

use std::time::Duration;

use ntp_lite_tests::chrony::{Chronyd, ChronydClient};
use ntp_lite_tests::lab::{Node, clock_error, wait_for, worst_error_over};
use serde_json::Value;

const SYNC_TIMEOUT: Duration = Duration::from_secs(40);

fn synchronized_within(limit: f64) -> impl Fn(&Value) -> bool {
    move |s| s["synchronized"] == true && clock_error(s).abs() < limit
}

fn source_state(status: &Value, address: std::net::SocketAddr) -> String {
    status["sources"]
        .as_array()
        .and_then(|sources| sources.iter().find(|s| s["address"] == address.to_string()))
        .map_or_else(
            || "missing".to_owned(),
            |s| s["state"].as_str().unwrap_or("?").to_owned(),
        )
}

#[test]
fn clients_starting_off_by_seconds_converge_to_under_a_millisecond() {
    let server = Node::new("stratum1", 10).local(1);
    let _server = server.start();
    let mut clients: Vec<_> = [(11, 2.5), (12, -1.8), (13, 0.5)]
        .into_iter()
        .map(|(host, offset)| {
            let node = Node::new(&format!("client{offset:+}"), host)
                .offset(offset)
                .sources(&[server.address]);
            (offset, node.start())
        })
        .collect();
    for (offset, daemon) in &mut clients {
        let status = wait_for(
            daemon,
            SYNC_TIMEOUT,
            &format!("client starting {offset:+} s"),
            synchronized_within(0.001),
        );
        assert_eq!(status["stratum"], 2);
        assert_eq!(status["refid"], "127.0.0.10");
        let worst = worst_error_over(daemon, Duration::from_secs(2));
        ntp_lite_tests::figures!(
            "client starting {offset:+} s: error now {:+.6} s, worst over 2 s {worst:.6} s",
            clock_error(&status)
        );
        assert!(
            worst < 0.001,
            "client starting {offset:+} s drifted to {worst} s"
        );
        let log = daemon.log();
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains("clock stepped offset=")),
            "a start {offset:+} s off is stepped, with one log line:\n{log}"
        );
    }
}

#[test]
fn a_stratum_hierarchy_reports_the_right_stratum_refid_and_root_distance() {
    let primary = Node::new("s1", 20).local(1);
    let primary_daemon = primary.start();
    let seconds: Vec<Node> = [21, 22]
        .iter()
        .map(|&h| {
            Node::new(&format!("s2-{h}"), h)
                .offset(0.2)
                .sources(&[primary.address])
        })
        .collect();
    let mut second_daemons: Vec<_> = seconds.iter().map(Node::start).collect();
    let upstream: Vec<_> = seconds.iter().map(|n| n.address).collect();
    let thirds: Vec<Node> = [23, 24]
        .iter()
        .map(|&h| {
            Node::new(&format!("s3-{h}"), h)
                .offset(-0.3)
                .sources(&upstream)
        })
        .collect();
    let mut third_daemons: Vec<_> = thirds.iter().map(Node::start).collect();

    let root_distance = |s: &Value| {
        s["root_delay"].as_f64().expect("delay") / 2.0
            + s["root_dispersion"].as_f64().expect("disp")
    };
    let top = primary_daemon.status();
    assert_eq!(
        (top["stratum"].as_u64(), top["refid"].as_str()),
        (Some(1), Some("LOCL"))
    );
    let mut level_errors = Vec::new();
    for (daemon, level) in second_daemons
        .iter_mut()
        .map(|d| (d, 2))
        .chain(third_daemons.iter_mut().map(|d| (d, 3)))
    {
        let status = wait_for(daemon, SYNC_TIMEOUT, &format!("stratum {level}"), |s| {
            synchronized_within(0.001)(s) && s["stratum"] == level
        });
        let refid = status["refid"].as_str().expect("refid").to_owned();
        if level == 2 {
            assert_eq!(refid, "127.0.0.20");
        } else {
            assert!(
                refid == "127.0.0.21" || refid == "127.0.0.22",
                "stratum 3 follows a stratum 2: {refid}"
            );
        }
        let distance = root_distance(&status);
        ntp_lite_tests::figures!(
            "stratum {level}: refid {refid}, root delay {:.6} s, root distance {distance:.6} s, error {:+.6} s",
            status["root_delay"],
            clock_error(&status)
        );
        level_errors.push((
            level,
            clock_error(&status).abs(),
            distance,
            status["root_delay"].as_f64().expect("delay"),
        ));
    }
    let worst = |level: u8| {
        level_errors
            .iter()
            .filter(|e| e.0 == level)
            .map(|e| e.1)
            .fold(0.0, f64::max)
    };
    // Root distance is only comparable once every clock filter has refilled since the step (a
    // half-empty filter counts its empty stages as 16 s of dispersion, RFC 5905 section 10; the
    // reach register does not show it, since a step clears the filter, not reach): then each
    // stratum-3 daemon advertises more than the stratum-2 daemon its refid names.
    let refilled = |s: &Value| s["synchronized"] == true && root_distance(s) < 0.05;
    let settled: Vec<Value> = second_daemons
        .iter_mut()
        .chain(third_daemons.iter_mut())
        .map(|d| wait_for(d, SYNC_TIMEOUT, "filters refilled", refilled))
        .collect();
    let delay_of = |s: &Value| s["root_delay"].as_f64().expect("root delay");
    for status in &settled[2..] {
        let upstream = seconds
            .iter()
            .zip(&settled)
            .find(|(node, _)| status["refid"] == node.address.ip().to_string().as_str())
            .map(|(_, s)| s)
            .expect("a stratum-2 upstream");
        ntp_lite_tests::figures!(
            "settled: stratum 3 root distance {:.6} s, delay {:.6} s; its upstream's {:.6} s, {:.6} s",
            root_distance(status),
            delay_of(status),
            root_distance(upstream),
            delay_of(upstream)
        );
        assert!(
            root_distance(status) > root_distance(upstream),
            "root distance grows by level"
        );
        assert!(
            delay_of(status) > delay_of(upstream) && delay_of(upstream) > 0.0,
            "root delay accumulates"
        );
    }

    assert!(
        worst(2) < 0.001 && worst(3) < 0.001,
        "errors stay under 1 ms: {level_errors:?}"
    );
}

#[test]
fn a_100_ppm_drift_is_learned_and_held_by_slewing_alone() {
    let server = Node::new("stratum1", 30).local(1);
    let _server = server.start();
    let client = Node::new("drift100", 31)
        .drift(100.0)
        .sources(&[server.address]);
    let mut daemon = client.start();
    wait_for(
        &mut daemon,
        SYNC_TIMEOUT,
        "synchronized",
        synchronized_within(0.001),
    );
    let status = wait_for(&mut daemon, SYNC_TIMEOUT, "frequency learned", |s| {
        (s["frequency_ppm"].as_f64().unwrap_or(0.0) + 100.0).abs() < 5.0
    });
    let worst = worst_error_over(&mut daemon, Duration::from_secs(5));
    let frequency = status["frequency_ppm"].as_f64().expect("frequency");
    ntp_lite_tests::figures!(
        "drift 100 ppm: frequency correction {frequency:+.3} ppm (error {:+.3} ppm), worst clock error over 5 s {worst:.6} s",
        frequency + 100.0
    );
    assert!(worst < 0.001, "worst error {worst}");
    assert!(
        !daemon.log().contains("clock stepped"),
        "a clock that starts on time is never stepped"
    );
}

#[test]
fn a_falseticker_among_three_good_servers_never_moves_the_clock() {
    let good: Vec<Node> = (40..43)
        .map(|h| Node::new(&format!("good{h}"), h).local(1))
        .collect();
    let bad = Node::new("plus5", 43).local(1).offset(5.0);
    let _servers: Vec<_> = good.iter().chain([&bad]).map(Node::start).collect();
    let mut sources: Vec<_> = good.iter().map(|n| n.address).collect();
    sources.push(bad.address);
    let mut client = Node::new("voter", 44).sources(&sources).start();
    let status = wait_for(
        &mut client,
        SYNC_TIMEOUT,
        "synchronized, falseticker marked",
        |s| synchronized_within(0.001)(s) && source_state(s, bad.address) == "falseticker",
    );
    let worst = worst_error_over(&mut client, Duration::from_secs(3));
    let later = client.status();
    ntp_lite_tests::figures!(
        "4 sources, one +5 s: states {:?}, worst error {worst:.6} s",
        later["sources"]
            .as_array()
            .map(|a| a.iter().map(|s| s["state"].clone()).collect::<Vec<_>>())
    );
    assert_eq!(source_state(&later, bad.address), "falseticker");
    let log = client.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains(&format!("source={}", bad.address))
            && l.contains("state=\"falseticker\"")),
        "the falseticker gets a log line:\n{log}"
    );
    assert_ne!(status["refid"], bad.address.ip().to_string());
    assert!(worst < 0.001, "the falseticker moved the clock: {worst}");
}

#[test]
fn two_servers_that_disagree_leave_the_client_unsynchronized() {
    // With two sources and one liar there is no majority: RFC 5905 intersection finds no
    // interval both agree on, so neither is trusted and the clock is left alone. This is why
    // production configs want three or more sources (min-sources and the README say so).
    let good = Node::new("good", 45).local(1);
    let bad = Node::new("plus5", 46).local(1).offset(5.0);
    let _servers = (good.start(), bad.start());
    let mut client = Node::new("two", 47)
        .sources(&[good.address, bad.address])
        .start();
    wait_for(&mut client, SYNC_TIMEOUT, "both sources judged", |s| {
        source_state(s, good.address) == "falseticker"
            && source_state(s, bad.address) == "falseticker"
    });
    let worst = worst_error_over(&mut client, Duration::from_secs(3));
    let status = client.status();
    ntp_lite_tests::figures!(
        "2 sources, one +5 s: synchronized {}, worst error {worst:.6} s",
        status["synchronized"]
    );
    assert_eq!(status["synchronized"], false);
    assert_eq!(status["stratum"], 16);
    assert!(worst < 0.001, "the clock was moved: {worst}");
}

#[test]
fn upstream_loss_backs_off_then_unsynchronizes_and_recovers() {
    let server = Node::new("upstream", 48).local(1);
    let mut server_daemon = server.start();
    let mut client_node = Node::new("downstream", 49)
        .sources(&[server.address])
        .sync("holdover = 4.0");
    client_node.poll = (-2, 1);
    let mut client = client_node.start();
    wait_for(
        &mut client,
        SYNC_TIMEOUT,
        "synchronized",
        synchronized_within(0.001),
    );

    let log_before_loss = client.log().len();
    server_daemon.stop();
    let lost = wait_for(
        &mut client,
        SYNC_TIMEOUT,
        "unsynchronized after the holdover",
        |s| s["synchronized"] == false,
    );
    assert_eq!(lost["stratum"], 16);
    let unreachable = wait_for(
        &mut client,
        SYNC_TIMEOUT,
        "source unreachable, polls backing off",
        |s| s["sources"][0]["reach"] == 0 && s["sources"][0]["poll"].as_i64() > Some(-2),
    );
    assert_eq!(unreachable["sources"][0]["state"], "unreachable");

    let _restarted = server.start();
    let back = wait_for(
        &mut client,
        SYNC_TIMEOUT,
        "resynchronized",
        synchronized_within(0.001),
    );
    assert_eq!(back["stratum"], 2);
    let log = client.log();
    assert!(
        log.contains("lost synchronization") && log.matches("synchronized source=").count() >= 2,
        "{log}"
    );
    assert!(
        log[log_before_loss..].lines().any(|l| l.contains("WARN")
            && l.contains(&format!("source={}", server.address))
            && l.contains("state=\"unreachable\"")),
        "the silent source gets a log line:\n{log}"
    );
}

#[test]
fn syncs_to_a_real_chronyd_and_serves_a_real_chronyd_client() {
    if !ntp_lite_tests::tools::require("chronyd", Chronyd::installed(), "chrony interop") {
        return;
    }
    // Our daemon as chronyd's client (chronyd runs `local stratum 2`, -x).
    let chronyd = Chronyd::start().expect("chronyd starts");
    let mut ours = Node::new("chrony-client", 50)
        .sources(&[chronyd.v4()])
        .start();
    let status = wait_for(
        &mut ours,
        SYNC_TIMEOUT,
        "synchronized to chronyd",
        synchronized_within(0.001),
    );
    ntp_lite_tests::figures!(
        "synchronized to chronyd: stratum {}, refid {}, error {:+.6} s",
        status["stratum"],
        status["refid"],
        clock_error(&status)
    );
    assert_eq!(status["stratum"], 3);
    assert_eq!(status["refid"], "127.0.0.1");

    // A chronyd client of our stratum-2 daemon.
    let primary = Node::new("s1", 51).local(1);
    let _primary = primary.start();
    let secondary = Node::new("s2", 52).sources(&[primary.address]);
    let mut secondary_daemon = secondary.start();
    wait_for(&mut secondary_daemon, SYNC_TIMEOUT, "stratum 2", |s| {
        s["stratum"] == 2
    });
    let Some(client) = ChronydClient::client_of(secondary.address) else {
        return;
    };
    let sources = client.wait_sources(SYNC_TIMEOUT, |s| s.iter().any(|s| s.state == '*'));
    ntp_lite_tests::figures!("chronyc sources: {sources:?}");
    let ours = sources.first().expect("chronyd lists our daemon");
    assert_eq!((ours.state, ours.stratum), ('*', 2), "{}", client.log());
    assert!(
        ours.offset.abs() <= ours.error + 20e-6,
        "offset {} +/- {}",
        ours.offset,
        ours.error
    );
}

#[test]
fn syncs_to_ntpsec_ntpd_in_a_private_namespace() {
    use ntp_lite_tests::netns::Netns;
    use ntp_lite_tests::ntpsec::NtpsecNtpd;
    if !ntp_lite_tests::tools::require(
        "ntpsec ntpd (unpacked by .ci/run)",
        NtpsecNtpd::installed(),
        "ntpsec interop",
    ) {
        return;
    }
    let Some(netns) = Netns::create("ntpsec") else {
        return;
    };
    let ntpd = NtpsecNtpd::orphan_server(&netns, 5);
    // Our daemon inside the same namespace, a client of 127.0.0.1:123.
    let config = "[clock]\nmode = \"virtual\"\ninitial-offset = 0.4\n\n[control]\nsocket = \"{dir}/control.sock\"\n\n\
                  [[source]]\naddress = \"127.0.0.1:123\"\nminpoll = -2\nmaxpoll = 0\niburst = true\n";
    let mut ours = ntp_lite_tests::daemon::Daemon::start_in("ntpsec-client", config, Some(&netns));
    let status = wait_for(
        &mut ours,
        SYNC_TIMEOUT,
        "synchronized to ntpsec ntpd",
        synchronized_within(0.001),
    );
    ntp_lite_tests::figures!(
        "synchronized to ntpsec ntpd (orphan stratum 5): stratum {}, refid {}, error {:+.6} s",
        status["stratum"],
        status["refid"],
        clock_error(&status)
    );
    assert_eq!(status["stratum"], 6);
    assert_eq!(status["refid"], "127.0.0.1");
    assert!(
        ntpd.log().contains("ntp_adjtime: Operation not permitted"),
        "ntpd ran without CAP_SYS_TIME"
    );
}

#[test]
fn kiss_of_death_rate_slows_the_client_and_deny_stops_it() {
    use ntp_lite_tests::daemon::Daemon;
    let free = |host: u8| -> std::net::SocketAddr {
        format!("127.0.0.{host}:{}", ntp_lite_tests::tools::free_udp_port())
            .parse()
            .expect("address")
    };
    let (rate_address, deny_address) = (free(55), free(56));
    let server = |address: std::net::SocketAddr, policy: &str| {
        let config = format!(
            "[server]\nlisten = [\"{address}\"]\n{policy}\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n"
        );
        let mut daemon = Daemon::start(&format!("kod-{address}"), &config);
        daemon.assert_running();
        daemon
    };
    // One request every 4 s allowed, bursts of 2: a client polling every 0.25 s is over the limit.
    let _rate = server(rate_address, "rate-limit = { interval = 4.0, burst = 2 }");
    let _deny = server(deny_address, "deny = [\"127.0.0.0/8\"]");
    let mut client = Node::new("kissed", 57)
        .sources(&[rate_address, deny_address])
        .start();
    let status = wait_for(
        &mut client,
        SYNC_TIMEOUT,
        "RATE raised the poll, DENY stopped polling",
        |s| {
            let by = |a: std::net::SocketAddr| {
                s["sources"]
                    .as_array()
                    .and_then(|v| v.iter().find(|x| x["address"] == a.to_string()).cloned())
            };
            let (Some(rate), Some(deny)) = (by(rate_address), by(deny_address)) else {
                return false;
            };
            rate["poll"].as_i64() >= Some(0) && deny["rejected"].as_u64() >= Some(1)
        },
    );
    let deny_sent = |s: &Value| s["sources"][1]["sent"].as_u64().expect("sent");
    let before = deny_sent(&status);
    std::thread::sleep(Duration::from_secs(2));
    let after = client.status();
    ntp_lite_tests::figures!(
        "KoD: rate-limited source now polls at 2^{} s; denied source sent {before} then {} requests",
        after["sources"][0]["poll"],
        deny_sent(&after)
    );
    assert_eq!(deny_sent(&after), before, "no request after a DENY");
    assert!(client.log().contains("kiss-o'-death"), "the kiss is logged");
}
