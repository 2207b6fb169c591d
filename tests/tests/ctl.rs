//! `ntpd-lite ctl` end to end, over real UDP on loopback with virtual clocks: every verb against
//! a running daemon (add-source, remove-source, offline, online, burst, makestep, sourcestats,
//! clients, reload and SIGHUP applying sources and access lists), and the per-source options
//! (prefer, noselect, trust, maxdelay behind a slow link, min-samples) where they show. Lab
//! addresses 127.0.0.140-169.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use ntp_lite_tests::bins::binary;
use ntp_lite_tests::client::Client;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::lab::{Node, clock_error, wait_for};
use ntp_lite_tests::link::{Impairment, Link, LinkConfig};
use ntp_lite_tests::tools;
use ntp_proto::{ReferenceId, Stratum};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(40);

/// `ntpd-lite ctl --socket SOCKET --json ARGS...`: whether it succeeded, and its JSON.
fn ctl(daemon: &Daemon, args: &[&str]) -> (bool, Value) {
    let output = Command::new(binary("ntpd-lite", "ntpd-lite"))
        .arg("ctl")
        .arg("--socket")
        .arg(daemon.control_socket())
        .arg("--json")
        .args(args)
        .output()
        .expect("run ntpd-lite ctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "ctl {args:?}: not JSON ({e}): {stdout}{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            daemon.log()
        )
    });
    (output.status.success(), value)
}

/// `ctl ARGS` that must succeed: its `ok` line.
fn ctl_ok(daemon: &Daemon, args: &[&str]) -> String {
    let (ok, value) = ctl(daemon, args);
    assert!(ok, "ctl {args:?}: {value}\n{}", daemon.log());
    value["ok"].as_str().unwrap_or_default().to_owned()
}

/// The source at `address` in a status, if listed.
fn source(status: &Value, address: SocketAddr) -> Option<&Value> {
    status["sources"]
        .as_array()?
        .iter()
        .find(|s| s["address"] == address.to_string())
}

fn field(status: &Value, address: SocketAddr, name: &str) -> u64 {
    source(status, address).map_or(0, |s| s[name].as_u64().unwrap_or(0))
}

fn state(status: &Value, address: SocketAddr) -> String {
    source(status, address).map_or_else(String::new, |s| {
        s["state"].as_str().unwrap_or_default().to_owned()
    })
}

/// What a client daemon's configuration adds to the defaults.
#[derive(Default)]
struct Extra<'a> {
    /// Lines of `[server]`.
    server: &'a str,
    /// Lines of `[clock]`.
    clock: &'a str,
    /// Tables after `[control]`.
    tables: &'a str,
}

/// A client daemon serving on 127.0.0.`host`, with a virtual clock, its control socket in its
/// directory, and `sources` (TOML `[[source]]` tables).
fn client_config(host: u8, port: u16, sources: &str, extra: &Extra<'_>) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.{host}:{port}\"]\n{}\n[clock]\nmode = \"virtual\"\n{}\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n{}\n{sources}",
        extra.server, extra.clock, extra.tables
    )
}

/// A `[[source]]` at `address` polled every 0.25-1 s, with `options` lines.
fn source_entry(address: SocketAddr, options: &str) -> String {
    format!(
        "[[source]]\naddress = \"{address}\"\nminpoll = -2\nmaxpoll = 0\niburst = true\n{options}\n"
    )
}

fn start_client(name: &str, host: u8, sources: &str, extra: &Extra<'_>) -> (Daemon, SocketAddr) {
    let port = tools::free_udp_port();
    let address: SocketAddr = format!("127.0.0.{host}:{port}").parse().expect("address");
    let mut daemon = Daemon::start(name, &client_config(host, port, sources, extra));
    daemon.wait_serving(address);
    (daemon, address)
}

