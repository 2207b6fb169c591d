//! The NTP teaching scenarios of `config/lab/`, each run with real daemons over real UDP (through
//! the link emulator where the scenario has links), each with a real assertion and its figures
//! printed. `cargo run -p ntp-lite-tests --bin lab -- config/lab/<file>` draws the same runs.
//!
//! The link emulator sends each datagram within a few microseconds of its deadline (see
//! `ntp_lite_tests::link`), so paths through it are held to 1 ms, as direct loopback paths are.

/// Accuracy bound on paths through the link emulator (see the module doc).
const LINK_BOUND: f64 = 0.001;

use ntp_lite_tests::scenario::{self, RunResult, Scenario};

fn run(file: &str) -> RunResult {
    let result = scenario::run(&Scenario::shipped(file));
    for line in result.summary().lines() {
        ntp_lite_tests::figures!("{line}");
    }
    result
}

fn settled(result: &RunResult, node: &str, limit: f64) -> (f64, u64) {
    result
        .settled(node, limit)
        .unwrap_or_else(|| panic!("{node} never stayed within {limit} s\n{}", result.log(node)))
}

#[test]
fn s1_clients_seconds_off_converge_under_a_millisecond() {
    let result = run("01-converge.toml");
    for client in ["client+2.5", "client-1.8", "client+0.5"] {
        let (t, polls) = settled(&result, client, 0.001);
        ntp_lite_tests::figures!("{client}: within 1 ms after {t:.1} s, {polls} polls");
        assert!(result.worst(client, 10.0, f64::MAX) < 0.001);
        assert_eq!(result.status(client)["stratum"], 2);
    }
}

#[test]
fn s2_latency_changes_the_noise_not_the_time() {
    let result = run("02-latency.toml");
    let mut figures = Vec::new();
    for client in ["halved-10ms", "base-20ms", "doubled-40ms"] {
        let (t, polls) = settled(&result, client, 0.010);
        let rms = result.rms(client, 15.0);
        figures.push((client, rms));
        ntp_lite_tests::figures!(
            "{client}: within 10 ms after {t:.1} s ({polls} polls), RMS over the last half {:.3} ms",
            rms * 1e3
        );
        assert!(
            result.worst(client, 15.0, f64::MAX) < 0.010,
            "{client} left the 10 ms band"
        );
    }
    // Symmetric delay cancels out: even the 40 ms path keeps the clock within a few ms.
    assert!(figures.iter().all(|(_, rms)| *rms < 0.005), "{figures:?}");
}

#[test]
fn s3_asymmetry_errs_by_exactly_half_the_difference() {
    let result = run("03-asymmetry.toml");
    let mean = result.mean("asymmetric", 15.0, f64::MAX);
    let believed = result.status("asymmetric")["offset"]
        .as_f64()
        .expect("an offset");
    ntp_lite_tests::figures!(
        "0.1 s out, 0.5 s back: clock error {mean:+.4} s (expected -0.2000), offset the client believes {believed:+.6} s"
    );
    assert!((mean + 0.2).abs() < 0.005, "mean error {mean}");
    assert_eq!(
        result.status("asymmetric")["synchronized"],
        true,
        "NTP cannot see the asymmetry"
    );
    assert!(believed.abs() < 0.005);
}

#[test]
fn s4_a_1000_ppm_drift_is_held_within_50_ms_between_polls() {
    let result = run("04-drift.toml");
    let with = result.worst("with-frequency", 20.0, f64::MAX);
    let without = result.worst("slew-only", 20.0, f64::MAX);
    let frequency = result.status("with-frequency")["frequency_ppm"]
        .as_f64()
        .expect("frequency");
    let residual = (frequency + 1000.0).abs().max(0.01);
    ntp_lite_tests::figures!(
        "drift 1000 ppm: with frequency correction ({frequency:+.1} ppm learned, residual {residual:.2} ppm) worst {:.3} ms at polls up to 4 s; \
         without it, slewing alone at poll 4 s: worst {:.3} ms",
        with * 1e3,
        without * 1e3
    );
    ntp_lite_tests::figures!(
        "  longest poll holding 50 ms: without frequency correction 50 ms / 1000 ppm = 50 s -> 2^5 = 32 s; \
         with it 50 ms / {residual:.2} ppm = {:.0} s -> capped by maxpoll (2^10 = 1024 s by default)",
        0.05 / (residual * 1e-6)
    );
    // Within 10%: a loaded 2-core CI machine adds a millisecond or two of scheduling noise to the
    // offsets, which over a 16-point fit spanning under a minute is tens of ppm of slope.
    assert!(
        (frequency + 1000.0).abs() < 100.0,
        "learned {frequency} ppm"
    );
    assert!(
        with < 0.05 && without < 0.05,
        "with {with}, without {without}"
    );
    assert!(
        with < without,
        "frequency correction holds the clock closer"
    );
}

