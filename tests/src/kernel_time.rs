//! Kernel receive timestamps (SO_TIMESTAMPNS) on plain std UDP sockets, and the thread's timer
//! slack: what the link emulator and its measurements need to see microseconds.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

/// Turns on kernel receive timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME) for `socket`.
pub fn enable_rx_timestamps(socket: &UdpSocket) -> io::Result<()> {
    ntp_os::socket::enable_timestamps(socket)
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
    let (len, from, at) = ntp_os::socket::recv_from_timestamped(socket.as_raw_fd(), buffer)?;
    Ok(Received {
        len,
        from,
        at: at.unwrap_or_else(SystemTime::now),
    })
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
