//! A user-space link emulator: a UDP relay on loopback that delays, jitters, drops, duplicates and
//! reorders datagrams between NTP clients and a server, like `tc netem` but unprivileged,
//! repeatable, and faithful to a few microseconds. The `ntp-link` binary runs one standalone and
//! measures it (`ntp-link measure`).
//!
//! ```text
//!  client ──▶ link.local_addr() ──[forward impairment]──▶ upstream socket ──▶ server
//!  client ◀── link.local_addr() ◀──[backward impairment]── upstream socket ◀── server
//! ```
//!
//! - Clients send to [`Link::local_addr`] (a port on 127.0.0.1 chosen by the kernel). Each client
//!   address gets its own upstream socket, so the server sees one source port per client and each
//!   reply goes back to the client that caused it; the socket closes after 10 s without traffic.
//! - Each direction has an [`Impairment`], applied in the style of netem: a datagram is first lost
//!   with probability `loss`; otherwise it is sent after `delay` plus an exponentially distributed
//!   jitter with mean `jitter`; with probability `reorder` it is held back `reorder_delay` longer, so
//!   that datagrams behind it overtake it; with probability `duplicate` a second copy follows with
//!   its own jitter. Jitter alone can reorder datagrams too, as on a real path.
//! - Random draws come from a seeded [`StdRng`] per direction, and every datagram consumes the same
//!   number of draws whatever happens to it, so the same seed and the same traffic give the same
//!   losses, duplicates and hold-backs on every run.
//! - [`Link::set_forward`] and [`Link::set_backward`] change an impairment while traffic flows; the
//!   change applies to datagrams received after it. [`Link::stats`] counts what each direction did.
//! - [`Link::stop`] closes every socket and waits for the relay's thread to end; dropping the
//!   [`Link`] does the same without waiting.
//!
//! **Timing.** A relay that forwards at once is itself asymmetric: a request finds it asleep (150-200
//! us to wake on a VM), the reply finds it awake, and NTP offsets through it are biased by tens of
//! microseconds. So this relay never forwards at once. One thread owns every socket. Each datagram's
//! deadline is its *kernel* receive timestamp (SO_TIMESTAMPNS) plus its delay, which is at least
//! [`MIN_DELAY`] (0.5 ms; smaller configured delays are raised to it, in both directions alike), so
//! it does not matter when the thread got around to reading it. The thread sleeps (ppoll, timer
//! slack 1 ns) until [`SPIN`] before the earliest deadline, busy-waits the rest, sends one byte to
//! a private sink [`WARM_AHEAD`] before it (the first send after a sleep costs 20-40 us more), and
//! sends the datagram on time. Every datagram gets its own deadline: a slow one never holds up the
//! ones behind it. The queue is bounded ([`MAX_QUEUED`] datagrams per direction, [`MAX_CLIENTS`]
//! clients); beyond that datagrams are dropped and counted as `overflowed`.
//!
//! Where permitted (root or CAP_SYS_NICE), the relay thread runs SCHED_FIFO at the lowest
//! real-time priority, so that other processes cannot delay its wake-ups by milliseconds;
//! `NTP_LINK_NO_RT=1` turns that off.
//!
//! Measured with `ntp-link measure --probes 2000` (probes alternating between a direct loopback
//! path and a 0.5 ms link, user-space T1/T3, kernel T2/T4, 3 ms apart so that the relay sleeps
//! between them) on this 2-CPU VM with a load average of 5.6 from other work, in us, p50 / p99:
//!
//! | path | out | back | offset (p50, p1..p99) |
//! | --- | --- | --- | --- |
//! | direct | 10.2 / 21.2 | 2.5 / 9.6 | +3.7 (+0.7..+9.3) |
//! | link, less 0.5 ms | 14.3 / 34.5 | 5.3 / 13.6 | +4.2 (+0.6..+12.9) |
//! | link, not real-time | 14.6 / 4404 | 5.5 / 3399 | +4.1 (-804..+2120) |
//!
//! So the link adds 0.5 ms plus 3-4 us each way and shifts NTP offsets by +0.4 us at the median
//! (the direct path's +3.7 us is the user-space T1 and T3 themselves). Without the real-time class,
//! on that loaded machine, 1-2% of hops come out milliseconds late.

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::kernel_time::{
    enable_rx_timestamps, recv_timestamped, set_realtime, set_timer_slack, wait_readable,
};

