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
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ntp_proto::server::{AccessList, Decision, DropReason, RateLimiter, Response, Server};
use socket2::Socket;
use tracing::{info, warn};

use crate::config::{self, ServerConfig};
use crate::net::{self, BATCH, RecvBatch, SendBatch};
use crate::state::{ServerStats, Shared};

/// How long a blocked worker waits before checking for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

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
        let v6_only = config::v6_only(address, &config.listen);
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
            stats.count_received();
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
            stats.count_send_error();
            warn!(%address, %error, "send failed");
        }
    }
}
