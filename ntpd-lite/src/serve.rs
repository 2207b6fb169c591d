//! Server workers: threads that take datagrams in batches, ask `ntp_proto::Server` what to do,
//! stamp the responses just before sending, and count everything. No protocol decisions here.
//!
//! Each worker has its own socket on the listen address, in an SO_REUSEPORT group (the kernel
//! spreads clients over the workers' queues by address and port), so workers never wake each
//! other. The group only forms on a port nobody holds (see `bind_group`): a second daemon on the
//! same port fails to bind rather than silently sharing the traffic.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ntp_proto::ReferenceId;
use ntp_proto::server::{AccessList, Decision, DropReason, RateLimiter, Response, Server};
use serde::Serialize;
use socket2::Socket;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::daemon::Shared;
use crate::net::{self, BATCH, RecvBatch, SendBatch};

/// How long a blocked worker waits before checking for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// Counters of one worker, written only by it.
#[derive(Debug, Default)]
pub struct ServerStats {
    received: AtomicU64,
    responses: AtomicU64,
    kod_rate: AtomicU64,
    kod_deny: AtomicU64,
    send_errors: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

/// Counters summed over all workers.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ServerTotals {
    /// Datagrams received.
    pub received: u64,
    /// Responses sent (kiss-o'-death included).
    pub responses: u64,
    /// Kiss-o'-death RATE sent.
    pub kod_rate: u64,
    /// Kiss-o'-death DENY sent.
    pub kod_deny: u64,
    /// Responses the kernel would not send.
    pub send_errors: u64,
    /// Datagrams dropped, by reason.
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
}

impl ServerTotals {
    /// Sums the counters of every worker.
    pub fn sum(stats: &[Arc<ServerStats>]) -> Self {
        let mut totals = Self::default();
        for reason in DropReason::ALL {
            totals.dropped.insert(reason.name(), 0);
        }
        for s in stats {
            totals.received += s.received.load(Relaxed);
            totals.responses += s.responses.load(Relaxed);
            totals.kod_rate += s.kod_rate.load(Relaxed);
            totals.kod_deny += s.kod_deny.load(Relaxed);
            totals.send_errors += s.send_errors.load(Relaxed);
            for reason in DropReason::ALL {
                *totals.dropped.entry(reason.name()).or_default() +=
                    s.drops[reason.index()].load(Relaxed);
            }
        }
        totals
    }
}

impl ServerStats {
    fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Relaxed);
    }

    fn count_response(&self, response: &Response) {
        self.responses.fetch_add(1, Relaxed);
        match response.kiss_code() {
            Some(ReferenceId::RATE) => self.kod_rate.fetch_add(1, Relaxed),
            Some(_) => self.kod_deny.fetch_add(1, Relaxed),
            None => 0,
        };
    }
}

/// Binds every listen address and starts its workers. Fails if any address cannot be bound.
pub fn start(config: &ServerConfig, shared: &Arc<Shared>) -> io::Result<Vec<JoinHandle<()>>> {
    let rate_limiter = config
        .rate_limit
        .map(|r| RateLimiter::new(r, Instant::now()));
    let access = AccessList {
        allow: config.allow.clone(),
        deny: config.deny.clone(),
        action: config.deny_action,
    };
    let server = Arc::new(Server::new(access, rate_limiter));
    let workers = config.workers.unwrap_or_else(default_workers);
    let mut handles = Vec::new();
    for &address in &config.listen {
        // An IPv6 wildcard also takes IPv4 unless an IPv4 wildcard on the same port is listed too.
        let v6_only = !address.ip().is_unspecified()
            || config
                .listen
                .iter()
                .any(|a| a.is_ipv4() && a.ip().is_unspecified() && a.port() == address.port());
        let sockets = bind_group(address, v6_only, workers)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {address}: {e}")))?;
        info!(%address, workers, "serving NTP");
        for (index, socket) in sockets.into_iter().enumerate() {
            let stats = Arc::new(ServerStats::default());
            shared.register_server_stats(Arc::clone(&stats));
            let (server, shared) = (Arc::clone(&server), Arc::clone(shared));
            let handle = std::thread::Builder::new()
                .name(format!("ntp-serve-{index}"))
                .spawn(move || worker(&socket, &server, &shared, &stats, address))?;
            handles.push(handle);
        }
    }
    Ok(handles)
}

/// One socket per worker on `address`: with several workers, an SO_REUSEPORT group, so that each
/// worker has its own receive queue. The group only forms on a free port: a plain bind first
/// proves no one (another daemon included) holds it, and a second ntpd-lite's plain bind then
/// fails on ours, so two daemons never silently share a port.
fn bind_group(address: SocketAddr, v6_only: bool, workers: usize) -> io::Result<Vec<Socket>> {
    if workers <= 1 {
        return Ok(vec![net::bind_server_socket(
            address,
            v6_only,
            SHUTDOWN_POLL,
            false,
        )?]);
    }
    let probe = net::bind_server_socket(address, v6_only, SHUTDOWN_POLL, false)?;
    let address = probe.local_addr()?.as_socket().unwrap_or(address);
    drop(probe);
    (0..workers)
        .map(|_| net::bind_server_socket(address, v6_only, SHUTDOWN_POLL, true))
        .collect()
}

/// Workers per listen address when the config does not say: one per CPU, 1 to 4. With a socket
/// each they do not contend; on 2 CPUs two workers answered 1.7 times chronyd's rate where one
/// worker answered 1.27 times (see tests/bench/README.md).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

fn worker(
    socket: &Socket,
    server: &Server,
    shared: &Shared,
    stats: &ServerStats,
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
    let mut pending: [Option<(Response, SocketAddr)>; BATCH] = [None; BATCH];
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
        let snapshot = shared.snapshot();
        let now = Instant::now();
        let mut responses = 0;
        for i in 0..count {
            stats.received.fetch_add(1, Relaxed);
            let Some(datagram) = received.get(i).filter(|d| !d.truncated) else {
                stats.count_drop(DropReason::Malformed);
                continue;
            };
            let receive = shared
                .clock
                .at(datagram.received.unwrap_or_else(SystemTime::now));
            match server.decide(datagram.bytes, datagram.from.ip(), &snapshot, receive, now) {
                Decision::Respond(response) => {
                    pending[responses] = Some((response, datagram.from));
                    responses += 1;
                }
                Decision::Drop(reason) => stats.count_drop(reason),
            }
        }
        // The transmit timestamp is read once, as late as possible: just before the batch is sent.
        let transmit = shared.clock.now();
        for (response, to) in pending[..responses].iter_mut().filter_map(Option::take) {
            stats.count_response(&response);
            outgoing.push(response.finish(transmit), to);
        }
        let (_, error) = outgoing.flush(fd);
        if let Some(error) = error {
            stats.send_errors.fetch_add(1, Relaxed);
            warn!(%address, %error, "send failed");
        }
    }
}
