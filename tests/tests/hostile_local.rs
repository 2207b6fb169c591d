//! Hostile local users against a running daemon: never-finished requests held open on the
//! metrics port and the control socket, descriptor exhaustion, control requests of every
//! malformed kind, a second daemon started on the same configuration, and control-socket
//! directories that another user controls. Loopback only, virtual clocks; every attack is
//! bounded in connections and time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ntp_lite_tests::bins::binary;
use ntp_lite_tests::client::Client;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::tools;

/// Connections the attackers hold open (the daemon keeps 32 per endpoint).
const HELD: usize = 64;
/// Every attack stops after this many connections in all...
const MAX_CONNECTS: usize = 20_000;
/// ...or after this long.
const MAX_ATTACK: Duration = Duration::from_secs(60);
/// How long one scrape or status may take, retries included.
const ANSWER_DEADLINE: Duration = Duration::from_secs(5);

/// A local-reference daemon on ports the kernel chose, with a control socket and metrics.
struct Target {
    daemon: Daemon,
    ntp: SocketAddr,
    metrics: SocketAddr,
}

fn start(name: &str) -> Target {
    let config = "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n[local]\nstratum = 1\n\
                  [clock]\nmode = \"virtual\"\n[control]\nsocket = \"{dir}/control.sock\"\n\
                  [observability]\nmetrics = \"127.0.0.1:0\"\n";
    let mut daemon = Daemon::start(name, config);
    let ntp = daemon.logged_addresses("serving NTP", 1)[0];
    let metrics = daemon.logged_addresses("serving metrics", 1)[0];
    daemon.wait_serving(ntp);
    Target {
        daemon,
        ntp,
        metrics,
    }
}

/// One scrape: the whole exposition, or why not.
fn scrape(address: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: ntpd-lite\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    if response.starts_with("HTTP/1.1 200") && response.ends_with("# EOF\n") {
        Ok(response)
    } else {
        Err(format!("unexpected response {response:?}"))
    }
}

