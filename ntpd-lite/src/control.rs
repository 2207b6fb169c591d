//! The local control socket: a Unix stream socket, owner-only, that answers one command per
//! connection with one line of JSON: `status` (an object), `sources`, `sourcestats` and
//! `clients` (arrays), an `{"ok": ...}` line for the verbs that act (`makestep`, `burst`,
//! `add-source`, `remove-source`, `offline`, `online`, `reload`), or for anything else an
//! object with an `error` that says what to send instead. `ntpd-lite ctl` (and `status`,
//! `sources`) is its client. The verbs are routed to the sync task (or, `reload`, to the
//! reloader), whose core decides; this module only parses and answers.
//!
//! Hostile local users: the socket's directory, and every one above it, must be owned by root or
//! the daemon's user and writable by no one else (a sticky directory such as /tmp is allowed
//! above it), or another user could put their own socket in its place; the daemon refuses to
//! start and the client refuses to ask. At most [`MAX_CONNECTIONS`] connections are open at
//! once (a new one closes the oldest still waiting for its command, see `accept`), a command
//! must arrive within [`COMMAND_TIMEOUT`] and the reply be taken within [`REPLY_TIMEOUT`], and
//! accept errors (no descriptor left) pause the accept loop.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ntp_proto::auth::Keys;
use ntp_proto::{LeapIndicator, NameSpec};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

use crate::accept::{Backoff, ConnectionTable, Ticket};
use crate::config::{Config, SourceAddress};
use crate::state::{CommandReply, LeapReport, ServerTotals, Shared, SourceStatus, SyncRequest};

/// The commands, for error messages and `--help`.
pub const COMMANDS: &str = "status, sources, sourcestats, clients, makestep, burst, \
    add-source ADDRESS [OPTION...], remove-source ADDRESS, offline [ADDRESS], online [ADDRESS], \
    reload";
/// How many clients `clients` lists.
pub const CLIENTS_LISTED: usize = 20;

/// Connections open at once; a new one closes the oldest that is still waiting for its command.
pub const MAX_CONNECTIONS: usize = 32;
/// Longest wait for the command line.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the client to take the reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest command line, its newline not counted.
pub const MAX_COMMAND: usize = 256;
/// Longest reply the client reads (a daemon with thousands of sources stays far below).
const MAX_REPLY: u64 = 16 << 20;

/// What `status --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// True when clients may synchronize to us.
    pub synchronized: bool,
    /// Our stratum.
    pub stratum: u8,
    /// Our reference ID as text.
    pub refid: String,
    /// Leap indicator: 0-2, or 3 when unsynchronized.
    pub leap: u8,
    /// Last combined offset of our clock to its sources, seconds (source minus us); null before
    /// the first measurement and for a local reference clock.
    pub offset: Option<f64>,
    /// Frequency correction, ppm.
    pub frequency_ppm: f64,
    /// Root delay, seconds.
    pub root_delay: f64,
    /// Root dispersion now, seconds.
    pub root_dispersion: f64,
    /// The clock.
    pub clock: ClockStatus,
    /// Upstream sources.
    pub sources: Vec<SourceStatus>,
    /// Leap seconds: the coming one and where it is known from, the vote, the announcement.
    #[serde(default)]
    pub leap_second: Option<LeapReport>,
    /// Datagrams at a broadcast source's address from no configured broadcast server, dropped.
    #[serde(default)]
    pub broadcast_strays: u64,
    /// Server counters, if serving.
    #[serde(default)]
    pub server: Option<ServerTotals>,
}

/// The clock part of [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClockStatus {
    /// `system`, `virtual` or `monitor`.
    pub mode: String,
    /// This clock minus the system clock, seconds.
    pub error: f64,
}

