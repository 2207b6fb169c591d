//! Every start-up check that needs no privileges, shared by `check-config` and the start itself,
//! so that a configuration `check-config` passes fails at start only for want of privileges (or
//! a port someone else holds): it parses and validates ([`Config::parse`]), its `[daemon] user`
//! exists, every address it listens on is one of this host's, and its leap-seconds list is valid.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;

use crate::config::{self, Config, ConfigError};
use crate::privileges;

/// Reads `path` and runs every check; returns the configuration and its text.
pub fn load(path: &Path) -> Result<(Config, String), ConfigError> {
    let text = config::read(path)?;
    let config = Config::parse(&text, path)?;
    check_host(&config, &text, path)?;
    Ok((config, text))
}

/// The checks of `config` (parsed from `text`, read from `path`) against this host: the user
/// exists, and each listen and metrics address can be bound (on port 0, which needs no
/// privilege; the socket is closed at once).
pub fn check_host(config: &Config, text: &str, path: &Path) -> Result<(), ConfigError> {
    if let Some(name) = &config.daemon.user {
        privileges::lookup(name).map_err(|e| ConfigError::at(text, path, "user", e.to_string()))?;
    }
    for &address in config.server.iter().flat_map(|s| &s.listen) {
        let at = |e: io::Error| {
            let needle = format!("\"{address}\"");
            let key = if text.contains(&needle) {
                needle.as_str()
            } else {
                "listen"
            };
            ConfigError::at(text, path, key, unbindable("listen", address, &e))
        };
        UdpSocket::bind(SocketAddr::new(address.ip(), 0)).map_err(at)?;
    }
    // The leap-seconds list is read and its hash checked as start-up does.
    config
        .leap
        .load()
        .map_err(|e| ConfigError::at(text, path, "[leap]", e.to_string()))?;
    if let Some(address) = config.observability.metrics {
        TcpListener::bind(SocketAddr::new(address.ip(), 0)).map_err(|e| {
            ConfigError::at(text, path, "metrics", unbindable("metrics", address, &e))
        })?;
    }
    Ok(())
}

/// What to tell the user when `address` (of the setting `key`) cannot be bound.
fn unbindable(key: &str, address: SocketAddr, error: &io::Error) -> String {
    let ip: IpAddr = address.ip();
    if error.kind() == io::ErrorKind::AddrNotAvailable {
        format!(
            "{key} address {address}: {ip} is not an address of this host; use one of its \
             addresses (`ip address` lists them), or 0.0.0.0 or [::] for all"
        )
    } else {
        format!("{key} address {address}: cannot bind to {ip} ({error}); use another address")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address of no interface here (TEST-NET-3).
    const ELSEWHERE: &str = "203.0.113.254";

    fn check(text: &str) -> Result<(), ConfigError> {
        let path = Path::new("test.toml");
        let config = Config::parse(text, path).expect("parses");
        check_host(&config, text, path)
    }

    fn error(text: &str) -> (usize, usize, String) {
        match check(text) {
            Err(ConfigError::Invalid {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn premise_elsewhere_is_not_here() {
        let ip: IpAddr = ELSEWHERE.parse().expect("address");
        assert!(
            UdpSocket::bind((ip, 0)).is_err(),
            "test premise: {ELSEWHERE} is not an address of this host"
        );
    }

    #[test]
    fn an_unknown_user_is_an_error_at_its_line() {
        let (line, column, message) = error(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[daemon]\n  user = \"no-such-user-ntpd-lite\"\n",
        );
        assert_eq!((line, column), (4, 3));
        assert!(
            message.contains("\"no-such-user-ntpd-lite\" does not exist; create it"),
            "{message}"
        );
        check("[server]\nlisten = [\"127.0.0.1:0\"]\n[daemon]\nuser = \"root\"\n")
            .expect("root exists");
    }

    #[test]
    fn a_listen_address_not_on_this_host_is_an_error_at_its_line() {
        premise_elsewhere_is_not_here();
        let text = format!(
            "[server]\nlisten = [\n  \"127.0.0.1:0\",\n  \"{ELSEWHERE}:123\",\n]\n[local]\nstratum = 1\n"
        );
        let (line, column, message) = error(&text);
        assert_eq!((line, column), (4, 3));
        assert!(
            message.contains(&format!(
                "listen address {ELSEWHERE}:123: {ELSEWHERE} is not an address of this host"
            )),
            "{message}"
        );
    }

    #[test]
    fn a_metrics_address_not_on_this_host_is_an_error() {
        premise_elsewhere_is_not_here();
        let (line, _, message) = error(&format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[observability]\nmetrics = \"{ELSEWHERE}:9975\"\n"
        ));
        assert_eq!(line, 4);
        assert!(
            message.contains("is not an address of this host"),
            "{message}"
        );
    }

    #[test]
    fn local_addresses_pass_and_their_ports_are_not_bound() {
        // The check binds port 0: a port in use (by the daemon already running, say) or one
        // below 1024 is the start's business, not the check's.
        let held = UdpSocket::bind("127.0.0.1:0").expect("a port");
        let port = held.local_addr().expect("address").port();
        check(&format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\", \"127.0.0.61:0\", \"[::1]:123\", \"0.0.0.0:124\"]\n\
             [observability]\nmetrics = \"127.0.0.1:80\"\n",
        ))
        .expect("local addresses");
    }
}
