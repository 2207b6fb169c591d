//! Command line: the flags of the contract (ntpdate's letters where they exist) and the server
//! arguments (`host`, `host:port`, `v4`, `v6`, `[v6]:port`).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

/// Ask NTP servers for the time: every address of every name, concurrently, each reply checked;
/// falsetickers are voted out and the survivors' combined offset is reported. Query only unless
/// -b, -B or --set asks to change the clock.
#[derive(Parser, Debug)]
#[command(name = "ntpdate-lite", version, about)]
pub struct Cli {
    /// Servers: host name, IPv4 or IPv6 literal, optionally host:port or [v6]:port. A name is
    /// resolved to all its addresses and each is queried.
    #[arg(required = true, value_name = "SERVER", value_parser = parse_server)]
    pub servers: Vec<ServerSpec>,

    /// Samples per address; the lowest-delay valid one is used.
    #[arg(short = 'p', long = "samples", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub samples: u32,

    /// Seconds between the samples of one address.
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_gap)]
    pub gap: Duration,

    /// Server port, unless a server argument names its own.
    #[arg(long, value_name = "PORT", default_value_t = 123,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Seconds to wait for each reply (fractional).
    #[arg(short = 't', long, value_name = "SECONDS", default_value = "2", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Use IPv4 addresses only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Use IPv6 addresses only.
    #[arg(short = '6')]
    pub ipv6: bool,

    /// NTP version of the requests (2 is ntplib's default); replies of versions 1-4 are accepted.
    #[arg(short = 'o', long = "ntp-version", value_name = "2|3|4", default_value_t = 4,
          value_parser = clap::value_parser!(u8).range(2..=4))]
    pub ntp_version: u8,

    /// Print one JSON object (on success and on failure).
    #[arg(short = 'j', long)]
    pub json: bool,

    /// Keys file (the ntpd/ntpsec/chrony format, owner-only) for `-a` (as ntpdate's and ntpdig's
    /// `-k`).
    #[arg(short = 'k', long = "key-file", value_name = "FILE", requires = "key")]
    pub key_file: Option<std::path::PathBuf>,

    /// Sign each request with this key of `-k FILE` and use only replies signed with it
    /// (RFC 8573; as ntpdate's and ntpdig's `-a`).
    #[arg(short = 'a', long = "key", value_name = "ID", requires = "key_file")]
    pub key: Option<u32>,

    /// Step the clock by the offset (needs CAP_SYS_TIME).
    #[arg(short = 'b', long, conflicts_with_all = ["slew", "set"])]
    pub step: bool,

    /// Slew the clock by the offset with adjtime (needs CAP_SYS_TIME).
    #[arg(short = 'B', long, conflicts_with = "set")]
    pub slew: bool,

    /// Step if the offset is 0.5 s or more, else slew (needs CAP_SYS_TIME).
    #[arg(long)]
    pub set: bool,

    /// Fewest servers that must agree (truechimers); fewer is a failure (exit 5).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub min_agree: u32,

    /// Query only, never touch the clock (the default; an error with -b, -B or --set).
    #[arg(short = 'q', long, conflicts_with_all = ["step", "slew", "set"])]
    pub query: bool,

    /// Print every sample of every address.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Accepted for ntpdate compatibility; does nothing (the source port is always random).
    #[arg(short = 'u', action = ArgAction::SetTrue)]
    pub unprivileged_port: bool,

    /// Show times in UTC instead of local time.
    #[arg(long)]
    pub utc: bool,

    /// Output format; the default is the ntpdate lines followed by the ctime line.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Network Time Security (RFC 8915): each SERVER is an NTS-KE server (port 4460 unless it
    /// names one), which names the NTP server and port and gives the keys; only authenticated
    /// replies count.
    #[arg(long)]
    pub nts: bool,

    /// With --nts: a PEM file of the CA certificates to trust instead of the system's.
    #[arg(long, value_name = "FILE", requires = "nts")]
    pub nts_ca: Option<std::path::PathBuf>,
}

/// The output formats of `--format`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Format {
    /// The server's time, like Python's `time.ctime(r.tx_time)`.
    Ctime,
    /// `server ADDR, stratum N, offset +0.000123, delay 0.000456` per address, then ntpdate's
    /// summary line.
    Ntpdate,
    /// One line like sntp / ntpdig.
    Sntp,
    /// The server's time in RFC 3339.
    Iso,
    /// The server's time in Unix seconds.
    Unix,
}

/// What the clock should be made to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Adjust {
    /// Nothing: query only.
    None,
    /// Step by the offset.
    Step,
    /// Slew by the offset.
    Slew,
    /// Step at 0.5 s or more, else slew.
    Set,
}

