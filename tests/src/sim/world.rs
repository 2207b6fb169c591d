//! The simulated world: nodes with simulated clocks, each running the real `ntp_proto::Client` (as
//! the daemon's sync loop does) and answering with the real `ntp_proto::Server`, connected by
//! simulated links, driven by one seeded event queue. Nothing here decides anything about NTP.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ntp_proto::auth::Sealed;
use ntp_proto::server::AccessList;
use ntp_proto::{
    AssociationKind, BroadcastDelay, Broadcaster, Client, ClientConfig, ClockAction, Decision,
    Event, LeapFile, NameKind, NtpDuration, NtpTimestamp, PollInterval, Precision, ReferenceId,
    Server, SourceConfig, SourceId, Stratum, SyncConfig, SystemEvent, SystemSnapshot,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::clock::{ClockSpec, SimClock};
use super::net::{Direction, Link};

/// The precision every simulated clock claims (about 1 us, like a user-space timestamp).
const PRECISION: Precision = Precision::new(-20);

/// Where a node's source is.
#[derive(Clone, PartialEq, Debug)]
pub enum SourceRef {
    /// Another node, by index.
    Node(usize),
    /// A name in the scenario's name table.
    Name(String, NameKind),
    /// Another node's broadcasts (it must broadcast), with this delay calibration.
    Broadcast(usize, BroadcastDelay),
}

/// One simulated host.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// For plots and reports.
    pub name: String,
    /// Its oscillator.
    pub clock: ClockSpec,
    /// Its upstream sources; none for a reference server.
    pub sources: Vec<SourceRef>,
    /// Its symmetric peers (other nodes, by index), polled with `source_config`'s limits; each
    /// answers the other's polls in mode 2 (as ntpd-lite's server side does).
    pub peers: Vec<usize>,
    /// Poll limits and iburst of every source.
    pub source_config: SourceConfig,
    /// Selection and discipline (the slew rate is also the simulated clock's).
    pub sync: SyncConfig,
    /// When it starts, seconds of true time.
    pub start: f64,
    /// Steps made by someone else: (true time, seconds).
    pub external_steps: Vec<(f64, f64)>,
    /// A drift-file frequency correction, ppm (positive makes the clock run faster).
    pub initial_frequency_ppm: Option<f64>,
    /// A leap-seconds file (its leap mode is in `sync.discipline.leap`).
    pub leap_file: Option<LeapFile>,
    /// Announce the time to every node that listens, every 2^interval s (broadcast mode).
    pub broadcast: Option<PollInterval>,
}

impl NodeSpec {
    /// A stratum-1 server with a clock `offset` seconds off and no sources (like chrony's
    /// `local stratum 1`).
    pub fn reference(name: &str, offset: f64) -> Self {
        Self {
            name: name.to_owned(),
            clock: ClockSpec {
                offset,
                ..ClockSpec::PERFECT
            },
            sources: Vec::new(),
            peers: Vec::new(),
            source_config: SourceConfig::default(),
            sync: SyncConfig {
                local_reference: Some((Stratum::PRIMARY, ReferenceId::LOCL)),
                ..SyncConfig::default()
            },
            start: 0.0,
            external_steps: Vec::new(),
            initial_frequency_ppm: None,
            leap_file: None,
            broadcast: None,
        }
    }

    /// A client of `sources` with clock `clock` and the defaults otherwise.
    pub fn client(name: &str, clock: ClockSpec, sources: Vec<SourceRef>) -> Self {
        Self {
            name: name.to_owned(),
            clock,
            sources,
            peers: Vec::new(),
            source_config: SourceConfig::default(),
            sync: SyncConfig::default(),
            start: 0.0,
            external_steps: Vec::new(),
            initial_frequency_ppm: None,
            leap_file: None,
            broadcast: None,
        }
    }
}

