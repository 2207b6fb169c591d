//! chrony's own simulation tests (`test/simulation` in chrony's repository, run under clknetsim),
//! ported: each scenario with chrony's conditions expressed in this simulator's model, and the
//! checks of chrony's `test.common` with chrony's limits. The numbers are the contract.
//!
//! How chrony's configuration maps onto ours (docs/chrony-scenarios.md has the table):
//! - chrony's default client has no `makestep`, so it never steps: `step_threshold` is
//!   [`NtpDuration::MAX`] and there is no panic threshold; `makestep T N` sets the step threshold
//!   to T (our core has no limit on the number of updates that may step).
//! - minpoll 6, maxpoll 10, maxslewrate 83333 ppm and maxdrift 500000 ppm are our defaults;
//!   `iburst`, `minpoll`/`maxpoll`, `minsources` and `maxsources` are [`SourceConfig::iburst`], its
//!   poll limits, [`SyncConfig::min_sources`] and [`NameKind::Pool`]; a drift file is
//!   [`NodeSpec::initial_frequency_ppm`].
//! - Each way, `base_delay + jitter * Exp(1)`; rules over time, nodes and packet counts are
//!   [`DelayFn`] closures. `time_offset` is the client's clock minus true time, `freq_offset` its
//!   frequency error, `wander` its random walk; the first `falsetickers` servers are 1 s, 2 s, ...
//!   ahead; `client_step` is [`NodeSpec::external_steps`].
//!
//! How the checks measure (clknetsim): the error against true time and the clock's rate (slews
//! included, steps not) once per true second; the sync time is the first second from which both
//! stay within `time_max_limit` and `freq_max_limit` to the end; maxima and RMS (about zero) over
//! the seconds after `max_sync_time`.
//!
//! One deliberate difference: chrony's lower bound on the sync time (`min_sync_time`) encodes how
//! fast chronyd converges (it waits for three samples); our core updates the clock from the first
//! sample and may converge earlier by design. Syncing early is reported, never failed.

use std::fmt;
use std::sync::Arc;

use ntp_proto::{
    DisciplineConfig, NameKind, NtpDuration, NtpTimestamp, PollInterval, SourceConfig, SyncConfig,
};
use serde::Serialize;

use super::clock::ClockSpec;
use super::measure::{frequencies, intervals, spread, sync_time_of};
use super::net::{Direction, Link, OneWay, exponential};
use super::world::{
    DelayFn, NodeResult, NodeSpec, PacketContext, RunResult, Scenario, SourceRef, run, uniform,
};

/// The seeds every scenario runs with.
pub const SEEDS: [u64; 3] = [1, 2, 3];

/// 2010-01-01 00:00:00 UTC, clknetsim's default start date, as an NTP timestamp.
pub const EPOCH_2010: NtpTimestamp = NtpTimestamp::from_parts(3_471_292_800, 0);

/// 500 s before the NTP era rolls over (2036-02-07 06:28:16 UTC): 008-ntpera's start.
pub const EPOCH_2036_ROLLOVER: NtpTimestamp = NtpTimestamp::from_parts(u32::MAX - 499, 0);

/// chrony's pass limits (test.common).
#[derive(Clone, Copy, PartialEq, Debug, Serialize)]
pub struct Limits {
    /// `time_max_limit`, s.
    pub time_max: f64,
    /// `freq_max_limit`, fraction.
    pub freq_max: f64,
    /// `time_rms_limit`, s.
    pub time_rms: f64,
    /// `freq_rms_limit`, fraction.
    pub freq_rms: f64,
    /// `min_sync_time`, s (reported, not enforced: see the module doc).
    pub min_sync: f64,
    /// `max_sync_time`, s: also where the statistics start.
    pub max_sync: f64,
}

impl Limits {
    /// test.common's defaults.
    pub const DEFAULT: Self = Self {
        time_max: 1e-3,
        freq_max: 5e-4,
        time_rms: 3e-4,
        freq_rms: 1e-5,
        min_sync: 120.0,
        max_sync: 210.0,
    };
}

/// test.common's variables that shape a run, and the client options of chrony.conf.
#[derive(Clone)]
pub struct Setup {
    /// `limit`: the run's length, s.
    pub limit: f64,
    /// `time_offset`: every client's clock minus true time at the start, s.
    pub time_offset: f64,
    /// `freq_offset`: the frequency error of clients and stratum-2+ servers (fraction).
    pub freq_offset: f64,
    /// `base_delay`: the fixed one-way delay, s.
    pub base_delay: f64,
    /// `jitter`: the mean of the exponential part of the one-way delay, s.
    pub jitter: f64,
    /// `wander`: the frequency's random walk per second (fraction).
    pub wander: f64,
    /// `server_strata`.
    pub server_strata: usize,
    /// `servers` per stratum.
    pub servers: usize,
    /// `clients`.
    pub clients: usize,
    /// `falsetickers`: the first ones of stratum 1 are 1 s, 2 s, ... ahead.
    pub falsetickers: usize,
    /// `client_start`, s.
    pub client_start: f64,
    /// `client_step`: steps of the clients' clocks by someone else, (true time, seconds).
    pub client_step: Vec<(f64, f64)>,
    /// The options of the clients' `server` lines.
    pub client_source: SourceConfig,
    /// `makestep` threshold, s; `None` (chrony's default) never steps.
    pub makestep: Option<f64>,
    /// `minsources`.
    pub minsources: usize,
    /// A drift file's frequency correction, ppm (positive makes the clock run faster).
    pub driftfile_ppm: Option<f64>,
    /// `dns`: nodes name their servers `node<n>.net1.clk`.
    pub dns: bool,
    /// `client_server_conf`: replaces the clients' generated `server` lines.
    pub client_server_conf: Option<Vec<SourceRef>>,
    /// Names besides `node<n>.net1.clk` (pools), with the nodes they resolve to.
    pub names: Vec<(String, Vec<usize>)>,
    /// A delay rule replacing `base_delay + jitter * Exp(1)`.
    pub delay: Option<DelayFn>,
    /// `ip_family=6`.
    pub ipv6: bool,
    /// NTP time at true time 0 (`CLKNETSIM_START_DATE`).
    pub epoch: NtpTimestamp,
    /// Pass limits.
    pub limits: Limits,
    /// `client_min_mean_out_interval`, s.
    pub min_mean_out: f64,
    /// `client_max_min_out_interval`, s.
    pub max_min_out: f64,
}

