//! Names to addresses, and one connected UDP socket per address, all queried at once.
//!
//! Every address gets its own socket bound to port 0, so the kernel picks a
//! random source port (RFC 9109) and, because the socket is connected, an ICMP port unreachable
//! comes back as `ConnectionRefused` on the next receive: a refused port fails in one round trip.
//! N addresses cost about one round trip, not N timeouts.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

use ntp_proto::NtpTimestamp;
use ntp_proto::nts::ClientSession;
use ntp_proto::query::{AddressQuery, AddressReport, QueryConfig};

use crate::cli::{Host, ServerSpec};
use crate::clock;

/// Which address families to use (-4, -6).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Family {
    /// Both.
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    fn admits(self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::V4 => ip.is_ipv4(),
            Self::V6 => ip.is_ipv6(),
        }
    }
}

/// Why a server argument gave no address to query.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// getaddrinfo failed.
    #[error("name resolution failed: {0}")]
    Lookup(io::Error),
    /// The name resolved, but not to an address of the family asked for.
    #[error("no {0} address (resolved to {1})")]
    NoAddressOfFamily(&'static str, String),
    /// `--nts`: the NTS-KE exchange failed.
    #[error("NTS-KE failed: {0}")]
    NtsKe(String),
}

/// One server argument and what it resolved to.
#[derive(Debug)]
pub struct Resolution {
    /// The argument as given.
    pub name: String,
    /// The port its addresses use.
    pub port: u16,
    /// The addresses, in resolver order, or why there are none.
    pub addresses: Result<Vec<SocketAddr>, ResolveError>,
}

/// Resolves every argument: literals need no lookup; several names are looked up concurrently.
pub fn resolve_all(specs: &[ServerSpec], default_port: u16, family: Family) -> Vec<Resolution> {
    let names = specs
        .iter()
        .filter(|s| matches!(s.host, Host::Name(_)))
        .count();
    if names <= 1 {
        return specs
            .iter()
            .map(|spec| resolve(spec, default_port, family))
            .collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| scope.spawn(move || resolve(spec, default_port, family)))
            .collect();
        handles
            .into_iter()
            .zip(specs)
            .map(|(h, spec)| {
                h.join().unwrap_or_else(|_| Resolution {
                    name: spec.name.clone(),
                    port: spec.port.unwrap_or(default_port),
                    addresses: Err(ResolveError::Lookup(io::Error::other("resolver panicked"))),
                })
            })
            .collect()
    })
}