/// Tries `ask` until it answers, for at most [`ANSWER_DEADLINE`]: (attempts, time taken).
fn answered_within_deadline<T>(
    what: &str,
    mut ask: impl FnMut() -> Result<T, String>,
) -> (u32, Duration) {
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match ask() {
            Ok(_) => return (attempts, start.elapsed()),
            Err(e) => assert!(
                start.elapsed() < ANSWER_DEADLINE,
                "{what}: no answer within {ANSWER_DEADLINE:?} ({attempts} attempts), last: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True if the daemon has closed `stream` (a non-blocking socket): end of file or an error.
fn closed(stream: &mut impl Read) -> bool {
    let mut buffer = [0u8; 512];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {} // an error reply before the close: read on
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// An attacker thread that holds [`HELD`] connections, each with half a request sent, and
/// opens a new one whenever the daemon closes one: what a real attacker does.
struct Attack {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Attack {
    /// Starts the attack and returns once all [`HELD`] connections are open.
    fn start<S, F>(connect: F) -> Self
    where
        S: Read + Send + 'static,
        F: Fn() -> io::Result<S> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, is_ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let start = Instant::now();
                let mut held: Vec<Option<S>> = (0..HELD).map(|_| None).collect();
                let mut connects = 0;
                while !stop.load(Ordering::Relaxed)
                    && connects < MAX_CONNECTS
                    && start.elapsed() < MAX_ATTACK
                {
                    for slot in &mut held {
                        if slot.as_mut().is_none_or(closed) && connects < MAX_CONNECTS {
                            connects += 1;
                            *slot = connect().ok();
                        }
                    }
                    if connects == HELD {
                        let _ = ready.send(());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                connects
            }
        });
        is_ready
            .recv_timeout(Duration::from_secs(30))
            .expect("the attacker opened its connections");
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the attack, closing its connections; returns how many it opened in all.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("attacker thread"))
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn never_finished_requests_on_the_metrics_port_do_not_block_scrapes() {
    let mut target = start("slow-metrics");
    let metrics = target.metrics;
    let attack = Attack::start(move || {
        let mut stream = TcpStream::connect(metrics)?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: ntpd-lite\r\n")?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    });
    // More connections than the daemon keeps: it has been closing the oldest waiting ones.
    target.daemon.wait_log(
        "connection limit reached: closed the oldest",
        Duration::from_secs(10),
    );
    // Spread over two seconds, so that the attacker keeps reopening what the daemon closes.
    let scrapes: Vec<(u32, Duration)> = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            answered_within_deadline("scrape", || scrape(metrics))
        })
        .collect();
    let connects = attack.stop();
    let first_try = scrapes
        .iter()
        .filter(|(attempts, _)| *attempts == 1)
        .count();
    let slowest = scrapes
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    ntp_lite_tests::figures!(
        "{HELD} never-finished requests held ({connects} connections opened in all): \
         {} of 20 scrapes answered, {first_try} at the first try, slowest {slowest:?}",
        scrapes.len()
    );
    target.daemon.assert_running();
}

#[test]
fn idle_connections_on_the_control_socket_do_not_block_status() {
    let mut target = start("slow-control");
    let socket = target.daemon.control_socket();
    let attack = Attack::start(move || {
        let mut stream = UnixStream::connect(&socket)?;
        stream.write_all(b"sta")?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    });
    target.daemon.wait_log(
        "connection limit reached: closed the oldest",
        Duration::from_secs(10),
    );
    let answers: Vec<(u32, Duration)> = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            answered_within_deadline("status", || target.daemon.try_status())
        })
        .collect();
    // The real client too.
    let socket = target.daemon.control_socket();
    let (cli_attempts, _) = answered_within_deadline("ntpd-lite status", || {
        let output = ntpd_lite_status(&socket);
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    });
    let connects = attack.stop();
    let first_try = answers
        .iter()
        .filter(|(attempts, _)| *attempts == 1)
        .count();
    ntp_lite_tests::figures!(
        "{HELD} idle control connections held ({connects} opened in all): {} of 20 status \
         requests answered, {first_try} at the first try; `ntpd-lite status` answered at \
         attempt {cli_attempts}",
        answers.len(),
    );
}

/// Sends `request` on a new control connection (closing the sending side after it if `close`)
/// and returns the reply: the bytes up to the first newline, which must come within 15 s.
fn control_reply(socket: &Path, request: &[u8], close: bool) -> String {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    // An over-long request may be refused before it is all sent: that is fine.
    let _ = stream.write_all(request);
    if close {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(1) => reply.push(byte[0]),
            Ok(_) => break,
            Err(e) => panic!("reading the reply to {request:?}: {e} after {reply:?}"),
        }
    }
    assert!(
        reply.ends_with(b"\n"),
        "no reply line to {request:?}: {reply:?}"
    );
    String::from_utf8(reply).expect("the reply is UTF-8")
}

#[test]
fn every_control_reply_is_one_line_of_json() {
    let mut target = start("control-json");
    let socket = target.daemon.control_socket();
    // The one that waits for the command timeout runs beside the others.
    let silent = std::thread::spawn({
        let socket = socket.clone();
        move || control_reply(&socket, b"stat", false)
    });
    let mut long = vec![b'x'; 10_000];
    long.push(b'\n');
    let cases: [(&[u8], bool, &str); 11] = [
        (b"status\n", false, "stratum"),
        (b"sources\n", false, "["),
        (b"status\r\n", false, "stratum"),
        (b"status", true, "stratum"),
        (b"\n", false, "empty command"),
        (b"", true, "empty command"),
        (b"reboot now\n", false, "unknown command"),
        (b"\0\x1b[2J\"\\\n", false, "unknown command"),
        (b"\xff\xfe\xc3\n", false, "not UTF-8"),
        (b"caf\xc3\n", true, "not UTF-8"),
        (&long, false, "longer than 256 bytes"),
    ];
    for (request, close, expected) in cases {
        let reply = control_reply(&socket, request, close);
        let value: serde_json::Value = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("{request:?} got {reply:?}, not JSON: {e}"));
        assert!(reply.contains(expected), "{request:?}: {reply}");
        if let Some(error) = value.get("error") {
            assert!(
                error
                    .as_str()
                    .is_some_and(|e| e.contains("status or sources")),
                "{reply}"
            );
        }
    }
    let reply = silent.join().expect("the silent client");
    ntp_lite_tests::figures!("a command never finished: {}", reply.trim_end());
    let value: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
    assert!(
        value["error"]
            .as_str()
            .is_some_and(|e| e.contains("within 5 s")),
        "{reply}"
    );
    target.daemon.assert_running();
}

