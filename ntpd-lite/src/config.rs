//! The TOML configuration: parsed into typed values, validated while parsing so that every error
//! carries the file, line and column where it was made and a hint what to write instead.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ntp_proto::auth::{KeyId, Keys};
use ntp_proto::discipline::{DEFAULT_MAX_FREQUENCY_PPM, DEFAULT_MAX_SLEW_PPM};
use ntp_proto::server::{Cidr, DenyAction, RateLimitConfig};
use ntp_proto::{LeapConfig, LeapFile, LeapMode, NtpDuration, PollInterval, ReferenceId, Stratum};
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// The rate at which the kernel slews away an offset given to adjtime (ADJ_OFFSET_SINGLESHOT),
/// ppm: fixed, so the discipline must assume it for the system clock.
pub const KERNEL_SLEW_PPM: f64 = 500.0;
/// The largest frequency correction the kernel accepts (ADJ_FREQUENCY, its MAXFREQ), ppm.
pub const KERNEL_MAX_FREQUENCY_PPM: f64 = ntp_os::kernel_clock::MAX_FREQUENCY_PPM;
/// Largest `max-slew-ppm`: with the largest drift and frequency correction, time still never
/// runs backwards.
const MAX_SLEW_LIMIT_PPM: f64 = 100_000.0;
/// The longest path a Unix socket can be bound to: `sun_path` holds 108 bytes with the NUL.
const MAX_SOCKET_PATH: usize = 107;
/// The NTP port, for a source written without one.
const NTP_PORT: u16 = 123;

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration file: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid, with where and why.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong and what to do.
        message: String,
    },
}

impl ConfigError {
    /// An error in `text` (read from `path`) at the first line that sets `key`, else where
    /// `key` first appears, else at the top: for rules checked after parsing, whose values carry
    /// no position of their own.
    pub fn at(text: &str, path: &Path, key: &str, message: impl Into<String>) -> Self {
        let offset = key_offset(text, key)
            .or_else(|| text.find(key))
            .unwrap_or(0);
        let (line, column) = line_column(text, offset);
        Self::Invalid {
            path: path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// The whole daemon configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Serving time to clients; no server without this table.
    pub server: Option<ServerConfig>,
    /// A local reference clock (like chrony's `local stratum N`).
    pub local: Option<LocalConfig>,
    /// Which clock to read and discipline.
    #[serde(default)]
    pub clock: ClockConfig,
    /// Upstream servers to synchronize to.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Symmetric peers (RFC 5905 modes 1 and 2), reached from the `[server] listen` socket.
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
    /// Addresses the server announces its time to (RFC 5905 mode 5).
    #[serde(default, rename = "broadcast")]
    pub broadcasts: Vec<BroadcastConfig>,
    /// Discipline thresholds.
    #[serde(default)]
    pub sync: SyncConfig,
    /// The local control socket.
    pub control: Option<ControlConfig>,
    /// Process settings: the user to run as.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Log level and the metrics endpoint.
    #[serde(default)]
    pub observability: ObservabilityConfig,
    /// Leap seconds: where they are known from and what the clock does.
    #[serde(default)]
    pub leap: LeapSection,
    /// Symmetric keys (RFC 8573): the keys file that `key = ID` of a source or peer refers to.
    #[serde(default)]
    pub keys: KeysSection,
    /// NTS key establishment (RFC 8915) for the `[server]`.
    pub nts_ke_server: Option<crate::nts_config::NtsKeServerConfig>,
}

/// `[keys]`: the symmetric keys file, in the ntpd/chrony format (`ID TYPE KEY` a line).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeysSection {
    /// The keys file; readable by its owner only. Its keys also authenticate the server's
    /// answers to signed requests.
    pub file: Option<PathBuf>,
}

/// A keys file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("[keys] file {}: {reason}", path.display())]
pub struct KeysFileError {
    /// The file.
    pub path: PathBuf,
    /// Why, and what to do.
    pub reason: String,
}

/// Keys that cannot be used: the file, or a `key = ID` it does not have.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The keys file is missing, open to others, or not valid.
    #[error(transparent)]
    File(KeysFileError),
    /// A source or peer names a key the file does not have.
    #[error("{message}")]
    Unknown {
        /// The key ID.
        id: u32,
        /// What is wrong and what to do.
        message: String,
    },
}

impl KeysSection {
    /// Reads and parses the keys file, refusing one that others could read or change; no keys
    /// without a file.
    pub fn load(&self) -> Result<Keys, KeysFileError> {
        let Some(path) = &self.file else {
            return Ok(Keys::default());
        };
        let fail = |reason: String| KeysFileError {
            path: path.to_owned(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let mode = file.metadata().map_err(|e| fail(e.to_string()))?.mode();
        // The file holds secrets: group and others may neither read nor write it.
        if mode & 0o066 != 0 {
            return Err(fail(format!(
                "mode {:03o} lets group or others read or write the keys; run `chmod 600 {}`",
                mode & 0o777,
                path.display()
            )));
        }
        let text = std::io::read_to_string(file).map_err(|e| fail(e.to_string()))?;
        Keys::parse(&text).map_err(|e| fail(e.to_string()))
    }
}

/// Where Debian's tzdata puts the IETF/IERS leap-seconds list.
pub const DEFAULT_LEAP_FILE: &str = "/usr/share/zoneinfo/leap-seconds.list";

/// `[leap]`: leap seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LeapSection {
    /// The leap-seconds list (IETF/IERS format); `""` for none (the sources' vote alone). If
    /// absent, tzdata's list is used when it is installed.
    pub file: Option<PathBuf>,
    /// What the clock does at a leap: `step`, `slew`, `smear` or `ignore`.
    #[serde(default, deserialize_with = "leap_mode")]
    pub mode: LeapMode,
    /// How long before a leap it is announced to clients, seconds.
    #[serde(default = "default_day", deserialize_with = "positive_seconds")]
    pub announce: f64,
    /// The smear window centred on the leap, seconds.
    #[serde(default = "default_day", deserialize_with = "positive_seconds")]
    pub smear_window: f64,
}

impl Default for LeapSection {
    fn default() -> Self {
        Self {
            file: None,
            mode: LeapMode::default(),
            announce: default_day(),
            smear_window: default_day(),
        }
    }
}

const fn default_day() -> f64 {
    86_400.0
}

fn leap_mode<'de, D: Deserializer<'de>>(d: D) -> Result<LeapMode, D::Error> {
    let name = String::deserialize(d)?;
    [
        LeapMode::Step,
        LeapMode::Slew,
        LeapMode::Smear,
        LeapMode::Ignore,
    ]
    .into_iter()
    .find(|m| m.name() == name)
    .ok_or_else(|| {
        de::Error::custom(format!(
            "unknown leap mode `{name}`; use \"step\", \"slew\", \"smear\" or \"ignore\""
        ))
    })
}

/// A leap-seconds file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("[leap] file {}: {reason}", path.display())]
pub struct LeapFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

impl LeapSection {
    /// The core's leap configuration.
    pub fn core(&self) -> LeapConfig {
        LeapConfig {
            mode: self.mode,
            announce: NtpDuration::from_seconds_f64(self.announce),
            smear: NtpDuration::from_seconds_f64(self.smear_window),
            ..LeapConfig::default()
        }
    }