fn resolve(spec: &ServerSpec, default_port: u16, family: Family) -> Resolution {
    let port = spec.port.unwrap_or(default_port);
    let all = match &spec.host {
        Host::Address(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => (name.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
            .map_err(ResolveError::Lookup),
    };
    Resolution {
        name: spec.name.clone(),
        port,
        addresses: all.and_then(|all| keep_family(all, family)),
    }
}

/// Drops duplicates and addresses of the other family.
fn keep_family(all: Vec<SocketAddr>, family: Family) -> Result<Vec<SocketAddr>, ResolveError> {
    let mut kept: Vec<SocketAddr> = Vec::new();
    for addr in &all {
        if family.admits(addr.ip()) && !kept.contains(addr) {
            kept.push(*addr);
        }
    }
    if kept.is_empty() {
        let which = if family == Family::V4 { "IPv4" } else { "IPv6" };
        let found: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
        return Err(ResolveError::NoAddressOfFamily(which, found.join(", ")));
    }
    Ok(kept)
}

/// Queries every address at once, each on its own socket, from this one thread (threads cost
/// hundreds of microseconds each to start on some kernels; `ppoll` over N sockets costs nothing);
/// reports in input order.
/// An address in `sessions` is queried over NTS with its session.
pub fn query_all(
    addresses: &[SocketAddr],
    config: QueryConfig,
    mut sessions: HashMap<SocketAddr, ClientSession>,
) -> Vec<AddressReport> {
    let start = Instant::now();
    let mut queries: Vec<AddressQuery> = addresses
        .iter()
        .map(|address| {
            let query = AddressQuery::new(config, start);
            match sessions.remove(address) {
                Some(session) => query.with_nts(session),
                None => query,
            }
        })
        .collect();
    let sockets: Vec<Option<UdpSocket>> = addresses
        .iter()
        .zip(&mut queries)
        .map(|(addr, query)| {
            connect(*addr)
                .map_err(|e| query.handle_network_error(e.kind()))
                .ok()
        })
        .collect();
    while let Some(deadline) = step_all(&mut queries, &sockets) {
        let ready = wait_readable(&sockets, &queries, deadline);
        for i in ready {
            if let Some(socket) = &sockets[i] {
                drain(socket, &mut queries[i]);
            }
        }
    }
    queries.into_iter().map(AddressQuery::finish).collect()
}

/// Expires deadlines and sends what is due; returns the earliest next deadline, `None` when every
/// query is over.
fn step_all(queries: &mut [AddressQuery], sockets: &[Option<UdpSocket>]) -> Option<Instant> {
    let now = Instant::now();
    let mut earliest: Option<Instant> = None;
    for (query, socket) in queries.iter_mut().zip(sockets) {
        query.handle_timeout(now);
        if let (Some(socket), Some(request)) = (socket, query.poll_transmit(now, random_cookie())) {
            let t1 = clock::now();
            match socket.send(&request) {
                Ok(_) => query.on_sent(Instant::now(), t1),
                Err(e) => query.handle_network_error(e.kind()),
            }
        }
        if let Some(t) = query.poll_timeout() {
            earliest = Some(earliest.map_or(t, |e| e.min(t)));
        }
    }
    earliest
}

/// Reads every datagram waiting on `socket`, each stamped with T4: the kernel's receive time
/// (SO_TIMESTAMPNS), so that the scheduling delay before this thread runs does not count; the
/// clock read right after the read if the kernel gave none. First, the kernel's transmit
/// timestamp of the request (SO_TIMESTAMPING, from the error queue) becomes its T1.
fn drain(socket: &UdpSocket, query: &mut AddressQuery) {
    ntp_os::socket::read_tx_timestamps(socket.as_raw_fd(), |_, sent| {
        query.on_transmit_timestamp(NtpTimestamp::from_system_time(sent));
    });
    let mut buf = [0u8; 2048];
    loop {
        match receive_timestamped(socket, &mut buf) {
            Ok((len, kernel_t4)) => {
                let t4 = kernel_t4.unwrap_or_else(clock::now);
                query.handle_reply(&buf[..len], t4);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => return query.handle_network_error(e.kind()),
        }
    }
}

/// One datagram and its kernel receive timestamp, if any.
fn receive_timestamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, Option<NtpTimestamp>)> {
    let (len, kernel_time) = ntp_os::socket::recv_timestamped(socket.as_raw_fd(), buf)?;
    Ok((len, kernel_time.map(NtpTimestamp::from_system_time)))
}

/// Waits until `deadline` or until a socket of a running query is readable (or has an error);
/// returns the indices of those sockets.
fn wait_readable(
    sockets: &[Option<UdpSocket>],
    queries: &[AddressQuery],
    deadline: Instant,
) -> Vec<usize> {
    let mut fds = Vec::new();
    let mut owners = Vec::new();
    for (i, (socket, query)) in sockets.iter().zip(queries).enumerate() {
        if let (Some(socket), Some(_)) = (socket, query.poll_timeout()) {
            fds.push(libc::pollfd {
                fd: socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            owners.push(i);
        }
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    let timeout = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos().into(),
    };
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs that ppoll may write to;
    // `timeout` is a valid timespec it only reads; a null signal mask means "unchanged".
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &timeout,
            std::ptr::null(),
        )
    };
    if n <= 0 {
        return Vec::new(); // timeout, or EINTR: the caller re-checks the deadlines
    }
    fds.iter()
        .zip(owners)
        .filter(|(fd, _)| fd.revents != 0)
        .map(|(_, i)| i)
        .collect()
}

/// A socket of the server's family on a kernel-chosen port, connected so that only the server's
/// datagrams (and its ICMP errors) reach it.
fn connect(server: SocketAddr) -> io::Result<UdpSocket> {
    let local: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))?;
    socket.connect(server)?;
    socket.set_nonblocking(true)?;
    ntp_os::socket::enable_timestamps(&socket)?;
    // Best effort: without transmit timestamps, T1 is the clock read just before the send.
    let _ = ntp_os::socket::enable_tx_timestamps(&socket, true);
    Ok(socket)
}

/// A fresh random transmit timestamp; never zero, which means "unset" on the wire.
fn random_cookie() -> NtpTimestamp {
    NtpTimestamp::from_bits(rand::random::<u64>() | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn family_filter_and_dedup() {
        let all = vec![sa("127.0.0.1:123"), sa("[::1]:123"), sa("127.0.0.1:123")];
        assert_eq!(
            keep_family(all.clone(), Family::Any).expect("some"),
            vec![sa("127.0.0.1:123"), sa("[::1]:123")]
        );
        assert_eq!(
            keep_family(all.clone(), Family::V6).expect("some"),
            vec![sa("[::1]:123")]
        );
        let err = keep_family(vec![sa("127.0.0.1:123")], Family::V6).expect_err("none");
        assert_eq!(err.to_string(), "no IPv6 address (resolved to 127.0.0.1)");
    }

    #[test]
    fn literals_need_no_lookup_and_keep_their_port() {
        let specs = [
            crate::cli::parse_server("[::1]:4123").expect("spec"),
            crate::cli::parse_server("127.0.0.1").expect("spec"),
        ];
        let r = resolve_all(&specs, 123, Family::Any);
        assert_eq!(
            r[0].addresses.as_ref().expect("ok"),
            &vec![sa("[::1]:4123")]
        );
        assert_eq!(
            r[1].addresses.as_ref().expect("ok"),
            &vec![sa("127.0.0.1:123")]
        );
        let r = resolve_all(&specs, 123, Family::V4);
        assert!(r[0].addresses.is_err());
    }

    #[test]
    fn cookies_are_fresh_and_nonzero() {
        let a = random_cookie();
        let b = random_cookie();
        assert_ne!(a, b);
        assert!(!a.is_zero() && !b.is_zero());
    }
}
