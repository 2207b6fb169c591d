//! Leap seconds over real UDP, in the lab: virtual clocks started shortly before 2016-12-31
//! 23:59:60 UTC (a real past leap). A stratum-1 daemon knows it from the leap-seconds file, a
//! stratum-2 daemon learns it by vote; both announce it, repeat 23:59:59 at the leap and stay
//! synchronized; ntplib, ntpdig and ntpdate-lite read the announcement.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ntp_lite_tests::client::Client;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::lab::{Node, clock_error, wait_for, worst_error_over};
use ntp_lite_tests::netns::Netns;
use ntp_lite_tests::tools;
use ntp_proto::LeapIndicator;
use serde_json::Value;

/// 2017-01-01 00:00:00 UTC: the inserted second 2016-12-31 23:59:60 ends here.
const AFTER_LEAP_UNIX: f64 = 1_483_228_800.0;
/// How long before the leap the lab starts.
const LEAD: f64 = 45.0;
const DEADLINE: Duration = Duration::from_secs(90);

fn leap_file() -> String {
    format!(
        "{}/../ntp-proto/tests/vectors/leap-seconds.list",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The virtual clocks' offset that makes them read `LEAD` seconds before the leap now.
fn offset_before_leap() -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    AFTER_LEAP_UNIX - LEAD - now
}

fn leap_field<'a>(status: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(&status["leap_second"], |value, key| &value[*key])
}

fn announced(status: &Value) -> Option<&str> {
    leap_field(status, &["announced"]).as_str()
}

fn served_leap(address: SocketAddr) -> LeapIndicator {
    let client = Client::connect(address).expect("connect");
    client.query(4, 6).expect("reply").reply.leap
}

#[test]
fn a_file_and_a_vote_carry_an_inserted_second_through_a_hierarchy_over_udp() {
    let offset = offset_before_leap();
    let primary = Node::new("leap-primary", 90)
        .local(1)
        .offset(offset)
        .leap(&format!("file = \"{}\"\nmode = \"step\"", leap_file()));
    let mut primary_daemon = primary.start();
    let secondary = Node::new("leap-secondary", 91)
        .offset(offset + 0.2)
        .sources(&[primary.address])
        .leap("file = \"\"\nmode = \"step\"");
    let mut secondary_daemon = secondary.start();

    // Before the leap: the primary announces it from its file, the secondary from the vote.
    let status = wait_for(
        &mut primary_daemon,
        DEADLINE,
        "primary announces the leap",
        |s| announced(s) == Some("insert"),
    );
    assert_eq!(leap_field(&status, &["pending", "from"]), "file");
    assert_eq!(
        leap_field(&status, &["pending", "at"]),
        "2017-01-01 00:00:00"
    );
    assert_eq!(served_leap(primary.address), LeapIndicator::InsertSecond);
    if tools::require("ntplib", tools::ntplib_installed(), "leap over UDP") {
        let ntplib = tools::ntplib_query(primary.address);
        ntp_lite_tests::figures!("ntplib before the leap: {ntplib}");
        assert_eq!(ntplib["leap"], 1, "ntplib reads LI 1 (insert)");
    }
    let query = std::process::Command::new(ntp_lite_tests::bins::ntpdate_lite())
        .arg("--json")
        .arg(primary.address.to_string())
        .output()
        .expect("run ntpdate-lite");
    let json: Value = serde_json::from_slice(&query.stdout).expect("ntpdate-lite prints JSON");
    ntp_lite_tests::figures!(
        "ntpdate-lite --json before the leap: leap {}, leap_pending {}",
        json["leap"],
        json["leap_pending"]
    );
    assert_eq!(json["leap"], "add-leap");
    assert_eq!(json["leap_pending"], true);
    let status = wait_for(
        &mut secondary_daemon,
        DEADLINE,
        "secondary synchronized and announcing by vote",
        |s| {
            s["synchronized"] == true
                && (clock_error(s) - offset).abs() < 0.001
                && announced(s) == Some("insert")
        },
    );
    assert_eq!(leap_field(&status, &["pending", "from"]), "vote");
    assert_eq!(leap_field(&status, &["vote"]), "insert");
    assert_eq!(served_leap(secondary.address), LeapIndicator::InsertSecond);

    // The leap: both clocks repeat a second (error against the leap-free system clock -1 s).
    for (daemon, name) in [
        (&mut primary_daemon, "primary"),
        (&mut secondary_daemon, "secondary"),
    ] {
        wait_for(daemon, DEADLINE, &format!("{name} leapt"), |s| {
            clock_error(s) - offset < -0.5
        });
    }
    let after = wait_for(
        &mut secondary_daemon,
        DEADLINE,
        "secondary announces nothing after the leap",
        |s| announced(s).is_none() && s["synchronized"] == true,
    );
    let worst = worst_error_over(&mut secondary_daemon, Duration::from_secs(3));
    let primary_error = clock_error(&primary_daemon.status()) - offset;
    let secondary_error = clock_error(&after) - offset;
    ntp_lite_tests::figures!(
        "after the leap: primary {primary_error:+.6} s, secondary {secondary_error:+.6} s from the leap-free time (UTC is -1 s)"
    );
    assert!((primary_error + 1.0).abs() < 0.001, "{primary_error}");
    assert!((secondary_error + 1.0).abs() < 0.001, "{secondary_error}");
    assert!(
        (worst - offset.abs() - 1.0).abs() < 0.01,
        "stayed a second behind: {worst}"
    );
    assert_eq!(served_leap(primary.address), LeapIndicator::NoWarning);
    for daemon in [&primary_daemon, &secondary_daemon] {
        let log = daemon.log();
        assert!(log.contains("leap second pending"), "{log}");
        assert!(log.contains("kind=\"insert\""), "the leap is logged: {log}");
        // Nothing mistook the repeated second for someone setting the clock, and nobody lost sync.
        assert!(!log.contains("set by something else"), "{log}");
        assert!(!log.contains("lost synchronization"), "{log}");
    }
}

#[test]
fn ntpdig_reads_the_announcement_in_a_private_namespace() {
    if !tools::require("ntpdig", tools::runs("ntpdig", &["--version"]), "ntpdig") {
        return;
    }
    let Some(netns) = Netns::create("leap-ntpdig") else {
        return;
    };
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:123\"]\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\ninitial-offset = {:?}\n[leap]\nfile = \"{}\"\n",
        offset_before_leap() - 3600.0,
        leap_file()
    );
    let mut daemon = Daemon::start_in("leap-ntpdig-server", &config, Some(&netns));
    let output = netns.ntpdig(&mut daemon);
    ntp_lite_tests::figures!("ntpdig an hour before the leap: {output}");
    assert!(output.contains("add-leap"), "{output}");
}
