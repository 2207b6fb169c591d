//! Real NTP peers for interop tests: chronyd (always `-x`: it never touches the clock), Python's
//! ntplib, and ntpsec's ntpdig inside a network namespace of the test's own (ntpdig has no port
//! option, so it queries port 123 there). Under CI a missing peer is a failure; elsewhere the test
//! is skipped with a loud message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `program` can be run; under CI its absence fails the test.
pub fn available(program: &str, check: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(check)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !crate::in_ci(),
            "{program} is required under CI (see .ci/run) but cannot be run"
        );
        eprintln!("SKIPPED: {program} is not installed here; install it to run this interop test");
    }
    ok
}

/// A chronyd process with its own directory, stopped when dropped.
#[derive(Debug)]
pub struct Chronyd {
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
}

impl Chronyd {
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

    fn start(directives: &str) -> Option<Self> {
        if !available("chronyd", &["-v"]) {
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
        let child = Command::new("chronyd")
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

    /// `chronyc -c sources`, parsed; empty while chronyd is not answering yet.
    pub fn sources(&self) -> Vec<ChronySource> {
        let Ok(output) = Command::new("chronyc")
            .arg("-h")
            .arg(self.socket())
            .args(["-n", "-c", "sources"])
            .output()
        else {
            return Vec::new();
        };
        String::from_utf8_lossy(&output.stdout)
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
    })
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- chronyd log -----\n{}\n-----", self.log());
        }
    }
}

/// What ntplib made of one reply.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NtplibReply {
    /// Stratum.
    pub stratum: u8,
    /// Reference ID as `ntplib.ref_id_to_text` renders it.
    pub ref_id: String,
    /// Leap indicator.
    pub leap: u8,
    /// Version.
    pub version: u8,
    /// Offset, seconds.
    pub offset: f64,
    /// Round-trip delay, seconds.
    pub delay: f64,
}

/// Queries `server` with Python's ntplib (`NTPClient().request`), as the example it replaces does.
/// `None` if ntplib is not installed (outside CI).
pub fn ntplib_query(server: SocketAddr, version: u8) -> Option<NtplibReply> {
    if !available("python3", &["-c", "import ntplib"]) {
        return None;
    }
    let script = "import json, sys, ntplib\n\
        r = ntplib.NTPClient().request(sys.argv[1], version=int(sys.argv[3]), port=int(sys.argv[2]))\n\
        print(json.dumps(dict(stratum=r.stratum, ref_id=ntplib.ref_id_to_text(r.ref_id, r.stratum), leap=r.leap, version=r.version, offset=r.offset, delay=r.delay)))";
    let output = Command::new("python3")
        .args([
            "-c",
            script,
            &server.ip().to_string(),
            &server.port().to_string(),
            &version.to_string(),
        ])
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "ntplib failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("ntplib script prints JSON"))
}

/// A network namespace of the test's own, with loopback up, deleted when dropped. Commands run
/// in it through `ip netns exec`.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace; `None` outside CI when this machine cannot (not root).
    pub fn create(tag: &str) -> Option<Self> {
        let name = format!("ntplite-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                !crate::in_ci(),
                "cannot create a network namespace under CI (needs root and iproute2)"
            );
            eprintln!("SKIPPED: cannot create a network namespace here (needs root and iproute2)");
            return None;
        }
        let netns = Self { name };
        let up = netns
            .command("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(
            up.is_ok_and(|s| s.success()),
            "bring loopback up in {}",
            netns.name
        );
        Some(netns)
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(program.as_ref());
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
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
}
