//! ntpdate-lite end to end: the real binary over UDP on 127.0.0.1 and ::1, against scriptable
//! fake servers, a real chronyd, and python's ntplib side by side.
//!
//! No test here passes -b, -B or --set except together with -q, which is a usage error that exits
//! before any socket is opened (and points at a closed port, so even a broken check could not get
//! an offset to apply).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ntp_lite_tests::bins;
use ntp_lite_tests::chrony::Chronyd;
use ntp_lite_tests::fake_server::{self, Behavior, FakeServer, closed_port, reply};
use ntp_lite_tests::netns::Netns;
use ntp_lite_tests::tools;
use ntp_proto::{NtpDuration, NtpShort, Precision, ReferenceId, Stratum, Version};
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

fn run(args: &[&str]) -> Run {
    let bin = bins::ntpdate_lite();
    let start = Instant::now();
    let output = Command::new(&bin)
        .args(args)
        .output()
        .expect("run ntpdate-lite");
    let elapsed = start.elapsed();
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed,
    }
}

/// Runs with --json and parses stdout, which must be exactly one JSON object.
fn run_json(args: &[&str]) -> (Run, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let r = run(&all);
    let value: Value = serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        )
    });
    assert!(value.is_object());
    (r, value)
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn servers(v: &Value) -> &Vec<Value> {
    v["servers"].as_array().expect("servers array")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Parses `server ADDR, stratum N, offset +0.000123, delay 0.000456`.
fn parse_server_line(line: &str) -> (String, u8, f64, f64) {
    let rest = line.strip_prefix("server ").expect("starts with 'server '");
    let parts: Vec<&str> = rest.split(", ").collect();
    assert_eq!(parts.len(), 4, "{line}");
    let field = |i: usize, name: &str| {
        parts[i]
            .strip_prefix(name)
            .unwrap_or_else(|| panic!("{name} in {line}"))
            .to_owned()
    };
    let offset = field(2, "offset ");
    assert!(offset.starts_with(['+', '-']), "signed offset: {line}");
    (
        parts[0].to_owned(),
        field(1, "stratum ").parse().expect("stratum"),
        offset.parse().expect("offset"),
        field(3, "delay ").parse().expect("delay"),
    )
}

const CONTRACT_FIELDS: [&str; 21] = [
    "name",
    "address",
    "port",
    "offset",
    "delay",
    "dispersion",
    "stratum",
    "leap",
    "version",
    "mode",
    "poll",
    "precision",
    "root_delay",
    "root_dispersion",
    "ref_id",
    "ref_time",
    "orig_time",
    "recv_time",
    "tx_time",
    "dest_time",
    "samples",
];

fn assert_contract_fields(server: &Value) {
    for key in CONTRACT_FIELDS {
        assert!(server.get(key).is_some(), "{key} missing in {server}");
    }
    assert!(server["selected"].is_boolean(), "{server}");
    assert!(server.get("error").is_none(), "{server}");
    assert!(server["ref_id"].is_string());
    for key in ["orig_time", "recv_time", "tx_time", "dest_time"] {
        let t = f64_of(server, key);
        assert!((t - unix_now()).abs() < 60.0, "{key} = {t} is not now");
    }
}

fn assert_error_entry(server: &Value, reason: &str) {
    let error = server["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {server}"));
    assert!(error.contains(reason), "error {error:?} lacks {reason:?}");
    assert!(server.get("offset").is_none(), "{server}");
    assert!(server["name"].is_string() && server["port"].is_u64());
}

/// A server answering at stratum 1 with its clock `offset` ahead.
fn stratum_1_server(offset: NtpDuration) -> FakeServer {
    FakeServer::start(
        Ipv4Addr::LOCALHOST.into(),
        Box::new(move |req, t2| {
            let mut p = reply(req, t2, offset);
            p.stratum = Stratum::PRIMARY;
            p.reference_id = ReferenceId::from_ascii("GPS").expect("ascii");
            vec![p.serialize().to_vec()]
        }),
    )
    .expect("bind")
}

// ---- fake servers: each failure has its reason and exit status ----

