//! `ntpd-lite`: an NTP server and client daemon on `ntp-proto`.
//!
//! `ntpd-lite --config FILE` runs in the foreground; `check-config FILE` validates a file;
//! `status` asks a running daemon over its control socket.

mod clock;
mod config;
mod control;
mod daemon;
mod net;
mod serve;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Exit status for a bad configuration or command line.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "NTP daemon: serves time and keeps a clock on time",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Configuration file to run with.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log level or filter (RUST_LOG syntax), e.g. `info`, `debug`, `ntpd_lite=trace`.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration file and exit (0 valid, 2 invalid).
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Show a running daemon's synchronization status.
    Status {
        /// The daemon's control socket.
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/run/ntpd-lite/control.sock"
        )]
        socket: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Status { socket, json }) => status(&socket, json),
        None => match cli.config {
            Some(file) => run(&file, &cli.log_level),
            None => {
                eprintln!(
                    "ntpd-lite: give a configuration with --config FILE (see config/ for examples)"
                );
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::Config::load(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(file: &std::path::Path, log_level: &str) -> ExitCode {
    let config = match config::Config::load(file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let filter = match EnvFilter::try_new(log_level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("ntpd-lite: --log-level {log_level:?}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn status(socket: &std::path::Path, json: bool) -> ExitCode {
    let reply = match control::request(socket, "status") {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!(
                "ntpd-lite: cannot reach the daemon at {}: {e}; is it running with [control] socket set?",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if json {
        print!("{reply}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<control::Status>(&reply) {
        Ok(status) => {
            print!("{}", control::format_status(&status));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ntpd-lite: unexpected answer from the daemon ({e}): {reply}");
            ExitCode::FAILURE
        }
    }
}
