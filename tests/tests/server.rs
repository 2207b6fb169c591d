//! ntpd-lite as a server, over real UDP on 127.0.0.1 and ::1: what it answers, what it drops, and
//! that real clients (ntplib, ntpdig, chronyd) accept it.

use std::net::SocketAddr;
use std::time::Duration;

use ntp_lite_tests::chrony::ChronydClient;
use ntp_lite_tests::client::Client;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::netns::Netns;
use ntp_lite_tests::tools;
use ntp_lite_tests::tools::free_udp_port;
use ntp_proto::{LeapIndicator, Mode, ReferenceId, Stratum, Version};
use serde_json::Value;

fn local_server(
    name: &str,
    extra_server_keys: &str,
    stratum: u8,
    refid: &str,
) -> (Daemon, SocketAddr, SocketAddr) {
    local_server_ready_on(name, extra_server_keys, stratum, refid, false)
}

/// A local-reference server on a free port over IPv4 and IPv6, waited for over IPv4 (or IPv6).
fn local_server_ready_on(
    name: &str,
    extra_server_keys: &str,
    stratum: u8,
    refid: &str,
    ready_on_v6: bool,
) -> (Daemon, SocketAddr, SocketAddr) {
    let port = free_udp_port();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\", \"[::1]:{port}\"]\n{extra_server_keys}\n\
         [local]\nstratum = {stratum}\nrefid = \"{refid}\"\n[clock]\nmode = \"virtual\"\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n"
    );
    let mut daemon = Daemon::start(name, &config);
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let v6: SocketAddr = format!("[::1]:{port}").parse().expect("address");
    daemon.wait_serving(if ready_on_v6 { v6 } else { v4 });
    (daemon, v4, v6)
}

#[test]
fn serves_its_stratum_refid_and_the_right_time_over_ipv4_and_ipv6() {
    let (daemon, v4, v6) = local_server("serve", "", 3, "GPS");
    for address in [v4, v6] {
        let client = Client::connect(address).expect("connect");
        for version in 1..=4 {
            let answer = client.query(version, 6).expect("reply");
            let p = answer.reply;
            assert_eq!(answer.len, 48);
            assert_eq!((p.mode, p.version), (Mode::SERVER, Version::new(version)));
            assert_eq!(
                (p.leap, p.stratum),
                (LeapIndicator::NoWarning, Stratum::new(3))
            );
            assert_eq!(
                p.reference_id,
                ReferenceId::from_ascii("GPS").expect("ascii")
            );
            assert_eq!(p.poll.get(), 6, "poll echoed");
            let sample = answer.sample.expect("passes every client check");
            assert!(
                sample.offset.to_seconds_f64().abs()
                    <= ntp_lite_tests::offset_bound(sample.delay.to_seconds_f64()),
                "offset {} with delay {}",
                sample.offset,
                sample.delay
            );
            ntp_lite_tests::figures!(
                "{address} v{version}: offset {} delay {}",
                sample.offset,
                sample.delay
            );
        }
        // Poll is clamped to the server's limits (4..17).
        assert_eq!(client.query(4, 0).expect("reply").reply.poll.get(), 4);
        assert_eq!(client.query(4, 40).expect("reply").reply.poll.get(), 17);
    }
    let status = daemon.status();
    assert_eq!(status["stratum"], 3);
    assert_eq!(status["refid"], "GPS");
    assert_eq!(status["synchronized"], true);
    // Two addresses times six queries, plus the readiness probe.
    assert_eq!(status["server"]["responses"], 2 * 6 + 1);
}

#[test]
fn an_unsynchronized_server_says_so() {
    let port = free_udp_port();
    let config =
        format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\n[clock]\nmode = \"virtual\"\n");
    let mut daemon = Daemon::start("unsync", &config);
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let client = Client::connect(address).expect("connect");
    let answer = (0..100)
        .find_map(|_| {
            daemon.assert_running();
            let a = client.query(4, 6).ok();
            if a.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            a
        })
        .expect("the daemon answers");
    assert_eq!(answer.reply.leap, LeapIndicator::Unsynchronized);
    assert_eq!(answer.reply.stratum, Stratum::UNSYNCHRONIZED);
    assert_eq!(answer.sample, Err(ntp_proto::ReplyError::Unsynchronized));
}

