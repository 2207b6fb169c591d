//! Two symmetric peers each losing their upstream in turn, in simulated time: each has its own
//! stratum-1 upstream and the other as a `[[peer]]`, at the default polls (64-1024 s), on 20-30
//! ppm oscillators over links of 100 us + Exp(100 us) each way. A's upstream is cut on day 2
//! and back on day 3, when B's is cut for a day.

use std::path::Path;
use std::sync::Arc;

use super::clock::ClockSpec;
use super::measure::{Spread, spread};
use super::net::{Link, OneWay};
use super::world::{EPOCH_2024, NodeSpec, RunResult, Scenario, SourceRef, run};

/// A day, seconds.
pub const DAY: f64 = 86_400.0;
/// Node indices: the two upstreams, then peers A and B.
pub const UPSTREAM_A: usize = 0;
/// Peer B's upstream.
pub const UPSTREAM_B: usize = 1;
/// Peer A.
pub const PEER_A: usize = 2;
/// Peer B.
pub const PEER_B: usize = 3;

/// True while `upstream`'s link to its peer is cut at true time `t`.
fn cut(upstream: usize, t: f64) -> bool {
    match upstream {
        UPSTREAM_A => (DAY..2.0 * DAY).contains(&t),
        UPSTREAM_B => (2.0 * DAY..3.0 * DAY).contains(&t),
        _ => false,
    }
}

/// The scenario: three days.
pub fn scenario() -> Scenario {
    let clock = |offset, freq_ppm| ClockSpec {
        offset,
        freq_ppm,
        wander: 1e-9,
    };
    let mut a = NodeSpec::client(
        "peer A",
        clock(0.05, 30.0),
        vec![SourceRef::Node(UPSTREAM_A)],
    );
    let mut b = NodeSpec::client(
        "peer B",
        clock(-0.02, -20.0),
        vec![SourceRef::Node(UPSTREAM_B)],
    );
    a.peers = vec![PEER_B];
    b.peers = vec![PEER_A];
    for node in [&mut a, &mut b] {
        node.source_config.iburst = true;
    }
    let link = Link::symmetric(OneWay::exponential(100e-6, 100e-6));
    Scenario {
        name: "peers losing their upstreams in turn".to_owned(),
        duration: 3.0 * DAY,
        epoch: EPOCH_2024,
        nodes: vec![
            NodeSpec::reference("upstream A", 0.0),
            NodeSpec::reference("upstream B", 0.0),
            a,
            b,
        ],
        names: Vec::new(),
        delay: Arc::new(move |packet, rng| {
            let lost = packet.server == packet.client - 2 && cut(packet.server, packet.time);
            (!lost)
                .then(|| link.way(packet.direction).draw(rng))
                .flatten()
        }),
        duplicate: 0.0,
        ipv6: false,
    }
}

/// What one peer did while its upstream was cut.
#[derive(Clone, Debug)]
pub struct Outage {
    /// Which peer.
    pub name: &'static str,
    /// Seconds from the cut until it selected its peer (`None`: it never did).
    pub followed_after: Option<f64>,
    /// Its error from an hour after it switched to the end of the outage.
    pub error: Spread,
    /// Its error on the day before the outage.
    pub before: Spread,
    /// True if the other peer ever selected it during the outage (a loop).
    pub loop_seen: bool,
}

/// Runs with `seed`: the result and each peer's outage.
pub fn measure(seed: u64) -> (RunResult, [Outage; 2]) {
    let result = run(&scenario(), seed);
    // Source #0 is each peer's upstream, #1 its peer.
    let outage = |name, me: usize, other: usize, from: f64| {
        let followed = result.nodes[me]
            .log
            .iter()
            .find(|(t, l)| *t >= from && *t < from + DAY && l == "PeerChanged(SourceId(1))")
            .map(|(t, _)| *t);
        let errors = &result.nodes[me].errors;
        let start = followed.map_or(from + DAY, |t| t + 3600.0) as usize;
        let end = ((from + DAY) as usize).min(errors.len());
        let loop_seen = result.nodes[other]
            .log
            .iter()
            .any(|(t, l)| *t >= from && *t < from + DAY && l == "PeerChanged(SourceId(1))");
        Outage {
            name,
            followed_after: followed.map(|t| t - from),
            error: spread(&errors[start.min(end)..end]),
            before: spread(&errors[(from - DAY / 2.0) as usize..from as usize]),
            loop_seen,
        }
    };
    let outages = [
        outage("A", PEER_A, PEER_B, DAY),
        outage("B", PEER_B, PEER_A, 2.0 * DAY),
    ];
    (result, outages)
}

/// The figures as a table.
pub fn table(outages: &[Outage]) -> String {
    let mut out = String::from(
        "| peer | follows its peer after (s) | error RMS / max before (us) | error RMS / max following its peer (us) | loop |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for o in outages {
        out.push_str(&format!(
            "| {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {} |\n",
            o.name,
            o.followed_after
                .map_or("never".to_owned(), |t| format!("{t:.0}")),
            o.before.rms * 1e6,
            o.before.max * 1e6,
            o.error.rms * 1e6,
            o.error.max * 1e6,
            if o.loop_seen { "yes" } else { "no" }
        ));
    }
    out
}

/// Draws both peers' error over the three days.
pub fn chart(result: &RunResult, path: &Path) -> Result<(), String> {
    super::plot::error_chart(&scenario(), result, path)
}