fn ntpd_lite_status(socket: &Path) -> Output {
    Command::new(binary("ntpd-lite", "ntpd-lite"))
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .expect("run ntpd-lite status")
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

#[test]
fn out_of_descriptors_the_daemon_neither_spins_nor_stays_wedged() {
    if !tools::require(
        "prlimit",
        tools::runs("prlimit", &["--version"]),
        "descriptor exhaustion",
    ) {
        return;
    }
    let mut target = start("emfile");
    let pid = target.daemon.pid().expect("pid");
    let baseline = open_descriptors(pid);
    // Eight descriptors to spare: local connections use them up long before the 32 allowed.
    let limit = baseline + 8;
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:"))
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit --pid {pid}");
    // Idle connections, more than the spare descriptors; the rest wait in the listen queue.
    let socket = target.daemon.control_socket();
    let control: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(&socket).expect("connect to the control socket"))
        .collect();
    let line = target
        .daemon
        .wait_log("listener=\"control\" error=", Duration::from_secs(20));
    assert!(
        line.contains("cannot accept") && line.contains("(os error 24)"),
        "{line}"
    );
    // No descriptor is left for the metrics port either: its connections wait too.
    let metrics: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(target.metrics).expect("connect to the metrics port"))
        .collect();
    let line = target
        .daemon
        .wait_log("listener=\"metrics\" error=", Duration::from_secs(20));
    assert!(
        line.contains("cannot accept") && line.contains("(os error 24)"),
        "{line}"
    );
    let (before, start) = (cpu_seconds(pid), Instant::now());
    // The NTP server needs no descriptor: it answers all along.
    let ntp = Client::connect(target.ntp).expect("client");
    let answered = (0..10)
        .filter(|_| {
            std::thread::sleep(Duration::from_millis(300));
            ntp.query(4, 6).is_ok()
        })
        .count();
    let window = start.elapsed();
    let cpu = cpu_seconds(pid) - before;
    let retries = target.daemon.log().matches("accept failed").count();
    ntp_lite_tests::figures!(
        "{baseline} descriptors open, limit {limit}: CPU {cpu:.2} s over {:.1} s out of \
         descriptors ({retries} accept retries so far), {answered} of 10 NTP requests answered",
        window.as_secs_f64()
    );
    assert!(
        cpu < 0.3 * window.as_secs_f64(),
        "the daemon used {cpu:.2} s of CPU in {window:?} without descriptors: a spinning accept loop"
    );
    assert!(answered >= 9, "only {answered} of 10 NTP requests answered");

    // Recovery: once the connections close, everything answers again.
    drop((control, metrics));
    answered_within_deadline("status after recovery", || target.daemon.try_status());
    answered_within_deadline("scrape after recovery", || scrape(target.metrics));
    Client::connect(target.ntp)
        .and_then(|c| c.query(4, 6))
        .expect("NTP after recovery");
    target
        .daemon
        .wait_log("accepting connections again", Duration::from_secs(10));
}

/// Runs `ntpd-lite --config config` and waits for it to exit (at most 30 s; if it runs on, it
/// is stopped and the test fails).
fn run_to_exit(config: &Path) -> Output {
    let mut child = Command::new(binary("ntpd-lite", "ntpd-lite"))
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ntpd-lite");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait");
            panic!(
                "ntpd-lite ran on where it must refuse to start:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// The control socket's identity: a replaced socket has another inode.
fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("control socket").ino()
}