fn no_reply(client: &Client, bytes: &[u8]) {
    client.send_raw(bytes).expect("send");
    let reply = client
        .receive_raw(Duration::from_millis(300))
        .expect("receive");
    assert_eq!(reply, None, "expected a silent drop of {bytes:02x?}");
}

#[test]
fn drops_silently_and_counts_every_reason() {
    let (mut daemon, v4, _) = local_server("drops", "", 1, "LOCL");
    let client = Client::connect(v4).expect("connect");
    let request = ntp_proto::Packet::client_request(
        Version::V4,
        ntp_proto::PollInterval::new(6),
        ntp_proto::NtpTimestamp::from_bits(42),
    )
    .serialize();
    let with_first_byte = |first: u8| {
        let mut b = request;
        b[0] = first;
        b
    };
    no_reply(&client, &with_first_byte(0x24)); // mode 4: a response
    no_reply(&client, &with_first_byte(0x25)); // mode 5: broadcast
    no_reply(&client, &with_first_byte(0x26)); // mode 6: control
    no_reply(&client, &with_first_byte(0x27)); // mode 7: private
    no_reply(&client, &with_first_byte(0x21)); // mode 1: symmetric active
    no_reply(&client, &with_first_byte(0x03)); // version 0
    no_reply(&client, &with_first_byte(0x2b)); // version 5
    no_reply(&client, &request[..47]); // too short
    no_reply(&client, &[]); // empty
    let mut malformed = request.to_vec();
    malformed.extend_from_slice(&[0u8; 7]);
    no_reply(&client, &malformed);
    // All ten counted once the workers have handled them, however busy the machine.
    let status = ntp_lite_tests::lab::wait_for(
        &mut daemon,
        Duration::from_secs(30),
        "ten drops counted",
        |s| {
            s["server"]["dropped"]
                .as_object()
                .is_some_and(|d| d.values().filter_map(Value::as_u64).sum::<u64>() >= 10)
        },
    );
    let dropped = &status["server"]["dropped"];
    ntp_lite_tests::figures!("dropped by reason: {dropped}");
    assert_eq!(dropped["not_a_request"], 2);
    assert_eq!(dropped["control"], 2);
    assert_eq!(dropped["unsupported_mode"], 1);
    assert_eq!(dropped["bad_version"], 2);
    assert_eq!(dropped["too_short"], 2);
    assert_eq!(dropped["malformed"], 1);
}

#[test]
fn never_answers_with_more_bytes_than_it_received() {
    let (daemon, v4, _) = local_server("amplification", "", 1, "LOCL");
    let counters = || daemon.server_counters();
    let (received_before, responses_before, dropped_before) = counters();
    let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let (mut sent, mut answered) = (0, 0);
    // Every length 0..=1500, twice: random bytes, and random bytes that start like a v4 request.
    for chunk in (0..=1500usize).collect::<Vec<_>>().chunks(150) {
        let mut clients = Vec::new();
        for &len in chunk {
            for looks_like_request in [false, true] {
                let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if looks_like_request && len > 0 {
                    bytes[0] = 0x23;
                }
                let client = Client::connect(v4).expect("connect");
                client.send_raw(&bytes).expect("send");
                sent += 1;
                clients.push((len, client));
            }
        }
        // Wait for the server to have decided on every datagram, then for every answer it sent.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let expected = loop {
            let (received, responses, dropped) = counters();
            if received == received_before + sent
                && responses - responses_before + dropped - dropped_before == sent
            {
                break responses - responses_before;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server never handled all {sent} datagrams"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        while answered < expected {
            assert!(
                std::time::Instant::now() < deadline,
                "{answered} of {expected} answers arrived"
            );
            for (len, client) in &clients {
                while let Some(reply) = client
                    .receive_raw(Duration::from_millis(1))
                    .expect("receive")
                {
                    assert!(
                        reply.len() <= *len,
                        "a {len}-byte datagram was answered with {} bytes",
                        reply.len()
                    );
                    answered += 1;
                }
            }
        }
    }
    let server = &daemon.status()["server"];
    ntp_lite_tests::figures!(
        "sent {sent} random datagrams, {answered} answered (each no longer than its request); server: {server}"
    );
    assert!(
        answered > 0,
        "datagrams that parse as requests are answered"
    );
}

