//! Benchmark: the real daemon, its virtual clock 20 ppm fast, synchronized over real UDP on
//! loopback to a real chronyd (`local stratum 2`, `-x`, never touching this machine's clock) at
//! polls 8-32 s (minpoll 3, maxpoll 5). Once a second it reads the daemon's true error (virtual
//! clock minus system clock, which chronyd serves) and prints the RMS and maximum over the second
//! half of the run beside the goal: under 50 us RMS and 250 us max over the last 5 of 10 minutes.
//!
//! `cargo run --release -p ntp-lite-tests --bin daemon-vs-chronyd -- [SECONDS] [DRIFT_PPM]`
//!
//! `... -- link [SECONDS] [SEEDS] [SCENARIOS] [basic|xleave]` runs the two side by side instead:
//! see `ntp_lite_tests::side_by_side`.

use std::time::{Duration, Instant};

use ntp_lite_tests::chrony::Chronyd;
use ntp_lite_tests::lab::{Node, clock_error};
use ntp_lite_tests::sim::measure::spread;

fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("link") {
        return ntp_lite_tests::side_by_side::main(&std::env::args().skip(2).collect::<Vec<_>>());
    }
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(600.0);
    let drift: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20.0);
    if !Chronyd::installed() {
        eprintln!("daemon-vs-chronyd: chronyd is not installed (apt-get install chrony)");
        return std::process::ExitCode::from(2);
    }
    let chronyd = match Chronyd::start() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("daemon-vs-chronyd: chronyd did not start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut node = Node::new("bench", 61).drift(drift).sources(&[chronyd.v4()]);
    node.poll = (3, 5);
    let daemon = node.start();
    let start = Instant::now();
    let mut errors: Vec<(f64, f64)> = Vec::new();
    let mut last = serde_json::Value::Null;
    while start.elapsed().as_secs_f64() < seconds {
        std::thread::sleep(Duration::from_secs(1));
        if let Ok(status) = daemon.try_status() {
            if status["synchronized"] == true {
                errors.push((start.elapsed().as_secs_f64(), clock_error(&status)));
            }
            last = status;
        }
    }
    let late: Vec<f64> = errors
        .iter()
        .filter(|(t, _)| *t >= seconds / 2.0)
        .map(|(_, e)| *e)
        .collect();
    let s = spread(&late);
    let sent: u64 = last["sources"]
        .as_array()
        .map_or(0, |a| a.iter().filter_map(|s| s["sent"].as_u64()).sum());
    println!(
        "daemon vs chronyd on loopback, virtual clock {drift:+} ppm, polls 8-32 s, {seconds:.0} s: \
         error over the last {:.0} s: RMS {:.1} us, max {:.1} us ({} samples); frequency {:+.3} ppm; \
         {sent} requests",
        seconds / 2.0,
        s.rms * 1e6,
        s.max * 1e6,
        late.len(),
        last["frequency_ppm"].as_f64().unwrap_or(f64::NAN)
    );
    let met = !late.is_empty() && s.rms < 50e-6 && s.max < 250e-6;
    println!(
        "goal (< 50 us RMS, < 250 us max): {}",
        if met { "met" } else { "NOT met" }
    );
    if met {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
