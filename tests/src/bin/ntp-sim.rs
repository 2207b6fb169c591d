//! `ntp-sim`: ntpd-lite's client core in simulated time.
//!
//! - `ntp-sim compare [--json] [--seeds N] [--case NAME]`: the comparison with chronyd 4.3 under
//!   the conditions of its published figures (see `ntp_lite_tests::sim::compare`).
//! - `ntp-sim run CASE [--seed N] [--svg FILE]`: one run of a comparison case, with a plot of the
//!   clock's error against true time.
//! - `ntp-sim chrony [--json] [--case TEXT] [--seed N] [--trace FROM:TO]`: chrony's own simulation
//!   tests, ported (see `ntp_lite_tests::sim::chrony_tests`), over seeds 1..=3: one row per
//!   scenario and sub-case. `--trace` prints one run's per-second error, rate and log over a span
//!   of true time.
//! - `ntp-sim leap [--svg DIR]`: leap seconds across a hierarchy in each mode (see
//!   `ntp_lite_tests::sim::leap`): each node's worst error against the clock it should follow,
//!   and plots of the served time across the leap.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ntp_lite_tests::sim::chrony_tests::{self, Case, SEEDS};
use ntp_lite_tests::sim::compare::{cases, compare, outcome, table};
use ntp_lite_tests::sim::measure::frequencies;
use ntp_lite_tests::sim::world::run;

