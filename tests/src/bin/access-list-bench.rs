//! Access-list benchmark: what a big `[server] allow`/`deny` list costs the server.
//!
//! First in process: the time to build an `AccessList` of N random prefixes (default 400,000) and
//! how many lookups per second it answers. Then the real ntpd-lite on 127.0.0.1, driven by the
//! `ntp-load` generator (closed loop, every reply matched), with three configs, each generated
//! into a temporary directory at run time:
//!
//! - `none`: no access list;
//! - `deny`: N random prefixes, none of which contains the generator's 127.0.0.1;
//! - `allow`: the same N prefixes plus `127.0.0.0/8` as the last entry.
//!
//! Per run it prints the time from spawning the daemon to its first answer (reading and parsing
//! the config and building the list), valid replies per second, the server's CPU time per reply
//! and its RSS after the load and at its peak. `--baseline PATH` runs another ntpd-lite build
//! (e.g. one built from an older commit) in the same rounds, alternating, so that both see the
//! same machine. Bounded: at most 10 rounds of at most 60 s of load per run.
//!
//! `cargo run --release -p ntp-lite-tests --bin access-list-bench -- [--baseline PATH]
//! [--prefixes N] [--seconds S] [--rounds R]`

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use ntp_lite_tests::bins;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::tools::free_udp_port;
use ntp_proto::server::{AccessList, Cidr, DenyAction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// The load generator's source address, which no generated prefix may contain.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long a daemon may take from spawn to its first answer.
const READY_LIMIT: Duration = Duration::from_secs(120);
/// How long each in-process lookup measurement runs, at most.
const LOOKUP_TIME: Duration = Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(about = "What a big access list costs ntpd-lite's server, in process and over UDP")]
struct Args {
    /// Random prefixes in the deny and allow lists (1 to 2,000,000).
    #[arg(long, default_value_t = 400_000, value_parser = clap::value_parser!(u64).range(1..=2_000_000))]
    prefixes: u64,
    /// Seconds of load per run, after a 500 ms warm-up (1 to 60).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=60))]
    seconds: u64,
    /// Rounds; each runs every config once per build (1 to 10).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10))]
    rounds: u64,
    /// Another ntpd-lite binary to run in the same rounds, e.g. a build of an older commit.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Seed of the random prefixes and lookup addresses.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only the in-process figures.
    #[arg(long)]
    no_daemon: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let prefixes = random_prefixes(&mut rng, args.prefixes as usize);
    in_process(&prefixes, &mut rng);
    if args.no_daemon {
        return ExitCode::SUCCESS;
    }
    let mut builds = vec![("current", bins::binary("ntpd-lite", "ntpd-lite"))];
    if let Some(path) = &args.baseline {
        if !path.is_file() {
            eprintln!("access-list-bench: {} is not a file", path.display());
            return ExitCode::from(2);
        }
        builds.push(("baseline", path.clone()));
    }
    let load = bins::binary("ntp-lite-tests", "ntp-load");
    over_udp(&args, &prefixes, &builds, &load);
    ExitCode::SUCCESS
}

