//! Lab scenarios from a file: daemons with virtual clocks, link emulators between them, timed
//! events (restart a server with a new offset, change a link), and every daemon's true error
//! sampled over time. The `lab` binary writes the samples as CSV and SVG; the scenario tests run
//! the same files from `config/lab/` and assert on the samples.
//!
//! True time is the system clock plus `true-offset` (zero unless the scenario sets
//! `start-unix`, which shifts the whole lab to another date, e.g. just before the 2036 rollover):
//! every node's `offset` is relative to true time, and every error is measured against it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::daemon::Daemon;
use crate::lab::Node;
use crate::link::{Impairment, Link, LinkConfig, LinkStats};

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// Short name, used for output files.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// How long to run, seconds.
    pub duration: f64,
    /// Sampling interval, seconds.
    #[serde(default = "default_sample_interval")]
    pub sample_interval: f64,
    /// Unix time that true time reads at the start (shifts the lab in time); default: now.
    pub start_unix: Option<f64>,
    /// The plot's y range, ± seconds; default: fitted to the clients.
    pub plot_range: Option<f64>,
    /// The daemons.
    #[serde(rename = "node")]
    pub nodes: Vec<NodeSpec>,
    /// Timed changes.
    #[serde(default, rename = "event")]
    pub events: Vec<EventSpec>,
}

fn default_sample_interval() -> f64 {
    0.1
}

/// One daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// It serves on 127.0.0.`host` (2-99; 127.0.0.1 is avoided, see `lab`).
    pub host: u8,
    /// Serve from its own clock at this stratum.
    pub local_stratum: Option<u8>,
    /// Its clock starts this many seconds off true time.
    #[serde(default)]
    pub offset: f64,
    /// Its clock's natural frequency error, ppm.
    #[serde(default)]
    pub drift_ppm: f64,
    /// Names of the nodes it synchronizes to.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Names of its symmetric peers (`[[peer]]`).
    #[serde(default)]
    pub peers: Vec<String>,
    /// Poll range, log2 s.
    #[serde(default = "default_poll")]
    pub poll: (i8, i8),
    /// Extra `[sync]` settings, e.g. `{ max-frequency-ppm = 2000.0 }`.
    #[serde(default)]
    pub sync: toml::Table,
    /// Impairments on the path to each of its sources.
    pub link: Option<LinkSpec>,
}

fn default_poll() -> (i8, i8) {
    (-2, 0)
}

/// A link emulator's settings: `forward` is client to server.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LinkSpec {
    /// Client to server.
    #[serde(default)]
    pub forward: ImpairmentSpec,
    /// Server to client.
    #[serde(default)]
    pub backward: ImpairmentSpec,
    /// Random seed.
    #[serde(default)]
    pub seed: u64,
}

/// One direction's impairments; times in seconds.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImpairmentSpec {
    /// Fixed delay.
    #[serde(default)]
    pub delay: f64,
    /// Mean of the exponential extra delay.
    #[serde(default)]
    pub jitter: f64,
    /// Loss probability.
    #[serde(default)]
    pub loss: f64,
    /// Duplication probability.
    #[serde(default)]
    pub duplicate: f64,
    /// Probability of being held back by `reorder-delay`.
    #[serde(default)]
    pub reorder: f64,
    /// Hold-back delay.
    #[serde(default)]
    pub reorder_delay: f64,
}

impl ImpairmentSpec {
    fn to_impairment(self) -> Impairment {
        Impairment {
            delay: Duration::from_secs_f64(self.delay),
            jitter: Duration::from_secs_f64(self.jitter),
            loss: self.loss,
            duplicate: self.duplicate,
            reorder: self.reorder,
            reorder_delay: Duration::from_secs_f64(self.reorder_delay),
        }
    }
}

/// Something that happens `at` seconds into the run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventSpec {
    /// When.
    pub at: f64,
    /// To which node.
    pub node: String,
    /// `stop`, `start` (with its configured or a new `offset`), or `link` (new impairments on
    /// all its links).
    pub action: String,
    /// For `start`: the clock's new offset from true time.
    pub offset: Option<f64>,
    /// For `link`: the new settings.
    pub link: Option<LinkSpec>,
}

