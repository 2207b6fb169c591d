//! What the daemon's tasks share: the clock, the served system variables, the server counters,
//! the sync task's status, and the shutdown and serving signals. A leaf module: it knows the
//! clock and `ntp_proto`, and none of the tasks, so every task can import it and none imports
//! another through it. The sync task and the local reference clock write it; the server workers,
//! the control socket and the metrics endpoint read it; `daemon` (start-up) creates it.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use ntp_proto::auth::Seal;
use ntp_proto::server::{ClientLog, ClientRecord, DropReason, Response, Server};
use ntp_proto::{NameSpec, NtpTimestamp, Precision, ReferenceId, SystemSnapshot};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::clock::{self, Clock};

/// State shared between the daemon's tasks and threads.
#[derive(Debug)]
pub struct Shared {
    /// The clock served and disciplined.
    pub clock: Clock,
    /// Its measured precision.
    pub precision: Precision,
    /// True when a local reference clock, not an upstream source, is the reference: the
    /// reference ID is then a name, whatever the stratum.
    pub local_reference: bool,
    snapshot: ArcSwap<SystemSnapshot>,
    stop: AtomicBool,
    shutdown: Notify,
    server_stats: Mutex<Vec<Arc<ServerStats>>>,
    /// Closed until the daemon's privileges are settled; server workers wait at it.
    serving_gate: (Mutex<bool>, Condvar),
    sync_status: Mutex<SyncStatus>,
    /// Configured peers' packets, from the server workers to the sync task.
    peer_inbox: mpsc::Sender<PeerEvent>,
    peer_receiver: Mutex<Option<mpsc::Receiver<PeerEvent>>>,
    /// A socket on each listen address, for the sync task's requests to peers.
    peer_sockets: Mutex<Vec<(SocketAddr, Arc<UdpSocket>)>>,
    /// The server's policy, which the workers load per batch and a reload replaces whole.
    server: ArcSwapOption<Server>,
    /// Each server worker's log of its clients.
    client_logs: Mutex<Vec<Arc<Mutex<ClientLog>>>>,
    /// Operators' commands, from the control socket to the sync task.
    commands: mpsc::Sender<SyncCommand>,
    command_receiver: Mutex<Option<mpsc::Receiver<SyncCommand>>>,
    /// Operators' `reload`, from the control socket to the signal loop (SIGHUP's reloader).
    reloads: mpsc::Sender<oneshot::Sender<CommandReply>>,
    reload_receiver: Mutex<Option<mpsc::Receiver<oneshot::Sender<CommandReply>>>>,
}

/// What an operator's command did, as a line for the operator, or why it did nothing.
pub type CommandReply = Result<String, String>;

/// Longest wait for the sync task or the reloader to answer an operator's command.
const COMMAND_REPLY_TIMEOUT: Duration = Duration::from_secs(4);
/// Operators' commands waiting for the sync task.
const COMMAND_QUEUE: usize = 8;

/// An operator's command for the sync task, which owns the sources.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncRequest {
    /// Step the clock to the sources' time now.
    MakeStep,
    /// Four requests to every online source now.
    Burst,
    /// Add a source (not one of the configuration's: a reload leaves it alone).
    AddSource(NameSpec),
    /// Remove the source at this address.
    RemoveSource(SocketAddr),
    /// Take the source at this address (or every source) offline or back online.
    SetOnline {
        /// One source, or all.
        address: Option<SocketAddr>,
        /// Online or offline.
        online: bool,
    },
    /// The configuration's `server` and `pool` sources, reread.
    Reload(Vec<NameSpec>),
}

/// A command with the channel its answer goes back on.
#[derive(Debug)]
pub struct SyncCommand {
    /// What to do.
    pub request: SyncRequest,
    /// Where the answer goes.
    pub reply: oneshot::Sender<CommandReply>,
}

