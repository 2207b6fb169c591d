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
            match Self::start_on(crate::tools::free_udp_port(), &[]) {
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

fn temp_dir(port: u16) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "ntp-lite-chronyd-{}-{port}-{}",
        std::process::id(),
        now().fraction()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    Ok(dir)
}

/// A chronyd process with its own directory, stopped when dropped.
#[derive(Debug)]
pub struct ChronydClient {
    child: Child,
    dir: tempfile::TempDir,
}

/// One line of `chronyc -c sources`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChronySource {
    /// `*` selected, `+` combined, `-` not combined, `?` unusable, `x` falseticker, `~` too variable.
    pub state: char,
    /// Address.
    pub address: String,
    /// Stratum.
    pub stratum: u8,
    /// Reach register (octal in chronyc's output).
    pub reach: u8,
    /// Last offset, seconds (chrony's sign: positive = the source is behind us... as printed).
    pub offset: f64,
    /// The error bound chronyc prints for that sample (`+/-`), seconds.
    pub error: f64,
}

impl ChronydClient {
    /// chronyd as a client of `server`, polling every 0.25-1 s, with its command socket in its own
    /// directory. `None` if chronyd is not installed (outside CI).
    pub fn client_of(server: SocketAddr) -> Option<Self> {
        let directives = format!(
            "server {} port {} iburst minpoll -2 maxpoll 0\nport 0\n",
            server.ip(),
            server.port()
        );
        Self::start(&directives)
    }

    /// chronyd as a server on 127.0.0.1:`port` from its own clock at `local stratum N`.
    pub fn local_server(port: u16, stratum: u8) -> Option<Self> {
        let directives = format!(
            "port {port}\nbindaddress 127.0.0.1\nlocal stratum {stratum}\nallow 127.0.0.1\nallow ::1\n"
        );
        Self::start(&directives)
    }

    /// chronyd as a symmetric peer of `peer` (chrony's `peer ADDR port N`), polling every
    /// 0.25-1 s, serving (and peering) on `address` (`bindaddress`, `port`), with a local clock at
    /// `local stratum 10` until something better is selected, and `upstream` as its server.
    pub fn peer_of(
        peer: SocketAddr,
        address: SocketAddr,
        upstream: Option<SocketAddr>,
    ) -> Option<Self> {
        let mut directives = format!(
            "peer {} port {} minpoll -2 maxpoll 0\nport {}\nbindaddress {}\n\
             local stratum 10\nallow 127.0.0.0/8\n",
            peer.ip(),
            peer.port(),
            address.port(),
            address.ip()
        );
        if let Some(server) = upstream {
            directives.push_str(&format!(
                "server {} port {} iburst minpoll -2 maxpoll 0\n",
                server.ip(),
                server.port()
            ));
        }
        Self::start(&directives)
    }

    /// chronyd with `directives` (a `server`, `keyfile`, `port` ... each on its own line) and
    /// its command socket in its own directory. `None` if chronyd is not installed (outside CI).
    pub fn start(directives: &str) -> Option<Self> {
        Self::spawn(directives, None)
    }

    /// chronyd with `directives` inside `netns` (port 123 is then its own to use).
    pub fn start_in(directives: &str, netns: &crate::netns::Netns) -> Option<Self> {
        Self::spawn(directives, Some(netns))
    }

