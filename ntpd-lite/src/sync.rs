//! The client half's IO shell around `ntp_proto::Client`: it looks names up, sends each request
//! from a fresh socket with a random source port (RFC 9109), timestamps replies with the kernel's
//! receive time, applies the clock actions the core returns, logs its events, and sleeps until the
//! core's next deadline. When to poll, how long to wait for a reply, when to select and what to do
//! to the clock are the core's decisions, none of them this loop's.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ntp_proto::auth::{AuthError, KeyId, Keys};
use ntp_proto::client::{CommandError, RESOLVE_RETRY};
use ntp_proto::system::{SourceState, SyncConfig, SystemEvent};
use ntp_proto::{
    AssociationKind, BroadcastDelay, Broadcaster, Client, ClientConfig, ClockAction,
    DisciplineConfig, Event, LeapKind, LeapMode, LeapStatus, NameId, NameSpec, NtpDuration,
    NtpTimestamp, ReplyError, ReplyLimits, ReplyOutcome, SourceConfig, SourceId, SourceReport,
    Transmit, Version,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::config::{ClockMode, Config, SourceAddress, SourceKind};
use crate::net;
use crate::nts::NtsClients;
use crate::state::{
    LeapReport, PeerEvent, PendingLeap, Shared, SourceStatus, SyncCommand, SyncRequest, SyncStatus,
};

/// How often the drift file is written while running (IO, not protocol: the core does not care).
const DRIFT_SAVE: Duration = Duration::from_secs(600);
/// How often a local reference clock refreshes the reference time it advertises.
const LOCAL_REFRESH: Duration = Duration::from_secs(1);

/// A datagram that arrived on the socket of a request.
#[derive(Debug)]
struct Arrival {
    source: SourceId,
    t1: NtpTimestamp,
    t4: NtpTimestamp,
    local: IpAddr,
    bytes: Vec<u8>,
}

/// A datagram that arrived at a broadcast source's broadcast address or multicast group.
#[derive(Debug)]
struct Broadcast {
    from: SocketAddr,
    t4: NtpTimestamp,
    bytes: Vec<u8>,
}

/// The broadcast sockets, bound at start-up with the server's (port 123 needs the privileges
/// that are dropped after).
#[derive(Debug, Default)]
pub struct BroadcastSockets {
    /// Where each broadcast source's broadcasts arrive.
    listeners: Vec<(SocketAddr, std::net::UdpSocket)>,
    /// Each `[[broadcast]]` address, and the socket its announcements leave from.
    senders: Vec<(SocketAddr, std::net::UdpSocket)>,
}

impl BroadcastSockets {
    /// Binds a listener per broadcast source and a sender per `[[broadcast]]`; the error names
    /// the address and what to do.
    pub fn bind(config: &Config) -> Result<Self, String> {
        let mut sockets = Self::default();
        let index = |name: &Option<String>| name.as_deref().map(net::interface_index).transpose();
        for source in config
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::Broadcast)
        {
            let (Some(listen), Ok(SourceAddress::Ip(server))) =
                (source.listen, SourceAddress::parse(&source.address))
            else {
                continue;
            };
            let socket = index(&source.interface)
                .and_then(|interface| {
                    let local = net::route_source(server).ok();
                    net::bind_broadcast_listener(listen, interface, local)
                })
                .map_err(|e| {
                    format!(
                        "cannot listen for broadcasts at {listen}: {e}; a [server] listen on the wildcard address and the same port takes that port: listen on this host's own address instead"
                    )
                })?;
            info!(%listen, server = %server, "listening for broadcasts");
            sockets.listeners.push((listen, socket));
        }
        let listen = config.server.as_ref().map_or(&[][..], |s| &s.listen[..]);
        for broadcast in &config.broadcasts {
            let Some(from) = listen
                .iter()
                .find(|l| l.is_ipv4() == broadcast.address.is_ipv4())
            else {
                continue;
            };
            let socket = index(&broadcast.interface)
                .and_then(|interface| {
                    net::bind_broadcast_sender(
                        from.ip(),
                        broadcast.address,
                        broadcast.ttl,
                        interface,
                    )
                })
                .map_err(|e| format!("cannot send broadcasts to {}: {e}", broadcast.address))?;
            sockets.senders.push((broadcast.address, socket));
        }
        Ok(sockets)
    }
}

