//! `[nts-ke-server]` (RFC 8915): typed, checked while parsing like the rest of [`crate::config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// Default rotation period of the cookie keys: a week, as chrony's `ntsrotate`.
pub const DEFAULT_ROTATION: u64 = 7 * 24 * 3600;

/// `[nts-ke-server]`: NTS key establishment over TLS 1.3 (ALPN `ntske/1`), for the NTP server
/// of `[server]`, which then answers NTS requests too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NtsKeServerConfig {
    /// TCP addresses to accept NTS-KE on; default `[::]:4460` (IPv4 too).
    #[serde(default = "default_listen", deserialize_with = "listen")]
    pub listen: Vec<SocketAddr>,
    /// The certificate chain, PEM, server's certificate first.
    pub certificate: PathBuf,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// Where the cookie keys are kept (made if missing, mode 0600); servers that share it
    /// accept each other's cookies. Without it, keys live in memory and a restart sends every
    /// client back to NTS-KE.
    pub key_file: Option<PathBuf>,
    /// Seconds between cookie key rotations; the last three keys stay valid.
    #[serde(default = "default_rotation", deserialize_with = "rotation")]
    pub rotation: u64,
    /// The NTP server to tell clients (NTPv4 Server Negotiation): an address or a name; by
    /// default clients use the address they reached NTS-KE on.
    pub ntp_server: Option<String>,
    /// The NTP port to tell clients (NTPv4 Port Negotiation); by default the port of the first
    /// `[server] listen` address, if it is not 123.
    pub ntp_port: Option<u16>,
}

fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([0u16; 8], ntp_proto::nts::KE_PORT))]
}

const fn default_rotation() -> u64 {
    DEFAULT_ROTATION
}

fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    if texts.is_empty() {
        return Err(de::Error::custom(
            "listen is empty; write e.g. [\"[::]:4460\"] or remove it for that default",
        ));
    }
    texts
        .iter()
        .map(|t| {
            t.parse().map_err(|_| {
                de::Error::custom(format!(
                    "`{t}` is not an IP address with a port; write \"0.0.0.0:4460\" or \"[::]:4460\""
                ))
            })
        })
        .collect()
}

fn rotation<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let seconds = u64::deserialize(d)?;
    if seconds == 0 {
        return Err(de::Error::custom(
            "rotation must be a number of seconds above 0, e.g. 604800 (a week, the default)",
        ));
    }
    Ok(seconds)
}