impl Cli {
    /// The clock action the flags ask for.
    pub fn adjust(&self) -> Adjust {
        match (self.step, self.slew, self.set) {
            (true, _, _) => Adjust::Step,
            (_, true, _) => Adjust::Slew,
            (_, _, true) => Adjust::Set,
            _ => Adjust::None,
        }
    }
}

/// A server argument: a host (name or address literal) and the port it names, if any.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ServerSpec {
    /// The argument as given, for messages and JSON.
    pub name: String,
    /// The host part.
    pub host: Host,
    /// An explicit `:port`, which beats `--port`.
    pub port: Option<u16>,
}

/// A host: an address literal needs no resolution.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Host {
    /// An IPv4 or IPv6 literal.
    Address(IpAddr),
    /// A name to resolve.
    Name(String),
}

/// Parses `name`, `name:port`, `1.2.3.4`, `1.2.3.4:port`, `::1`, `[::1]`, `[::1]:port`. A bare
/// IPv6 literal that ends in what looks like a port (`::1:123`) is refused with a hint to write
/// the brackets: `::1:123` is also the address ::1:123, and no one can tell which was meant.
pub fn parse_server(arg: &str) -> Result<ServerSpec, String> {
    if let Some(hint) = ipv6_port_hint(arg) {
        return Err(hint);
    }
    let (host, port) = split_host_port(arg)?;
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => Host::Address(ip),
        Err(_) if arg.starts_with('[') => return Err(format!("{host:?} is not an IPv6 address")),
        // A host name has no colon: this is a mistyped address, which a resolver must not see.
        Err(_) if host.is_empty() || host.contains(|c: char| c == ':' || c.is_whitespace()) => {
            return Err(format!("{arg:?} is not a host name or address"));
        }
        Err(_) => Host::Name(host.to_owned()),
    };
    Ok(ServerSpec {
        name: arg.to_owned(),
        host,
        port,
    })
}

/// The hint for an unbracketed IPv6 address followed by `:PORT` (`::1:123`, `fe80::1:4123`):
/// `None` unless the text before the last colon is an IPv6 address and the rest a port number.
fn ipv6_port_hint(arg: &str) -> Option<String> {
    let (address, port) = arg.rsplit_once(':')?;
    address.parse::<Ipv6Addr>().ok()?;
    parse_port(port).ok()?;
    let bracketed = format!("[{address}]:{port}");
    Some(if arg.parse::<Ipv6Addr>().is_ok() {
        format!(
            "{arg:?} is ambiguous: write {bracketed} for port {port} of {address}, \
             or [{arg}] for the address {arg}"
        )
    } else {
        format!("{arg:?} is not an address: an IPv6 address with a port is written {bracketed}")
    })
}

fn split_host_port(arg: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(rest) = arg.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{arg:?}: missing ']'"))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(parse_port(port)?))),
                None => Err(format!("{arg:?}: expected ':PORT' after ']'")),
            },
        };
    }
    // Two or more colons: a bare IPv6 literal, which cannot carry a port without brackets.
    match arg.split_once(':') {
        Some((host, port)) if !port.contains(':') => Ok((host, Some(parse_port(port)?))),
        _ => Ok((arg, None)),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("{text:?} is not a port (1-65535)")),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?}: out of range"))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_seconds(text)?;
    if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(3600) {
        return Err("the timeout must be from 0.001 to 3600 seconds".to_owned());
    }
    Ok(timeout)
}