/// What a server worker tells the sync task, which owns the peers' associations, of a configured
/// peer's traffic on a listen socket.
#[derive(Debug)]
pub enum PeerEvent {
    /// A packet that may answer our request.
    Received(PeerDatagram),
    /// Its poll was answered in symmetric passive mode with this transmit timestamp.
    Answered {
        /// The peer.
        to: SocketAddr,
        /// The answer's transmit timestamp, read just before it left.
        transmit: NtpTimestamp,
    },
}

/// A configured peer's packet that may answer our request.
#[derive(Debug)]
pub struct PeerDatagram {
    /// The peer's address.
    pub from: SocketAddr,
    /// The listen address it arrived at.
    pub local: SocketAddr,
    /// T4: its kernel receive time, on our clock.
    pub t4: NtpTimestamp,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// Peer packets waiting for the sync task; beyond this they are dropped (a peer sends one per
/// poll).
const PEER_QUEUE: usize = 64;

/// What the sync task last reported, for the control socket.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// The last combined offset, seconds.
    pub offset: Option<f64>,
    /// Every source.
    pub sources: Vec<SourceStatus>,
    /// The leap second state.
    pub leap: Option<LeapReport>,
    /// Datagrams at a broadcast address from no configured broadcast server, dropped.
    pub broadcast_strays: u64,
}

/// The leap second state, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeapReport {
    /// `step`, `slew`, `smear` or `ignore`.
    pub mode: String,
    /// The coming leap, if one is known.
    pub pending: Option<PendingLeap>,
    /// What a majority of the selected sources announce: `insert`, `delete` or null.
    pub vote: Option<String>,
    /// What we announce to clients now: `insert`, `delete` or null.
    pub announced: Option<String>,
    /// The leap-seconds file's expiry (UTC), if one is used.
    pub file_expires: Option<String>,
    /// True once the file has expired.
    #[serde(default)]
    pub file_expired: bool,
}

/// A coming leap second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingLeap {
    /// `insert` or `delete`.
    pub kind: String,
    /// The midnight (UTC) it ends, e.g. `2017-01-01 00:00:00`.
    pub at: String,
    /// `file` or `vote`.
    pub from: String,
}

impl Shared {
    /// Shared state for `clock`, unsynchronized until something says otherwise.
    pub fn new(clock: Clock, local_reference: bool) -> Self {
        let precision = clock::measure_precision(&clock);
        let (peer_inbox, peer_receiver) = mpsc::channel(PEER_QUEUE);
        let (commands, command_receiver) = mpsc::channel(COMMAND_QUEUE);
        let (reloads, reload_receiver) = mpsc::channel(1);
        Self {
            clock,
            precision,
            local_reference,
            snapshot: ArcSwap::from_pointee(SystemSnapshot::unsynchronized(precision)),
            stop: AtomicBool::new(false),
            shutdown: Notify::new(),
            server_stats: Mutex::new(Vec::new()),
            serving_gate: (Mutex::new(false), Condvar::new()),
            sync_status: Mutex::new(SyncStatus::default()),
            peer_inbox,
            peer_receiver: Mutex::new(Some(peer_receiver)),
            peer_sockets: Mutex::new(Vec::new()),
            server: ArcSwapOption::empty(),
            client_logs: Mutex::new(Vec::new()),
            commands,
            command_receiver: Mutex::new(Some(command_receiver)),
            reloads,
            reload_receiver: Mutex::new(Some(reload_receiver)),
        }
    }

    /// The receiving end of the operators' commands: the sync task takes it once.
    pub fn take_command_receiver(&self) -> Option<mpsc::Receiver<SyncCommand>> {
        lock(&self.command_receiver).take()
    }

    /// Hands an operator's command to the sync task and waits for its answer.
    pub async fn ask_sync(&self, request: SyncRequest) -> CommandReply {
        if lock(&self.command_receiver).is_some() {
            return Err(
                "this daemon runs no client (it started without [[source]], [[peer]] \
                        or [local]): add a [[source]] to its configuration and restart it"
                    .to_owned(),
            );
        }
        let (reply, answer) = oneshot::channel();
        let command = SyncCommand { request, reply };
        if self.commands.send(command).await.is_err() {
            return Err("the sync task has stopped; see the daemon's log".to_owned());
        }
        await_answer(answer).await
    }