#[test]
fn honest_server_prints_the_ntpdate_line_and_the_ctime_line() {
    let server = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let r = run(&[&server.arg()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    let (addr, stratum, offset, delay) = parse_server_line(lines[0]);
    assert_eq!((addr.as_str(), stratum), ("127.0.0.1", 2));
    assert!(
        offset.abs() <= ntp_lite_tests::offset_bound(delay),
        "offset {offset}, delay {delay}"
    );
    assert!((0.0..0.5).contains(&delay), "delay {delay}");
    // `Wed Jul 30 12:34:56 2025`: five fields, a time of day, a four-digit year.
    let ctime: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(ctime.len(), 5, "{}", lines[1]);
    assert_eq!(ctime[3].len(), 8);
    assert!(ctime[4].parse::<u32>().is_ok_and(|y| y >= 2024));
    ntp_lite_tests::figures!("honest server: offset {offset:+.6} s, delay {delay:.6} s");
}

#[test]
fn offset_has_the_sign_of_server_minus_client() {
    let server = FakeServer::v4(Behavior::Honest(NtpDuration::from_seconds_f64(0.25)));
    let (r, v) = run_json(&[&server.arg()]);
    assert_eq!(r.code, 0);
    let offset = f64_of(&v, "offset");
    assert!(
        (offset - 0.25).abs() < 0.01,
        "a server 0.25 s ahead measured {offset}"
    );
}

#[test]
fn forged_origin_is_rejected_with_its_reason() {
    let server = FakeServer::v4(Behavior::ForgedOrigin);
    let (r, v) = run_json(&["-t", "0.3", &server.arg()]);
    assert_eq!(r.code, 1);
    assert!(v["offset"].is_null());
    assert_error_entry(&servers(&v)[0], "origin timestamp does not match");
    // The text form names the address and the reason.
    let r = run(&["-t", "0.3", &server.arg()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("127.0.0.1 port {}", server.addr().port()))
    );
    assert!(
        r.stderr.contains("origin timestamp does not match"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "nothing usable to print: {}", r.stdout);
}

#[test]
fn forged_reply_is_ignored_and_the_real_one_used() {
    let server = FakeServer::v4(Behavior::ForgedThenHonest);
    let (r, v) = run_json(&["-t", "1", &server.arg()]);
    assert_eq!(r.code, 0, "{v}");
    assert!(
        f64_of(&v, "offset").abs() < 0.01,
        "the forged +1000 s was used: {v}"
    );
    assert!(r.elapsed < Duration::from_millis(900), "waited for nothing");
}

#[test]
fn kiss_of_death_rate_is_reported_and_ends_the_polling() {
    let server = FakeServer::v4(Behavior::Kiss(ReferenceId::RATE));
    let (r, v) = run_json(&["-p", "3", "--gap", "0.05", &server.arg()]);
    assert_eq!(r.code, 1);
    assert_error_entry(&servers(&v)[0], "kiss-o'-death RATE");
    assert_eq!(server.requests().len(), 1, "kept asking after RATE");
}

#[test]
fn unsynchronized_server_is_rejected() {
    let server = FakeServer::v4(Behavior::Unsynchronized);
    let (r, v) = run_json(&[&server.arg()]);
    assert_eq!(r.code, 1);
    assert_error_entry(&servers(&v)[0], "not synchronized");
}

#[test]
fn falseticker_is_never_chosen_even_at_a_better_stratum() {
    let honest_a = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let honest_b = FakeServer::v4(Behavior::Honest(NtpDuration::from_seconds_f64(0.001)));
    let liar = stratum_1_server(NtpDuration::from_seconds_f64(2.5));
    let liar_port = liar.addr().port();
    for round in 0..5 {
        let (r, v) = run_json(&[&liar.arg(), &honest_a.arg(), &honest_b.arg()]);
        assert_eq!(r.code, 0, "round {round}: {v}");
        let offset = f64_of(&v, "offset");
        // The honest two are 0 and +1 ms off, each measured within half its delay.
        let bound = servers(&v)
            .iter()
            .filter(|s| s["port"] != liar_port)
            .map(|s| ntp_lite_tests::offset_bound(f64_of(s, "delay")))
            .fold(0.001, f64::max)
            + 0.001;
        assert!(offset.abs() <= bound, "round {round}: offset {offset}: {v}");
        let liar_entry = servers(&v)
            .iter()
            .find(|s| s["port"] == liar_port)
            .expect("liar listed");
        assert_eq!(liar_entry["verdict"], "falseticker");
        assert_eq!(liar_entry["selected"], false);
        let liar_bound = ntp_lite_tests::offset_bound(f64_of(liar_entry, "delay"));
        assert!((f64_of(liar_entry, "offset") - 2.5).abs() <= liar_bound);
        assert_eq!(v["agree"], 2);
    }
    let r = run(&[&liar.arg(), &honest_a.arg(), &honest_b.arg()]);
    assert!(r.stderr.contains("falseticker"), "{}", r.stderr);
}

#[test]
fn two_disagreeing_servers_exit_5() {
    let a = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let b = FakeServer::v4(Behavior::Honest(NtpDuration::from_seconds_f64(2.5)));
    let (r, v) = run_json(&[&a.arg(), &b.arg()]);
    assert_eq!(r.code, 5, "{v}");
    assert!(v["offset"].is_null());
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("no majority"))
    );
}

#[test]
fn silent_server_times_out_within_the_timeout() {
    let server = FakeServer::v4(Behavior::Silent);
    let (r, v) = run_json(&["-t", "0.5", &server.arg()]);
    assert_eq!(r.code, 1);
    assert_error_entry(&servers(&v)[0], "no reply within 0.5 s");
    assert!(r.elapsed >= Duration::from_millis(500), "{:?}", r.elapsed);
    assert!(r.elapsed < Duration::from_millis(1300), "{:?}", r.elapsed);
    ntp_lite_tests::figures!("silent server: gave up after {:?} with -t 0.5", r.elapsed);
}

#[test]
fn refused_port_fails_at_once() {
    let dead = closed_port(Ipv4Addr::LOCALHOST.into());
    let (r, v) = run_json(&["-t", "5", &dead.to_string()]);
    assert_eq!(r.code, 1);
    assert_error_entry(&servers(&v)[0], "connection refused");
    assert!(r.elapsed < Duration::from_secs(1), "{:?}", r.elapsed);
    ntp_lite_tests::figures!("refused port: failed after {:?} with -t 5", r.elapsed);
}

#[test]
fn several_servers_with_dead_ones_take_one_timeout() {
    let honest = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let silent_a = FakeServer::v4(Behavior::Silent);
    let silent_b = FakeServer::v4(Behavior::Silent);
    let dead = closed_port(Ipv4Addr::LOCALHOST.into()).to_string();
    let args = [
        "-t",
        "0.6",
        &silent_a.arg(),
        &dead,
        &honest.arg(),
        &silent_b.arg(),
    ];
    let (r, v) = run_json(&args);
    assert_eq!(r.code, 0, "one usable reply is enough: {v}");
    // Concurrent: two silent servers cost one timeout, not two.
    assert!(r.elapsed < Duration::from_millis(1150), "{:?}", r.elapsed);
    let list = servers(&v);
    assert_eq!(list.len(), 4);
    assert_error_entry(&list[0], "no reply within 0.6 s");
    assert_error_entry(&list[1], "connection refused");
    assert_contract_fields(&list[2]);
    assert_error_entry(&list[3], "no reply within 0.6 s");
    let r = run(&args);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stderr.lines().count(),
        3,
        "one warning per dead address: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&dead.replace(':', " port ")),
        "{}",
        r.stderr
    );
    ntp_lite_tests::figures!("4 servers, 3 dead, -t 0.6: {:?}", r.elapsed);
}

