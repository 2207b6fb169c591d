//! Leap seconds across a whole hierarchy in simulated time (see `ntp_lite_tests::sim::leap`):
//! the stratum-1 server knows the leap from its file, stratum 2 and 3 learn it by vote; each mode
//! keeps every clock on the clock it should be (UTC, slewed or smeared), with no other step and
//! no loss of synchronization; a lone announcer is outvoted.

use ntp_lite_tests::sim::leap::{self, CASES, Case};
use ntp_lite_tests::sim::world::RunResult;
use ntp_proto::LeapMode;

const SEED: u64 = 1;

/// Worst |error| against the mode's clock over `from..to` seconds around the leap.
fn worst(case: &Case, result: &RunResult, node: usize, from: f64, to: f64) -> f64 {
    leap::errors_against_mode(case, node, result)
        .iter()
        .filter(|(into, _)| *into >= from && *into <= to)
        .map(|(_, e)| e.abs())
        .fold(0.0, f64::max)
}

fn log_count(result: &RunResult, node: usize, prefix: &str) -> usize {
    result.nodes[node]
        .log
        .iter()
        .filter(|(_, line)| line.starts_with(prefix))
        .count()
}

fn case(name: &str) -> Case {
    *CASES.iter().find(|c| c.name == name).expect("case")
}

/// The hierarchy in `case` keeps every node within `limit` of the clock it should be from two
/// hours before the leap to the end, except `settle` seconds after the leap.
fn check(name: &str, limit: f64, settle: f64) -> RunResult {
    let case = case(name);
    let (_, result) = leap::run_case(&case, SEED);
    let (before, duration) = leap::span(&case);
    let after = duration - before;
    for node in 1..=4 {
        let name = &result.nodes[node];
        let early = worst(&case, &result, node, -2.0 * 3600.0, -1.0);
        let late = worst(&case, &result, node, settle, after);
        ntp_lite_tests::figures!(
            "leap {}: node {node}: worst error against its clock {early:.6} s before, {late:.6} s from {settle} s after; steps {}; {} leap(s) begun; sync lost {} times",
            case.name,
            name.steps,
            log_count(&result, node, "LeapBegun"),
            log_count(&result, node, "SyncLost"),
        );
        assert!(
            early < limit && late < limit,
            "node {node}: {early} / {late}"
        );
        assert_eq!(
            log_count(&result, node, "SyncLost"),
            0,
            "node {node} lost sync"
        );
    }
    result
}

#[test]
fn step_mode_repeats_a_second_everywhere_and_nothing_else_steps() {
    let result = check("step", 0.001, 1.0);
    for node in 0..=4 {
        assert_eq!(log_count(&result, node, "LeapBegun"), 1, "node {node}");
        // Only the first update may step (the clocks start 50-100 ms off): the leap is no step
        // of the discipline's and no source looks as if it jumped.
        assert!(result.nodes[node].steps <= 1, "node {node}");
    }
    // Each clock was told to make the leap itself (a kernel would), and told so once.
    for node in 0..=4 {
        assert_eq!(
            log_count(&result, node, "LeapArm(Some(Insert))"),
            1,
            "node {node}"
        );
    }
    // The vote: stratum 2 and 3 learned the leap from their sources.
    for node in 1..=4 {
        assert!(
            result.nodes[node]
                .log
                .iter()
                .any(|(_, l)| l.starts_with("LeapPending(Some") && l.contains("Vote")),
            "node {node} learned the leap by vote"
        );
    }
}

#[test]
fn a_deleted_second_is_skipped_everywhere() {
    let result = check("delete", 0.001, 1.0);
    for node in 0..=4 {
        assert_eq!(log_count(&result, node, "LeapBegun"), 1, "node {node}");
    }
}

#[test]
fn slew_mode_slews_the_second_after_the_leap() {
    // At half the simulated clocks' slew limit, the second is in within 24 s.
    check("slew", 0.001, 60.0);
}

#[test]
fn smear_mode_spreads_the_second_over_the_day_and_clients_never_see_a_leap() {
    // The clients see the smear's start and end as frequency steps of 11.6 ppm; at maxpoll 10
    // they lag by 12-18 ms for a while after each (at maxpoll 6, 4-5 ms: see the README).
    let result = check("smear", 0.025, 0.0);
    for node in 1..=4 {
        assert_eq!(
            log_count(&result, node, "LeapBegun"),
            0,
            "a smeared leap is never announced: node {node} saw none"
        );
        assert_eq!(log_count(&result, node, "LeapArm(Some"), 0, "node {node}");
    }
}

#[test]
fn ignore_mode_corrects_the_second_afterwards_like_any_offset() {
    let case = case("ignore");
    let (_, result) = leap::run_case(&case, SEED);
    for node in 1..=4 {
        let late = worst(&case, &result, node, 3.0 * 3600.0, 6.0 * 3600.0);
        ntp_lite_tests::figures!(
            "leap ignore: node {node}: worst error against UTC 3-6 h after {late:.6} s; steps {}",
            result.nodes[node].steps
        );
        assert!(late < 0.001, "node {node}: {late}");
        assert_eq!(log_count(&result, node, "LeapBegun"), 0);
    }
    assert_eq!(case.others, LeapMode::Ignore);
}

#[test]
fn a_lone_announcer_is_outvoted_and_then_a_falseticker() {
    let scenario = leap::lone_announcer();
    let result = ntp_lite_tests::sim::world::run(&scenario, SEED);
    let client = &result.nodes[3];
    let start = client.errors.len() / 3;
    let worst = client.errors[start..]
        .iter()
        .fold(0.0f64, |w, e| w.max(e.abs()));
    ntp_lite_tests::figures!(
        "lone announcer: client's worst error over the last 4 h {worst:.6} s; leaps begun {}",
        log_count(&result, 3, "LeapBegun")
    );
    assert_eq!(log_count(&result, 3, "LeapBegun"), 0);
    assert!(worst < 0.001, "{worst}");
    assert_eq!(log_count(&result, 2, "LeapBegun"), 1, "the announcer leapt");
    assert!(
        client.log.iter().any(|(_, l)| l.contains("falseticker")),
        "the announcer became a falseticker"
    );
}