    /// Reads and checks the leap-seconds file: the configured one must be valid; tzdata's, used
    /// when none is configured, may be missing (then `None`).
    pub fn load(&self) -> Result<Option<LeapFile>, LeapFileError> {
        let (path, required) = match &self.file {
            Some(path) if path.as_os_str().is_empty() => return Ok(None),
            Some(path) => (path.as_path(), true),
            None => (Path::new(DEFAULT_LEAP_FILE), false),
        };
        let fail = |reason: String| LeapFileError {
            path: path.to_owned(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(e.to_string())),
        };
        LeapFile::parse(&text)
            .map(Some)
            .map_err(|e| fail(e.to_string()))
    }
}

/// `[server]`: where and whom to serve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Addresses to listen on, e.g. `"127.0.0.1:11123"`, `"[::]:123"`.
    #[serde(deserialize_with = "listen_addresses")]
    pub listen: Vec<SocketAddr>,
    /// Optional rate limit per client prefix.
    #[serde(default, deserialize_with = "rate_limit")]
    pub rate_limit: Option<RateLimitConfig>,
    /// If not empty, only these prefixes are served.
    #[serde(default, deserialize_with = "prefixes")]
    pub allow: Vec<Cidr>,
    /// These prefixes are refused.
    #[serde(default, deserialize_with = "prefixes")]
    pub deny: Vec<Cidr>,
    /// What a refused client gets: `"kiss"` (a kiss-o'-death DENY) or `"ignore"`.
    #[serde(default, deserialize_with = "deny_action")]
    pub deny_action: DenyAction,
    /// Threads that answer requests per listen address, each with its own socket; default: one
    /// per CPU, 1 to 4.
    #[serde(default, deserialize_with = "workers")]
    pub workers: Option<usize>,
    /// Answer symmetric active (mode 1) packets from unconfigured addresses with mode 2, keeping
    /// no association; off by default.
    #[serde(default)]
    pub passive_peers: bool,
}

/// `[local]`: serve from the local clock at a fixed stratum.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LocalConfig {
    /// Stratum to serve, 1-15.
    #[serde(deserialize_with = "local_stratum")]
    pub stratum: Stratum,
    /// Reference ID, 1-4 ASCII characters; default `LOCL`.
    #[serde(default = "default_refid", deserialize_with = "refid")]
    pub refid: ReferenceId,
}

/// `[clock]`: which clock.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClockConfig {
    /// `system`, `virtual` or `monitor`.
    #[serde(default)]
    pub mode: ClockMode,
    /// Virtual clock only: start this many seconds off the system clock.
    #[serde(default)]
    pub initial_offset: f64,
    /// Virtual clock only: its natural frequency error in parts per million.
    #[serde(default)]
    pub drift_ppm: f64,
}

/// The kinds of clock the daemon can read and discipline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockMode {
    /// The kernel clock (needs CAP_SYS_TIME).
    System,
    /// A software clock derived from the system clock, disciplined like a real one.
    Virtual,
    /// The system clock, read only: measure, never adjust (like `chronyd -x`).
    #[default]
    Monitor,
}

impl ClockMode {
    /// The config spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Virtual => "virtual",
            Self::Monitor => "monitor",
        }
    }
}

/// One `[[source]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// `host:port`, `[v6]:port` or a bare host (port 123); checked by [`SourceAddress::parse`].
    #[serde(deserialize_with = "source_address")]
    pub address: String,
    /// `server` (one address of the name) or `pool` (up to `max-sources` of them).
    #[serde(default)]
    pub kind: SourceKind,
    /// Shortest poll interval, log2 seconds (-4 to 17); default 6.
    #[serde(default = "default_minpoll", deserialize_with = "poll")]
    pub minpoll: PollInterval,
    /// Longest poll interval, log2 seconds (-4 to 17); default 10.
    #[serde(default = "default_maxpoll", deserialize_with = "poll")]
    pub maxpoll: PollInterval,
    /// Send a burst of requests at start.
    #[serde(default)]
    pub iburst: bool,
    /// Pool only: how many addresses to use.
    #[serde(default = "default_pool_size", deserialize_with = "pool_size")]
    pub max_sources: usize,
    /// Broadcast only: the broadcast address or multicast group (and port) its broadcasts
    /// arrive at, e.g. `"192.0.2.255:123"`, `"224.0.1.1:123"`, `"[ff02::101]:123"`.
    #[serde(default, deserialize_with = "broadcast_listen")]
    pub listen: Option<SocketAddr>,
    /// Broadcast only: the interface to join a multicast group on (needed for IPv6).
    #[serde(default)]
    pub interface: Option<String>,
    /// Broadcast only: assume this one-way delay, seconds, instead of calibrating it (ntpd's
    /// `broadcastdelay`).
    #[serde(default, deserialize_with = "broadcast_delay")]
    pub delay: Option<f64>,
    /// The ID of a key in the `[keys] file` that signs our requests and must sign every reply.
    pub key: Option<u32>,
    /// Selected before the other survivors (chrony's `prefer`).
    #[serde(default)]
    pub prefer: bool,
    /// Measured and shown, never selected (chrony's `noselect`).
    #[serde(default)]
    pub noselect: bool,
    /// Assumed a truechimer: sources that disagree with it are falsetickers (chrony's `trust`).
    #[serde(default)]
    pub trust: bool,
    /// Replies with a longer round-trip delay, seconds, are not used (chrony's `maxdelay`).
    #[serde(default, deserialize_with = "max_delay")]
    pub maxdelay: Option<f64>,
    /// Samples needed before it may be selected, 1-64.
    #[serde(default = "default_min_samples", deserialize_with = "min_samples")]
    pub min_samples: u8,
    /// NTS (RFC 8915): `address` is the NTS-KE server (`host:port`, port 4460 by default); the
    /// NTP server and port come from it.
    #[serde(default)]
    pub nts: bool,
    /// NTS only: a PEM file of the CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Ask the server for interleaved mode (RFC 9769, chrony's `xleave`): its replies then carry
    /// the kernel transmit time of the previous reply; a server without it answers as before.
    #[serde(default)]
    pub xleave: bool,
}

/// One `[[broadcast]]`: the server announces its time to `address` every 2^interval s (RFC 5905
/// mode 5), while synchronized.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BroadcastConfig {
    /// An IPv4 broadcast address or a multicast group (224.0.1.1, ff02::101), with an optional
    /// port (123).
    #[serde(deserialize_with = "broadcast_address")]
    pub address: SocketAddr,
    /// log2 seconds between announcements (-4 to 17); default 6 (64 s, as ntpd).
    #[serde(default = "default_minpoll", deserialize_with = "poll")]
    pub interval: PollInterval,
    /// Multicast only: hops the announcements may travel; default 1 (the LAN).
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Multicast only: the interface to send on (needed for IPv6 link-local groups).
    #[serde(default)]
    pub interface: Option<String>,
}

/// One `[[peer]]`: a symmetric active association (RFC 5905 mode 1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PeerConfig {
    /// `ip:port`, `[v6]:port` or a bare address (port 123): the peer's packets are recognized
    /// by it, so it must be an address, not a name.
    #[serde(deserialize_with = "peer_address")]
    pub address: SocketAddr,
    /// Shortest poll interval, log2 seconds (-4 to 17); default 6.
    #[serde(default = "default_minpoll", deserialize_with = "poll")]
    pub minpoll: PollInterval,
    /// Longest poll interval, log2 seconds (-4 to 17); default 10.
    #[serde(default = "default_maxpoll", deserialize_with = "poll")]
    pub maxpoll: PollInterval,
    /// The ID of a key in the `[keys] file` that must sign every packet both ways.
    pub key: Option<u32>,
}

impl SourceConfig {
    /// The core's configuration of this entry's sources; `keys` are the `[keys] file`'s.
    pub fn core(&self, keys: &Keys) -> ntp_proto::SourceConfig {
        ntp_proto::SourceConfig {
            min_poll: self.minpoll,
            max_poll: self.maxpoll,
            iburst: self.iburst,
            key: self.key.and_then(|id| keys.get(KeyId(id)).copied()),
            selection: ntp_proto::SelectOptions {
                prefer: self.prefer,
                noselect: self.noselect,
                trust: self.trust,
                min_samples: self.min_samples,
            },
            max_delay: self.maxdelay.map(NtpDuration::from_seconds_f64),
            xleave: self.xleave,
            ..ntp_proto::SourceConfig::default()
        }
    }

    /// The name the core resolves for a `server` or `pool` entry; `None` for a broadcast
    /// source, which has an address instead.
    pub fn name_spec(&self, keys: &Keys) -> Option<ntp_proto::NameSpec> {
        if self.nts {
            // An NTS source's address is its NTS-KE server; the NTS-KE exchange names the NTP
            // server (and a reload does not touch it).
            return None;
        }
        let kind = match self.kind {
            SourceKind::Server => ntp_proto::NameKind::Server,
            SourceKind::Pool => ntp_proto::NameKind::Pool {
                max_sources: self.max_sources,
            },
            SourceKind::Broadcast => return None,
        };
        Some(ntp_proto::NameSpec {
            name: self.address.clone(),
            kind,
            config: self.core(keys),
        })
    }

