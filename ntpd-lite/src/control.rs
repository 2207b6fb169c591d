//! The local control socket: a Unix stream socket, owner-only, that answers one command per
//! connection with one line of JSON: `status` (an object), `sources` (an array of sources), or
//! for anything else an object with an `error` that says what to send instead.
//! `ntpd-lite status` and `ntpd-lite sources` are its clients.
//!
//! Hostile local users: at most [`MAX_CONNECTIONS`] connections are open at once (a new one closes the oldest still waiting for its command, see `accept`), a command
//! must arrive within [`COMMAND_TIMEOUT`] and the reply be taken within [`REPLY_TIMEOUT`], and
//! accept errors (no descriptor left) pause the accept loop.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ntp_proto::LeapIndicator;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

use crate::accept::{Backoff, ConnectionTable, Ticket};
use crate::state::{ServerTotals, Shared, SourceStatus};

/// Connections open at once; a new one closes the oldest that is still waiting for its command.
pub const MAX_CONNECTIONS: usize = 32;
/// Longest wait for the command line.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the client to take the reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest command line, its newline not counted.
pub const MAX_COMMAND: usize = 256;

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
    /// Server counters, if serving.
    #[serde(default, skip_deserializing)]
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

/// Binds the control socket, replacing a stale one, readable and writable by the owner only.
/// Bound before the runtime starts (and before privileges are dropped); see [`serve`]. A socket
/// that still answers belongs to a running daemon: it is left alone and this one fails.
pub fn bind(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another ntpd-lite answers on this control socket; stop it first, or give this one \
             its own [control] socket",
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The daemon's [`Status`].
    Status,
    /// Its sources.
    Sources,
}

/// Why a control request gets an error reply instead of an answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// An empty line, or nothing before the client closed.
    #[error("empty command; send status or sources and a newline")]
    Empty,
    /// A command this daemon does not know.
    #[error("unknown command {0:?}; use status or sources")]
    Unknown(String),
    /// No newline within [`MAX_COMMAND`] bytes.
    #[error("command longer than {MAX_COMMAND} bytes; send status or sources and a newline")]
    TooLong,
    /// Bytes that are not UTF-8.
    #[error("the command is not UTF-8 text; send status or sources and a newline")]
    NotText,
    /// No complete line within [`COMMAND_TIMEOUT`].
    #[error(
        "no complete command within {} s; send status or sources and a newline at once",
        COMMAND_TIMEOUT.as_secs()
    )]
    Timeout,
    /// Reading failed.
    #[error("cannot read the command: {0}")]
    Read(io::Error),
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
        match text.trim() {
            "" => Err(CommandError::Empty),
            "status" => Ok(Self::Status),
            "sources" => Ok(Self::Sources),
            other => Err(CommandError::Unknown(other.to_owned())),
        }
    }
}

async fn answer(stream: UnixStream, shared: Arc<Shared>, ticket: Ticket) {
    let (read, mut write) = stream.into_split();
    let command = read_command(read).await;
    ticket.request_received();
    debug!(?command, "control request");
    let mut reply = reply_to(command, &shared);
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
fn reply_to(command: Result<Command, CommandError>, shared: &Shared) -> String {
    let encoded = match command {
        Ok(Command::Status) => serde_json::to_string(&status(shared)),
        Ok(Command::Sources) => serde_json::to_string(&shared.sync_status().sources),
        Err(e) => return error_reply(&e.to_string()),
    };
    encoded.unwrap_or_else(|e| error_reply(&format!("cannot encode the reply: {e}")))
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
        server: Some(shared.server_totals()),
    }
}

/// Sends `command` to the daemon at `path` and returns its one-line JSON answer.
pub fn request(path: &Path, command: &str) -> io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
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
    if !status.sources.is_empty() {
        out.push('\n');
        out.push_str(&format_sources(&status.sources));
    }
    out
}

/// A table like `chronyc sources`: the state mark (`*` selected, `+` candidate, `x`
/// falseticker, `?` unreachable, `-` rejected), then stratum, poll, reach (octal), offset,
/// delay and jitter in seconds.
pub fn format_sources(sources: &[SourceStatus]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<40} {:>3} {:>4} {:>5} {:>12} {:>10} {:>10}  state",
        "source", "st", "poll", "reach", "offset", "delay", "jitter"
    );
    for s in sources {
        let mark = match s.state.as_str() {
            "selected" => '*',
            "candidate" => '+',
            "falseticker" => 'x',
            "unreachable" => '?',
            _ => '-',
        };
        let _ = writeln!(
            out,
            "{mark} {:<40} {:>3} {:>4} {:>5o} {:>+12.6} {:>10.6} {:>10.6}  {}",
            s.address, s.stratum, s.poll, s.reach, s.offset, s.delay, s.jitter, s.state
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_daemons_socket_is_never_replaced_but_a_stale_one_is() {
        let dir = std::env::temp_dir().join(format!("ntpd-lite-control-{}", std::process::id()));
        let path = dir.join("control.sock");
        let running = bind(&path).expect("first bind");
        let second = bind(&path).expect_err("a running daemon's socket is in use");
        assert_eq!(second.kind(), io::ErrorKind::AddrInUse);
        assert!(
            std::os::unix::net::UnixStream::connect(&path).is_ok(),
            "still answers"
        );
        drop(running);
        // The file stays behind when a daemon dies: stale, so it is replaced.
        assert!(path.exists());
        let again = bind(&path).expect("a stale socket is replaced");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
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
            ..SourceStatus::default()
        }
    }

    #[test]
    fn the_sources_table_marks_states_like_chronyc() {
        let table = format_sources(&[
            source("127.0.0.1:123", "selected", 0o377),
            source("127.0.0.2:123", "falseticker", 0o17),
            source("[::1]:123", "unreachable", 0),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].contains("reach") && lines[0].contains("jitter"));
        assert!(lines[1].starts_with("* 127.0.0.1:123"), "{table}");
        assert!(lines[1].contains(" 377 ") && lines[1].contains("-0.000123"));
        assert!(lines[2].starts_with("x 127.0.0.2:123") && lines[2].contains("  17 "));
        assert!(lines[3].starts_with("? [::1]:123") && lines[3].ends_with("unreachable"));
    }
}
