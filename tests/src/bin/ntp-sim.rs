//! `ntp-sim`: ntpd-lite's client core in simulated time.
//!
//! - `ntp-sim compare [--json] [--seeds N] [--case NAME]`: the comparison with chronyd 4.3 under
//!   the conditions of its published figures (see `ntp_lite_tests::sim::compare`).
//! - `ntp-sim run CASE [--seed N] [--svg FILE]`: one run of a comparison case, with a plot of the
//!   clock's error against true time.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ntp_lite_tests::sim::compare::{cases, compare, outcome, table};
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
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Compare { json, seeds, case } => {
            let rows = compare(seeds, case.as_deref());
            if json {
                match serde_json::to_string_pretty(&rows) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("ntp-sim: {e}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", table(&rows));
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
