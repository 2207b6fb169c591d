//! Every start-up check that needs no privileges, shared by `check-config` and the start itself,
//! so that a configuration `check-config` passes fails at start only for want of privileges (or
//! a port someone else holds): it parses and validates ([`Config::parse`]), its `[daemon] user`
//! exists, every address it listens on is one of this host's, its leap-seconds list is valid, and
//! its keys file is private and has every key a source or peer names.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;

use crate::config::{self, Config, ConfigError, KeysError};
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
    // So is the keys file, with its permissions, and every key a source or peer names.
    config.load_keys().map_err(|e| {
        let needle = match &e {
            KeysError::File(_) => "[keys]",
            KeysError::Unknown { id, .. } => key_line(text, *id).unwrap_or("key"),
        };
        ConfigError::at(text, path, needle, e.to_string())
    })?;
    // The NTS-KE certificate and key are read as start-up reads them.
    if let Some(nts) = &config.nts_ke_server {
        crate::nts::check_files(nts)
            .map_err(|e| ConfigError::at(text, path, "[nts-ke-server]", e.to_string()))?;
    }
    if let Some(address) = config.observability.metrics {
        TcpListener::bind(SocketAddr::new(address.ip(), 0)).map_err(|e| {
            ConfigError::at(text, path, "metrics", unbindable("metrics", address, &e))
        })?;
    }
    Ok(())
}

/// The line that sets `key = id`, trimmed: where an unknown key's error points.
fn key_line(text: &str, id: u32) -> Option<&str> {
    text.lines().map(str::trim).find(|line| {
        line.split_once('=').is_some_and(|(key, value)| {
            let value = value.split('#').next().unwrap_or_default().trim();
            key.trim() == "key" && value.parse() == Ok(id)
        })
    })
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

    /// A keys file with `mode` in a fresh directory.
    fn keys_file(name: &str, mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("ntpd-lite-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(
            &path,
            "1 AES128 HEX:000102030405060708090a0b0c0d0e0f\n2 SHA1 secret\n",
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn with_keys(file: &Path, key: u32) -> String {
        format!(
            "[keys]\nfile = \"{}\"\n[[source]]\naddress = \"127.0.0.1:123\"\n[[peer]]\naddress = \"127.0.0.2:123\"\nkey = 2\n[server]\nlisten = [\"127.0.0.1:0\"]\n[[source]]\naddress = \"127.0.0.3:123\"\nkey = {key}\n",
            file.display()
        )
    }

    #[test]
    fn keys_files_must_be_private_and_hold_every_key_named() {
        let private = keys_file("private.keys", 0o600);
        check(&with_keys(&private, 1)).expect("a private file with keys 1 and 2");
        let config = Config::parse(&with_keys(&private, 1), Path::new("t.toml")).expect("parses");
        assert_eq!(config.load_keys().expect("keys").len(), 2);
        for mode in [0o640, 0o604, 0o602, 0o620] {
            let open = keys_file(&format!("open-{mode:o}.keys"), mode);
            let (line, _, message) = error(&with_keys(&open, 1));
            assert_eq!(line, 1, "{message}");
            assert!(
                message.contains(&format!("mode {mode:03o}"))
                    && message.contains(&format!("run `chmod 600 {}`", open.display())),
                "{message}"
            );
        }
        let (line, _, message) = error(&with_keys(&private, 3));
        assert_eq!(line, 12, "the `key = 3` line: {message}");
        assert!(
            message.contains("key = 3 for 127.0.0.3:123: the keys file")
                && message.contains("has no key 3"),
            "{message}"
        );
        let (_, _, message) = error(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[[source]]\naddress = \"127.0.0.1:1\"\nkey = 1\n",
        );
        assert!(
            message.contains("no [keys] file is configured"),
            "{message}"
        );
        let missing = private.with_file_name("missing.keys");
        let (_, _, message) = error(&with_keys(&missing, 1));
        assert!(
            message.contains("[keys] file") && message.contains("No such file"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(private.parent().expect("a directory"));
    }
}
