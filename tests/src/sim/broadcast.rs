//! A broadcast LAN in simulated time: one stratum-1 server announcing every 64 s (ntpd's default
//! broadcast interval) to clients on 10-50 ppm oscillators over a LAN path (250 us + Exp(50 us)
//! each way), for a day. Two clients calibrate the one-way delay against client/server exchanges;
//! one assumes ntpd's default 4 ms instead (what a wrong delay assumption costs); one is an
//! ordinary client of the same server at the default polls, for comparison.

use std::path::Path;

use ntp_proto::broadcast::DEFAULT_DELAY;
use ntp_proto::{BroadcastDelay, PollInterval};

use super::clock::ClockSpec;
use super::measure::{Spread, spread};
use super::net::{Link, OneWay};
use super::world::{EPOCH_2024, NodeSpec, RunResult, Scenario, SourceRef, run, uniform};

/// The one-way delay of the LAN: its fixed part and the mean of its exponential part, seconds.
pub const LAN: (f64, f64) = (250e-6, 50e-6);
/// The broadcast interval, log2 s.
pub const INTERVAL: i8 = 6;
/// The figures are taken over the second half of the run.
pub const DURATION: f64 = 86_400.0;

/// The clients, in node order from 1: name, source, oscillator (ppm).
fn clients() -> [(&'static str, SourceRef, f64); 4] {
    [
        (
            "broadcast, calibrated (+30 ppm)",
            SourceRef::Broadcast(0, BroadcastDelay::Calibrated),
            30.0,
        ),
        (
            "broadcast, calibrated (-45 ppm)",
            SourceRef::Broadcast(0, BroadcastDelay::Calibrated),
            -45.0,
        ),
        (
            "broadcast, 4 ms assumed (+12 ppm)",
            SourceRef::Broadcast(0, BroadcastDelay::Fixed(DEFAULT_DELAY)),
            12.0,
        ),
        ("client/server (-20 ppm)", SourceRef::Node(0), -20.0),
    ]
}

/// The scenario.
pub fn scenario() -> Scenario {
    let mut server = NodeSpec::reference("broadcaster", 0.0);
    server.broadcast = Some(PollInterval::new(INTERVAL));
    let mut nodes = vec![server];
    for (name, source, ppm) in clients() {
        let clock = ClockSpec {
            offset: 0.05,
            freq_ppm: ppm,
            wander: 1e-9,
        };
        nodes.push(NodeSpec::client(name, clock, vec![source]));
    }
    Scenario {
        name: "broadcast LAN".to_owned(),
        duration: DURATION,
        epoch: EPOCH_2024,
        nodes,
        names: Vec::new(),
        delay: uniform(Link::symmetric(OneWay::exponential(LAN.0, LAN.1))),
        duplicate: 0.0,
        ipv6: false,
    }
}

/// One client's figures.
#[derive(Clone, Debug)]
pub struct ClientFigures {
    /// Its name.
    pub name: &'static str,
    /// Error over the second half of the day.
    pub settled: Spread,
    /// Mean error over the second half (the bias a wrong delay leaves).
    pub mean: f64,
    /// Requests it sent in the day.
    pub requests: usize,
    /// When its clock was first updated, seconds.
    pub first_update: Option<f64>,
}

/// Runs the scenario with `seed` and measures each client.
pub fn measure(seed: u64) -> (RunResult, Vec<ClientFigures>) {
    let result = run(&scenario(), seed);
    let figures = clients()
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| {
            let node = &result.nodes[i + 1];
            let half = &node.errors[node.errors.len() / 2..];
            ClientFigures {
                name,
                settled: spread(half),
                mean: half.iter().sum::<f64>() / half.len() as f64,
                requests: node.sent_at.len(),
                first_update: node.first_update,
            }
        })
        .collect();
    (result, figures)
}

/// The figures as a table.
pub fn table(figures: &[ClientFigures]) -> String {
    let mut out = String::from(
        "| client | RMS error (us) | max (us) | mean (us) | requests/day | first update (s) |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for f in figures {
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:+.1} | {} | {} |\n",
            f.name,
            f.settled.rms * 1e6,
            f.settled.max * 1e6,
            f.mean * 1e6,
            f.requests,
            f.first_update.map_or("-".to_owned(), |t| format!("{t:.0}")),
        ));
    }
    out
}

/// Draws each client's error over the day.
pub fn chart(result: &RunResult, path: &Path) -> Result<(), String> {
    super::plot::error_chart(&scenario(), result, path)
}
