//! Sockets: options, kernel receive timestamps (SO_TIMESTAMPNS), kernel software transmit
//! timestamps (SO_TIMESTAMPING, read from the error queue), and batched receive and send
//! (recvmmsg/sendmmsg) into buffers allocated once per worker.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime};

pub use ntp_os::socket::{
    CMSG_WORDS, disable_tx_timestamps, enable_timestamps, enable_tx_timestamps, read_tx_timestamps,
    recv_timestamped, rx_timestamp, set_option, socket_addr,
};
use ntp_proto::auth::{MAX_SEALED_LEN, Sealed};
use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams taken or sent per system call.
pub const BATCH: usize = 64;
/// Receive buffer per datagram; longer datagrams are flagged truncated and dropped.
pub const MAX_DATAGRAM: usize = 2048;
/// A UDP socket for serving: kernel receive timestamps on, a large receive buffer, and a read
/// timeout so that blocking workers notice shutdown. `v6_only` keeps an IPv6 socket off IPv4.
pub fn bind_server_socket(
    address: SocketAddr,
    v6_only: bool,
    read_timeout: Duration,
    reuse_port: bool,
) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    // Best effort: a small buffer only means drops under a flood.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.set_read_timeout(Some(read_timeout))?;
    socket.set_reuse_port(reuse_port)?;
    enable_timestamps(&socket)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// Its bytes (at most [`MAX_DATAGRAM`]).
    pub bytes: &'a [u8],
    /// Who sent it.
    pub from: SocketAddr,
    /// When the kernel received it, if it said.
    pub received: Option<SystemTime>,
    /// True if it was longer than the buffer.
    pub truncated: bool,
}

/// Buffers for [`BATCH`] datagrams, reused for every receive.
pub struct RecvBatch {
    buffers: Box<[[u8; MAX_DATAGRAM]]>,
    addresses: Box<[libc::sockaddr_storage]>,
    controls: Box<[[u64; CMSG_WORDS]]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    len: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are valid values (null pointers, zero lengths).
        let (storage, iovec, header) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Self {
            buffers: vec![[0; MAX_DATAGRAM]; BATCH].into_boxed_slice(),
            addresses: vec![storage; BATCH].into_boxed_slice(),
            controls: vec![[0; CMSG_WORDS]; BATCH].into_boxed_slice(),
            iovecs: vec![iovec; BATCH].into_boxed_slice(),
            headers: vec![header; BATCH].into_boxed_slice(),
            len: 0,
        }
    }
}

