//! Server workers: threads that take datagrams in batches, ask `ntp_proto::Server` what to do,
//! stamp the responses just before sending, and count everything. No protocol decisions here.
//!
//! Each worker has its own socket on the listen address, in an SO_REUSEPORT group (the kernel
//! spreads clients over the workers' queues by address and port), so workers never wake each
//! other. The group only forms on a port nobody holds (see `bind_group`): a second daemon on the
//! same port fails to bind rather than silently sharing the traffic.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ntp_proto::NtpTimestamp;
use ntp_proto::auth::{KeyId, Keys};
use ntp_proto::interleave::TransmitLog;
use ntp_proto::server::{
    AccessList, ClientLog, Decision, DropReason, RateLimiter, Response, Server,
};
use socket2::Socket;
use tracing::{debug, info, warn};

use crate::config::{self, ServerConfig};
use crate::net::{self, BATCH, RecvBatch, SendBatch};
use crate::nts::CookieKeyStore;
use crate::state::{self, PeerDatagram, PeerEvent, ServerStats, Shared};

/// How long a blocked worker waits before checking for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// Binds every listen address and starts its workers. Fails if any address cannot be bound.
/// `peers` are the configured symmetric peers: their packets go to the sync task, which sends
/// its requests to them from a clone of each address's first socket. Requests signed with one of
/// `keys` are answered signed; a peer in `peer_keys` must sign with its key. With `nts`, NTS
/// requests (RFC 8915) are answered under its cookie keys.
pub fn start(
    config: &ServerConfig,
    peers: &[SocketAddr],
    (keys, peer_keys): (Keys, Vec<(SocketAddr, KeyId)>),
    nts: Option<Arc<CookieKeyStore>>,
    shared: &Arc<Shared>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let rate_limiter = config
        .rate_limit
        .map(|r| RateLimiter::new(r, Instant::now()));
    let server = Server::new(access_list(config), rate_limiter)
        .with_peers(peers.to_vec(), config.passive_peers)
        .with_keys(keys, peer_keys);
    shared.set_server(Arc::new(server));
    let workers = config.workers.unwrap_or_else(default_workers);
    let mut handles = Vec::new();
    for &address in &config.listen {
        // An IPv6 wildcard also takes IPv4 unless an IPv4 wildcard on the same port is listed too.
        let v6_only = config::v6_only(address, &config.listen);
        let (sockets, address) = bind_group(address, v6_only, workers)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {address}: {e}")))?;
        // The bound address: with port 0 in the configuration, the kernel chose the port.
        info!(%address, workers, "serving NTP");
        if let Some(first) = sockets.first().filter(|_| !peers.is_empty()) {
            shared.add_peer_socket(address, first.try_clone()?.into());
        }
        // One log for the group: a client's requests may reach any of its workers.
        let transmits = Arc::new(Mutex::new(TransmitLog::default()));
        for (index, socket) in sockets.into_iter().enumerate() {
            let stats = Arc::new(ServerStats::default());
            shared.register_server_stats(Arc::clone(&stats));
            let clients = Arc::new(Mutex::new(ClientLog::default()));
            shared.register_client_log(Arc::clone(&clients));
            let shared = Arc::clone(shared);
            let nts = nts.clone();
            let transmits = Arc::clone(&transmits);
            let handle = std::thread::Builder::new()
                .name(format!("ntp-serve-{index}"))
                .spawn(move || {
                    worker(
                        &socket,
                        nts.as_deref(),
                        &shared,
                        (&stats, &clients),
                        &transmits,
                        address,
                    );
                })?;
            handles.push(handle);
        }
    }
    Ok(handles)
}

/// The access list of `config`, logged when it has entries (a big one takes a while to build).
pub fn access_list(config: &ServerConfig) -> AccessList {
    let started = Instant::now();
    let access = AccessList::new(
        config.allow.iter().copied(),
        config.deny.iter().copied(),
        config.deny_action,
    );
    if access.allow_len() + access.deny_len() > 0 {
        info!(
            allow = access.allow_len(),
            deny = access.deny_len(),
            ms = started.elapsed().as_millis() as u64,
            "access list ready (distinct prefixes)"
        );
    }
    access
}

