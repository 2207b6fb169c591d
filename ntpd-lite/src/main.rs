//! `ntpd-lite`: an NTP server and client daemon on `ntp-proto`.
//!
//! `ntpd-lite --config FILE` runs in the foreground; `check-config FILE` runs on a file every
//! start-up check that needs no privileges; `ctl VERB` (and `status`, `sources`) asks a running
//! daemon over its control socket; the hidden `generate` writes man pages and shell completions.

mod accept;
mod clock;
mod control;
mod daemon;
mod generate;
mod logging;
mod metrics;
mod net;
mod nts;
mod preflight;
mod privileges;
mod serve;
mod state;
mod sync;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
// The configuration is the library half of this package (for the fuzzer); imported here so that
// the daemon's modules reach it as `crate::config`.
use ntpd_lite::config;

/// Exit status for a bad configuration or command line.
const EXIT_USAGE: u8 = 2;
/// Where `status` and `sources` look without `--socket` or `--config`.
const DEFAULT_SOCKET: &str = "/run/ntpd-lite/control.sock";

#[derive(Debug, Parser)]
#[command(
    name = "ntpd-lite",
    version,
    about = "NTP daemon: serves time and keeps a clock on time",
    long_about = "NTP daemon: serves time (RFC 5905) and keeps a clock on time from upstream \
                  servers. Runs in the foreground and logs to stderr; SIGTERM or SIGINT stop it \
                  (saving the drift file), SIGHUP rereads the configuration.",
    after_long_help = "Files: /etc/ntpd-lite/ntpd-lite.toml (configuration; see the README's \
                       configuration reference), /run/ntpd-lite/control.sock (control socket), \
                       /var/lib/ntpd-lite/drift (frequency). Environment: RUST_LOG overrides \
                       --log-level and [observability] log-level.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Configuration file to run with.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log level or filter (RUST_LOG syntax), e.g. `info`, `debug`, `ntpd_lite=trace`; default
    /// `[observability] log-level`, else `info`. RUST_LOG, if set, wins.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a configuration file as start-up does, short of privileges; exit 0 valid, 2 invalid.
    ///
    /// Checks the syntax and every value, that the [daemon] user exists, and that each listen
    /// and metrics address is one of this host's (a bind on port 0, closed at once). Binding the
    /// configured ports and the control socket is left to the start.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Show a running daemon's synchronization status (like `chronyc tracking` and `sources`).
    Status(Ask),
    /// Show a running daemon's sources (like `chronyc sources`).
    Sources(Ask),
    /// Ask a running daemon to show or do something (like chronyc): every verb over the control
    /// socket.
    Ctl(Ctl),
    /// Write man pages or shell completions (for packaging).
    #[command(hide = true, subcommand)]
    Generate(generate::Target),
}

/// How `status`, `sources` and `ctl` reach the daemon.
#[derive(Debug, Args)]
struct Ask {
    /// The daemon's control socket [default: the one in --config, else /run/ntpd-lite/control.sock].
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
    /// Take the control socket from this configuration file.
    #[arg(
        short,
        long,
        value_name = "FILE",
        conflicts_with = "socket",
        global = true
    )]
    config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// `ctl`: a verb for the daemon.
#[derive(Debug, Args)]
struct Ctl {
    #[command(flatten)]
    ask: Ask,
    #[command(subcommand)]
    verb: Verb,
}