impl fmt::Debug for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setup")
            .field("limit", &self.limit)
            .field("servers", &self.servers)
            .field("clients", &self.clients)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            limit: 10_000.0,
            time_offset: 0.1,
            freq_offset: 1e-4,
            base_delay: 1e-4,
            jitter: 1e-4,
            wander: 1e-9,
            server_strata: 1,
            servers: 1,
            clients: 1,
            falsetickers: 0,
            client_start: 0.0,
            client_step: Vec::new(),
            client_source: SourceConfig::default(),
            makestep: None,
            minsources: 1,
            driftfile_ppm: None,
            dns: false,
            client_server_conf: None,
            names: Vec::new(),
            delay: None,
            ipv6: false,
            epoch: EPOCH_2010,
            limits: Limits::DEFAULT,
            min_mean_out: 0.0,
            max_min_out: f64::INFINITY,
        }
    }
}

/// chrony's selection and discipline options as ours: never step unless `makestep` says so.
pub fn chrony_sync(makestep: Option<f64>, minsources: usize) -> SyncConfig {
    SyncConfig {
        min_sources: minsources,
        discipline: DisciplineConfig {
            step_threshold: makestep.map_or(NtpDuration::MAX, NtpDuration::from_seconds_f64),
            panic_threshold: None,
            ..DisciplineConfig::default()
        },
        ..SyncConfig::default()
    }
}

/// chrony's `(+ base_delay (* jitter (exponential)))`, one way.
pub fn delay_of(base: f64, jitter: f64) -> DelayFn {
    uniform(Link::symmetric(OneWay::exponential(base, jitter)))
}

impl Setup {
    /// Node indices of the clients (the last `clients` nodes).
    pub fn client_nodes(&self) -> std::ops::Range<usize> {
        let first = self.servers * self.server_strata;
        first..first + self.clients
    }

    fn reference_to(&self, node: usize) -> SourceRef {
        if self.dns {
            SourceRef::Name(format!("node{}.net1.clk", node + 1), NameKind::Server)
        } else {
            SourceRef::Node(node)
        }
    }

    fn drifting(&self, offset: f64) -> ClockSpec {
        ClockSpec {
            offset,
            freq_ppm: self.freq_offset * 1e6,
            wander: self.wander,
        }
    }

    /// The nodes of test.common: stratum-1 servers (perfect clocks, falsetickers ahead), higher
    /// strata polling every server of the stratum above, then the clients.
    pub fn scenario(&self, name: &str) -> Scenario {
        let mut nodes: Vec<NodeSpec> = (0..self.servers)
            .map(|i| {
                let offset = if i < self.falsetickers {
                    (i + 1) as f64
                } else {
                    0.0
                };
                NodeSpec::reference(&format!("node{}", i + 1), offset)
            })
            .collect();
        for stratum in 2..=self.server_strata {
            let upstream = (stratum - 2) * self.servers..(stratum - 1) * self.servers;
            for _ in 0..self.servers {
                let mut server = NodeSpec::client(
                    &format!("node{}", nodes.len() + 1),
                    self.drifting(0.0),
                    upstream.clone().map(|n| self.reference_to(n)).collect(),
                );
                server.sync = chrony_sync(None, 1);
                nodes.push(server);
            }
        }
        let top = (self.server_strata - 1) * self.servers..self.server_strata * self.servers;
        for _ in 0..self.clients {
            let sources = self
                .client_server_conf
                .clone()
                .unwrap_or_else(|| top.clone().map(|n| self.reference_to(n)).collect());
            let mut client = NodeSpec::client(
                &format!("node{}", nodes.len() + 1),
                self.drifting(self.time_offset),
                sources,
            );
            client.source_config = self.client_source;
            client.sync = chrony_sync(self.makestep, self.minsources);
            client.start = self.client_start;
            client.external_steps.clone_from(&self.client_step);
            client.initial_frequency_ppm = self.driftfile_ppm;
            nodes.push(client);
        }
        let mut names: Vec<(String, Vec<usize>)> = (0..nodes.len())
            .map(|n| (format!("node{}.net1.clk", n + 1), vec![n]))
            .collect();
        names.extend(self.names.iter().cloned());
        Scenario {
            name: name.to_owned(),
            duration: self.limit,
            epoch: self.epoch,
            nodes,
            names,
            delay: self
                .delay
                .clone()
                .unwrap_or_else(|| delay_of(self.base_delay, self.jitter)),
            duplicate: 0.0,
            ipv6: self.ipv6,
        }
    }
}

/// Which log lines a message check counts (chrony's messages, as our system events).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogEvent {
    /// chrony's `Selected source`: our `SyncGained` or `PeerChanged`.
    Selected,
    /// chrony's `Can't synchronise: ...`: our `SyncLost`.
    Unsynchronised,
}