#[test]
fn add_source_is_polled_and_selected_and_remove_source_leaves_the_other_alone() {
    let a = Node::new("ctl-a", 140).local(1).start_node();
    let b = Node::new("ctl-b", 141).local(1).start_node();
    let (mut client, _) = start_client("ctl-c", 142, &source_entry(a.1, ""), &Extra::default());
    wait_for(&mut client, TIMEOUT, "a selected, 8 polls answered", |s| {
        state(s, a.1) == "selected" && field(s, a.1, "reach") == 0o377
    });
    let b_text = b.1.to_string();
    let done = ctl_ok(
        &client,
        &[
            "add-source",
            &b_text,
            "iburst",
            "minpoll",
            "-2",
            "maxpoll",
            "0",
            "prefer",
        ],
    );
    assert!(done.contains("added"), "{done}");
    // Shown at once, then polled, and (prefer) the system peer.
    let (_, sources) = ctl(&client, &["sources"]);
    assert!(
        sources
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["address"] == b_text)),
        "{sources}"
    );
    let both = wait_for(&mut client, TIMEOUT, "the added b selected", |s| {
        state(s, b.1) == "selected" && state(s, a.1) == "candidate"
    });
    let (ok, again) = ctl(&client, &["add-source", &b_text]);
    assert!(
        !ok && again["error"]
            .as_str()
            .is_some_and(|e| e.contains("already")),
        "{again}"
    );

    // remove-source: b goes, a keeps its history (its counters go on from where they were).
    let before = (field(&both, a.1, "sent"), field(&both, a.1, "accepted"));
    let done = ctl_ok(&client, &["remove-source", &b_text]);
    assert!(done.contains("removed"), "{done}");
    let after = wait_for(&mut client, TIMEOUT, "a selected again", |s| {
        source(s, b.1).is_none() && state(s, a.1) == "selected"
    });
    let (sent, accepted) = (field(&after, a.1, "sent"), field(&after, a.1, "accepted"));
    assert!(
        sent >= before.0 && accepted >= before.1 && field(&after, a.1, "reach") == 0o377,
        "a was reset: before {before:?}, after sent {sent} accepted {accepted}: {after}"
    );
    let (ok, missing) = ctl(&client, &["remove-source", &b_text]);
    assert!(!ok, "{missing}");
    assert!(
        missing["error"]
            .as_str()
            .is_some_and(|e| e.contains("no source has the address"))
    );
    ntp_lite_tests::figures!(
        "add-source/remove-source: a sent {} -> {sent}, accepted {} -> {accepted}, reach 377 throughout",
        before.0,
        before.1
    );
}

#[test]
fn offline_stops_polling_online_resumes_and_burst_sends_four_requests() {
    let a = Node::new("ctl-a2", 143).local(1).start_node();
    let b = Node::new("ctl-b2", 144).local(1).start_node();
    // a: every 64 s (no iburst), for the burst; b: every 0.25 s, for offline and online.
    let sources = format!(
        "[[source]]\naddress = \"{}\"\nminpoll = 6\nmaxpoll = 6\n\n{}",
        a.1,
        source_entry(b.1, "")
    );
    let (mut client, _) = start_client("ctl-c2", 145, &sources, &Extra::default());
    let status = wait_for(&mut client, TIMEOUT, "both answered", |s| {
        field(s, a.1, "accepted") == 1 && field(s, b.1, "accepted") >= 4
    });
    assert_eq!(field(&status, a.1, "sent"), 1, "one poll of a in 64 s");

    let done = ctl_ok(&client, &["burst"]);
    assert!(done.contains("2 sources"), "{done}");
    let burst = wait_for(&mut client, Duration::from_secs(20), "a's burst", |s| {
        field(s, a.1, "sent") >= 5
    });
    let started = Instant::now();
    assert_eq!(field(&burst, a.1, "sent"), 5, "4 requests: {burst}");

    let b_text = b.1.to_string();
    ctl_ok(&client, &["offline", &b_text]);
    let offline = client.status();
    assert!(source(&offline, b.1).is_some_and(|s| s["offline"] == true));
    // An observation window, not a synchronization: nothing may happen in it.
    std::thread::sleep(Duration::from_secs(2));
    let still = client.status();
    assert_eq!(
        field(&still, b.1, "sent"),
        field(&offline, b.1, "sent"),
        "an offline source is not polled"
    );
    assert_eq!(field(&still, b.1, "reach"), field(&offline, b.1, "reach"));
    assert_eq!(
        field(&still, a.1, "sent"),
        5,
        "the burst is over: {:?}",
        started.elapsed()
    );
    ctl_ok(&client, &["online"]);
    let sent = field(&still, b.1, "sent");
    wait_for(&mut client, TIMEOUT, "b polled again", |s| {
        field(s, b.1, "sent") > sent + 2 && source(s, b.1).is_some_and(|s| s["offline"] == false)
    });
    ntp_lite_tests::figures!(
        "burst: a's sent 1 -> 5; offline: b's sent stayed {sent} for 2 s, then grew again online"
    );
}

