//! Network Time Security's IO (RFC 8915): TLS 1.3 for NTS-KE (rustls), server and client, and the
//! server's cookie keys on disk. What to answer, which keys and cookies to use and how to read a
//! response are `ntp_proto::nts`'s decisions; this module only moves bytes and files.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use ntp_proto::nts::ke::{self, KeResponse, Negotiation};
use ntp_proto::nts::record;
use ntp_proto::nts::{
    AeadAlgorithm, AeadKey, ClientSession, CookieKey, CookieKeys, KeError, KeOutcome, SessionKeys,
    cookie::KEPT_KEYS,
};
use ntp_proto::{Client, SourceConfig, SourceId};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

use crate::config::{self, Config, ServerConfig};
use crate::state::Shared;
use ntpd_lite::nts_config::NtsKeServerConfig;

/// How long one NTS-KE exchange may take, handshake included, either side.
pub const KE_TIMEOUT: Duration = Duration::from_secs(10);
/// NTS-KE connections served at once; more wait for a slot.
const KE_CONNECTIONS: usize = 256;
/// Where the CA certificates are when a source names no `ca-file` (Debian's bundle).
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why NTS could not be set up or an exchange failed; each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum NtsError {
    /// A certificate, key or CA file could not be read or used.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// The TLS settings were refused.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Connecting, the TLS handshake or the exchange failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server is not an NTS-KE server: it did not agree on ALPN ntske/1.
    #[error("the server did not agree on ALPN ntske/1: is it an NTS-KE server (port 4460)?")]
    Alpn,
    /// The exchange took too long.
    #[error("no NTS-KE response within {} s", KE_TIMEOUT.as_secs())]
    Timeout,
    /// The response was refused.
    #[error(transparent)]
    Ke(#[from] KeError),
    /// The NTP server the response named could not be found.
    #[error("cannot resolve the NTP server {0} named by the NTS-KE server")]
    Resolve(String),
    /// A source's address is no `host:port`.
    #[error("`{0}` is not an NTS-KE server's host or host:port")]
    Address(String),
}

fn file_error(path: &Path, reason: impl ToString) -> NtsError {
    NtsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The two session keys of a finished TLS 1.3 handshake for `aead` (RFC 8915 section 5.1).
fn export<D>(connection: &rustls::ConnectionCommon<D>, aead: AeadAlgorithm) -> Option<SessionKeys> {
    SessionKeys::export(aead, |key, label, context| {
        connection
            .export_keying_material(key, label, Some(context))
            .map(drop)
    })
    .ok()
}

/// Reads one KE message (through End of Message) from `stream`.
async fn read_message(stream: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, NtsError> {
    let mut message = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(len) = record::message_len(&message).map_err(KeError::from)? {
            message.truncate(len);
            return Ok(message);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(NtsError::Ke(record::RecordError::Truncated.into()));
        }
        message.extend_from_slice(&chunk[..read]);
    }
}

/// The server's cookie keys: shared with the NTP workers, rotated, kept in the key file.
#[derive(Debug)]
pub struct CookieKeyStore {
    keys: ArcSwap<CookieKeys>,
    file: Option<PathBuf>,
    rotation: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_key(now: u64) -> CookieKey {
    CookieKey {
        id: rand::random(),
        key: AeadKey(rand::random()),
        created: now,
    }
}

impl CookieKeyStore {
    /// The keys of `file` (made, mode 0600, if it does not exist), or fresh keys in memory.
    pub fn open(file: Option<&Path>, rotation: u64) -> Result<Self, NtsError> {
        let keys = match file {
            Some(path) if path.exists() => read_key_file(path)?,
            Some(path) => {
                let keys = CookieKeys::new(new_key(unix_now()));
                write_key_file(path, &keys).map_err(|e| file_error(path, e))?;
                keys
            }
            None => CookieKeys::new(new_key(unix_now())),
        };
        Ok(Self {
            keys: ArcSwap::from_pointee(keys),
            file: file.map(Path::to_owned),
            rotation,
        })
    }

    /// The keys now.
    pub fn load(&self) -> Arc<CookieKeys> {
        self.keys.load_full()
    }

    /// Takes up a key another server sharing the file made, then rotates if the newest key is
    /// a rotation period old (writing the file).
    fn refresh(&self) {
        let mut keys = CookieKeys::clone(&self.keys.load());
        if let Some(path) = &self.file {
            match read_key_file(path) {
                Ok(on_disk) if on_disk.current().created > keys.current().created => keys = on_disk,
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot reread the NTS key file"),
            }
        }
        let now = unix_now();
        if keys.needs_rotation(now, self.rotation) {
            keys.rotate(new_key(now), KEPT_KEYS);
            info!(id = %format_args!("{:08x}", keys.current().id), "NTS cookie key rotated");
            if let Some(path) = &self.file
                && let Err(e) = write_key_file(path, &keys)
            {
                warn!(path = %path.display(), error = %e, "cannot write the NTS key file");
            }
        }
        if keys != **self.keys.load() {
            self.keys.store(Arc::new(keys));
        }
    }

    /// Refreshes the keys until shutdown: every tenth of a rotation period, at most a minute.
    async fn run(self: Arc<Self>, shared: Arc<Shared>) {
        let every = Duration::from_secs((self.rotation / 10).clamp(1, 60));
        while !shared.stopping() {
            tokio::time::sleep(every).await;
            self.refresh();
        }
    }
}

fn read_key_file(path: &Path) -> Result<CookieKeys, NtsError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    CookieKeys::parse_file(&text).map_err(|e| file_error(path, e))
}

/// Writes the keys next to `path` and renames the file over it: readers never see half a file.
fn write_key_file(path: &Path, keys: &CookieKeys) -> io::Result<()> {
    use std::io::Write as _;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(keys.to_file().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// The NTS-KE server's TLS settings, reread from the certificate and key files on SIGHUP.
#[derive(Debug)]
pub struct TlsReloader {
    config: ArcSwap<rustls::ServerConfig>,
    certificate: PathBuf,
    key: PathBuf,
}

impl TlsReloader {
    /// Rereads the certificate and key; on failure (say, a key the daemon's user may not read)
    /// keeps serving the ones it has and says why.
    pub fn reload(&self) {
        match server_tls(&self.certificate, &self.key) {
            Ok(config) => {
                self.config.store(Arc::new(config));
                info!(certificate = %self.certificate.display(), "NTS-KE certificate reloaded");
            }
            Err(error) => warn!(
                %error,
                "NTS-KE certificate not reloaded; still serving the previous one (the files must be readable by the daemon's user)"
            ),
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

/// The NTS-KE server, prepared (sockets bound, files read) before privileges are dropped.
pub struct KeServer {
    listeners: Vec<std::net::TcpListener>,
    tls: Arc<TlsReloader>,
    keys: Arc<CookieKeyStore>,
    negotiation: Negotiation,
}

impl std::fmt::Debug for KeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeServer")
            .field("listeners", &self.listeners)
            .field("negotiation", &self.negotiation)
            .finish_non_exhaustive()
    }
}

impl KeServer {
    /// Reads the certificate, key and key file and binds the listen addresses.
    pub fn prepare(config: &NtsKeServerConfig, server: &ServerConfig) -> Result<Self, NtsError> {
        let tls = server_tls(&config.certificate, &config.private_key)?;
        let keys = CookieKeyStore::open(config.key_file.as_deref(), config.rotation)?;
        let ntp_port = server.listen.first().map_or(123, SocketAddr::port);
        let negotiation = Negotiation {
            server: config.ntp_server.clone(),
            port: config.ntp_port.or((ntp_port != 123).then_some(ntp_port)),
        };
        let listeners = config
            .listen
            .iter()
            .map(|&address| {
                let listener = std::net::TcpListener::bind(address).map_err(|e| {
                    io::Error::new(e.kind(), format!("NTS-KE cannot listen on {address}: {e}"))
                })?;
                listener.set_nonblocking(true)?;
                info!(address = %listener.local_addr()?, "serving NTS-KE");
                Ok(listener)
            })
            .collect::<io::Result<_>>()?;
        let tls = TlsReloader {
            config: ArcSwap::from_pointee(tls),
            certificate: config.certificate.clone(),
            key: config.private_key.clone(),
        };
        Ok(Self {
            listeners,
            tls: Arc::new(tls),
            keys: Arc::new(keys),
            negotiation,
        })
    }

    /// The TLS settings, for SIGHUP.
    pub fn tls(&self) -> Arc<TlsReloader> {
        Arc::clone(&self.tls)
    }

    /// The cookie keys, for the NTP server.
    pub fn keys(&self) -> Arc<CookieKeyStore> {
        Arc::clone(&self.keys)
    }

    /// Serves until shutdown (call inside the runtime).
    pub fn spawn(self, shared: &Arc<Shared>) -> io::Result<()> {
        tokio::spawn(Arc::clone(&self.keys).run(Arc::clone(shared)));
        let limit = Arc::new(Semaphore::new(KE_CONNECTIONS));
        let negotiation = Arc::new(self.negotiation);
        for listener in self.listeners {
            let listener = TcpListener::from_std(listener)?;
            let (tls, keys) = (Arc::clone(&self.tls), Arc::clone(&self.keys));
            let (limit, negotiation) = (Arc::clone(&limit), Arc::clone(&negotiation));
            tokio::spawn(async move {
                loop {
                    let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                        return;
                    };
                    let (stream, peer) = match listener.accept().await {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            warn!(error = %e, "NTS-KE accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let (acceptor, keys) = (tls.acceptor(), Arc::clone(&keys));
                    let negotiation = Arc::clone(&negotiation);
                    tokio::spawn(async move {
                        let served = tokio::time::timeout(
                            KE_TIMEOUT,
                            serve_ke(stream, &acceptor, &keys, &negotiation),
                        )
                        .await
                        .unwrap_or(Err(NtsError::Timeout));
                        match served {
                            Ok(outcome) => debug!(%peer, ?outcome, "NTS-KE"),
                            Err(error) => debug!(%peer, %error, "NTS-KE failed"),
                        }
                        drop(permit);
                    });
                }
            });
        }
        Ok(())
    }
}

/// One NTS-KE connection: the handshake, one request, its response, close.
async fn serve_ke(
    stream: TcpStream,
    acceptor: &TlsAcceptor,
    keys: &CookieKeyStore,
    negotiation: &Negotiation,
) -> Result<KeOutcome, NtsError> {
    let mut tls = acceptor.accept(stream).await?;
    if tls.get_ref().1.alpn_protocol() != Some(ntp_proto::nts::ALPN) {
        return Err(NtsError::Alpn);
    }
    let request = read_message(&mut tls).await?;
    let (response, outcome) = ke::respond(
        &request,
        |aead| export(tls.get_ref().1, aead),
        &keys.load(),
        rand::random,
        negotiation,
    );
    tls.write_all(&response).await?;
    tls.shutdown().await?;
    Ok(outcome)
}

/// What `check-config` checks of `[nts-ke-server]`: the certificate and key make a TLS
/// configuration, and the key file, if it exists, reads.
pub fn check_files(config: &NtsKeServerConfig) -> Result<(), NtsError> {
    server_tls(&config.certificate, &config.private_key)?;
    match &config.key_file {
        Some(path) if path.exists() => read_key_file(path).map(drop),
        _ => Ok(()),
    }
}

/// TLS 1.3 only, ALPN ntske/1, the certificate chain and key from PEM files.
fn server_tls(certificate: &Path, key: &Path) -> Result<rustls::ServerConfig, NtsError> {
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| {
            file_error(
                certificate,
                format!("cannot read the PEM certificates: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err(file_error(certificate, "holds no PEM CERTIFICATE"));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error(key, format!("cannot read the PEM private key: {e}")))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![ntp_proto::nts::ALPN.to_vec()];
    Ok(tls)
}

/// TLS 1.3 only, ALPN ntske/1, trusting the CAs of `ca_file` or the system's.
fn client_tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, NtsError> {
    let path = ca_file.unwrap_or(Path::new(SYSTEM_CA_FILE));
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| file_error(path, format!("cannot read the CA certificates: {e}")))?;
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(file_error(path, "holds no usable CA certificate"));
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ntp_proto::nts::ALPN.to_vec()];
    Ok(tls)
}

/// What an NTS-KE exchange gave a client: where to send NTP, and the session.
#[derive(Debug)]
pub struct KeResult {
    /// The NTP server's address and port.
    pub ntp: SocketAddr,
    /// Keys and cookies.
    pub session: ClientSession,
}

/// One NTS-KE exchange with the server at `host:port` (the certificate must name `host`),
/// trusting the CAs of `ca_file` or the system's.
pub async fn key_exchange(
    host: &str,
    port: u16,
    ca_file: Option<&Path>,
) -> Result<KeResult, NtsError> {
    tokio::time::timeout(KE_TIMEOUT, exchange(host, port, ca_file))
        .await
        .unwrap_or(Err(NtsError::Timeout))
}

async fn exchange(host: &str, port: u16, ca_file: Option<&Path>) -> Result<KeResult, NtsError> {
    let connector = TlsConnector::from(Arc::new(client_tls(ca_file)?));
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not a valid server name"))?;
    let stream = TcpStream::connect((host, port)).await?;
    let peer = stream.peer_addr()?;
    let mut tls = connector.connect(name, stream).await?;
    if tls.get_ref().1.alpn_protocol() != Some(ntp_proto::nts::ALPN) {
        return Err(NtsError::Alpn);
    }
    tls.write_all(&ke::client_request()).await?;
    let message = read_message(&mut tls).await?;
    let response = KeResponse::parse(&message)?;
    let keys = export(tls.get_ref().1, response.aead).ok_or(KeError::Export)?;
    let _ = tls.shutdown().await;
    let ntp_port = response.negotiation.port.unwrap_or(123);
    let ntp = match &response.negotiation.server {
        None => SocketAddr::new(peer.ip(), ntp_port),
        Some(server) => tokio::net::lookup_host((server.as_str(), ntp_port))
            .await
            .ok()
            .and_then(|mut found| found.next())
            .ok_or_else(|| NtsError::Resolve(server.clone()))?,
    };
    Ok(KeResult {
        ntp,
        session: ClientSession::new(keys, response.cookies, rand::random()),
    })
}

/// The NTS-KE server's host and port of a source's `address` (`host:port`, `[v6]:port`, or a
/// bare host for port 4460).
pub fn ke_target(address: &str) -> Option<(String, u16)> {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return Some((socket.ip().to_string(), socket.port()));
    }
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => ntp_proto::nts::KE_PORT,
            after => after.strip_prefix(':')?.parse().ok()?,
        };
        return Some((host.to_owned(), port));
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_owned(), port.parse().ok()?)),
        _ => Some((address.to_owned(), ntp_proto::nts::KE_PORT)),
    }
}

/// Longest wait before retrying a failed NTS-KE exchange.
const MAX_KE_BACKOFF: Duration = Duration::from_secs(1024);

/// One `[[source]] nts = true`: its NTS-KE server, and its association once there is one.
#[derive(Debug)]
struct NtsSource {
    address: String,
    ca_file: Option<PathBuf>,
    config: SourceConfig,
    id: Option<SourceId>,
    running: bool,
    failures: u32,
}

/// The client's NTS sources: runs their NTS-KE exchanges (at start, and whenever the core says a
/// source is out of cookies or NAKed) and hands the results to the core.
#[derive(Debug)]
pub struct NtsClients {
    sources: Vec<NtsSource>,
    done: mpsc::Sender<(usize, Result<KeResult, NtsError>)>,
    results: mpsc::Receiver<(usize, Result<KeResult, NtsError>)>,
}

impl NtsClients {
    /// The NTS sources of `config`, each with the core's configuration `core` makes for it.
    pub fn new(config: &Config, core: impl Fn(&config::SourceConfig) -> SourceConfig) -> Self {
        let (done, results) = mpsc::channel(16);
        let sources = config
            .sources
            .iter()
            .filter(|s| s.nts)
            .map(|s| NtsSource {
                address: s.address.clone(),
                ca_file: s.ca_file.clone(),
                config: core(s),
                id: None,
                running: false,
                failures: 0,
            })
            .collect();
        Self {
            sources,
            done,
            results,
        }
    }

    /// Starts the exchanges that are needed: sources without an association yet, and those the
    /// core says need new keys and cookies.
    pub fn start(&mut self, client: &Client) {
        let needed: Vec<SourceId> = client.nts_ke_needed().collect();
        for (index, source) in self.sources.iter_mut().enumerate() {
            let due = source.id.is_none_or(|id| needed.contains(&id));
            if source.running || !due {
                continue;
            }
            source.running = true;
            // 0, 2, 4, 8 ... s after failures, at most MAX_KE_BACKOFF.
            let backoff = match source.failures {
                0 => Duration::ZERO,
                n => Duration::from_secs(1 << n.min(10)).min(MAX_KE_BACKOFF),
            };
            let (address, ca_file) = (source.address.clone(), source.ca_file.clone());
            let done = self.done.clone();
            tokio::spawn(async move {
                tokio::time::sleep(backoff).await;
                let result = match ke_target(&address) {
                    Some((host, port)) => key_exchange(&host, port, ca_file.as_deref()).await,
                    None => Err(NtsError::Address(address)),
                };
                let _ = done.send((index, result)).await;
            });
        }
    }

    /// The next finished exchange.
    pub async fn next(&mut self) -> Option<(usize, Result<KeResult, NtsError>)> {
        self.results.recv().await
    }

    /// Gives the core a finished exchange's session: a new association at the NTP address it
    /// named, or new keys and cookies for the existing one.
    pub fn handle(
        &mut self,
        client: &mut Client,
        (index, result): (usize, Result<KeResult, NtsError>),
    ) {
        let Some(source) = self.sources.get_mut(index) else {
            return;
        };
        source.running = false;
        let result = match result {
            Ok(result) => result,
            Err(error) => {
                source.failures = source.failures.saturating_add(1);
                return warn!(source = %source.address, %error, "NTS-KE failed; will retry");
            }
        };
        source.failures = 0;
        info!(
            source = %source.address,
            ntp = %result.ntp,
            cookies = result.session.cookies(),
            "NTS-KE done"
        );
        let id = match source.id {
            Some(id) => Some(id),
            None => client.add_source(result.ntp, source.config, std::time::Instant::now()),
        };
        match id {
            Some(id) => {
                source.id = Some(id);
                client.set_nts(id, result.session);
            }
            None => warn!(ntp = %result.ntp, "another source already uses this NTP address"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ke_targets_default_to_port_4460() {
        let target = |a: &str| ke_target(a).expect("a target");
        assert_eq!(target("localhost"), ("localhost".into(), 4460));
        assert_eq!(target("127.0.0.1:1234"), ("127.0.0.1".into(), 1234));
        assert_eq!(target("[::1]:99"), ("::1".into(), 99));
        assert_eq!(target("[::1]"), ("::1".into(), 4460));
        assert_eq!(target("::1"), ("::1".into(), 4460));
        assert_eq!(target("time.example:4461"), ("time.example".into(), 4461));
        assert_eq!(ke_target("host:x"), None);
    }

    #[test]
    fn the_key_file_is_made_private_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("nts-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let path = dir.join("keys");
        let _ = std::fs::remove_file(&path);
        let first = CookieKeyStore::open(Some(&path), 3600).expect("made");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = CookieKeyStore::open(Some(&path), 3600).expect("read");
        assert_eq!(first.load(), again.load());
        std::fs::remove_dir_all(&dir).expect("removed");
    }
}
