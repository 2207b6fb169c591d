//! Leap seconds in simulated time: a stratum-1 server that knows the leap from the leap-seconds
//! file, three stratum-2 servers and a stratum-3 client that learn it by vote, at default poll
//! intervals on 20 ppm oscillators, across 2016-12-31 23:59:60 UTC (or a deleted second), in each
//! mode; and a lone server announcing a leap nobody else announces.

use ntp_proto::{LeapConfig, LeapFile, LeapMode, NtpDuration, NtpTimestamp, PollInterval};
use sha1::{Digest, Sha1};

use std::path::Path;

use super::clock::ClockSpec;
use super::net::{Link, OneWay};
use super::world::{NodeSpec, RunResult, Scenario, SourceRef, run, uniform};

/// 2017-01-01 00:00:00 UTC in NTP seconds: 2016-12-31 23:59:60 was inserted just before it.
pub const LEAP_2016: u32 = 3_692_217_600;
/// tzdata's leap-seconds list, as the repository keeps it.
pub const LIST: &str = include_str!("../../../ntp-proto/tests/vectors/leap-seconds.list");

/// Which leap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// 2016-12-31 23:59:60, from tzdata's list.
    Insert,
    /// A second deleted at the same midnight, from a list written by [`list`].
    Delete,
}

/// One leap scenario.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Case {
    /// Short name.
    pub name: &'static str,
    /// Insert or delete.
    pub kind: Kind,
    /// The stratum-1 server's mode.
    pub primary: LeapMode,
    /// The stratum-2 and stratum-3 nodes' mode.
    pub others: LeapMode,
}

/// Every mode, and the deleted second.
pub const CASES: [Case; 5] = [
    Case {
        name: "step",
        kind: Kind::Insert,
        primary: LeapMode::Step,
        others: LeapMode::Step,
    },
    Case {
        name: "slew",
        kind: Kind::Insert,
        primary: LeapMode::Slew,
        others: LeapMode::Slew,
    },
    Case {
        name: "smear",
        kind: Kind::Insert,
        primary: LeapMode::Smear,
        others: LeapMode::Smear,
    },
    Case {
        name: "ignore",
        kind: Kind::Insert,
        primary: LeapMode::Step,
        others: LeapMode::Ignore,
    },
    Case {
        name: "delete",
        kind: Kind::Delete,
        primary: LeapMode::Step,
        others: LeapMode::Step,
    },
];

/// A leap-seconds list with these (NTP seconds, TAI - UTC) entries, expiring at `expires`, and
/// the hash the IETF format asks for.
pub fn list(entries: &[(u32, i32)], expires: u32) -> String {
    let mut hasher = Sha1::new();
    let update = 3_676_924_800u32; // 2016-07-06, as tzdata's list of the time
    hasher.update(format!("{update}{expires}").as_bytes());
    let mut text = format!("#$\t{update}\n#@\t{expires}\n");
    for (time, offset) in entries {
        hasher.update(format!("{time}{offset}").as_bytes());
        text.push_str(&format!("{time}\t{offset}\t# leap\n"));
    }
    let hash = hasher.finalize();
    let words: Vec<String> = hash
        .chunks(4)
        .map(|w| format!("{:08x}", u32::from_be_bytes([w[0], w[1], w[2], w[3]])))
        .collect();
    text.push_str(&format!("#h\t{}\n", words.join(" ")));
    text
}

/// The file the stratum-1 server reads.
pub fn file(kind: Kind) -> LeapFile {
    let text = match kind {
        Kind::Insert => LIST.to_owned(),
        Kind::Delete => list(&[(3_644_697_600, 36), (LEAP_2016, 35)], 3_707_596_800),
    };
    LeapFile::parse(&text).expect("a valid list")
}

/// Seconds of simulated time before the leap, and in all.
pub fn span(case: &Case) -> (f64, f64) {
    if case.primary == LeapMode::Smear {
        (14.0 * 3600.0, 28.0 * 3600.0)
    } else {
        (6.0 * 3600.0, 12.0 * 3600.0)
    }
}

fn leap_config(mode: LeapMode) -> LeapConfig {
    LeapConfig {
        mode,
        ..LeapConfig::default()
    }
}

/// The hierarchy of `case`: node 0 the stratum-1 server, 1-3 stratum 2, 4 stratum 3.
pub fn scenario(case: &Case) -> Scenario {
    let (before, duration) = span(case);
    let mut primary = NodeSpec::reference("stratum1", 0.0);
    primary.sync.discipline.leap = leap_config(case.primary);
    primary.leap_file = Some(file(case.kind));
    let mut nodes = vec![primary];
    for (i, ppm) in [(1, 20.0), (2, -15.0), (3, 35.0)] {
        let mut node = NodeSpec::client(
            &format!("stratum2-{i}"),
            ClockSpec {
                offset: 0.05,
                freq_ppm: ppm,
                wander: 1e-9,
            },
            vec![SourceRef::Node(0)],
        );
        node.sync.discipline.leap = leap_config(case.others);
        nodes.push(node);
    }
    let mut client = NodeSpec::client(
        "stratum3",
        ClockSpec {
            offset: -0.1,
            freq_ppm: -25.0,
            wander: 1e-9,
        },
        (1..=3).map(SourceRef::Node).collect(),
    );
    client.sync.discipline.leap = leap_config(case.others);
    nodes.push(client);
    for node in &mut nodes[1..] {
        node.source_config.iburst = true;
        node.source_config.max_poll = PollInterval::new(10);
    }
    Scenario {
        name: format!("leap-{}", case.name),
        duration,
        epoch: NtpTimestamp::from_parts(LEAP_2016, 0) - NtpDuration::from_seconds_f64(before),
        nodes,
        names: Vec::new(),
        delay: uniform(Link::symmetric(OneWay::exponential(0.000_5, 0.000_1))),
        duplicate: 0.0,
        ipv6: false,
    }
}

