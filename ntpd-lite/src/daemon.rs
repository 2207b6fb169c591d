//! The running daemon, and the composition root: the one module that knows every task. Start-up
//! (bind, then drop privileges, then the runtime), signals (SIGTERM/SIGINT stop, SIGHUP rereads
//! the configuration) and shutdown. The tasks share only [`Shared`] (in `state`); the local
//! reference clock, the one task small enough to live here, writes it too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ntp_proto::auth::{KeyId, Keys};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::control;
use crate::logging::Logger;
use crate::metrics;
use crate::nts::{CookieKeyStore, KeServer, TlsReloader};
use crate::privileges::Privileges;
use crate::serve;
use crate::state::{CommandReply, Shared, SyncRequest};
use crate::sync;

/// The daemon with every socket bound and privileges dropped, before any runtime thread exists.
#[derive(Debug)]
pub struct Prepared {
    config: Config,
    keys: Keys,
    shared: Arc<Shared>,
    control: Option<std::os::unix::net::UnixListener>,
    metrics: Option<std::net::TcpListener>,
    workers: Vec<JoinHandle<()>>,
    broadcast: sync::BroadcastSockets,
    nts: Option<KeServer>,
}

/// Binds the metrics endpoint and the server sockets (starting the server workers), then the
/// control socket, then drops privileges. Runs before the async runtime is built, so that the
/// runtime's threads inherit only what the clock needs. The network ports come first: a second
/// daemon on the same configuration fails on a port in use before it goes near the running
/// one's control socket. Returns a message for a failure.
pub fn prepare(config: Config) -> Result<Prepared, String> {
    let privileges = Privileges::plan(&config).map_err(|e| e.to_string())?;
    // Read while still privileged: the keys file is readable by its owner only.
    let keys = config.load_keys().map_err(|e| e.to_string())?;
    if !keys.is_empty() {
        info!(keys = keys.len(), "symmetric keys loaded");
    }
    let clock = Clock::from_config(&config.clock, config.max_slew_ppm());
    let shared = Arc::new(Shared::new(clock, config.local.is_some()));
    info!(
        mode = config.clock.mode.name(),
        precision = shared.precision.get(),
        "clock ready"
    );
    let metrics = config
        .observability
        .metrics
        .map(|address| {
            metrics::bind(address).map_err(|e| format!("metrics endpoint {address}: {e}"))
        })
        .transpose()?;
    if let Some(address) = metrics.as_ref().and_then(|l| l.local_addr().ok()) {
        info!(%address, "serving metrics at /metrics");
    }
    // Read while still privileged: the certificate's key and the cookie keys are secrets.
    let nts = match (&config.nts_ke_server, &config.server) {
        (Some(ke), Some(server)) => Some(KeServer::prepare(ke, server).map_err(|e| e.to_string())?),
        _ => None,
    };
    // Workers wait for the serving gate: if a later step fails, they have answered nothing.
    let cookie_keys = nts.as_ref().map(KeServer::keys);
    let workers = start_server(&config, &keys, cookie_keys, &shared, &privileges)?;
    let broadcast = sync::BroadcastSockets::bind(&config)?;
    let control = config
        .control_socket()
        .map(|path| {
            control::bind(path, privileges.uid())
                .map_err(|e| format!("control socket {}: {e}", path.display()))
        })
        .transpose()?;
    let owned: Vec<&Path> = config.control_socket().into_iter().collect();
    let capabilities = privileges
        .drop_for_good(&owned)
        .map_err(|e| format!("cannot drop privileges: {e}"))?;
    info!(
        uid = crate::privileges::effective_uid(),
        capabilities, "privileges dropped"
    );
    shared.open_serving_gate();
    if privileges.switches_user() {
        check_drift_file_writable(&config);
    }
    Ok(Prepared {
        config,
        keys,
        shared,
        control,
        metrics,
        workers,
        broadcast,
        nts,
    })
}