/// The answer to a name lookup.
#[derive(Debug)]
struct Lookup {
    id: NameId,
    name: String,
    result: std::io::Result<Vec<SocketAddr>>,
}

/// The sync task: the core, and the channels its spawned IO reports back through.
struct Sync {
    client: Client,
    shared: Arc<Shared>,
    drift_file: Option<PathBuf>,
    arrivals: mpsc::Sender<Arrival>,
    lookups: mpsc::Sender<Lookup>,
    /// Each source's address, as the core announced it, for the log.
    addresses: BTreeMap<SourceId, SocketAddr>,
    /// The name each address was last looked up under, for the log.
    names: HashMap<SocketAddr, String>,
    /// What the clock does at a leap second.
    leap_mode: LeapMode,
    /// When the last request to each peer left (T1): its answers arrive on the server's socket.
    peer_sent: HashMap<SourceId, NtpTimestamp>,
    /// Behind a wildcard listen address, the address each peer sees us as (for loop detection).
    peer_local: HashMap<SocketAddr, Option<IpAddr>>,
    /// Our announcements to the `[[broadcast]]` addresses, and the socket of each.
    broadcaster: Broadcaster,
    senders: Vec<(SocketAddr, std::net::UdpSocket)>,
    /// Datagrams at a broadcast address from no configured broadcast server.
    broadcast_strays: u64,
    /// The NTS sources' key exchanges (RFC 8915).
    nts: NtsClients,
}

/// Runs the client half (and the broadcaster) until shutdown; saves the drift file on the way
/// out. `keys` are the `[keys] file`'s, read at start-up: a source's or peer's `key` is among them.
pub async fn run(config: Config, keys: Keys, shared: Arc<Shared>, sockets: BroadcastSockets) {
    let (arrivals, mut arriving) = mpsc::channel(256);
    let (lookups, mut looked_up) = mpsc::channel(16);
    let (heard, mut hearing) = mpsc::channel(256);
    let mut peer_packets = shared.take_peer_receiver();
    let mut commands = shared.take_command_receiver();
    for (listen, socket) in sockets.listeners {
        let (shared, heard) = (Arc::clone(&shared), heard.clone());
        let spawned = std::thread::Builder::new()
            .name("ntp-broadcast".to_owned())
            .spawn(move || {
                if let Err(e) = listen_for_broadcasts(&socket, &shared, &heard) {
                    error!(%listen, error = %e, "broadcast listener failed");
                }
            });
        if let Err(e) = spawned {
            error!(%listen, error = %e, "cannot start the broadcast listener");
        }
    }
    let mut sync = Sync::new(&config, &keys, shared, arrivals, lookups);
    sync.senders = sockets.senders;
    let mut drift_save =
        tokio::time::interval_at(tokio::time::Instant::now() + DRIFT_SAVE, DRIFT_SAVE);
    // A local reference clock advertises a fresh reference time (its root dispersion stays
    // small); without one, what is served changes only when the core acts.
    let refresh = if config.local.is_some() {
        LOCAL_REFRESH
    } else {
        DRIFT_SAVE
    };
    let mut republish = tokio::time::interval(refresh);
    // The core's first look at the clocks: its timers (a leap second's too) are set from here.
    sync.client
        .handle_timeout(Instant::now(), sync.shared.clock.now());
    while !sync.shared.stopping() {
        sync.drive();
        sync.publish();
        tokio::select! {
            _ = republish.tick() => {}
            () = sleep_until(sync.next_deadline()) => {
                sync.client.handle_timeout(Instant::now(), sync.shared.clock.now());
            }
            Some(arrival) = arriving.recv() => sync.handle_arrival(arrival),
            Some(broadcast) = hearing.recv() => sync.handle_broadcast(broadcast),
            Some(event) = next_peer_packet(&mut peer_packets) => sync.handle_peer(event),
            Some(lookup) = looked_up.recv() => sync.handle_lookup(lookup),
            Some(command) = next_command(&mut commands) => sync.handle_command(command),
            Some(done) = sync.nts.next() => sync.nts.handle(&mut sync.client, done),
            _ = drift_save.tick() => sync.save_drift(),
            () = sync.shared.shutdown_requested() => break,
        }
    }
    sync.save_drift();
}

