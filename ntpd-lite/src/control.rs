//! The local control socket: a Unix stream socket, owner-only, that answers one command per
//! connection with one line of JSON: `status` (an object) or `sources` (an array of sources).
//! `ntpd-lite status` and `ntpd-lite sources` are its clients.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ntp_proto::LeapIndicator;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

use crate::state::{ServerTotals, Shared, SourceStatus};

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
    let command = line.trim();
    debug!(command, "control request");
    let reply = match command {
        "status" => serde_json::to_string(&status(shared)),
        "sources" => serde_json::to_string(&shared.sync_status().sources),
        other => Ok(unknown_command(other)),
    }
    .map_err(io::Error::other)?;
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// The reply to a command we do not know: valid JSON whatever bytes the command held.
fn unknown_command(command: &str) -> String {
    serde_json::json!({
        "error": format!("unknown command {command:?}; use status or sources"),
    })
    .to_string()
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
    fn an_unknown_command_gets_valid_json_whatever_it_held() {
        for command in [
            "reboot",
            "\"quoted\" \\ back",
            "\u{1b}[2J\u{7}",
            "caf\u{e9} \u{0}",
            "",
        ] {
            let reply = unknown_command(command);
            let value: serde_json::Value = serde_json::from_str(&reply)
                .unwrap_or_else(|e| panic!("{command:?} gave {reply}: {e}"));
            assert!(
                value["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("unknown command"))
            );
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