#[test]
fn rate_limit_sends_kod_rate_then_drops() {
    let (mut daemon, v4, _) = local_server(
        "rate",
        "rate-limit = { interval = 1.0, burst = 2 }",
        1,
        "LOCL",
    );
    // The readiness probe used part of this /32's burst: let the bucket refill.
    std::thread::sleep(Duration::from_millis(2100));
    let client = Client::connect(v4).expect("connect");
    let request = ntp_proto::Packet::client_request(
        Version::V4,
        ntp_proto::PollInterval::new(6),
        ntp_proto::NtpTimestamp::from_bits(99),
    )
    .serialize();
    for _ in 0..10 {
        client.send_raw(&request).expect("send");
    }
    let mut kinds = Vec::new();
    while let Some(bytes) = client
        .receive_raw(Duration::from_millis(300))
        .expect("receive")
    {
        let (reply, _) = ntp_proto::Packet::parse(&bytes).expect("a packet");
        kinds.push(reply.kiss_code().map_or("time".to_owned(), |c| {
            c.as_ascii().unwrap_or("?").to_owned()
        }));
    }
    ntp_lite_tests::figures!("10 back-to-back requests with burst 2: {kinds:?}");
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    // 2 within the burst; of the 8 over the limit, 1 in 4 gets a KoD RATE, the rest nothing.
    assert_eq!(
        (count("time"), count("RATE"), kinds.len()),
        (2, 2, 4),
        "{kinds:?}"
    );
    // The drops are counted once the worker has handled all ten, however busy the machine.
    let status = ntp_lite_tests::lab::wait_for(
        &mut daemon,
        Duration::from_secs(30),
        "ten requests handled",
        |s| s["server"]["received"].as_u64() >= s["server"]["responses"].as_u64().map(|r| r + 6),
    );
    assert_eq!(status["server"]["kod_rate"], 2);
    assert_eq!(status["server"]["dropped"]["rate_limited"], 6);
}

#[test]
fn access_list_denies_with_kod_deny_or_ignores() {
    let (_daemon, v4, v6) =
        local_server_ready_on("deny", "deny = [\"127.0.0.0/8\"]", 1, "LOCL", true);
    let answer = Client::connect(v4)
        .expect("connect")
        .query(4, 6)
        .expect("a KoD");
    assert_eq!(answer.reply.kiss_code(), Some(ReferenceId::DENY));
    assert_eq!(
        answer.sample,
        Err(ntp_proto::ReplyError::Kiss(ReferenceId::DENY))
    );
    // ::1 is not in 127.0.0.0/8: served.
    assert!(
        Client::connect(v6)
            .expect("connect")
            .query(4, 6)
            .expect("reply")
            .sample
            .is_ok()
    );

    let (mut daemon, v4, _) = local_server_ready_on(
        "ignore",
        "deny = [\"127.0.0.0/8\"]\ndeny-action = \"ignore\"",
        1,
        "LOCL",
        true,
    );
    let client = Client::connect(v4).expect("connect");
    no_reply(
        &client,
        &ntp_proto::Packet::client_request(
            Version::V4,
            ntp_proto::PollInterval::new(6),
            ntp_proto::NtpTimestamp::from_bits(7),
        )
        .serialize(),
    );
    // Counted once the worker has handled it, however busy the machine.
    ntp_lite_tests::lab::wait_for(
        &mut daemon,
        Duration::from_secs(30),
        "the ignored request counted",
        |s| s["server"]["dropped"]["access_ignored"].as_u64() >= Some(1),
    );
}

