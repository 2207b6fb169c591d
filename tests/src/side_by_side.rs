//! ntpd-lite and chronyd side by side, each synchronizing through its own link emulator of the
//! same settings and seed to one server that serves true time (ntpd-lite with a monitor clock:
//! the system clock, kernel receive timestamps, interleaved mode), both at polls of 0.25-1 s
//! (chrony's `minpoll -2 maxpoll 0`), with or without `xleave` on both. chronyd runs with `-x`:
//! it never touches this machine's clock, but tracks its offset and frequency and serves the
//! time it believes; ntpd-lite runs a virtual clock on the system clock, so both start right.
//!
//! Twice a second it reads each client's true error, what it serves minus this machine's clock
//! (which the server serves): ntpd-lite's from its `status` (`clock.error`, its virtual clock's),
//! chronyd's from `chronyc tracking` (System time: with `-x` its whole correction, applied to
//! every timestamp it serves). Neither reading goes over the network, so no path's asymmetry
//! enters the figure. Printed: the RMS and maximum true error of each over the second half of the
//! run, per scenario and seed, and per scenario the mean RMS and the median of the per-seed ratios.
//!
//! Beside it, the RMS of the error a probe sees: it asks each client for its time, and the server
//! too, directly on loopback (three queries each, the one with the least delay kept; T1 read just
//! before the send, T4 the kernel's receive timestamp), and takes a client's probed offset minus
//! the server's. That adds each server's own answering path (its basic-mode T3 is read a few
//! microseconds before the reply leaves), so it is the time a client of each would see.
//!
//! Five minutes a run by default: chronyd keeps at most 64 samples (64 s at a 1 s poll), ntpd-lite
//! as many as fit a line within 1024 s (`ntp_proto::stats::MAX_SPAN`), so a minute-long run
//! measures the start-up, not the steady state users run in.
//!
//! `daemon-vs-chronyd link [SECONDS=300] [SEEDS=1,2,3,4] [SCENARIOS=direct,clean,jitter,lossy]
//! [xleave|basic]`

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use ntp_proto::packet::{Packet, PollInterval, Version};
use ntp_proto::{NtpDuration, NtpTimestamp};

use crate::chrony::{Chronyd, ChronydClient};
use crate::daemon::Daemon;
use crate::kernel_time::{enable_rx_timestamps, recv_timestamped, wait_readable};
use crate::lab::Node;
use crate::link::{Impairment, Link, LinkConfig};
use crate::sim::measure::spread;
use crate::tools::free_udp_port;

/// A named link setting (the same both ways), or none (straight to the server).
fn scenario(name: &str) -> Option<Option<Impairment>> {
    let ms = Duration::from_micros;
    match name {
        "direct" => Some(None),
        "clean" => Some(Some(Impairment::delay(ms(500)))),
        "jitter" => Some(Some(Impairment::delay(ms(5000)).with_jitter(ms(1000)))),
        "lossy" => Some(Some(
            Impairment::delay(ms(2000))
                .with_jitter(ms(500))
                .with_loss(0.33)
                .with_duplicate(0.05),
        )),
        _ => None,
    }
}

/// One run's errors, seconds, and the requests each client sent.
#[derive(Clone, Copy, Debug)]
struct Errors {
    /// Each client's true error: what it serves minus this machine's clock, read from its state.
    ours: crate::sim::measure::Spread,
    chrony: crate::sim::measure::Spread,
    /// The RMS of each client's error as the probe sees it (ntpd-lite, chronyd).
    probed: (f64, f64),
    requests: (u64, u64),
}

/// The error samples of one run, seconds.
#[derive(Default)]
struct Samples {
    ours: Vec<f64>,
    chrony: Vec<f64>,
    ours_probed: Vec<f64>,
    chrony_probed: Vec<f64>,
}

