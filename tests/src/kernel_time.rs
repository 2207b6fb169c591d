//! Kernel receive timestamps (SO_TIMESTAMPNS) on plain std UDP sockets, and the thread's timer
//! slack: what the link emulator and its measurements need to see microseconds.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

/// Control-message space: one timespec with its header, 8-byte aligned.
const CMSG_WORDS: usize = 8;

/// Turns on kernel receive timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME) for `socket`.
pub fn enable_rx_timestamps(socket: &UdpSocket) -> io::Result<()> {
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

/// One datagram taken from a socket, with when the kernel received it.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    /// Its length (cut to the buffer).
    pub len: usize,
    /// Who sent it.
    pub from: SocketAddr,
    /// The kernel's receive timestamp, or the time it was read if the kernel gave none.
    pub at: SystemTime,
}

/// Takes one datagram without blocking (`WouldBlock` when none waits).
pub fn recv_timestamped(socket: &UdpSocket, buffer: &mut [u8]) -> io::Result<Received> {
    let mut control = [0u64; CMSG_WORDS];
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let mut iovec = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: as above.
    let mut header: libc::msghdr = unsafe { zeroed() };
    header.msg_name = (&raw mut storage).cast();
    header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    header.msg_iov = &raw mut iovec;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = CMSG_WORDS * 8;
    // SAFETY: `header` points at `storage`, `iovec` and `control`, all valid for the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut header, libc::MSG_DONTWAIT) };
    let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let from = socket_addr(&storage)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))?;
    let at = rx_timestamp(&header).unwrap_or_else(SystemTime::now);
    Ok(Received {
        len: len.min(buffer.len()),
        from,
        at,
    })
}

/// The SCM_TIMESTAMPNS control message of `header`, if any.
fn rx_timestamp(header: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: `header` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR walk its control buffer
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

fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(&raw const *storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(&raw const *storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(
                SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )
                .into(),
            )
        }
        _ => None,
    }
}

/// Sets the calling thread's timer slack (PR_SET_TIMERSLACK): how late the kernel may wake it
/// from a timed sleep to merge wake-ups. The default is 50 us.
pub fn set_timer_slack(slack: Duration) -> io::Result<()> {
    let nanos = libc::c_ulong::try_from(slack.as_nanos().max(1)).unwrap_or(libc::c_ulong::MAX);
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and affects only this thread.
    let result = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, nanos, 0, 0, 0) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Moves the calling thread to the real-time class (SCHED_FIFO, lowest priority), where other
/// processes' work cannot delay its wake-ups. Needs CAP_SYS_NICE (or an RLIMIT_RTPRIO); the
/// kernel's real-time throttling still leaves other work 5% of each CPU.
pub fn set_realtime() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: pthread_self is always valid and `param` outlives the call.
    let result = unsafe {
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &raw const param)
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(result))
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: no limit), with nanosecond
/// resolution (ppoll); each fd's `revents` says which.
pub fn wait_readable(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    let spec = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos()),
    });
    let spec_ptr = spec.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `fds` is a valid slice of pollfd; `spec_ptr` is null or points at `spec`, which
    // outlives the call; no signal mask.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            spec_ptr,
            std::ptr::null(),
        )
    };
    if n < 0 {
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_datagram_carries_a_kernel_timestamp_between_send_and_receive() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        enable_rx_timestamps(&b).expect("timestamps");
        let before = SystemTime::now();
        a.send_to(b"x", b.local_addr().expect("addr"))
            .expect("send");
        let mut fds = [libc::pollfd {
            fd: b.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        wait_readable(&mut fds, Some(Duration::from_secs(5))).expect("poll");
        let mut buf = [0u8; 16];
        let got = recv_timestamped(&b, &mut buf).expect("receive");
        let after = SystemTime::now();
        assert_eq!((got.len, got.from), (1, a.local_addr().expect("addr")));
        assert!(before <= got.at && got.at <= after);
    }
}