#[test]
fn a_second_daemon_on_the_same_ports_fails_before_it_touches_the_control_socket() {
    let mut first = start("first");
    let socket = first.daemon.control_socket();
    let inode_before = inode(&socket);
    let requests = |daemon: &Daemon| daemon.log().matches("control request").count();
    let seen = requests(&first.daemon);
    let second = |ntp: &str, metrics: &str, name: &str| {
        let config = format!(
            "[server]\nlisten = [\"{ntp}\"]\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n\
             [control]\nsocket = {:?}\n[observability]\nmetrics = \"{metrics}\"\n",
            socket.display().to_string(),
        );
        let path = first.daemon.dir().join(name);
        std::fs::write(&path, config).expect("write config");
        let output = run_to_exit(&path);
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // The same configuration; the same NTP port only; the same metrics address only.
    let cases = [
        (
            first.ntp.to_string(),
            first.metrics.to_string(),
            "metrics endpoint",
        ),
        (
            first.ntp.to_string(),
            "127.0.0.1:0".to_owned(),
            "cannot listen on",
        ),
        (
            "127.0.0.1:0".to_owned(),
            first.metrics.to_string(),
            "metrics endpoint",
        ),
    ];
    for (i, (ntp, metrics, refusal)) in cases.iter().enumerate() {
        let (status, stderr) = second(ntp, metrics, &format!("second-{i}.toml"));
        ntp_lite_tests::figures!(
            "second daemon on NTP {ntp}, metrics {metrics}: {status}, {}",
            stderr.lines().last().unwrap_or_default()
        );
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains(refusal) && stderr.contains("in use"),
            "{stderr}"
        );
        assert!(!stderr.contains("control socket"), "{stderr}");
    }
    // Not even a connection reached the first's control socket, and it is the same socket.
    assert_eq!(requests(&first.daemon), seen, "{}", first.daemon.log());
    assert_eq!(inode(&socket), inode_before);
    first.daemon.assert_running();
    assert_eq!(first.daemon.status()["stratum"], 1);
}

/// A directory for a control socket with `mode`, owned by `owner` (a user name).
fn socket_directory(parent: &Path, owner: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent.join(format!("{owner}-{mode:o}"));
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
    let status = Command::new("chown")
        .arg(owner)
        .arg(&dir)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {owner}");
    dir
}

#[test]
fn a_control_socket_directory_that_another_user_controls_is_refused() {
    // Giving a directory to another user needs root (CI and this machine run tests as root).
    if !tools::require("root", tools::is_root(), "control directory ownership") {
        return;
    }
    let parent = tempfile::tempdir().expect("temp dir");
    let cases = [
        // An attacker in /tmp made the directory first.
        ("nobody", 0o755, "belongs to uid"),
        ("root", 0o777, "writable by group or others"),
        ("root", 0o1777, "writable by group or others"),
        ("root", 0o775, "writable by group or others"),
    ];
    for (owner, mode, refusal) in cases {
        let dir = socket_directory(parent.path(), owner, mode);
        let socket = dir.join("control.sock");
        let config = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n\
             [control]\nsocket = {:?}\n",
            socket.display().to_string()
        );
        let path = parent.path().join(format!("{owner}-{mode:o}.toml"));
        std::fs::write(&path, config).expect("write config");
        let output = run_to_exit(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        ntp_lite_tests::figures!(
            "directory owned by {owner}, mode {mode:o}: {}",
            stderr.lines().last().unwrap_or_default()
        );
        assert!(!output.status.success());
        assert!(
            stderr.contains(refusal) && stderr.contains(&dir.display().to_string()),
            "{stderr}"
        );
        assert!(
            !socket.exists(),
            "nothing is created in a refused directory"
        );

        // The client refuses such a directory too: a socket there may be anyone's.
        let fake = std::os::unix::net::UnixListener::bind(&socket).expect("a fake daemon");
        fake.set_nonblocking(true).expect("nonblocking");
        let output = ntpd_lite_status(&socket);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains(refusal), "{stderr}");
        assert!(
            fake.accept()
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock),
            "the client must not even connect"
        );
    }
}