/// What a UTC clock following `mode` should read minus true (leap-free) time, `into` seconds
/// after the leap (negative before it), for a leap of `kind`.
pub fn expected(mode: LeapMode, kind: Kind, into: f64) -> f64 {
    let whole = match kind {
        Kind::Insert => -1.0,
        Kind::Delete => 1.0,
    };
    let defaults = LeapConfig::default();
    let fraction = match mode {
        LeapMode::Step | LeapMode::Ignore => f64::from(u8::from(into >= 0.0)),
        // The simulated clocks slew at the discipline's default limit; a leap slew uses half.
        LeapMode::Slew => (into * defaults.slew_rate).clamp(0.0, 1.0),
        LeapMode::Smear => {
            let half = defaults.smear.to_seconds_f64() / 2.0;
            ((into + half) / (2.0 * half)).clamp(0.0, 1.0)
        }
    };
    whole * fraction
}

/// One node's error against the clock it should be (the UTC clock of its mode), per second.
pub fn errors_against_mode(case: &Case, node: usize, result: &RunResult) -> Vec<(f64, f64)> {
    let (before, _) = span(case);
    // Every node follows the primary's curve: a smear reaches its clients as the time itself.
    let mode = if case.primary == LeapMode::Smear {
        LeapMode::Smear
    } else if case.others == LeapMode::Slew {
        LeapMode::Slew
    } else {
        LeapMode::Step
    };
    result.nodes[node]
        .errors
        .iter()
        .enumerate()
        .map(|(i, error)| {
            let into = i as f64 - before;
            (into, error - expected(mode, case.kind, into))
        })
        .collect()
}

/// Runs `case` with `seed`.
pub fn run_case(case: &Case, seed: u64) -> (Scenario, RunResult) {
    let scenario = scenario(case);
    let result = run(&scenario, seed);
    (scenario, result)
}

/// A stratum-2 client of three servers, one of which announces a leap nobody else announces
/// (its own list says so): the vote outvotes it, and after midnight it is a falseticker.
pub fn lone_announcer() -> Scenario {
    let mut nodes = vec![
        NodeSpec::reference("honest-1", 0.0),
        NodeSpec::reference("honest-2", 0.0),
    ];
    let mut liar = NodeSpec::reference("announcer", 0.0);
    liar.leap_file = Some(
        LeapFile::parse(&list(
            &[(3_644_697_600, 36), (LEAP_2016, 37)],
            3_707_596_800,
        ))
        .expect("valid"),
    );
    nodes.push(liar);
    let mut client = NodeSpec::client(
        "client",
        ClockSpec {
            offset: 0.05,
            freq_ppm: 20.0,
            wander: 1e-9,
        },
        (0..3).map(SourceRef::Node).collect(),
    );
    client.source_config.iburst = true;
    nodes.push(client);
    // Neither honest server has a list: only the announcer knows of a leap.
    Scenario {
        name: "leap-lone-announcer".to_owned(),
        duration: 6.0 * 3600.0,
        epoch: NtpTimestamp::from_parts(LEAP_2016, 0) - NtpDuration::from_seconds(3 * 3600),
        nodes,
        names: Vec::new(),
        delay: uniform(Link::symmetric(OneWay::exponential(0.000_5, 0.000_1))),
        duplicate: 0.0,
        ipv6: false,
    }
}

/// The stratum-1 server's clock minus leap-free true time in the step, slew and smear cases,
/// one SVG zoomed on the leap (120 s) and one over the whole smear (28 h).
pub fn plots(dir: &Path) -> Result<(), String> {
    let mut zoom = Vec::new();
    let mut day = Vec::new();
    for case in CASES
        .iter()
        .filter(|c| matches!(c.name, "step" | "slew" | "smear"))
    {
        let (_, result) = run_case(case, 1);
        let (before, _) = span(case);
        let errors = &result.nodes[0].errors;
        let label = format!("{} mode", case.name);
        zoom.push((
            label.clone(),
            errors
                .iter()
                .enumerate()
                .map(|(i, e)| (i as f64 - before, *e))
                .filter(|(t, _)| t.abs() <= 60.0)
                .map(|(t, e)| (t + 60.0, e))
                .collect(),
        ));
        // Over the day, centred the same way for every mode (the smear run is the longest).
        day.push((
            label,
            errors
                .iter()
                .enumerate()
                .step_by(60)
                .map(|(i, e)| ((i as f64 - before) / 3600.0 + 14.0, *e))
                .collect(),
        ));
    }
    let chart = |title: &str, x: (&'static str, f64)| crate::plot::LineChart {
        title: title.to_owned(),
        x,
        y: ("clock minus leap-free time (s)", 1.25),
        stroke: 2,
    };
    chart(
        "Served time around 2016-12-31 23:59:60 UTC (leap at 60 s)",
        ("seconds", 120.0),
    )
    .draw(&zoom, &dir.join("leap-second.svg"))?;
    chart(
        "Served time over the 24 h smear window (leap at 14 h)",
        ("hours", 28.0),
    )
    .draw(&day, &dir.join("leap-smear.svg"))
}
