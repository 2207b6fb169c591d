//! ntpd-lite operated as in production, on loopback with virtual clocks: `status`, `sources` and
//! the Prometheus endpoint read from running daemons and agreeing; the user switch and the
//! capabilities left (as root); the drift file written on SIGTERM; SIGHUP applying a new log
//! level; a panic-threshold refusal logged; `check-config` and start-up refusing the same
//! configuration that can never work here. Lab addresses 127.0.0.60-79.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ntp_lite_tests::bins::binary;
use ntp_lite_tests::client::Client;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::lab::{Node, clock_error, wait_for};
use ntp_lite_tests::tools;
use serde_json::Value;

const SYNC_TIMEOUT: Duration = Duration::from_secs(40);

fn ntpd_lite() -> Command {
    Command::new(binary("ntpd-lite", "ntpd-lite"))
}

/// A TCP port on 127.0.0.1 free right now.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral TCP port")
        .port()
}

/// `GET path` over HTTP/1.1 with a plain socket: (status code, body).
fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_owned())
}

/// The value of the sample line `series` (name with its labels) in an exposition.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// The PID of the ntpd-lite running on `config`, from /proc.
fn pid_running(config: &Path) -> u32 {
    let needle = config.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args = String::from_utf8_lossy(&c).replace('\0', " ");
                args.contains("ntpd-lite") && args.contains(&needle)
            })
        })
        .unwrap_or_else(|| panic!("no ntpd-lite process runs {needle}"))
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

fn source_of(status: &Value, address: SocketAddr) -> &Value {
    status["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["address"] == address.to_string()))
        .unwrap_or_else(|| panic!("no source {address} in {status}"))
}

#[test]
fn status_sources_and_metrics_agree_on_a_running_lab_daemon() {
    let server = Node::new("upstream", 60).local(1);
    let _server = server.start();
    let client = Node::new("observed", 61).sources(&[server.address]);
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
        .parse()
        .expect("address");
    let config = format!(
        "{}[observability]\nmetrics = \"{metrics}\"\n",
        client.toml()
    );
    let mut daemon = Daemon::start("observed", &config);
    daemon.wait_serving(client.address);
    wait_for(&mut daemon, SYNC_TIMEOUT, "synchronized, reach 377", |s| {
        s["synchronized"] == true && s["sources"][0]["reach"] == 255
    });
    let queries = 5;
    let ntp = Client::connect(client.address).expect("client");
    for _ in 0..queries {
        ntp.query(4, 6).expect("served");
    }

    let status = daemon.status();
    let (code, text) = http_get(metrics, "/metrics");
    assert_eq!(code, 200, "{text}");
    let source = source_of(&status, server.address);
    let labels = format!("{{address=\"{}\"}}", server.address);
    ntp_lite_tests::figures!(
        "status: stratum {}, offset {}, reach {}; metrics: stratum {}, offset {}, reach {}, \
         root distance {} s, requests {}",
        status["stratum"],
        status["offset"],
        source["reach"],
        metric(&text, "ntpd_lite_stratum"),
        metric(&text, "ntpd_lite_offset_seconds"),
        metric(&text, &format!("ntpd_lite_source_reach{labels}")),
        metric(&text, "ntpd_lite_root_distance_seconds"),
        metric(&text, "ntpd_lite_server_received_total"),
    );
    assert_eq!(metric(&text, "ntpd_lite_stratum"), 2.0);
    assert_eq!(metric(&text, "ntpd_lite_synchronized"), 1.0);
    assert_eq!(
        metric(&text, &format!("ntpd_lite_source_reach{labels}")),
        255.0
    );
    let selected = format!(
        "ntpd_lite_source_state{{address=\"{}\",state=\"selected\"}}",
        server.address
    );
    assert_eq!(metric(&text, &selected), 1.0);
    // The offsets are read moments apart: equal within a sample's change, both under 1 ms.
    let offset = metric(&text, "ntpd_lite_offset_seconds");
    let status_offset = status["offset"].as_f64().expect("offset");
    assert!(offset.abs() < 0.001 && (offset - status_offset).abs() < 0.001);
    let distance = metric(&text, "ntpd_lite_root_distance_seconds");
    assert!(distance > 0.0 && distance < 1.5, "root distance {distance}");
    assert!(metric(&text, "ntpd_lite_server_received_total") >= f64::from(queries));
    assert!(metric(&text, "ntpd_lite_server_responses_total") >= f64::from(queries));
    assert_eq!(
        metric(
            &text,
            "ntpd_lite_server_dropped_total{reason=\"rate_limited\"}"
        ),
        0.0
    );
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(http_get(metrics, "/").0, 404);

    // `sources`, found through the daemon's own configuration file.
    let config_file = daemon.dir().join("ntpd-lite.toml");
    let table = ntpd_lite()
        .arg("sources")
        .arg("--config")
        .arg(&config_file)
        .output()
        .expect("run sources");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    ntp_lite_tests::figures!("{table}");
    let line = table
        .lines()
        .find(|l| l.contains(&server.address.to_string()))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.starts_with("* ") && line.contains(" 377 "), "{line}");
    // `status` prints the server's counters too; nothing queries the daemon between the table
    // and the JSON read after it, so they agree exactly.
    let table = ntpd_lite()
        .arg("status")
        .arg("--config")
        .arg(&config_file)
        .output()
        .expect("run status");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    ntp_lite_tests::figures!("{table}");
    let server_counters = &daemon.status()["server"];
    let requests = format!(
        "Server requests : {} received, {} answered, 0 send errors",
        server_counters["received"], server_counters["responses"]
    );
    assert!(table.contains(&requests), "{requests:?} not in\n{table}");
    assert!(server_counters["received"].as_f64() >= Some(f64::from(queries)));
    assert!(
        table.contains("Server KoD sent : RATE 0, DENY 0"),
        "{table}"
    );
    let json = ntpd_lite()
        .args(["sources", "--json", "--socket"])
        .arg(daemon.control_socket())
        .output()
        .expect("run sources --json");
    let sources: Value = serde_json::from_slice(&json.stdout).expect("sources is JSON");
    assert_eq!(sources[0]["address"], server.address.to_string());
    assert_eq!(sources[0]["state"], "selected");
    assert_eq!(sources[0]["stratum"], 1);
}