/// What a packet's delay may depend on.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct PacketContext {
    /// True time it is sent.
    pub time: f64,
    /// The client node.
    pub client: usize,
    /// The server node.
    pub server: usize,
    /// Which way it goes.
    pub direction: Direction,
    /// How many packets went this way on this link before it.
    pub count: u64,
}

/// A packet's one-way delay, or `None` if it is lost.
pub type DelayFn = Arc<dyn Fn(&PacketContext, &mut StdRng) -> Option<f64> + Send + Sync>;

/// The same link model between every client and server.
pub fn uniform(link: Link) -> DelayFn {
    Arc::new(move |packet, rng| link.way(packet.direction).draw(rng))
}

/// A whole simulated run.
#[derive(Clone)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// Length, seconds of true time.
    pub duration: f64,
    /// NTP time at true time 0.
    pub epoch: NtpTimestamp,
    /// The hosts.
    pub nodes: Vec<NodeSpec>,
    /// Names and the nodes they resolve to.
    pub names: Vec<(String, Vec<usize>)>,
    /// Every packet's delay.
    pub delay: DelayFn,
    /// Duplicates: probability that a delivered packet arrives a second time (own delay).
    pub duplicate: f64,
    /// IPv6 addresses instead of IPv4.
    pub ipv6: bool,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("duration", &self.duration)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// 2024-01-01 00:00:00 UTC as an NTP timestamp.
pub const EPOCH_2024: NtpTimestamp = NtpTimestamp::from_parts(3_913_056_000, 0);

/// What happened to one node.
#[derive(Clone, Debug, Default)]
pub struct NodeResult {
    /// Clock minus true time at each whole second (index = second), from its start on.
    pub errors: Vec<f64>,
    /// Clock minus true time less every step made to it (by the core or by someone else), at the
    /// same seconds as `errors`: its differences are the clock's rate error, slews included and
    /// steps not, as clknetsim logs a clock's frequency.
    pub unstepped: Vec<f64>,
    /// Requests sent, and their true send times.
    pub sent_at: Vec<f64>,
    /// Requests sent to each server node.
    pub requests_to: BTreeMap<usize, u64>,
    /// True arrival times of the replies that reached it (whether its socket still waited or not).
    pub received_at: Vec<f64>,
    /// True time of the first clock update.
    pub first_update: Option<f64>,
    /// Clock steps the core ordered.
    pub steps: u32,
    /// System events with their true time, as log lines.
    pub log: Vec<(f64, String)>,
    /// The frequency correction at the end, ppm.
    pub final_frequency_ppm: f64,
    /// The oscillator's frequency error plus the correction at the end, ppm.
    pub final_frequency_error_ppm: f64,
}

/// The outcome of a run: one [`NodeResult`] per node.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Per node, in scenario order.
    pub nodes: Vec<NodeResult>,
}

/// One request and what the client's IO knows of it, carried by its packets both ways.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    client: usize,
    server: usize,
    source: SourceId,
    /// The client's clock when the request left.
    t1: NtpTimestamp,
    /// True time it left.
    sent: f64,
    /// How long the client's socket waits for replies, seconds.
    wait: f64,
}

#[derive(Debug)]
enum Ev {
    Tick,
    Wake(usize),
    /// A packet of `InFlight` arrives at its server (`Request`) or its client (`Reply`).
    Arrive(Direction, InFlight, Sealed),
    /// Node `.0`'s broadcaster may have an announcement due.
    Announce(usize),
    /// A broadcast from node `.1` reaches node `.0`.
    Heard(usize, usize, Sealed),
}

struct Queued {
    time: f64,
    seq: u64,
    event: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Earliest first (the heap is a max-heap).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .total_cmp(&self.time)
            .then(other.seq.cmp(&self.seq))
    }
}

struct Node {
    clock: SimClock,
    client: Option<Client>,
    local_reference: Option<(Stratum, ReferenceId)>,
    started: bool,
    next_wake: Option<f64>,
    result: NodeResult,
}

