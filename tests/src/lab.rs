//! A lab of `ntpd-lite` daemons on one machine: each node has its own loopback address
//! (127.0.0.x, so reference IDs differ and loop detection works as on a real network), a virtual
//! clock that may start off and drift, optional upstream sources, and a control socket.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::Daemon;

/// One daemon of a lab.
#[derive(Debug, Clone)]
pub struct Node {
    /// Name, for logs.
    pub name: String,
    /// Where it serves.
    pub address: SocketAddr,
    /// `Some(stratum)`: a local reference clock.
    pub local_stratum: Option<u8>,
    /// Virtual clock: start this many seconds off.
    pub initial_offset: f64,
    /// Virtual clock: natural frequency error, ppm.
    pub drift_ppm: f64,
    /// Upstream servers.
    pub sources: Vec<SocketAddr>,
    /// Poll range of the sources, log2 s.
    pub poll: (i8, i8),
    /// Extra lines for the `[sync]` table.
    pub sync: String,
    /// Lines for a `[leap]` table.
    pub leap: String,
    /// Symmetric peers (`[[peer]]`), polled in the same range as the sources.
    pub peers: Vec<SocketAddr>,
    /// Extra lines for every `[[source]]` (e.g. `xleave = true`).
    pub source_options: String,
}

impl Node {
    /// A node serving on 127.0.0.`host` at a free port.
    pub fn new(name: &str, host: u8) -> Self {
        let ip: IpAddr = format!("127.0.0.{host}").parse().expect("loopback address");
        Self {
            name: name.to_owned(),
            address: SocketAddr::new(ip, crate::tools::free_udp_port()),
            local_stratum: None,
            initial_offset: 0.0,
            drift_ppm: 0.0,
            sources: Vec::new(),
            poll: (-2, 0),
            sync: String::new(),
            leap: String::new(),
            peers: Vec::new(),
            source_options: String::new(),
        }
    }

    /// A primary (or any stratum) server from its own clock.
    pub fn local(mut self, stratum: u8) -> Self {
        self.local_stratum = Some(stratum);
        self
    }

    /// Starts the virtual clock `seconds` off.
    pub fn offset(mut self, seconds: f64) -> Self {
        self.initial_offset = seconds;
        self
    }

    /// Gives the virtual clock a frequency error.
    pub fn drift(mut self, ppm: f64) -> Self {
        self.drift_ppm = ppm;
        self
    }

    /// Adds upstream servers.
    pub fn sources(mut self, sources: &[SocketAddr]) -> Self {
        self.sources.extend_from_slice(sources);
        self
    }

    /// Adds symmetric peers.
    pub fn peers(mut self, peers: &[SocketAddr]) -> Self {
        self.peers.extend_from_slice(peers);
        self
    }

    /// Adds lines to every `[[source]]` table, e.g. `xleave = true`.
    pub fn source_options(mut self, lines: &str) -> Self {
        self.source_options.push_str(lines);
        self.source_options.push('\n');
        self
    }

    /// Adds lines to the `[sync]` table, e.g. `holdover = 3.0`.
    pub fn sync(mut self, lines: &str) -> Self {
        self.sync.push_str(lines);
        self.sync.push('\n');
        self
    }

    /// Adds lines to the `[leap]` table, e.g. `mode = "smear"`.
    pub fn leap(mut self, lines: &str) -> Self {
        self.leap.push_str(lines);
        self.leap.push('\n');
        self
    }

    /// The configuration file.
    pub fn toml(&self) -> String {
        let mut text = format!(
            "[server]\nlisten = [\"{}\"]\n\n[clock]\nmode = \"virtual\"\ninitial-offset = {:?}\ndrift-ppm = {:?}\n\n[control]\nsocket = \"{{dir}}/control.sock\"\n\n",
            self.address, self.initial_offset, self.drift_ppm
        );
        if let Some(stratum) = self.local_stratum {
            text.push_str(&format!("[local]\nstratum = {stratum}\n\n"));
        }
        for source in &self.sources {
            text.push_str(&format!(
                "[[source]]\naddress = \"{source}\"\nminpoll = {}\nmaxpoll = {}\niburst = true\n{}\n",
                self.poll.0, self.poll.1, self.source_options
            ));
        }
        for peer in &self.peers {
            text.push_str(&format!(
                "[[peer]]\naddress = \"{peer}\"\nminpoll = {}\nmaxpoll = {}\n\n",
                self.poll.0, self.poll.1
            ));
        }
        if !self.sync.is_empty() {
            text.push_str(&format!("[sync]\n{}\n", self.sync));
        }
        if !self.leap.is_empty() {
            text.push_str(&format!("[leap]\n{}\n", self.leap));
        }
        text
    }

    /// Starts the daemon and waits until it answers.
    pub fn start(&self) -> Daemon {
        let mut daemon = Daemon::start(&self.name, &self.toml());
        daemon.wait_serving(self.address);
        daemon
    }
}

/// Polls `daemon`'s status until `done` holds (returns it) or `timeout` passes (panics with the
/// last status and the log).
pub fn wait_for(
    daemon: &mut Daemon,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        daemon.assert_running();
        // The control socket appears a moment after start: until then, keep waiting.
        let status = daemon.try_status();
        if let Ok(status) = &status
            && done(status)
        {
            println!("{what}: after {:.1} s", start.elapsed().as_secs_f64());
            return status.clone();
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: not within {timeout:?}; last status {status:?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The daemon's clock minus true time (the system clock), seconds.
pub fn clock_error(status: &Value) -> f64 {
    status["clock"]["error"].as_f64().expect("clock.error")
}

/// The worst |clock error| over `duration`, sampled every 100 ms.
pub fn worst_error_over(daemon: &mut Daemon, duration: Duration) -> f64 {
    let start = Instant::now();
    let mut worst: f64 = 0.0;
    while start.elapsed() < duration {
        daemon.assert_running();
        worst = worst.max(clock_error(&daemon.status()).abs());
        std::thread::sleep(Duration::from_millis(100));
    }
    worst
}