#[test]
fn a_deny_list_of_400k_prefixes_is_loaded_whole_and_served_from() {
    // A block list's size, with the one prefix that names our client in the middle of it.
    let mut deny = String::from("deny = [\n");
    for i in 0u32..400_000 {
        let [a, b, c, _] = (0x0b00_0000 + (i << 8)).to_be_bytes();
        deny.push_str(&format!("  \"{a}.{b}.{c}.0/24\",\n"));
        if i == 200_000 {
            deny.push_str("  \"127.0.0.1/32\",\n");
        }
    }
    deny.push_str("]\n");
    let port = free_udp_port();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\", \"[::1]:{port}\"]\n{deny}\
         [local]\nstratum = 1\n[clock]\nmode = \"monitor\"\n"
    );
    let mut daemon = Daemon::start("big-deny", &config);
    let v6: SocketAddr = format!("[::1]:{port}").parse().expect("address");
    // Parsing 400,000 entries takes about a second in a debug build: a generous limit.
    daemon.wait_serving_within(v6, Duration::from_secs(60));
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let kod = Client::connect(v4)
        .expect("connect")
        .query(4, 6)
        .expect("a KoD");
    assert_eq!(kod.reply.kiss_code(), Some(ReferenceId::DENY));
    assert!(
        daemon.log().contains("allow=0 deny=400001 ms="),
        "{}",
        daemon.log()
    );
}

#[test]
fn ntplib_accepts_our_server() {
    if !tools::require(
        "python3 ntplib",
        tools::ntplib_installed(),
        "ntplib_accepts_our_server",
    ) {
        return;
    }
    let (_daemon, v4, v6) = local_server("ntplib", "", 2, "LOCL");
    for (address, version) in [(v4, 4), (v6, 3), (v4, 2)] {
        // The lowest-delay of three, as any NTP client filters samples.
        let reply = (0..3)
            .map(|_| tools::ntplib_query_version(address, version))
            .min_by(|a, b| {
                a["delay"]
                    .as_f64()
                    .partial_cmp(&b["delay"].as_f64())
                    .expect("numbers")
            })
            .expect("three replies");
        ntp_lite_tests::figures!("ntplib via {address} v{version}: {reply}");
        assert_eq!(
            (
                reply["stratum"].as_u64(),
                reply["leap"].as_u64(),
                reply["version"].as_u64()
            ),
            (Some(2), Some(0), Some(u64::from(version)))
        );
        let offset = reply["offset"].as_f64().expect("offset");
        let delay = reply["delay"].as_f64().expect("delay");
        assert!(
            offset.abs() <= ntp_lite_tests::offset_bound(delay),
            "offset {offset} with delay {delay}"
        );
    }
}

#[test]
fn chronyd_selects_our_server_and_reads_its_stratum() {
    let (_daemon, v4, _) = local_server("chrony-client", "", 1, "LOCL");
    let Some(chronyd) = ChronydClient::client_of(v4) else {
        return;
    };
    let sources = chronyd.wait_sources(Duration::from_secs(30), |s| {
        s.iter().any(|s| s.state == '*')
    });
    ntp_lite_tests::figures!("chronyc sources: {sources:?}");
    let ours = sources
        .iter()
        .find(|s| s.address == "127.0.0.1")
        .expect("chronyd lists our server");
    assert_eq!(
        ours.state,
        '*',
        "chronyd selected our server\n{}",
        chronyd.log()
    );
    assert_eq!(ours.stratum, 1);
    assert!(ours.reach > 0);
    // Within the error bound chrony gives the sample (half its delay plus dispersions).
    assert!(
        ours.offset.abs() <= ours.error + 20e-6,
        "offset {} +/- {}",
        ours.offset,
        ours.error
    );
}

#[test]
fn ntpdig_accepts_our_server_in_a_private_namespace() {
    if !tools::require("ntpdig", tools::runs("ntpdig", &["--version"]), "ntpdig") {
        return;
    }
    let Some(netns) = Netns::create("ntpdig") else {
        return;
    };
    let config = "[server]\nlisten = [\"127.0.0.1:123\"]\n[local]\nstratum = 2\n[clock]\nmode = \"virtual\"\n";
    let mut daemon = Daemon::start_in("ntpdig-server", config, Some(&netns));
    let output = netns.ntpdig(&mut daemon);
    ntp_lite_tests::figures!("ntpdig: {output}");
    // e.g. "2026-11-21 20:30:01.123456 (+0000) +0.000012 +/- 0.000123 127.0.0.1 s2 no-leap"
    let fields: Vec<&str> = output.split_whitespace().collect();
    assert!(fields.contains(&"s2"), "stratum 2 in {output}");
    assert!(fields.contains(&"no-leap"), "{output}");
    let offset: f64 = fields[3].parse().expect("offset field");
    // ntpdig's "+/-" is its error bound for this sample: half the delay plus the server's
    // precision and 15 ppm of the round trip.
    let bound: f64 = fields[5].parse().expect("error bound field");
    assert!(offset.abs() <= bound + 20e-6, "offset {offset} +/- {bound}");
    // Started as root on port 123 without [daemon] user: once serving, no thread keeps any
    // capability (the clock is virtual; binding is done).
    let capabilities = daemon.thread_capabilities();
    ntp_lite_tests::figures!(
        "threads and CapEff of ntpd-lite on port 123 as root: {capabilities:?}"
    );
    assert!(!capabilities.is_empty());
    assert!(
        capabilities
            .iter()
            .all(|(_, cap)| cap == "0000000000000000"),
        "{capabilities:?}"
    );
}