/// The next configured peer's packet from the server workers (never, without the channel).
async fn next_peer_packet(receiver: &mut Option<mpsc::Receiver<PeerEvent>>) -> Option<PeerEvent> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// The next operator's command from the control socket.
async fn next_command(receiver: &mut Option<mpsc::Receiver<SyncCommand>>) -> Option<SyncCommand> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The core's configuration from the daemon's.
fn client_config(config: &Config, shared: &Shared) -> ClientConfig {
    let drift = config.sync.drift_file.as_deref().and_then(read_drift_file);
    if let Some(ppm) = drift {
        info!(frequency_ppm = ppm, "frequency read from the drift file");
    }
    ClientConfig {
        sync: SyncConfig {
            min_sources: config.sync.min_sources,
            holdover: NtpDuration::from_seconds_f64(config.sync.holdover),
            monitor_only: config.clock.mode == ClockMode::Monitor,
            local_reference: config.local.as_ref().map(|l| (l.stratum, l.refid)),
            discipline: DisciplineConfig {
                step_threshold: NtpDuration::from_seconds_f64(config.sync.step_threshold),
                panic_threshold: Some(NtpDuration::from_seconds_f64(config.sync.panic_threshold)),
                max_slew_ppm: config.max_slew_ppm(),
                // The kernel slews at one fixed rate; the virtual clock at any the core asks.
                min_slew_ppm: if config.clock.mode == ClockMode::System {
                    config.max_slew_ppm()
                } else {
                    0.0
                },
                max_frequency_ppm: config.max_frequency_ppm(),
                leap: config.leap.core(),
                ..DisciplineConfig::default()
            },
        },
        limits: ReplyLimits {
            local_precision: shared.precision,
            ..ReplyLimits::default()
        },
        precision: shared.precision,
        initial_frequency_ppm: drift,
    }
}

/// The leap second state for `status`.
fn leap_report(status: &LeapStatus) -> LeapReport {
    let kind = |indicator| LeapKind::from_indicator(indicator).map(|k| k.name().to_owned());
    LeapReport {
        mode: status.mode.name().to_owned(),
        pending: status.pending.map(|(leap, origin)| PendingLeap {
            kind: leap.kind.name().to_owned(),
            at: leap.at.utc_string(),
            from: origin.name().to_owned(),
        }),
        vote: status.vote.map(|k| k.name().to_owned()),
        announced: kind(status.announced),
        file_expires: status.file_expires.map(|(at, _)| at.utc_string()),
        file_expired: status.file_expires.is_some_and(|(_, expired)| expired),
    }
}

