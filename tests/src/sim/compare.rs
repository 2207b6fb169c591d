//! ntpd-lite's core against chronyd 4.3, under the conditions of chronyd's published figures
//! (issue "client core in simulated time"): perfect servers; the client 0.3 s ahead, +20 ppm and a
//! frequency random walk of 1 ppb per second; each direction 1 ms + Exp(50 us); iburst, polls
//! 6..10; 24 hours; the error sampled once a second over the last 12 hours, RMS about zero.
//! chronyd's figures are the medians over 10 seeds of chronyd 4.3 run by clknetsim under exactly
//! these conditions.
//!
//! Rows j and l mirror the link emulator's `jitter` and `lossy` settings at polls of 0.25-1 s on a
//! steady clock, for 10 minutes: chronyd has no published figure there (NaN); its anchor is the
//! side-by-side run through the emulator (`daemon-vs-chronyd link`).

use ntp_proto::{PollInterval, SourceConfig};
use serde::Serialize;

use super::clock::ClockSpec;
use super::measure::{median, spread, sync_time};
use super::net::{Jitter, Link, OneWay};
use super::world::{EPOCH_2024, NodeSpec, RunResult, Scenario, SourceRef, run, uniform};

/// One row of the comparison.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Case {
    /// Short name.
    pub name: &'static str,
    /// What differs from the defaults.
    pub description: &'static str,
    /// Upstream servers.
    pub sources: usize,
    /// Clock frequency error, ppm.
    pub freq_ppm: f64,
    /// Wander (fraction per second).
    pub wander: f64,
    /// The one-way delay model.
    pub link: Link,
    /// Poll limits.
    pub polls: (i8, i8),
    /// Simulated seconds.
    pub duration: f64,
    /// chronyd's median RMS and maximum error, microseconds.
    pub chronyd: (f64, f64),
    /// Start-up case: compare the first update and the time to within 1 ms instead.
    pub startup: Option<(f64, f64)>,
}

const DAY: f64 = 86_400.0;
const FAST: OneWay = OneWay::exponential(1e-3, 50e-6);

const fn case(name: &'static str, description: &'static str, chronyd: (f64, f64)) -> Case {
    Case {
        name,
        description,
        sources: 1,
        freq_ppm: 20.0,
        wander: 1e-9,
        link: Link::symmetric(FAST),
        polls: (6, 10),
        duration: DAY,
        chronyd,
        startup: None,
    }
}

/// The rows of the table.
pub fn cases() -> Vec<Case> {
    let slow = OneWay {
        jitter: Jitter::TwoExponentials(50e-6, 1e-3),
        ..FAST
    };
    vec![
        case("a", "1 source, 20 ppm", (66.0, 205.0)),
        Case {
            sources: 4,
            ..case("b", "4 sources, 20 ppm", (97.0, 222.0))
        },
        Case {
            link: Link::symmetric(slow),
            ..case("c", "1 source, + Exp(1 ms) jitter", (452.0, 1169.0))
        },
        Case {
            polls: (4, 4),
            ..case("d", "1 source, poll 4 fixed", (6.5, 24.0))
        },
        Case {
            polls: (-2, 0),
            ..case("d'", "1 source, polls -2..0", (5.3, 62.0))
        },
        Case {
            wander: 0.0,
            ..case("x1", "1 source, no wander", (3.6, f64::NAN))
        },
        Case {
            wander: 0.0,
            sources: 4,
            ..case("x4", "4 sources, no wander", (2.0, f64::NAN))
        },
        Case {
            polls: (-2, 0),
            freq_ppm: 0.0,
            wander: 0.0,
            link: Link::symmetric(OneWay::exponential(5e-3, 1e-3)),
            duration: 600.0,
            ..case("j", "emulator's jitter, polls -2..0", (f64::NAN, f64::NAN))
        },
        Case {
            polls: (-2, 0),
            freq_ppm: 0.0,
            wander: 0.0,
            link: Link::symmetric(OneWay {
                loss: 0.33,
                duplicate: 0.05,
                ..OneWay::exponential(2e-3, 0.5e-3)
            }),
            duration: 600.0,
            ..case("l", "emulator's lossy, polls -2..0", (f64::NAN, f64::NAN))
        },
        Case {
            duration: 600.0,
            startup: Some((4.26, 7.86)),
            ..case(
                "e1",
                "start-up, 1 source: first update / within 1 ms (s)",
                (f64::NAN, f64::NAN),
            )
        },
        Case {
            duration: 600.0,
            sources: 4,
            startup: Some((4.87, 8.47)),
            ..case(
                "e4",
                "start-up, 4 sources: first update / within 1 ms (s)",
                (f64::NAN, f64::NAN),
            )
        },
    ]
}