/// `count` distinct random prefixes, none containing [`CLIENT`]: nine in ten IPv4 (/20 to /32,
/// mostly /24 and /32, as in real block lists; together they cover about 2% of the IPv4 space),
/// one in ten IPv6 (/32 to /128).
fn random_prefixes(rng: &mut StdRng, count: usize) -> Vec<Cidr> {
    let mut seen = std::collections::HashSet::with_capacity(count);
    let mut prefixes = Vec::with_capacity(count);
    while prefixes.len() < count {
        let prefix = if rng.gen_range(0..10) == 0 {
            let len = [32, 48, 56, 64, 128][rng.gen_range(0..5)];
            Cidr::new(IpAddr::V6(Ipv6Addr::from(rng.r#gen::<u128>())), len)
        } else {
            let len = match rng.gen_range(0..100) {
                0..2 => 20,
                2..5 => 22,
                5..50 => 24,
                50..60 => 28,
                _ => 32,
            };
            let address = Ipv4Addr::from(rng.r#gen::<u32>());
            if address.octets()[0] == 127 {
                continue;
            }
            Cidr::new(IpAddr::V4(address), len)
        };
        assert!(!prefix.contains(CLIENT), "{prefix} contains {CLIENT}");
        if seen.insert(prefix.to_string()) {
            prefixes.push(prefix);
        }
    }
    prefixes
}

/// Random client addresses: nine in ten IPv4, one in ten IPv6.
fn random_addresses(rng: &mut StdRng, count: usize) -> Vec<IpAddr> {
    (0..count)
        .map(|_| {
            if rng.gen_range(0..10) == 0 {
                IpAddr::V6(Ipv6Addr::from(rng.r#gen::<u128>()))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.r#gen::<u32>()))
            }
        })
        .collect()
}

fn in_process(prefixes: &[Cidr], rng: &mut StdRng) {
    let rss_before = status_kb(std::process::id(), "VmRSS");
    let start = Instant::now();
    let access = AccessList::new([], prefixes.iter().copied(), DenyAction::Kiss);
    let built = start.elapsed();
    let grown = status_kb(std::process::id(), "VmRSS").saturating_sub(rss_before);
    println!(
        "in process: AccessList of {} deny prefixes built in {:.1} ms, RSS +{:.1} MB",
        access.deny_len(),
        built.as_secs_f64() * 1e3,
        grown as f64 / 1024.0
    );
    let addresses = random_addresses(rng, 100_000);
    let (rate, denied) = lookups_per_second(&addresses, |a| access.permits(a));
    println!(
        "  AccessList::permits (tries):    {rate:>12.0} lookups/s ({:.1}% of random addresses denied)",
        denied * 100.0
    );
    // The AccessList before the tries: every prefix tried in turn.
    let (rate, denied) =
        lookups_per_second(&addresses, |a| !prefixes.iter().any(|c| c.contains(a)));
    println!(
        "  linear scan (the old permits):  {rate:>12.0} lookups/s ({:.1}% denied)",
        denied * 100.0
    );
    // The two must agree; the unit tests prove it on small lists, this on the big one.
    for &address in addresses.iter().take(500).chain([&CLIENT]) {
        assert_eq!(
            access.permits(address),
            !prefixes.iter().any(|c| c.contains(address)),
            "the tries and the linear scan disagree on {address}"
        );
    }
}

/// Lookups per second of `permits` over `addresses` (cycled, for at most [`LOOKUP_TIME`]) and the
/// share it refused.
fn lookups_per_second(addresses: &[IpAddr], permits: impl Fn(IpAddr) -> bool) -> (f64, f64) {
    let start = Instant::now();
    let (mut done, mut denied) = (0u64, 0u64);
    'outer: loop {
        for &address in addresses {
            denied += u64::from(!permits(std::hint::black_box(address)));
            done += 1;
            if done % 64 == 0 && start.elapsed() >= LOOKUP_TIME {
                break 'outer;
            }
        }
    }
    (
        done as f64 / start.elapsed().as_secs_f64(),
        denied as f64 / done as f64,
    )
}

/// One daemon config: its name and the `[server]` keys beyond `listen`.
struct Variant {
    name: &'static str,
    keys: String,
}

fn variants(prefixes: &[Cidr]) -> Vec<Variant> {
    let list: String = prefixes.iter().map(|p| format!("  \"{p}\",\n")).collect();
    vec![
        Variant {
            name: "none",
            keys: String::new(),
        },
        Variant {
            name: "deny",
            keys: format!("deny = [\n{list}]\n"),
        },
        Variant {
            name: "allow",
            keys: format!("allow = [\n{list}  \"127.0.0.0/8\",\n]\n"),
        },
    ]
}

/// What one run measured.
struct Run {
    ready: Duration,
    rate: f64,
    cpu_us_per_reply: f64,
    rss_kb: u64,
    peak_kb: u64,
    lost: u64,
    invalid: u64,
}

fn over_udp(args: &Args, prefixes: &[Cidr], builds: &[(&str, PathBuf)], load: &Path) {
    let variants = variants(prefixes);
    println!(
        "\nover UDP: ntpd-lite on 127.0.0.1, ntp-load (4 sockets x window 32, 1 thread), \
         {} rounds of {} s per run; machine: {} CPUs, load average {}",
        args.rounds,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:8} {:6} {:>3} {:>8} {:>11} {:>7} {:>8} {:>8} {:>6} {:>7}",
        "build",
        "list",
        "rnd",
        "ready s",
        "replies/s",
        "cpu us",
        "rss kB",
        "peak kB",
        "lost",
        "invalid"
    );
    let mut results: Vec<(&str, &str, Run)> = Vec::new();
    for round in 1..=args.rounds {
        // Alternate the order of the builds, so that load coming and going hits both alike.
        let mut order: Vec<&(&str, PathBuf)> = builds.iter().collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for variant in &variants {
            for (build, binary) in &order {
                let run = run_once(args, variant, binary, load);
                println!(
                    "{:8} {:6} {:>3} {:>8.2} {:>11.0} {:>7.2} {:>8} {:>8} {:>6} {:>7}",
                    build,
                    variant.name,
                    round,
                    run.ready.as_secs_f64(),
                    run.rate,
                    run.cpu_us_per_reply,
                    run.rss_kb,
                    run.peak_kb,
                    run.lost,
                    run.invalid
                );
                results.push((build, variant.name, run));
            }
        }
    }
    println!("\nmedians over the rounds:");
    for (build, _) in builds {
        for variant in &variants {
            let runs: Vec<&Run> = results
                .iter()
                .filter(|(b, v, _)| b == build && *v == variant.name)
                .map(|(_, _, r)| r)
                .collect();
            let median = |f: &dyn Fn(&Run) -> f64| {
                let mut values: Vec<f64> = runs.iter().map(|r| f(r)).collect();
                values.sort_by(f64::total_cmp);
                values[values.len() / 2]
            };
            println!(
                "  {build:8} {:6} {:>9.0} replies/s, {:.2} us CPU per reply, ready in {:.2} s, \
                 peak RSS {:.0} kB",
                variant.name,
                median(&|r| r.rate),
                median(&|r| r.cpu_us_per_reply),
                median(&|r| r.ready.as_secs_f64()),
                median(&|r| r.peak_kb as f64),
            );
        }
    }
}

fn run_once(args: &Args, variant: &Variant, binary: &Path, load: &Path) -> Run {
    let port = free_udp_port();
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let config = format!(
        "[server]\nlisten = [\"{address}\"]\n{}[local]\nstratum = 1\n[clock]\nmode = \"monitor\"\n",
        variant.keys
    );
    let start = Instant::now();
    let mut daemon = Daemon::start_binary(variant.name, &config, binary);
    daemon.wait_serving_within(address, READY_LIMIT);
    let ready = start.elapsed();
    let pid = daemon.pid().expect("running");
    let cpu_before = cpu_seconds(pid);
    let output = Command::new(load)
        .arg("--server")
        .arg(address.to_string())
        .args(["--json", "--warmup-ms", "500", "--seconds"])
        .arg(args.seconds.to_string())
        .output()
        .expect("run ntp-load");
    let cpu = cpu_seconds(pid) - cpu_before;
    let (rss_kb, peak_kb) = (status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM"));
    daemon.assert_running();
    daemon.stop();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "ntp-load printed no report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let number = |field: &str| report[field].as_u64().unwrap_or(0);
    let rate = report["replies_per_second"].as_f64().unwrap_or(0.0);
    // The warm-up's replies cost CPU too: count them at the measured rate.
    let replies = rate * (args.seconds as f64 + 0.5);
    Run {
        ready,
        rate,
        cpu_us_per_reply: if replies > 0.0 {
            cpu * 1e6 / replies
        } else {
            0.0
        },
        rss_kb,
        peak_kb,
        lost: number("lost"),
        invalid: number("invalid"),
    }
}

/// User plus system CPU time of process `pid` (fields 14 and 15 of /proc/PID/stat), seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let field = |n: usize| -> f64 {
        after_name
            .split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks; Linux's USER_HZ is 100 on every architecture it runs on.
    (field(14) + field(15)) / 100.0
}

/// A `kB` line of /proc/PID/status.
fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}