/// Takes every datagram that reaches a broadcast source's address or group, with its kernel
/// receive time, to the sync task; a thread of its own, like a server worker, until shutdown.
fn listen_for_broadcasts(
    socket: &std::net::UdpSocket,
    shared: &Shared,
    heard: &mpsc::Sender<Broadcast>,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut batch = net::RecvBatch::default();
    while !shared.stopping() {
        let count = match batch.receive(socket.as_raw_fd()) {
            Ok(count) => count,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        for datagram in (0..count).filter_map(|i| batch.get(i).filter(|d| !d.truncated)) {
            let t4 = datagram
                .received
                .map_or_else(|| shared.clock.now(), |t| shared.clock.at(t));
            let broadcast = Broadcast {
                from: datagram.from,
                t4,
                bytes: datagram.bytes.to_vec(),
            };
            // A full queue drops: the sync task is the bottleneck, not this thread.
            if heard.try_send(broadcast).is_err() {
                debug!("broadcast queue full: datagram dropped");
            }
        }
    }
    Ok(())
}

impl Sync {
    fn new(
        config: &Config,
        keys: &Keys,
        shared: Arc<Shared>,
        arrivals: mpsc::Sender<Arrival>,
        lookups: mpsc::Sender<Lookup>,
    ) -> Self {
        let mut client = Client::new(client_config(config, &shared));
        match config.leap.load() {
            Ok(file) => {
                if let Some(file) = &file {
                    let expired = file.is_expired(shared.clock.now());
                    if expired {
                        warn!(
                            "the leap-seconds file has expired: fetch a fresh leap-seconds.list; the sources' vote decides meanwhile"
                        );
                    }
                }
                client.set_leap_file(file);
            }
            // Start-up checked it; a file changed since is reported and not used.
            Err(e) => error!(error = %e, "leap-seconds file not used"),
        }
        let now = Instant::now();
        // NTS sources become associations once their NTS-KE exchange names the NTP server.
        let nts = NtsClients::new(config, |source| source.core(keys));
        for source in config.sources.iter().filter(|s| !s.nts) {
            let source_config = source.core(keys);
            if let Some(spec) = source.name_spec(keys) {
                client.add_name(&spec.name, spec.kind, spec.config, now);
            } else if let Ok(SourceAddress::Ip(address)) = SourceAddress::parse(&source.address) {
                let delay = source.delay.map_or(BroadcastDelay::Calibrated, |d| {
                    BroadcastDelay::Fixed(NtpDuration::from_seconds_f64(d))
                });
                let broadcast = SourceConfig {
                    kind: AssociationKind::Broadcast,
                    broadcast_delay: delay,
                    ..source_config
                };
                client.add_source(address, broadcast, now);
            }
        }
        for peer in &config.peers {
            let peer_config = SourceConfig {
                min_poll: peer.minpoll,
                max_poll: peer.maxpoll,
                version: Version::V4,
                kind: AssociationKind::Peer,
                key: peer.key.and_then(|id| keys.get(KeyId(id)).copied()),
                ..SourceConfig::default()
            };
            client.add_source(peer.address, peer_config, now);
        }
        Self {
            client,
            shared,
            drift_file: config.sync.drift_file.clone(),
            arrivals,
            lookups,
            addresses: BTreeMap::new(),
            names: HashMap::new(),
            leap_mode: config.leap.mode,
            peer_sent: HashMap::new(),
            peer_local: HashMap::new(),
            broadcaster: Broadcaster::new(
                config.broadcasts.iter().map(|b| (b.address, b.interval)),
                now,
            ),
            senders: Vec::new(),
            broadcast_strays: 0,
            nts,
        }
    }

    /// When the core or the broadcaster next needs attention.
    fn next_deadline(&self) -> Option<Instant> {
        let core = self.client.poll_timeout();
        core.into_iter()
            .chain(self.broadcaster.poll_timeout())
            .min()
    }

    /// Sends the announcements that are due, each stamped just before it leaves.
    fn announce(&mut self) {
        let now = Instant::now();
        let local = self.shared.clock.now();
        let snapshot = self.client.serving_snapshot(local);
        while let Some((to, response)) = self.broadcaster.poll_transmit(now, &snapshot, local) {
            let Some((_, socket)) = self.senders.iter().find(|(address, _)| *address == to) else {
                continue;
            };
            let bytes = response.finish(self.shared.clock.now());
            if let Err(e) = socket.send_to(&bytes, to) {
                warn!(%to, error = %e, "broadcast failed");
            }
        }
    }

    /// A datagram at a broadcast address: the broadcast association of its sender takes it; a
    /// stranger's is counted and dropped.
    fn handle_broadcast(&mut self, broadcast: Broadcast) {
        let taken = self.client.handle_broadcast(
            Instant::now(),
            self.shared.clock.now(),
            broadcast.from,
            broadcast.t4,
            &broadcast.bytes,
        );
        if !taken {
            self.broadcast_strays += 1;
            debug!(from = %broadcast.from, "broadcast from no configured broadcast server dropped");
        }
    }

    /// Does what the core asks now: apply and log its events, look names up, send requests.
    /// Events come first: a clock action is in force from the call that produced it, so every
    /// request handed out after that call must read its T1 from the adjusted clock.
    fn drive(&mut self) {
        while let Some(event) = self.client.poll_event() {
            self.handle_event(event);
        }
        self.nts.start(&self.client);
        let now = Instant::now();
        while let Some((id, name)) = self.client.poll_resolve(now) {
            self.resolve(id, name);
        }
        while let Some(transmit) = self.client.poll_transmit(now, rand::random()) {
            match transmit.kind {
                AssociationKind::Server | AssociationKind::Broadcast => self.transmit(transmit),
                AssociationKind::Peer => self.transmit_to_peer(&transmit),
            }
        }
        self.announce();
    }

    /// Looks `name` up: an address at once (so that sources given as addresses keep the
    /// configuration's order), a host name in a task of its own, which reports back through the
    /// lookup channel.
    fn resolve(&mut self, id: NameId, name: String) {
        if let Ok(SourceAddress::Ip(address)) = SourceAddress::parse(&name) {
            let result = Ok(vec![address]);
            return self.handle_lookup(Lookup { id, name, result });
        }
        let lookups = self.lookups.clone();
        tokio::spawn(async move {
            let result = lookup(&name).await;
            let _ = lookups.send(Lookup { id, name, result }).await;
        });
    }

    fn handle_lookup(&mut self, lookup: Lookup) {
        let addresses = match lookup.result {
            Ok(found) => found,
            Err(e) => {
                warn!(
                    name = %lookup.name,
                    error = %e,
                    retry_seconds = RESOLVE_RETRY.as_secs(),
                    "cannot resolve source; will retry"
                );
                Vec::new()
            }
        };
        self.names.retain(|_, name| *name != lookup.name);
        self.names
            .extend(addresses.iter().map(|a| (*a, lookup.name.clone())));
        self.client
            .handle_resolved(Instant::now(), lookup.id, &addresses);
    }

    /// Sends one request in a task of its own, which hands every datagram back.
    fn transmit(&self, transmit: Transmit) {
        let (shared, arrivals) = (Arc::clone(&self.shared), self.arrivals.clone());
        tokio::spawn(async move {
            if let Err(e) = exchange(&transmit, &shared, &arrivals).await {
                debug!(source = %transmit.address, error = %e, "request failed");
            }
        });
    }

    /// Sends a request to a peer from the server's socket on its address family, T1 read just
    /// before the send: the peer's answer (and its own polls) arrive at the server workers.
    fn transmit_to_peer(&mut self, transmit: &Transmit) {
        let Some((_, socket)) = self.shared.peer_socket(transmit.address) else {
            warn!(peer = %transmit.address, "no listen socket of the peer's address family");
            return;
        };
        let t1 = self.shared.clock.now();
        match socket.send_to(&transmit.bytes, transmit.address) {
            Ok(_) => {
                self.peer_sent.insert(transmit.source, t1);
            }
            Err(e) => debug!(peer = %transmit.address, error = %e, "request failed"),
        }
    }

    /// A configured peer's traffic from a server worker: a packet goes to its association, with
    /// the T1 of our last request to it; a passive answer's transmit timestamp too.
    fn handle_peer(&mut self, event: PeerEvent) {
        let datagram = match event {
            PeerEvent::Received(datagram) => datagram,
            PeerEvent::Answered { to, transmit } => {
                if let Some(id) = self.client.peer_at(to) {
                    self.client.handle_passive_sent(id, transmit);
                }
                return;
            }
        };
        let Some(id) = self.client.peer_at(datagram.from) else {
            return;
        };
        let t1 = self
            .peer_sent
            .get(&id)
            .copied()
            .unwrap_or(NtpTimestamp::ZERO);
        let local = match datagram.local.ip() {
            ip if !ip.is_unspecified() => Some(ip),
            _ => *self
                .peer_local
                .entry(datagram.from)
                .or_insert_with(|| net::route_source(datagram.from).ok()),
        };
        self.client.handle_reply(
            Instant::now(),
            self.shared.clock.now(),
            id,
            t1,
            datagram.t4,
            &datagram.bytes,
            local,
        );
    }

    /// An operator's command: the core decides, this applies what it returns (a step through
    /// the events), publishes the result, then answers.
    fn handle_command(&mut self, command: SyncCommand) {
        let now = Instant::now();
        let result = match command.request {
            SyncRequest::MakeStep => self
                .client
                .make_step(now, self.shared.clock.now())
                .map(|step| format!("clock stepped by {:+.9} s", step.to_seconds_f64())),
            SyncRequest::Burst => {
                let count = self.client.burst(now);
                Ok(format!("{count} sources send 4 requests each"))
            }
            SyncRequest::AddSource(spec) => self.add_source(spec, now),
            SyncRequest::RemoveSource(address) => self.client.remove_address(address).map(|_| {
                info!(source = %address, "source removed by the operator");
                format!("source {address} removed")
            }),
            SyncRequest::SetOnline { address, online } => {
                let state = if online { "online" } else { "offline" };
                self.client
                    .set_online(address, online, now)
                    .map(|count| format!("{count} sources set {state}"))
            }
            SyncRequest::Reload(specs) => {
                let change = self.client.replace_names(&specs, now);
                info!(
                    added = ?change.added,
                    removed = ?change.removed,
                    changed = ?change.changed,
                    unchanged = change.unchanged,
                    "sources reloaded"
                );
                Ok(format!(
                    "sources: {} added, {} removed, {} changed, {} unchanged",
                    change.added.len(),
                    change.removed.len(),
                    change.changed.len(),
                    change.unchanged
                ))
            }
        };
        // The step applied, a new source's name resolved and its first request sent, and the
        // status current before the operator hears back.
        self.drive();
        self.publish();
        let _ = command.reply.send(result.map_err(|e| e.to_string()));
    }

    fn add_source(&mut self, spec: NameSpec, now: Instant) -> Result<String, CommandError> {
        if let Ok(SourceAddress::Ip(address)) = SourceAddress::parse(&spec.name)
            && self.client.source_at(address).is_some()
        {
            return Err(CommandError::AlreadyUsed(address));
        }
        info!(source = %spec.name, "source added by the operator");
        let name = spec.name.clone();
        self.client
            .add_operator_name(&spec.name, spec.kind, spec.config, now);
        Ok(format!("source {name} added"))
    }

    fn handle_arrival(&mut self, arrival: Arrival) {
        self.client.handle_reply(
            Instant::now(),
            self.shared.clock.now(),
            arrival.source,
            arrival.t1,
            arrival.t4,
            &arrival.bytes,
            Some(arrival.local),
        );
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Clock(action) => self.apply(action),
            Event::System(event) => self.log_system_event(event),
            Event::SourceAdded(id, address) => {
                self.addresses.insert(id, address);
                let name = self.names.get(&address).map_or("", String::as_str);
                info!(source = %address, name, "new source");
            }
            Event::Reply(id, outcome) => self.log_reply(id, outcome),
            Event::SourceReplaced { old, new, reason } => {
                self.addresses.remove(&old.0);
                let name = self.names.get(&new.1).map_or("", String::as_str);
                warn!(
                    old = %old.1,
                    new = %new.1,
                    name,
                    reason = reason.name(),
                    "source replaced by a fresh address of its name"
                );
            }
        }
    }

    /// Applies a clock action at once: the core assumes it took effect when it was decided.
    fn apply(&self, action: ClockAction) {
        let clock = &self.shared.clock;
        let result = match action {
            ClockAction::Step {
                offset,
                frequency_ppm,
            } => clock
                .step(offset)
                .and_then(|()| clock.slew(NtpDuration::ZERO, frequency_ppm, None)),
            ClockAction::Leap {
                offset,
                frequency_ppm,
            } => clock
                .leap(offset)
                .and_then(|()| clock.slew(NtpDuration::ZERO, frequency_ppm, None)),
            ClockAction::Slew {
                offset,
                frequency_ppm,
                rate_ppm,
            } => clock.slew(offset, frequency_ppm, Some(rate_ppm)),
            ClockAction::Refused { .. } | ClockAction::Ignored => Ok(()),
        };
        if let Err(e) = result {
            error!(error = %e, "clock adjustment failed");
        }
    }

    fn address_of(&self, id: SourceId) -> String {
        self.addresses
            .get(&id)
            .map_or_else(|| id.to_string(), ToString::to_string)
    }

    fn log_system_event(&self, event: SystemEvent) {
        match event {
            SystemEvent::Step(offset) => warn!(offset = offset.to_seconds_f64(), "clock stepped"),
            SystemEvent::Refused(offset) => error!(
                offset = offset.to_seconds_f64(),
                "offset exceeds panic-threshold: clock NOT adjusted; check the sources, or restart to accept it"
            ),
            SystemEvent::SyncGained(id) => info!(source = %self.address_of(id), "synchronized"),
            SystemEvent::PeerChanged(id) => {
                info!(source = %self.address_of(id), "system peer changed");
            }
            SystemEvent::SyncLost => warn!("lost synchronization: serving as unsynchronized"),
            SystemEvent::ClockJumped(jump) => warn!(
                jump = jump.to_seconds_f64(),
                "the clock was set by something else; correcting it like any offset"
            ),
            SystemEvent::SourceChanged(
                id,
                state @ (SourceState::Falseticker | SourceState::Unreachable),
            ) => {
                warn!(source = %self.address_of(id), state = state.name(), "source state changed");
            }
            SystemEvent::SourceChanged(id, state) => {
                info!(source = %self.address_of(id), state = state.name(), "source state changed");
            }
            SystemEvent::LeapPending(Some((leap, origin))) => info!(
                kind = leap.kind.name(),
                at = %leap.at.utc_string(),
                from = origin.name(),
                "leap second pending"
            ),
            SystemEvent::LeapPending(None) => info!("no leap second pending"),
            SystemEvent::LeapBegun(leap) => warn!(
                kind = leap.kind.name(),
                at = %leap.at.utc_string(),
                mode = self.leap_mode.name(),
                "leap second"
            ),
            SystemEvent::LeapArm(kind) => {
                if let Err(e) = self.shared.clock.announce_leap(kind) {
                    error!(error = %e, "cannot tell the kernel of the leap second; it will be stepped");
                }
            }
        }
    }

    fn log_reply(&self, id: SourceId, outcome: ReplyOutcome) {
        let source = self.address_of(id);
        match outcome {
            ReplyOutcome::Rejected(why @ ReplyError::Kiss(_)) => {
                warn!(source, reason = %why, "source sent a kiss-o'-death");
            }
            ReplyOutcome::Rejected(why @ ReplyError::Unauthenticated(AuthError::CryptoNak)) => {
                warn!(source, reason = %why, "source does not accept our key");
            }
            ReplyOutcome::Rejected(why) => debug!(source, reason = %why, "reply rejected"),
            ReplyOutcome::Straddled => debug!(source, "reply straddles a clock step; not used"),
            ReplyOutcome::Unexpected => debug!(source, "duplicate or unexpected reply ignored"),
            ReplyOutcome::Malformed => debug!(source, "malformed reply ignored"),
            ReplyOutcome::Held => debug!(source, "broadcast held to calibrate the delay"),
            ReplyOutcome::Accepted => {}
        }
    }

    /// Shares the system variables with the server workers and the status with the control
    /// socket.
    fn publish(&self) {
        let now = self.shared.clock.now();
        self.shared.publish(self.client.serving_snapshot(now));
        let sources = self.client.sources(now).iter().map(status_row).collect();
        self.shared.set_sync_status(SyncStatus {
            offset: self.client.last_offset().map(NtpDuration::to_seconds_f64),
            sources,
            leap: Some(leap_report(&self.client.leap_status(now))),
            broadcast_strays: self.broadcast_strays,
        });
    }

    fn save_drift(&self) {
        if let Some(path) = &self.drift_file {
            save_drift_file(path, self.client.frequency_ppm());
        }
    }
}