/// Why the control socket cannot be used, by the daemon or by its client.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A running daemon answers on the socket.
    #[error(
        "another ntpd-lite answers on this control socket; stop it first, or give this one its \
         own [control] socket"
    )]
    InUse,
    /// The path is taken by something that is not a socket.
    #[error("{} exists and is not a socket; remove it or choose another [control] socket", .0.display())]
    NotASocket(PathBuf),
    /// A directory on the way belongs to another user, who could replace the socket.
    #[error(
        "{} belongs to uid {owner}, not to root or uid {uid}: that user could put their own \
         socket in place of the control socket; use a directory owned by root or uid {uid} \
         (e.g. /run/ntpd-lite), or chown it",
        .path.display()
    )]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user trusted besides root: the daemon's, or the client's.
        uid: u32,
    },
    /// A directory on the way can be written by others, who could replace the socket.
    #[error(
        "{} is writable by group or others (mode {mode:04o}): anyone who can write there could \
         put their own socket in place of the control socket; chmod go-w it, or use a directory \
         of its own (e.g. /run/ntpd-lite)",
        .path.display()
    )]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file system or socket call failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// What it was about.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl ControlError {
    fn io(path: &Path) -> impl Fn(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The directory that holds the socket at `path`.
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Judges one directory on the way to the control socket from its owner and mode: owned by root
/// or `uid`, and writable by no one else. Above the socket's `own` directory, a sticky one (like
/// /tmp) may be writable by others: they cannot rename or remove what is not theirs.
fn judge_directory(
    path: &Path,
    owner: u32,
    mode: u32,
    uid: u32,
    own: bool,
) -> Result<(), ControlError> {
    const STICKY: u32 = 0o1000;
    if owner != 0 && owner != uid {
        return Err(ControlError::ForeignOwner {
            path: path.to_owned(),
            owner,
            uid,
        });
    }
    let writable_by_others = mode & 0o022 != 0;
    if writable_by_others && (own || mode & STICKY == 0) {
        return Err(ControlError::Writable {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// Checks the directory `dir` of a control socket and every directory above it (symbolic links
/// resolved) with [`judge_directory`], trusting root and `uid`.
pub fn check_directory(dir: &Path, uid: u32) -> Result<(), ControlError> {
    let real = std::fs::canonicalize(dir).map_err(ControlError::io(dir))?;
    for (depth, path) in real.ancestors().enumerate() {
        let meta = std::fs::metadata(path).map_err(ControlError::io(path))?;
        judge_directory(path, meta.uid(), meta.mode(), uid, depth == 0)?;
    }
    Ok(())
}

/// Binds the control socket, replacing a stale one, readable and writable by the owner only.
/// Its directory is created if missing (mode 0755) and must pass [`check_directory`] for `uid`,
/// the user the daemon runs as. Bound before the runtime starts (and before privileges are
/// dropped), after every network port: see [`serve`]. A socket that still answers belongs to a
/// running daemon: it is left alone and this one fails.
pub fn bind(path: &Path, uid: u32) -> Result<std::os::unix::net::UnixListener, ControlError> {
    let dir = directory_of(path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(ControlError::io(dir))?;
    check_directory(dir, uid)?;
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ControlError::InUse);
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(ControlError::io(path))?;
        }
        Ok(_) => return Err(ControlError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ControlError::io(path)(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(ControlError::io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(ControlError::io(path))?;
    listener
        .set_nonblocking(true)
        .map_err(ControlError::io(path))?;
    Ok(listener)
}

/// Answers connections until the task is aborted.
pub async fn serve(listener: std::os::unix::net::UnixListener, shared: Arc<Shared>) {
    let listener = match UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => return warn!(error = %e, "control socket unusable"),
    };
    let mut connections = ConnectionTable::new("control", MAX_CONNECTIONS);
    let mut backoff = Backoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                backoff.failed("control", &e).await;
                continue;
            }
        };
        backoff.succeeded("control");
        let shared = Arc::clone(&shared);
        connections
            .spawn(move |ticket| answer(stream, shared, ticket))
            .await;
    }
}

/// A command the control socket answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The daemon's [`Status`].
    Status,
    /// Its sources.
    Sources,
    /// Its sources' statistics ([`SourceStats`]), like `chronyc sourcestats`.
    SourceStats,
    /// The server's busiest clients ([`ClientStatus`]), like `chronyc clients`.
    Clients,
    /// Something for the sync task to do.
    Sync(SyncRequest),
    /// Reread the configuration, as SIGHUP does.
    Reload,
}

/// Why a control request gets an error reply instead of an answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// An empty line, or nothing before the client closed.
    #[error("empty command; send status or sources (or another command: {COMMANDS}) and a newline")]
    Empty,
    /// A command this daemon does not know.
    #[error("unknown command {0:?}; use status or sources, or one of: {COMMANDS}")]
    Unknown(String),
    /// A known command with the wrong arguments.
    #[error("{0}; commands: status or sources, or one of: {COMMANDS}")]
    Usage(String),
    /// No newline within [`MAX_COMMAND`] bytes.
    #[error(
        "command longer than {MAX_COMMAND} bytes; send status or sources (or another command) and a newline"
    )]
    TooLong,
    /// Bytes that are not UTF-8.
    #[error(
        "the command is not UTF-8 text; send status or sources (or another command) and a newline"
    )]
    NotText,
    /// No complete line within [`COMMAND_TIMEOUT`].
    #[error(
        "no complete command within {} s; send status or sources (or another command) and a newline at once",
        COMMAND_TIMEOUT.as_secs()
    )]
    Timeout,
    /// Reading failed.
    #[error("cannot read the command: {0}")]
    Read(io::Error),
}