/// Runs the comparison; see the module doc for the arguments.
pub fn main(args: &[String]) -> ExitCode {
    let seconds: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(300.0);
    let seeds: Vec<u64> = args
        .get(1)
        .map_or("1,2,3,4", String::as_str)
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let scenarios: Vec<&str> = args
        .get(2)
        .map_or("direct,clean,jitter,lossy", String::as_str)
        .split(',')
        .collect();
    let xleave = args.get(3).is_none_or(|m| m == "xleave");
    if let Some(bad) = scenarios.iter().find(|s| scenario(s).is_none()) {
        eprintln!(
            "daemon-vs-chronyd link: unknown scenario {bad:?} (direct, clean, jitter, lossy)"
        );
        return ExitCode::from(2);
    }
    if !Chronyd::installed() {
        eprintln!("daemon-vs-chronyd: chronyd is not installed (apt-get install chrony)");
        return ExitCode::from(2);
    }
    let (_server, server) = true_time_server();
    println!(
        "ntpd-lite vs chronyd -x, side by side, polls 0.25-1 s, {} mode, {seconds:.0} s a run, \
         error over the last {:.0} s (us, true: each one's own clock against this machine's; RMS / max)",
        if xleave { "xleave" } else { "basic" },
        seconds / 2.0
    );
    println!(
        "scenario  seed   ntpd-lite RMS / max     chronyd RMS / max    ratio   probed RMS   requests"
    );
    let mut summary = Vec::new();
    for name in &scenarios {
        let impairment = scenario(name).flatten();
        let mut runs = Vec::new();
        for &seed in &seeds {
            let errors = run(server, impairment, seed, seconds, xleave);
            println!(
                "{name:<8} {seed:>5}   {:>8.2} / {:>7.2}    {:>8.2} / {:>7.2}   {:>5.2}x   {:>5.2} / {:<5.2}   {:>5} / {}",
                errors.ours.rms * 1e6,
                errors.ours.max * 1e6,
                errors.chrony.rms * 1e6,
                errors.chrony.max * 1e6,
                errors.ours.rms / errors.chrony.rms,
                errors.probed.0 * 1e6,
                errors.probed.1 * 1e6,
                errors.requests.0,
                errors.requests.1,
            );
            runs.push(errors);
        }
        summary.push((*name, runs));
    }
    println!(
        "\nscenario  mean RMS ntpd-lite  mean RMS chronyd  median ratio  (over {} seeds)",
        seeds.len()
    );
    for (name, runs) in &summary {
        let mean = |f: fn(&Errors) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
        let mut ratios: Vec<f64> = runs.iter().map(|e| e.ours.rms / e.chrony.rms).collect();
        ratios.sort_by(f64::total_cmp);
        let median = if ratios.len() % 2 == 1 {
            ratios[ratios.len() / 2]
        } else {
            (ratios[ratios.len() / 2 - 1] + ratios[ratios.len() / 2]) / 2.0
        };
        println!(
            "{name:<8}  {:>14.2} us  {:>13.2} us  {:>10.2}x",
            mean(|e| e.ours.rms) * 1e6,
            mean(|e| e.chrony.rms) * 1e6,
            median
        );
    }
    ExitCode::SUCCESS
}

/// ntpd-lite as a stratum-1 server of the system clock (monitor mode: it adjusts nothing).
fn true_time_server() -> (Daemon, SocketAddr) {
    let port = free_udp_port();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\
         [local]\nstratum = 1\nrefid = \"LOCL\"\n[clock]\nmode = \"monitor\"\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n"
    );
    let mut daemon = Daemon::start("true-time", &config);
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    daemon.wait_serving(address);
    (daemon, address)
}