fn uid_of(user: &str) -> u32 {
    let output = Command::new("id")
        .args(["-u", user])
        .output()
        .expect("run id");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a uid")
}

/// The `Uid:` (real, effective, saved, fs) and `CapEff:`/`CapPrm:` lines of every thread.
fn thread_credentials(pid: u32) -> Vec<(String, String, String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("task directory");
    tasks
        .filter_map(Result::ok)
        .map(|task| {
            let text = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_default()
            };
            (
                field("Name:"),
                field("Uid:"),
                field("CapEff:"),
                field("CapPrm:"),
            )
        })
        .collect()
}

#[test]
fn started_as_root_with_user_nobody_it_serves_as_nobody_with_no_capabilities() {
    // Switching users needs a start as root (CI and this machine run tests as root).
    if !tools::require("root", tools::is_root(), "user switch") {
        return;
    }
    let nobody = uid_of("nobody");
    let server = Node::new("unprivileged", 62).local(1);
    let config = format!("{}[daemon]\nuser = \"nobody\"\n", server.toml());
    let mut daemon = Daemon::start("unprivileged", &config);
    daemon.wait_serving(server.address);
    // The server workers answer from just before the switch; the control socket only once the
    // runtime runs, which is built after it.
    let status = daemon.status();
    assert_eq!(status["stratum"], 1);
    let pid = pid_running(&daemon.dir().join("ntpd-lite.toml"));
    let threads = thread_credentials(pid);
    for (name, uid, effective, permitted) in &threads {
        ntp_lite_tests::figures!(
            "pid {pid} thread {name}: Uid {uid}, CapEff {effective}, CapPrm {permitted}"
        );
    }
    assert!(threads.len() >= 3, "main, runtime and server threads");
    let everyone_nobody = format!("{nobody} {nobody} {nobody} {nobody}");
    for (name, uid, effective, permitted) in &threads {
        assert_eq!(uid, &everyone_nobody, "thread {name}");
        assert_eq!(effective, "0000000000000000", "thread {name}");
        assert_eq!(permitted, "0000000000000000", "thread {name}");
    }
    let socket = std::fs::metadata(daemon.control_socket()).expect("control socket");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        socket.uid(),
        nobody,
        "the control socket is handed to the user"
    );
    assert_eq!(socket.permissions().mode() & 0o777, 0o600);
    let answer = Client::connect(server.address)
        .expect("client")
        .query(4, 6)
        .expect("still serving after the switch");
    assert_eq!(answer.reply.stratum.get(), 1);
    assert!(daemon.log().contains("privileges dropped"));
}