#[test]
fn ipv6_loopback_literal_and_bracketed_port() {
    let server = FakeServer::v6(Behavior::Honest(NtpDuration::ZERO));
    let port = server.addr().port().to_string();
    let r = run(&["--port", &port, "::1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (addr, stratum, offset, delay) = parse_server_line(r.stdout.lines().next().expect("line"));
    assert_eq!((addr.as_str(), stratum), ("::1", 2));
    // One exchange with a server on this clock: off by at most half its delay, however loaded.
    assert!(
        offset.abs() <= ntp_lite_tests::offset_bound(delay),
        "offset {offset}, delay {delay}"
    );
    let (r, v) = run_json(&[&format!("[::1]:{port}")]);
    assert_eq!(r.code, 0);
    assert_eq!(servers(&v)[0]["address"], "::1");
    // A stratum 2 refid seen over IPv6 may be the hash of an IPv6 address: shown as hex.
    assert_eq!(servers(&v)[0]["ref_id"], "7f000002");
    let r = run(&["-4", &format!("[::1]:{port}")]);
    assert_eq!(r.code, 3, "-4 leaves no address: {}", r.stderr);
}

/// Two honest fake servers on the same port of 127.0.0.1 and ::1.
fn dual_stack_servers() -> (FakeServer, FakeServer) {
    let honest = || fake_server::script(Behavior::Honest(NtpDuration::ZERO));
    for _ in 0..50 {
        let v4 = FakeServer::start(Ipv4Addr::LOCALHOST.into(), honest()).expect("bind");
        let same_port = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), v4.addr().port());
        if let Ok(v6) = FakeServer::start_at(same_port, honest()) {
            return (v4, v6);
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

#[test]
fn localhost_queries_every_address_it_resolves_to() {
    let (v4, v6) = dual_stack_servers();
    let port = v4.addr().port();
    let expected: BTreeSet<IpAddr> = ("localhost", port)
        .to_socket_addrs()
        .expect("localhost resolves")
        .map(|a| a.ip())
        .filter(|ip| ip.is_loopback())
        .collect();
    let (r, v) = run_json(&[&format!("localhost:{port}")]);
    assert_eq!(r.code, 0, "{v}");
    let queried: BTreeSet<IpAddr> = servers(&v)
        .iter()
        .map(|s| s["address"].as_str().expect("address").parse().expect("ip"))
        .collect();
    assert_eq!(queried, expected, "every address of localhost is queried");
    for s in servers(&v) {
        assert_eq!(s["name"], format!("localhost:{port}"));
        assert_contract_fields(s);
    }
    assert_eq!(
        v4.requests().len(),
        usize::from(expected.contains(&IpAddr::from(Ipv4Addr::LOCALHOST)))
    );
    assert_eq!(
        v6.requests().len(),
        usize::from(expected.contains(&IpAddr::from(Ipv6Addr::LOCALHOST)))
    );
    ntp_lite_tests::figures!("localhost resolves to {expected:?}; all were queried");
}

#[test]
fn name_that_resolves_to_no_usable_address_exits_3() {
    // Resolved from /etc/hosts, no DNS: localhost without the family -4 or -6 asks for.
    let families: BTreeSet<bool> = ("localhost", 123)
        .to_socket_addrs()
        .expect("localhost resolves")
        .map(|a| a.is_ipv4())
        .collect();
    let flag = match (families.contains(&true), families.contains(&false)) {
        (true, false) => "-6",
        (false, true) => "-4",
        _ => {
            eprintln!("localhost has both families here; the exit-3 case is covered by [::1] -4");
            return;
        }
    };
    let (r, v) = run_json(&[flag, "localhost"]);
    assert_eq!(r.code, 3, "{v}");
    assert_error_entry(&servers(&v)[0], "address");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("name resolution failed"))
    );
}

#[test]
fn version_3_is_sent_with_o_3() {
    let server = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let (r, v) = run_json(&["-o", "3", &server.arg()]);
    assert_eq!(r.code, 0);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].packet.version, Version::V3);
    assert_eq!(
        servers(&v)[0]["version"],
        3,
        "the server echoes the version"
    );
    run(&[&server.arg()]);
    assert_eq!(
        server.requests()[1].packet.version,
        Version::V4,
        "v4 by default"
    );
}