    /// How many sources this entry can become: one for a server, up to `max-sources` for a pool.
    pub const fn most_sources(&self) -> usize {
        match self.kind {
            SourceKind::Server | SourceKind::Broadcast => 1,
            SourceKind::Pool => self.max_sources,
        }
    }
}

/// Where a `[[source]]` points, as [`SourceAddress::parse`] reads its `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAddress {
    /// An IP address and port: nothing to look up.
    Ip(SocketAddr),
    /// A host name (or a scoped IPv6 address such as `fe80::1%eth0`, which only the resolver
    /// reads) and the port to ask its addresses on.
    Name {
        /// What to look up.
        host: String,
        /// The server's port.
        port: u16,
    },
}

impl SourceAddress {
    /// Reads `host:port`, `[v6]:port`, an IP address or a bare host (port 123). The error says
    /// what to write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "source address `{text}` is not a host name or an IP address with an optional port; \
                 write e.g. \"pool.ntp.org\", \"ntp.example.com:11123\", \"192.0.2.1\" or \"[2001:db8::1]:123\""
            )
        };
        if text.is_empty() {
            return Err("source address is empty; write a host name or an IP address, e.g. \"pool.ntp.org\" or \"192.0.2.1\"".to_owned());
        }
        if let Ok(address) = text.parse::<SocketAddr>() {
            return port(text, address.port()).map(|_| Self::Ip(address));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::Ip(SocketAddr::new(ip, NTP_PORT)));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(invalid)?;
            match after {
                "" => (inside, NTP_PORT),
                after => (
                    inside,
                    port_text(text, after.strip_prefix(':').ok_or_else(invalid)?)?,
                ),
            }
        } else if text.matches(':').count() > 1 {
            (text, NTP_PORT)
        } else {
            match text.split_once(':') {
                Some((host, after)) => (host, port_text(text, after)?),
                None => (text, NTP_PORT),
            }
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Self::Ip(SocketAddr::new(ip, port)));
        }
        if is_scoped_ipv6(host) || is_host_name(host) {
            Ok(Self::Name {
                host: host.to_owned(),
                port,
            })
        } else {
            Err(invalid())
        }
    }
}

fn port_text(address: &str, text: &str) -> Result<u16, String> {
    let number = text.parse::<u16>().map_err(|_| {
        format!("source address `{address}`: `{text}` is not a port; write a number from 1 to 65535 after the colon")
    })?;
    port(address, number)
}

fn port(address: &str, port: u16) -> Result<u16, String> {
    if port == 0 {
        Err(format!(
            "source address `{address}` has port 0, where no server answers; write the server's port (123 unless it says otherwise) or leave the port out"
        ))
    } else {
        Ok(port)
    }
}

/// `fe80::1%eth0`: an IPv6 address with a zone, for the resolver to read.
fn is_scoped_ipv6(text: &str) -> bool {
    text.split_once('%').is_some_and(|(address, zone)| {
        address.parse::<std::net::Ipv6Addr>().is_ok()
            && !zone.is_empty()
            && zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    })
}

/// A DNS name (RFC 1123): dot-separated labels of letters, digits, `-` and `_`, none empty
/// (but for a final dot), at most 253 characters.
fn is_host_name(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// How a source's name is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// One server: one address of the name is a source (a dual-stack host must not vote twice).
    #[default]
    Server,
    /// A pool name: up to `max-sources` of its addresses.
    Pool,
    /// A broadcast server at an IP address: its broadcasts arrive at `listen`, calibrated by
    /// client/server exchanges with it.
    Broadcast,
}

/// `[sync]`: discipline thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyncConfig {
    /// Offsets above this many seconds are stepped, below slewed.
    #[serde(default = "default_step", deserialize_with = "positive_seconds")]
    pub step_threshold: f64,
    /// Offsets above this many seconds are refused after the first sync.
    #[serde(default = "default_panic", deserialize_with = "positive_seconds")]
    pub panic_threshold: f64,
    /// How many sources must agree before the clock is adjusted.
    #[serde(default = "default_min_sources")]
    pub min_sources: usize,
    /// The rate at which an offset is slewed away, ppm, if set; see [`Config::max_slew_ppm`].
    #[serde(default, deserialize_with = "positive_ppm")]
    pub max_slew_ppm: Option<f64>,
    /// Largest frequency correction, ppm, if set; see [`Config::max_frequency_ppm`].
    #[serde(default, deserialize_with = "positive_ppm")]
    pub max_frequency_ppm: Option<f64>,
    /// Seconds without a clock update after which we serve as unsynchronized again.
    #[serde(default = "default_holdover", deserialize_with = "positive_seconds")]
    pub holdover: f64,
    /// Where the frequency estimate is kept across restarts.
    pub drift_file: Option<PathBuf>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            step_threshold: default_step(),
            panic_threshold: default_panic(),
            min_sources: default_min_sources(),
            max_slew_ppm: None,
            max_frequency_ppm: None,
            holdover: default_holdover(),
            drift_file: None,
        }
    }
}

/// `[control]`: the local control socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ControlConfig {
    /// Path of the Unix socket.
    #[serde(deserialize_with = "socket_path")]
    pub socket: PathBuf,
}

/// `[daemon]`: the process itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonConfig {
    /// After binding its sockets, switch to this user (and its group), keeping only
    /// CAP_SYS_TIME and only for the system clock. Needs a start as root.
    #[serde(default, deserialize_with = "user_name")]
    pub user: Option<String>,
}

/// `[observability]`: logging and metrics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ObservabilityConfig {
    /// Log filter (RUST_LOG syntax) when neither `RUST_LOG` nor `--log-level` is given; reread on
    /// SIGHUP.
    #[serde(default, deserialize_with = "log_filter")]
    pub log_level: Option<String>,
    /// Where to serve Prometheus metrics over HTTP (`GET /metrics`); off if absent.
    #[serde(default, deserialize_with = "metrics_address")]
    pub metrics: Option<SocketAddr>,
}