impl LogEvent {
    fn matches(self, line: &str) -> bool {
        match self {
            Self::Selected => line.starts_with("SyncGained") || line.starts_with("PeerChanged"),
            Self::Unsynchronised => line.starts_with("SyncLost"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Selected => "'Selected source' (SyncGained/PeerChanged)",
            Self::Unsynchronised => "'Can't synchronise' (SyncLost)",
        }
    }
}

/// One check a scenario asserts, and whether chrony's test expects it to pass.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Expect {
    /// `check_sync` passes (true) or fails (false).
    Sync(bool),
    /// `check_source_selection` passes or fails.
    Selection(bool),
    /// `check_packet_interval` passes or fails.
    PacketInterval(bool),
    /// `check_log_messages`: the clients' logs hold `min..=max` such lines.
    Log(LogEvent, usize, usize),
    /// chrony's `Can't synchronise: no majority`: every source was judged a falseticker.
    NoMajority,
    /// Measurements (requests, as none is lost) from each server in `min..=max`.
    RequestsEach(u64, u64),
    /// Measurements from all servers together in `min..=max`.
    RequestsTotal(u64, u64),
}

/// One ported scenario or sub-case.
#[derive(Clone, Debug)]
pub struct Case {
    /// chrony's test name and the sub-case.
    pub name: String,
    /// Its conditions.
    pub setup: Setup,
    /// What chrony asserts.
    pub expect: Vec<Expect>,
}

/// The outcome of one check.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether chrony's test expects it to pass.
    pub expected: bool,
    /// Whether it passed.
    pub passed: bool,
    /// The measured figures behind it.
    pub detail: String,
}

impl Check {
    /// The check came out as chrony's test expects.
    pub fn ok(&self) -> bool {
        self.passed == self.expected
    }
}

/// A client's figures, measured as clknetsim does.
#[derive(Clone, Copy, PartialEq, Debug, Serialize)]
pub struct Figures {
    /// First second (true time) from which error and rate stay within the max limits.
    pub sync_time: f64,
    /// Largest |error| after `max_sync_time`, s.
    pub max_offset: f64,
    /// RMS error after `max_sync_time`, s.
    pub rms_offset: f64,
    /// Largest |rate error| after `max_sync_time` (fraction).
    pub max_freq: f64,
    /// RMS rate error after `max_sync_time` (fraction).
    pub rms_freq: f64,
    /// Shortest interval between requests, s.
    pub min_out: f64,
    /// Mean interval between requests, s.
    pub mean_out: f64,
    /// Mean interval between arriving replies, s.
    pub mean_in: f64,
}

impl Figures {
    /// Measures node `result`, which started at true time `start`, against `limits`.
    pub fn of(result: &NodeResult, start: f64, limits: &Limits) -> Self {
        let errors = &result.errors;
        let freqs = frequencies(&result.unstepped);
        let synced = sync_time_of(errors, &freqs, limits.time_max, limits.freq_max);
        // clknetsim resets its statistics at max_sync_time: the samples after it count.
        let first = (limits.max_sync - start + 1.0).max(0.0) as usize;
        let offsets = spread(errors.get(first..).unwrap_or(&[]));
        let rates = spread(freqs.get(first..).unwrap_or(&[]));
        let (min_out, mean_out) = intervals(&result.sent_at);
        let (_, mean_in) = intervals(&result.received_at);
        Self {
            sync_time: start + synced as f64,
            max_offset: offsets.max,
            rms_offset: offsets.rms,
            max_freq: rates.max,
            rms_freq: rates.rms,
            min_out,
            mean_out,
            mean_in,
        }
    }

    /// The worse of two clients' figures, figure by figure.
    fn worst(self, other: Self) -> Self {
        Self {
            sync_time: self.sync_time.max(other.sync_time),
            max_offset: self.max_offset.max(other.max_offset),
            rms_offset: self.rms_offset.max(other.rms_offset),
            max_freq: self.max_freq.max(other.max_freq),
            rms_freq: self.rms_freq.max(other.rms_freq),
            min_out: self.min_out.min(other.min_out),
            mean_out: self.mean_out.min(other.mean_out),
            mean_in: self.mean_in.min(other.mean_in),
        }
    }
}

/// clknetsim's `check_stat`: `value` is at most `max` (with its 1e-6 relative tolerance).
fn at_most(value: f64, max: f64) -> bool {
    value * (1.0 - 1e-6) <= max
}

/// `value` is at least `min`.
fn at_least(value: f64, min: f64) -> bool {
    value * (1.0 + 1e-6) >= min
}

/// One run of one case: its figures and checks.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The case.
    pub case: String,
    /// The seed.
    pub seed: u64,
    /// chrony's limits for it.
    pub limits: Limits,
    /// The worst client's figures.
    pub figures: Figures,
    /// Synchronized before `min_sync_time` (allowed; see the module doc).
    pub early: bool,
    /// Every check chrony asserts, with its outcome.
    pub checks: Vec<Check>,
}

impl Report {
    /// Every check came out as chrony's test expects.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(Check::ok)
    }

    /// One line: verdict, sync time and window, offsets and rates against their limits.
    pub fn summary(&self) -> String {
        let (f, l) = (&self.figures, &self.limits);
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| !c.ok())
            .map(|c| c.name.as_str())
            .collect();
        format!(
            "{} seed {}: {} sync {:.0} s [{:.0}, {:.0}]{} | offset max {} (<= {}) rms {} (<= {}) | freq max {} (<= {}) rms {} (<= {}) | out min {:.2} s mean {:.1} s{}",
            self.case,
            self.seed,
            if self.ok() { "PASS" } else { "FAIL" },
            f.sync_time,
            l.min_sync,
            l.max_sync,
            if self.early { " early" } else { "" },
            seconds(f.max_offset),
            seconds(l.time_max),
            seconds(f.rms_offset),
            seconds(l.time_rms),
            ppm(f.max_freq),
            ppm(l.freq_max),
            ppm(f.rms_freq),
            ppm(l.freq_rms),
            f.min_out,
            f.mean_out,
            if failed.is_empty() {
                String::new()
            } else {
                format!(" | not as expected: {}", failed.join(", "))
            }
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary())?;
        for check in &self.checks {
            writeln!(
                f,
                "  {} {}: expected to {}, {}: {}",
                if check.ok() { "ok  " } else { "FAIL" },
                check.name,
                if check.expected { "pass" } else { "fail" },
                if check.passed { "passed" } else { "failed" },
                check.detail
            )?;
        }
        Ok(())
    }
}