/// One source's statistics, as `sourcestats` shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStats {
    /// Address and port.
    pub address: String,
    /// Samples in its statistics.
    pub samples: usize,
    /// Its frequency relative to ours, ppm (`null` before three samples).
    pub frequency_ppm: Option<f64>,
    /// The standard error of that frequency, ppm (chrony's skew).
    pub frequency_error_ppm: Option<f64>,
    /// Its offset now, seconds (source minus us).
    pub offset: f64,
    /// The standard error of that offset, seconds.
    pub offset_error: f64,
    /// The samples' spread around their line, seconds (chrony's standard deviation).
    pub jitter: f64,
}

/// One client of the server, as `clients` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientStatus {
    /// Its address.
    pub address: String,
    /// Requests received.
    pub requests: u64,
    /// Kiss-o'-death sent (RATE, DENY).
    pub kisses: u64,
    /// Requests dropped.
    pub dropped: u64,
    /// Seconds since its last request.
    pub last_seen_ago: f64,
}

impl Command {
    /// Parses what was read of one command: at most [`MAX_COMMAND`] + 1 bytes, ending with a
    /// newline unless the client closed first or the line is too long.
    pub fn parse(line: &[u8]) -> Result<Self, CommandError> {
        let line = match line.strip_suffix(b"\n") {
            Some(line) => line,
            None if line.len() > MAX_COMMAND => return Err(CommandError::TooLong),
            None => line,
        };
        let text = std::str::from_utf8(line).map_err(|_| CommandError::NotText)?;
        let words: Vec<&str> = text.split_whitespace().collect();
        let usage = |message: &str| Err(CommandError::Usage(message.to_owned()));
        match words[..] {
            [] => Err(CommandError::Empty),
            ["status"] => Ok(Self::Status),
            ["sources"] => Ok(Self::Sources),
            ["sourcestats"] => Ok(Self::SourceStats),
            ["clients"] => Ok(Self::Clients),
            ["reload"] => Ok(Self::Reload),
            ["makestep"] => Ok(Self::Sync(SyncRequest::MakeStep)),
            ["burst"] => Ok(Self::Sync(SyncRequest::Burst)),
            ["add-source", address, ref options @ ..] => {
                let source = source_entry(address, options).map_err(CommandError::Usage)?;
                Ok(Self::Sync(SyncRequest::AddSource(source)))
            }
            ["add-source"] => usage("usage: add-source ADDRESS [OPTION...]"),
            ["remove-source", address] => Ok(Self::Sync(SyncRequest::RemoveSource(
                source_address(address).map_err(CommandError::Usage)?,
            ))),
            ["remove-source", ..] => usage("usage: remove-source ADDRESS"),
            [verb @ ("offline" | "online"), ref rest @ ..] if rest.len() <= 1 => {
                let address = rest
                    .first()
                    .map(|a| source_address(a))
                    .transpose()
                    .map_err(CommandError::Usage)?;
                let online = verb == "online";
                Ok(Self::Sync(SyncRequest::SetOnline { address, online }))
            }
            [verb @ ("offline" | "online"), ..] => usage(&format!("usage: {verb} [ADDRESS]")),
            _ => Err(CommandError::Unknown(text.trim().to_owned())),
        }
    }
}

/// A source's address as `sources` shows it: `ip:port`, `[v6]:port` or an address (port 123).
fn source_address(text: &str) -> Result<SocketAddr, String> {
    match SourceAddress::parse(text) {
        Ok(SourceAddress::Ip(address)) => Ok(address),
        _ => Err(format!(
            "{text:?} is not a source address; give it as `sources` shows it, e.g. \
             192.0.2.1:123 or [2001:db8::1]:123"
        )),
    }
}

/// The `[[source]]` entry `add-source ADDRESS OPTION...` stands for, checked as the
/// configuration is: flags (`iburst`, `prefer`, `noselect`, `trust`, `pool`) and `NAME VALUE`
/// pairs with a number (`minpoll`, `maxpoll`, `maxdelay`, `min-samples`, `max-sources`).
fn source_entry(address: &str, options: &[&str]) -> Result<NameSpec, String> {
    const FLAGS: [&str; 4] = ["iburst", "prefer", "noselect", "trust"];
    const VALUES: [&str; 5] = [
        "minpoll",
        "maxpoll",
        "maxdelay",
        "min-samples",
        "max-sources",
    ];
    let mut entry = format!(
        "[[source]]\naddress = {}\n",
        toml::Value::String(address.to_owned())
    );
    let mut words = options.iter();
    while let Some(&word) = words.next() {
        if FLAGS.contains(&word) {
            entry.push_str(&format!("{word} = true\n"));
        } else if word == "pool" {
            entry.push_str("kind = \"pool\"\n");
        } else if VALUES.contains(&word) {
            let value = words
                .next()
                .filter(|v| v.parse::<f64>().is_ok_and(f64::is_finite))
                .ok_or_else(|| format!("add-source: {word} needs a number after it"))?;
            entry.push_str(&format!("{word} = {value}\n"));
        } else {
            return Err(format!(
                "add-source: unknown option {word:?}; use {}, pool, or {} followed by a number",
                FLAGS.join(", "),
                VALUES.join(", ")
            ));
        }
    }
    let config = Config::parse(&entry, Path::new("add-source")).map_err(|e| e.to_string())?;
    // No keys here: a keyed source belongs in the configuration file.
    config
        .sources
        .first()
        .and_then(|source| source.name_spec(&Keys::default()))
        .ok_or_else(|| "add-source: no source".to_owned())
}