#[test]
fn a_second_daemon_cannot_take_a_port_in_use() {
    // The first daemon's workers form an SO_REUSEPORT group; a second ntpd-lite must not join it.
    let (mut first, v4, _) = local_server("first", "workers = 2", 1, "LOCL");
    let config = format!(
        "[server]\nlisten = [\"{v4}\"]\nworkers = 2\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n"
    );
    let output = std::process::Command::new(ntp_lite_tests::bins::binary("ntpd-lite", "ntpd-lite"))
        .arg("--config")
        .arg({
            let path = first.dir().join("second.toml");
            std::fs::write(&path, config).expect("write config");
            path
        })
        .output()
        .expect("run a second ntpd-lite");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ntp_lite_tests::figures!("second daemon on {v4}: exit {:?}", output.status.code());
    assert!(!output.status.success(), "the second daemon must not start");
    assert!(
        stderr.contains(&format!("cannot listen on {v4}")),
        "{stderr}"
    );
    first.assert_running();
    assert!(
        Client::connect(v4)
            .expect("connect")
            .query(4, 6)
            .expect("the first still answers")
            .sample
            .is_ok()
    );
}

#[test]
fn a_second_daemon_never_removes_a_running_daemons_control_socket() {
    let (mut first, _, _) = local_server("control-first", "", 1, "LOCL");
    let socket = first.control_socket();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{}\"]\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n\
         [control]\nsocket = {:?}\n",
        free_udp_port(),
        socket.display().to_string()
    );
    let path = first.dir().join("second.toml");
    std::fs::write(&path, config).expect("write config");
    let mut second =
        std::process::Command::new(ntp_lite_tests::bins::binary("ntpd-lite", "ntpd-lite"))
            .arg("--config")
            .arg(&path)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run a second ntpd-lite");
    // It must give up at once; if it ran instead, end it (the child we started) and fail.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = second.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    ntp_lite_tests::figures!("second daemon on the first's control socket: exit {status:?}");
    assert!(
        status.is_some_and(|s| !s.success()),
        "the second daemon must not start: {stderr}"
    );
    assert!(stderr.contains("another ntpd-lite answers"), "{stderr}");
    first.assert_running();
    assert_eq!(
        first.status()["stratum"],
        1,
        "the first's status still answers"
    );
}

#[test]
fn with_port_0_the_log_names_the_ports_the_kernel_chose() {
    let config = "[server]\nlisten = [\"127.0.0.1:0\", \"[::1]:0\"]\nworkers = 2\n\
                  [local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n\
                  [observability]\nmetrics = \"127.0.0.1:0\"\n";
    let mut daemon = Daemon::start("port-0", config);
    let served = daemon.logged_addresses("serving NTP", 2);
    let metrics = daemon.logged_addresses("serving metrics", 1)[0];
    ntp_lite_tests::figures!("listen port 0: NTP on {served:?}, metrics on {metrics}");
    assert!(served.iter().chain([&metrics]).all(|a| a.port() != 0));
    assert!(served[0].is_ipv4() && served[1].is_ipv6(), "{served:?}");
    for address in served {
        daemon.wait_serving(address);
    }
    let mut scrape = std::net::TcpStream::connect(metrics).expect("the logged metrics port");
    std::io::Write::write_all(&mut scrape, b"GET /metrics HTTP/1.0\r\n\r\n").expect("send");
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut scrape, &mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
}
