//! The client core over simulated days: the comparison with chronyd 4.3 under the conditions of its
//! published figures (`ntp-sim compare` prints the same table), and behaviours that only show at
//! the poll intervals and horizons users run. Bounds carry margin; the benchmark prints the figures.

use ntp_lite_tests::figures;
use ntp_lite_tests::sim::clock::ClockSpec;
use ntp_lite_tests::sim::compare::{cases, compare, table};
use ntp_lite_tests::sim::measure::spread;
use ntp_lite_tests::sim::net::{Link, OneWay};
use ntp_lite_tests::sim::world::{EPOCH_2024, NodeSpec, Scenario, SourceRef, run, uniform};

/// chronyd's mean poll in the last 12 h of cases a and b was 700-1035 s: at most 123 requests per
/// source per day, so twice chronyd's requests is at most 246.
const CHRONYD_REQUESTS_PER_DAY: f64 = 86_400.0 / 700.0;

#[test]
fn the_core_matches_or_beats_chronyd_at_the_polls_users_run() {
    let rows = compare(10, None);
    figures!("ntp-sim compare, seeds 1..10:\n{}", table(&rows));
    for row in &rows {
        let case = cases()
            .into_iter()
            .find(|c| c.name == row.case)
            .expect("case");
        if let Some((first_update, within)) = case.startup {
            assert!(
                row.rms_us <= first_update,
                "first update later than chronyd's: {row:?}"
            );
            assert!(row.max_us <= within, "slower to 1 ms than chronyd: {row:?}");
            continue;
        }
        if row.chronyd_rms_us.is_nan() {
            // The emulator's links (chronyd's anchor is the side-by-side run through them): the
            // window beyond 64 samples took these from 62 and 27 us (6 seeds) to 16 and 12 us.
            let bound = if row.case == "j" { 30.0 } else { 20.0 };
            assert!(row.rms_us <= bound, "RMS {:.1} us: {row:?}", row.rms_us);
            continue;
        }
        // The goal is chronyd's median or better: rows a-d' meet it with margin (0.27-0.77x);
        // without wander (x1 0.80x, x4 0.98x) the seeds spread widely, so allow 10% there.
        let bound = if row.case.starts_with('x') { 1.1 } else { 0.9 };
        assert!(
            row.ratio <= bound,
            "RMS {:.1} us vs chronyd {:.1} us: {row:?}",
            row.rms_us,
            row.chronyd_rms_us
        );
        if case.polls.0 != case.polls.1 && case.polls.1 >= 10 {
            assert!(
                row.requests_per_day <= 2.0 * CHRONYD_REQUESTS_PER_DAY,
                "more than twice chronyd's requests: {row:?}"
            );
        }
    }
}

#[test]
fn the_simulator_is_deterministic() {
    let scenario = cases()[0].scenario();
    let (one, two) = (run(&scenario, 7), run(&scenario, 7));
    assert_eq!(one.nodes[1].errors, two.nodes[1].errors);
    assert_eq!(one.nodes[1].sent_at, two.nodes[1].sent_at);
    let other = run(&scenario, 8);
    assert_ne!(one.nodes[1].errors, other.nodes[1].errors);
}

fn one_client(duration: f64, client: NodeSpec) -> Scenario {
    Scenario {
        name: client.name.clone(),
        duration,
        epoch: EPOCH_2024,
        nodes: vec![NodeSpec::reference("server", 0.0), client],
        names: Vec::new(),
        delay: uniform(Link::symmetric(OneWay::exponential(100e-6, 100e-6))),
        duplicate: 0.0,
        ipv6: false,
    }
}

#[test]
fn a_clock_set_by_someone_else_is_noticed_and_corrected_without_a_broken_frequency() {
    let mut client = NodeSpec::client(
        "client",
        ClockSpec {
            offset: 0.1,
            freq_ppm: 100.0,
            wander: 1e-9,
        },
        vec![SourceRef::Node(0)],
    );
    client.external_steps = vec![(3000.0, 50.0)];
    let result = run(&one_client(8000.0, client), 1);
    let node = &result.nodes[1];
    assert!(
        node.log
            .iter()
            .any(|(t, line)| line.starts_with("ClockJumped") && (3000.0..4100.0).contains(t)),
        "{:?}",
        node.log
    );
    let settled = spread(&node.errors[5000..]);
    figures!(
        "clock set 50 s ahead at 3000 s: stepped back ({} steps), then RMS {:.1} us, max {:.1} us; frequency error {:.4} ppm",
        node.steps,
        settled.rms * 1e6,
        settled.max * 1e6,
        node.final_frequency_error_ppm
    );
    assert!(settled.max < 1e-3, "{settled:?}");
    assert!(node.final_frequency_error_ppm.abs() < 1.0);
}