async fn answer(stream: UnixStream, shared: Arc<Shared>, ticket: Ticket) {
    let (read, mut write) = stream.into_split();
    let command = read_command(read).await;
    ticket.request_received();
    debug!(?command, "control request");
    let mut reply = reply_to(command, &shared).await;
    reply.push('\n');
    let sent = tokio::time::timeout(REPLY_TIMEOUT, async {
        write.write_all(reply.as_bytes()).await?;
        write.shutdown().await
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "control reply not delivered"),
        Err(_) => debug!("control reply not taken in time"),
    }
}

/// Reads one command line, waiting at most [`COMMAND_TIMEOUT`].
async fn read_command(read: OwnedReadHalf) -> Result<Command, CommandError> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_COMMAND as u64 + 1));
    match tokio::time::timeout(COMMAND_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
        Err(_) => Err(CommandError::Timeout),
        Ok(Err(e)) => Err(CommandError::Read(e)),
        Ok(Ok(_)) => Command::parse(&line),
    }
}

/// The one line of JSON that answers `command`, whatever it was.
async fn reply_to(command: Result<Command, CommandError>, shared: &Shared) -> String {
    let encoded = match command {
        Ok(Command::Status) => serde_json::to_string(&status(shared)),
        Ok(Command::Sources) => serde_json::to_string(&shared.sync_status().sources),
        Ok(Command::SourceStats) => serde_json::to_string(&source_stats(shared)),
        Ok(Command::Clients) => serde_json::to_string(&clients(shared)),
        Ok(Command::Reload) => return done_reply(shared.ask_reload().await),
        Ok(Command::Sync(request)) => return done_reply(shared.ask_sync(request).await),
        Err(e) => return error_reply(&e.to_string()),
    };
    encoded.unwrap_or_else(|e| error_reply(&format!("cannot encode the reply: {e}")))
}

/// `{"ok": what was done}` or `{"error": why nothing was}`.
fn done_reply(reply: CommandReply) -> String {
    match reply {
        Ok(done) => serde_json::json!({ "ok": done }).to_string(),
        Err(e) => error_reply(&e),
    }
}

/// Every source's statistics, from what the sync task last reported.
fn source_stats(shared: &Shared) -> Vec<SourceStats> {
    shared
        .sync_status()
        .sources
        .into_iter()
        .map(|s| SourceStats {
            address: s.address,
            samples: s.samples,
            frequency_ppm: s.frequency_ppm,
            frequency_error_ppm: s.frequency_error_ppm,
            offset: s.offset,
            offset_error: s.offset_error,
            jitter: s.jitter,
        })
        .collect()
}

/// The server's busiest clients, most requests first.
fn clients(shared: &Shared) -> Vec<ClientStatus> {
    let now = std::time::Instant::now();
    shared
        .busiest_clients(CLIENTS_LISTED)
        .into_iter()
        .map(|c| ClientStatus {
            address: c.address.to_string(),
            requests: c.requests,
            kisses: c.kisses,
            dropped: c.dropped,
            last_seen_ago: now.saturating_duration_since(c.last).as_secs_f64(),
        })
        .collect()
}