/// A duration with a readable unit.
pub fn seconds(value: f64) -> String {
    let a = value.abs();
    if !a.is_finite() {
        format!("{value}")
    } else if a >= 1e4 {
        format!("{value:.4e} s")
    } else if a >= 1.0 {
        format!("{value:.3} s")
    } else if a >= 1e-3 {
        format!("{:.3} ms", value * 1e3)
    } else {
        format!("{:.2} us", value * 1e6)
    }
}

/// A frequency (fraction) in ppm.
pub fn ppm(value: f64) -> String {
    let ppm = value * 1e6;
    if ppm.abs() >= 100.0 {
        format!("{ppm:.0} ppm")
    } else if ppm.abs() >= 1.0 {
        format!("{ppm:.2} ppm")
    } else {
        format!("{ppm:.3} ppm")
    }
}

/// Runs `case` with `seed` and checks it.
pub fn evaluate(case: &Case, seed: u64) -> Report {
    let result = run(&case.setup.scenario(&case.name), seed);
    judge(case, seed, &result)
}

/// Checks a finished run of `case`.
pub fn judge(case: &Case, seed: u64, result: &RunResult) -> Report {
    let setup = &case.setup;
    let limits = setup.limits;
    let clients: Vec<(usize, Figures)> = setup
        .client_nodes()
        .map(|n| {
            (
                n,
                Figures::of(&result.nodes[n], setup.client_start, &limits),
            )
        })
        .collect();
    let figures = clients
        .iter()
        .map(|(_, f)| *f)
        .reduce(Figures::worst)
        .unwrap_or_else(|| Figures::of(&NodeResult::default(), 0.0, &limits));
    let checks = case
        .expect
        .iter()
        .map(|expect| check(*expect, setup, result, &clients))
        .collect();
    Report {
        case: case.name.clone(),
        seed,
        limits,
        figures,
        early: figures.sync_time < limits.min_sync,
        checks,
    }
}

fn check(expect: Expect, setup: &Setup, result: &RunResult, clients: &[(usize, Figures)]) -> Check {
    let logs = || clients.iter().map(|(n, _)| &result.nodes[*n].log);
    let (name, expected, passed, detail) = match expect {
        Expect::Sync(expected) => {
            let (passed, detail) = check_sync(&setup.limits, clients);
            ("sync".to_owned(), expected, passed, detail)
        }
        Expect::Selection(expected) => {
            let (passed, detail) = check_source_selection(logs());
            ("source selection".to_owned(), expected, passed, detail)
        }
        Expect::PacketInterval(expected) => {
            let (passed, detail) = check_packet_interval(setup, result);
            ("packet interval".to_owned(), expected, passed, detail)
        }
        Expect::Log(event, min, max) => {
            let counts: Vec<usize> = logs()
                .map(|log| log.iter().filter(|(_, l)| event.matches(l)).count())
                .collect();
            let passed = counts.iter().all(|c| (min..=max).contains(c));
            (
                format!("log {}", event.label()),
                true,
                passed,
                format!("{counts:?} lines, allowed {min}..={max}"),
            )
        }
        Expect::NoMajority => {
            let (passed, detail) = check_no_majority(logs());
            ("no majority".to_owned(), true, passed, detail)
        }
        Expect::RequestsEach(min, max) | Expect::RequestsTotal(min, max) => {
            let each = matches!(expect, Expect::RequestsEach(..));
            let counts: Vec<Vec<u64>> = clients
                .iter()
                .map(|(n, _)| result.nodes[*n].requests_to.values().copied().collect())
                .collect();
            let passed = counts.iter().all(|c| {
                if each {
                    c.len() == setup.servers && c.iter().all(|k| (min..=max).contains(k))
                } else {
                    (min..=max).contains(&c.iter().sum())
                }
            });
            let what = if each { "each server" } else { "all servers" };
            (
                format!("measurements from {what}"),
                true,
                passed,
                format!("requests per server {counts:?}, allowed {min}..={max}"),
            )
        }
    };
    Check {
        name,
        expected,
        passed,
        detail,
    }
}

/// `check_sync` for every client: synchronized by `max_sync_time`, then within the max and RMS
/// limits of error and rate.
fn check_sync(limits: &Limits, clients: &[(usize, Figures)]) -> (bool, String) {
    let mut passed = true;
    let mut details = Vec::new();
    for (node, f) in clients {
        let ok = at_most(f.sync_time, limits.max_sync)
            && at_most(f.max_offset, limits.time_max)
            && at_most(f.max_freq, limits.freq_max)
            && at_most(f.rms_offset, limits.time_rms)
            && at_most(f.rms_freq, limits.freq_rms);
        passed &= ok;
        details.push(format!(
            "node{}: sync {:.0} s (window {:.0}..{:.0}{}), offset max {} rms {}, freq max {} rms {}",
            node + 1,
            f.sync_time,
            limits.min_sync,
            limits.max_sync,
            if f.sync_time < limits.min_sync {
                ", early"
            } else {
                ""
            },
            seconds(f.max_offset),
            seconds(f.rms_offset),
            ppm(f.max_freq),
            ppm(f.rms_freq)
        ));
    }
    (passed, details.join("; "))
}