    /// The receiving end of the operators' `reload`: the signal loop takes it once.
    pub fn take_reload_receiver(&self) -> Option<mpsc::Receiver<oneshot::Sender<CommandReply>>> {
        lock(&self.reload_receiver).take()
    }

    /// Asks for the configuration to be reread, as SIGHUP does, and waits for what it did.
    pub async fn ask_reload(&self) -> CommandReply {
        let (reply, answer) = oneshot::channel();
        if self.reloads.try_send(reply).is_err() {
            return Err("a reload is already under way; try again in a moment".to_owned());
        }
        await_answer(answer).await
    }

    /// The server's policy now, if the daemon serves.
    pub fn server(&self) -> Option<Arc<Server>> {
        self.server.load_full()
    }

    /// Replaces the server's policy: the workers use it from their next batch on.
    pub fn set_server(&self, server: Arc<Server>) {
        self.server.store(Some(server));
    }

    /// Adds a server worker's client log to those `clients` reads.
    pub fn register_client_log(&self, log: Arc<Mutex<ClientLog>>) {
        lock(&self.client_logs).push(log);
    }

    /// The `count` busiest clients over every worker's log.
    pub fn busiest_clients(&self, count: usize) -> Vec<ClientRecord> {
        let logs = lock(&self.client_logs).clone();
        let records: Vec<ClientRecord> = logs
            .iter()
            .flat_map(|log| lock(log).records().collect::<Vec<_>>())
            .collect();
        ClientLog::busiest(records, count)
    }

    /// Tells the sync task of a configured peer's traffic; false if its queue is full (or it is
    /// not running), and the event is dropped.
    pub fn hand_to_peer(&self, event: PeerEvent) -> bool {
        self.peer_inbox.try_send(event).is_ok()
    }

    /// The receiving end of the peers' events: the sync task takes it once.
    pub fn take_peer_receiver(&self) -> Option<mpsc::Receiver<PeerEvent>> {
        self.peer_receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Offers a socket bound to the listen address `address` for requests to peers.
    pub fn add_peer_socket(&self, address: SocketAddr, socket: UdpSocket) {
        self.peer_sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((address, Arc::new(socket)));
    }

    /// A listen socket of `peer`'s address family, with its address: requests to the peer leave
    /// from it, so that the peer's answers and polls arrive where the server workers listen.
    pub fn peer_socket(&self, peer: SocketAddr) -> Option<(SocketAddr, Arc<UdpSocket>)> {
        self.peer_sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(address, _)| address.is_ipv4() == peer.is_ipv4())
            .map(|(address, socket)| (*address, Arc::clone(socket)))
    }

    /// The current system variables (lock-free).
    pub fn snapshot(&self) -> Guard<Arc<SystemSnapshot>> {
        self.snapshot.load()
    }

    /// Replaces the system variables.
    pub fn publish(&self, snapshot: SystemSnapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Begins shutdown: [`stopping`](Self::stopping) turns true and every
    /// [`shutdown_requested`](Self::shutdown_requested) resolves.
    pub fn request_shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.shutdown.notify_waiters();
    }

    /// True once shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Resolves when shutdown is requested.
    pub async fn shutdown_requested(&self) {
        let notified = self.shutdown.notified();
        if !self.stopping() {
            notified.await;
        }
    }