/// `{"error": message}`: valid JSON whatever the message holds.
fn error_reply(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// The daemon's state now, as `status` reports it (and the metrics endpoint exports it).
pub fn status(shared: &Shared) -> Status {
    let snapshot = shared.snapshot();
    let now = shared.clock.now();
    let stratum = snapshot.stratum;
    let sync = shared.sync_status();
    Status {
        synchronized: snapshot.is_synchronized(),
        stratum: stratum.get(),
        refid: match snapshot.reference_id.as_ascii() {
            Some(name) if shared.local_reference => name.to_owned(),
            _ => snapshot.reference_id.display(stratum, false),
        },
        leap: if snapshot.is_synchronized() {
            snapshot.leap.to_bits()
        } else {
            LeapIndicator::Unsynchronized.to_bits()
        },
        offset: sync.offset,
        frequency_ppm: shared.clock.frequency_ppm(),
        root_delay: snapshot.root_delay.to_seconds_f64(),
        root_dispersion: snapshot.root_dispersion_at(now).to_seconds_f64(),
        clock: ClockStatus {
            mode: shared.clock.mode().name().to_owned(),
            error: shared.clock.error().to_seconds_f64(),
        },
        sources: sync.sources,
        leap_second: sync.leap,
        broadcast_strays: sync.broadcast_strays,
        server: shared.server_totals(),
    }
}

/// Sends `command` to the daemon at `path` and returns its one-line JSON answer. Refuses a
/// socket whose directory another user controls (see [`check_directory`]; root and this user
/// are trusted): a socket there could be anyone's.
pub fn request(path: &Path, command: &str) -> Result<String, ControlError> {
    use std::io::{Read, Write};
    check_directory(directory_of(path), crate::privileges::effective_uid())?;
    let io = ControlError::io(path);
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(&io)?;
    let exchange = |stream: &mut std::os::unix::net::UnixStream| -> io::Result<String> {
        stream.set_read_timeout(Some(REPLY_TIMEOUT + COMMAND_TIMEOUT))?;
        stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut reply = String::new();
        stream.take(MAX_REPLY).read_to_string(&mut reply)?;
        Ok(reply)
    };
    exchange(&mut stream).map_err(io)
}

/// A readable table like `chronyc tracking` followed by `chronyc sources`.
pub fn format_status(status: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let offset = status
        .offset
        .map_or_else(|| "-".to_owned(), |o| format!("{o:+.9} seconds"));
    let _ = writeln!(out, "Reference ID    : {}", status.refid);
    let _ = writeln!(out, "Stratum         : {}", status.stratum);
    let _ = writeln!(
        out,
        "Synchronized    : {}",
        if status.synchronized { "yes" } else { "no" }
    );
    let _ = writeln!(
        out,
        "Leap status     : {}",
        [
            "normal",
            "insert second",
            "delete second",
            "not synchronised"
        ][usize::from(status.leap & 3)]
    );
    if let Some(leap) = &status.leap_second {
        let pending = leap.pending.as_ref().map_or_else(
            || "none".to_owned(),
            |p| format!("{} before {} UTC (from {})", p.kind, p.at, p.from),
        );
        let _ = writeln!(out, "Leap second     : {pending}; mode {}", leap.mode);
        if let Some(expires) = &leap.file_expires {
            let state = if leap.file_expired {
                "EXPIRED"
            } else {
                "valid"
            };
            let _ = writeln!(out, "Leap file       : {state} until {expires} UTC");
        }
    }
    let _ = writeln!(out, "Last offset     : {offset}");
    let _ = writeln!(out, "Frequency       : {:+.3} ppm", status.frequency_ppm);
    let _ = writeln!(out, "Root delay      : {:.9} seconds", status.root_delay);
    let _ = writeln!(
        out,
        "Root dispersion : {:.9} seconds",
        status.root_dispersion
    );
    let _ = writeln!(
        out,
        "Clock           : {} (error {:+.9} s)",
        status.clock.mode, status.clock.error
    );
    if let Some(server) = &status.server {
        out.push_str(&format_server(server));
    }
    if !status.sources.is_empty() {
        out.push('\n');
        out.push_str(&format_sources(&status.sources));
    }
    out
}

/// The server's counters, like `chronyc serverstats`: requests received and answered, the
/// kiss-o'-death among the answers, and the drops with the reasons that occurred.
fn format_server(server: &ServerTotals) -> String {
    let dropped: u64 = server.dropped.values().sum();
    let reasons: Vec<String> = server
        .dropped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    };
    format!(
        "Server requests : {} received, {} answered, {} send errors\n\
         Server KoD sent : RATE {}, DENY {}\n\
         Server dropped  : {dropped}{reasons}\n",
        server.received, server.responses, server.send_errors, server.kod_rate, server.kod_deny
    )
}

/// A table like `chronyc sourcestats`: samples, the frequency relative to ours and its
/// standard error (ppm), the offset now and its standard error, and the samples' spread around
/// their line (seconds).
pub fn format_source_stats(stats: &[SourceStats]) -> String {
    use std::fmt::Write;
    let ppm = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:+.3}"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<42} {:>7} {:>12} {:>10} {:>12} {:>10} {:>10}",
        "source", "samples", "freq ppm", "freq err", "offset", "offset err", "jitter"
    );
    for s in stats {
        let _ = writeln!(
            out,
            "{:<42} {:>7} {:>12} {:>10} {:>+12.6} {:>10.6} {:>10.6}",
            s.address,
            s.samples,
            ppm(s.frequency_ppm),
            ppm(s.frequency_error_ppm).trim_start_matches('+'),
            s.offset,
            s.offset_error,
            s.jitter
        );
    }
    out
}

