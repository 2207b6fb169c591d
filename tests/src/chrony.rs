//! A real chronyd serving time on loopback, for side-by-side tests and benchmarks.
//!
//! Always started with `-x` (never touches the system clock), in the foreground (`-d`), with a
//! config in a fresh temporary directory: `local stratum 2`, `allow 127.0.0.1`, `allow ::1`,
//! `cmdport 0`, no Unix command socket, no drift file. It is killed when the [`Chronyd`] is dropped,
//! also when a test panics.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ntp_proto::query::{AddressQuery, QueryConfig};
use ntp_proto::{NtpTimestamp, Stratum};

use crate::fake_server::now;

/// Where chronyd is installed.
pub const CHRONYD: &str = "/usr/sbin/chronyd";

/// A running chronyd; killed on drop.
#[derive(Debug)]
pub struct Chronyd {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Chronyd {
    /// True if chronyd is installed.
    pub fn installed() -> bool {
        Path::new(CHRONYD).is_file()
    }

    /// Starts chronyd on a free high port and waits until it answers as stratum 2.
    pub fn start() -> Result<Self, String> {
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::start_on(free_port()?, &[]) {
                Ok(c) => return Ok(c),
                Err(e) => last_error = e, // the port may have been taken meanwhile
            }
        }
        Err(last_error)
    }

    /// Starts chronyd on `port` with extra config lines and waits until it answers.
    pub fn start_on(port: u16, extra_config: &[&str]) -> Result<Self, String> {
        let dir = temp_dir(port)?;
        let conf = dir.join("chrony.conf");
        let mut text = format!(
            "port {port}\nlocal stratum 2\nallow 127.0.0.1\nallow ::1\ncmdport 0\n\
             bindcmdaddress /\npidfile {}\n",
            dir.join("chronyd.pid").display()
        );
        for line in extra_config {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&conf, text).map_err(|e| format!("write {}: {e}", conf.display()))?;
        let log = std::fs::File::create(dir.join("chronyd.log")).map_err(|e| e.to_string())?;
        let child = Command::new(CHRONYD)
            .args(["-x", "-d", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {CHRONYD}: {e}"))?;
        let mut chronyd = Self { child, dir, port };
        chronyd.wait_until_serving()?;
        Ok(chronyd)
    }

    /// The port it serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn v4(&self) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.port)
    }

    /// `[::1]:PORT`.
    pub fn v6(&self) -> SocketAddr {
        SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.port)
    }

    /// chronyd's own log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chronyd.log")).unwrap_or_default()
    }

    fn wait_until_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chronyd exited ({status}):\n{}", self.log()));
            }
            if answers_as_stratum_2(self.v4()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "chronyd did not answer within 10 s:\n{}",
            self.log()
        ))
    }
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One quick query with ntp-proto's own client logic.
fn answers_as_stratum_2(server: SocketAddr) -> bool {
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    if socket.connect(server).is_err()
        || socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .is_err()
    {
        return false;
    }
    let start = Instant::now();
    let mut query = AddressQuery::new(QueryConfig::default(), start);
    let Some(request) = query.poll_transmit(start, NtpTimestamp::from_bits(rand_cookie())) else {
        return false;
    };
    query.on_sent(start, now());
    if socket.send(&request).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    let Ok(len) = socket.recv(&mut buf) else {
        return false;
    };
    query.handle_reply(&buf[..len], now());
    let report = query.finish();
    report
        .best()
        .is_some_and(|r| r.packet.stratum == Stratum::new(2))
}

fn rand_cookie() -> u64 {
    let nanos = now().to_bits();
    nanos ^ u64::from(std::process::id()).rotate_left(40) | 1
}

/// A UDP port free on both 0.0.0.0 and [::] right now.
pub fn free_port() -> Result<u16, String> {
    for _ in 0..20 {
        let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
        let port = v4.local_addr().map_err(|e| e.to_string())?.port();
        drop(v4);
        // A dual-stack [::] bind also claims the IPv4 port: it succeeds only if both are free.
        if UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free UDP port found".to_owned())
}

fn temp_dir(port: u16) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "ntp-lite-chronyd-{}-{port}-{}",
        std::process::id(),
        now().fraction()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    Ok(dir)
}