impl Config {
    /// Reads and validates `path` (without the checks against this host, see `preflight`).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&read(path)?, path)
    }

    /// Parses and validates `text`, naming `path` in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let (line, column) = line_column(text, offset);
            // toml has no words for some errors, a control character in a comment among them.
            let message = match e.message().trim() {
                "" => "not valid TOML at this character; remove it (control characters may only \
                       appear in strings, and there only escaped, e.g. \\u0001)"
                    .to_owned(),
                message => message.to_owned(),
            };
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        })?;
        config.check_whole(text, path)?;
        Ok(config)
    }

    /// Rules that span several tables.
    fn check_whole(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let whole = |needle: &str, message: &str| Err(ConfigError::at(text, path, needle, message));
        if self.clock.mode != ClockMode::Virtual
            && (self.clock.initial_offset != 0.0 || self.clock.drift_ppm != 0.0)
        {
            return whole(
                "[clock]",
                "initial-offset and drift-ppm only apply to mode = \"virtual\"; remove them or set mode = \"virtual\"",
            );
        }
        if self.clock.drift_ppm.abs() >= 100_000.0 || !self.clock.initial_offset.is_finite() {
            return whole(
                "[clock]",
                "drift-ppm must be within +-100000 and initial-offset a finite number of seconds",
            );
        }
        self.check_peers(whole)?;
        if self.nts_ke_server.is_some() && self.server.is_none() {
            return whole(
                "[nts-ke-server]",
                "[nts-ke-server] hands out keys for the NTP server of [server]; add a [server] table",
            );
        }
        if let Some(source) = self.sources.iter().find(|s| s.nts && s.key.is_some()) {
            return whole(
                "nts",
                &format!(
                    "source {}: NTS and a symmetric key exclude each other; remove `key` or `nts`",
                    source.address
                ),
            );
        }
        self.check_broadcasts(whole)?;
        if self.server.is_none() && self.sources.is_empty() {
            return whole(
                "",
                "nothing to do: add a [server] table to serve time, [[source]] entries to synchronize, or both",
            );
        }
        if self
            .sync
            .max_slew_ppm
            .is_some_and(|p| p > MAX_SLEW_LIMIT_PPM)
        {
            return whole("max-slew-ppm", "max-slew-ppm must be at most 100000 (10%)");
        }
        if self
            .sync
            .max_frequency_ppm
            .is_some_and(|p| p > DEFAULT_MAX_FREQUENCY_PPM)
        {
            return whole(
                "max-frequency-ppm",
                "max-frequency-ppm must be at most 500000 (50%)",
            );
        }
        if self.clock.mode == ClockMode::System {
            self.check_kernel_limits(whole)?;
        }
        if self.sync.min_sources == 0 {
            return whole("min-sources", "min-sources must be at least 1");
        }
        let most = self.most_sources();
        if !self.sources.is_empty() && self.sync.min_sources > most {
            return whole(
                "min-sources",
                &format!(
                    "min-sources = {} but the sources can give at most {most} (a server counts 1, a pool its max-sources); add sources or lower min-sources",
                    self.sync.min_sources
                ),
            );
        }
        for source in &self.sources {
            if source.minpoll > source.maxpoll {
                return whole(
                    &source.address,
                    "minpoll must not exceed maxpoll for this source",
                );
            }
        }
        Ok(())
    }

    /// A peer's packets arrive where the server listens, so each needs a listen address of its
    /// family; each peer once; minpoll within maxpoll.
    fn check_peers(
        &self,
        whole: impl Fn(&str, &str) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        for (index, peer) in self.peers.iter().enumerate() {
            let listen = self.server.as_ref().map_or(&[][..], |s| &s.listen[..]);
            if !listen.iter().any(|l| l.is_ipv4() == peer.address.is_ipv4()) {
                return whole(
                    "[[peer]]",
                    "a [[peer]] is reached from the server's socket: add a [server] listen address of the peer's address family (IPv4 or IPv6)",
                );
            }
            if peer.minpoll > peer.maxpoll {
                return whole("[[peer]]", "minpoll must not exceed maxpoll for this peer");
            }
            if self.peers[..index]
                .iter()
                .any(|p| p.address == peer.address)
            {
                return whole(
                    "[[peer]]",
                    "this peer is listed twice; keep one [[peer]] for it",
                );
            }
        }
        Ok(())
    }

    /// Broadcast sources name their server by address and where the broadcasts arrive; a
    /// broadcaster needs a server (its clients calibrate against it) and something to be
    /// synchronized to.
    fn check_broadcasts(
        &self,
        whole: impl Fn(&str, &str) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        for source in &self.sources {
            let broadcast = source.kind == SourceKind::Broadcast;
            let options =
                source.listen.is_some() || source.interface.is_some() || source.delay.is_some();
            if !broadcast && options {
                return whole(
                    &source.address,
                    "listen, interface and delay only apply to kind = \"broadcast\"; remove them or set the kind",
                );
            }
            if !broadcast {
                continue;
            }
            if source.key.is_some() {
                return whole(
                    &source.address,
                    "broadcasts are not signed yet: a keyed source must be a server (remove key, or kind = \"broadcast\")",
                );
            }
            let Ok(SourceAddress::Ip(server)) = SourceAddress::parse(&source.address) else {
                return whole(
                    &source.address,
                    "a broadcast source is recognized by its server's IP address: write one, e.g. \"192.0.2.1\" (its broadcasts are only accepted from it)",
                );
            };
            let Some(listen) = source.listen else {
                return whole(
                    &source.address,
                    "a broadcast source needs listen: the broadcast address or multicast group its broadcasts arrive at, e.g. listen = \"192.0.2.255:123\"",
                );
            };
            if listen.is_ipv4() != server.is_ipv4() {
                return whole(
                    &source.address,
                    "listen and address must be of one family (IPv4 or IPv6)",
                );
            }
            if listen.is_ipv6() && source.interface.is_none() {
                return whole(
                    &source.address,
                    "an IPv6 multicast group is joined on one interface: add interface = \"eth0\" (the LAN's)",
                );
            }
        }
        if self.broadcasts.is_empty() {
            return Ok(());
        }
        let Some(server) = &self.server else {
            return whole(
                "[[broadcast]]",
                "a broadcaster's clients calibrate against its server: add a [server] table",
            );
        };
        for broadcast in &self.broadcasts {
            if !server
                .listen
                .iter()
                .any(|l| l.is_ipv4() == broadcast.address.is_ipv4())
            {
                return whole(
                    "[[broadcast]]",
                    "broadcasts leave from the server's address: add a [server] listen address of this address family",
                );
            }
            if broadcast.address.is_ipv6() && broadcast.interface.is_none() {
                return whole(
                    "[[broadcast]]",
                    "an IPv6 multicast group is sent to on one interface: add interface = \"eth0\" (the LAN's)",
                );
            }
        }
        if self.sources.is_empty() && self.peers.is_empty() && self.local.is_none() {
            return whole(
                "[[broadcast]]",
                "broadcasts are only sent while synchronized: add [[source]] entries or a [local] reference",
            );
        }
        Ok(())
    }

    /// The keys of the `[keys] file`, with every `key = ID` of a source or peer among them (as
    /// `check-config` and start-up check it).
    pub fn load_keys(&self) -> Result<Keys, KeysError> {
        let keys = self.keys.load().map_err(KeysError::File)?;
        let sources = self.sources.iter().map(|s| (s.key, s.address.clone()));
        let peers = self.peers.iter().map(|p| (p.key, p.address.to_string()));
        for (id, of) in sources.chain(peers) {
            let Some(id) = id.filter(|&id| keys.get(KeyId(id)).is_none()) else {
                continue;
            };
            let file = self.keys.file.as_ref().map_or_else(
                || "no [keys] file is configured".to_owned(),
                |f| format!("the keys file {} has no key {id}", f.display()),
            );
            return Err(KeysError::Unknown {
                id,
                message: format!("key = {id} for {of}: {file}; add the key there or fix the ID"),
            });
        }
        Ok(keys)
    }

    /// The key of each configured peer that has one.
    pub fn peer_keys(&self) -> Vec<(SocketAddr, KeyId)> {
        self.peers
            .iter()
            .filter_map(|p| Some((p.address, KeyId(p.key?))))
            .collect()
    }

    /// The configured peers' addresses.
    pub fn peer_addresses(&self) -> Vec<SocketAddr> {
        self.peers.iter().map(|p| p.address).collect()
    }

    /// The system clock is the kernel's: the discipline must assume the kernel's slew rate and
    /// frequency limit, or its record of what it did to the clock would be wrong.
    fn check_kernel_limits(
        &self,
        whole: impl Fn(&str, &str) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        if self.sync.max_slew_ppm.is_some_and(|p| p != KERNEL_SLEW_PPM) {
            return whole(
                "max-slew-ppm",
                "the system clock slews at the kernel's fixed 500 ppm; remove max-slew-ppm or use mode = \"virtual\"",
            );
        }
        if self
            .sync
            .max_frequency_ppm
            .is_some_and(|p| p > KERNEL_MAX_FREQUENCY_PPM)
        {
            return whole(
                "max-frequency-ppm",
                "the kernel accepts a frequency correction of at most 500 ppm; set max-frequency-ppm to 500 or less, remove it, or use mode = \"virtual\"",
            );
        }
        Ok(())
    }

    /// The rate at which the clock slews away an offset, ppm: the kernel's fixed 500 for the
    /// system clock, else `[sync] max-slew-ppm` (default chrony's `maxslewrate`, 83333).
    pub fn max_slew_ppm(&self) -> f64 {
        match self.clock.mode {
            ClockMode::System => KERNEL_SLEW_PPM,
            ClockMode::Virtual | ClockMode::Monitor => {
                self.sync.max_slew_ppm.unwrap_or(DEFAULT_MAX_SLEW_PPM)
            }
        }
    }

    /// The largest frequency correction, ppm: `[sync] max-frequency-ppm`, by default chrony's
    /// `maxdrift` (500000), or the kernel's limit (500) for the system clock.
    pub fn max_frequency_ppm(&self) -> f64 {
        let default = match self.clock.mode {
            ClockMode::System => KERNEL_MAX_FREQUENCY_PPM,
            ClockMode::Virtual | ClockMode::Monitor => DEFAULT_MAX_FREQUENCY_PPM,
        };
        self.sync.max_frequency_ppm.unwrap_or(default)
    }

    /// How many sources the `[[source]]` entries can become at most (saturating: a pool's
    /// max-sources is any number).
    pub fn most_sources(&self) -> usize {
        self.sources
            .iter()
            .map(SourceConfig::most_sources)
            .fold(0, usize::saturating_add)
    }

    /// Where the control socket is, if configured.
    pub fn control_socket(&self) -> Option<&Path> {
        self.control.as_ref().map(|c| c.socket.as_path())
    }
}