    /// Records what the sync task knows for `status`.
    pub fn set_sync_status(&self, status: SyncStatus) {
        *self
            .sync_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// What the sync task last reported.
    pub fn sync_status(&self) -> SyncStatus {
        self.sync_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Lets the server workers answer: called once privileges are settled.
    pub fn open_serving_gate(&self) {
        let (open, changed) = &self.serving_gate;
        *open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        changed.notify_all();
    }

    /// Blocks a server worker until the gate opens (requests wait in the socket's buffer).
    pub fn wait_for_serving_gate(&self) {
        let (open, changed) = &self.serving_gate;
        let guard = open.lock().unwrap_or_else(PoisonError::into_inner);
        let _open = changed
            .wait_while(guard, |open| !*open)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Adds a server worker's counters to the totals.
    pub fn register_server_stats(&self, stats: Arc<ServerStats>) {
        self.server_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stats);
    }

    /// The server counters summed over workers; `None` when the daemon serves no one (no
    /// `[server]`).
    pub fn server_totals(&self) -> Option<ServerTotals> {
        let stats = self
            .server_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (!stats.is_empty()).then(|| ServerTotals::sum(&stats))
    }
}

/// Locks `mutex`, whatever a panicking holder left in it.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn await_answer(answer: oneshot::Receiver<CommandReply>) -> CommandReply {
    match tokio::time::timeout(COMMAND_REPLY_TIMEOUT, answer).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => Err("the command was dropped unanswered; see the daemon's log".to_owned()),
        Err(_) => Err(format!(
            "no answer within {} s; see the daemon's log",
            COMMAND_REPLY_TIMEOUT.as_secs()
        )),
    }
}

fn server_kind() -> String {
    "server".to_owned()
}

/// One upstream source, as the sync task reports it (in `status` and `sources`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Address and port.
    pub address: String,
    /// The 8-bit reach register.
    pub reach: u8,
    /// The current poll interval, log2 seconds.
    pub poll: i8,
    /// Its stratum.
    pub stratum: u8,
    /// `server` or `peer`.
    #[serde(default = "server_kind")]
    pub kind: String,
    /// Its offset, seconds.
    pub offset: f64,
    /// Its round-trip delay, seconds.
    pub delay: f64,
    /// Its jitter, seconds.
    pub jitter: f64,
    /// `selected`, `candidate`, `falseticker`, `unreachable` or `rejected`.
    pub state: String,
    /// Requests sent.
    #[serde(default)]
    pub sent: u64,
    /// Valid replies used (never more than `sent`).
    #[serde(default)]
    pub accepted: u64,
    /// Replies that failed a check.
    #[serde(default)]
    pub rejected: u64,
    /// Duplicate, stray or malformed datagrams, never used.
    #[serde(default)]
    pub ignored: u64,
    /// Of the accepted, interleaved replies (`xleave`): the server's precise transmit times.
    #[serde(default)]
    pub interleaved: u64,
    /// The ID of the symmetric key that authenticates it, if any.
    #[serde(default)]
    pub key: Option<u32>,
    /// True while an operator has taken it offline.
    #[serde(default)]
    pub offline: bool,
    /// Why it may not be selected, when its state is `rejected`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Samples its statistics hold.
    #[serde(default)]
    pub samples: usize,
    /// Its frequency relative to ours and that estimate's standard error, ppm (`null` before
    /// three samples).
    #[serde(default)]
    pub frequency_ppm: Option<f64>,
    /// The standard error of `frequency_ppm`.
    #[serde(default)]
    pub frequency_error_ppm: Option<f64>,
    /// The standard error of its offset now, seconds.
    #[serde(default)]
    pub offset_error: f64,
    /// For an NTS-authenticated source (RFC 8915), the cookies it holds.
    #[serde(default)]
    pub nts_cookies: Option<usize>,
}