/// Starts the server workers from a thread narrowed to what binding needs, so that they
/// inherit no more than that.
fn start_server(
    config: &Config,
    keys: &Keys,
    nts: Option<Arc<CookieKeyStore>>,
    shared: &Arc<Shared>,
    privileges: &Privileges,
) -> Result<Vec<JoinHandle<()>>, String> {
    let Some(server) = &config.server else {
        return Ok(Vec::new());
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                privileges
                    .enter_server_thread()
                    .map_err(|e| format!("cannot drop privileges: {e}"))?;
                let auth = (keys.clone(), config.peer_keys());
                serve::start(server, &config.peer_addresses(), auth, nts, shared)
                    .map_err(|e| e.to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("the server start-up thread panicked".to_owned()))
    })
}

/// Warns at start if the drift file cannot be written as the configured user.
fn check_drift_file_writable(config: &Config) {
    let Some(path) = &config.sync.drift_file else {
        return;
    };
    let probe = path.with_extension("tmp");
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&probe)
        .and_then(|_| std::fs::remove_file(&probe));
    if let Err(e) = result {
        warn!(
            path = %path.display(),
            user = config.daemon.user.as_deref().unwrap_or(""),
            error = %e,
            "the drift file's directory is not writable by this user: the frequency will not be saved"
        );
    }
}

/// Runs the daemon until SIGINT or SIGTERM; SIGHUP rereads the configuration. Returns an error
/// message for a start-up failure.
pub async fn run(prepared: Prepared, mut reloader: Reloader) -> Result<(), String> {
    let Prepared {
        config,
        keys,
        shared,
        control,
        metrics,
        workers,
        broadcast,
        nts,
    } = prepared;
    if let Some(nts) = nts {
        reloader.nts_tls = Some(nts.tls());
        nts.spawn(&shared)
            .map_err(|e| format!("cannot serve NTS-KE: {e}"))?;
    }
    let mut tasks = Vec::new();
    // The core serves a local reference too: it also makes that clock's leap seconds.
    if let Some(local) = &config.local {
        info!(stratum = local.stratum.get(), refid = ?local.refid, "local reference clock");
    }
    reloader.attach(Arc::clone(&shared), keys.clone());
    let sync_task = (!config.sources.is_empty()
        || !config.peers.is_empty()
        || config.local.is_some())
    .then(|| {
        tokio::spawn(sync::run(
            config.clone(),
            keys,
            Arc::clone(&shared),
            broadcast,
        ))
    });
    if let Some(listener) = control {
        tasks.push(tokio::spawn(control::serve(listener, Arc::clone(&shared))));
    }
    if let Some(listener) = metrics {
        let serving = config.server.is_some();
        tasks.push(tokio::spawn(metrics::serve(
            listener,
            Arc::clone(&shared),
            serving,
        )));
    }

    let mut reloads = shared.take_reload_receiver();
    wait_for_shutdown(&mut reloader, &mut reloads).await;
    info!("shutting down");
    shared.request_shutdown();
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

/// An operator's `reload` from the control socket (never, without the channel).
async fn next_reload(
    receiver: &mut Option<mpsc::Receiver<oneshot::Sender<CommandReply>>>,
) -> Option<oneshot::Sender<CommandReply>> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Returns on SIGTERM or SIGINT; rereads the configuration on every SIGHUP and `reload`.
async fn wait_for_shutdown(
    reloader: &mut Reloader,
    reloads: &mut Option<mpsc::Receiver<oneshot::Sender<CommandReply>>>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                let _ = reloader.reload("SIGHUP").await;
            }
            Some(reply) = next_reload(reloads) => {
                let _ = reply.send(reloader.reload("reload").await);
            }
        }
    }
}

/// What SIGHUP and `reload` need: the configuration file, the text the daemon started with, the
/// logger, and once running, the shared state and the keys loaded at start.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    running: String,
    logger: Logger,
    shared: Option<Arc<Shared>>,
    keys: Keys,
    /// The NTS-KE server's certificate and key, reread on every SIGHUP.
    nts_tls: Option<Arc<TlsReloader>>,
}