/// One socket per worker on `address`: with several workers, an SO_REUSEPORT group, so that each
/// worker has its own receive queue. The group only forms on a free port: a plain bind first
/// proves no one (another daemon included) holds it, and a second ntpd-lite's plain bind then
/// fails on ours, so two daemons never silently share a port. Also returns the bound address
/// (the kernel's port for port 0).
fn bind_group(
    address: SocketAddr,
    v6_only: bool,
    workers: usize,
) -> io::Result<(Vec<Socket>, SocketAddr)> {
    let first = net::bind_server_socket(address, v6_only, SHUTDOWN_POLL, false)?;
    let address = first.local_addr()?.as_socket().unwrap_or(address);
    if workers <= 1 {
        return Ok((vec![first], address));
    }
    drop(first);
    let group = (0..workers)
        .map(|_| net::bind_server_socket(address, v6_only, SHUTDOWN_POLL, true))
        .collect::<io::Result<_>>()?;
    Ok((group, address))
}

/// Tells the sync task of a configured peer's traffic (see [`PeerEvent`]).
fn hand_to_peer(shared: &Shared, event: PeerEvent) {
    if !shared.hand_to_peer(event) {
        debug!("peer queue full: event dropped");
    }
}

/// Workers per listen address when the config does not say: one per CPU, 1 to 4. With a socket
/// each they do not contend; on 2 CPUs two workers answered 1.7 times chronyd's rate where one
/// worker answered 1.27 times (see tests/bench/README.md).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