fn parse_gap(text: &str) -> Result<Duration, String> {
    let gap = parse_seconds(text)?;
    if gap > Duration::from_secs(3600) {
        return Err("the gap must be at most 3600 seconds".to_owned());
    }
    Ok(gap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn spec(arg: &str) -> (Host, Option<u16>) {
        let s = parse_server(arg).expect(arg);
        (s.host, s.port)
    }

    #[test]
    fn server_forms() {
        let ip = |s: &str| Host::Address(s.parse().expect("ip"));
        assert_eq!(spec("127.0.0.1"), (ip("127.0.0.1"), None));
        assert_eq!(spec("127.0.0.1:1234"), (ip("127.0.0.1"), Some(1234)));
        assert_eq!(spec("::1"), (ip("::1"), None));
        assert_eq!(spec("fe80::1:abcd"), (ip("fe80::1:abcd"), None));
        assert_eq!(spec("2001:db8::123"), (ip("2001:db8::123"), None));
        assert_eq!(spec("[fe80::1:2]"), (ip("fe80::1:2"), None));
        assert_eq!(spec("[::1]"), (ip("::1"), None));
        assert_eq!(spec("[::1]:123"), (ip("::1"), Some(123)));
        assert_eq!(spec("localhost"), (Host::Name("localhost".into()), None));
        assert_eq!(
            spec("pool.example:4123"),
            (Host::Name("pool.example".into()), Some(4123))
        );
    }

    #[test]
    fn bad_servers_are_refused() {
        for bad in [
            "", "[::1", "[::1]x", "[nope]:1", "h:0", "h:99999", "h:", "a b", "a:b:c", "::g",
        ] {
            assert!(parse_server(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_ipv6_address_with_a_bare_port_gets_the_bracketed_form() {
        // ::1:123 is also an address (the last group 0x123): both readings are offered.
        let hint = parse_server("::1:123").expect_err("ambiguous");
        assert!(
            hint.contains("write [::1]:123 for port 123 of ::1"),
            "{hint}"
        );
        assert!(
            hint.contains("or [::1:123] for the address ::1:123"),
            "{hint}"
        );
        // 41234 is no IPv6 group, so only one reading is left.
        let hint = parse_server("::1:41234").expect_err("not an address");
        assert!(hint.ends_with("is written [::1]:41234"), "{hint}");
        let hint = parse_server("fe80::1:2").expect_err("ambiguous");
        assert!(hint.contains("[fe80::1]:2"), "{hint}");
        // Not a port after the last colon, or not an address before it: no hint.
        assert!(ipv6_port_hint("::1").is_none());
        assert!(ipv6_port_hint("::1:abc").is_none());
        assert!(ipv6_port_hint("2001:db8::123").is_none());
        assert!(ipv6_port_hint("host:123").is_none());
        assert!(ipv6_port_hint("::1:0").is_none());
    }

    #[test]
    fn query_conflicts_with_clock_setting() {
        for flag in ["-b", "-B", "--set", "--step", "--slew"] {
            let r = Cli::try_parse_from(["ntpdate-lite", "-q", flag, "127.0.0.1"]);
            assert!(r.is_err(), "-q {flag} must be a usage error");
        }
        let r = Cli::try_parse_from(["ntpdate-lite", "-b", "-B", "127.0.0.1"]);
        assert!(r.is_err());
    }

    #[test]
    fn defaults_and_values() {
        let c = Cli::try_parse_from(["ntpdate-lite", "h"]).expect("parses");
        assert_eq!(c.samples, 1);
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.gap, Duration::from_secs(2));
        assert_eq!((c.port, c.ntp_version, c.min_agree), (123, 4, 1));
        assert_eq!(c.adjust(), Adjust::None);
        let c = Cli::try_parse_from(["ntpdate-lite", "-t", "0.25", "-o", "3", "-4", "-u", "h"])
            .expect("parses");
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert_eq!(c.ntp_version, 3);
        assert!(c.ipv4);
        let c = Cli::try_parse_from(["ntpdate-lite", "-o", "2", "h"]).expect("ntplib's version");
        assert_eq!(c.ntp_version, 2);
        for bad in [
            &["-o", "1"][..],
            &["-o", "5"],
            &["-t", "0"],
            &["-t", "nan"],
            &["-p", "0"],
            &["-4", "-6"],
            &["--min-agree", "0"],
            &[],
        ] {
            let args = ["ntpdate-lite"].iter().chain(bad).chain(if bad.is_empty() {
                &[][..]
            } else {
                &["h"][..]
            });
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The man page and completions that the Debian package (`cargo deb -p ntpd-lite`) ships are
    /// committed in ntpd-lite/debian/ as generated here from the clap definition;
    /// `NTP_LITE_REGENERATE=1 cargo test -p ntpdate-lite packaged` rewrites them.
    #[test]
    fn the_packaged_man_page_and_completions_are_current() {
        use clap_complete::Shell;
        let mut man = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut man)
            .expect("render the man page");
        let mut files = vec![("man/ntpdate-lite.1".to_owned(), man)];
        for (shell, name) in [
            (Shell::Bash, "ntpdate-lite.bash"),
            (Shell::Zsh, "_ntpdate-lite"),
            (Shell::Fish, "ntpdate-lite.fish"),
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ntpdate-lite", &mut script);
            files.push((format!("completions/{name}"), script));
        }
        let packaged = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ntpd-lite/debian");
        let regenerate = std::env::var_os("NTP_LITE_REGENERATE").is_some();
        for (file, fresh) in files {
            let committed = packaged.join(file);
            if regenerate {
                std::fs::write(&committed, &fresh).expect("write");
            }
            assert!(
                std::fs::read(&committed).is_ok_and(|c| c == fresh),
                "{} is not what the clap definition gives now: run \
                 NTP_LITE_REGENERATE=1 cargo test -p ntpdate-lite packaged",
                committed.display()
            );
        }
    }
}
