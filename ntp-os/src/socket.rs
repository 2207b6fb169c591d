//! UDP sockets with kernel timestamps:
//! - receive timestamps (SO_TIMESTAMPNS): turning them on, reading one datagram with its
//!   timestamp, and finding the timestamp in a received message's control data (the daemon's
//!   recvmmsg batches use that too);
//! - software transmit timestamps (SO_TIMESTAMPING, read from the error queue): the clients' T1
//!   and the server's T3 for interleaved mode.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, SystemTime};

/// Control-message space per datagram: one timespec timestamp with its header, 8-byte aligned.
pub const CMSG_WORDS: usize = 8;

/// Turns on kernel receive timestamps for any socket (a client socket, say).
pub fn enable_timestamps(socket: &impl AsRawFd) -> io::Result<()> {
    set_option(
        socket,
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPNS,
        &(1 as libc::c_int),
    )
}

/// setsockopt(2) of option `name` at `level` to `value`, which must be the plain C type the
/// option takes (an int, an ip_mreqn, ...).
pub fn set_option<T: Copy>(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: a valid socket fd and a pointer to `value` with its exact size; the kernel only
    // reads that many bytes.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const *value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Receives one datagram from a connected, non-blocking socket with its kernel receive
/// timestamp. Returns the length and the timestamp (if the kernel gave one).
pub fn recv_timestamped(fd: RawFd, buffer: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    let mut control = [0u64; CMSG_WORDS];
    let mut iovec = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_iov = &raw mut iovec;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = CMSG_WORDS * 8;
    // SAFETY: `header` points at `iovec` and `control`, both valid for the call.
    let n = unsafe { libc::recvmsg(fd, &raw mut header, libc::MSG_DONTWAIT) };
    let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    Ok((len, rx_timestamp(&header)))
}

/// The kernel receive timestamp in the control messages of `header`, if any.
pub fn rx_timestamp(header: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: `header` was filled by recvmsg or recvmmsg; CMSG_FIRSTHDR/CMSG_NXTHDR walk its control buffer
    // within msg_controllen, and the SCM_TIMESTAMPNS payload is a timespec (read unaligned).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let since_epoch = Duration::new(
                    u64::try_from(ts.tv_sec).ok()?,
                    u32::try_from(ts.tv_nsec).ok()?,
                );
                return Some(SystemTime::UNIX_EPOCH + since_epoch);
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}

/// Receives one datagram from a non-blocking socket with its sender and kernel receive
/// timestamp. Returns the length (cut to the buffer), the sender and the timestamp (if the kernel
/// gave one).
pub fn recv_from_timestamped(
    fd: RawFd,
    buffer: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    let mut control = [0u64; CMSG_WORDS];
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut iovec = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: as above; the pointers set below outlive the call.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&raw mut storage).cast();
    header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    header.msg_iov = &raw mut iovec;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = CMSG_WORDS * 8;
    // SAFETY: `header` points at `storage`, `iovec` and `control`, all valid for the call.
    let n = unsafe { libc::recvmsg(fd, &raw mut header, libc::MSG_DONTWAIT) };
    let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let from = socket_addr(&storage)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))?;
    Ok((len.min(buffer.len()), from, rx_timestamp(&header)))
}

/// The address in `storage`, as recvmsg or recvmmsg filled it; `None` for another family.
pub fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, which it is large enough for.
            let sin: &libc::sockaddr_in = unsafe { &*(&raw const *storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6, which it is large enough for.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(&raw const *storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id).into())
        }
        _ => None,
    }
}

/// Control-message space for one error-queue message: SCM_TIMESTAMPING and the extended error.
const ERRQUEUE_CMSG_WORDS: usize = 32;
/// `ee_info` of a timestamp taken when the datagram left for the device (linux/errqueue.h).
const SCM_TSTAMP_SND: u32 = 0;
/// Reporting flags for transmit timestamps: software timestamps, each with the ID of its datagram
/// (the kernel counts the timestamped datagrams of a socket from 0), without the datagram itself.
const TX_REPORTING: libc::c_uint = libc::SOF_TIMESTAMPING_SOFTWARE
    | libc::SOF_TIMESTAMPING_OPT_ID
    | libc::SOF_TIMESTAMPING_OPT_TSONLY;