#[derive(Parser)]
#[command(about = "ntpd-lite's client core in simulated time")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare with chronyd 4.3 over several seeds.
    Compare {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Seeds 1..=N.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Only this case.
        #[arg(long)]
        case: Option<String>,
    },
    /// Run one case once.
    Run {
        /// The case name (see `compare`).
        case: String,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Draw the error against true time to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Leap seconds across a hierarchy in each mode.
    Leap {
        /// Draw leap-second.svg and leap-smear.svg into this directory.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// A broadcast LAN: calibrated clients, an assumed delay, and a client/server client.
    Broadcast {
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Draw each client's error against true time to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Two symmetric peers losing their upstreams in turn.
    Peers {
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Draw both peers' error against true time to this SVG file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// chrony's own simulation tests, ported, over seeds 1..=3.
    Chrony {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Only cases whose name contains this.
        #[arg(long)]
        case: Option<String>,
        /// Only this seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Print each client's error, rate and log over FROM:TO seconds of true time.
        #[arg(long)]
        trace: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Compare { json, seeds, case } => {
            let rows = compare(seeds, case.as_deref());
            return print_rows(&rows, json, table);
        }
        Command::Chrony {
            json,
            case,
            seed,
            trace,
        } => return chrony(json, case.as_deref(), seed, trace.as_deref()),
        Command::Leap { svg } => return leap(svg.as_deref()),
        Command::Peers { seed, svg } => {
            let (result, outages) = ntp_lite_tests::sim::peers::measure(seed);
            print!("{}", ntp_lite_tests::sim::peers::table(&outages));
            if let Some(path) = svg
                && let Err(e) = ntp_lite_tests::sim::peers::chart(&result, &path)
            {
                eprintln!("ntp-sim: cannot draw {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        }
        Command::Broadcast { seed, svg } => {
            let (result, rows) = ntp_lite_tests::sim::broadcast::measure(seed);
            print!("{}", ntp_lite_tests::sim::broadcast::table(&rows));
            if let Some(path) = svg
                && let Err(e) = ntp_lite_tests::sim::broadcast::chart(&result, &path)
            {
                eprintln!("ntp-sim: cannot draw {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        }
        Command::Run { case, seed, svg } => {
            let Some(found) = cases().into_iter().find(|c| c.name == case) else {
                eprintln!("ntp-sim: no case {case:?}; `ntp-sim compare` lists them");
                return std::process::ExitCode::from(2);
            };
            let result = run(&found.scenario(), seed);
            let o = outcome(&found, &result);
            println!(
                "{}: RMS {:.1} us, max {:.1} us, first update {:.2} s, within 1 ms from {:.0} s, {:.0} requests/day, mean poll {:.0} s",
                found.name,
                o.rms * 1e6,
                o.max * 1e6,
                o.first_update,
                o.within_1ms,
                o.requests_per_day,
                o.mean_poll
            );
            if let Some(path) = svg
                && let Err(e) =
                    ntp_lite_tests::sim::plot::error_chart(&found.scenario(), &result, &path)
            {
                eprintln!("ntp-sim: cannot draw {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

fn chrony(
    json: bool,
    only: Option<&str>,
    seed: Option<u64>,
    trace: Option<&str>,
) -> std::process::ExitCode {
    let seeds: Vec<u64> = seed.map_or(SEEDS.to_vec(), |s| vec![s]);
    let cases: Vec<Case> = chrony_tests::scenarios()
        .into_iter()
        .flat_map(|(_, cases)| cases())
        .filter(|c| only.is_none_or(|o| c.name.contains(o)))
        .collect();
    if let Some(span) = trace {
        let Some((from, to)) = span
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<f64>().ok()?, b.parse::<f64>().ok()?)))
        else {
            eprintln!("ntp-sim: --trace wants FROM:TO in seconds, e.g. 100:200");
            return std::process::ExitCode::from(2);
        };
        for case in &cases {
            for seed in &seeds {
                print_trace(case, *seed, from, to);
            }
        }
        return std::process::ExitCode::SUCCESS;
    }
    let rows: Vec<_> = cases.iter().map(|c| chrony_tests::row(c, &seeds)).collect();
    let printed = print_rows(&rows, json, chrony_tests::table);
    if !json {
        for (name, why) in chrony_tests::NOT_APPLICABLE {
            println!("not applicable yet: {name}: needs {why}");
        }
    }
    if printed != std::process::ExitCode::SUCCESS {
        printed
    } else if rows.iter().all(|r| r.pass) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn print_trace(case: &Case, seed: u64, from: f64, to: f64) {
    let result = run(&case.setup.scenario(&case.name), seed);
    println!("{}", chrony_tests::judge(case, seed, &result));
    for client in case.setup.client_nodes() {
        let node = &result.nodes[client];
        let start = case.setup.client_start;
        let rates = frequencies(&node.unstepped);
        println!("node{} (start {start} s): t, error, rate", client + 1);
        for (i, error) in node.errors.iter().enumerate() {
            let t = start + i as f64;
            if t >= from && t <= to {
                let rate = rates.get(i).copied().unwrap_or(f64::NAN);
                println!("  {t:>8.0} {error:+.9} {:+.3} ppm", rate * 1e6);
            }
        }
        for (t, line) in node.log.iter().filter(|(t, _)| *t >= from && *t <= to) {
            println!("  log {t:>10.3} {line}");
        }
        let sent: Vec<String> = node
            .sent_at
            .iter()
            .filter(|t| **t >= from && **t <= to)
            .map(|t| format!("{t:.1}"))
            .collect();
        println!("  requests at {}", sent.join(" "));
    }
}

/// Prints `rows` as JSON or as the table `table` makes of them.
fn print_rows<T: serde::Serialize>(
    rows: &[T],
    json: bool,
    table: fn(&[T]) -> String,
) -> std::process::ExitCode {
    if !json {
        print!("{}", table(rows));
        return std::process::ExitCode::SUCCESS;
    }
    match serde_json::to_string_pretty(rows) {
        Ok(text) => {
            println!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ntp-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One line per case and node: the worst error against the clock the node should follow, from
/// two hours before the leap to the end (a second around the leap and the slew left out).
fn leap(svg: Option<&std::path::Path>) -> std::process::ExitCode {
    use ntp_lite_tests::sim::leap::{CASES, errors_against_mode, plots, run_case, span};
    for case in &CASES {
        let (scenario, result) = run_case(case, 1);
        let (_, duration) = span(case);
        // The slew takes 24 s; ignore mode corrects the second like any offset, within hours.
        let settle = match case.others {
            ntp_proto::LeapMode::Slew => 60.0,
            ntp_proto::LeapMode::Ignore => 3.0 * 3600.0,
            _ => 1.0,
        };
        for node in 1..scenario.nodes.len() {
            let worst = errors_against_mode(case, node, &result)
                .iter()
                .filter(|(t, _)| *t >= -7200.0 && (*t < -1.0 || *t >= settle) && *t <= duration)
                .map(|(_, e)| e.abs())
                .fold(0.0, f64::max);
            println!(
                "{:7} {:12} worst {:8.3} ms against its clock, {} requests",
                case.name,
                scenario.nodes[node].name,
                worst * 1e3,
                result.nodes[node].sent_at.len()
            );
        }
    }
    if let Some(dir) = svg
        && let Err(e) = plots(dir)
    {
        eprintln!("ntp-sim: cannot draw into {}: {e}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
