//! A blocking NTS-KE client (rustls over a std TCP stream) on ntp-proto's KE logic, for tests
//! that craft NTS packets themselves and for the load generator's NTS requests: one handshake
//! gives the session keys and eight cookies.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ntp_proto::nts::ke::{self, KeResponse};
use ntp_proto::nts::{ClientSession, SessionKeys, record};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

/// What one NTS-KE exchange gave.
#[derive(Debug, Clone)]
pub struct KeOutcome {
    /// The session keys.
    pub keys: SessionKeys,
    /// The cookies, in order.
    pub cookies: Vec<Vec<u8>>,
    /// The NTP port the server named, if any.
    pub port: Option<u16>,
}

impl KeOutcome {
    /// A client session of these keys and cookies.
    pub fn session(&self, seed: [u8; 32]) -> ClientSession {
        ClientSession::new(self.keys, self.cookies.clone(), seed)
    }
}

/// A TLS 1.3 client configuration trusting `ca_file`, offering `alpn` (`ntske/1` for NTS-KE).
pub fn client_config(ca_file: &Path, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).expect("CA file") {
        roots
            .add(certificate.expect("CA certificate"))
            .expect("a CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !alpn.is_empty() {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    Arc::new(config)
}

/// One NTS-KE exchange with `server` (its certificate for 127.0.0.1) under `config`. The error
/// says where it failed: TLS, ALPN, or the response.
pub fn key_exchange(
    server: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> Result<KeOutcome, String> {
    let name = ServerName::from(server.ip());
    let connection =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
    let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    tls.write_all(&ke::client_request())
        .map_err(|e| format!("TLS: {e}"))?;
    if tls.conn.alpn_protocol() != Some(ntp_proto::nts::ALPN) {
        return Err("ALPN: the server did not agree on ntske/1".to_owned());
    }
    let mut message = Vec::new();
    let mut chunk = [0u8; 4096];
    let len = loop {
        if let Some(len) = record::message_len(&message).map_err(|e| e.to_string())? {
            break len;
        }
        let read = tls.read(&mut chunk).map_err(|e| format!("TLS: {e}"))?;
        if read == 0 {
            return Err("the server closed before End of Message".to_owned());
        }
        message.extend_from_slice(&chunk[..read]);
    };
    let response = KeResponse::parse(&message[..len]).map_err(|e| e.to_string())?;
    let keys = SessionKeys::export(response.aead, |key, label, context| {
        tls.conn
            .export_keying_material(key, label, Some(context))
            .map(drop)
    })
    .map_err(|e| e.to_string())?;
    Ok(KeOutcome {
        keys,
        cookies: response.cookies,
        port: response.negotiation.port,
    })
}