/// Turns on kernel software transmit timestamps: for every datagram sent if `every_datagram`,
/// else only for those sent with a per-datagram SO_TIMESTAMPING control message (the daemon's
/// `SendBatch::push_stamped`). They are read with [`read_tx_timestamps`].
pub fn enable_tx_timestamps(socket: &impl AsRawFd, every_datagram: bool) -> io::Result<()> {
    let flags = if every_datagram {
        TX_REPORTING | libc::SOF_TIMESTAMPING_TX_SOFTWARE
    } else {
        TX_REPORTING
    };
    // OPT_RX_FILTER (Linux 6.12) keeps the software reporting flag from adding a second receive
    // timestamp to every datagram received (SO_TIMESTAMPNS already gives one); older kernels
    // refuse the flag, and then do without it.
    set_timestamping(socket, flags | libc::SOF_TIMESTAMPING_OPT_RX_FILTER)
        .or_else(|_| set_timestamping(socket, flags))
}

fn set_timestamping(socket: &impl AsRawFd, flags: libc::c_uint) -> io::Result<()> {
    set_option(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, &flags)
}

/// Turns transmit timestamps off (turning them on again restarts the datagram IDs at 0).
pub fn disable_tx_timestamps(socket: &impl AsRawFd) -> io::Result<()> {
    set_timestamping(socket, 0)
}

/// Takes every transmit timestamp waiting on the error queue of `fd` (without blocking) and
/// hands each to `found` with its datagram's ID (see [`enable_tx_timestamps`]). Returns how many.
pub fn read_tx_timestamps(fd: RawFd, mut found: impl FnMut(u32, SystemTime)) -> usize {
    let mut count = 0;
    loop {
        let mut control = [0u64; ERRQUEUE_CMSG_WORDS];
        let mut data = [0u8; 64];
        let mut iovec = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
        let mut header: libc::msghdr = unsafe { zeroed() };
        header.msg_iov = &raw mut iovec;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = ERRQUEUE_CMSG_WORDS * 8;
        // SAFETY: `header` points at `iovec` and `control`, both valid for the call.
        let n =
            unsafe { libc::recvmsg(fd, &raw mut header, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            return count;
        }
        if let Some((id, at)) = tx_timestamp(&header) {
            found(id, at);
            count += 1;
        }
    }
}

/// The software transmit timestamp and datagram ID in an error-queue message, if it is one.
fn tx_timestamp(header: &libc::msghdr) -> Option<(u32, SystemTime)> {
    let mut time = None;
    let mut id = None;
    // SAFETY: `header` was filled by recvmsg; the walk stays within msg_controllen; payloads are
    // read unaligned as the types the kernel documents for them (scm_timestamping: three
    // timespecs, software first; sock_extended_err).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPING {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let since_epoch = Duration::new(
                    u64::try_from(ts.tv_sec).ok()?,
                    u32::try_from(ts.tv_nsec).ok()?,
                );
                time = Some(SystemTime::UNIX_EPOCH + since_epoch);
            } else if (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR)
            {
                let error: libc::sock_extended_err =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let sent = error.ee_info == SCM_TSTAMP_SND;
                if error.ee_errno == libc::ENOMSG as u32
                    && error.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING
                    && sent
                {
                    id = Some(error.ee_data);
                }
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    Some((id?, time.filter(|t| *t > SystemTime::UNIX_EPOCH)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_on_loopback_comes_with_its_kernel_receive_time() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        enable_timestamps(&receiver).expect("timestamps");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        sender
            .connect(receiver.local_addr().expect("address"))
            .expect("connect");
        let before = SystemTime::now();
        sender.send(b"tick").expect("send");
        receiver.set_nonblocking(false).expect("blocking");
        let mut buffer = [0u8; 16];
        // MSG_DONTWAIT: wait until the datagram is there first.
        let mut peek = [0u8; 1];
        receiver.peek(&mut peek).expect("peek");
        let (len, stamp) = recv_timestamped(receiver.as_raw_fd(), &mut buffer).expect("receive");
        assert_eq!(&buffer[..len], b"tick");
        let stamp = stamp.expect("a kernel timestamp");
        assert!(stamp >= before - Duration::from_secs(1) && stamp <= SystemTime::now());
    }

    #[test]
    fn a_sent_datagram_has_a_kernel_transmit_timestamp_with_its_id() {
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        enable_tx_timestamps(&socket, true).expect("timestamping");
        let mut stamps = Vec::new();
        for _ in 0..3 {
            let before = SystemTime::now();
            socket
                .send_to(b"x", sink.local_addr().expect("address"))
                .expect("send");
            let after = SystemTime::now();
            // A software timestamp is taken on the way to the device, within the send call on
            // loopback.
            read_tx_timestamps(socket.as_raw_fd(), |id, at| {
                assert!(before <= at && at <= after);
                stamps.push(id);
            });
        }
        assert_eq!(stamps, [0, 1, 2]);
    }
}