/// The least one-way delay: smaller configured delays are raised to it (see the module doc).
pub const MIN_DELAY: Duration = Duration::from_micros(500);
/// How long before a deadline the relay stops sleeping and busy-waits.
pub const SPIN: Duration = Duration::from_micros(300);
/// How long before a deadline the relay warms its send path with a byte to its sink.
pub const WARM_AHEAD: Duration = Duration::from_micros(30);
/// Most datagrams waiting in one direction's queue; more are dropped as `overflowed`.
pub const MAX_QUEUED: usize = 10_000;
/// Most client addresses one link relays for at once; datagrams from more are `overflowed`.
pub const MAX_CLIENTS: usize = 1_024;
/// A client's upstream socket is closed after this long without traffic (clients such as
/// ntpd-lite and chronyd send each request from a fresh port).
const UPSTREAM_IDLE: Duration = Duration::from_secs(10);
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Index of the client-to-server direction in the counters.
const FORWARD: usize = 0;
/// Index of the server-to-client direction in the counters.
const BACKWARD: usize = 1;

/// What one direction of the link does to each datagram.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Mean of the exponentially distributed extra delay added to `delay` (zero: none).
    pub jitter: Duration,
    /// Probability that a datagram is lost, 0 to 1.
    pub loss: f64,
    /// Probability that a datagram is sent twice, 0 to 1.
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay`, 0 to 1.
    pub reorder: f64,
    /// Extra delay of a held-back datagram.
    pub reorder_delay: Duration,
}

/// An [`Impairment`] whose probabilities are not between 0 and 1.
#[derive(Clone, Copy, PartialEq, Debug, thiserror::Error)]
#[error("link impairment {name} = {value} is not a probability between 0 and 1")]
pub struct InvalidImpairment {
    /// The field at fault.
    pub name: &'static str,
    /// Its value.
    pub value: f64,
}

impl Impairment {
    /// A perfect link: no delay, no loss.
    pub const NONE: Self = Self {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::ZERO,
    };

    /// A fixed delay and nothing else.
    pub const fn delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::NONE
        }
    }

    /// With exponentially distributed jitter of the given mean on top of the delay.
    pub const fn with_jitter(self, mean: Duration) -> Self {
        Self {
            jitter: mean,
            ..self
        }
    }

    /// With the given loss probability.
    pub const fn with_loss(self, probability: f64) -> Self {
        Self {
            loss: probability,
            ..self
        }
    }

    /// With the given duplication probability.
    pub const fn with_duplicate(self, probability: f64) -> Self {
        Self {
            duplicate: probability,
            ..self
        }
    }

    /// With the given probability of holding a datagram back by `extra`.
    pub const fn with_reorder(self, probability: f64, extra: Duration) -> Self {
        Self {
            reorder: probability,
            reorder_delay: extra,
            ..self
        }
    }

    /// Checks that every probability lies in 0..=1.
    pub fn check(&self) -> Result<(), InvalidImpairment> {
        let fields = [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ];
        match fields.iter().find(|(_, p)| !(0.0..=1.0).contains(p)) {
            Some(&(name, value)) => Err(InvalidImpairment { name, value }),
            None => Ok(()),
        }
    }
}

/// How to set up a [`Link`].
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct LinkConfig {
    /// Client to server.
    pub forward: Impairment,
    /// Server to client.
    pub backward: Impairment,
    /// Seed of the random draws; equal seeds and equal traffic give equal runs.
    pub seed: u64,
}

impl LinkConfig {
    /// The same impairment both ways.
    pub const fn symmetric(impairment: Impairment, seed: u64) -> Self {
        Self {
            forward: impairment,
            backward: impairment,
            seed,
        }
    }
}

/// What one direction has done so far.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct DirectionStats {
    /// Datagrams that entered this direction.
    pub received: u64,
    /// Datagrams sent on, duplicates included.
    pub forwarded: u64,
    /// Datagrams lost on purpose (the `loss` probability).
    pub dropped: u64,
    /// Extra copies made (the `duplicate` probability).
    pub duplicated: u64,
    /// Datagrams held back to be overtaken (the `reorder` probability).
    pub reordered: u64,
    /// Datagrams dropped because a queue or the client table was full.
    pub overflowed: u64,
    /// Datagrams the socket refused to send.
    pub send_errors: u64,
}

/// Both directions' counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LinkStats {
    /// Client to server.
    pub forward: DirectionStats,
    /// Server to client.
    pub backward: DirectionStats,
}

/// A running link emulator; see the module docs. Dropping it shuts the relay down.
#[derive(Debug)]
pub struct Link {
    local_addr: SocketAddr,
    impairments: Arc<Mutex<[Impairment; 2]>>,
    counters: Arc<[Counters; 2]>,
    stop: Arc<AtomicBool>,
    wake: UnixDatagram,
    relay: Option<JoinHandle<()>>,
}

impl Link {
    /// Starts a link on a free port of 127.0.0.1 that relays to `server`.
    pub async fn start(server: SocketAddr, config: LinkConfig) -> io::Result<Self> {
        Self::bind((Ipv4Addr::LOCALHOST, 0).into(), server, config).await
    }

    /// Starts a link that listens on `listen` (port 0: any free port) and relays to `server`.
    pub async fn bind(
        listen: SocketAddr,
        server: SocketAddr,
        config: LinkConfig,
    ) -> io::Result<Self> {
        Self::spawn(listen, server, config)
    }

    /// [`Link::bind`] outside an async context (the relay is a thread of its own either way).
    pub fn spawn(listen: SocketAddr, server: SocketAddr, config: LinkConfig) -> io::Result<Self> {
        for impairment in [config.forward, config.backward] {
            impairment
                .check()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let client_side = bind_timestamped(listen)?;
        let local_addr = client_side.local_addr()?;
        let sink = bind_timestamped((Ipv4Addr::LOCALHOST, 0).into())?;
        let warm = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        warm.connect(sink.local_addr()?)?;
        warm.set_nonblocking(true)?;
        let (wake, woken) = UnixDatagram::pair()?;
        woken.set_nonblocking(true)?;
        let impairments = Arc::new(Mutex::new([config.forward, config.backward]));
        let counters = Arc::new([Counters::default(), Counters::default()]);
        let stop = Arc::new(AtomicBool::new(false));
        let relay = Relay {
            client_side,
            server,
            upstreams: Vec::new(),
            by_client: HashMap::new(),
            last_sweep: SystemTime::now(),
            woken,
            warm,
            sink,
            impairments: Arc::clone(&impairments),
            rngs: [
                StdRng::seed_from_u64(config.seed),
                StdRng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15),
            ],
            counters: Arc::clone(&counters),
            stop: Arc::clone(&stop),
            queue: BinaryHeap::new(),
            queued: [0; 2],
            next_seq: 0,
            buf: vec![0; MAX_DATAGRAM],
        };
        let relay = std::thread::Builder::new()
            .name("link-relay".into())
            .spawn(move || relay.run())?;
        Ok(Self {
            local_addr,
            impairments,
            counters,
            stop,
            wake,
            relay: Some(relay),
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters of both directions so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            forward: self.counters[FORWARD].snapshot(),
            backward: self.counters[BACKWARD].snapshot(),
        }
    }

    /// The client-to-server impairment now in force.
    pub fn forward(&self) -> Impairment {
        self.impairments()[FORWARD]
    }

    /// The server-to-client impairment now in force.
    pub fn backward(&self) -> Impairment {
        self.impairments()[BACKWARD]
    }

    /// Changes the client-to-server impairment for datagrams received from now on.
    pub fn set_forward(&self, impairment: Impairment) -> Result<(), InvalidImpairment> {
        impairment.check()?;
        self.impairments()[FORWARD] = impairment;
        Ok(())
    }

    /// Changes the server-to-client impairment for datagrams received from now on.
    pub fn set_backward(&self, impairment: Impairment) -> Result<(), InvalidImpairment> {
        impairment.check()?;
        self.impairments()[BACKWARD] = impairment;
        Ok(())
    }

    fn impairments(&self) -> std::sync::MutexGuard<'_, [Impairment; 2]> {
        // The relay never panics while holding the lock; a poisoned one still holds valid values.
        self.impairments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops relaying, drops every queued datagram, closes every socket, and waits until done.
    pub async fn stop(mut self) {
        self.signal_stop();
        if let Some(relay) = self.relay.take() {
            // The relay ends within one wake-up; a relay that panicked has ended too.
            let _ = relay.join();
        }
    }

    fn signal_stop(&self) {
        self.stop.store(true, Relaxed);
        // An error means the relay already ended (its end is closed); nothing left to wake.
        let _ = self.wake.send(&[0]);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// A non-blocking UDP socket on `address` with kernel receive timestamps.
fn bind_timestamped(address: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(address)?;
    socket.set_nonblocking(true)?;
    enable_rx_timestamps(&socket)?;
    Ok(socket)
}

/// Where a datagram leaves the relay from.
#[derive(Clone, Copy, Debug)]
enum Out {
    /// The client-facing socket (a reply on its way back).
    ClientSide,
    /// The upstream socket of the client with this index (a request on its way out).
    Upstream(usize),
}

/// A datagram on its way through one direction.
#[derive(Debug)]
struct Datagram {
    bytes: Vec<u8>,
    out: Out,
    to: SocketAddr,
    direction: usize,
}

/// A datagram waiting in the timer queue; ordered by deadline, then by admission order.
#[derive(Debug)]
struct Pending {
    due: SystemTime,
    seq: u64,
    datagram: Arc<Datagram>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed, so that [`BinaryHeap`] pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// The random draws for one datagram: always all five, so that the sequence of decisions depends
/// only on the seed and the order of arrival, never on earlier outcomes.
struct Draws {
    loss: f64,
    duplicate: f64,
    reorder: f64,
    jitter: f64,
    duplicate_jitter: f64,
}

impl Draws {
    fn new(rng: &mut StdRng) -> Self {
        Self {
            loss: rng.r#gen(),
            duplicate: rng.r#gen(),
            reorder: rng.r#gen(),
            jitter: rng.r#gen(),
            duplicate_jitter: rng.r#gen(),
        }
    }
}

/// An exponentially distributed delay with the given mean, from a uniform draw in [0, 1).
fn exponential(mean: Duration, uniform: f64) -> Duration {
    // 1 - uniform lies in (0, 1], so the logarithm is finite and at most 0.
    mean.mul_f64(-(1.0 - uniform).ln())
}

/// How long until `at`; zero if it has passed.
fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// Busy-waits until `at`.
fn spin_until(at: SystemTime) {
    while SystemTime::now() < at {
        std::hint::spin_loop();
    }
}

/// A client's socket on the server side.
struct Upstream {
    socket: UdpSocket,
    client: SocketAddr,
    /// The last reply's arrival or the last request's departure, whichever is later.
    idle_since: SystemTime,
}

/// Most datagrams read from one socket per wake-up, so that a flood cannot starve the sends.
const READS_PER_WAKE: usize = 256;

/// The relay's thread: every socket, both directions' draws and one timer queue.
struct Relay {
    client_side: UdpSocket,
    server: SocketAddr,
    /// One socket per client (a free slot is `None`).
    upstreams: Vec<Option<Upstream>>,
    by_client: HashMap<SocketAddr, usize>,
    last_sweep: SystemTime,
    /// Readable when the [`Link`] asks the relay to stop.
    woken: UnixDatagram,
    /// Connected to `sink`: a byte sent here just before a deadline warms the send path.
    warm: UdpSocket,
    sink: UdpSocket,
    impairments: Arc<Mutex<[Impairment; 2]>>,
    rngs: [StdRng; 2],
    counters: Arc<[Counters; 2]>,
    stop: Arc<AtomicBool>,
    queue: BinaryHeap<Pending>,
    queued: [usize; 2],
    next_seq: u64,
    buf: Vec<u8>,
}

impl Relay {
    /// Relays until told to stop, then closes every socket (by returning).
    fn run(mut self) {
        // Best effort: without it, wake-ups are up to 50 us late and the busy-wait absorbs them.
        let _ = set_timer_slack(Duration::from_nanos(1));
        if std::env::var_os("NTP_LINK_NO_RT").is_none() {
            // Best effort, where permitted: other work on the machine then cannot make it late.
            let _ = set_realtime();
        }
        loop {
            let timeout = self.queue.peek().map(|p| until(p.due).saturating_sub(SPIN));
            let mut fds = self.poll_fds();
            if wait_readable(&mut fds, timeout).is_err() || self.stop.load(Relaxed) {
                return;
            }
            self.receive_ready(&fds);
            self.send_due();
            self.close_idle_upstreams();
        }
    }

    /// Closes the upstream sockets of clients gone quiet (checked once a second).
    fn close_idle_upstreams(&mut self) {
        let now = SystemTime::now();
        if now.duration_since(self.last_sweep).unwrap_or_default() < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        for slot in &mut self.upstreams {
            if slot
                .as_ref()
                .is_some_and(|u| u.idle_since + UPSTREAM_IDLE < now)
            {
                if let Some(upstream) = slot.take() {
                    self.by_client.remove(&upstream.client);
                }
            }
        }
    }

    /// The sockets to wait on, in a fixed order: stop, sink, client side, then each upstream.
    fn poll_fds(&self) -> Vec<libc::pollfd> {
        let fd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = vec![
            fd(self.woken.as_raw_fd()),
            fd(self.sink.as_raw_fd()),
            fd(self.client_side.as_raw_fd()),
        ];
        fds.extend(
            self.upstreams
                .iter()
                .map(|u| fd(u.as_ref().map_or(-1, |u| u.socket.as_raw_fd()))),
        );
        fds
    }

    /// Reads what the ready sockets hold and admits it, each datagram at its kernel timestamp.
    fn receive_ready(&mut self, fds: &[libc::pollfd]) {
        if fds[1].revents != 0 {
            while self.sink.recv(&mut self.buf).is_ok() {}
        }
        if fds[2].revents != 0 {
            for _ in 0..READS_PER_WAKE {
                let Ok(got) = recv_timestamped(&self.client_side, &mut self.buf) else {
                    break;
                };
                self.relay_request(got.from, got.len, got.at);
            }
        }
        for (i, pollfd) in fds[3..].iter().enumerate() {
            if pollfd.revents == 0 {
                continue;
            }
            for _ in 0..READS_PER_WAKE {
                let Some(upstream) = self.upstreams[i].as_mut() else {
                    break;
                };
                let Ok(got) = recv_timestamped(&upstream.socket, &mut self.buf) else {
                    break;
                };
                if got.from != self.server {
                    continue; // not part of this association
                }
                upstream.idle_since = upstream.idle_since.max(got.at);
                let datagram = Datagram {
                    bytes: self.buf[..got.len].to_vec(),
                    out: Out::ClientSide,
                    to: upstream.client,
                    direction: BACKWARD,
                };
                self.admit(datagram, got.at);
            }
        }
    }

    /// Queues one client datagram for the server, from that client's upstream socket.
    fn relay_request(&mut self, client: SocketAddr, len: usize, arrival: SystemTime) {
        let Some(index) = self.upstream(client) else {
            self.counters[FORWARD].add_received_overflow();
            return;
        };
        let datagram = Datagram {
            bytes: self.buf[..len].to_vec(),
            out: Out::Upstream(index),
            to: self.server,
            direction: FORWARD,
        };
        self.admit(datagram, arrival);
    }

    /// The index of the upstream socket for `client`, made on first use.
    fn upstream(&mut self, client: SocketAddr) -> Option<usize> {
        if let Some(&index) = self.by_client.get(&client) {
            return Some(index);
        }
        let free = self.upstreams.iter().position(Option::is_none);
        if free.is_none() && self.upstreams.len() >= MAX_CLIENTS {
            return None;
        }
        let local: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
        };
        let upstream = Upstream {
            socket: bind_timestamped(local).ok()?,
            client,
            idle_since: SystemTime::now(),
        };
        let index = match free {
            Some(index) => {
                self.upstreams[index] = Some(upstream);
                index
            }
            None => {
                self.upstreams.push(Some(upstream));
                self.upstreams.len() - 1
            }
        };
        self.by_client.insert(client, index);
        Some(index)
    }

    /// Applies the impairment now in force to one datagram and queues what survives.
    fn admit(&mut self, datagram: Datagram, arrival: SystemTime) {
        let direction = datagram.direction;
        let counters = &self.counters[direction];
        counters.received.fetch_add(1, Relaxed);
        let imp = self
            .impairments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[direction];
        let draws = Draws::new(&mut self.rngs[direction]);
        if draws.loss < imp.loss {
            counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        let base = arrival + imp.delay.max(MIN_DELAY);
        let mut first = base + exponential(imp.jitter, draws.jitter);
        if draws.reorder < imp.reorder {
            counters.reordered.fetch_add(1, Relaxed);
            first += imp.reorder_delay;
        }
        let datagram = Arc::new(datagram);
        if draws.duplicate < imp.duplicate {
            counters.duplicated.fetch_add(1, Relaxed);
            let second = base + exponential(imp.jitter, draws.duplicate_jitter);
            self.push(second, Arc::clone(&datagram));
        }
        self.push(first, datagram);
    }

    fn push(&mut self, due: SystemTime, datagram: Arc<Datagram>) {
        let direction = datagram.direction;
        // A socket with a datagram still to send is not idle before it is sent.
        if let Out::Upstream(i) = datagram.out
            && let Some(upstream) = self.upstreams[i].as_mut()
        {
            upstream.idle_since = upstream.idle_since.max(due);
        }
        if self.queued[direction] >= MAX_QUEUED {
            self.counters[direction].overflowed.fetch_add(1, Relaxed);
            return;
        }
        self.queued[direction] += 1;
        self.next_seq += 1;
        let seq = self.next_seq;
        self.queue.push(Pending { due, seq, datagram });
    }

    /// Sends, each on time, every datagram due within [`SPIN`]: busy-waits to each deadline.
    fn send_due(&mut self) {
        while let Some(due) = self.queue.peek().map(|p| p.due) {
            if until(due) > SPIN {
                return;
            }
            if let Ok(warm_at) = due.duration_since(SystemTime::UNIX_EPOCH) {
                spin_until(SystemTime::UNIX_EPOCH + warm_at.saturating_sub(WARM_AHEAD));
            }
            // Best effort: a full sink only means a colder send.
            let _ = self.warm.send(&[0]);
            spin_until(due);
            let now = SystemTime::now();
            while let Some(pending) = self.queue.peek_mut() {
                if pending.due > now {
                    break;
                }
                let d = PeekMut::pop(pending).datagram;
                self.queued[d.direction] -= 1;
                let socket = match d.out {
                    Out::ClientSide => Some(&self.client_side),
                    Out::Upstream(i) => self.upstreams[i].as_ref().map(|u| &u.socket),
                };
                let counters = &self.counters[d.direction];
                match socket.map(|s| s.send_to(&d.bytes, d.to)) {
                    Some(Ok(_)) => counters.forwarded.fetch_add(1, Relaxed),
                    _ => counters.send_errors.fetch_add(1, Relaxed),
                };
            }
        }
    }
}

/// One direction's counters, shared between the relay and [`Link::stats`].
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    overflowed: AtomicU64,
    send_errors: AtomicU64,
}

impl Counters {
    /// A datagram that never reached the queue: count it as received and overflowed.
    fn add_received_overflow(&self) {
        self.received.fetch_add(1, Relaxed);
        self.overflowed.fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            received: self.received.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            overflowed: self.overflowed.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_jitter_has_the_requested_mean() {
        let mut rng = StdRng::seed_from_u64(7);
        let mean = Duration::from_millis(10);
        let n = 20_000;
        let total: Duration = (0..n).map(|_| exponential(mean, rng.r#gen())).sum();
        let average = total.as_secs_f64() / f64::from(n);
        assert!((average - 0.010).abs() < 0.000_3, "mean {average}");
        assert_eq!(exponential(mean, 0.0), Duration::ZERO);
        assert_eq!(exponential(Duration::ZERO, 0.999), Duration::ZERO);
    }

    #[test]
    fn probabilities_outside_zero_to_one_are_rejected() {
        assert!(Impairment::NONE.with_loss(1.0).check().is_ok());
        let err = Impairment::NONE.with_duplicate(1.5).check();
        assert_eq!(
            err,
            Err(InvalidImpairment {
                name: "duplicate",
                value: 1.5
            })
        );
        assert!(Impairment::NONE.with_loss(f64::NAN).check().is_err());
        assert!(
            Impairment::NONE
                .with_reorder(-0.1, Duration::ZERO)
                .check()
                .is_err()
        );
    }

    #[test]
    fn queue_pops_earliest_deadline_then_arrival_order() {
        let now = SystemTime::now();
        let datagram = |tag: u8| {
            Arc::new(Datagram {
                bytes: vec![tag],
                out: Out::ClientSide,
                to: (Ipv4Addr::LOCALHOST, 9).into(),
                direction: FORWARD,
            })
        };
        let mut heap = BinaryHeap::new();
        let ms = Duration::from_millis;
        for (seq, (delay, tag)) in [(ms(5), 1), (ms(1), 2), (ms(5), 3), (ms(0), 4)]
            .into_iter()
            .enumerate()
        {
            heap.push(Pending {
                due: now + delay,
                seq: seq as u64,
                datagram: datagram(tag),
            });
        }
        let order: Vec<u8> = std::iter::from_fn(|| heap.pop())
            .map(|p| p.datagram.bytes[0])
            .collect();
        assert_eq!(order, [4, 2, 1, 3]);
    }
}