impl RecvBatch {
    /// Blocks until at least one datagram arrives (or the read timeout passes), then takes as
    /// many more as are waiting, up to [`BATCH`]. Returns how many.
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let header = &mut self.headers[i].msg_hdr;
            header.msg_name = (&raw mut self.addresses[i]).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &raw mut self.iovecs[i];
            header.msg_iovlen = 1;
            header.msg_control = self.controls[i].as_mut_ptr().cast();
            header.msg_controllen = CMSG_WORDS * 8;
            header.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self` that outlive the call, with
        // the lengths set above; MSG_WAITFORONE blocks only for the first datagram.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        self.len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        Ok(self.len)
    }

    /// The `i`th datagram of the last receive; `None` past the end or for an unknown address family.
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.len {
            return None;
        }
        let header = &self.headers[i];
        let len = (header.msg_len as usize).min(MAX_DATAGRAM);
        Some(Datagram {
            bytes: &self.buffers[i][..len],
            from: socket_addr(&self.addresses[i])?,
            received: rx_timestamp(&header.msg_hdr),
            truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        })
    }
}

fn to_storage(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let converted = socket2::SockAddr::from(address);
    // SAFETY: SockAddr's storage is a sockaddr_storage and `len` says how much of it is used.
    let storage = unsafe { std::ptr::read(converted.as_ptr().cast::<libc::sockaddr_storage>()) };
    (storage, converted.len())
}

/// Up to [`BATCH`] responses (a header and at most a MAC), sent with one system call.
pub struct SendBatch {
    buffers: Box<[[u8; MAX_SEALED_LEN]]>,
    lengths: Box<[usize]>,
    addresses: Box<[libc::sockaddr_storage]>,
    address_lens: Box<[libc::socklen_t]>,
    /// Whether each datagram asks for a kernel transmit timestamp.
    stamped: Box<[bool]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    /// The one control message a stamped datagram carries: SO_TIMESTAMPING, TX_SOFTWARE.
    stamp_request: [u64; 4],
    len: usize,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        // SAFETY: as for RecvBatch, all-zero is valid for these C structs.
        let (storage, iovec, header) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Self {
            buffers: vec![[0; MAX_SEALED_LEN]; BATCH].into_boxed_slice(),
            lengths: vec![0; BATCH].into_boxed_slice(),
            addresses: vec![storage; BATCH].into_boxed_slice(),
            address_lens: vec![0; BATCH].into_boxed_slice(),
            stamped: vec![false; BATCH].into_boxed_slice(),
            iovecs: vec![iovec; BATCH].into_boxed_slice(),
            headers: vec![header; BATCH].into_boxed_slice(),
            stamp_request: stamp_request(),
            len: 0,
        }
    }
}

/// CMSG_SPACE of an unsigned int: 16 bytes of header, 4 of flags, padded to 8.
const STAMP_REQUEST_LEN: usize = 24;

/// A control message asking for a software transmit timestamp of one datagram.
fn stamp_request() -> [u64; 4] {
    let mut control = [0u64; 4];
    let flags: libc::c_uint = libc::SOF_TIMESTAMPING_TX_SOFTWARE;
    // SAFETY: a msghdr over `control`, which holds STAMP_REQUEST_LEN bytes; CMSG_FIRSTHDR and
    // CMSG_DATA stay within it, and the payload is written unaligned.
    unsafe {
        let mut header: libc::msghdr = zeroed();
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = STAMP_REQUEST_LEN;
        let cmsg = libc::CMSG_FIRSTHDR(&raw const header);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SO_TIMESTAMPING;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_uint>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), flags);
    }
    control
}

impl SendBatch {
    /// Queues a response to `to`; returns false (and queues nothing) when the batch is full.
    pub fn push(&mut self, bytes: &Sealed, to: SocketAddr) -> bool {
        self.push_with(bytes, to, false)
    }

    /// [`SendBatch::push`], asking the kernel for a software transmit timestamp of this datagram
    /// (on a socket with [`enable_tx_timestamps`]). The kernel numbers the timestamped datagrams
    /// of a socket in the order they are sent.
    pub fn push_stamped(&mut self, bytes: &Sealed, to: SocketAddr) -> bool {
        self.push_with(bytes, to, true)
    }

    fn push_with(&mut self, bytes: &Sealed, to: SocketAddr, stamped: bool) -> bool {
        if self.len == BATCH {
            return false;
        }
        self.stamped[self.len] = stamped;
        let (storage, len) = to_storage(to);
        self.buffers[self.len][..bytes.len()].copy_from_slice(bytes);
        self.lengths[self.len] = bytes.len();
        self.addresses[self.len] = storage;
        self.address_lens[self.len] = len;
        self.len += 1;
        true
    }

    /// Sends everything queued; a datagram the kernel refuses is skipped. Returns how many were
    /// sent and the last error, if any.
    pub fn flush(&mut self, fd: RawFd) -> (usize, Option<io::Error>) {
        let mut sent = 0;
        let mut failed = 0;
        let mut last_error = None;
        while sent < self.len {
            for i in sent..self.len {
                self.iovecs[i] = libc::iovec {
                    iov_base: self.buffers[i].as_mut_ptr().cast(),
                    iov_len: self.lengths[i],
                };
                let header = &mut self.headers[i].msg_hdr;
                header.msg_name = (&raw mut self.addresses[i]).cast();
                header.msg_namelen = self.address_lens[i];
                header.msg_iov = &raw mut self.iovecs[i];
                header.msg_iovlen = 1;
                if self.stamped[i] {
                    header.msg_control = self.stamp_request.as_mut_ptr().cast();
                    header.msg_controllen = STAMP_REQUEST_LEN;
                } else {
                    header.msg_control = std::ptr::null_mut();
                    header.msg_controllen = 0;
                }
            }
            let remaining = &mut self.headers[sent..self.len];
            // SAFETY: each header points into buffers owned by `self`, valid for the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    remaining.as_mut_ptr(),
                    remaining.len() as libc::c_uint,
                    0,
                )
            };
            match usize::try_from(n) {
                Ok(n) if n > 0 => sent += n,
                _ => {
                    last_error = Some(io::Error::last_os_error());
                    failed += 1;
                    sent += 1; // skip the datagram the kernel refused
                }
            }
        }
        let count = self.len;
        self.len = 0;
        (count - failed, last_error)
    }
}

/// The local address the kernel would send from to reach `peer` (a connected UDP socket, no
/// packet sent): what a peer sees us as, for loop detection behind a wildcard listen address.
pub fn route_source(peer: SocketAddr) -> io::Result<std::net::IpAddr> {
    let any: SocketAddr = if peer.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(peer)?;
    Ok(socket.local_addr()?.ip())
}

/// The index of the network interface `name`.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: a NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name:?} (see `ip link`)"),
        )),
        index => Ok(index),
    }
}

/// A socket that receives what is sent to `listen`, a broadcast address or a multicast group,
/// with kernel receive timestamps; a multicast group is joined on `interface`, or else on the
/// interface of `local` (the address we reach the broadcaster from). SO_REUSEADDR lets several
/// programs listen to one group.
pub fn bind_broadcast_listener(
    listen: SocketAddr,
    interface: Option<u32>,
    local: Option<std::net::IpAddr>,
) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    enable_timestamps(&socket)?;
    let bind = match listen {
        SocketAddr::V6(v6) if v6.ip().is_multicast() => SocketAddr::V6(SocketAddrV6::new(
            *v6.ip(),
            v6.port(),
            0,
            interface.unwrap_or(0),
        )),
        other => other,
    };
    socket.bind(&bind.into())?;
    match listen.ip() {
        std::net::IpAddr::V4(group) if group.is_multicast() => {
            let on = match (interface, local) {
                (Some(index), _) => socket2::InterfaceIndexOrAddress::Index(index),
                (None, Some(std::net::IpAddr::V4(address))) => {
                    socket2::InterfaceIndexOrAddress::Address(address)
                }
                _ => socket2::InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
            };
            socket.join_multicast_v4_n(&group, &on)?;
        }
        std::net::IpAddr::V6(group) if group.is_multicast() => {
            socket.join_multicast_v6(&group, interface.unwrap_or(0))?;
        }
        _ => {}
    }
    Ok(socket.into())
}

/// A socket that sends announcements to `to` from the address `from` (the server's, so that
/// clients recognize it; any port): broadcasts allowed, multicast limited to `ttl` hops and sent
/// on `interface` if given.
pub fn bind_broadcast_sender(
    from: std::net::IpAddr,
    to: SocketAddr,
    ttl: u32,
    interface: Option<u32>,
) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(to), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.set_broadcast(true)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    match to.ip() {
        std::net::IpAddr::V4(group) if group.is_multicast() => {
            socket.set_multicast_ttl_v4(ttl)?;
            socket.set_multicast_loop_v4(false)?;
            match (interface, from) {
                (Some(index), _) => set_multicast_interface_v4(&socket, index)?,
                (None, std::net::IpAddr::V4(address)) if !address.is_unspecified() => {
                    socket.set_multicast_if_v4(&address)?;
                }
                _ => {}
            }
        }
        std::net::IpAddr::V6(_) => {
            socket.set_multicast_hops_v6(ttl)?;
            socket.set_multicast_loop_v6(false)?;
            if let Some(index) = interface {
                socket.set_multicast_if_v6(index)?;
            }
        }
        std::net::IpAddr::V4(_) => {}
    }
    Ok(socket.into())
}

/// IP_MULTICAST_IF by interface index (socket2 only takes an address).
fn set_multicast_interface_v4(socket: &Socket, index: u32) -> io::Result<()> {
    let request = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: libc::c_int::try_from(index).map_err(io::Error::other)?,
    };
    set_option(socket, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &request)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn only_datagrams_pushed_stamped_are_timestamped_in_a_batch() {
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = sink.local_addr().expect("address");
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        enable_tx_timestamps(&socket, false).expect("timestamping");
        let mut batch = SendBatch::default();
        let bytes = ntp_proto::auth::Seal::None.seal([0; 48]);
        for stamped in [false, true, false, true] {
            if stamped {
                assert!(batch.push_stamped(&bytes, to));
            } else {
                assert!(batch.push(&bytes, to));
            }
        }
        assert_eq!(batch.flush(socket.as_raw_fd()).0, 4);
        let mut ids = Vec::new();
        read_tx_timestamps(socket.as_raw_fd(), |id, _| ids.push(id));
        assert_eq!(ids, [0, 1]);
        // SAFETY: CMSG_SPACE only computes.
        let space = unsafe { libc::CMSG_SPACE(size_of::<libc::c_uint>() as u32) };
        assert_eq!(space as usize, STAMP_REQUEST_LEN);
    }
}