#[test]
fn makestep_steps_a_virtual_clock_at_once_and_monitor_mode_refuses() {
    let a = Node::new("ctl-a3", 146).local(1).start_node();
    // 2 s ahead; offsets below 100 s are slewed at 100 ppm: 20000 s for 2 s, left alone.
    let extra = Extra {
        clock: "initial-offset = 2.0",
        tables: "[sync]\nstep-threshold = 100.0\nmax-slew-ppm = 100\n",
        ..Extra::default()
    };
    let (mut client, _) = start_client("ctl-c3", 147, &source_entry(a.1, ""), &extra);
    let synced = wait_for(&mut client, TIMEOUT, "synchronized, still slewing", |s| {
        s["synchronized"] == true
    });
    let error = clock_error(&synced);
    assert!(error > 1.9, "slewing 2 s takes hours: error {error}");
    let done = ctl_ok(&client, &["makestep"]);
    assert!(done.contains("stepped by -"), "{done}");
    let after = clock_error(&client.status());
    assert!(after.abs() < 0.01, "after makestep: {after} ({done})");
    assert!(client.log().contains("clock stepped"));

    let monitor = "[clock]\nmode = \"monitor\"\n[control]\nsocket = \"{dir}/control.sock\"\n";
    let mut watcher = Daemon::start("ctl-m3", &format!("{monitor}{}", source_entry(a.1, "")));
    wait_for(&mut watcher, TIMEOUT, "a answered", |s| {
        field(s, a.1, "accepted") > 0
    });
    let (ok, refused) = ctl(&watcher, &["makestep"]);
    assert!(!ok, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("monitor mode")),
        "{refused}"
    );
    ntp_lite_tests::figures!("makestep: clock error {error:+.6} s -> {after:+.6} s ({done})");
}

