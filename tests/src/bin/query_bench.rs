//! Wall time of one NTP query against a local chronyd: ntpdate-lite, the ntplib example, ntpdig,
//! and a 4-server ntpdate-lite query. Median of N runs each (default 20).
//!
//! Run: `cargo run --release -p ntp-lite-tests --bin query_bench [-- RUNS]`
//!
//! ntpdig has no port option, so one chronyd (always `-x`) serves on 127.0.0.1 port 123 when that
//! port is free; otherwise ntpdig is skipped with a note. The others use high ports.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ntp_lite_tests::bins;
use ntp_lite_tests::chrony::Chronyd;

const NTPDIG: &str = "/usr/bin/ntpdig";

/// The ntplib example of issue 3, pointed at our server.
const NTPLIB_EXAMPLE: &str = "import sys, ntplib\nfrom time import ctime\n\
    c = ntplib.NTPClient(); r = c.request(sys.argv[1], port=int(sys.argv[2]))\n\
    print(ctime(r.tx_time))";

struct Figures {
    name: String,
    median: Duration,
    min: Duration,
    max: Duration,
}

/// Runs `command` `runs` times after 3 untimed warm-up runs (page cache, first-run effects);
/// every run must succeed.
fn measure(name: &str, runs: usize, mut command: impl FnMut() -> Command) -> Figures {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..3 {
        let _ = command().stdin(Stdio::null()).output();
    }
    for _ in 0..runs {
        let mut cmd = command();
        let start = Instant::now();
        let output = cmd.stdin(Stdio::null()).output().expect("spawn");
        times.push(start.elapsed());
        assert!(
            output.status.success(),
            "{name} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    times.sort();
    Figures {
        name: name.to_owned(),
        median: times[times.len() / 2],
        min: times[0],
        max: times[times.len() - 1],
    }
}

fn port_123_free() -> bool {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 123)).is_ok()
        && UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 123)).is_ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20)
        .max(1);
    let bin = bins::ntpdate_lite();
    println!("ntpdate-lite: {}", bin.display());

    let main_server = if Path::new(NTPDIG).is_file() && port_123_free() {
        Chronyd::start_on(123, &["bindaddress 127.0.0.1", "bindaddress ::1"])
            .map_err(|e| println!("note: chronyd on port 123 failed ({e}); ntpdig skipped"))
            .ok()
    } else {
        println!("note: {NTPDIG} missing or port 123 busy; ntpdig skipped");
        None
    };
    let ntpdig_possible = main_server.is_some();
    let main_server = match main_server {
        Some(s) => s,
        None => Chronyd::start().expect("chronyd"),
    };
    let others: Vec<Chronyd> = (0..3).map(|_| Chronyd::start().expect("chronyd")).collect();
    let one: SocketAddr = main_server.v4();
    let four: Vec<String> = std::iter::once(one)
        .chain(others.iter().map(Chronyd::v4))
        .map(|a| a.to_string())
        .collect();

    let mut figures = vec![measure("ntpdate-lite, 1 server", runs, || {
        let mut c = Command::new(&bin);
        c.arg(one.to_string());
        c
    })];
    figures.push(measure("ntpdate-lite, 4 servers", runs, || {
        let mut c = Command::new(&bin);
        c.args(&four);
        c
    }));
    figures.push(measure("python ntplib example", runs, || {
        let mut c = Command::new("python3");
        c.args(["-c", NTPLIB_EXAMPLE, "127.0.0.1", &one.port().to_string()]);
        c
    }));
    if ntpdig_possible {
        figures.push(measure("ntpdig (ntpsec)", runs, || {
            let mut c = Command::new(NTPDIG);
            c.arg("127.0.0.1");
            c
        }));
    }

    let floor = measure("/bin/true (spawn floor)", runs, || {
        Command::new("/bin/true")
    });
    println!("\nmedian of {runs} runs, one query each against chronyd -x on 127.0.0.1:");
    println!(
        "{:28} {:>10} {:>10} {:>10}",
        "tool", "median ms", "min ms", "max ms"
    );
    for f in std::iter::once(&floor).chain(&figures) {
        println!(
            "{:28} {:>10.2} {:>10.2} {:>10.2}",
            f.name,
            ms(f.median),
            ms(f.min),
            ms(f.max)
        );
    }
    let ours = figures[0].median.as_secs_f64();
    println!();
    for f in &figures[1..] {
        println!(
            "{} / ntpdate-lite (1 server): {:.1}x",
            f.name,
            f.median.as_secs_f64() / ours
        );
    }
    ExitCode::SUCCESS
}