struct World<'a> {
    scenario: &'a Scenario,
    rng: StdRng,
    queue: BinaryHeap<Queued>,
    seq: u64,
    nodes: Vec<Node>,
    /// Each node's server side (its peers are configured there).
    servers: Vec<Server>,
    base: Instant,
    link_counts: BTreeMap<(usize, usize, bool), u64>,
    /// Each node's broadcaster, if it broadcasts.
    broadcasters: Vec<Option<Broadcaster>>,
}

/// The address of node `index`.
pub fn address_of(index: usize, ipv6: bool) -> SocketAddr {
    let ip = if ipv6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfc00,
            0,
            0,
            0,
            0,
            0,
            0x123,
            index as u16 + 1,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(
            10,
            0,
            (index / 250) as u8,
            (index % 250) as u8 + 1,
        ))
    };
    SocketAddr::new(ip, 123)
}

/// Runs `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64) -> RunResult {
    let mut world = World::new(scenario, seed);
    world.run();
    RunResult {
        nodes: world.nodes.into_iter().map(|n| n.result).collect(),
    }
}

impl<'a> World<'a> {
    fn new(scenario: &'a Scenario, seed: u64) -> Self {
        let nodes = scenario
            .nodes
            .iter()
            .map(|spec| Node {
                clock: SimClock::new(spec.clock, spec.sync.discipline.max_slew_ppm),
                client: None,
                local_reference: spec.sync.local_reference,
                started: false,
                next_wake: None,
                result: NodeResult::default(),
            })
            .collect();
        Self {
            scenario,
            rng: StdRng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            nodes,
            servers: scenario
                .nodes
                .iter()
                .map(|spec| {
                    let peers = spec.peers.iter();
                    let peers = peers.map(|p| address_of(*p, scenario.ipv6)).collect();
                    Server::new(AccessList::default(), None).with_peers(peers, false)
                })
                .collect(),
            base: Instant::now(),
            link_counts: BTreeMap::new(),
            broadcasters: vec![None; scenario.nodes.len()],
        }
    }