/// The text of the configuration file `path`.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The `[server]` keys a reload applies.
pub const RELOADED_SERVER_KEYS: [&str; 4] = ["allow", "deny", "deny-action", "rate-limit"];

/// The top-level tables whose settings differ between two configuration texts, as `[name]`,
/// leaving out what a reload applies: `[observability] log-level`, the `[server]` access list
/// and rate limit, and the `server` and `pool` sources.
pub fn changed_sections(running: &str, new: &str) -> Vec<String> {
    let tables = |text: &str| {
        let mut table = text.parse::<toml::Table>().unwrap_or_default();
        if let Some(toml::Value::Table(observability)) = table.get_mut("observability") {
            observability.remove("log-level");
        }
        // A reload applies these: the server's access list and rate limit, and every source
        // but a broadcast one.
        if let Some(toml::Value::Table(server)) = table.get_mut("server") {
            for key in RELOADED_SERVER_KEYS {
                server.remove(key);
            }
        }
        if let Some(toml::Value::Array(sources)) = table.get_mut("source") {
            sources.retain(|s| s.get("kind").and_then(toml::Value::as_str) == Some("broadcast"));
        }
        table.retain(|_, v| !matches!(v, toml::Value::Array(a) if a.is_empty()));
        table.retain(|_, v| !matches!(v, toml::Value::Table(t) if t.is_empty()));
        table
    };
    let (running, new) = (tables(running), tables(new));
    let names: std::collections::BTreeSet<&String> = running.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|name| running.get(*name) != new.get(*name))
        .map(|name| match running.get(name).or_else(|| new.get(name)) {
            Some(toml::Value::Array(_)) => format!("[[{name}]]"),
            _ => format!("[{name}]"),
        })
        .collect()
}

/// Where the first line that sets `key` (`key = ...`, any spacing) starts its key.
fn key_offset(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start().strip_prefix(key);
        if rest.is_some_and(|r| r.trim_start().starts_with('=')) {
            return Some(offset + indent);
        }
        offset += line.len();
    }
    None
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn default_refid() -> ReferenceId {
    ReferenceId::LOCL
}
const fn default_minpoll() -> PollInterval {
    PollInterval::new(6)
}
const fn default_maxpoll() -> PollInterval {
    PollInterval::new(10)
}
const fn default_ttl() -> u32 {
    1
}

const fn default_pool_size() -> usize {
    4
}
const fn default_step() -> f64 {
    0.128
}
const fn default_panic() -> f64 {
    1000.0
}
const fn default_min_sources() -> usize {
    1
}
const fn default_holdover() -> f64 {
    3600.0
}

fn listen_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    if texts.is_empty() {
        return Err(de::Error::custom(
            "listen is empty; add an address such as \"127.0.0.1:11123\" or \"[::]:123\"",
        ));
    }
    let listen = texts
        .iter()
        .map(|t| {
            t.parse().map_err(|_| {
                de::Error::custom(format!("`{t}` is not an IP address with a port; write \"127.0.0.1:123\" or \"[::1]:123\""))
            })
        })
        .collect::<Result<Vec<SocketAddr>, _>>()?;
    for (i, a) in listen.iter().enumerate() {
        for b in &listen[..i] {
            if let Some(why) = listen_conflict(*b, *a, &listen) {
                return Err(de::Error::custom(why));
            }
        }
    }
    Ok(listen)
}

/// True if a socket on `address` (an IPv6 one) takes IPv6 traffic only: any but the IPv6
/// wildcard, and that one too when `listen` has the IPv4 wildcard on the same port.
pub fn v6_only(address: SocketAddr, listen: &[SocketAddr]) -> bool {
    !address.ip().is_unspecified()
        || listen
            .iter()
            .any(|a| a.is_ipv4() && a.ip().is_unspecified() && a.port() == address.port())
}

/// Why `second` cannot be bound after `first` (both in `listen`), if it cannot: the same address,
/// or one a wildcard that takes the other's traffic on the same port. Port 0 never conflicts:
/// each such socket gets a port of its own.
fn listen_conflict(first: SocketAddr, second: SocketAddr, listen: &[SocketAddr]) -> Option<String> {
    if first.port() != second.port() || first.port() == 0 {
        return None;
    }
    if first == second {
        return Some(format!("listen has {first} twice; remove one"));
    }
    let covers = |wildcard: SocketAddr, other: SocketAddr| {
        wildcard.ip().is_unspecified()
            && (wildcard.is_ipv4() == other.is_ipv4()
                || (wildcard.is_ipv6() && !v6_only(wildcard, listen)))
    };
    (covers(first, second) || covers(second, first)).then(|| {
        format!(
            "listen has {first} and {second}: the wildcard already takes the other's traffic on that port, so the second cannot be bound; remove one"
        )
    })
}

fn source_address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    SourceAddress::parse(&text).map_err(de::Error::custom)?;
    Ok(text)
}

const fn default_min_samples() -> u8 {
    1
}

fn min_samples<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    match i64::deserialize(d)? {
        n @ 1..=64 => Ok(n as u8),
        n => Err(de::Error::custom(format!(
            "min-samples = {n}: a source holds 1 to 64 samples; use a number in that range"
        ))),
    }
}

fn max_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let value = f64::deserialize(d)?;
    if value > 0.0 && value <= 1000.0 {
        Ok(Some(value))
    } else {
        Err(de::Error::custom(format!(
            "maxdelay = {value} must be a round-trip delay in seconds above 0 and at most 1000 (chrony's default is 3); leave it out for no limit"
        )))
    }
}

fn pool_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(de::Error::custom(
            "max-sources = 0 gives no source; use at least 1 (4 is usual for a pool)",
        )),
        n => Ok(n),
    }
}

fn socket_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = PathBuf::deserialize(d)?;
    let len = path.as_os_str().len();
    if len == 0 {
        return Err(de::Error::custom(
            "socket is empty; write a path such as \"/run/ntpd-lite/control.sock\", or remove [control]",
        ));
    }
    if len > MAX_SOCKET_PATH {
        return Err(de::Error::custom(format!(
            "socket path is {len} bytes; a Unix socket path can have at most {MAX_SOCKET_PATH}: choose a shorter one"
        )));
    }
    Ok(path)
}

fn user_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    let valid = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(Some(name))
    } else {
        Err(de::Error::custom(format!(
            "user `{name}` is not a user name; write an existing system user such as \"ntpd-lite\""
        )))
    }
}

/// The log filter `text` means (RUST_LOG syntax), for `log-level`, `--log-level` and `RUST_LOG`
/// alike; both findings of the config fuzz target. Each comma-separated directive is trimmed
/// first: tracing-subscriber 0.3 reads one with leading spaces at offsets into the untrimmed
/// text, so it misreads `info, ntpd_lite=debug` and panics if a multibyte character follows. And
/// span field values match their text literally, never as regular expressions: those compile to
/// a DFA that can take minutes and gigabytes for a line of text.
pub fn parse_log_filter(
    text: &str,
) -> Result<tracing_subscriber::EnvFilter, tracing_subscriber::filter::ParseError> {
    let directives: Vec<&str> = text.split(',').map(str::trim).collect();
    tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(directives.join(","))
}

fn log_filter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    match parse_log_filter(&text) {
        Ok(_) => Ok(Some(text)),
        Err(e) => Err(de::Error::custom(format!(
            "log-level `{text}` is not a log filter ({e}); use error, warn, info, debug, trace or e.g. \"ntpd_lite=debug\""
        ))),
    }
}

fn metrics_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(|_| {
        de::Error::custom(format!(
            "metrics `{text}` is not an IP address with a port; write \"127.0.0.1:9975\""
        ))
    })
}

