//! The running daemon: shared state, start-up and shutdown. The server workers and the control
//! socket read `Shared`; the reference-clock task (and the sync task) write it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use ntp_proto::{Precision, SystemSnapshot};
use tokio::sync::Notify;
use tracing::{error, info};

use crate::clock::{self, Clock};
use crate::config::Config;
use crate::control::{self, SourceStatus};
use crate::serve::{self, ServerStats, ServerTotals};
use crate::sync;

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
    shutdown: Notify,
    server_stats: Mutex<Vec<Arc<ServerStats>>>,
    sync_status: Mutex<SyncStatus>,
}

/// What the sync task last reported, for the control socket.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// The last combined offset, seconds.
    pub offset: Option<f64>,
    /// Every source.
    pub sources: Vec<SourceStatus>,
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
            shutdown: Notify::new(),
            server_stats: Mutex::new(Vec::new()),
            sync_status: Mutex::new(SyncStatus::default()),
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

    /// Resolves when shutdown is requested.
    pub async fn shutdown_requested(&self) {
        let notified = self.shutdown.notified();
        if !self.stopping() {
            notified.await;
        }
    }

    /// Records what the sync task knows for `status`.
    pub fn set_sync_status(&self, offset: Option<f64>, sources: Vec<SourceStatus>) {
        *self
            .sync_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = SyncStatus { offset, sources };
    }

    /// What the sync task last reported.
    pub fn sync_status(&self) -> SyncStatus {
        self.sync_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
    let sync_task = (!config.sources.is_empty())
        .then(|| tokio::spawn(sync::run(config.clone(), Arc::clone(&shared))));
    if let Some(local) = config.local.clone().filter(|_| sync_task.is_none()) {
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
    shared.shutdown.notify_waiters();
    if let Some(sync_task) = sync_task
        && tokio::time::timeout(Duration::from_secs(5), sync_task)
            .await
            .is_err()
    {
        error!("the sync task did not stop within 5 s");
    }
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