#[test]
fn version_2_is_sent_with_o_2_and_v2_or_v3_replies_are_accepted() {
    // ntplib's default: a v2 request, answered in v2 (the server echoes the version).
    let server = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let (r, v) = run_json(&["-o", "2", &server.arg()]);
    assert_eq!(r.code, 0, "{v}");
    assert_eq!(server.requests()[0].packet.version, Version::new(2));
    assert_eq!(servers(&v)[0]["version"], 2);
    // A server that answers every request in v3 is accepted too, whatever we sent.
    let v3 = FakeServer::start(
        Ipv4Addr::LOCALHOST.into(),
        Box::new(|req, t2| {
            let mut p = reply(req, t2, NtpDuration::ZERO);
            p.version = Version::V3;
            vec![p.serialize().to_vec()]
        }),
    )
    .expect("bind");
    for version in ["2", "4"] {
        let (r, v) = run_json(&["-o", version, &v3.arg()]);
        assert_eq!(r.code, 0, "-o {version}: {v}");
        assert_eq!(servers(&v)[0]["version"], 3);
    }
}

#[test]
fn an_ipv6_address_with_a_bare_port_gets_a_hint_and_no_packet() {
    let server = FakeServer::v6(Behavior::Honest(NtpDuration::ZERO));
    let port = server.addr().port();
    // `::1:PORT` is no address when PORT has five digits, and ambiguous with four or fewer
    // (`::1:123` is also the address ::1:123): either way, the hint names the bracketed form.
    for (arg, bracketed) in [
        (format!("::1:{port}"), format!("[::1]:{port}")),
        ("::1:123".to_owned(), "[::1]:123".to_owned()),
    ] {
        let r = run(&[&arg]);
        assert_eq!(r.code, 2, "{arg}: {}", r.stderr);
        assert!(r.stderr.contains(&bracketed), "{arg}: {}", r.stderr);
        let (r, v) = run_json(&[&arg]);
        assert_eq!(r.code, 2);
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(&bracketed)),
            "{v}"
        );
    }
    assert!(server.requests().is_empty(), "no packet before the hint");
    let r = run(&[&format!("[::1]:{port}")]);
    assert_eq!(r.code, 0, "the bracketed form works: {}", r.stderr);
}