#[test]
fn a_duplicated_and_lossy_link_never_counts_a_reply_twice() {
    let mut scenario = one_client(
        20_000.0,
        NodeSpec::client(
            "client",
            ClockSpec {
                offset: 0.05,
                freq_ppm: -30.0,
                wander: 1e-9,
            },
            vec![SourceRef::Node(0)],
        ),
    );
    scenario.delay = uniform(Link::symmetric(OneWay {
        loss: 0.3,
        duplicate: 0.0,
        ..OneWay::exponential(1e-3, 200e-6)
    }));
    scenario.duplicate = 0.2;
    let result = run(&scenario, 3);
    let node = &result.nodes[1];
    let settled = spread(&node.errors[10_000..]);
    figures!(
        "30% loss each way, 20% duplicates: {} requests, {} datagrams back, RMS {:.1} us, max {:.1} us",
        node.sent_at.len(),
        node.received_at.len(),
        settled.rms * 1e6,
        settled.max * 1e6
    );
    assert!(settled.max < 1e-3, "{settled:?}");
}

#[test]
fn peers_losing_their_upstreams_in_turn_follow_each_other_for_a_day_without_a_loop() {
    let (_, outages) = ntp_lite_tests::sim::peers::measure(1);
    figures!(
        "ntp-sim peers (polls 64-1024 s, A's upstream cut on day 2, B's on day 3):\n{}",
        ntp_lite_tests::sim::peers::table(&outages)
    );
    for outage in &outages {
        let after = outage.followed_after.expect("follows its peer");
        // Eight unanswered polls make the upstream unreachable; meanwhile its line carries it.
        assert!(after < 4.0 * 3600.0, "{outage:?}");
        assert!(outage.error.max < 1e-3, "{outage:?}");
        assert!(!outage.loop_seen, "{outage:?}");
    }
}

#[test]
fn a_pool_replaces_its_falseticker_and_its_dead_server_at_the_polls_users_run() {
    use ntp_proto::NameKind;
    let clock = ClockSpec {
        offset: 0.05,
        freq_ppm: 25.0,
        wander: 1e-9,
    };
    let mut client = NodeSpec::client(
        "pool client",
        clock,
        vec![SourceRef::Name(
            "pool.test".to_owned(),
            NameKind::Pool { max_sources: 4 },
        )],
    );
    client.source_config.iburst = true;
    // Nodes 0-5 are the pool's servers: node 0 is 5 s off, node 1 dies after 6 hours.
    let mut nodes: Vec<NodeSpec> = (0..6)
        .map(|i| NodeSpec::reference(&format!("pool-{i}"), if i == 0 { 5.0 } else { 0.0 }))
        .collect();
    nodes.push(client);
    let link = Link::symmetric(OneWay::exponential(500e-6, 200e-6));
    let scenario = Scenario {
        name: "healing pool".to_owned(),
        duration: 86_400.0,
        epoch: EPOCH_2024,
        nodes,
        names: vec![("pool.test".to_owned(), (0..6).collect())],
        delay: std::sync::Arc::new(move |packet, rng| {
            let dead = packet.server == 1 && packet.time >= 6.0 * 3600.0;
            (!dead)
                .then(|| link.way(packet.direction).draw(rng))
                .flatten()
        }),
        duplicate: 0.0,
        ipv6: false,
    };
    let result = run(&scenario, 1);
    let node = &result.nodes[6];
    let replaced: Vec<&(f64, String)> = node
        .log
        .iter()
        .filter(|(_, l)| l.contains("replaced by"))
        .collect();
    let settled = spread(&node.errors[43_200..]);
    figures!(
        "healing pool (6 servers, max-sources 4, one 5 s off, one dead after 6 h, polls 64-1024 s): {replaced:?}; error over the second half RMS {:.1} us, max {:.1} us",
        settled.rms * 1e6,
        settled.max * 1e6
    );
    let reason = |why: &str| replaced.iter().filter(|(_, l)| l.ends_with(why)).count();
    assert_eq!(reason("falseticker"), 1, "{replaced:?}");
    assert_eq!(reason("unreachable"), 1, "{replaced:?}");
    assert!(
        replaced
            .iter()
            .any(|(t, l)| l.ends_with("unreachable") && *t > 6.0 * 3600.0),
        "the dead server replaced after it died"
    );
    assert!(settled.max < 1e-3, "{settled:?}");
}