/// One source as `status` shows it.
fn status_row(report: &SourceReport) -> SourceStatus {
    let estimate = report.estimate;
    SourceStatus {
        address: report.address.to_string(),
        reach: report.reach,
        poll: report.poll.get(),
        stratum: report.stratum,
        kind: report.kind.name().to_owned(),
        offset: estimate.map_or(0.0, |e| e.offset.to_seconds_f64()),
        delay: estimate.map_or(0.0, |e| e.delay.to_seconds_f64()),
        jitter: estimate.map_or(0.0, |e| e.jitter.to_seconds_f64()),
        state: report.state.name().to_owned(),
        sent: report.counters.sent,
        accepted: report.counters.accepted,
        rejected: report.counters.rejected,
        ignored: report.counters.ignored,
        interleaved: report.counters.interleaved,
        key: report.key.map(|k| k.0),
        offline: !report.online,
        reason: match report.state {
            SourceState::Rejected(why) => Some(why.to_string()),
            _ => None,
        },
        samples: estimate.map_or(0, |e| e.samples),
        frequency_ppm: estimate.and_then(|e| e.frequency).map(|(f, _)| f * 1e6),
        frequency_error_ppm: estimate.and_then(|e| e.frequency).map(|(_, sd)| sd * 1e6),
        offset_error: estimate.map_or(0.0, |e| e.offset_sd),
        nts_cookies: report.nts_cookies,
    }
}