impl Case {
    /// The scenario of this case.
    pub fn scenario(&self) -> Scenario {
        let mut nodes: Vec<NodeSpec> = (0..self.sources)
            .map(|i| NodeSpec::reference(&format!("server{}", i + 1), 0.0))
            .collect();
        let mut client = NodeSpec::client(
            "client",
            ClockSpec {
                offset: 0.3,
                freq_ppm: self.freq_ppm,
                wander: self.wander,
            },
            (0..self.sources).map(SourceRef::Node).collect(),
        );
        client.source_config = SourceConfig {
            min_poll: PollInterval::new(self.polls.0),
            max_poll: PollInterval::new(self.polls.1),
            iburst: true,
            ..SourceConfig::default()
        };
        nodes.push(client);
        Scenario {
            name: self.name.to_owned(),
            duration: self.duration,
            epoch: EPOCH_2024,
            nodes,
            names: Vec::<(String, Vec<usize>)>::new(),
            delay: uniform(self.link),
            duplicate: 0.0,
            ipv6: false,
        }
    }
}

/// What one seed of one case gave.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Outcome {
    /// RMS error over the second half, seconds.
    pub rms: f64,
    /// Largest error over the second half, seconds.
    pub max: f64,
    /// Requests per source per day.
    pub requests_per_day: f64,
    /// Mean poll interval over the second half, seconds.
    pub mean_poll: f64,
    /// True time of the first clock update.
    pub first_update: f64,
    /// First second from which the error stays within 1 ms.
    pub within_1ms: f64,
}

/// Measures one run of `case`.
pub fn outcome(case: &Case, result: &RunResult) -> Outcome {
    let client = &result.nodes[case.sources];
    let half = client.errors.len() / 2;
    let s = spread(&client.errors[half..]);
    let sent = client.sent_at.len() as f64 / case.sources as f64;
    let late: Vec<f64> = client
        .sent_at
        .iter()
        .copied()
        .filter(|t| *t >= case.duration / 2.0)
        .collect();
    let mean_poll = case.duration / 2.0 / (late.len() as f64 / case.sources as f64).max(1.0);
    let within = sync_time(&client.errors, 1e-3, f64::INFINITY) as f64;
    Outcome {
        rms: s.rms,
        max: s.max,
        requests_per_day: sent * DAY / case.duration,
        mean_poll,
        first_update: client.first_update.unwrap_or(f64::INFINITY),
        within_1ms: within,
    }
}

/// One row of the printed comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Case name.
    pub case: String,
    /// What it is.
    pub description: String,
    /// ntpd-lite: median over the seeds of the RMS error, us (start-up: first update, s).
    pub rms_us: f64,
    /// Lowest and highest over the seeds.
    pub rms_us_min: f64,
    /// Highest over the seeds.
    pub rms_us_max: f64,
    /// Median of the largest error, us (start-up: seconds until within 1 ms).
    pub max_us: f64,
    /// chronyd's median RMS, us (start-up: its first update, s).
    pub chronyd_rms_us: f64,
    /// chronyd's median maximum, us (start-up: its time to within 1 ms, s).
    pub chronyd_max_us: f64,
    /// ntpd-lite's RMS over chronyd's.
    pub ratio: f64,
    /// Requests per source per day (median).
    pub requests_per_day: f64,
    /// Mean poll interval over the second half, s (median).
    pub mean_poll_s: f64,
    /// Seeds run.
    pub seeds: u64,
}

/// Runs every case over seeds `1..=seeds`.
pub fn compare(seeds: u64, only: Option<&str>) -> Vec<Row> {
    cases()
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.name))
        .map(|case| row(case, seeds))
        .collect()
}

fn row(case: &Case, seeds: u64) -> Row {
    let scenario = case.scenario();
    let outcomes: Vec<Outcome> = (1..=seeds)
        .map(|seed| outcome(case, &run(&scenario, seed)))
        .collect();
    let pick = |f: fn(&Outcome) -> f64| outcomes.iter().map(f).collect::<Vec<f64>>();
    let (primary, secondary, chronyd) = match case.startup {
        Some((first, within)) => (
            pick(|o| o.first_update),
            pick(|o| o.within_1ms),
            (first, within),
        ),
        None => (pick(|o| o.rms * 1e6), pick(|o| o.max * 1e6), case.chronyd),
    };
    let rms = median(&primary);
    Row {
        case: case.name.to_owned(),
        description: case.description.to_owned(),
        rms_us: rms,
        rms_us_min: primary.iter().copied().fold(f64::INFINITY, f64::min),
        rms_us_max: primary.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        max_us: median(&secondary),
        chronyd_rms_us: chronyd.0,
        chronyd_max_us: chronyd.1,
        ratio: rms / chronyd.0,
        requests_per_day: median(&pick(|o| o.requests_per_day)),
        mean_poll_s: median(&pick(|o| o.mean_poll)),
        seeds,
    }
}

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<4} {:<52} {:>18} {:>10} {:>9} {:>9} {:>6} {:>8} {:>8}\n",
        "case",
        "conditions",
        "ntpd-lite RMS (min..max)",
        "max",
        "chronyd",
        "max",
        "ratio",
        "req/day",
        "poll s"
    );
    for r in rows {
        out += &format!(
            "{:<4} {:<52} {:>7.1} ({:>5.1}..{:>6.1}) {:>10.1} {:>9.2} {:>9.1} {:>6.2} {:>8.0} {:>8.0}\n",
            r.case,
            r.description,
            r.rms_us,
            r.rms_us_min,
            r.rms_us_max,
            r.max_us,
            r.chronyd_rms_us,
            r.chronyd_max_us,
            r.ratio,
            r.requests_per_day,
            r.mean_poll_s
        );
    }
    out
}
