//! The link emulator as a program.
//!
//! `ntp-link relay --server 127.0.0.1:123 [--listen 127.0.0.1:0] [--forward SPEC] [--backward SPEC]
//! [--seed N] [--seconds S]` relays until interrupted (or for S seconds) and prints its counters.
//! A SPEC is `delay=0.005,jitter=0.001,loss=0.33,duplicate=0.05,reorder=0.1,reorder-delay=0.02`
//! (seconds and probabilities; any subset).
//!
//! `ntp-link measure [--delay S] [--probes N]` measures the emulator itself: it runs a timestamping
//! echo server and sends probes alternately straight to it and through a link with `delay` each
//! way (default 0.5 ms), each probe an NTP-style exchange (T1 and T3 read in user space just
//! before sending, T2 and T4 the kernel's receive timestamps), and prints p50/p99 of the one-way
//! delays (less the configured delay) and of the offset ((T2 - T1) + (T3 - T4)) / 2 on each path.
//! Both ends read the same clock, so the direct path shows what the measurement itself adds, and
//! the link's offset minus the direct path's is the bias the emulator adds to NTP.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use ntp_lite_tests::kernel_time::{enable_rx_timestamps, recv_timestamped, wait_readable};
use ntp_lite_tests::link::{Impairment, Link, LinkConfig};

#[derive(Debug, Parser)]
#[command(about = "A user-space link emulator for UDP on loopback, and its own measurement")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once")]
enum Command {
    /// Relay datagrams to a server through an impaired link.
    Relay {
        /// The server to relay to (127.0.0.0/8 or ::1).
        #[arg(long)]
        server: SocketAddr,
        /// Where clients send to.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Client-to-server impairment.
        #[arg(long, default_value = "", value_parser = parse_impairment)]
        forward: Impairment,
        /// Server-to-client impairment.
        #[arg(long, default_value = "", value_parser = parse_impairment)]
        backward: Impairment,
        /// Seed of the random draws.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop after this many seconds (default: run until killed).
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Measure the emulator's own delay and NTP offset bias against a direct path.
    Measure {
        /// The link's delay each way, seconds.
        #[arg(long, default_value_t = 0.0005)]
        delay: f64,
        /// Probes on each path.
        #[arg(long, default_value_t = 2000)]
        probes: usize,
    },
}

/// `delay=0.005,jitter=0.001,...` into an [`Impairment`].
fn parse_impairment(spec: &str) -> Result<Impairment, String> {
    let mut imp = Impairment::NONE;
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected key=value"))?;
        let value: f64 = value.parse().map_err(|e| format!("{item:?}: {e}"))?;
        let seconds = || Duration::try_from_secs_f64(value).map_err(|e| format!("{item:?}: {e}"));
        match key {
            "delay" => imp.delay = seconds()?,
            "jitter" => imp.jitter = seconds()?,
            "reorder-delay" => imp.reorder_delay = seconds()?,
            "loss" => imp.loss = value,
            "duplicate" => imp.duplicate = value,
            "reorder" => imp.reorder = value,
            _ => return Err(format!("unknown impairment {key:?}")),
        }
    }
    imp.check().map_err(|e| e.to_string())?;
    Ok(imp)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Relay {
            server,
            listen,
            forward,
            backward,
            seed,
            seconds,
        } => relay(
            server,
            listen,
            LinkConfig {
                forward,
                backward,
                seed,
            },
            seconds,
        ),
        Command::Measure { delay, probes } => measure(Duration::from_secs_f64(delay), probes),
    }
}

fn relay(
    server: SocketAddr,
    listen: SocketAddr,
    config: LinkConfig,
    seconds: Option<f64>,
) -> ExitCode {
    if !server.ip().is_loopback() || !listen.ip().is_loopback() {
        eprintln!("ntp-link: only loopback addresses (127.0.0.0/8, ::1)");
        return ExitCode::from(2);
    }
    let link = match Link::spawn(listen, server, config) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("ntp-link: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("relaying {} -> {server}", link.local_addr());
    let started = std::time::Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if seconds.is_some_and(|s| started.elapsed().as_secs_f64() >= s) {
            break;
        }
    }
    println!("{:?}", link.stats());
    ExitCode::SUCCESS
}

