//! The running daemon: shared state, start-up and shutdown. The server workers and the control
//! socket read `Shared`; the reference-clock task (and the sync task) write it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use ntp_proto::{Precision, SystemSnapshot};
use tracing::{error, info};

use crate::clock::{self, Clock};
use crate::config::Config;
use crate::control;
use crate::serve::{self, ServerStats, ServerTotals};

/// How often a local reference clock refreshes the reference time it advertises.
const LOCAL_REFRESH: Duration = Duration::from_secs(1);

/// State shared between the daemon's tasks and threads.
#[derive(Debug)]
pub struct Shared {
    /// The clock served and disciplined.
    pub clock: Clock,
    /// Its measured precision.
    pub precision: Precision,
    /// True when a local reference clock, not an upstream source, is the reference: the
    /// reference ID is then a name, whatever the stratum.
    pub local_reference: bool,
    snapshot: ArcSwap<SystemSnapshot>,
    stop: AtomicBool,
    server_stats: Mutex<Vec<Arc<ServerStats>>>,
}

impl Shared {
    /// Shared state for `clock`, unsynchronized until something says otherwise.
    pub fn new(clock: Clock, local_reference: bool) -> Self {
        let precision = clock::measure_precision(&clock);
        Self {
            clock,
            precision,
            local_reference,
            snapshot: ArcSwap::from_pointee(SystemSnapshot::unsynchronized(precision)),
            stop: AtomicBool::new(false),
            server_stats: Mutex::new(Vec::new()),
        }
    }

    /// The current system variables (lock-free).
    pub fn snapshot(&self) -> Guard<Arc<SystemSnapshot>> {
        self.snapshot.load()
    }

    /// Replaces the system variables.
    pub fn publish(&self, snapshot: SystemSnapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// True once shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Adds a server worker's counters to the totals.
    pub fn register_server_stats(&self, stats: Arc<ServerStats>) {
        self.server_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(stats);
    }

    /// The server counters summed over workers.
    pub fn server_totals(&self) -> ServerTotals {
        ServerTotals::sum(
            &self
                .server_stats
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// Runs the daemon until SIGINT or SIGTERM. Returns an error message for a start-up failure.
pub async fn run(config: Config) -> Result<(), String> {
    let clock = Clock::from_config(&config.clock, config.sync.max_slew_ppm);
    let shared = Arc::new(Shared::new(clock, config.local.is_some()));
    info!(
        mode = config.clock.mode.name(),
        precision = shared.precision.get(),
        "clock ready"
    );

    let mut tasks = Vec::new();
    if let Some(local) = config.local.clone() {
        info!(stratum = local.stratum.get(), refid = ?local.refid, "local reference clock");
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            loop {
                let now = shared.clock.now();
                shared.publish(SystemSnapshot::local_reference(
                    local.stratum,
                    local.refid,
                    shared.precision,
                    now,
                ));
                tokio::time::sleep(LOCAL_REFRESH).await;
            }
        }));
    }
    if let Some(path) = config.control_socket() {
        let listener =
            control::bind(path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
        tasks.push(tokio::spawn(control::serve(listener, Arc::clone(&shared))));
    }
    let workers = match &config.server {
        Some(server) => serve::start(server, &shared).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };

    wait_for_shutdown().await;
    info!("shutting down");
    shared.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    for worker in workers {
        if worker.join().is_err() {
            error!("a server worker panicked");
        }
    }
    if let Some(path) = config.control_socket() {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