#[test]
fn sigterm_saves_the_drift_file() {
    let server = Node::new("upstream", 63).local(1);
    let _server = server.start();
    let client = Node::new("drifting", 64)
        .drift(40.0)
        .sources(&[server.address])
        .sync("drift-file = \"{dir}/drift\"");
    let mut daemon = client.start();
    let learned = wait_for(&mut daemon, SYNC_TIMEOUT, "frequency learned", |s| {
        (s["frequency_ppm"].as_f64().unwrap_or(0.0) + 40.0).abs() < 5.0
    });
    let drift_file = daemon.dir().join("drift");
    assert!(
        !drift_file.exists(),
        "the periodic save (every 600 s) has not run yet"
    );
    assert_eq!(daemon.stop(), Some(0), "a clean exit on SIGTERM");
    let text = std::fs::read_to_string(&drift_file).expect("drift file written on SIGTERM");
    let saved: f64 = text.trim().parse().expect("the drift file holds a number");
    let running = learned["frequency_ppm"].as_f64().expect("frequency");
    ntp_lite_tests::figures!(
        "drift 40 ppm: frequency {running:+.3} ppm while running, {saved:+.3} ppm saved"
    );
    assert!((saved + 40.0).abs() < 5.0, "saved {saved}");
    assert!(
        (saved - running).abs() < 1.0,
        "saved {saved}, running {running}"
    );
}