#[test]
fn every_request_has_a_fresh_random_cookie() {
    let server = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let (r, v) = run_json(&["-p", "4", "--gap", "0.05", &server.arg()]);
    assert_eq!(r.code, 0);
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(servers(&v)[0]["samples"], 4);
    let cookies: BTreeSet<u64> = requests
        .iter()
        .map(|q| q.packet.transmit_timestamp.to_bits())
        .collect();
    assert_eq!(cookies.len(), 4, "cookies repeat");
    // The cookies are not our clock (RFC 9109): at most one in 2^16 could land within 65 536 s.
    let now = fake_server::now();
    let near = requests
        .iter()
        .filter(|q| (q.packet.transmit_timestamp - now).abs() < NtpDuration::from_seconds(65_536))
        .count();
    assert!(near <= 1, "{near} cookies look like our clock");
    // ...while the T1 we report is the real send time.
    assert!((f64_of(&servers(&v)[0], "orig_time") - unix_now()).abs() < 10.0);
    // One socket per address, on a kernel-chosen port.
    let ports: BTreeSet<u16> = requests.iter().map(|q| q.from.port()).collect();
    assert_eq!(ports.len(), 1);
    assert_ne!(ports.first(), Some(&123));
}

#[test]
fn min_agree_counts_the_agreeing_servers() {
    let a = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let b = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let liar = FakeServer::v4(Behavior::Honest(NtpDuration::from_seconds(3)));
    let all = [a.arg(), b.arg(), liar.arg()];
    let (r, v) = run_json(&["--min-agree", "2", &all[0], &all[1], &all[2]]);
    assert_eq!(r.code, 0, "{v}");
    assert_eq!(v["agree"], 2);
    let (r, v) = run_json(&["--min-agree", "3", &all[0], &all[1], &all[2]]);
    assert_eq!(r.code, 5, "{v}");
    assert!(v["offset"].is_null());
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("only 2 of 3")),
        "{v}"
    );
    let r = run(&["--min-agree", "3", &all[0], &all[1], &all[2]]);
    assert_eq!(r.code, 5);
    assert!(r.stderr.contains("--min-agree 3"), "{}", r.stderr);
}

#[test]
fn usage_errors_exit_2_before_any_packet() {
    // Clock-setting flags never appear in an end-to-end test, not even in usage errors: their
    // conflicts with -q are tested by parsing alone (cli.rs, query_conflicts_with_clock_setting).
    let dead = closed_port(Ipv4Addr::LOCALHOST.into()).to_string();
    for flags in [
        &["-o", "1"][..],
        &["-t", "0"],
        &["-p", "0"],
        &["-4", "-6"],
        &["--format", "xml"],
        &["--bogus"],
    ] {
        let mut args = flags.to_vec();
        args.push(&dead);
        let r = run(&args);
        assert_eq!(r.code, 2, "{flags:?}: {}", r.stderr);
        assert!(!r.stderr.is_empty());
        let mut json_args = vec!["-j"];
        json_args.extend_from_slice(&args);
        let r = run(&json_args);
        assert_eq!(r.code, 2);
        let v: Value = serde_json::from_str(r.stdout.trim()).expect("JSON on usage error");
        assert!(v["offset"].is_null() && v["error"].is_string(), "{v}");
    }
    let r = run(&[]);
    assert_eq!(r.code, 2, "at least one server is required");
    assert_eq!(run(&["--help"]).code, 0);
    let version = run(&["-V"]);
    assert_eq!(version.code, 0);
    assert!(version.stdout.starts_with("ntpdate-lite "));
}

