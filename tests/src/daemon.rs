//! Spawning `ntpd-lite` daemons from generated TOML in temporary directories, waiting until they
//! answer, reading their status, stopping them, and showing their logs when a test fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::Client;

/// A running `ntpd-lite`, stopped (SIGTERM) when dropped. If the test is panicking, its log is
/// printed so the failure can be read.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Writes `config` (TOML; `{dir}` is replaced by the daemon's temporary directory) and starts
    /// the daemon on it. The control socket, if the config names `{dir}/control.sock`, is there.
    pub fn start(name: &str, config: &str) -> Self {
        Self::start_in(name, config, None)
    }

    /// Like [`Daemon::start`], inside the network namespace `netns` if given.
    pub fn start_in(name: &str, config: &str, netns: Option<&crate::netns::Netns>) -> Self {
        let binary = crate::bins::binary("ntpd-lite", "ntpd-lite");
        let command = match netns {
            Some(netns) => netns.command(binary),
            None => Command::new(binary),
        };
        Self::spawn(name, config, command)
    }

    /// Like [`Daemon::start`], but runs the ntpd-lite at `binary` (e.g. one built from another
    /// commit, to compare two builds in one benchmark run).
    pub fn start_binary(name: &str, config: &str, binary: &Path) -> Self {
        Self::spawn(name, config, Command::new(binary))
    }

    fn spawn(name: &str, config: &str, mut command: Command) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ntpd-lite-{name}-"))
            .tempdir()
            .expect("temp dir");
        let config = config.replace("{dir}", &dir.path().display().to_string());
        let config_path = dir.path().join("ntpd-lite.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let child = command
            .arg("--config")
            .arg(&config_path)
            .arg("--log-level")
            .arg("debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn ntpd-lite");
        Self {
            name: name.to_owned(),
            child: Some(child),
            dir,
        }
    }

    /// The daemon's process ID (also inside a network namespace: `ip netns exec` execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The effective capabilities of each of its threads, from /proc (hex, as the kernel prints).
    pub fn thread_capabilities(&self) -> Vec<(String, String)> {
        let Some(pid) = self.pid() else {
            return Vec::new();
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Vec::new();
        };
        tasks
            .filter_map(Result::ok)
            .filter_map(|task| {
                let status = std::fs::read_to_string(task.path().join("status")).ok()?;
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_owned())
                };
                Some((field("Name:")?, field("CapEff:")?))
            })
            .collect()
    }

    /// The daemon's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The control socket path used by configs that say `socket = "{dir}/control.sock"`.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Waits until a log line contains `what` (at most `timeout`) and returns that line.
    pub fn wait_log(&mut self, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(what)) {
                return line.to_owned();
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{}: no {what:?} in the log within {timeout:?}\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's counters from `status`: datagrams received, responses sent (KoDs included)
    /// and datagrams dropped for any reason. Every datagram handled is one of the last two.
    pub fn server_counters(&self) -> (u64, u64, u64) {
        let status = self.status();
        let server = &status["server"];
        let count = |name: &str| server[name].as_u64().expect("counter");
        let dropped: u64 = server["dropped"]
            .as_object()
            .expect("dropped")
            .values()
            .map(|v| v.as_u64().expect("count"))
            .sum();
        (count("received"), count("responses"), dropped)
    }

    /// The `address=` fields of the first `count` log lines that contain `what`, waiting for
    /// them (at most 10 s): where the daemon really listens, port 0 resolved.
    pub fn logged_addresses(&mut self, what: &str, count: usize) -> Vec<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<SocketAddr> = self
                .log()
                .lines()
                .filter(|l| l.contains(what))
                .filter_map(|l| {
                    l.split_whitespace()
                        .find_map(|field| field.strip_prefix("address="))
                        .and_then(|a| a.parse().ok())
                })
                .take(count)
                .collect();
            if found.len() == count {
                return found;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{}: not {count} {what:?} lines with an address in the log within 10 s\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the server at `address` answers a query (at most 10 s).
    pub fn wait_serving(&mut self, address: SocketAddr) {
        self.wait_serving_within(address, Duration::from_secs(10));
    }

    /// Waits until the server at `address` answers a query, at most `limit`; returns how long
    /// that took.
    pub fn wait_serving_within(&mut self, address: SocketAddr, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            self.assert_running();
            if let Ok(client) = Client::connect(address)
                && client.query(4, 6).is_ok()
            {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not answer on {address} within {limit:?}\n{}",
            self.name,
            self.log()
        );
    }

    /// Panics with the log if the daemon has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("{} exited with {status}\n{}", self.name, self.log());
        }
    }

    /// The daemon's status, read from its control socket (the same JSON `ntpd-lite status
    /// --json` prints), parsed.
    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|e| panic!("status of {}: {e}\n{}", self.name, self.log()))
    }

    /// The status, or why it could not be read.
    pub fn try_status(&self) -> Result<Value, String> {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(self.control_socket())
            .map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        stream.write_all(b"status\n").map_err(|e| e.to_string())?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&reply).map_err(|e| format!("{e}: {reply}"))
    }

    /// Stops the daemon with SIGTERM and waits for it; returns its exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // kill(1) sends SIGTERM without unsafe code in this crate.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} -----\n{}\n----- end of log -----",
                self.name,
                self.log()
            );
        }
    }
}