/// `check_source_selection`: a source was selected, and synchronization was never lost.
fn check_source_selection<'a>(
    logs: impl Iterator<Item = &'a Vec<(f64, String)>>,
) -> (bool, String) {
    let mut passed = true;
    let mut details = Vec::new();
    for log in logs {
        let selected = log.iter().find(|(_, l)| LogEvent::Selected.matches(l));
        let lost = log
            .iter()
            .find(|(_, l)| LogEvent::Unsynchronised.matches(l));
        passed &= selected.is_some() && lost.is_none();
        details.push(format!(
            "selected {}, lost {}",
            selected.map_or("never".to_owned(), |(t, _)| format!("at {t:.1} s")),
            lost.map_or("never".to_owned(), |(t, _)| format!("at {t:.1} s")),
        ));
    }
    (passed, details.join("; "))
}

/// chrony's "no majority": never synchronized, and every source was judged a falseticker.
fn check_no_majority<'a>(logs: impl Iterator<Item = &'a Vec<(f64, String)>>) -> (bool, String) {
    let mut passed = true;
    let mut details = Vec::new();
    for log in logs {
        let sources = log.iter().filter(|(_, l)| l.contains(" added: ")).count();
        let mut falsetickers: Vec<&str> = log
            .iter()
            .filter(|(_, l)| l.ends_with(" falseticker"))
            .map(|(_, l)| l.as_str())
            .collect();
        falsetickers.sort_unstable();
        falsetickers.dedup();
        let synced = log.iter().any(|(_, l)| LogEvent::Selected.matches(l));
        passed &= !synced && sources > 0 && falsetickers.len() == sources;
        details.push(format!(
            "{} of {sources} sources judged falsetickers, synchronized: {synced}",
            falsetickers.len()
        ));
    }
    (passed, details.join("; "))
}

/// `check_packet_interval` for every node that polls: mean intervals at least 0.1 s; for clients
/// also `client_min_mean_out_interval <= mean out <= mean in + 10 * jitter`, and a shortest
/// request interval of at least 1.8 s with one server (the burst spacing) or 0.18 s with more
/// (chrony's sampling separation), at most `client_max_min_out_interval`. Servers answer every
/// request that reaches them here, so their own checks hold by construction.
fn check_packet_interval(setup: &Setup, result: &RunResult) -> (bool, String) {
    let clients = setup.client_nodes();
    let min_interval = if setup.servers > 1 { 0.18 } else { 1.8 };
    let mut passed = true;
    let mut details = Vec::new();
    for (index, node) in result.nodes.iter().enumerate() {
        if node.sent_at.is_empty() {
            continue;
        }
        let (min_out, mean_out) = intervals(&node.sent_at);
        let (_, mean_in) = intervals(&node.received_at);
        let mut ok = at_least(mean_in, 0.1) && at_least(mean_out, 0.1);
        if clients.contains(&index) {
            ok &= at_least(mean_out, setup.min_mean_out)
                && at_most(mean_out, mean_in + 10.0 * setup.jitter)
                && at_least(min_out, min_interval)
                && at_most(min_out, setup.max_min_out);
            details.push(format!(
                "node{}: out min {min_out:.3} s (>= {min_interval}{}) mean {mean_out:.2} s, in mean {mean_in:.2} s",
                index + 1,
                if setup.max_min_out.is_finite() {
                    format!(", <= {:.1}", setup.max_min_out)
                } else {
                    String::new()
                }
            ));
        }
        passed &= ok;
    }
    (passed, details.join("; "))
}

// ---------------------------------------------------------------------------------------------
// The scenarios, in chrony's numbering. Each returns its sub-cases.

fn case(name: &str, setup: Setup, expect: &[Expect]) -> Case {
    Case {
        name: name.to_owned(),
        setup,
        expect: expect.to_vec(),
    }
}

/// exit (n/a), source_selection, packet_interval, sync: all must pass.
const ALL: [Expect; 3] = [
    Expect::Selection(true),
    Expect::PacketInterval(true),
    Expect::Sync(true),
];

/// Fixed `minpoll p maxpoll p`.
fn fixed_poll(p: i8) -> SourceConfig {
    SourceConfig {
        min_poll: PollInterval::new(p),
        max_poll: PollInterval::new(p),
        ..SourceConfig::default()
    }
}

/// 001-defaults: default test settings.
pub fn s001_defaults() -> Vec<Case> {
    vec![case("001-defaults", Setup::default(), &ALL)]
}

/// 002-largenetwork: three strata of four servers, five clients starting at 2000 s.
pub fn s002_largenetwork() -> Vec<Case> {
    let setup = Setup {
        server_strata: 3,
        servers: 4,
        clients: 5,
        client_start: 2000.0,
        limits: Limits {
            min_sync: 2100.0,
            max_sync: 2300.0,
            time_rms: 5e-4,
            ..Limits::DEFAULT
        },
        ..Setup::default()
    };
    vec![case(
        "002-largenetwork",
        setup,
        &[Expect::PacketInterval(true), Expect::Sync(true)],
    )]
}

/// 003-largefreqoffset: +-0.5 % and +-5 % frequency errors, the time offset chosen so that the
/// error is about zero at the first clock update (130 s).
pub fn s003_largefreqoffset() -> Vec<Case> {
    [-5e-2, -5e-3, 5e-3, 5e-2]
        .into_iter()
        .map(|freq_offset| {
            let setup = Setup {
                freq_offset,
                time_offset: -130.0 * freq_offset,
                limits: Limits {
                    max_sync: 1000.0,
                    ..Limits::DEFAULT
                },
                ..Setup::default()
            };
            case(
                &format!("003-largefreqoffset freq={freq_offset:+e}"),
                setup,
                &ALL,
            )
        })
        .collect()
}