impl Reloader {
    /// Reloads `path`, which the daemon started with `running` (its text).
    pub fn new(path: PathBuf, running: String, logger: Logger) -> Self {
        Self {
            path,
            running,
            logger,
            shared: None,
            keys: Keys::default(),
            nts_tls: None,
        }
    }

    /// The running daemon's shared state and the keys it loaded at start (the keys file is
    /// read before privileges are dropped, so a reload cannot reread it).
    pub fn attach(&mut self, shared: Arc<Shared>, keys: Keys) {
        self.shared = Some(shared);
        self.keys = keys;
    }

    /// Rereads the file (on `why`: SIGHUP or `reload`): applies the log level, the server's
    /// access list and rate limit, and the `server` and `pool` sources (added, removed, changed;
    /// the others untouched); names what else changed and needs a restart. A file that no
    /// longer reads or validates changes nothing. Returns what it did, or why it did nothing.
    pub async fn reload(&mut self, why: &str) -> CommandReply {
        info!(path = %self.path.display(), "{why}: rereading the configuration");
        if let Some(tls) = &self.nts_tls {
            tls.reload();
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            warn!(error = %e, "cannot read the configuration; nothing changed");
            format!("cannot read {}: {e}; nothing changed", self.path.display())
        })?;
        let config = Config::parse(&text, &self.path).map_err(|e| {
            error!("{e}; nothing changed");
            format!("{e}; nothing changed")
        })?;
        self.check_keys(&config)?;
        self.logger
            .reconfigure(config.observability.log_level.as_deref());
        let mut done = Vec::new();
        if let Some(shared) = &self.shared {
            done.extend(apply_server(shared, &config));
            let specs = config
                .sources
                .iter()
                .filter_map(|s| s.name_spec(&self.keys))
                .collect();
            match shared.ask_sync(SyncRequest::Reload(specs)).await {
                Ok(sources) => done.push(sources),
                Err(_) if config.sources.is_empty() => {}
                Err(e) => done.push(format!("sources not applied: {e}")),
            }
        }
        let changed = crate::config::changed_sections(&self.running, &text);
        if !changed.is_empty() {
            warn!(
                sections = %changed.join(" "),
                "changed in the configuration, applied only by a restart"
            );
            done.push(format!("needs a restart: {}", changed.join(" ")));
        }
        let done = done.join("; ");
        info!("{why}: {done}");
        Ok(done)
    }

    /// Refuses a file whose sources name a key that was not loaded at start: they would run
    /// unauthenticated.
    fn check_keys(&self, config: &Config) -> Result<(), String> {
        let missing = config
            .sources
            .iter()
            .filter_map(|s| s.key)
            .find(|id| self.keys.get(KeyId(*id)).is_none());
        match missing {
            Some(id) => {
                let message = format!(
                    "key {id} was not among the keys loaded at start; restart the daemon to load a changed keys file; nothing changed"
                );
                error!("{message}");
                Err(message)
            }
            None => Ok(()),
        }
    }
}

/// Replaces the server's access list and rate limit (the rate limiter's table is kept when its
/// settings did not change); returns what it did, if the daemon serves.
fn apply_server(shared: &Shared, config: &Config) -> Option<String> {
    let (server, running) = (config.server.as_ref()?, shared.server()?);
    let access = serve::access_list(server);
    let (allow, deny) = (access.allow_len(), access.deny_len());
    let reconfigured = running.reconfigured(access, server.rate_limit, Instant::now());
    let kept = reconfigured.shares_rate_limiter(&running);
    shared.set_server(Arc::new(reconfigured));
    let rate = match (server.rate_limit, kept) {
        (None, _) => "no rate limit",
        (Some(_), true) => "rate limit unchanged (its table kept)",
        (Some(_), false) => "new rate limit",
    };
    info!(allow, deny, rate, "access list and rate limit applied");
    Some(format!(
        "access list applied ({allow} allow, {deny} deny), {rate}"
    ))
}