/// What `ctl` asks the daemon (chronyc's names where it has one).
#[derive(Debug, Subcommand)]
enum Verb {
    /// Synchronization status and sources (like `chronyc tracking`).
    Status,
    /// The sources (like `chronyc sources`).
    Sources,
    /// Each source's statistics: samples, frequency and its error, offset and its spread (like
    /// `chronyc sourcestats`).
    Sourcestats,
    /// The server's busiest clients (like `chronyc clients`).
    Clients,
    /// Step the clock to the sources' time now, whatever the step threshold (like `chronyc
    /// makestep`).
    Makestep,
    /// Send four requests to every online source now (like `chronyc burst`).
    Burst,
    /// Add a source, until the daemon stops or it is removed (a reload keeps it).
    ///
    /// OPTION: iburst, prefer, noselect, trust, pool; minpoll N, maxpoll N, maxdelay SECONDS,
    /// min-samples N, max-sources N (as the [[source]] keys of the configuration).
    AddSource {
        /// `ip:port`, `[v6]:port`, an address or a name (port 123).
        address: String,
        /// Options, e.g. `iburst minpoll 4 prefer`.
        #[arg(allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// Remove the source at ADDRESS, as `sources` shows it.
    RemoveSource {
        /// `ip:port` or `[v6]:port`.
        address: String,
    },
    /// Stop polling ADDRESS, or every source (its statistics stay).
    Offline {
        /// `ip:port` or `[v6]:port`; every source if left out.
        address: Option<String>,
    },
    /// Poll ADDRESS, or every source, again, at once.
    Online {
        /// `ip:port` or `[v6]:port`; every source if left out.
        address: Option<String>,
    },
    /// Reread the configuration as SIGHUP does: sources, access lists, rate limits, log level.
    Reload,
}

impl Verb {
    /// The command line the control socket reads.
    fn line(&self) -> String {
        let words: Vec<&str> = match self {
            Self::Status => vec!["status"],
            Self::Sources => vec!["sources"],
            Self::Sourcestats => vec!["sourcestats"],
            Self::Clients => vec!["clients"],
            Self::Makestep => vec!["makestep"],
            Self::Burst => vec!["burst"],
            Self::Reload => vec!["reload"],
            Self::AddSource { address, options } => ["add-source", address.as_str()]
                .into_iter()
                .chain(options.iter().map(String::as_str))
                .collect(),
            Self::RemoveSource { address } => vec!["remove-source", address],
            Self::Offline { address } => std::iter::once("offline")
                .chain(address.as_deref())
                .collect(),
            Self::Online { address } => std::iter::once("online")
                .chain(address.as_deref())
                .collect(),
        };
        words.join(" ")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Status(ask)) => ask_daemon(&ask, "status"),
        Some(Command::Sources(ask)) => ask_daemon(&ask, "sources"),
        Some(Command::Ctl(ctl)) => ask_daemon(&ctl.ask, &ctl.verb.line()),
        Some(Command::Generate(target)) => generate::run(&target, command()),
        None => match cli.config {
            Some(file) => run(&file, cli.log_level.as_deref()),
            None => {
                eprintln!(
                    "ntpd-lite: give a configuration with --config FILE (see config/ for examples)"
                );
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

/// The clap definition, for the generators.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

fn check_config(file: &Path) -> ExitCode {
    match preflight::load(file) {
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

fn run(file: &Path, log_level: Option<&str>) -> ExitCode {
    let (config, text) = match preflight::load(file) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (filter, source) = logging::choose(
        std::env::var("RUST_LOG").ok(),
        log_level,
        config.observability.log_level.as_deref(),
    );
    let logger = match logging::Logger::install(&filter, source) {
        Ok(logger) => logger,
        Err(e) => {
            eprintln!("ntpd-lite: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Sockets are bound and privileges dropped before the runtime's threads exist.
    let prepared = match daemon::prepare(config) {
        Ok(prepared) => prepared,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
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
    let reloader = daemon::Reloader::new(file.to_owned(), text, logger);
    match runtime.block_on(daemon::run(prepared, reloader)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The control socket `ask` names: `--socket`, else the one in `--config`, else the default.
fn socket_of(ask: &Ask) -> Result<PathBuf, String> {
    if let Some(socket) = &ask.socket {
        return Ok(socket.clone());
    }
    let Some(file) = &ask.config else {
        return Ok(PathBuf::from(DEFAULT_SOCKET));
    };
    let config = config::Config::load(file).map_err(|e| e.to_string())?;
    config.control_socket().map(Path::to_owned).ok_or_else(|| {
        format!(
            "{}: no [control] socket configured; add one, or pass --socket",
            file.display()
        )
    })
}

/// Sends `command` (a control socket's command line) and prints the answer as a table or as
/// JSON; an error answer goes to stderr with exit status 1.
fn ask_daemon(ask: &Ask, command: &str) -> ExitCode {
    let socket = match socket_of(ask) {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("ntpd-lite: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let reply = match control::request(&socket, command) {
        Ok(reply) => reply,
        Err(control::ControlError::Io { source, .. }) => {
            eprintln!(
                "ntpd-lite: cannot reach the daemon at {}: {source}; is it running with [control] socket set?",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "ntpd-lite: not asking the daemon at {}: {e}",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let answer = serde_json::from_str::<serde_json::Value>(&reply);
    if let Some(error) = answer.as_ref().ok().and_then(|v| v.get("error")) {
        if ask.json {
            print!("{reply}");
        } else {
            eprintln!("ntpd-lite: {}", error.as_str().unwrap_or_default());
        }
        return ExitCode::FAILURE;
    }
    if ask.json {
        print!("{reply}");
        return ExitCode::SUCCESS;
    }
    let table = match command {
        "sources" => serde_json::from_str::<Vec<state::SourceStatus>>(&reply)
            .map(|sources| control::format_sources(&sources)),
        "sourcestats" => serde_json::from_str::<Vec<control::SourceStats>>(&reply)
            .map(|stats| control::format_source_stats(&stats)),
        "clients" => serde_json::from_str::<Vec<control::ClientStatus>>(&reply)
            .map(|clients| control::format_clients(&clients)),
        "status" => serde_json::from_str::<control::Status>(&reply)
            .map(|status| control::format_status(&status)),
        _ => serde_json::from_str::<serde_json::Value>(&reply)
            .map(|done| format!("{}\n", done["ok"].as_str().unwrap_or(&reply))),
    };
    match table {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ntpd-lite: unexpected answer from the daemon ({e}): {reply}");
            ExitCode::FAILURE
        }
    }
}