fn worker(
    socket: &Socket,
    nts: Option<&CookieKeyStore>,
    shared: &Shared,
    (stats, clients): (&ServerStats, &Mutex<ClientLog>),
    transmits: &Mutex<TransmitLog>,
    address: SocketAddr,
) {
    // Answer nothing until the daemon's privileges are settled, then keep no capability at all:
    // this thread only moves datagrams on a socket that is already bound.
    shared.wait_for_serving_gate();
    if let Err(error) = crate::privileges::drop_all_in_this_thread() {
        warn!(%address, %error, "a server worker could not drop its capabilities");
    }
    let fd = socket.as_raw_fd();
    let mut received = RecvBatch::default();
    let mut outgoing = SendBatch::default();
    let mut stamps = TxStamps::new(socket, address);
    // Each response, where to, and whether it answers a configured peer's poll.
    let mut pending: [Option<(Response, SocketAddr, bool)>; BATCH] = [None; BATCH];
    while !shared.stopping() {
        let count = match received.receive(fd) {
            Ok(count) => count,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                warn!(%address, error = %e, "receive failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Timestamps a NIC reported after the last batch was sent: before this batch asks for them.
        stamps.collect(fd, shared, transmits);
        let snapshot = shared.snapshot();
        // The policy in force for this batch: a reload replaces it whole.
        let Some(server) = shared.server() else {
            continue;
        };
        let mut clients = state::lock(clients);
        let cookie_keys = nts.map(CookieKeyStore::load);
        let now = Instant::now();
        let mut responses = 0;
        for i in 0..count {
            stats.count_received();
            let Some(datagram) = received.get(i).filter(|d| !d.truncated) else {
                stats.count_drop(DropReason::Malformed);
                continue;
            };
            let receive = shared
                .clock
                .at(datagram.received.unwrap_or_else(SystemTime::now));
            let nts = cookie_keys.as_deref().map(|keys| (keys, rand::random()));
            let decision =
                server.decide_nts(datagram.bytes, datagram.from, &snapshot, receive, now, nts);
            clients.record(datagram.from.ip(), &decision, now);
            let (response, peer) = match decision {
                Decision::Respond(mut response) => {
                    if response.asks_interleaved() {
                        response.interleave(&state::lock(transmits), datagram.from.ip());
                    }
                    (Some(response), false)
                }
                Decision::Drop(reason) => {
                    stats.count_drop(reason);
                    (None, false)
                }
                Decision::Peer { forward, response } => {
                    if forward {
                        hand_to_peer(
                            shared,
                            PeerEvent::Received(PeerDatagram {
                                from: datagram.from,
                                local: address,
                                t4: receive,
                                bytes: datagram.bytes.to_vec(),
                            }),
                        );
                    }
                    (response, true)
                }
            };
            if let Some(response) = response {
                pending[responses] = Some((response, datagram.from, peer));
                responses += 1;
            }
        }
        drop(clients);
        // The transmit timestamp is read once, as late as possible: just before the batch is sent.
        let transmit = shared.clock.now();
        let mut answered_peers = Vec::new();
        for (response, to, peer) in pending[..responses].iter_mut().filter_map(Option::take) {
            stats.count_response(&response);
            match response.keeps_transmit().filter(|_| stamps.enabled) {
                Some(receive) => {
                    outgoing.push_stamped(&response.finish(transmit), to);
                    stamps.expect(to.ip(), receive);
                }
                None => {
                    outgoing.push(&response.finish(transmit), to);
                }
            }
            if peer {
                answered_peers.push(to);
            }
        }
        let (_, error) = outgoing.flush(fd);
        if let Some(error) = error {
            stats.count_send_error();
            warn!(%address, %error, "send failed");
            stamps.reset(socket);
        }
        stamps.collect(fd, shared, transmits);
        for to in answered_peers {
            hand_to_peer(shared, PeerEvent::Answered { to, transmit });
        }
    }
}

/// The replies whose kernel transmit timestamps a worker waits for, to keep them in the group's
/// [`TransmitLog`] for interleaved mode. The kernel numbers a socket's timestamped datagrams from
/// 0 in the order they are sent; after a failed send the numbering is restarted, since the
/// refused datagram may or may not have taken a number.
struct TxStamps {
    enabled: bool,
    next_id: u32,
    /// (ID, client, receive timestamp of the reply), in the order sent.
    pending: VecDeque<(u32, IpAddr, NtpTimestamp)>,
}

/// Most replies waiting for their timestamps; beyond, the oldest are forgotten.
const MAX_PENDING_STAMPS: usize = 4 * BATCH;
/// The longest a reply may take from its request's arrival to leaving: a later timestamp is not
/// kept (chrony: MAX_TX_DELAY).
const MAX_TX_DELAY: f64 = 1.0;

impl TxStamps {
    fn new(socket: &Socket, address: SocketAddr) -> Self {
        let enabled = match net::enable_tx_timestamps(socket, false) {
            Ok(()) => true,
            Err(error) => {
                warn!(%address, %error, "no kernel transmit timestamps: no interleaved mode");
                false
            }
        };
        Self {
            enabled,
            next_id: 0,
            pending: VecDeque::new(),
        }
    }

    fn expect(&mut self, client: IpAddr, receive: NtpTimestamp) {
        if self.pending.len() == MAX_PENDING_STAMPS {
            self.pending.pop_front();
        }
        self.pending.push_back((self.next_id, client, receive));
        self.next_id = self.next_id.wrapping_add(1);
    }

    /// Restarts the kernel's numbering (turning the option off and on resets it).
    fn reset(&mut self, socket: &Socket) {
        if !self.enabled {
            return;
        }
        net::read_tx_timestamps(socket.as_raw_fd(), |_, _| {});
        let _ = net::disable_tx_timestamps(socket);
        self.enabled = net::enable_tx_timestamps(socket, false).is_ok();
        self.next_id = 0;
        self.pending.clear();
    }

    /// Takes the timestamps the kernel has for the last batch into `log`.
    fn collect(&mut self, fd: std::os::fd::RawFd, shared: &Shared, log: &Mutex<TransmitLog>) {
        if self.pending.is_empty() {
            return;
        }
        let mut found = Vec::new();
        net::read_tx_timestamps(fd, |id, sent| found.push((id, sent)));
        if found.is_empty() {
            return;
        }
        let mut log = state::lock(log);
        for (id, sent) in found {
            // IDs increase: the replies before this one will get no timestamp.
            while let Some(&(expected, client, receive)) = self.pending.front() {
                if id.wrapping_sub(expected) > u32::MAX / 2 {
                    break; // an ID we no longer wait for
                }
                self.pending.pop_front();
                if expected == id {
                    let transmit = shared.clock.at(sent);
                    let delay = (transmit - receive).to_seconds_f64();
                    if (0.0..MAX_TX_DELAY).contains(&delay) {
                        log.record(client, receive, transmit);
                    }
                    break;
                }
            }
        }
    }
}
