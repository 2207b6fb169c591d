//! The local control socket: a Unix stream socket, owner-only, that answers one command per
//! connection (`status`) with one JSON object. `ntpd-lite status` is its client.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ntp_proto::LeapIndicator;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::debug;

use crate::daemon::Shared;
use crate::serve::ServerTotals;

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

/// One upstream source in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Address and port.
    pub address: String,
    /// The 8-bit reach register.
    pub reach: u8,
    /// The current poll interval, log2 seconds.
    pub poll: i8,
    /// Its stratum.
    pub stratum: u8,
    /// Its offset, seconds.
    pub offset: f64,
    /// Its round-trip delay, seconds.
    pub delay: f64,
    /// Its jitter, seconds.
    pub jitter: f64,
    /// `selected`, `candidate`, `falseticker`, `unreachable` or `rejected`.
    pub state: String,
    /// Requests sent.
    #[serde(default)]
    pub sent: u64,
    /// Valid replies used (never more than `sent`).
    #[serde(default)]
    pub accepted: u64,
    /// Replies that failed a check.
    #[serde(default)]
    pub rejected: u64,
    /// Duplicate, stray or malformed datagrams, never used.
    #[serde(default)]
    pub ignored: u64,
}

/// Binds the control socket, replacing a stale one, readable and writable by the owner only.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers connections until the task is aborted.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &shared).await {
                debug!(error = %e, "control connection failed");
            }
        });
    }
}

async fn answer(stream: UnixStream, shared: &Shared) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(256);
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .map_err(io::Error::other)??;
    let reply = match line.trim() {
        "status" => serde_json::to_string(&status(shared)).map_err(io::Error::other)?,
        other => format!("{{\"error\":\"unknown command {other:?}; use status\"}}"),
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

fn status(shared: &Shared) -> Status {
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
        let _ = writeln!(
            out,
            "\n{:<40} {:>3} {:>4} {:>5} {:>12} {:>10} {:>10}  state",
            "source", "st", "poll", "reach", "offset", "delay", "jitter"
        );
        for s in &status.sources {
            let _ = writeln!(
                out,
                "{:<40} {:>3} {:>4} {:>5o} {:>+12.6} {:>10.6} {:>10.6}  {}",
                s.address, s.stratum, s.poll, s.reach, s.offset, s.delay, s.jitter, s.state
            );
        }
    }
    out
}
