//! Runs a lab scenario and writes the true error of every daemon over time as CSV and SVG.
//!
//! ```text
//! cargo run --release -p ntp-lite-tests --bin lab -- config/lab/01-converge.toml [OUT_DIR]
//! ```
//! Prints one line of figures per node (time to within 10 ms and 1 ms, RMS and worst error over
//! the last half) and writes `OUT_DIR/<name>.csv` and `OUT_DIR/<name>.svg` (default `target/lab`).

use std::path::PathBuf;
use std::process::ExitCode;

use ntp_lite_tests::plot;
use ntp_lite_tests::scenario::{self, Scenario};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: lab SCENARIO.toml [OUT_DIR]   (scenarios are in config/lab/)");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(args.next().unwrap_or_else(|| "target/lab".to_owned()));
    let scenario = match Scenario::load(file.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!("running {} for {} s ...", scenario.name, scenario.duration);
    let result = scenario::run(&scenario);
    print!("{}", result.summary());
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("{}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let csv = out.join(format!("{}.csv", scenario.name));
    let svg = out.join(format!("{}.svg", scenario.name));
    if let Err(e) = std::fs::write(&csv, result.csv()) {
        eprintln!("{}: {e}", csv.display());
        return ExitCode::FAILURE;
    }
    if let Err(e) = plot::error_chart(&result, &svg) {
        eprintln!("{}: {e}", svg.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {} and {}", csv.display(), svg.display());
    ExitCode::SUCCESS
}