/// Counters of one server worker, written only by it.
#[derive(Debug, Default)]
pub struct ServerStats {
    received: AtomicU64,
    responses: AtomicU64,
    kod_rate: AtomicU64,
    kod_deny: AtomicU64,
    authenticated: AtomicU64,
    crypto_naks: AtomicU64,
    nts: AtomicU64,
    nts_naks: AtomicU64,
    send_errors: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl ServerStats {
    /// Counts a datagram received.
    pub fn count_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a datagram dropped for `reason`.
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response sent, which kiss-o'-death it is, if one, and whether it carries a MAC
    /// or a crypto-NAK.
    pub fn count_response(&self, response: &Response) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        match (response.kiss_code(), response.nts()) {
            (Some(ReferenceId::RATE), _) => self.kod_rate.fetch_add(1, Ordering::Relaxed),
            (Some(_), Some(_)) => self.nts_naks.fetch_add(1, Ordering::Relaxed),
            (Some(_), None) => self.kod_deny.fetch_add(1, Ordering::Relaxed),
            (None, Some(_)) => self.nts.fetch_add(1, Ordering::Relaxed),
            (None, None) => 0,
        };
        match response.seal() {
            Seal::Key(_) => self.authenticated.fetch_add(1, Ordering::Relaxed),
            Seal::CryptoNak => self.crypto_naks.fetch_add(1, Ordering::Relaxed),
            Seal::None => 0,
        };
    }

    /// Counts a batch the kernel would not send.
    pub fn count_send_error(&self) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters summed over all server workers: in `status --json`, and read back from it by the
/// `status` table.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ServerTotals {
    /// Datagrams received.
    pub received: u64,
    /// Responses sent (kiss-o'-death included).
    pub responses: u64,
    /// Kiss-o'-death RATE sent.
    pub kod_rate: u64,
    /// Kiss-o'-death DENY sent.
    pub kod_deny: u64,
    /// Responses with a MAC under the request's key.
    pub authenticated: u64,
    /// Crypto-NAKs sent: requests with an unknown key or a MAC that did not verify.
    pub crypto_naks: u64,
    /// NTS-authenticated responses (RFC 8915), each with fresh cookies.
    #[serde(default)]
    pub nts: u64,
    /// NTS NAKs sent (kiss code NTSN): NTS requests with a cookie we cannot read.
    #[serde(default)]
    pub nts_naks: u64,
    /// Responses the kernel would not send.
    pub send_errors: u64,
    /// Datagrams dropped, by reason (`DropReason::name`).
    pub dropped: BTreeMap<String, u64>,
}

impl ServerTotals {
    /// Sums the counters of every worker.
    pub fn sum(stats: &[Arc<ServerStats>]) -> Self {
        let mut totals = Self::default();
        for reason in DropReason::ALL {
            totals.dropped.insert(reason.name().to_owned(), 0);
        }
        for s in stats {
            totals.received += s.received.load(Ordering::Relaxed);
            totals.responses += s.responses.load(Ordering::Relaxed);
            totals.kod_rate += s.kod_rate.load(Ordering::Relaxed);
            totals.kod_deny += s.kod_deny.load(Ordering::Relaxed);
            totals.authenticated += s.authenticated.load(Ordering::Relaxed);
            totals.crypto_naks += s.crypto_naks.load(Ordering::Relaxed);
            totals.nts += s.nts.load(Ordering::Relaxed);
            totals.nts_naks += s.nts_naks.load(Ordering::Relaxed);
            totals.send_errors += s.send_errors.load(Ordering::Relaxed);
            for reason in DropReason::ALL {
                *totals.dropped.entry(reason.name().to_owned()).or_default() +=
                    s.drops[reason.index()].load(Ordering::Relaxed);
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_every_worker_and_name_every_drop_reason() {
        let (a, b) = (
            Arc::new(ServerStats::default()),
            Arc::new(ServerStats::default()),
        );
        a.count_received();
        a.count_drop(DropReason::RateLimited);
        b.count_received();
        b.count_received();
        b.count_drop(DropReason::RateLimited);
        b.count_send_error();
        let totals = ServerTotals::sum(&[a, b]);
        assert_eq!(totals.received, 3);
        assert_eq!(totals.send_errors, 1);
        assert_eq!(totals.dropped["rate_limited"], 2);
        assert_eq!(totals.dropped.len(), DropReason::ALL.len());
        assert!(
            DropReason::ALL
                .iter()
                .all(|r| totals.dropped.contains_key(r.name()))
        );
    }
}