/// One side-by-side run.
fn run(
    server: SocketAddr,
    impairment: Option<Impairment>,
    seed: u64,
    seconds: f64,
    xleave: bool,
) -> Errors {
    let links: Vec<Link> = impairment
        .map(|imp| {
            (0..2)
                .map(|_| {
                    Link::spawn(
                        "127.0.0.1:0".parse().expect("address"),
                        server,
                        LinkConfig::symmetric(imp, seed),
                    )
                    .expect("link")
                })
                .collect()
        })
        .unwrap_or_default();
    let upstream = |i: usize| links.get(i).map_or(server, Link::local_addr);
    let mut node = Node::new("side-ntpd", 71).sources(&[upstream(0)]);
    if xleave {
        node = node.source_options("xleave = true");
    }
    let ours_address = node.address;
    let ours = node.start();
    let chrony_port = free_udp_port();
    let chronyd = ChronydClient::start(&format!(
        "server {} port {} {}minpoll -2 maxpoll 0\nport {chrony_port}\nbindaddress 127.0.0.72\n\
         allow 127.0.0.0/8\n",
        upstream(1).ip(),
        upstream(1).port(),
        if xleave { "xleave " } else { "" },
    ))
    .expect("chronyd");
    let chrony: SocketAddr = format!("127.0.0.72:{chrony_port}")
        .parse()
        .expect("address");
    let probe = Probe::new();
    let start = Instant::now();
    let mut errors = Samples::default();
    while start.elapsed().as_secs_f64() < seconds {
        std::thread::sleep(Duration::from_millis(500));
        if start.elapsed().as_secs_f64() < seconds / 2.0 {
            continue;
        }
        if let Some(e) = ours
            .try_status()
            .ok()
            .and_then(|s| s["clock"]["error"].as_f64())
        {
            errors.ours.push(e);
        }
        if let Some(e) = chronyd.correction() {
            errors.chrony.push(e);
        }
        let Some(reference) = probe.offset(server) else {
            continue;
        };
        if let Some(o) = probe.offset(ours_address) {
            errors.ours_probed.push(o - reference);
        }
        if let Some(o) = probe.offset(chrony) {
            errors.chrony_probed.push(o - reference);
        }
    }
    let requests = (
        ours.try_status().map_or(0, |status| {
            status["sources"]
                .as_array()
                .map_or(0, |a| a.iter().filter_map(|s| s["sent"].as_u64()).sum())
        }),
        chrony_requests(&chronyd.ntpdata()),
    );
    drop(chronyd);
    drop(ours);
    Errors {
        ours: spread(&errors.ours),
        chrony: spread(&errors.chrony),
        probed: (
            spread(&errors.ours_probed).rms,
            spread(&errors.chrony_probed).rms,
        ),
        requests,
    }
}

/// The requests chronyd sent, from `chronyc ntpdata` ("Total TX : N"); 0 if it did not say.
fn chrony_requests(ntpdata: &str) -> u64 {
    ntpdata
        .lines()
        .filter_map(|line| line.strip_prefix("Total TX"))
        .filter_map(|rest| {
            rest.trim_start_matches([' ', ':'])
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// A query socket with kernel receive timestamps.
struct Probe {
    socket: UdpSocket,
}

impl Probe {
    fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("nonblocking");
        enable_rx_timestamps(&socket).expect("timestamps");
        Self { socket }
    }

    /// The server's offset from the system clock, seconds: of three queries, the one with the
    /// least delay; `None` if none was answered.
    fn offset(&self, server: SocketAddr) -> Option<f64> {
        (0..3)
            .filter_map(|_| self.query(server))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(offset, _)| offset)
    }

    /// One query: (offset, delay), seconds.
    fn query(&self, server: SocketAddr) -> Option<(f64, f64)> {
        let cookie = NtpTimestamp::from_bits(rand::random());
        let request = Packet::client_request(Version::V4, PollInterval::new(0), cookie);
        let mut buf = [0u8; 128];
        while recv_timestamped(&self.socket, &mut buf).is_ok() {} // stale replies
        let t1 = NtpTimestamp::from_system_time(SystemTime::now());
        self.socket.send_to(&request.serialize(), server).ok()?;
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let mut fds = [libc::pollfd {
                fd: self.socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            wait_readable(&mut fds, Some(left)).ok()?;
            while let Ok(got) = recv_timestamped(&self.socket, &mut buf) {
                let Ok((reply, _)) = Packet::parse(&buf[..got.len]) else {
                    continue;
                };
                if got.from != server || reply.origin_timestamp != cookie {
                    continue;
                }
                let t4 = NtpTimestamp::from_system_time(got.at);
                let (t2, t3) = (reply.receive_timestamp, reply.transmit_timestamp);
                let offset: NtpDuration = (t2 - t1).midpoint(t3 - t4);
                let delay = (t4 - t1) - (t3 - t2);
                return Some((offset.to_seconds_f64(), delay.to_seconds_f64()));
            }
        }
    }
}