/// A table like `chronyc clients`: the busiest first.
pub fn format_clients(clients: &[ClientStatus]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:>10} {:>8} {:>8} {:>10}",
        "client", "requests", "kod", "dropped", "last (s)"
    );
    for c in clients {
        let _ = writeln!(
            out,
            "{:<40} {:>10} {:>8} {:>8} {:>10.1}",
            c.address, c.requests, c.kisses, c.dropped, c.last_seen_ago
        );
    }
    out
}

/// A table like `chronyc sources`: the state mark (`*` selected, `+` candidate, `x`
/// falseticker, `?` unreachable, `-` rejected), then kind, the key ID of an authenticated source
/// (`NTS` and the cookies held for NTS, `-` for none), stratum, poll, reach (octal), offset, delay and jitter in seconds.
pub fn format_sources(sources: &[SourceStatus]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<40} {:<6} {:>5} {:>3} {:>4} {:>5} {:>12} {:>10} {:>10}  state",
        "source", "kind", "key", "st", "poll", "reach", "offset", "delay", "jitter"
    );
    for s in sources {
        let mark = match s.state.as_str() {
            "selected" => '*',
            "candidate" => '+',
            "falseticker" => 'x',
            "unreachable" => '?',
            _ => '-',
        };
        let key = match (s.key, s.nts_cookies) {
            (Some(k), _) => k.to_string(),
            (None, Some(cookies)) => format!("NTS{cookies}"),
            (None, None) => "-".to_owned(),
        };
        let mut state = s.state.clone();
        if let Some(reason) = &s.reason {
            state.push_str(&format!(" ({reason})"));
        }
        if s.offline {
            state.push_str(", offline");
        }
        let _ = writeln!(
            out,
            "{mark} {:<40} {:<6} {:>5} {:>3} {:>4} {:>5o} {:>+12.6} {:>10.6} {:>10.6}  {state}",
            s.address, s.kind, key, s.stratum, s.poll, s.reach, s.offset, s.delay, s.jitter,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ntpd-lite-control-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_running_daemons_socket_is_never_replaced_but_a_stale_one_is() {
        let dir = temp_dir("stale");
        let path = dir.join("control.sock");
        let uid = crate::privileges::effective_uid();
        let running = bind(&path, uid).expect("first bind");
        let second = bind(&path, uid).expect_err("a running daemon's socket is in use");
        assert!(matches!(second, ControlError::InUse), "{second}");
        assert!(
            std::os::unix::net::UnixStream::connect(&path).is_ok(),
            "still answers"
        );
        drop(running);
        // The file stays behind when a daemon dies: stale, so it is replaced.
        assert!(path.exists());
        let again = bind(&path, uid).expect("a stale socket is replaced");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_never_removed() {
        let dir = temp_dir("file");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("precious");
        std::fs::write(&path, "keep me").expect("write");
        let error = bind(&path, crate::privileges::effective_uid()).expect_err("not a socket");
        assert!(matches!(error, ControlError::NotASocket(_)), "{error}");
        assert!(error.to_string().contains("remove it or choose another"));
        assert_eq!(
            std::fs::read_to_string(&path).expect("still there"),
            "keep me"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_root_or_the_user_may_own_the_way_and_no_one_else_may_write_it() {
        let path = Path::new("/run/ntpd-lite");
        let judge = |owner, mode, own| judge_directory(path, owner, mode, 999, own);
        assert!(judge(0, 0o755, true).is_ok());
        assert!(judge(999, 0o700, true).is_ok());
        assert!(judge(0, 0o1777, false).is_ok(), "a sticky /tmp above it");
        for (owner, mode, own) in [
            (1000, 0o755, true),
            (1000, 0o755, false),
            (65534, 0o700, true),
        ] {
            let error = judge(owner, mode, own).expect_err("a foreign owner");
            assert!(
                matches!(error, ControlError::ForeignOwner { .. }),
                "{error}"
            );
            assert!(error.to_string().contains("belongs to uid"), "{error}");
        }
        for (mode, own) in [
            (0o777, true),
            (0o1777, true),
            (0o775, true),
            (0o757, true),
            (0o777, false),
            (0o775, false),
        ] {
            let error = judge(0, mode, own).expect_err("writable by others");
            assert!(
                matches!(error, ControlError::Writable { .. }),
                "{mode:o} {own}"
            );
            assert!(error.to_string().contains("chmod go-w"), "{error}");
        }
    }

    #[test]
    fn a_directory_others_can_write_is_refused_on_disk_too() {
        let dir = temp_dir("writable");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let uid = crate::privileges::effective_uid();
        check_directory(&dir, uid).expect("a fresh directory of ours");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = check_directory(&dir, uid).expect_err("world-writable");
        assert!(
            error.to_string().contains(&dir.display().to_string()),
            "{error}"
        );
        assert!(bind(&dir.join("control.sock"), uid).is_err());
        assert!(!dir.join("control.sock").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_above_that_others_can_write_is_refused_unless_sticky() {
        let parent = temp_dir("parent");
        let dir = parent.join("ntpd-lite");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let uid = crate::privileges::effective_uid();
        let mode = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        mode(&parent, 0o777);
        let error = check_directory(&dir, uid).expect_err("others could rename the directory");
        assert!(
            matches!(&error, ControlError::Writable { path, .. } if *path == parent),
            "{error}"
        );
        mode(&parent, 0o1777);
        check_directory(&dir, uid).expect("like /tmp: others cannot rename what is not theirs");
        let _ = std::fs::remove_dir_all(&parent);
    }

    #[test]
    fn every_command_line_gets_an_answer_or_an_error_that_says_what_to_send() {
        let long = vec![b'x'; MAX_COMMAND + 1];
        let mut cut_char = vec![b'a'; MAX_COMMAND];
        cut_char.push(0xc3); // the first byte of a two-byte character, cut by the limit
        let cases: [(&[u8], &str); 14] = [
            (b"status\n", "status"),
            (b"sources", "sources"),
            (b" status \r\n", "status"),
            (b"", "empty command"),
            (b"\n", "empty command"),
            (b"\r\n", "empty command"),
            (b"reboot\n", "unknown command"),
            (b"status sources\n", "unknown command"),
            (b"\"quoted\" \\ back\x1b[2J\x07\0\n", "unknown command"),
            (b"\xff\xfe\n", "not UTF-8"),
            (b"caf\xc3\xa9\n", "unknown command"),
            (&long, "longer than 256 bytes"),
            (&cut_char, "longer than 256 bytes"),
            (b"STATUS\n", "unknown command"),
        ];
        for (line, expected) in cases {
            let reply = match Command::parse(line) {
                Ok(Command::Status) => "status".to_owned(),
                Ok(Command::Sources) => "sources".to_owned(),
                Ok(other) => format!("{other:?}"),
                Err(e) => error_reply(&e.to_string()),
            };
            if matches!(expected, "status" | "sources") {
                assert_eq!(reply, expected, "{line:?}");
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(&reply)
                .unwrap_or_else(|e| panic!("{line:?} gave {reply}: {e}"));
            let error = value["error"].as_str().expect("an error string");
            assert!(error.contains(expected), "{line:?}: {error}");
            assert!(error.contains("status or sources"), "{line:?}: {error}");
        }
        let timeout = CommandError::Timeout.to_string();
        assert!(timeout.contains("within 5 s") && timeout.contains("status or sources"));
    }

    #[test]
    fn the_verbs_parse_to_typed_commands_and_bad_arguments_say_what_to_send() {
        let address: SocketAddr = "127.0.0.1:11123".parse().expect("address");
        let parse = |line: &str| Command::parse(line.as_bytes());
        assert!(matches!(parse("sourcestats"), Ok(Command::SourceStats)));
        assert!(matches!(parse("clients\n"), Ok(Command::Clients)));
        assert!(matches!(parse("reload"), Ok(Command::Reload)));
        assert_eq!(
            parse("makestep").ok(),
            Some(Command::Sync(SyncRequest::MakeStep))
        );
        assert_eq!(parse("burst").ok(), Some(Command::Sync(SyncRequest::Burst)));
        assert_eq!(
            parse("remove-source 127.0.0.1:11123").ok(),
            Some(Command::Sync(SyncRequest::RemoveSource(address)))
        );
        assert_eq!(
            parse("offline").ok(),
            Some(Command::Sync(SyncRequest::SetOnline {
                address: None,
                online: false
            }))
        );
        assert_eq!(
            parse("online 127.0.0.1:11123").ok(),
            Some(Command::Sync(SyncRequest::SetOnline {
                address: Some(address),
                online: true
            }))
        );
        let Ok(Command::Sync(SyncRequest::AddSource(spec))) = parse(
            "add-source 127.0.0.1:11123 iburst prefer minpoll -2 maxpoll 0 maxdelay 0.05 min-samples 3 trust noselect",
        ) else {
            panic!("add-source parses");
        };
        assert_eq!(spec.name, "127.0.0.1:11123");
        let options = spec.config.selection;
        assert!(options.prefer && options.trust && options.noselect && spec.config.iburst);
        assert_eq!(options.min_samples, 3);
        assert_eq!(spec.config.min_poll.get(), -2);
        let max_delay = spec.config.max_delay.expect("maxdelay").to_seconds_f64();
        assert!((max_delay - 0.05).abs() < 1e-9, "{max_delay}");
        let bad = [
            ("add-source", "usage: add-source ADDRESS"),
            ("add-source 127.0.0.1 bogus", "unknown option \"bogus\""),
            ("add-source 127.0.0.1 minpoll", "minpoll needs a number"),
            ("add-source 127.0.0.1 minpoll x", "minpoll needs a number"),
            ("add-source 127.0.0.1 maxdelay -1", "maxdelay = -1"),
            ("add-source 127.0.0.1 minpoll 9 maxpoll 2", "minpoll"),
            ("add-source \"\" ", "address"),
            ("remove-source", "usage: remove-source ADDRESS"),
            ("remove-source pool.example", "is not a source address"),
            ("offline a b", "usage: offline [ADDRESS]"),
            ("online ntp.example:123", "is not a source address"),
        ];
        for (line, expected) in bad {
            let error = parse(line).expect_err(line).to_string();
            assert!(error.contains(expected), "{line}: {error}");
            assert!(error.contains("status or sources"), "{line}: {error}");
        }
    }

    fn source(address: &str, state: &str, reach: u8) -> SourceStatus {
        SourceStatus {
            address: address.to_owned(),
            reach,
            poll: 6,
            stratum: 1,
            offset: -0.000_123,
            delay: 0.000_456,
            jitter: 0.000_01,
            state: state.to_owned(),
            kind: "server".to_owned(),
            ..SourceStatus::default()
        }
    }

    #[test]
    fn the_status_table_shows_the_server_counters_it_reads_back_from_json() {
        let mut server = ServerTotals {
            received: 120,
            responses: 100,
            kod_rate: 4,
            kod_deny: 1,
            ..ServerTotals::default()
        };
        server.dropped.insert("rate_limited".to_owned(), 15);
        server.dropped.insert("too_short".to_owned(), 5);
        server.dropped.insert("malformed".to_owned(), 0);
        let status = Status {
            synchronized: true,
            stratum: 2,
            refid: "127.0.0.1".to_owned(),
            leap: 0,
            offset: None,
            frequency_ppm: 0.0,
            root_delay: 0.0,
            root_dispersion: 0.0,
            clock: ClockStatus {
                mode: "virtual".to_owned(),
                error: 0.0,
            },
            sources: Vec::new(),
            leap_second: None,
            broadcast_strays: 0,
            server: Some(server),
        };
        // The client reads the daemon's JSON, as `ntpd-lite status` does.
        let json = serde_json::to_string(&status).expect("serialize");
        let read: Status = serde_json::from_str(&json).expect("deserialize");
        let table = format_status(&read);
        assert!(
            table.contains("Server requests : 120 received, 100 answered, 0 send errors\n"),
            "{table}"
        );
        assert!(
            table.contains("Server KoD sent : RATE 4, DENY 1\n"),
            "{table}"
        );
        assert!(
            table.contains("Server dropped  : 20 (rate_limited 15, too_short 5)\n"),
            "{table}"
        );
        let not_serving = format_status(&Status {
            server: None,
            ..read
        });
        assert!(!not_serving.contains("Server"), "{not_serving}");
    }

    #[test]
    fn the_sources_table_marks_states_like_chronyc() {
        let table = format_sources(&[
            source("127.0.0.1:123", "selected", 0o377),
            source("127.0.0.2:123", "falseticker", 0o17),
            source("[::1]:123", "unreachable", 0),
            SourceStatus {
                kind: "peer".to_owned(),
                key: Some(42),
                ..source("127.0.0.3:11123", "candidate", 0o377)
            },
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].contains("reach") && lines[0].contains("jitter"));
        assert!(lines[0].contains(" kind "), "{table}");
        assert!(lines[1].contains(" server "), "{table}");
        assert!(lines[4].starts_with("+ 127.0.0.3:11123") && lines[4].contains(" peer "));
        assert!(
            lines[0].contains(" key ") && lines[4].contains(" peer      42   1 "),
            "{table}"
        );
        assert!(lines[1].contains(" server     -   1 "), "{table}");
        assert!(lines[1].starts_with("* 127.0.0.1:123"), "{table}");
        assert!(lines[1].contains(" 377 ") && lines[1].contains("-0.000123"));
        assert!(lines[2].starts_with("x 127.0.0.2:123") && lines[2].contains("  17 "));
        assert!(lines[3].starts_with("? [::1]:123") && lines[3].ends_with("unreachable"));
    }
}