/// A daemon started without `--log-level` (the harness always passes one), so that its
/// configuration's `log-level` is in force. Stopped with SIGTERM when dropped.
struct PlainDaemon {
    child: Child,
    config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PlainDaemon {
    fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("ntpd-lite.toml");
        std::fs::write(&config_path, config).expect("config");
        let log = dir.path().join("log");
        let file = std::fs::File::create(&log).expect("log");
        let child = ntpd_lite()
            .arg("--config")
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("spawn ntpd-lite");
        Self {
            child,
            config: config_path,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PlainDaemon {
    fn drop(&mut self) {
        signal(self.child.id(), "TERM");
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- log -----\n{}", self.log());
        }
    }
}

#[test]
fn sighup_applies_a_new_log_level_and_the_daemon_keeps_serving() {
    let port = tools::free_udp_port();
    let address: SocketAddr = format!("127.0.0.65:{port}").parse().expect("address");
    let config = |level: &str, holdover: u32| {
        format!(
            "[server]\nlisten = [\"{address}\"]\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n\
             [control]\nsocket = \"{{dir}}/control.sock\"\n[sync]\nholdover = {holdover}\n\
             [observability]\nlog-level = \"{level}\"\n"
        )
    };
    let dir_config = |level: &str, holdover: u32, dir: &Path| {
        config(level, holdover).replace("{dir}", &dir.display().to_string())
    };
    let tmp = tempfile::tempdir().expect("socket dir");
    let daemon = PlainDaemon::start(&dir_config("info", 3600, tmp.path()));
    let socket = tmp.path().join("control.sock");
    let ask_status = || {
        let output = ntpd_lite()
            .args(["status", "--json", "--socket"])
            .arg(&socket)
            .output()
            .expect("status");
        assert!(output.status.success(), "{}", daemon.log());
    };
    daemon.wait_log("local reference clock");
    let serves = || Client::connect(address).and_then(|c| c.query(4, 6)).is_ok();
    assert!(serves());
    ask_status();
    assert!(!daemon.log().contains("DEBUG"), "info level at start");

    std::fs::write(&daemon.config, dir_config("debug", 100, tmp.path())).expect("rewrite");
    signal(daemon.child.id(), "HUP");
    daemon.wait_log("log level changed");
    ask_status();
    daemon.wait_log("control request");
    let log = daemon.log();
    assert!(
        log.contains("DEBUG") && log.contains("sections=[sync]"),
        "{log}"
    );
    assert!(serves(), "serving after SIGHUP");

    // A broken file on SIGHUP changes nothing and stops nothing.
    std::fs::write(&daemon.config, "[server\n").expect("rewrite");
    signal(daemon.child.id(), "HUP");
    daemon.wait_log("nothing changed");
    assert!(serves(), "serving after a failed reload");
    ntp_lite_tests::figures!(
        "SIGHUP log lines:\n{}",
        daemon
            .log()
            .lines()
            .filter(|l| l.contains("SIGHUP") || l.contains("log level") || l.contains("restart"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn an_offset_beyond_the_panic_threshold_is_refused_with_one_clear_line() {
    let honest = Node::new("honest", 66).local(1);
    let mut upstream = honest.start();
    let client = Node::new("guarded", 67)
        .sources(&[honest.address])
        .sync("panic-threshold = 1.0");
    let mut daemon = client.start();
    wait_for(&mut daemon, SYNC_TIMEOUT, "synchronized", |s| {
        s["synchronized"] == true
    });
    upstream.stop();
    // The same address now serves a clock 5 s fast.
    let mut liar = honest.clone();
    liar.name = "liar".to_owned();
    liar.initial_offset = 5.0;
    let _liar = liar.start();
    let start = Instant::now();
    while !daemon.log().contains("panic-threshold") {
        daemon.assert_running();
        assert!(
            start.elapsed() < SYNC_TIMEOUT,
            "no refusal logged:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = daemon.status();
    let line = daemon
        .log()
        .lines()
        .find(|l| l.contains("panic-threshold"))
        .map(str::to_owned)
        .expect("the line");
    ntp_lite_tests::figures!(
        "after {:.1} s: {line}\nclock error {:+.6} s",
        start.elapsed().as_secs_f64(),
        clock_error(&status)
    );
    assert!(
        line.contains("ERROR") && line.contains("NOT adjusted"),
        "{line}"
    );
    assert!(clock_error(&status).abs() < 0.01, "the clock was not moved");
}

#[test]
fn check_config_and_start_up_refuse_a_listen_address_not_on_this_host() {
    // TEST-NET-3: no interface here has it, so binding it fails and no datagram is ever sent.
    let elsewhere = "203.0.113.254";
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("elsewhere.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.68:0\", \"{elsewhere}:123\"]\n[local]\nstratum = 1\n\
             [clock]\nmode = \"virtual\"\n"
        ),
    )
    .expect("config");
    let want = format!(
        "elsewhere.toml:2:27: listen address {elsewhere}:123: {elsewhere} is not an address of this host"
    );

    let checked = ntpd_lite()
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run check-config");
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&want), "{stderr}");
    assert!(checked.stdout.is_empty(), "no \"ok\" for a bad file");

    // Start-up runs the same checks, before it binds anything or starts logging.
    let mut started = ntpd_lite()
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ntpd-lite");
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = started.kill();
            let _ = started.wait();
            panic!("ntpd-lite started with a listen address not on this host");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = started.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&want), "{stderr}");
}