/// 004-largetimeoffset: +-100 s, no makestep: slewed away.
pub fn s004_largetimeoffset() -> Vec<Case> {
    [-100.0, 100.0]
        .into_iter()
        .map(|time_offset| {
            let setup = Setup {
                time_offset,
                limits: Limits {
                    min_sync: 1300.0,
                    max_sync: 1400.0,
                    ..Limits::DEFAULT
                },
                ..Setup::default()
            };
            case(
                &format!("004-largetimeoffset offset={time_offset:+}"),
                setup,
                &ALL,
            )
        })
        .collect()
}

/// 005-externalstep: someone else steps the client's clock: +-100 s once at 150 s (no
/// makestep: slewed back); +-1e5 s and +-1e8 s once at 5000 s with `makestep 1 -1`; +-1e4 s every
/// 500 s with `makestep 1 -1`.
pub fn s005_externalstep() -> Vec<Case> {
    let checks = [Expect::PacketInterval(true), Expect::Sync(true)];
    let mut cases: Vec<Case> = [-100.0, 100.0]
        .into_iter()
        .map(|step| {
            let setup = Setup {
                client_step: vec![(150.0, step)],
                limits: Limits {
                    min_sync: 1500.0,
                    max_sync: 1550.0,
                    ..Limits::DEFAULT
                },
                ..Setup::default()
            };
            case(&format!("005-externalstep once {step:+e}"), setup, &checks)
        })
        .collect();
    cases.extend([-1e8, -1e5, 1e5, 1e8].into_iter().map(|step| {
        let setup = Setup {
            makestep: Some(1.0),
            client_step: vec![(5000.0, step)],
            limits: Limits {
                min_sync: 5120.0,
                max_sync: 6200.0,
                ..Limits::DEFAULT
            },
            ..Setup::default()
        };
        case(
            &format!("005-externalstep makestep {step:+e}"),
            setup,
            &checks,
        )
    }));
    cases.extend([-1e4, 1e4].into_iter().map(|step| {
        let limit = Setup::default().limit;
        let setup = Setup {
            makestep: Some(1.0),
            client_step: (1..)
                .map(|k| f64::from(k) * 500.0)
                .take_while(|t| *t <= limit)
                .map(|t| (t, step))
                .collect(),
            limits: Limits {
                time_max: 2e4,
                time_rms: 8e3,
                ..Limits::DEFAULT
            },
            ..Setup::default()
        };
        case(
            &format!("005-externalstep every500 {step:+e}"),
            setup,
            &checks,
        )
    }));
    cases
}

/// 006-largejitter: 1 s offset, 100 ms mean exponential jitter each way.
pub fn s006_largejitter() -> Vec<Case> {
    let setup = Setup {
        time_offset: 1.0,
        jitter: 0.1,
        limits: Limits {
            time_max: 0.5,
            freq_max: 0.2,
            time_rms: 0.1,
            freq_rms: 5e-3,
            ..Limits::DEFAULT
        },
        ..Setup::default()
    };
    vec![case("006-largejitter", setup, &ALL)]
}

/// 007-largewander: a frequency random walk of 1e-7 per second.
pub fn s007_largewander() -> Vec<Case> {
    let setup = Setup {
        wander: 1e-7,
        limits: Limits {
            time_max: 5e-3,
            freq_max: 5e-3,
            time_rms: 1e-3,
            freq_rms: 1e-4,
            ..Limits::DEFAULT
        },
        ..Setup::default()
    };
    vec![case("007-largewander", setup, &ALL)]
}

/// 008-ntpera: the run starts 500 s before the NTP era rolls over in 2036.
pub fn s008_ntpera() -> Vec<Case> {
    let setup = Setup {
        epoch: EPOCH_2036_ROLLOVER,
        ..Setup::default()
    };
    vec![case("008-ntpera 2036", setup, &ALL)]
}

/// 009-sourceselection: five servers, 1 ms base delay, one to four falsetickers (1 s, 2 s, ...
/// ahead): a minority is outvoted, a majority of liars leaves no majority. Then three servers of
/// which two get the client's requests 1 s late: they must be excluded.
pub fn s009_sourceselection() -> Vec<Case> {
    let mut cases: Vec<Case> = (1..=4)
        .map(|falsetickers| {
            let setup = Setup {
                base_delay: 1e-3,
                servers: 5,
                falsetickers,
                ..Setup::default()
            };
            let expect: &[Expect] = if falsetickers <= 2 {
                &ALL
            } else {
                &[
                    Expect::PacketInterval(true),
                    Expect::Selection(false),
                    Expect::Sync(false),
                    Expect::NoMajority,
                ]
            };
            case(
                &format!("009-sourceselection falsetickers={falsetickers}"),
                setup,
                expect,
            )
        })
        .collect();
    let (base, jitter) = (1e-3, Setup::default().jitter);
    // base_delay = 1e-3 + (to == 2) + (to == 3): nodes 2 and 3 are server indices 1 and 2.
    let delayed: DelayFn = Arc::new(move |p: &PacketContext, rng| {
        let late = p.direction == Direction::Request && (p.server == 1 || p.server == 2);
        Some(base + if late { 1.0 } else { 0.0 } + jitter * exponential(rng))
    });
    let setup = Setup {
        base_delay: base,
        servers: 3,
        delay: Some(delayed),
        ..Setup::default()
    };
    cases.push(case(
        "009-sourceselection asymmetric",
        setup,
        &[Expect::Selection(true), Expect::Sync(true)],
    ));
    cases
}

/// 013-nameserv: servers configured by name.
pub fn s013_nameserv() -> Vec<Case> {
    let setup = Setup {
        dns: true,
        ..Setup::default()
    };
    vec![case("013-nameserv", setup, &ALL)]
}

