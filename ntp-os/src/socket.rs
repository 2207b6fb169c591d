//! UDP sockets with kernel receive timestamps (SO_TIMESTAMPNS): turning them on, reading one
//! datagram with its timestamp, and finding the timestamp in a received message's control data
//! (the daemon's recvmmsg batches use that too).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, SystemTime};

/// Control-message space per datagram: one timespec timestamp with its header, 8-byte aligned.
pub const CMSG_WORDS: usize = 8;

/// Turns on kernel receive timestamps for any socket (a client socket, say).
pub fn enable_timestamps(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd, a pointer to an int and its size, as setsockopt(2) requires.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
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
}
