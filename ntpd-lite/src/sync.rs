//! The client half's IO shell: resolves the configured sources, sends each request from a fresh
//! socket with a random source port (RFC 9109), timestamps replies with the kernel's receive time,
//! feeds everything to `ntp_proto::Source` and `ntp_proto::System`, and applies the clock actions
//! they return. No protocol decisions are made here.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ntp_proto::sample::ReplyLimits;
use ntp_proto::system::{SourceState, SyncConfig, System, SystemEvent};
use ntp_proto::{
    ClockAction, DisciplineConfig, NtpDuration, NtpTimestamp, PollInterval, ReplyOutcome, Source,
    SourceConfig, Version,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::config::{ClockMode, Config, SourceKind};
use crate::net;
use crate::state::{Shared, SourceStatus};

/// How often unresolved source names are looked up again, and the holdover checked.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How often names that did not resolve are retried.
const RESOLVE_RETRY: Duration = Duration::from_secs(30);
/// Longest wait for the reply to one request.
const MAX_REPLY_WAIT: Duration = Duration::from_secs(4);
/// How often the drift file is written while running.
const DRIFT_SAVE: Duration = Duration::from_secs(600);

/// A reply as the IO layer saw it.
#[derive(Debug)]
struct Arrival {
    source: usize,
    t1: NtpTimestamp,
    t4: NtpTimestamp,
    local: IpAddr,
    bytes: Vec<u8>,
}

/// One configured `[[source]]` entry and the sources it has become.
#[derive(Debug)]
struct Entry {
    name: String,
    kind: SourceKind,
    limit: usize,
    config: SourceConfig,
    resolved: bool,
}

/// The sync task's state.
struct Sync {
    shared: Arc<Shared>,
    entries: Vec<Entry>,
    sources: Vec<Source>,
    addresses: Vec<SocketAddr>,
    system: System,
    limits: ReplyLimits,
    drift_file: Option<std::path::PathBuf>,
    arrivals: mpsc::Sender<Arrival>,
}

/// Runs the client half until shutdown; saves the drift file on the way out.
pub async fn run(config: Config, shared: Arc<Shared>) {
    let (arrivals, mut incoming) = mpsc::channel(256);
    let mut sync = Sync::new(&config, Arc::clone(&shared), arrivals);
    sync.publish();
    sync.resolve_pending().await;
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut last_resolve = Instant::now();
    let mut last_drift_save = Instant::now();
    while !shared.stopping() {
        let deadline = sync.next_deadline();
        tokio::select! {
            () = sleep_until(deadline) => sync.poll_due(),
            Some(arrival) = incoming.recv() => sync.handle_arrival(arrival),
            _ = housekeeping.tick() => {
                sync.housekeeping();
                if last_resolve.elapsed() > RESOLVE_RETRY {
                    last_resolve = Instant::now();
                    sync.resolve_pending().await;
                }
                if last_drift_save.elapsed() > DRIFT_SAVE {
                    last_drift_save = Instant::now();
                    sync.save_drift();
                }
            }
            () = shared.shutdown_requested() => break,
        }
    }
    sync.save_drift();
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

impl Sync {
    fn new(config: &Config, shared: Arc<Shared>, arrivals: mpsc::Sender<Arrival>) -> Self {
        let entries = config
            .sources
            .iter()
            .map(|s| Entry {
                name: s.address.clone(),
                kind: s.kind,
                limit: if s.kind == SourceKind::Pool {
                    s.max_sources
                } else {
                    usize::MAX
                },
                config: SourceConfig {
                    min_poll: s.minpoll,
                    max_poll: s.maxpoll,
                    iburst: s.iburst,
                    version: Version::V4,
                },
                resolved: false,
            })
            .collect::<Vec<_>>();
        let min_poll = entries
            .iter()
            .map(|e| e.config.min_poll)
            .min()
            .unwrap_or(PollInterval::new(6));
        let max_poll = entries
            .iter()
            .map(|e| e.config.max_poll)
            .max()
            .unwrap_or(PollInterval::new(10));
        let sync_config = SyncConfig {
            min_sources: config.sync.min_sources,
            holdover: NtpDuration::from_seconds_f64(config.sync.holdover),
            monitor_only: config.clock.mode == ClockMode::Monitor,
            local_reference: config.local.as_ref().map(|l| (l.stratum, l.refid)),
            discipline: DisciplineConfig {
                step_threshold: NtpDuration::from_seconds_f64(config.sync.step_threshold),
                panic_threshold: Some(NtpDuration::from_seconds_f64(config.sync.panic_threshold)),
                max_slew_ppm: config.sync.max_slew_ppm,
                max_frequency_ppm: config.sync.max_frequency_ppm,
                min_poll,
                max_poll,
                ..DisciplineConfig::default()
            },
        };
        let drift = config.sync.drift_file.as_deref().and_then(read_drift_file);
        if let Some(ppm) = drift {
            info!(frequency_ppm = ppm, "frequency read from the drift file");
        }
        let system = System::new(sync_config, shared.precision, drift);
        let limits = ReplyLimits {
            local_precision: shared.precision,
            ..ReplyLimits::default()
        };
        Self {
            shared,
            entries,
            sources: Vec::new(),
            addresses: Vec::new(),
            system,
            limits,
            drift_file: config.sync.drift_file.clone(),
            arrivals,
        }
    }

    /// Looks up every entry that has no address yet; a failure is logged and retried later.
    async fn resolve_pending(&mut self) {
        let mut added = false;
        for entry in self.entries.iter_mut().filter(|e| !e.resolved) {
            match resolve(&entry.name).await {
                Ok(found) => {
                    entry.resolved = true;
                    let fresh: Vec<SocketAddr> = found
                        .into_iter()
                        .filter(|a| !self.addresses.contains(a))
                        .take(entry.limit)
                        .collect();
                    for address in fresh {
                        info!(source = %address, name = %entry.name, kind = ?entry.kind, "new source");
                        self.sources
                            .push(Source::new(address.ip(), entry.config, Instant::now()));
                        self.addresses.push(address);
                        added = true;
                    }
                }
                Err(e) => {
                    warn!(name = %entry.name, error = %e, "cannot resolve source; will retry in 30 s");
                }
            }
        }
        if added {
            self.publish();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.sources.iter().filter_map(Source::poll_timeout).min()
    }

    /// Sends the request of every source whose poll is due.
    fn poll_due(&mut self) {
        let now = Instant::now();
        for (index, source) in self.sources.iter_mut().enumerate() {
            let cookie = NtpTimestamp::from_bits(rand::random());
            let Some(request) = source.poll_transmit(now, self.shared.clock.now(), cookie) else {
                continue;
            };
            let wait = ntp_proto::source::duration_of(source.poll()).min(MAX_REPLY_WAIT);
            let (address, shared, arrivals) = (
                self.addresses[index],
                Arc::clone(&self.shared),
                self.arrivals.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = exchange(index, address, request, wait, &shared, &arrivals).await {
                    debug!(source = %address, error = %e, "request failed");
                }
            });
        }
    }

    fn handle_arrival(&mut self, arrival: Arrival) {
        let Some(source) = self.sources.get_mut(arrival.source) else {
            return;
        };
        source.set_local_address(arrival.local);
        let address = self.addresses[arrival.source];
        match source.handle_reply(arrival.t1, arrival.t4, &arrival.bytes, &self.limits) {
            ReplyOutcome::Accepted { released: Some(_) } => self.select(),
            ReplyOutcome::Accepted { released: None } => self.publish(),
            ReplyOutcome::Rejected(why) => {
                if matches!(why, ntp_proto::ReplyError::Kiss(_)) {
                    warn!(source = %address, reason = %why, "source sent a kiss-o'-death");
                } else {
                    debug!(source = %address, reason = %why, "reply rejected");
                }
                self.publish();
            }
            ReplyOutcome::Unexpected => {
                debug!(source = %address, "duplicate or unexpected reply ignored");
            }
            ReplyOutcome::Malformed => debug!(source = %address, "malformed reply ignored"),
        }
    }

    /// A selection round, then the clock action and the events it produced.
    fn select(&mut self) {
        let now = self.shared.clock.now();
        let update = self.system.select(&mut self.sources, now);
        if let Some(action) = update.action {
            self.apply(action);
        }
        for event in update.events {
            self.log_event(event);
        }
        self.publish();
    }

    fn apply(&self, action: ClockAction) {
        let clock = &self.shared.clock;
        let result = match action {
            ClockAction::Step {
                offset,
                frequency_ppm,
            } => clock
                .step(offset)
                .and_then(|()| clock.slew(NtpDuration::ZERO, frequency_ppm)),
            ClockAction::Slew {
                offset,
                frequency_ppm,
            } => clock.slew(offset, frequency_ppm),
            ClockAction::Refused { .. } | ClockAction::Ignored => Ok(()),
        };
        if let Err(e) = result {
            error!(error = %e, "clock adjustment failed");
        }
    }

    fn log_event(&self, event: SystemEvent) {
        let name = |i: usize| {
            self.addresses
                .get(i)
                .map_or_else(|| "?".to_owned(), ToString::to_string)
        };
        match event {
            SystemEvent::Step(offset) => warn!(offset = offset.to_seconds_f64(), "clock stepped"),
            SystemEvent::Refused(offset) => error!(
                offset = offset.to_seconds_f64(),
                "offset exceeds panic-threshold: clock NOT adjusted; check the sources, or restart to accept it"
            ),
            SystemEvent::SyncGained(i) => info!(source = %name(i), "synchronized"),
            SystemEvent::PeerChanged(i) => info!(source = %name(i), "system peer changed"),
            SystemEvent::SyncLost => warn!("lost synchronization: serving as unsynchronized"),
            SystemEvent::SourceChanged(
                i,
                state @ (SourceState::Falseticker | SourceState::Unreachable),
            ) => {
                warn!(source = %name(i), state = state.name(), "source state changed");
            }
            SystemEvent::SourceChanged(i, state) => {
                info!(source = %name(i), state = state.name(), "source state changed");
            }
        }
    }

    /// Once a second: re-judge the sources (one may have stopped answering) and check the
    /// holdover.
    fn housekeeping(&mut self) {
        let now = self.shared.clock.now();
        let mut events = self.system.survey(&self.sources, now);
        events.extend(self.system.check_holdover(now));
        for event in events {
            self.log_event(event);
        }
        self.publish();
    }

    /// Shares the system variables with the server workers and the status with the control socket.
    fn publish(&self) {
        self.shared
            .publish(self.system.serving_snapshot(self.shared.clock.now()));
        let states = self.system.source_states();
        let sources = self
            .sources
            .iter()
            .zip(&self.addresses)
            .enumerate()
            .map(|(i, (source, address))| {
                let estimate = source.estimate();
                SourceStatus {
                    address: address.to_string(),
                    reach: source.reach(),
                    poll: source.poll().get(),
                    stratum: source.last_reply().map_or(0, |r| r.stratum.get()),
                    offset: estimate.map_or(0.0, |e| e.offset.to_seconds_f64()),
                    delay: estimate.map_or(0.0, |e| e.delay.to_seconds_f64()),
                    jitter: estimate.map_or(0.0, |e| e.jitter.to_seconds_f64()),
                    state: states.get(i).map_or("rejected", |s| s.name()).to_owned(),
                    sent: source.counters().sent,
                    accepted: source.counters().accepted,
                    rejected: source.counters().rejected,
                    ignored: source.counters().ignored,
                }
            })
            .collect();
        self.shared.set_sync_status(
            self.system.last_offset().map(NtpDuration::to_seconds_f64),
            sources,
        );
    }

    fn save_drift(&self) {
        let Some(path) = &self.drift_file else { return };
        let ppm = self.system.frequency_ppm();
        let temporary = path.with_extension("tmp");
        let result = std::fs::write(&temporary, format!("{ppm:.6}\n"))
            .and_then(|()| std::fs::rename(&temporary, path));
        match result {
            Ok(()) => debug!(path = %path.display(), frequency_ppm = ppm, "drift file saved"),
            Err(e) => warn!(path = %path.display(), error = %e, "cannot save the drift file"),
        }
    }
}

fn read_drift_file(path: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.split_whitespace().next().map(str::parse::<f64>) {
        Some(Ok(ppm)) if ppm.is_finite() => Some(ppm),
        _ => {
            warn!(path = %path.display(), "drift file is not a number of ppm; ignoring it");
            None
        }
    }
}

/// The addresses of `name`: `host:port`, `[v6]:port`, an address, or a bare host (port 123).
async fn resolve(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(address) = name.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, 123)]);
    }
    let with_port = match name.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => name.to_owned(),
        _ => format!("{name}:123"),
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host(with_port).await?.collect();
    if found.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no addresses",
        ));
    }
    Ok(found)
}

/// One request and its replies: a fresh socket with a random port, T1 read just before the send,
/// T4 from the kernel receive timestamp. Every datagram that arrives within `wait` is handed on
/// (duplicates included: the source state machine discards them).
async fn exchange(
    source: usize,
    address: SocketAddr,
    request: [u8; 48],
    wait: Duration,
    shared: &Shared,
    arrivals: &mpsc::Sender<Arrival>,
) -> std::io::Result<()> {
    let bind: SocketAddr = if address.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(std::io::Error::other)?;
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(address).await?;
    net::enable_timestamps(socket2::SockRef::from(&socket))?;
    let local = socket.local_addr()?.ip();
    let t1 = shared.clock.now();
    socket.send(&request).await?;
    let deadline = tokio::time::Instant::now() + wait;
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
        let t4 = kernel_time.map_or_else(|| shared.clock.now(), |t| shared.clock.at(t));
        let arrival = Arrival {
            source,
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