/// 014-intermittent: packets pass only during the first 1200 s of every 10000 s; then only
/// every 20th request passes.
pub fn s014_intermittent() -> Vec<Case> {
    let Setup {
        base_delay, jitter, ..
    } = Setup::default();
    let window: DelayFn = Arc::new(move |p: &PacketContext, rng| {
        (p.time.rem_euclid(10_000.0) < 1200.0).then(|| base_delay + jitter * exponential(rng))
    });
    let first = Setup {
        limit: 100_000.0,
        delay: Some(window),
        limits: Limits {
            time_max: 0.1,
            freq_max: 1e-2,
            time_rms: 2e-3,
            freq_rms: 2e-5,
            ..Limits::DEFAULT
        },
        ..Setup::default()
    };
    // (from == 2) * (min((sum 1) mod 20, 1) == 1): on the client's link to the server, the n-th
    // packet (n from 1) passes only when n is a multiple of 20.
    let every_20th: DelayFn = Arc::new(move |p: &PacketContext, rng| {
        let dropped = p.direction == Direction::Request && (p.count + 1) % 20 != 0;
        (!dropped).then(|| base_delay + jitter * exponential(rng))
    });
    let second = Setup {
        delay: Some(every_20th),
        limits: Limits {
            time_max: 1e-2,
            freq_max: 1e-4,
            time_rms: 5e-3,
            max_sync: 22_000.0,
            ..first.limits
        },
        ..first.clone()
    };
    vec![
        case(
            "014-intermittent window",
            first,
            &[
                Expect::Sync(true),
                Expect::Log(LogEvent::Unsynchronised, 9, 10),
                Expect::Log(LogEvent::Selected, 9, 10),
            ],
        ),
        case(
            "014-intermittent every20th",
            second,
            &[
                Expect::Sync(true),
                Expect::Log(LogEvent::Unsynchronised, 5, 15),
                Expect::Log(LogEvent::Selected, 5, 15),
            ],
        ),
    ]
}

/// 015-ipv6: IPv6 addresses.
pub fn s015_ipv6() -> Vec<Case> {
    let setup = Setup {
        ipv6: true,
        ..Setup::default()
    };
    vec![case("015-ipv6", setup, &ALL)]
}

/// Poll exponents 101-poll runs (chrony's newer version runs 1..=14).
pub const POLLS_101: std::ops::RangeInclusive<i8> = 1..=14;

/// 101-poll: fixed poll intervals 2^1..2^14 s, no wander, 1 us jitter, `makestep 1e-2 1`,
/// tight limits; the run lasts ten polls and the client syncs at the third.
pub fn s101_poll() -> Vec<Case> {
    POLLS_101
        .map(|p| {
            let interval = 2f64.powi(i32::from(p));
            let setup = Setup {
                wander: 0.0,
                jitter: 1e-6,
                makestep: Some(1e-2),
                client_source: fixed_poll(p),
                limit: 10.0 * interval,
                limits: Limits {
                    time_max: 1e-5,
                    freq_max: 1e-5,
                    time_rms: 5e-6,
                    freq_rms: 5e-6,
                    min_sync: 2.0 * interval,
                    max_sync: (interval * 21.0 / 10.0).floor() + 1.0,
                },
                max_min_out: 1.1 * interval,
                min_mean_out: 0.99 * interval,
                ..Setup::default()
            };
            case(&format!("101-poll p={p}"), setup, &ALL)
        })
        .collect()
}

/// 102-iburst: iburst, `makestep 1e-2 1`, and a drift file with the right frequency: synced in
/// 4 to 6 s.
pub fn s102_iburst() -> Vec<Case> {
    let setup = Setup {
        makestep: Some(1e-2),
        // chrony's drift file `100 1.0` against freq_offset 1e-4 is the right frequency: our
        // correction for a clock 100 ppm fast is -100 ppm.
        driftfile_ppm: Some(-100.0),
        client_source: SourceConfig {
            iburst: true,
            ..SourceConfig::default()
        },
        limits: Limits {
            min_sync: 4.0,
            max_sync: 6.0,
            ..Limits::DEFAULT
        },
        ..Setup::default()
    };
    vec![case("102-iburst", setup, &ALL)]
}

/// 116-minsources: `minsources 3` with one server must not sync; with three it must.
pub fn s116_minsources() -> Vec<Case> {
    let one = Setup {
        minsources: 3,
        ..Setup::default()
    };
    let three = Setup {
        servers: 3,
        ..one.clone()
    };
    vec![
        case(
            "116-minsources servers=1",
            one,
            &[
                Expect::PacketInterval(true),
                Expect::Selection(false),
                Expect::Sync(false),
            ],
        ),
        case("116-minsources servers=3", three, &ALL),
    ]
}

/// 137-pool, parts 1 to 3: a pool name of three servers at default polling, of six servers at
/// poll 6 (four taken), and with `maxsources 2`; 500 s runs, measurements counted per source.
pub fn s137_pool() -> Vec<Case> {
    let pool = |servers: usize, max_sources: usize, config: SourceConfig| {
        let name = format!(
            "nodes-{}.net1.clk",
            (1..=servers)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("-")
        );
        Setup {
            limit: 500.0,
            servers,
            client_source: config,
            client_server_conf: Some(vec![SourceRef::Name(
                name.clone(),
                NameKind::Pool { max_sources },
            )]),
            names: vec![(name, (0..servers).collect())],
            ..Setup::default()
        }
    };
    let with = |extra: Expect| {
        [
            Expect::Selection(true),
            Expect::PacketInterval(true),
            Expect::Sync(true),
            extra,
        ]
    };
    vec![
        case(
            "137-pool 3 servers",
            pool(3, 4, SourceConfig::default()),
            &with(Expect::RequestsEach(5, 10)),
        ),
        case(
            "137-pool 6 servers poll 6",
            pool(6, 4, fixed_poll(6)),
            &with(Expect::RequestsTotal(30, 35)),
        ),
        case(
            "137-pool 6 servers maxsources 2",
            pool(6, 2, fixed_poll(6)),
            &with(Expect::RequestsTotal(15, 17)),
        ),
    ]
}

