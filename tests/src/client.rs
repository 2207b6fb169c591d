//! A minimal NTP client for tests, built on ntp-proto: one request, one checked reply.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime};

use ntp_proto::sample::{ReplyLimits, SentRequest, process_reply};
use ntp_proto::{NtpTimestamp, Packet, PollInterval, Sample, Version};

/// A reply and what it measured.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// The reply header.
    pub reply: Packet,
    /// Offset, delay and dispersion, if the reply passed every check.
    pub sample: Result<Sample, ntp_proto::ReplyError>,
    /// Length of the reply datagram.
    pub len: usize,
}

/// A socket connected to one server.
#[derive(Debug)]
pub struct Client {
    socket: UdpSocket,
}

impl Client {
    /// Connects to `server` from an ephemeral port.
    pub fn connect(server: SocketAddr) -> io::Result<Self> {
        let local: SocketAddr = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        }
        .parse()
        .expect("literal");
        let socket = UdpSocket::bind(local)?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(Self { socket })
    }

    /// A client on a socket of the caller's, already connected (e.g. bound to a chosen address).
    pub fn from_socket(socket: UdpSocket) -> io::Result<Self> {
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(Self { socket })
    }

    /// Sends raw bytes.
    pub fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        self.socket.send(bytes).map(drop)
    }

    /// Waits up to `timeout` for a datagram; `None` on timeout.
    pub fn receive_raw(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        self.socket.set_read_timeout(Some(timeout))?;
        let mut buffer = [0u8; 2048];
        match self.socket.recv(&mut buffer) {
            Ok(n) => Ok(Some(buffer[..n].to_vec())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// One request with `version` and `poll`, a random cookie, and the reply checked.
    pub fn query(&self, version: u8, poll: i8) -> io::Result<Answer> {
        let cookie = NtpTimestamp::from_bits(rand::random());
        let request =
            Packet::client_request(Version::new(version), PollInterval::new(poll), cookie);
        let t1 = NtpTimestamp::from_system_time(SystemTime::now());
        self.send_raw(&request.serialize())?;
        let Some(bytes) = self.receive_raw(Duration::from_secs(2))? else {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no reply within 2 s",
            ));
        };
        let t4 = NtpTimestamp::from_system_time(SystemTime::now());
        let (reply, _) =
            Packet::parse(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let sample = process_reply(
            &reply,
            &SentRequest { cookie, t1 },
            t4,
            &ReplyLimits::default(),
        );
        Ok(Answer {
            reply,
            sample,
            len: bytes.len(),
        })
    }
}