#[test]
fn s5_a_primary_restarted_10_s_off_is_followed_by_one_source_and_refused_by_the_panic_gate() {
    let result = run("05-restart.toml");
    // When each node first showed the +10 s of the restarted server (within 10 ms).
    let followed_at = |node: &str| {
        result
            .series(node)
            .iter()
            .find(|s| s.error.is_some_and(|e| (e - 10.0).abs() < 0.01))
            .map(|s| s.t)
    };
    let (server, follower, client) = (
        followed_at("stratum1"),
        followed_at("follower"),
        followed_at("follower-client"),
    );
    ntp_lite_tests::figures!(
        "server +10 s at t={server:?}: follower followed at t={follower:?}, its client at t={client:?}; guarded worst {:.6} s, its client {:.6} s",
        result.worst("guarded", 5.0, f64::MAX),
        result.worst("guarded-client", 5.0, f64::MAX)
    );
    assert!(
        server.is_some() && follower > server && client > follower,
        "a lone source is followed, level by level"
    );
    // From 5 s, after start-up and before the jump at 8 s: the first half second of a lab node
    // can be over 1 ms on a loaded machine (1.7 ms was seen), which says nothing of the jump.
    assert!(
        result.worst("guarded", 5.0, f64::MAX) < 0.001,
        "the panic threshold refused the jump"
    );
    assert!(result.worst("guarded-client", 5.0, f64::MAX) < 0.001);
    assert!(
        result.log("guarded").contains("panic-threshold"),
        "the refusal is logged"
    );
    assert!(result.log("follower").contains("clock stepped"));
    for node in ["follower", "follower-client"] {
        assert!(
            result.worst(node, 60.0, f64::MAX) < 0.001,
            "{node} recovered after the fix"
        );
    }
}

