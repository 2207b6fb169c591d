//! Scriptable fake NTP servers on loopback: honest with any clock offset, forged origin,
//! kiss-o'-death, unsynchronized, silent, or any script. Each records the requests it got.
//!
//! A server runs on its own thread on `127.0.0.1:0` or `[::1]:0` (or a socket the test bound,
//! inside a network namespace of its own) and stops when dropped.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ntp_proto::{
    LeapIndicator, Mode, NtpDuration, NtpShort, NtpTimestamp, Packet, PollInterval, Precision,
    ReferenceId, Stratum,
};

/// What the server answers to a request received at (true) time `t2`. Each returned datagram
/// is sent, in order; none means silence.
pub type Script = Box<dyn Fn(&Packet, NtpTimestamp) -> Vec<Vec<u8>> + Send + Sync>;

/// Canned behaviours.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Behavior {
    /// A correct stratum 2 server whose clock is off by this much.
    Honest(NtpDuration),
    /// A reply whose origin timestamp is not the request's, claiming a time 1000 s off.
    ForgedOrigin,
    /// A forged reply first, then the honest one (offset zero).
    ForgedThenHonest,
    /// A kiss-o'-death with this code.
    Kiss(ReferenceId),
    /// Leap indicator 3 and stratum 16: not synchronized.
    Unsynchronized,
    /// Never answers.
    Silent,
}

/// A request as the server saw it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Received {
    /// Where it came from.
    pub from: SocketAddr,
    /// What it said.
    pub packet: Packet,
}

/// A running fake server; stops on drop.
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// A server with a canned behaviour on 127.0.0.1.
    pub fn v4(behavior: Behavior) -> Self {
        Self::start(Ipv4Addr::LOCALHOST.into(), script(behavior)).expect("bind 127.0.0.1")
    }

    /// A server with a canned behaviour on ::1.
    pub fn v6(behavior: Behavior) -> Self {
        Self::start(Ipv6Addr::LOCALHOST.into(), script(behavior)).expect("bind ::1")
    }

    /// A server running `script` on `ip`, port 0.
    pub fn start(ip: IpAddr, script: Script) -> io::Result<Self> {
        Self::start_at(SocketAddr::new(ip, 0), script)
    }

    /// A server running `script` on exactly `addr`.
    pub fn start_at(addr: SocketAddr, script: Script) -> io::Result<Self> {
        Self::start_on(UdpSocket::bind(addr)?, script)
    }

    /// A server running `script` on a socket already bound (e.g. inside a network namespace,
    /// see [`crate::netns::Netns::bind_udp`]).
    pub fn start_on(socket: UdpSocket, script: Script) -> io::Result<Self> {
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let addr = socket.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || serve(&socket, &script, &requests, &stop))
        };
        Ok(Self {
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT` or `[::1]:PORT`, as a server argument.
    pub fn arg(&self) -> String {
        self.addr.to_string()
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(socket: &UdpSocket, script: &Script, requests: &Mutex<Vec<Received>>, stop: &AtomicBool) {
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue; // read timeout: look at the stop flag again
        };
        let t2 = now();
        let Ok((packet, _)) = Packet::parse(&buf[..len]) else {
            continue;
        };
        if let Ok(mut r) = requests.lock() {
            r.push(Received { from, packet });
        }
        for datagram in script(&packet, t2) {
            let _ = socket.send_to(&datagram, from);
        }
    }
}

/// The system clock as an NTP timestamp.
pub fn now() -> NtpTimestamp {
    NtpTimestamp::from_system_time(SystemTime::now())
}

/// A stratum 2 reply to `request` from a server whose clock is `offset` ahead, received at true
/// time `t2` and sent now.
pub fn reply(request: &Packet, t2: NtpTimestamp, offset: NtpDuration) -> Packet {
    let mut p = Packet::client_request(request.version, PollInterval::new(6), NtpTimestamp::ZERO);
    p.mode = Mode::SERVER;
    p.stratum = Stratum::new(2);
    p.precision = Precision::new(-20);
    p.root_delay = NtpShort::from_duration(NtpDuration::from_nanos(200_000));
    p.root_dispersion = NtpShort::from_duration(NtpDuration::from_nanos(500_000));
    p.reference_id = ReferenceId::from_bytes([127, 0, 0, 2]);
    p.reference_timestamp = t2 + offset - NtpDuration::from_seconds(16);
    p.origin_timestamp = request.transmit_timestamp;
    p.receive_timestamp = t2 + offset;
    p.transmit_timestamp = now() + offset;
    p
}

/// The script of a canned behaviour.
pub fn script(behavior: Behavior) -> Script {
    Box::new(move |request, t2| {
        let honest = reply(request, t2, NtpDuration::ZERO);
        let packets = match behavior {
            Behavior::Honest(offset) => vec![reply(request, t2, offset)],
            Behavior::ForgedOrigin => vec![forged(request, t2)],
            Behavior::ForgedThenHonest => vec![forged(request, t2), honest],
            Behavior::Kiss(code) => vec![Packet {
                stratum: Stratum::UNSPECIFIED,
                reference_id: code,
                ..honest
            }],
            Behavior::Unsynchronized => vec![Packet {
                leap: LeapIndicator::Unsynchronized,
                stratum: Stratum::UNSYNCHRONIZED,
                ..honest
            }],
            Behavior::Silent => vec![],
        };
        packets.iter().map(|p| p.serialize().to_vec()).collect()
    })
}

/// What an off-path attacker sends: a plausible reply with a guessed origin and a wrong time.
fn forged(request: &Packet, t2: NtpTimestamp) -> Packet {
    let mut p = reply(request, t2, NtpDuration::from_seconds(1000));
    p.origin_timestamp = request.transmit_timestamp + NtpDuration::from_seconds(1);
    p
}

/// A loopback port with nothing listening (bound, then released), so a datagram to it draws an
/// ICMP port unreachable.
pub fn closed_port(ip: IpAddr) -> SocketAddr {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind");
    socket.local_addr().expect("local addr")
}
