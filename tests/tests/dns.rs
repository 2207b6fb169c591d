//! Pools that heal, through a real DNS server: dnsmasq in a network namespace of the test's own
//! serves a pool name with A and AAAA records that the test changes while the daemon runs, and
//! ntpd-lite, in the same namespace, resolves it with the system resolver (getaddrinfo, pointed at
//! dnsmasq by the namespace's resolv.conf). Sources that deny us or stop answering give way to
//! fresh addresses of their name, never to one in use; a server name is resolved again.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::dns::Dnsmasq;
use ntp_lite_tests::lab::{clock_error, wait_for};
use ntp_lite_tests::netns::Netns;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);
const POOL: &str = "pool.ntp-lite.test";
const SOLO: &str = "solo.ntp-lite.test";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// A stratum-1 ntpd-lite on `address`:123 in `netns`; `deny` refuses 127.0.0.1 with KoD DENY.
fn server(netns: &Netns, address: &str, deny: bool) -> Daemon {
    let listen = if address.contains(':') {
        format!("[{address}]:123")
    } else {
        format!("{address}:123")
    };
    let deny = if deny {
        "deny = [\"127.0.0.1/32\"]\n"
    } else {
        ""
    };
    let config = format!(
        "[server]\nlisten = [\"{listen}\"]\n{deny}\n[local]\nstratum = 1\n\n[clock]\nmode = \"virtual\"\n"
    );
    Daemon::start_in(&format!("dns-server-{address}"), &config, Some(netns))
}

/// The sources' addresses in `status`.
fn sources(status: &Value) -> BTreeSet<String> {
    status["sources"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["address"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn set(addresses: &[&str]) -> BTreeSet<String> {
    addresses.iter().map(|a| (*a).to_owned()).collect()
}

#[test]
fn pool_and_server_names_heal_through_a_real_dns_server_whose_records_change() {
    if !ntp_lite_tests::tools::require("dnsmasq (dnsmasq-base)", Dnsmasq::installed(), "dns") {
        return;
    }
    let Some(netns) = Netns::create("dns") else {
        return;
    };
    netns.ip(&["-6", "addr", "add", "fd00::25/128", "dev", "lo"]);
    let dns = Dnsmasq::start(
        &netns,
        ip("127.0.0.53"),
        &[
            (POOL, ip("127.0.0.21")),
            (POOL, ip("127.0.0.22")),
            (SOLO, ip("127.0.0.24")),
        ],
    );
    let _denier = server(&netns, "127.0.0.21", true);
    let mut second = server(&netns, "127.0.0.22", false);
    let _third = server(&netns, "127.0.0.23", false);
    let mut solo = server(&netns, "127.0.0.24", false);
    let _v6 = server(&netns, "fd00::25", false);
    let _solo_moved = server(&netns, "127.0.0.26", false);
    let config = format!(
        "[clock]\nmode = \"virtual\"\ninitial-offset = 0.05\n\n[control]\nsocket = \"{{dir}}/control.sock\"\n\n\
         [[source]]\naddress = \"{POOL}\"\nkind = \"pool\"\nmax-sources = 2\nminpoll = -2\nmaxpoll = -1\n\n\
         [[source]]\naddress = \"{SOLO}\"\nminpoll = -2\nmaxpoll = -1\n"
    );
    let mut client = Daemon::start_in("dns-client", &config, Some(&netns));

    // The pool gives two addresses; .21 denies us, and with no fresh address it stays.
    let status = wait_for(
        &mut client,
        DEADLINE,
        "the pool's two and the server",
        |s| {
            sources(s) == set(&["127.0.0.21:123", "127.0.0.22:123", "127.0.0.24:123"])
                && client_denied(s, "127.0.0.21:123")
        },
    );
    ntp_lite_tests::figures!("dns: first sources {:?}", sources(&status));

    // The records grow by an A and an AAAA record: the denier gives way to a fresh one.
    dns.set_records(&[
        (POOL, ip("127.0.0.21")),
        (POOL, ip("127.0.0.22")),
        (POOL, ip("127.0.0.23")),
        (POOL, ip("fd00::25")),
        (SOLO, ip("127.0.0.24")),
    ]);
    let status = wait_for(&mut client, DEADLINE, "the denier replaced", |s| {
        let now = sources(s);
        !now.contains("127.0.0.21:123")
            && now.contains("127.0.0.22:123")
            && (now.contains("127.0.0.23:123") || now.contains("[fd00::25]:123"))
    });
    ntp_lite_tests::figures!("dns: after the records grew {:?}", sources(&status));
    assert_eq!(
        sources(&status).len(),
        3,
        "never more than max-sources of the pool"
    );

    // .22 and the server name's .24 stop answering, and the server name moves to .26: the pool
    // takes its remaining fresh address (never one in use), the server name its new one.
    dns.set_records(&[
        (POOL, ip("127.0.0.21")),
        (POOL, ip("127.0.0.22")),
        (POOL, ip("127.0.0.23")),
        (POOL, ip("fd00::25")),
        (SOLO, ip("127.0.0.26")),
    ]);
    second.stop();
    solo.stop();
    let status = wait_for(
        &mut client,
        DEADLINE,
        "the unreachable ones replaced, synchronized",
        |s| {
            sources(s) == set(&["127.0.0.23:123", "[fd00::25]:123", "127.0.0.26:123"])
                && s["synchronized"] == true
                && clock_error(s).abs() < 0.001
        },
    );
    let log = client.log();
    let replaced: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("source replaced by a fresh address of its name"))
        .collect();
    ntp_lite_tests::figures!(
        "dns: finally {:?}, error {:+.1} us; replacements logged:\n{}",
        sources(&status),
        clock_error(&status) * 1e6,
        replaced.join("\n")
    );
    assert_eq!(replaced.len(), 3, "one line per replacement");
    assert_eq!(
        replaced
            .iter()
            .filter(|l| l.contains("reason=\"denied\""))
            .count(),
        1
    );
    assert_eq!(
        replaced
            .iter()
            .filter(|l| l.contains("reason=\"unreachable\""))
            .count(),
        2
    );
    assert!(dns.log().contains(POOL), "the daemon asked dnsmasq");
}

/// True once `address` sent us a kiss-o'-death DENY (its state: rejected, denied).
fn client_denied(status: &Value, address: &str) -> bool {
    status["sources"].as_array().is_some_and(|s| {
        s.iter().any(|s| {
            s["address"] == address
                && s["state"] == "rejected"
                && s["reason"].as_str().is_some_and(|r| r.contains("denied"))
        })
    })
}