/// One sample of one node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Index of the node.
    pub node: usize,
    /// Its clock minus true time, seconds (`None` while it is stopped).
    pub error: Option<f64>,
    /// Whether it says it is synchronized.
    pub synchronized: bool,
    /// Its stratum.
    pub stratum: u8,
    /// Requests its first source has sent (a poll count).
    pub polls: u64,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct RunResult {
    /// The scenario.
    pub scenario: Scenario,
    /// Every sample, in time order.
    pub samples: Vec<Sample>,
    /// The last status of every node.
    pub last_status: Vec<serde_json::Value>,
    /// The log of every node.
    pub logs: Vec<String>,
    /// Link statistics by node name (summed over its links).
    pub links: HashMap<String, LinkStats>,
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let scenario: Self =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        scenario.check()?;
        Ok(scenario)
    }

    /// The scenario of that name shipped in `config/lab/`.
    pub fn shipped(file: &str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/lab")
            .join(file);
        Self::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn check(&self) -> Result<(), String> {
        for node in &self.nodes {
            if !(2..=99).contains(&node.host) {
                return Err(format!("node {}: host must be 2..99", node.name));
            }
            for source in node.sources.iter().chain(&node.peers) {
                if self.index(source).is_none() {
                    return Err(format!(
                        "node {}: unknown source or peer {source}",
                        node.name
                    ));
                }
            }
        }
        for event in &self.events {
            if self.index(&event.node).is_none()
                || !["stop", "start", "link"].contains(&event.action.as_str())
            {
                return Err(format!("event at {} s: unknown node or action", event.at));
            }
        }
        Ok(())
    }

    /// The index of the node called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// A node while the scenario runs.
struct Running {
    node: Node,
    daemon: Option<Daemon>,
    links: Vec<Link>,
}

/// Runs `scenario` to completion and returns every sample.
pub fn run(scenario: &Scenario) -> RunResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let true_offset = scenario.start_unix.map_or(0.0, |start| start - unix_now());
    let addresses: Vec<SocketAddr> = scenario
        .nodes
        .iter()
        .map(|spec| Node::new(&spec.name, spec.host).address)
        .collect();
    let mut running: Vec<Running> = Vec::new();
    for (index, spec) in scenario.nodes.iter().enumerate() {
        let links: Vec<Link> = spec
            .sources
            .iter()
            .enumerate()
            .filter_map(|(k, source)| {
                let spec_link = spec.link?;
                let server = addresses[scenario.index(source)?];
                let config = LinkConfig {
                    forward: spec_link.forward.to_impairment(),
                    backward: spec_link.backward.to_impairment(),
                    seed: spec_link.seed.wrapping_add((index * 16 + k) as u64),
                };
                let listen: SocketAddr =
                    format!("127.0.0.{}:0", 100 + index * 8 + k).parse().ok()?;
                Some(
                    runtime
                        .block_on(Link::bind(listen, server, config))
                        .expect("start a link"),
                )
            })
            .collect();
        let sources: Vec<SocketAddr> = if links.is_empty() {
            spec.sources
                .iter()
                .filter_map(|s| scenario.index(s))
                .map(|i| addresses[i])
                .collect()
        } else {
            links.iter().map(Link::local_addr).collect()
        };
        let mut node = Node::new(&spec.name, spec.host)
            .offset(spec.offset + true_offset)
            .drift(spec.drift_ppm)
            .sources(&sources)
            .peers(
                &spec
                    .peers
                    .iter()
                    .filter_map(|p| scenario.index(p))
                    .map(|i| addresses[i])
                    .collect::<Vec<_>>(),
            );
        node.address = addresses[index];
        node.local_stratum = spec.local_stratum;
        node.poll = spec.poll;
        for (key, value) in &spec.sync {
            node = node.sync(&format!("{key} = {value}"));
        }
        running.push(Running {
            daemon: Some(node.start()),
            node,
            links,
        });
    }

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut events: Vec<&EventSpec> = scenario.events.iter().collect();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut next_event = 0;
    let interval = Duration::from_secs_f64(scenario.sample_interval);
    while start.elapsed().as_secs_f64() < scenario.duration {
        let t = start.elapsed().as_secs_f64();
        while next_event < events.len() && events[next_event].at <= t {
            apply(events[next_event], scenario, &mut running, true_offset);
            next_event += 1;
        }
        for (node, r) in running.iter_mut().enumerate() {
            samples.push(sample(t, node, r.daemon.as_mut(), true_offset));
        }
        let next = start + interval.mul_f64((t / scenario.sample_interval).floor() + 1.0);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let last_status = running
        .iter()
        .map(|r| {
            r.daemon
                .as_ref()
                .and_then(|d| d.try_status().ok())
                .unwrap_or_default()
        })
        .collect();
    let logs = running
        .iter()
        .map(|r| r.daemon.as_ref().map(Daemon::log).unwrap_or_default())
        .collect();
    let links = running
        .iter()
        .map(|r| (r.node.name.clone(), sum_stats(&r.links)))
        .collect();
    RunResult {
        scenario: scenario.clone(),
        samples,
        last_status,
        logs,
        links,
    }
}

fn apply(event: &EventSpec, scenario: &Scenario, running: &mut [Running], true_offset: f64) {
    let Some(index) = scenario.index(&event.node) else {
        return;
    };
    let r = &mut running[index];
    match event.action.as_str() {
        "stop" => {
            if let Some(mut daemon) = r.daemon.take() {
                daemon.stop();
            }
        }
        "start" => {
            if let Some(mut daemon) = r.daemon.take() {
                daemon.stop();
            }
            if let Some(offset) = event.offset {
                r.node.initial_offset = offset + true_offset;
            }
            r.daemon = Some(r.node.start());
        }
        _ => {
            let Some(link) = event.link else { return };
            for l in &r.links {
                l.set_forward(link.forward.to_impairment())
                    .expect("valid impairment");
                l.set_backward(link.backward.to_impairment())
                    .expect("valid impairment");
            }
        }
    }
    println!("{:>6.1} s  {} {}", event.at, event.action, event.node);
}

fn sample(t: f64, node: usize, daemon: Option<&mut Daemon>, true_offset: f64) -> Sample {
    let status = daemon.and_then(|d| d.try_status().ok());
    let Some(status) = status else {
        return Sample {
            t,
            node,
            error: None,
            synchronized: false,
            stratum: 16,
            polls: 0,
        };
    };
    Sample {
        t,
        node,
        error: status["clock"]["error"].as_f64().map(|e| e - true_offset),
        synchronized: status["synchronized"] == true,
        stratum: status["stratum"].as_u64().map_or(16, |s| s as u8),
        polls: status["sources"][0]["sent"].as_u64().unwrap_or(0),
    }
}

fn sum_stats(links: &[Link]) -> LinkStats {
    let mut total = LinkStats::default();
    for link in links {
        let s = link.stats();
        total.forward.received += s.forward.received;
        total.forward.dropped += s.forward.dropped;
        total.forward.duplicated += s.forward.duplicated;
        total.forward.reordered += s.forward.reordered;
        total.backward.received += s.backward.received;
        total.backward.dropped += s.backward.dropped;
        total.backward.duplicated += s.backward.duplicated;
        total.backward.reordered += s.backward.reordered;
    }
    total
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl RunResult {
    /// The samples of the node called `name`.
    pub fn series(&self, name: &str) -> Vec<Sample> {
        let index = self
            .scenario
            .index(name)
            .unwrap_or_else(|| panic!("no node {name}"));
        self.samples
            .iter()
            .filter(|s| s.node == index)
            .copied()
            .collect()
    }

    /// The first time after which `name`'s |error| stays within `limit` until the end (while it
    /// runs), with the poll count then.
    pub fn settled(&self, name: &str, limit: f64) -> Option<(f64, u64)> {
        let series = self.series(name);
        let last_bad = series
            .iter()
            .rposition(|s| s.error.is_none_or(|e| e.abs() > limit));
        let first_good = last_bad.map_or(0, |i| i + 1);
        series.get(first_good).map(|s| (s.t, s.polls))
    }

    /// The largest |error| of `name` from `from` seconds to `to` seconds.
    pub fn worst(&self, name: &str, from: f64, to: f64) -> f64 {
        self.series(name)
            .iter()
            .filter(|s| s.t >= from && s.t <= to)
            .filter_map(|s| s.error)
            .map(f64::abs)
            .fold(0.0, f64::max)
    }

    /// The RMS error of `name` from `from` seconds on.
    pub fn rms(&self, name: &str, from: f64) -> f64 {
        let errors: Vec<f64> = self
            .series(name)
            .iter()
            .filter(|s| s.t >= from)
            .filter_map(|s| s.error)
            .collect();
        (errors.iter().map(|e| e * e).sum::<f64>() / errors.len().max(1) as f64).sqrt()
    }

    /// The mean error of `name` from `from` seconds to `to` seconds.
    pub fn mean(&self, name: &str, from: f64, to: f64) -> f64 {
        let errors: Vec<f64> = self
            .series(name)
            .iter()
            .filter(|s| s.t >= from && s.t <= to)
            .filter_map(|s| s.error)
            .collect();
        errors.iter().sum::<f64>() / errors.len().max(1) as f64
    }

    /// The last status of the node called `name`.
    pub fn status(&self, name: &str) -> &serde_json::Value {
        &self.last_status[self
            .scenario
            .index(name)
            .unwrap_or_else(|| panic!("no node {name}"))]
    }

    /// The log of the node called `name`.
    pub fn log(&self, name: &str) -> &str {
        &self.logs[self
            .scenario
            .index(name)
            .unwrap_or_else(|| panic!("no node {name}"))]
    }

    /// The samples as CSV: `t,node,error,synchronized,stratum,polls`.
    pub fn csv(&self) -> String {
        let mut out = String::from("t,node,error,synchronized,stratum,polls\n");
        for s in &self.samples {
            let error = s.error.map_or_else(String::new, |e| format!("{e:.9}"));
            let name = &self.scenario.nodes[s.node].name;
            out.push_str(&format!(
                "{:.3},{name},{error},{},{},{}\n",
                s.t, s.synchronized, s.stratum, s.polls
            ));
        }
        out
    }

    /// One line of figures per client node: settling time to 1 ms and 10 ms, RMS and worst error
    /// over the last half.
    pub fn summary(&self) -> String {
        let half = self.scenario.duration / 2.0;
        let mut out = format!(
            "scenario {}: {}\n",
            self.scenario.name,
            self.scenario.description.trim()
        );
        for node in &self.scenario.nodes {
            let settle = |limit| {
                self.settled(&node.name, limit).map_or_else(
                    || "never".to_owned(),
                    |(t, p)| format!("{t:.1} s ({p} polls)"),
                )
            };
            out.push_str(&format!(
                "  {:<12} within 10 ms after {:<20} within 1 ms after {:<20} RMS {:.6} s, worst {:.6} s over the last half\n",
                node.name,
                settle(0.010),
                settle(0.001),
                self.rms(&node.name, half),
                self.worst(&node.name, half, f64::MAX)
            ));
        }
        out
    }
}