#[test]
fn reload_applies_sources_and_the_access_list_without_resetting_the_others() {
    let a = Node::new("ctl-a4", 148).local(1).start_node();
    let b = Node::new("ctl-b4", 149).local(1).start_node();
    let d = Node::new("ctl-d4", 150).local(1).start_node();
    let port = tools::free_udp_port();
    let served: SocketAddr = format!("127.0.0.151:{port}").parse().expect("address");
    let write = |daemon: &Daemon, sources: &str, server: &str| {
        let extra = Extra {
            server,
            ..Extra::default()
        };
        let text = client_config(151, port, sources, &extra)
            .replace("{dir}", &daemon.dir().display().to_string());
        std::fs::write(daemon.dir().join("ntpd-lite.toml"), text).expect("rewrite the config");
    };
    let ab = format!("{}{}", source_entry(a.1, ""), source_entry(b.1, ""));
    let mut client = Daemon::start("ctl-c4", &client_config(151, port, &ab, &Extra::default()));
    client.wait_serving(served);
    let before = wait_for(&mut client, TIMEOUT, "a and b answered 8 polls", |s| {
        field(s, a.1, "reach") == 0o377 && field(s, b.1, "reach") == 0o377
    });
    let asker = Client::connect(served).expect("client");
    assert!(asker.query(4, 6).expect("answered").sample.is_ok());

    // b out, d in, a as it was; everyone on 127/8 denied with a KoD.
    let ad = format!("{}{}", source_entry(a.1, ""), source_entry(d.1, ""));
    write(&client, &ad, "deny = [\"127.0.0.0/8\"]\n");
    let done = ctl_ok(&client, &["reload"]);
    assert!(
        done.contains("1 added, 1 removed, 0 changed, 1 unchanged") && done.contains("1 deny"),
        "{done}"
    );
    let after = wait_for(&mut client, TIMEOUT, "d answered, b gone", |s| {
        field(s, d.1, "accepted") >= 1 && source(s, b.1).is_none()
    });
    let a_sent = (field(&before, a.1, "sent"), field(&after, a.1, "sent"));
    assert!(a_sent.1 >= a_sent.0, "a was reset: {a_sent:?}");
    assert_eq!(field(&after, a.1, "reach"), 0o377, "{after}");
    let denied = asker.query(4, 6).expect("a kiss-o'-death");
    assert_eq!(
        (denied.reply.stratum, denied.reply.reference_id),
        (Stratum::UNSPECIFIED, ReferenceId::DENY)
    );

    // SIGHUP does the same: the access list lifted, d changed in place (prefer).
    write(
        &client,
        &format!(
            "{}{}",
            source_entry(a.1, ""),
            source_entry(d.1, "prefer = true")
        ),
        "",
    );
    let pid = client.pid().expect("pid");
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status();
    assert!(status.is_ok_and(|s| s.success()));
    client.wait_log("SIGHUP: access list applied (0 allow, 0 deny), no rate limit; sources: 0 added, 0 removed, 1 changed, 1 unchanged", TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    while !asker.query(4, 6).is_ok_and(|a| a.sample.is_ok()) {
        assert!(
            Instant::now() < deadline,
            "still denied after SIGHUP\n{}",
            client.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let last = wait_for(&mut client, TIMEOUT, "d preferred", |s| {
        state(s, d.1) == "selected"
    });
    assert!(field(&last, a.1, "sent") >= a_sent.1);
    ntp_lite_tests::figures!("reload: {done}; a's sent {} -> {}", a_sent.0, a_sent.1);
}

#[test]
fn clients_and_sourcestats_show_what_happened() {
    let a = Node::new("ctl-a5", 152).local(1).start_node();
    let (mut client, served) =
        start_client("ctl-c5", 153, &source_entry(a.1, ""), &Extra::default());
    let asker = Client::connect(served).expect("client");
    for _ in 0..5 {
        asker.query(4, 6).expect("answered");
    }
    let (ok, clients) = ctl(&client, &["clients"]);
    assert!(ok, "{clients}");
    // The busiest first: our five queries (wait_serving's count too), from a loopback address.
    let me = &clients[0];
    assert!(me["requests"].as_u64().is_some_and(|n| n >= 5), "{clients}");
    let from: std::net::IpAddr = me["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("ip");
    assert!(from.is_loopback(), "{me}");
    wait_for(&mut client, TIMEOUT, "a frequency", |s| {
        field(s, a.1, "samples") >= 4
    });
    let (ok, stats) = ctl(&client, &["sourcestats"]);
    assert!(ok, "{stats}");
    let row = &stats[0];
    assert_eq!(row["address"], a.1.to_string());
    assert!(row["samples"].as_u64().is_some_and(|n| n >= 4), "{row}");
    assert!(
        row["frequency_ppm"]
            .as_f64()
            .is_some_and(|f| f.abs() < 100.0),
        "{row}"
    );
    assert!(row["frequency_error_ppm"].as_f64().is_some(), "{row}");
    // The table too, and a bad verb is one line of error.
    let table = Command::new(binary("ntpd-lite", "ntpd-lite"))
        .args(["ctl", "sourcestats", "--socket"])
        .arg(client.control_socket())
        .output()
        .expect("ctl");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("freq ppm") && text.contains(&a.1.to_string()),
        "{text}"
    );
    let (ok, bad) = ctl(&client, &["add-source", "127.0.0.1", "minpoll", "99"]);
    assert!(
        !ok && bad["error"]
            .as_str()
            .is_some_and(|e| e.contains("add-source")),
        "{bad}"
    );
    ntp_lite_tests::figures!("clients: {me}\nsourcestats:\n{text}");
}

#[test]
fn prefer_wins_noselect_is_shown_never_selected_and_min_samples_waits() {
    let a = Node::new("ctl-a6", 154).local(1).start_node();
    let b = Node::new("ctl-b6", 155).local(1).start_node();
    let d = Node::new("ctl-d6", 156).local(1).start_node();
    let sources = format!(
        "{}{}{}",
        source_entry(a.1, "noselect = true"),
        source_entry(b.1, "min-samples = 12"),
        source_entry(d.1, "prefer = true")
    );
    let (client, _) = start_client("ctl-c6", 157, &sources, &Extra::default());
    let start = Instant::now();
    let mut seen = Vec::new();
    let status = loop {
        let status = client.status();
        assert_ne!(
            state(&status, a.1),
            "selected",
            "noselect selected: {status}"
        );
        let b_row = source(&status, b.1).cloned().unwrap_or_default();
        if b_row["state"] == "candidate" || b_row["state"] == "selected" {
            assert!(
                b_row["samples"].as_u64().is_some_and(|n| n >= 12),
                "{b_row}"
            );
        }
        seen.push(b_row["reason"].as_str().unwrap_or_default().to_owned());
        if state(&status, d.1) == "selected" && state(&status, b.1) == "candidate" {
            break status;
        }
        assert!(start.elapsed() < TIMEOUT, "{status}\n{}", client.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    let a_row = source(&status, a.1).expect("a shown");
    assert_eq!(a_row["reason"], "noselect");
    assert!(
        a_row["accepted"].as_u64().is_some_and(|n| n > 0),
        "measured: {a_row}"
    );
    assert!(
        seen.iter().any(|r| r.contains("of the 12 samples needed")),
        "b waited for its samples: {seen:?}"
    );
    // A few more seconds: prefer holds, noselect never selected.
    for _ in 0..20 {
        let status = client.status();
        assert_eq!(state(&status, d.1), "selected", "{status}");
        assert_eq!(state(&status, a.1), "rejected", "{status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_trusted_source_wins_against_one_that_disagrees() {
    let honest = Node::new("ctl-h7", 158).local(1).start_node();
    let liar = Node::new("ctl-l7", 159).local(1).offset(5.0).start_node();
    let sources = format!(
        "{}{}",
        source_entry(honest.1, "trust = true"),
        source_entry(liar.1, "")
    );
    let (mut client, _) = start_client("ctl-c7", 160, &sources, &Extra::default());
    let status = wait_for(&mut client, TIMEOUT, "the trusted one selected", |s| {
        state(s, honest.1) == "selected"
    });
    assert_eq!(state(&status, liar.1), "falseticker", "{status}");
    let error = clock_error(&client.status());
    assert!(error.abs() < 0.01, "followed the liar? error {error}");
}

#[test]
fn maxdelay_rejects_a_source_behind_a_slow_link() {
    let a = Node::new("ctl-a8", 161).local(1).start_node();
    let b = Node::new("ctl-b8", 162).local(1).start_node();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let slow = Impairment {
        delay: Duration::from_millis(30),
        ..Impairment::default()
    };
    let link = runtime
        .block_on(Link::start(b.1, LinkConfig::symmetric(slow, 8)))
        .expect("link");
    let behind = link.local_addr();
    let sources = format!(
        "{}{}",
        source_entry(a.1, "maxdelay = 0.02"),
        source_entry(behind, "maxdelay = 0.02")
    );
    let (mut client, _) = start_client("ctl-c8", 163, &sources, &Extra::default());
    let status = wait_for(
        &mut client,
        TIMEOUT,
        "the slow one's replies rejected",
        |s| state(s, a.1) == "selected" && field(s, behind, "rejected") >= 4,
    );
    let slow_row = source(&status, behind).expect("shown");
    assert_eq!(slow_row["accepted"], 0, "{slow_row}");
    assert_eq!(
        slow_row["state"], "rejected",
        "reachable, never used: {slow_row}"
    );
    assert_ne!(slow_row["reach"], 0, "{slow_row}");
    assert!(
        link.stats().backward.forwarded > 0,
        "the slow server answered"
    );
}

/// Starts a node and waits until it serves; returns it with its address.
trait StartNode {
    fn start_node(self) -> (Daemon, SocketAddr);
}

impl StartNode for Node {
    fn start_node(self) -> (Daemon, SocketAddr) {
        let address = self.address;
        (self.start(), address)
    }
}