fn peer_address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 123)))
        .map_err(|_| {
            de::Error::custom(format!(
                "peer `{text}` is not an IP address: a peer is recognized by its address, so write one, e.g. \"192.0.2.7\" or \"192.0.2.7:123\""
            ))
        })
}

/// An IP address with an optional port (123).
fn ip_and_port(text: &str) -> Option<SocketAddr> {
    text.parse().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, NTP_PORT))
    })
}

/// Where a broadcast source's broadcasts arrive: a broadcast address or a multicast group.
fn broadcast_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    match ip_and_port(&text) {
        Some(address) if !address.ip().is_unspecified() && address.port() != 0 => Ok(Some(address)),
        _ => Err(de::Error::custom(format!(
            "listen `{text}` is not a broadcast address or multicast group with an optional port: write e.g. \"192.0.2.255:123\", \"224.0.1.1\" or \"[ff02::101]:123\""
        ))),
    }
}

/// A `[[broadcast]]` address: an IPv4 address (a subnet's broadcast address or 255.255.255.255)
/// or a multicast group; not a unicast IPv6 address (IPv6 has no broadcast).
fn broadcast_address<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    match ip_and_port(&text) {
        Some(address)
            if address.port() != 0
                && !address.ip().is_unspecified()
                && !address.ip().is_loopback()
                && (address.is_ipv4() || address.ip().is_multicast()) =>
        {
            Ok(address)
        }
        _ => Err(de::Error::custom(format!(
            "broadcast address `{text}` is not a broadcast address or multicast group: write e.g. \"192.0.2.255\", \"224.0.1.1\" or \"[ff02::101]:123\""
        ))),
    }
}

/// A fixed one-way broadcast delay: 0 to 0.1 s.
fn broadcast_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let value = f64::deserialize(d)?;
    if (0.0..=0.1).contains(&value) {
        Ok(Some(value))
    } else {
        Err(de::Error::custom(format!(
            "delay {value} must be a one-way delay in seconds from 0 to 0.1 (ntpd assumes 0.004); leave it out to calibrate it"
        )))
    }
}

fn prefixes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    Ok(Vec::<Prefix>::deserialize(d)?
        .into_iter()
        .map(|p| p.0)
        .collect())
}

/// One entry of `allow` or `deny`. It is parsed in its own visitor, so that an error carries the
/// entry's line: in a list of thousands, the line of `deny = [` would not help.
struct Prefix(Cidr);

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Prefix;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an address prefix such as \"192.0.2.0/24\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Prefix, E> {
                text.parse().map(Prefix).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

fn deny_action<'de, D: Deserializer<'de>>(d: D) -> Result<DenyAction, D::Error> {
    match String::deserialize(d)?.as_str() {
        "kiss" => Ok(DenyAction::Kiss),
        "ignore" => Ok(DenyAction::Ignore),
        other => Err(de::Error::custom(format!(
            "deny-action `{other}` is unknown; use \"kiss\" (send KoD DENY) or \"ignore\" (drop)"
        ))),
    }
}

fn workers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match usize::deserialize(d)? {
        n @ 1..=64 => Ok(Some(n)),
        n => Err(de::Error::custom(format!("workers = {n}; use 1 to 64"))),
    }
}

fn local_stratum<'de, D: Deserializer<'de>>(d: D) -> Result<Stratum, D::Error> {
    match u8::deserialize(d) {
        Ok(n @ 1..=15) => Ok(Stratum::new(n)),
        _ => Err(de::Error::custom(
            "stratum must be 1 to 15 (1 = primary reference)",
        )),
    }
}

fn refid<'de, D: Deserializer<'de>>(d: D) -> Result<ReferenceId, D::Error> {
    let text = String::deserialize(d)?;
    ReferenceId::from_ascii(&text).ok_or_else(|| {
        de::Error::custom(format!(
            "refid `{text}` must be 1 to 4 printable ASCII characters, e.g. \"LOCL\" or \"GPS\""
        ))
    })
}

fn poll<'de, D: Deserializer<'de>>(d: D) -> Result<PollInterval, D::Error> {
    match i8::deserialize(d) {
        Ok(n @ -4..=17) => Ok(PollInterval::new(n)),
        _ => Err(de::Error::custom(
            "poll must be a log2 of seconds from -4 (1/16 s) to 17 (36 h); 6 = 64 s",
        )),
    }
}

fn positive_ppm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    positive_seconds(d).map(Some)
}