    fn push(&mut self, time: f64, event: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            time,
            seq: self.seq,
            event,
        });
    }

    /// Node `node`'s monotonic clock at true time `t`.
    fn instant(&self, node: usize, t: f64) -> Instant {
        self.base + Duration::from_secs_f64(self.nodes[node].clock.monotonic(t).max(0.0))
    }

    fn local(&self, node: usize, t: f64) -> NtpTimestamp {
        self.scenario.epoch + NtpDuration::from_seconds_f64(self.nodes[node].clock.read(t))
    }

    fn run(&mut self) {
        self.push(0.0, Ev::Tick);
        while let Some(Queued { time, event, .. }) = self.queue.pop() {
            if time > self.scenario.duration {
                break;
            }
            // The run ends at `duration`: the clocks are sampled then, but nothing is sent that
            // could not be answered within it (as clknetsim stops at its limit).
            if time == self.scenario.duration && !matches!(event, Ev::Tick) {
                continue;
            }
            match event {
                Ev::Tick => self.tick(time),
                Ev::Wake(node) => self.wake(node, time),
                Ev::Arrive(Direction::Request, exchange, bytes) => {
                    self.answer(time, exchange, &bytes);
                }
                Ev::Arrive(Direction::Reply, exchange, bytes) => {
                    self.deliver(time, exchange, &bytes);
                }
                Ev::Announce(node) => self.announce(node, time),
                Ev::Heard(node, from, bytes) => self.hear(node, from, time, &bytes),
            }
        }
        for node in &mut self.nodes {
            if let Some(client) = &node.client {
                node.result.final_frequency_ppm = client.frequency_ppm();
            }
            node.result.final_frequency_error_ppm = node.clock.frequency_error() * 1e6;
        }
    }

    /// Every whole second: wander, external steps, start-ups, and the error samples.
    fn tick(&mut self, t: f64) {
        for index in 0..self.nodes.len() {
            let spec = &self.scenario.nodes[index];
            let node = &mut self.nodes[index];
            node.clock.tick(t, &mut self.rng);
            for (at, offset) in &spec.external_steps {
                if (*at - t).abs() < 0.5 {
                    node.clock.external_step(t, *offset);
                }
            }
            let disciplined = !spec.sources.is_empty() || !spec.peers.is_empty();
            if (disciplined || spec.leap_file.is_some()) && t >= spec.start {
                let error = node.clock.error(t);
                node.result.errors.push(error);
                node.result.unstepped.push(error - node.clock.stepped());
            }
            if !node.started && t >= spec.start {
                node.started = true;
                self.start(index, t);
            }
        }
        self.push(t + 1.0, Ev::Tick);
    }

    fn start(&mut self, index: usize, t: f64) {
        let spec = &self.scenario.nodes[index];
        if let Some(interval) = spec.broadcast {
            let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), 123);
            let now = self.instant(index, t);
            self.broadcasters[index] = Some(Broadcaster::new([(to, interval)], now));
            self.push(t, Ev::Announce(index));
        }
        // A reference runs the core too when it has leap seconds to make.
        if spec.sources.is_empty() && spec.peers.is_empty() && spec.leap_file.is_none() {
            return;
        }
        let mut client = Client::new(ClientConfig {
            sync: spec.sync,
            precision: PRECISION,
            initial_frequency_ppm: spec.initial_frequency_ppm,
            ..ClientConfig::default()
        });
        client.set_leap_file(spec.leap_file.clone());
        let now = self.instant(index, t);
        for source in &spec.sources {
            match source {
                SourceRef::Node(n) => {
                    client.add_source(address_of(*n, self.scenario.ipv6), spec.source_config, now);
                }
                SourceRef::Name(name, kind) => {
                    client.add_name(name, *kind, spec.source_config, now);
                }
                SourceRef::Broadcast(n, delay) => {
                    let config = SourceConfig {
                        kind: AssociationKind::Broadcast,
                        broadcast_delay: *delay,
                        ..spec.source_config
                    };
                    client.add_source(address_of(*n, self.scenario.ipv6), config, now);
                }
            }
        }
        let peer_config = SourceConfig {
            kind: AssociationKind::Peer,
            ..spec.source_config
        };
        for peer in &spec.peers {
            client.add_source(address_of(*peer, self.scenario.ipv6), peer_config, now);
        }
        // The core's first look at the clocks (its timers are set from here).
        client.handle_timeout(now, self.local(index, t));
        self.nodes[index].client = Some(client);
        self.pump(index, t);
    }

    fn wake(&mut self, index: usize, t: f64) {
        if self.nodes[index].next_wake != Some(t) {
            return;
        }
        self.nodes[index].next_wake = None;
        let (now, local) = (self.instant(index, t), self.local(index, t));
        if let Some(client) = &mut self.nodes[index].client {
            client.handle_timeout(now, local);
        }
        self.pump(index, t);
    }

    /// After anything the core was told: names, clock actions, requests, the next wake-up.
    fn pump(&mut self, index: usize, t: f64) {
        let now = self.instant(index, t);
        let Some(mut client) = self.nodes[index].client.take() else {
            return;
        };
        while let Some((name, text)) = client.poll_resolve(now) {
            let addresses: Vec<SocketAddr> = self
                .scenario
                .names
                .iter()
                .filter(|(n, _)| *n == text)
                .flat_map(|(_, nodes)| nodes.iter().map(|n| address_of(*n, self.scenario.ipv6)))
                .collect();
            client.handle_resolved(now, name, &addresses);
        }
        while let Some(event) = client.poll_event() {
            self.record(index, t, event);
        }
        while let Some(transmit) = client.poll_transmit(now, rand::Rng::r#gen(&mut self.rng)) {
            let t1 = self.local(index, t);
            self.nodes[index].result.sent_at.push(t);
            let Some(server) = self.node_at(transmit.address) else {
                continue;
            };
            *self.nodes[index]
                .result
                .requests_to
                .entry(server)
                .or_insert(0) += 1;
            let exchange = InFlight {
                client: index,
                server,
                source: transmit.source,
                t1,
                sent: t,
                wait: transmit.wait.as_secs_f64(),
            };
            self.transmit(t, Direction::Request, exchange, transmit.bytes);
        }
        if let Some(deadline) = client.poll_timeout() {
            let monotonic = deadline.saturating_duration_since(self.base).as_secs_f64();
            // A microsecond late, so that rounding never wakes the core just before its deadline.
            let at = (self.nodes[index].clock.true_time_of(monotonic) + 1e-6).max(t);
            let node = &mut self.nodes[index];
            if node.next_wake.is_none_or(|w| at < w || w < t) {
                node.next_wake = Some(at);
                self.push(at, Ev::Wake(index));
            }
        }
        self.nodes[index].client = Some(client);
    }

    fn record(&mut self, index: usize, t: f64, event: Event) {
        let node = &mut self.nodes[index];
        match event {
            Event::Clock(action) => {
                if matches!(action, ClockAction::Step { .. } | ClockAction::Slew { .. }) {
                    node.result.first_update.get_or_insert(t);
                }
                if matches!(action, ClockAction::Step { .. }) {
                    node.result.steps += 1;
                }
                node.clock.apply(t, action);
            }
            Event::System(event) => {
                let line = match event {
                    SystemEvent::SourceChanged(id, state) => {
                        format!("source {id} {}", state.name())
                    }
                    other => format!("{other:?}"),
                };
                node.result.log.push((t, line));
            }
            Event::SourceAdded(id, address) => {
                node.result
                    .log
                    .push((t, format!("source {id} added: {address}")));
            }
            Event::SourceReplaced { old, new, reason } => {
                node.result.log.push((
                    t,
                    format!("source {} replaced by {}: {}", old.1, new.1, reason.name()),
                ));
            }
            Event::Reply(..) => {}
        }
    }

    fn node_at(&self, address: SocketAddr) -> Option<usize> {
        (0..self.nodes.len()).find(|n| address_of(*n, self.scenario.ipv6) == address)
    }

    fn draw(&mut self, t: f64, client: usize, server: usize, direction: Direction) -> Option<f64> {
        let key = (client, server, direction == Direction::Request);
        let count = self.link_counts.entry(key).or_insert(0);
        let packet = PacketContext {
            time: t,
            client,
            server,
            direction,
            count: *count,
        };
        *count += 1;
        (self.scenario.delay)(&packet, &mut self.rng).filter(|d| *d >= 0.0)
    }

    /// Sends a packet of `exchange` at true time `t`: lost, delivered, or delivered twice.
    fn transmit(&mut self, t: f64, direction: Direction, exchange: InFlight, bytes: Sealed) {
        let (client, server) = (exchange.client, exchange.server);
        let Some(delay) = self.draw(t, client, server, direction) else {
            return;
        };
        self.push(t + delay, Ev::Arrive(direction, exchange, bytes));
        let duplicated = self.scenario.duplicate > 0.0
            && rand::Rng::r#gen::<f64>(&mut self.rng) < self.scenario.duplicate;
        if duplicated && let Some(again) = self.draw(t, client, server, direction) {
            self.push(t + again, Ev::Arrive(direction, exchange, bytes));
        }
    }

    /// The server's answer, sent at once (no processing time): T2 = T3 = its clock at arrival.
    fn answer(&mut self, t: f64, exchange: InFlight, bytes: &[u8]) {
        let server = exchange.server;
        if !self.nodes[server].started {
            return;
        }
        let receive = self.local(server, t);
        let snapshot = self.snapshot(server, receive);
        let from = address_of(exchange.client, self.scenario.ipv6);
        let now = self.instant(server, t);
        let response = match self.servers[server].decide(bytes, from, &snapshot, receive, now) {
            Decision::Respond(response) => response,
            // A peer's poll: answered in mode 2, and the answer's transmit timestamp told to our
            // association with it. (Our peers' polls carry origin zero: nothing to forward.)
            Decision::Peer {
                response: Some(response),
                ..
            } => {
                if let Some(client) = &mut self.nodes[server].client
                    && let Some(id) = client.peer_at(from)
                {
                    client.handle_passive_sent(id, receive);
                }
                response
            }
            Decision::Peer { response: None, .. } | Decision::Drop(_) => return,
        };
        self.transmit(t, Direction::Reply, exchange, response.finish(receive));
    }

    /// Sends node `index`'s due announcements to every node listening to it, each over its own
    /// link (the reply direction: server to client), then waits for the next.
    fn announce(&mut self, index: usize, t: f64) {
        let Some(mut broadcaster) = self.broadcasters[index].take() else {
            return;
        };
        let (now, local) = (self.instant(index, t), self.local(index, t));
        let snapshot = self.snapshot(index, local);
        let listeners: Vec<usize> = (0..self.nodes.len())
            .filter(|n| {
                self.scenario.nodes[*n]
                    .sources
                    .iter()
                    .any(|s| matches!(s, SourceRef::Broadcast(from, _) if *from == index))
            })
            .collect();
        while let Some((_, response)) = broadcaster.poll_transmit(now, &snapshot, local) {
            let bytes = response.finish(local);
            for &listener in &listeners {
                if let Some(delay) = self.draw(t, listener, index, Direction::Reply) {
                    self.push(t + delay, Ev::Heard(listener, index, bytes));
                }
            }
        }
        if let Some(next) = broadcaster.poll_timeout() {
            let monotonic = next.saturating_duration_since(self.base).as_secs_f64();
            let at = (self.nodes[index].clock.true_time_of(monotonic) + 1e-6).max(t);
            self.push(at, Ev::Announce(index));
        }
        self.broadcasters[index] = Some(broadcaster);
    }

    /// A broadcast from node `from` reaches node `index`.
    fn hear(&mut self, index: usize, from: usize, t: f64, bytes: &[u8]) {
        let (now, t4) = (self.instant(index, t), self.local(index, t));
        let address = address_of(from, self.scenario.ipv6);
        if let Some(client) = &mut self.nodes[index].client {
            client.handle_broadcast(now, t4, address, t4, bytes);
        }
        self.pump(index, t);
    }

    fn snapshot(&self, server: usize, now: NtpTimestamp) -> SystemSnapshot {
        let node = &self.nodes[server];
        match (&node.client, node.local_reference) {
            (Some(client), _) => client.serving_snapshot(now),
            (None, Some((stratum, refid))) => {
                SystemSnapshot::local_reference(stratum, refid, PRECISION, now)
            }
            (None, None) => SystemSnapshot::unsynchronized(PRECISION),
        }
    }

    /// A reply reaches the client: handed to the core if its socket still waits.
    fn deliver(&mut self, t: f64, exchange: InFlight, bytes: &[u8]) {
        let InFlight {
            client: index,
            source,
            t1,
            sent,
            wait,
            ..
        } = exchange;
        self.nodes[index].result.received_at.push(t);
        if t - sent > wait {
            return;
        }
        let (now, t4) = (self.instant(index, t), self.local(index, t));
        let local_address = address_of(index, self.scenario.ipv6).ip();
        let node = &mut self.nodes[index];
        if let Some(client) = &mut node.client {
            client.handle_reply(now, t4, source, t1, t4, bytes, Some(local_address));
        }
        self.pump(index, t);
    }
}
