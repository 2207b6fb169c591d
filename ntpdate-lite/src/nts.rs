//! `--nts`: one NTS-KE exchange per server argument (RFC 8915 section 4) over TLS 1.3 (rustls,
//! ALPN `ntske/1`), blocking, before the queries: it names the NTP address and port and gives the
//! keys and cookies each query then uses. What to send and how to read the answer is
//! `ntp_proto::nts`'s; this only moves the bytes.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ntp_proto::nts::ke::{self, KeResponse};
use ntp_proto::nts::{ClientSession, KE_PORT, SessionKeys, record};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::cli::{Host, ServerSpec};
use crate::net::{Resolution, ResolveError};

/// Where the CA certificates are without `--nts-ca` (Debian's bundle).
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// How long one NTS-KE exchange may take: connect, handshake, response.
const KE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the NTS-KE exchange of every server argument (port 4460 unless it names one): each
/// resolves to the NTP address its server named, with the session to query it with.
pub fn exchange_all(
    specs: &[ServerSpec],
    ca_file: Option<&Path>,
) -> (Vec<Resolution>, HashMap<SocketAddr, ClientSession>) {
    let mut sessions = HashMap::new();
    let config = client_config(ca_file);
    let resolutions = specs
        .iter()
        .map(|spec| {
            let port = spec.port.unwrap_or(KE_PORT);
            let result = config
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|config| exchange(spec, port, config));
            let addresses = result.map(|(ntp, session)| {
                sessions.insert(ntp, session);
                vec![ntp]
            });
            Resolution {
                name: spec.name.clone(),
                port,
                addresses: addresses.map_err(ResolveError::NtsKe),
            }
        })
        .collect();
    (resolutions, sessions)
}

/// TLS 1.3 only, ALPN ntske/1, trusting the CAs of `ca_file` or the system's.
fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let path = ca_file.unwrap_or(Path::new(SYSTEM_CA_FILE));
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: cannot read the CA certificates: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ntp_proto::nts::ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// One exchange with the NTS-KE server of `spec` on `port`.
fn exchange(
    spec: &ServerSpec,
    port: u16,
    config: &Arc<rustls::ClientConfig>,
) -> Result<(SocketAddr, ClientSession), String> {
    let (name, address) = match &spec.host {
        Host::Address(ip) => (ServerName::from(*ip), SocketAddr::new(*ip, port)),
        Host::Name(host) => {
            let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let address = (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{host} has no address"))?;
            (name, address)
        }
    };
    let stream = TcpStream::connect_timeout(&address, KE_TIMEOUT)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(KE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(KE_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let connection =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    tls.write_all(&ke::client_request())
        .map_err(|e| format!("TLS with {address}: {e}"))?;
    if tls.conn.alpn_protocol() != Some(ntp_proto::nts::ALPN) {
        return Err(format!(
            "{address} did not agree on ALPN ntske/1: not an NTS-KE server?"
        ));
    }
    let mut message = Vec::new();
    let mut chunk = [0u8; 4096];
    let len = loop {
        if let Some(len) = record::message_len(&message).map_err(|e| e.to_string())? {
            break len;
        }
        let read = tls
            .read(&mut chunk)
            .map_err(|e| format!("TLS with {address}: {e}"))?;
        if read == 0 {
            return Err(format!("{address} closed before its End of Message"));
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
    let ntp_port = response.negotiation.port.unwrap_or(123);
    let ntp = match &response.negotiation.server {
        None => SocketAddr::new(address.ip(), ntp_port),
        Some(server) => (server.as_str(), ntp_port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut found| found.next())
            .ok_or_else(|| format!("cannot resolve the NTP server {server} named by {address}"))?,
    };
    Ok((
        ntp,
        ClientSession::new(keys, response.cookies, rand::random()),
    ))
}