fn read_drift_file(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.split_whitespace().next().map(str::parse::<f64>) {
        Some(Ok(ppm)) if ppm.is_finite() => Some(ppm),
        _ => {
            warn!(path = %path.display(), "drift file is not a number of ppm; ignoring it");
            None
        }
    }
}

fn save_drift_file(path: &Path, ppm: f64) {
    let temporary = path.with_extension("tmp");
    let result = std::fs::write(&temporary, format!("{ppm:.6}\n"))
        .and_then(|()| std::fs::rename(&temporary, path));
    match result {
        Ok(()) => debug!(path = %path.display(), frequency_ppm = ppm, "drift file saved"),
        Err(e) => warn!(path = %path.display(), error = %e, "cannot save the drift file"),
    }
}

/// The addresses of `name`, a source's address as [`SourceAddress::parse`] reads it.
async fn lookup(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    let (host, port) = match SourceAddress::parse(name) {
        Ok(SourceAddress::Ip(address)) => return Ok(vec![address]),
        Ok(SourceAddress::Name { host, port }) => (host, port),
        Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)),
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .collect();
    if found.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no addresses",
        ));
    }
    Ok(found)
}

/// One request and its replies: a fresh socket with a random port, registered with the runtime
/// only once the request is out; T1 is the kernel's transmit timestamp of the request (read from
/// the error queue when the first reply arrives), or the clock read just before the send if the
/// kernel gives none; T4 is the kernel receive timestamp. Every datagram that arrives within
/// `transmit.wait` is handed on (duplicates included: the core discards them); then the socket
/// closes.
async fn exchange(
    transmit: &Transmit,
    shared: &Shared,
    arrivals: &mpsc::Sender<Arrival>,
) -> std::io::Result<()> {
    let bind: SocketAddr = if transmit.address.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(std::io::Error::other)?;
    // The request leaves before the socket joins the runtime's epoll: the kernel queues its
    // transmit timestamp on the way out, and a runtime thread parked on the socket would be woken
    // between that timestamp and the packet's arrival, a microsecond late and only outbound.
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.connect(transmit.address)?;
    socket.set_nonblocking(true)?;
    net::enable_timestamps(&socket)?;
    // Best effort: without it T1 is read in user space.
    let kernel_tx = net::enable_tx_timestamps(&socket, true).is_ok();
    let local = socket.local_addr()?.ip();
    let deadline = tokio::time::Instant::now() + transmit.wait;
    let mut t1 = shared.clock.now();
    socket.send(&transmit.bytes)?;
    let socket = UdpSocket::from_std(socket)?;
    let mut t1_from_kernel = false;
    let mut buffer = [0u8; 1024];
    loop {
        let received = tokio::time::timeout_at(
            deadline,
            socket.async_io(Interest::READABLE, || {
                net::recv_timestamped(socket.as_raw_fd(), &mut buffer)
            }),
        )
        .await;
        let Ok(received) = received else {
            return Ok(());
        };
        let (len, kernel_time) = received?;
        if kernel_tx && !t1_from_kernel {
            net::read_tx_timestamps(socket.as_raw_fd(), |_, sent| {
                t1 = shared.clock.at(sent);
                t1_from_kernel = true;
            });
        }
        let t4 = kernel_time.map_or_else(|| shared.clock.now(), |t| shared.clock.at(t));
        let arrival = Arrival {
            source: transmit.source,
            t1,
            t4,
            local,
            bytes: buffer[..len].to_vec(),
        };
        if arrivals.send(arrival).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_behind_a_wildcard_sees_us_as_the_routes_source_address() {
        let peer: SocketAddr = "127.0.0.1:123".parse().expect("address");
        assert_eq!(
            net::route_source(peer).expect("a route to loopback"),
            peer.ip()
        );
    }
}
