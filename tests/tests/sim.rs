//! The client core over simulated days: the comparison with chronyd 4.3 under the conditions of its
//! published figures (`ntp-sim compare` prints the same table), and behaviours that only show at
//! the poll intervals and horizons users run. Bounds carry margin; the benchmark prints the figures.

use std::sync::Arc;

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
        // The goal is chronyd's median or better: rows a-d' meet it with margin (0.62-0.77x);
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
fn a_peer_that_loses_its_upstream_follows_its_peer_for_a_day_at_polls_of_64_to_1024_s() {
    const CUT: f64 = 86_400.0;
    let clock = |offset, freq_ppm| ClockSpec {
        offset,
        freq_ppm,
        wander: 1e-9,
    };
    let mut a = NodeSpec::client("peer-a", clock(0.05, 30.0), vec![SourceRef::Node(0)]);
    let mut b = NodeSpec::client("peer-b", clock(-0.02, -20.0), vec![SourceRef::Node(1)]);
    a.peers = vec![3];
    b.peers = vec![2];
    for node in [&mut a, &mut b] {
        node.source_config.iburst = true;
    }
    let link = Link::symmetric(OneWay::exponential(100e-6, 100e-6));
    let scenario = Scenario {
        name: "peers".to_owned(),
        duration: 2.0 * CUT,
        epoch: EPOCH_2024,
        nodes: vec![
            NodeSpec::reference("upstream-a", 0.0),
            NodeSpec::reference("upstream-b", 0.0),
            a,
            b,
        ],
        names: Vec::new(),
        // Peer A's upstream (node 0) is cut off after a day.
        delay: Arc::new(move |packet, rng| {
            let cut = packet.client == 2 && packet.server == 0 && packet.time >= CUT;
            (!cut)
                .then(|| link.way(packet.direction).draw(rng))
                .flatten()
        }),
        duplicate: 0.0,
        ipv6: false,
    };
    let result = run(&scenario, 1);
    let (a, b) = (&result.nodes[2], &result.nodes[3]);
    // Source #0 is each peer's upstream, #1 its peer.
    let at = |log: &[(f64, String)], line: &str| {
        log.iter()
            .filter(|(_, l)| l == line)
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
    };
    let a_follows_b = at(&a.log, "PeerChanged(SourceId(1))");
    assert!(
        a_follows_b.iter().any(|t| *t > CUT),
        "A follows B after the cut: {:?}",
        a.log
    );
    assert!(
        b.log.iter().all(|(_, l)| !l.ends_with("(SourceId(1))")),
        "B never follows A: {:?}",
        b.log
    );
    assert!(
        at(&b.log, "source #1 rejected").iter().any(|t| *t > CUT),
        "B sees A follow it (a loop): {:?}",
        b.log
    );
    let switched = a_follows_b
        .iter()
        .find(|t| **t > CUT)
        .copied()
        .unwrap_or(CUT);
    let before = spread(&a.errors[43_200..CUT as usize]);
    let after = spread(&a.errors[(switched as usize + 3600).min(a.errors.len() - 1)..]);
    let b_after = spread(&b.errors[CUT as usize..]);
    figures!(
        "peers at polls 64-1024 s: A's upstream cut at 1 day, A follows B after {:.0} s; A's \
         error RMS {:.1} us max {:.1} us before, RMS {:.1} us max {:.1} us after (B: RMS {:.1} \
         us); requests A->B {}, B->A {}",
        switched - CUT,
        before.rms * 1e6,
        before.max * 1e6,
        after.rms * 1e6,
        after.max * 1e6,
        b_after.rms * 1e6,
        a.requests_to.get(&3).copied().unwrap_or(0),
        b.requests_to.get(&2).copied().unwrap_or(0)
    );
    assert!(after.max < 1e-3, "{after:?}");
}