#[test]
fn verbose_prints_every_sample() {
    let server = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let r = run(&["-v", "-p", "3", "--gap", "0.05", &server.arg()]);
    assert_eq!(r.code, 0);
    let rows = r
        .stderr
        .lines()
        .filter(|l| l.contains("ok, stratum 2"))
        .count();
    assert_eq!(rows, 3, "{}", r.stderr);
    let (_, v) = run_json(&["-v", "-p", "2", "--gap", "0.05", &server.arg()]);
    assert_eq!(
        servers(&v)[0]["exchanges"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn t1_is_the_kernels_transmit_timestamp() {
    // SO_TIMESTAMPING's software transmit timestamp, read from the error queue before the reply,
    // replaces the clock read before the send (as the daemon's client does).
    let server = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let (r, v) = run_json(&["-v", "-p", "3", "--gap", "0.05", &server.arg()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let exchanges = servers(&v)[0]["exchanges"].as_array().cloned();
    let sources: Vec<&str> = exchanges
        .iter()
        .flatten()
        .filter_map(|x| x["t1"].as_str())
        .collect();
    assert_eq!(sources, ["kernel"; 3], "{v}");
}

#[test]
fn output_formats() {
    let server = FakeServer::v4(Behavior::Honest(NtpDuration::ZERO));
    let s = server.arg();
    let one_line = |format: &str, extra: &[&str]| {
        let mut args = vec!["--format", format];
        args.extend_from_slice(extra);
        args.push(&s);
        let r = run(&args);
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
        r.stdout
    };
    let unix: f64 = one_line("unix", &[]).trim().parse().expect("unix seconds");
    assert!((unix - unix_now()).abs() < 10.0);
    let iso = one_line("iso", &["--utc"]);
    assert!(iso.trim().ends_with('Z') && iso.contains('T'), "{iso}");
    let ctime = one_line("ctime", &["--utc"]);
    assert_eq!(ctime.lines().count(), 1);
    assert_eq!(ctime.split_whitespace().count(), 5, "{ctime}");
    let ntpdate = one_line("ntpdate", &[]);
    let lines: Vec<&str> = ntpdate.lines().collect();
    parse_server_line(lines[0]);
    assert!(lines[1].contains("ntpdate-lite[") && lines[1].contains("time server 127.0.0.1"));
    // sntp: `2025-07-30 12:34:56.123456 (+0000) +0.000123 +/- 0.000456 ADDR s2 no-leap`.
    let sntp = one_line("sntp", &["--utc"]);
    let words: Vec<&str> = sntp.split_whitespace().collect();
    assert_eq!(words[2], "(+0000)", "{sntp}");
    assert!(words[3].parse::<f64>().is_ok_and(|o| o.abs() < 0.01));
    assert_eq!(words[4], "+/-");
    assert_eq!(&words[words.len() - 2..], ["s2", "no-leap"]);
}

/// A stratum 2 server with a coarse clock (precision 2^-6 s) half a second from its root (root
/// delay 0.5 s, root dispersion 0.5 s): ntpdig's `+/-` counts the precision, not the root.
fn coarse_far_server() -> fake_server::Script {
    Box::new(|req, t2| {
        let mut p = reply(req, t2, NtpDuration::ZERO);
        p.precision = Precision::new(-6);
        p.root_delay = NtpShort::from_duration(NtpDuration::from_nanos(500_000_000));
        p.root_dispersion = NtpShort::from_duration(NtpDuration::from_nanos(500_000_000));
        vec![p.serialize().to_vec()]
    })
}

/// The figure after `+/-` in an sntp / ntpdig line.
fn plus_minus(line: &str) -> f64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "+/-")
        .unwrap_or_else(|| panic!("no +/- in {line:?}"));
    words[at + 1].parse().expect("a number after +/-")
}

/// The `+/-` against [`coarse_far_server`]: its precision, 1/64 s, plus half a loopback round trip
/// and 15 ppm of it (up to 0.25 s, for a loaded machine): never the root distance (over 0.75 s).
fn assert_coarse_server_error(figure: f64, line: &str) {
    assert!(
        (1.0 / 64.0..1.0 / 64.0 + 0.25).contains(&figure),
        "+/- {figure} in {line}"
    );
}

#[test]
fn the_sntp_error_is_ntpdigs_figure_not_the_root_distance() {
    let server = FakeServer::start(Ipv4Addr::LOCALHOST.into(), coarse_far_server()).expect("bind");
    let (r, v) = run_json(&[&server.arg()]);
    assert_eq!(r.code, 0, "{v}");
    let root_distance = f64_of(&servers(&v)[0], "root_distance");
    let r = run(&["--format", "sntp", "--utc", &server.arg()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_coarse_server_error(plus_minus(&r.stdout), &r.stdout);
    assert!(
        root_distance > 0.75,
        "the root distance counts the root: {root_distance}"
    );
}

#[test]
fn the_sntp_line_gives_the_same_error_figure_as_ntpdig() {
    let test = "the_sntp_line_gives_the_same_error_figure_as_ntpdig";
    if !tools::require("ntpdig", tools::runs("ntpdig", &["--version"]), test) {
        return;
    }
    // ntpdig only asks port 123: the fake server and both tools run in a namespace of their own.
    let Some(netns) = Netns::create("sntp") else {
        return;
    };
    let socket = netns
        .bind_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 123)))
        .expect("bind port 123 in the namespace");
    let server = FakeServer::start_on(socket, coarse_far_server()).expect("serve");
    let line = |program: &std::path::Path, args: &[&str]| {
        let out = netns.command(program).args(args).output().expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}: {stdout}{}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let theirs = line("ntpdig".as_ref(), &["-t", "2", "127.0.0.1"]);
    let ours = line(
        &bins::ntpdate_lite(),
        &["--format", "sntp", "--utc", "127.0.0.1"],
    );
    ntp_lite_tests::figures!("ntpdig: {}", theirs.trim());
    ntp_lite_tests::figures!("ntpdate-lite: {}", ours.trim());
    // Both are 1/64 s plus half of each one's own round trip (ntpdig's, in Python, is longer).
    assert_coarse_server_error(plus_minus(&ours), &ours);
    assert_coarse_server_error(plus_minus(&theirs), &theirs);
    assert!(
        server.requests().len() >= 2,
        "both tools asked the fake server"
    );
}

// ---- a real chronyd, and ntplib beside us ----

fn chronyd_or_skip(test: &str) -> Option<Chronyd> {
    if !tools::require("chronyd", Chronyd::installed(), test) {
        return None;
    }
    Some(Chronyd::start().expect("chronyd starts"))
}

#[test]
fn chronyd_offset_stratum_refid() {
    let Some(chronyd) = chronyd_or_skip("chronyd_offset_stratum_refid") else {
        return;
    };
    let (r, v) = run_json(&["-p", "3", "--gap", "0.1", &chronyd.v4().to_string()]);
    assert_eq!(r.code, 0, "{v}\n{}", chronyd.log());
    let s = &servers(&v)[0];
    assert_contract_fields(s);
    let offset = f64_of(&v, "offset");
    let delay = f64_of(s, "delay");
    assert!(
        offset.abs() <= ntp_lite_tests::offset_bound(delay),
        "offset {offset} (delay {delay}) against a chronyd on this host"
    );
    assert_eq!(s["stratum"], 2);
    // chronyd's `local` reference: 127.127.1.1 (7F7F0101).
    assert_eq!(s["ref_id"], "127.127.1.1");
    assert_eq!(s["leap"], 0);
    assert_eq!(s["samples"], 3);
    let (r, v6) = run_json(&[&chronyd.v6().to_string()]);
    assert_eq!(r.code, 0);
    assert_eq!(servers(&v6)[0]["ref_id"], "7f7f0101");
    let r = run(&[&chronyd.v4().to_string(), &chronyd.v6().to_string()]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout.lines().count(), 3, "{}", r.stdout);
    ntp_lite_tests::figures!(
        "chronyd: offset {:+.6} s, delay {:.6} s",
        offset,
        f64_of(s, "delay")
    );
}

#[test]
fn side_by_side_with_ntplib() {
    let test = "side_by_side_with_ntplib";
    if !tools::require("python3 ntplib", tools::ntplib_installed(), test) {
        return;
    }
    let Some(chronyd) = chronyd_or_skip(test) else {
        return;
    };
    let theirs = tools::ntplib_query(chronyd.v4());
    let (r, v) = run_json(&[&chronyd.v4().to_string()]);
    assert_eq!(r.code, 0);
    let ours = &servers(&v)[0];
    assert_eq!(ours["stratum"], theirs["stratum"]);
    assert_eq!(ours["ref_id"], theirs["ref_id"]);
    assert_eq!(ours["leap"], theirs["leap"]);
    let (a, b) = (f64_of(ours, "offset"), f64_of(&theirs, "offset"));
    let (da, db) = (f64_of(ours, "delay"), f64_of(&theirs, "delay"));
    // Each within half its own delay of the truth (both read this host's clock).
    assert!(
        (a - b).abs() <= ntp_lite_tests::offset_bound(da) + ntp_lite_tests::offset_bound(db),
        "ours {a} (delay {da}) vs ntplib {b} (delay {db})"
    );
    ntp_lite_tests::figures!("offset: ntpdate-lite {a:+.6} s, ntplib {b:+.6} s");
}

#[test]
fn forged_reply_that_fools_ntplib_does_not_fool_us() {
    if !tools::require(
        "python3 ntplib",
        tools::ntplib_installed(),
        "forged_reply_vs_ntplib",
    ) {
        return;
    }
    let server = FakeServer::v4(Behavior::ForgedOrigin);
    let theirs = tools::ntplib_query(server.addr());
    assert!(
        f64_of(&theirs, "offset") > 900.0,
        "ntplib took the forged reply: {theirs}"
    );
    let r = run(&["-t", "0.3", &server.arg()]);
    assert_eq!(r.code, 1, "we must not");
}

#[test]
fn against_ntpd_lite_over_ipv4_and_ipv6() {
    use ntp_lite_tests::lab::Node;
    // A stratum-2 ntpd-lite (synchronized to a stratum-1 one) on its own address and on ::1.
    let primary = Node::new("primary", 90).local(1);
    let _primary = primary.start();
    let secondary = Node::new("secondary", 91).sources(&[primary.address]);
    let mut daemon = secondary.start();
    ntp_lite_tests::lab::wait_for(&mut daemon, Duration::from_secs(30), "stratum 2", |s| {
        s["stratum"] == 2
    });
    let (r, v) = run_json(&["-p", "3", "--gap", "0.1", &secondary.address.to_string()]);
    assert_eq!(r.code, 0, "{v}");
    let s = &servers(&v)[0];
    assert_contract_fields(s);
    let offset = f64_of(&v, "offset");
    ntp_lite_tests::figures!(
        "ntpd-lite stratum 2: offset {offset:+.6} s, delay {:.6} s, ref_id {}",
        f64_of(s, "delay"),
        s["ref_id"]
    );
    let delay = f64_of(s, "delay");
    assert!(
        offset.abs() <= ntp_lite_tests::offset_bound(delay),
        "offset {offset} with delay {delay}"
    );
    assert_eq!(s["stratum"], 2);
    assert_eq!(
        s["ref_id"],
        primary.address.ip().to_string(),
        "refid = the upstream's address"
    );
    assert_eq!(s["leap"], 0);
    // The primary as the plain ntpdate line, over IPv6 too.
    let v6 = Node::new("primary6", 92).local(1);
    let mut v6_node = v6.clone();
    v6_node.address = format!("[::1]:{}", v6.address.port())
        .parse()
        .expect("address");
    let _v6 = v6_node.start();
    let r = run(&["-p", "3", "--gap", "0.1", &v6_node.address.to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (address, stratum, offset, delay) =
        parse_server_line(r.stdout.lines().next().expect("a server line"));
    ntp_lite_tests::figures!(
        "ntpd-lite over ::1: {}",
        r.stdout.lines().next().unwrap_or_default()
    );
    assert_eq!((address.as_str(), stratum), ("::1", 1));
    assert!(
        offset.abs() <= ntp_lite_tests::offset_bound(delay),
        "offset {offset} with delay {delay}"
    );
}