    fn spawn(directives: &str, netns: Option<&crate::netns::Netns>) -> Option<Self> {
        if !crate::tools::require("chronyd", Chronyd::installed(), "chronyd client") {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("chronyd-")
            .tempdir()
            .expect("temp dir");
        // chronyd refuses a command socket in a directory others can reach.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        let config = format!(
            "{directives}cmdport 0\nbindcmdaddress {dir}/chronyd.sock\npidfile {dir}/chronyd.pid\n",
            dir = dir.path().display()
        );
        let config_path = dir.path().join("chrony.conf");
        std::fs::write(&config_path, config).expect("write chrony.conf");
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        // -x: never touch the clock. -d: foreground, log to stderr. -u root: keep access to the
        // temporary directory (no privilege drop to _chrony).
        let mut command = match netns {
            Some(netns) => netns.command(CHRONYD),
            None => Command::new(CHRONYD),
        };
        let child = command
            .args(["-x", "-d", "-u", "root", "-f"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn chronyd");
        Some(Self { child, dir })
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("chronyd.sock")
    }

    /// What `chronyc -n ARGS` printed to this chronyd's command socket; empty if chronyc could
    /// not run (chronyd not answering yet prints nothing useful either).
    fn chronyc(&self, args: &[&str]) -> String {
        Command::new("chronyc")
            .arg("-h")
            .arg(self.socket())
            .arg("-n")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// `chronyc -c authdata`: one CSV line per source (address, mode `SK` for a symmetric key,
    /// `NTS` or `-`, key ID, type, key length in bits, ...); empty while chronyd is not answering.
    pub fn authdata(&self) -> Vec<String> {
        self.chronyc(&["-c", "authdata"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `chronyc ntpdata` (the last exchange with each source: its mode, "Interleaved", the
    /// timestamping of both ends, ...); empty while chronyd is not answering.
    pub fn ntpdata(&self) -> String {
        self.chronyc(&["ntpdata"])
    }

    /// The time chronyd serves minus this machine's clock, seconds, now: `chronyc -c tracking`'s
    /// System time (positive: the system clock is slow of chronyd's time). With `-x` chronyd
    /// never moves the clock, so this is its whole correction: its true error when the clock it
    /// follows is this machine's. `None` while chronyd is not answering.
    pub fn correction(&self) -> Option<f64> {
        parse_tracking_correction(&self.chronyc(&["-c", "tracking"]))
    }

    /// `chronyc -c sources`, parsed; empty while chronyd is not answering yet.
    pub fn sources(&self) -> Vec<ChronySource> {
        self.chronyc(&["-c", "sources"])
            .lines()
            .filter_map(parse_source_line)
            .collect()
    }

    /// Polls `sources` until `done` says yes or `timeout` passes; returns the last reading.
    pub fn wait_sources(
        &self,
        timeout: Duration,
        done: impl Fn(&[ChronySource]) -> bool,
    ) -> Vec<ChronySource> {
        let deadline = Instant::now() + timeout;
        loop {
            let sources = self.sources();
            if done(&sources) || Instant::now() > deadline {
                return sources;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn parse_source_line(line: &str) -> Option<ChronySource> {
    let fields: Vec<&str> = line.split(',').collect();
    let [
        _,
        state,
        address,
        stratum,
        _poll,
        reach,
        _lastrx,
        offset,
        _original,
        error,
        ..,
    ] = fields.as_slice()
    else {
        return None;
    };
    Some(ChronySource {
        state: state.chars().next()?,
        address: (*address).to_owned(),
        stratum: stratum.parse().ok()?,
        reach: u8::from_str_radix(reach, 8).ok()?,
        offset: offset.parse().ok()?,
        error: error.parse().ok()?,
    })
}

/// The System time field (the fifth) of `chronyc -c tracking`, signed: positive when the system
/// clock is slow of chronyd's time (chronyc's plain output says "slow").
fn parse_tracking_correction(csv: &str) -> Option<f64> {
    csv.lines().next()?.split(',').nth(4)?.parse().ok()
}

impl Drop for ChronydClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- chronyd log -----\n{}\n-----", self.log());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chronyc_csv_lines_parse() {
        let line = "^,*,127.0.0.1,1,-2,377,0,-0.000000123,-0.000000100,0.000023456";
        let source = parse_source_line(line).expect("a source line");
        assert_eq!((source.state, source.stratum, source.reach), ('*', 1, 255));
        assert_eq!(source.address, "127.0.0.1");
        assert!((source.offset + 1.23e-7).abs() < 1e-12);
        assert_eq!(parse_source_line("garbage"), None);
    }

    #[test]
    fn chronyc_tracking_csv_gives_the_signed_correction() {
        // chronyd 4.3 -x, 0.5 ms ahead through a link 1 ms slower out than back; its plain
        // output said "System time : 0.000501829 seconds slow of NTP time".
        let line = "7F000001,127.0.0.1,2,1796045113.817736798,0.000501829,-0.000000067,\
                    0.000000388,0.004,0.000,0.015,0.000001663,0.000017265,1.0,Normal\n";
        assert_eq!(parse_tracking_correction(line), Some(0.000501829));
        let fast = line.replacen(",0.000501829,", ",-0.000000056,", 1);
        assert_eq!(parse_tracking_correction(&fast), Some(-0.000000056));
        assert_eq!(
            parse_tracking_correction("506 Cannot talk to daemon\n"),
            None
        );
    }
}