/// Nanoseconds since the epoch, as a signed number for differences.
fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// An echo server that answers each probe with its T2 (kernel receive) and T3 (just before send).
fn echo_server() -> std::io::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_nonblocking(true)?;
    enable_rx_timestamps(&socket)?;
    let addr = socket.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            let mut fds = [pollfd(&socket)];
            if wait_readable(&mut fds, None).is_err() {
                return;
            }
            while let Ok(got) = recv_timestamped(&socket, &mut buf) {
                if got.len < 8 {
                    continue;
                }
                buf[8..16].copy_from_slice(&nanos(got.at).to_be_bytes());
                buf[16..24].copy_from_slice(&nanos(SystemTime::now()).to_be_bytes());
                let _ = socket.send_to(&buf[..24], got.from);
            }
        }
    });
    Ok(addr)
}

fn pollfd(socket: &UdpSocket) -> libc::pollfd {
    libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

/// One exchange's one-way delays and offset, nanoseconds; `None` if no reply within a second.
fn probe(socket: &UdpSocket, to: SocketAddr, seq: u64) -> Option<(i64, i64, i64)> {
    let mut buf = [0u8; 64];
    buf[..8].copy_from_slice(&seq.to_be_bytes());
    let t1 = nanos(SystemTime::now());
    socket.send_to(&buf[..8], to).ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let mut fds = [pollfd(socket)];
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        wait_readable(&mut fds, Some(left)).ok()?;
        while let Ok(got) = recv_timestamped(socket, &mut buf) {
            let field = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[i..i + 8]);
                b
            };
            if got.len != 24 || u64::from_be_bytes(field(0)) != seq {
                continue;
            }
            let (t2, t3, t4) = (
                i64::from_be_bytes(field(8)),
                i64::from_be_bytes(field(16)),
                nanos(got.at),
            );
            return Some((t2 - t1, t4 - t3, ((t2 - t1) + (t3 - t4)) / 2));
        }
    }
}

fn percentile(values: &mut [i64], p: f64) -> f64 {
    values.sort_unstable();
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values.get(i).map_or(f64::NAN, |&v| v as f64 / 1e3)
}

fn measure(delay: Duration, probes: usize) -> ExitCode {
    let run = || -> std::io::Result<()> {
        let server = echo_server()?;
        let config = LinkConfig::symmetric(Impairment::delay(delay), 1);
        let link = Link::spawn("127.0.0.1:0".parse().expect("address"), server, config)?;
        let client = UdpSocket::bind("127.0.0.1:0")?;
        client.set_nonblocking(true)?;
        enable_rx_timestamps(&client)?;
        let delay_ns = i64::try_from(delay.max(ntp_lite_tests::link::MIN_DELAY).as_nanos())
            .unwrap_or(i64::MAX);
        let mut paths = [
            (server, 0, [vec![], vec![], vec![]]),
            (link.local_addr(), delay_ns, [vec![], vec![], vec![]]),
        ];
        for seq in 0..probes as u64 * 2 {
            let (to, less, samples) = &mut paths[(seq % 2) as usize];
            if let Some((out, back, offset)) = probe(&client, *to, seq) {
                samples[0].push(out - *less);
                samples[1].push(back - *less);
                samples[2].push(offset);
            }
            // Idle between probes, as NTP polls are: the relay is asleep when each one arrives.
            std::thread::sleep(Duration::from_millis(3));
        }
        println!(
            "{probes} probes per path, link delay {:.1} ms each way; us, p50 / p99 (p1 for the offset)",
            delay.as_secs_f64() * 1e3
        );
        let mut offsets = [0.0; 2];
        for (k, (name, (_, _, samples))) in ["direct", "link  "]
            .iter()
            .zip(paths.iter_mut())
            .enumerate()
        {
            let [out, back, offset] = samples;
            offsets[k] = percentile(offset, 0.5);
            println!(
                "{name}  out {:6.1} / {:6.1}   back {:6.1} / {:6.1}   offset {:+6.1} / {:+6.1} / {:+6.1}  ({} replies){}",
                percentile(out, 0.5),
                percentile(out, 0.99),
                percentile(back, 0.5),
                percentile(back, 0.99),
                offsets[k],
                percentile(offset, 0.01),
                percentile(offset, 0.99),
                offset.len(),
                if k == 1 {
                    "  (delays less the link's)"
                } else {
                    ""
                },
            );
        }
        println!(
            "offset bias of the link (p50 link - p50 direct): {:+.1} us",
            offsets[1] - offsets[0]
        );
        println!("link counters: {:?}", link.stats());
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ntp-link measure: {e}");
            ExitCode::FAILURE
        }
    }
}