#[test]
fn s6_two_sources_cannot_outvote_a_liar_but_three_honest_ones_can() {
    let result = run("06-falseticker.toml");
    let two = result.status("two-sources");
    let delays: Vec<f64> = two["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| s["delay"].as_f64().expect("delay"))
        .collect();
    let offsets: Vec<f64> = two["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| s["offset"].as_f64().expect("offset"))
        .collect();
    let lowest = if delays[0] <= delays[1] { 0 } else { 1 };
    ntp_lite_tests::figures!(
        "2 sources: delays {:.3} ms and {:.3} ms: the min-delay rule picks source {lowest} (offset {:+.3} s) by a hair; ntpd-lite trusts neither: synchronized {}",
        delays[0] * 1e3,
        delays[1] * 1e3,
        offsets[lowest],
        two["synchronized"]
    );
    assert!(
        (delays[0] - delays[1]).abs() < 0.002,
        "equal paths: min-delay cannot tell truth from lie"
    );
    assert_eq!(two["synchronized"], false);
    // It may briefly follow honest1 while the liar's filter is still filling (min-sources = 1),
    // but it never follows the liar, and ends trusting neither.
    // The liar is 5 s off: following it at all, even for a moment, would show as far more than
    // 50 ms (the first half second of a lab node may be a few ms off on a loaded machine).
    assert!(
        result.worst("two-sources", 0.0, f64::MAX) < 0.05,
        "never moved towards the liar"
    );
    let four = result.status("four-sources");
    let states: Vec<&str> = four["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| s["state"].as_str().unwrap_or("?"))
        .collect();
    ntp_lite_tests::figures!("4 sources: states {states:?}");
    assert_eq!(states[3], "falseticker");
    assert_eq!(four["synchronized"], true);
    assert!(result.worst("four-sources", 0.0, f64::MAX) < 0.05);
    assert!(result.worst("four-sources", 5.0, f64::MAX) < LINK_BOUND);
}

#[test]
fn s7_loss_duplicates_and_reordering_still_converge_and_no_duplicate_counts() {
    let result = run("07-loss.toml");
    let (t, polls) = settled(&result, "lossy", LINK_BOUND);
    let source = &result.status("lossy")["sources"][0];
    let link = &result.links["lossy"];
    ntp_lite_tests::figures!(
        "33% loss: within 1 ms after {t:.1} s ({polls} polls); requests {}, replies used {}, ignored {} (duplicates/strays), rejected {}; link dropped {}+{}, duplicated {}+{}, reordered {}+{}",
        source["sent"],
        source["accepted"],
        source["ignored"],
        source["rejected"],
        link.forward.dropped,
        link.backward.dropped,
        link.forward.duplicated,
        link.backward.duplicated,
        link.forward.reordered,
        link.backward.reordered
    );
    assert!(result.worst("lossy", 25.0, f64::MAX) < LINK_BOUND);
    assert!(
        link.forward.dropped + link.backward.dropped > 0
            && link.forward.duplicated + link.backward.duplicated > 0
    );
    let (sent, accepted, ignored) = (
        source["sent"].as_u64(),
        source["accepted"].as_u64(),
        source["ignored"].as_u64(),
    );
    assert!(accepted <= sent, "no request answered twice");
    assert!(ignored > Some(0), "duplicates arrived and were ignored");
}

#[test]
fn s8_a_lab_started_before_the_2036_rollover_syncs_across_it() {
    let result = run("08-era.toml");
    let (t, _) = settled(&result, "client", 0.001);
    ntp_lite_tests::figures!(
        "era rollover at t = 10 s: client within 1 ms after {t:.1} s and stayed there across it"
    );
    assert!(t < 10.0, "synchronized before the rollover");
    assert!(result.worst("client", t, f64::MAX) < 0.001);
    assert!(
        result
            .series("client")
            .iter()
            .filter(|s| s.t > 10.5)
            .all(|s| s.synchronized)
    );
}

#[test]
fn s9_two_peers_losing_their_upstreams_in_turn_follow_each_other_without_a_loop() {
    let result = run("09-peers.toml");
    // When each peer first served at stratum 3 (following its peer) inside its outage.
    let followed_at = |node: &str, from: f64, to: f64| {
        result
            .series(node)
            .iter()
            .find(|s| s.t >= from && s.t < to && s.stratum == 3)
            .map(|s| s.t)
    };
    let a = followed_at("peer-a", 10.0, 25.0);
    let b = followed_at("peer-b", 29.0, 45.0);
    let worst_a = a.map_or(f64::NAN, |t| result.worst("peer-a", t, 25.0));
    let worst_b = b.map_or(f64::NAN, |t| result.worst("peer-b", t, 45.0));
    ntp_lite_tests::figures!(
        "peers: A follows B at t={a:?} (upstream stopped at 10 s), worst {:.1} us until 25 s; B follows A at t={b:?} (upstream stopped at 29 s), worst {:.1} us",
        worst_a * 1e6,
        worst_b * 1e6
    );
    assert!(a.is_some() && b.is_some(), "each follows its peer in turn");
    assert!(worst_a < 0.001 && worst_b < 0.001);
    // A loop would show as a stratum above 3: each following the other.
    for node in ["peer-a", "peer-b"] {
        assert!(
            result.series(node).iter().all(|s| s.stratum <= 3),
            "{node} never followed a peer that followed it"
        );
    }
    // A returns to its upstream once it is back.
    assert!(
        result
            .series("peer-a")
            .iter()
            .any(|s| s.t > 25.0 && s.t < 29.0 && s.stratum == 2),
        "A back on its upstream"
    );
}