/// A scenario: builds its sub-cases.
pub type ScenarioFn = fn() -> Vec<Case>;

/// Every ported scenario, by chrony's test name.
pub fn scenarios() -> Vec<(&'static str, ScenarioFn)> {
    vec![
        ("001-defaults", s001_defaults),
        ("002-largenetwork", s002_largenetwork),
        ("003-largefreqoffset", s003_largefreqoffset),
        ("004-largetimeoffset", s004_largetimeoffset),
        ("005-externalstep", s005_externalstep),
        ("006-largejitter", s006_largejitter),
        ("007-largewander", s007_largewander),
        ("008-ntpera", s008_ntpera),
        ("009-sourceselection", s009_sourceselection),
        ("013-nameserv", s013_nameserv),
        ("014-intermittent", s014_intermittent),
        ("015-ipv6", s015_ipv6),
        ("101-poll", s101_poll),
        ("102-iburst", s102_iburst),
        ("116-minsources", s116_minsources),
        ("137-pool", s137_pool),
    ]
}

/// chrony tests that need options our core does not have: (test, what it needs).
pub const NOT_APPLICABLE: [(&str, &str); 6] = [
    (
        "118-maxdelay",
        "maxdelay, maxdelayratio, maxdelaydevratio, maxdelayquant",
    ),
    ("127-filter", "the filter option (median of n samples)"),
    (
        "131-maxchange",
        "maxchange (exit after repeated large offsets)",
    ),
    ("137-pool part 4", "source replacement, polltarget per pool"),
    ("148-replacement", "source replacement"),
    (
        "008-ntpera 1950/2130",
        "NTP_ERA_SPLIT: the core never turns NTP time into a date",
    ),
];

/// One row of `ntp-sim chrony`: a case over the seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The case.
    pub case: String,
    /// Every check as chrony expects, on every seed.
    pub pass: bool,
    /// Sync time per seed, s (beyond `duration`: never synchronized for good).
    pub sync_times: Vec<f64>,
    /// The run's length, s.
    pub duration: f64,
    /// Some seed synchronized before `min_sync_time` (allowed).
    pub early: bool,
    /// Worst largest |error| over the seeds, s.
    pub max_offset: f64,
    /// Worst RMS error, s.
    pub rms_offset: f64,
    /// Worst largest |rate error| (fraction).
    pub max_freq: f64,
    /// Worst RMS rate error (fraction).
    pub rms_freq: f64,
    /// chrony's limits.
    pub limits: Limits,
    /// The checks not as expected, with the seed.
    pub failures: Vec<String>,
    /// The per-seed reports.
    pub reports: Vec<Report>,
}

/// Runs `case` over `seeds` and sums it up.
pub fn row(case: &Case, seeds: &[u64]) -> Row {
    let reports: Vec<Report> = seeds.iter().map(|s| evaluate(case, *s)).collect();
    let worst = |f: fn(&Figures) -> f64| {
        reports
            .iter()
            .map(|r| f(&r.figures))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    Row {
        case: case.name.clone(),
        pass: reports.iter().all(Report::ok),
        sync_times: reports.iter().map(|r| r.figures.sync_time).collect(),
        duration: case.setup.limit,
        early: reports.iter().any(|r| r.early),
        max_offset: worst(|f| f.max_offset),
        rms_offset: worst(|f| f.rms_offset),
        max_freq: worst(|f| f.max_freq),
        rms_freq: worst(|f| f.rms_freq),
        limits: case.setup.limits,
        failures: reports
            .iter()
            .flat_map(|r| {
                r.checks
                    .iter()
                    .filter(|c| !c.ok())
                    .map(move |c| format!("seed {}: {}", r.seed, c.name))
            })
            .collect(),
        reports,
    }
}

/// Every case of every scenario over `seeds`.
pub fn rows(seeds: &[u64]) -> Vec<Row> {
    scenarios()
        .into_iter()
        .flat_map(|(_, cases)| cases())
        .map(|c| row(&c, seeds))
        .collect()
}

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<36} {:<4} {:<31} {:>22} {:>22} {:>22} {:>22}\n",
        "scenario",
        "",
        "sync s (window)",
        "max offset (limit)",
        "rms offset (limit)",
        "max freq (limit)",
        "rms freq (limit)"
    );
    for r in rows {
        let syncs: Vec<String> = r
            .sync_times
            .iter()
            .map(|s| {
                if *s > r.duration {
                    "never".to_owned()
                } else {
                    format!("{s:.0}")
                }
            })
            .collect();
        let sync = format!(
            "{} ({:.0}-{:.0}){}",
            syncs.join("/"),
            r.limits.min_sync,
            r.limits.max_sync,
            if r.early { "*" } else { "" }
        );
        out += &format!(
            "{:<36} {:<4} {:<31} {:>22} {:>22} {:>22} {:>22}\n",
            r.case,
            if r.pass { "ok" } else { "FAIL" },
            sync,
            format!("{} ({})", seconds(r.max_offset), seconds(r.limits.time_max)),
            format!("{} ({})", seconds(r.rms_offset), seconds(r.limits.time_rms)),
            format!("{} ({})", ppm(r.max_freq), ppm(r.limits.freq_max)),
            format!("{} ({})", ppm(r.rms_freq), ppm(r.limits.freq_rms)),
        );
        for failure in &r.failures {
            out += &format!("{:<41} not as chrony expects: {failure}\n", "");
        }
    }
    out += "* synchronized before chrony's min_sync_time (allowed: our core updates from the \
            first sample)\n";
    out
}