fn positive_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(de::Error::custom(format!(
            "{value} must be a positive number"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RateLimitToml {
    interval: f64,
    burst: u32,
    #[serde(default = "default_v4_prefix")]
    ipv4_prefix: u8,
    #[serde(default = "default_v6_prefix")]
    ipv6_prefix: u8,
    #[serde(default = "default_true")]
    kiss: bool,
}

const fn default_v4_prefix() -> u8 {
    32
}
const fn default_v6_prefix() -> u8 {
    64
}
const fn default_true() -> bool {
    true
}

fn rate_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RateLimitConfig>, D::Error> {
    let t = RateLimitToml::deserialize(d)?;
    if !(t.interval.is_finite() && (0.001..=3600.0).contains(&t.interval)) {
        return Err(de::Error::custom(
            "rate-limit interval must be 0.001 to 3600 seconds",
        ));
    }
    if t.burst == 0 || t.ipv4_prefix > 32 || t.ipv6_prefix > 128 {
        return Err(de::Error::custom(
            "rate-limit needs burst >= 1, ipv4-prefix <= 32, ipv6-prefix <= 128",
        ));
    }
    Ok(Some(RateLimitConfig {
        interval: Duration::from_secs_f64(t.interval),
        burst: t.burst,
        ipv4_prefix: t.ipv4_prefix,
        ipv6_prefix: t.ipv6_prefix,
        kiss: t.kiss,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_table_modes_and_file_rules() {
        let c = parse("[server]\nlisten = [\"127.0.0.1:11123\"]\n[leap]\nmode = \"smear\"\nsmear-window = 3600.0\nfile = \"\"\n").expect("valid");
        assert_eq!(c.leap.mode, LeapMode::Smear);
        assert_eq!(c.leap.core().smear, NtpDuration::from_seconds(3600));
        assert!(c.leap.load().expect("no file").is_none(), "\"\" means none");
        let e = parse("[server]\nlisten = [\"127.0.0.1:11123\"]\n[leap]\nmode = \"jump\"\n")
            .expect_err("bad mode");
        assert!(e.to_string().contains("step"), "{e}");
        let missing = parse("[server]\nlisten = [\"127.0.0.1:11123\"]\n[leap]\nfile = \"/nonexistent/leap-seconds.list\"\n").expect("parses");
        let e = missing
            .leap
            .load()
            .expect_err("a configured file must exist");
        assert!(
            e.to_string().contains("/nonexistent/leap-seconds.list"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("leap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let damaged = dir.join("leap-seconds.list");
        std::fs::write(&damaged, "#@ 3991593600\n#h 0 0 0 0 0\n2272060800 10\n").expect("write");
        let c = parse(&format!(
            "[server]\nlisten = [\"127.0.0.1:11123\"]\n[leap]\nfile = {:?}\n",
            damaged
        ))
        .expect("parses");
        let e = c.leap.load().expect_err("hash mismatch");
        assert!(e.to_string().contains("hash"), "{e}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    fn error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(ConfigError::Invalid { line, message, .. }) => (line, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn the_issue_contract_parses() {
        let c = parse(
            r#"
[server]
listen = ["127.0.0.1:11123", "[::1]:11123"]
rate-limit = { interval = 1.0, burst = 8 }
deny = ["192.0.2.0/24"]
[local]
stratum = 1
refid = "LOCL"
[clock]
mode = "virtual"
initial-offset = 0.3
drift-ppm = 20.0
[[source]]
address = "127.0.0.1:11124"
minpoll = -2
maxpoll = 2
iburst = true
[sync]
step-threshold = 0.128
panic-threshold = 1000.0
min-sources = 1
[control]
socket = "/run/ntpd-lite/control.sock"
[daemon]
user = "ntpd-lite"
[observability]
log-level = "ntpd_lite=debug,info"
metrics = "127.0.0.1:9975"
"#,
        )
        .expect("valid");
        assert_eq!(c.daemon.user.as_deref(), Some("ntpd-lite"));
        assert_eq!(
            c.observability.log_level.as_deref(),
            Some("ntpd_lite=debug,info")
        );
        assert_eq!(
            c.observability.metrics,
            Some("127.0.0.1:9975".parse().expect("address"))
        );
        let server = c.server.expect("server");
        assert_eq!(server.listen.len(), 2);
        assert_eq!(server.rate_limit.map(|r| r.burst), Some(8));
        assert_eq!(server.deny_action, DenyAction::Kiss);
        assert_eq!(c.local.map(|l| l.stratum), Some(Stratum::PRIMARY));
        assert_eq!(c.clock.mode, ClockMode::Virtual);
        assert_eq!(c.sources[0].minpoll, PollInterval::new(-2));
        assert!(c.sources[0].iburst);
        assert_eq!(c.sync.min_sources, 1);
    }

    #[test]
    fn a_control_character_in_a_comment_is_named() {
        // toml's own message for this is empty (found by the config fuzz target).
        let (line, message) = error("[server]\nlisten = [\"127.0.0.1:1\"]\n# a\u{1}b\n");
        assert_eq!(line, 3);
        assert!(
            message.starts_with("not valid TOML at this character"),
            "{message}"
        );
    }

    #[test]
    fn log_filters_with_spaces_or_any_characters_parse_without_panicking() {
        let with = |level: &str| {
            parse(&format!(
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[observability]\nlog-level = {level:?}\n"
            ))
        };
        let spaced = with("info, ntpd_lite=debug").expect("a space after the comma is fine");
        assert_eq!(
            spaced.observability.log_level.as_deref(),
            Some("info, ntpd_lite=debug")
        );
        let filter = parse_log_filter("info, ntpd_lite=debug").expect("filter");
        assert!(filter.to_string().contains("ntpd_lite=debug"), "{filter}");
        // tracing-subscriber alone panics on these (a char boundary inside the 'א').
        with("info, \u{5d0}x").expect("a target with any letters");
        assert!(with(" \u{5d0}[x, \u{5d0}=").is_err());
    }

    #[test]
    fn log_filter_field_values_are_text_not_regular_expressions() {
        // As a regular expression `(` is an error, and `(a|b)*a(a|b)(a|b)...` (20 times) a DFA
        // of a million states; as text each is just a value to compare with.
        let filter = parse_log_filter("info,[request{peer=(}]=debug").expect("a literal value");
        assert!(filter.to_string().contains("peer="), "{filter}");
        let blow_up = format!("[s{{f=(a|b)*a{}}}]=trace", "(a|b)".repeat(20));
        parse_log_filter(&blow_up).expect("no DFA is built");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let (line, message) = error("[server]\nlisten = [\"127.0.0.1:123\"]\nlisen = 1\n");
        assert_eq!(line, 3);
        assert!(message.contains("unknown field `lisen`"), "{message}");
    }

    #[test]
    fn bad_values_name_the_line_and_a_hint() {
        let cases = [
            (
                "[server]\nlisten = [\"localhost\"]\n",
                2,
                "IP address with a port",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[local]\nstratum = 0\n",
                4,
                "1 to 15",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[local]\nstratum = 1\nrefid = \"TOOLONG\"\n",
                5,
                "ASCII",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\ndeny = [\"10.0.0.0/40\"]\n",
                3,
                "address prefix",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[clock]\nmode = \"atomic\"\n",
                4,
                "unknown variant",
            ),
            ("[[source]]\naddress = \"x:1\"\nminpoll = 30\n", 3, "log2"),
            (
                "[[source]]\naddress = \"x:1\"\nminpoll = 4\nmaxpoll = 2\n",
                2,
                "minpoll must not exceed",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[clock]\ndrift-ppm = 5.0\n",
                3,
                "only apply to mode",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\nrate-limit = { interval = 0.0, burst = 1 }\n",
                3,
                "interval",
            ),
            ("# nothing\n", 1, "nothing to do"),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[daemon]\nuser = \"root; rm\"\n",
                4,
                "not a user name",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[observability]\nlog-level = \"info,=x=y\"\n",
                4,
                "not a log filter",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[observability]\nmetrics = \"localhost\"\n",
                4,
                "127.0.0.1:9975",
            ),
            (
                "[[source]]\naddress = \"x:1\"\n[clock]\nmode = \"system\"\n[sync]\nmax-slew-ppm = 1000.0\n",
                6,
                "the system clock slews at the kernel's fixed 500 ppm; remove max-slew-ppm or use mode = \"virtual\"",
            ),
            (
                "[[source]]\naddress = \"x:1\"\n[clock]\nmode = \"system\"\n[sync]\nmax-frequency-ppm = 1000.0\n",
                6,
                "at most 500 ppm",
            ),
            (
                "[[source]]\naddress = \"x:1\"\n[sync]\nmax-slew-ppm = 200000.0\n",
                4,
                "at most 100000",
            ),
            // In a long list the error names the entry's line, not the list's.
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\ndeny = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/40\",\n]\n",
                5,
                "`10.0.0.0/40` is not an address prefix",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\nallow = [\n  \"10.0.0.0/8\",\n  24,\n]\n",
                5,
                "an address prefix such as",
            ),
        ];
        for (text, want_line, want) in cases {
            let (line, message) = error(text);
            assert!(message.contains(want), "{text:?}: {message}");
            assert_eq!(line, want_line, "{text:?}: {message}");
        }
    }

    #[test]
    fn an_access_list_of_400k_prefixes_loads_whole() {
        // The size of a real block list: every entry must arrive, in order, and quickly (about
        // 0.2 s in a release build; the daemon then builds its tries in a few tens of ms).
        let prefix = |i: u32| {
            let [a, b, c, _] = (0x0b00_0000 + (i << 8)).to_be_bytes();
            format!("{a}.{b}.{c}.0/24")
        };
        let mut text = String::from("[server]\nlisten = [\"127.0.0.1:1\"]\ndeny = [\n");
        for i in 0..400_000 {
            text.push_str(&format!("  \"{}\",\n", prefix(i)));
        }
        text.push_str("]\nallow = [\"2001:db8::/32\", \"0.0.0.0/0\"]\n");
        let server = parse(&text).expect("valid").server.expect("server");
        assert_eq!(server.deny.len(), 400_000);
        assert_eq!(server.deny[0].to_string(), "11.0.0.0/24");
        assert_eq!(server.deny[399_999].to_string(), prefix(399_999));
        assert_eq!(server.allow.len(), 2);
    }

    #[test]
    fn configurations_start_up_could_never_use_are_errors_with_their_line() {
        let cases = [
            (
                "[server]\nlisten = [\"127.0.0.1:1\"]\n[control]\nsocket = \"\"\n",
                4,
                "socket is empty",
            ),
            (
                &format!(
                    "[server]\nlisten = [\"127.0.0.1:1\"]\n[control]\nsocket = \"/{}\"\n",
                    "s".repeat(107)
                ),
                4,
                "at most 107",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:123\", \"127.0.0.1:123\"]\n",
                2,
                "listen has 127.0.0.1:123 twice",
            ),
            (
                "[server]\nlisten = [\"0.0.0.0:123\", \"127.0.0.1:123\"]\n",
                2,
                "the wildcard already takes",
            ),
            (
                "[server]\nlisten = [\"[::1]:123\", \"[::]:123\"]\n",
                2,
                "the wildcard already takes",
            ),
            (
                "[server]\nlisten = [\"[::]:123\", \"192.0.2.1:123\"]\n",
                2,
                "the wildcard already takes",
            ),
            ("[[source]]\naddress = \"\"\n", 2, "source address is empty"),
            (
                "[[source]]\naddress = \"127.0.0.1 port 11200\"\n",
                2,
                "`127.0.0.1 port 11200` is not a host name or an IP address",
            ),
            ("[[source]]\naddress = \"127.0.0.1:0\"\n", 2, "has port 0"),
            ("[[source]]\naddress = \"[::1]:0\"\n", 2, "has port 0"),
            (
                "[[source]]\naddress = \"ntp.example.com:0\"\n",
                2,
                "has port 0",
            ),
            (
                "[[source]]\naddress = \"ntp.example.com:123456\"\n",
                2,
                "`123456` is not a port",
            ),
            (
                "[[source]]\naddress = \"pool.ntp.org\"\nkind = \"pool\"\nmax-sources = 0\n",
                4,
                "max-sources = 0 gives no source",
            ),
            (
                "[[source]]\naddress = \"a.example\"\n[[source]]\naddress = \"b.example\"\n\
                 [sync]\nmin-sources = 3\n",
                6,
                "min-sources = 3 but the sources can give at most 2",
            ),
            (
                "[[source]]\naddress = \"pool.ntp.org\"\nkind = \"pool\"\nmax-sources = 2\n\
                 [[source]]\naddress = \"192.0.2.1\"\n[sync]\nmin-sources = 4\n",
                8,
                "at most 3",
            ),
        ];
        for (text, want_line, want) in cases {
            let (line, message) = error(text);
            assert!(message.contains(want), "{text:?}: {message}");
            assert_eq!(line, want_line, "{text:?}: {message}");
        }
    }

    #[test]
    fn what_start_up_can_use_still_parses() {
        for text in [
            // Tests take an ephemeral port, as many times as they like.
            "[server]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\", \"[::1]:0\"]\n",
            // Both wildcards on one port: the IPv6 one is then IPv6 only.
            "[server]\nlisten = [\"0.0.0.0:123\", \"[::]:123\"]\n",
            "[server]\nlisten = [\"127.0.0.1:123\", \"127.0.0.2:123\", \"[::1]:123\"]\n",
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[control]\nsocket = \"/run/ntpd-lite/control.sock\"\n",
            // A pool counts up to its max-sources.
            "[[source]]\naddress = \"pool.ntp.org\"\nkind = \"pool\"\n[sync]\nmin-sources = 4\n",
            // min-sources is about sources: a server alone has none to count.
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[sync]\nmin-sources = 3\n",
        ] {
            parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
    }

    #[test]
    fn the_count_of_sources_saturates() {
        let pool = format!(
            "[[source]]\naddress = \"pool.ntp.org\"\nkind = \"pool\"\nmax-sources = {}\n",
            i64::MAX
        );
        let text = format!("{}[sync]\nmin-sources = {}\n", pool.repeat(3), i64::MAX);
        let config = parse(&text).expect("three pools can give as many as min-sources asks");
        assert_eq!(config.most_sources(), usize::MAX);
    }

    #[test]
    fn source_addresses_read_as_the_daemon_looks_them_up() {
        let ip = |s: &str| SourceAddress::Ip(s.parse().expect("address"));
        let name = |host: &str, port| SourceAddress::Name {
            host: host.to_owned(),
            port,
        };
        let cases = [
            ("127.0.0.1:11123", ip("127.0.0.1:11123")),
            ("[::1]:11123", ip("[::1]:11123")),
            ("192.0.2.1", ip("192.0.2.1:123")),
            ("::1", ip("[::1]:123")),
            ("[::1]", ip("[::1]:123")),
            ("[fe80::1%2]:123", ip("[fe80::1%2]:123")),
            ("pool.ntp.org", name("pool.ntp.org", 123)),
            ("localhost:11123", name("localhost", 11123)),
            ("time.example.", name("time.example.", 123)),
            ("fe80::1%eth0", name("fe80::1%eth0", 123)),
            ("[fe80::1%eth0]:11123", name("fe80::1%eth0", 11123)),
        ];
        for (text, want) in cases {
            assert_eq!(SourceAddress::parse(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            " pool.ntp.org",
            "a..b",
            "-x.example",
            "host:",
            "[::1]x",
            "[::1]:",
            "x:1:2",
            "fe80::1%",
        ] {
            assert!(SourceAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_slew_rate_and_frequency_limit_follow_the_clock() {
        let virtual_clock =
            parse("[[source]]\naddress = \"x:1\"\n[clock]\nmode = \"virtual\"\n").expect("valid");
        assert_eq!(virtual_clock.max_slew_ppm(), DEFAULT_MAX_SLEW_PPM);
        assert_eq!(virtual_clock.max_frequency_ppm(), DEFAULT_MAX_FREQUENCY_PPM);
        let system = "[[source]]\naddress = \"x:1\"\n[clock]\nmode = \"system\"\n";
        let kernel = parse(system).expect("valid");
        assert_eq!(kernel.max_slew_ppm(), KERNEL_SLEW_PPM);
        assert_eq!(kernel.max_frequency_ppm(), KERNEL_MAX_FREQUENCY_PPM);
        let said_so = parse(&format!(
            "{system}[sync]\nmax-slew-ppm = 500.0\nmax-frequency-ppm = 100.0\n"
        ))
        .expect("the kernel's own rate may be written out");
        assert_eq!(said_so.max_slew_ppm(), 500.0);
        assert_eq!(said_so.max_frequency_ppm(), 100.0);
        let lab =
            parse("[[source]]\naddress = \"x:1\"\n[sync]\nmax-slew-ppm = 5000.0\n").expect("valid");
        assert_eq!(lab.max_slew_ppm(), 5000.0);
    }

    #[test]
    fn changed_sections_ignore_the_log_level_and_name_the_rest() {
        let running = "[server]\nlisten = [\"127.0.0.1:1\"]\n";
        let louder = format!("{running}[observability]\nlog-level = \"debug\"\n");
        assert!(changed_sections(running, &louder).is_empty());
        let moved = "[server]\nlisten = [\"127.0.0.1:2\"]\n[sync]\nmin-sources = 2\n\
                     [[source]]\naddress = \"127.0.0.1:3\"\n";
        assert_eq!(changed_sections(running, moved), ["[server]", "[sync]"]);
        let reloaded = format!(
            "{running}deny = [\"10.0.0.0/8\"]\nrate-limit = {{ interval = 2.0 }}\n\
             [[source]]\naddress = \"127.0.0.1:3\"\nprefer = true\n"
        );
        assert!(changed_sections(running, &reloaded).is_empty());
        let broadcast =
            format!("{running}[[source]]\naddress = \"127.0.0.5\"\nkind = \"broadcast\"\n");
        assert_eq!(changed_sections(running, &broadcast), ["[[source]]"]);
    }

    #[test]
    fn peers_parse_and_need_a_listen_address_of_their_family() {
        let c = parse(
            "[server]\nlisten = [\"127.0.0.2:11123\"]\npassive-peers = true\n\
             [[peer]]\naddress = \"127.0.0.3:11123\"\nminpoll = -2\nmaxpoll = 0\n\
             [[peer]]\naddress = \"127.0.0.4\"\n",
        )
        .expect("valid");
        assert!(c.server.as_ref().is_some_and(|s| s.passive_peers));
        assert_eq!(
            c.peer_addresses(),
            ["127.0.0.3:11123", "127.0.0.4:123"].map(|a| a.parse::<SocketAddr>().expect("address"))
        );
        assert_eq!(
            (c.peers[0].minpoll, c.peers[1].maxpoll),
            (PollInterval::new(-2), PollInterval::new(10))
        );
        let closed = parse("[server]\nlisten = [\"127.0.0.1:123\"]\n").expect("valid");
        assert!(
            !closed.server.is_some_and(|s| s.passive_peers),
            "off by default"
        );
        let cases = [
            (
                "[server]\nlisten = [\"[::1]:123\"]\n[[peer]]\naddress = \"127.0.0.3\"\n",
                "address family",
            ),
            (
                "[[source]]\naddress = \"127.0.0.1\"\n[[peer]]\naddress = \"127.0.0.3\"\n",
                "[server] listen",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:123\"]\n[[peer]]\naddress = \"peer.example\"\n",
                "not an IP address",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:123\"]\n[[peer]]\naddress = \"127.0.0.3\"\nminpoll = 4\nmaxpoll = 2\n",
                "minpoll",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:123\"]\n[[peer]]\naddress = \"127.0.0.3\"\n[[peer]]\naddress = \"127.0.0.3:123\"\n",
                "twice",
            ),
            (
                "[server]\nlisten = [\"127.0.0.1:123\"]\n[[peer]]\naddress = \"127.0.0.3\"\niburst = true\n",
                "unknown field",
            ),
        ];
        for (text, hint) in cases {
            let (_, message) = error(text);
            assert!(message.contains(hint), "{text}: {message}");
        }
    }
}
