//! A user-space link emulator: a UDP relay on loopback that delays, jitters, drops, duplicates and
//! reorders datagrams between NTP clients and a server, like `tc netem` but unprivileged and
//! repeatable.
//!
//! ```text
//!  client ──▶ link.local_addr() ──[forward impairment]──▶ upstream socket ──▶ server
//!  client ◀── link.local_addr() ◀──[backward impairment]── upstream socket ◀── server
//! ```
//!
//! - Clients send to [`Link::local_addr`] (a port on 127.0.0.1 chosen by the kernel). Each client
//!   address gets its own upstream socket, so the server sees one source port per client and each
//!   reply goes back to the client that caused it.
//! - Each direction has an [`Impairment`], applied in the style of netem: a datagram is first lost
//!   with probability `loss`; otherwise it is sent after `delay` plus an exponentially distributed
//!   jitter with mean `jitter`; with probability `reorder` it is held back `reorder_delay` longer, so
//!   that datagrams behind it overtake it; with probability `duplicate` a second copy follows with
//!   its own jitter. Jitter alone can reorder datagrams too, as on a real path.
//! - Every datagram gets its own deadline, measured from the moment it was received, in one timer
//!   queue per direction: a slow datagram never holds up the ones behind it. The queues are bounded
//!   ([`MAX_QUEUED`] datagrams, [`MAX_CLIENTS`] clients); beyond that datagrams are dropped and
//!   counted as `overflowed`.
//! - Random draws come from a seeded [`StdRng`] per direction, and every datagram consumes the same
//!   number of draws whatever happens to it, so the same seed and the same traffic give the same
//!   losses, duplicates and hold-backs on every run.
//! - [`Link::set_forward`] and [`Link::set_backward`] change an impairment while traffic flows; the
//!   change applies to datagrams received after it. [`Link::stats`] counts what each direction did.
//! - [`Link::stop`] closes every socket and waits for the relay's tasks to end; dropping the
//!   [`Link`] does the same without waiting.
//!
//! A datagram never leaves before its deadline. Timers have tokio's 1 ms resolution and round up,
//! so a delayed hop comes out about 1 to 2 ms late (measured on loopback); a hop without delay
//! forwards at once.

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep_until};

/// Most datagrams waiting in one direction's timer queue; more are dropped as `overflowed`.
pub const MAX_QUEUED: usize = 10_000;
/// Most distinct client addresses one link relays for; datagrams from more are `overflowed`.
pub const MAX_CLIENTS: usize = 1_024;
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
    forward: watch::Sender<Impairment>,
    backward: watch::Sender<Impairment>,
    counters: Arc<[Counters; 2]>,
    stop: Option<oneshot::Sender<()>>,
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
        for impairment in [config.forward, config.backward] {
            impairment
                .check()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let client_side = Arc::new(UdpSocket::bind(listen).await?);
        let local_addr = client_side.local_addr()?;
        let counters = Arc::new([Counters::default(), Counters::default()]);
        let (forward, forward_rx) = watch::channel(config.forward);
        let (backward, backward_rx) = watch::channel(config.backward);
        let mut tasks = JoinSet::new();
        let seeds = [config.seed, config.seed ^ 0x9e37_79b9_7f4a_7c15];
        let forward_tx = Scheduler::spawn(&mut tasks, forward_rx, seeds[0], &counters, FORWARD);
        let backward_tx = Scheduler::spawn(&mut tasks, backward_rx, seeds[1], &counters, BACKWARD);
        let (stop, stop_rx) = oneshot::channel();
        let relay = Relay {
            client_side,
            server,
            forward: forward_tx,
            backward: backward_tx,
            counters: Arc::clone(&counters),
            upstreams: HashMap::new(),
            tasks,
        };
        let relay = tokio::spawn(relay.run(stop_rx));
        Ok(Self {
            local_addr,
            forward,
            backward,
            counters,
            stop: Some(stop),
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
        *self.forward.borrow()
    }

    /// The server-to-client impairment now in force.
    pub fn backward(&self) -> Impairment {
        *self.backward.borrow()
    }

    /// Changes the client-to-server impairment for datagrams received from now on.
    pub fn set_forward(&self, impairment: Impairment) -> Result<(), InvalidImpairment> {
        impairment.check()?;
        self.forward.send_replace(impairment);
        Ok(())
    }

    /// Changes the server-to-client impairment for datagrams received from now on.
    pub fn set_backward(&self, impairment: Impairment) -> Result<(), InvalidImpairment> {
        impairment.check()?;
        self.backward.send_replace(impairment);
        Ok(())
    }

    /// Stops relaying, drops every queued datagram, closes every socket, and waits until done.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the relay already ended; nothing left to stop.
            let _ = stop.send(());
        }
        if let Some(relay) = self.relay.take() {
            // A relay that panicked has ended too; its panic is not the caller's concern here.
            let _ = relay.await;
        }
    }
}

/// The task that owns the client-facing socket and one upstream socket per client.
struct Relay {
    client_side: Arc<UdpSocket>,
    server: SocketAddr,
    forward: mpsc::Sender<Datagram>,
    backward: mpsc::Sender<Datagram>,
    counters: Arc<[Counters; 2]>,
    upstreams: HashMap<SocketAddr, Arc<UdpSocket>>,
    tasks: JoinSet<()>,
}

impl Relay {
    /// Relays client datagrams until told to stop or the [`Link`] is dropped, then ends every task.
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                _ = &mut stop => break,
                received = self.client_side.recv_from(&mut buf) => {
                    // Errors on an unconnected UDP socket are transient (e.g. ICMP); keep going.
                    if let Ok((len, client)) = received {
                        self.relay_request(client, &buf[..len]).await;
                    }
                }
            }
        }
        self.tasks.shutdown().await;
    }

    /// Queues one client datagram for the server, from that client's upstream socket.
    async fn relay_request(&mut self, client: SocketAddr, bytes: &[u8]) {
        let arrival = Instant::now();
        let Some(out) = self.upstream(client).await else {
            self.counters[FORWARD].add_received_overflow();
            return;
        };
        let datagram = Datagram {
            arrival,
            bytes: bytes.to_vec(),
            out,
            to: self.server,
        };
        if self.forward.try_send(datagram).is_err() {
            self.counters[FORWARD].add_received_overflow();
        }
    }

    /// The upstream socket for `client`, made (with its reply task) on first use.
    async fn upstream(&mut self, client: SocketAddr) -> Option<Arc<UdpSocket>> {
        if let Some(socket) = self.upstreams.get(&client) {
            return Some(Arc::clone(socket));
        }
        if self.upstreams.len() >= MAX_CLIENTS {
            return None;
        }
        let local: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
        };
        let socket = Arc::new(UdpSocket::bind(local).await.ok()?);
        let replies = Replies {
            upstream: Arc::clone(&socket),
            server: self.server,
            client,
            client_side: Arc::clone(&self.client_side),
            backward: self.backward.clone(),
            counters: Arc::clone(&self.counters),
        };
        self.tasks.spawn(replies.run());
        self.upstreams.insert(client, Arc::clone(&socket));
        Some(socket)
    }
}

/// The task that takes the server's replies on one client's upstream socket.
struct Replies {
    upstream: Arc<UdpSocket>,
    server: SocketAddr,
    client: SocketAddr,
    client_side: Arc<UdpSocket>,
    backward: mpsc::Sender<Datagram>,
    counters: Arc<[Counters; 2]>,
}

impl Replies {
    async fn run(self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let Ok((len, from)) = self.upstream.recv_from(&mut buf).await else {
                continue;
            };
            if from != self.server {
                continue; // not part of this association
            }
            let datagram = Datagram {
                arrival: Instant::now(),
                bytes: buf[..len].to_vec(),
                out: Arc::clone(&self.client_side),
                to: self.client,
            };
            if self.backward.try_send(datagram).is_err() {
                self.counters[BACKWARD].add_received_overflow();
            }
        }
    }
}

/// A datagram on its way through one direction.
#[derive(Debug)]
struct Datagram {
    /// When the relay received it: all delays count from here.
    arrival: Instant,
    bytes: Vec<u8>,
    /// The socket to send it from.
    out: Arc<UdpSocket>,
    to: SocketAddr,
}

/// A datagram waiting in the timer queue; ordered by deadline, then by admission order.
#[derive(Debug)]
struct Pending {
    due: Instant,
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

/// One direction's timer queue: decides each datagram's fate and sends it when due.
struct Scheduler {
    incoming: mpsc::Receiver<Datagram>,
    impairment: watch::Receiver<Impairment>,
    rng: StdRng,
    counters: Arc<[Counters; 2]>,
    direction: usize,
    queue: BinaryHeap<Pending>,
    next_seq: u64,
}

impl Scheduler {
    /// Spawns the scheduler of `direction` ([`FORWARD`] or [`BACKWARD`]); returns its input.
    fn spawn(
        tasks: &mut JoinSet<()>,
        impairment: watch::Receiver<Impairment>,
        seed: u64,
        counters: &Arc<[Counters; 2]>,
        direction: usize,
    ) -> mpsc::Sender<Datagram> {
        let (tx, incoming) = mpsc::channel(MAX_QUEUED);
        let scheduler = Self {
            incoming,
            impairment,
            rng: StdRng::seed_from_u64(seed),
            counters: Arc::clone(counters),
            direction,
            queue: BinaryHeap::new(),
            next_seq: 0,
        };
        tasks.spawn(scheduler.run());
        tx
    }

    async fn run(mut self) {
        loop {
            let next = self.queue.peek().map(|p| p.due);
            tokio::select! {
                biased;
                () = sleep_until_some(next) => self.send_due().await,
                received = self.incoming.recv() => match received {
                    Some(datagram) => {
                        self.admit(datagram);
                        // A datagram already due (no delay) goes out now, not at the next tick.
                        self.send_due().await;
                    }
                    None => return,
                },
            }
        }
    }

    /// Applies the impairment now in force to one datagram and queues what survives.
    fn admit(&mut self, datagram: Datagram) {
        let counters = &self.counters[self.direction];
        counters.received.fetch_add(1, Relaxed);
        let imp = *self.impairment.borrow();
        let draws = Draws::new(&mut self.rng);
        if draws.loss < imp.loss {
            counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        let base = datagram.arrival + imp.delay;
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

    fn push(&mut self, due: Instant, datagram: Arc<Datagram>) {
        if self.queue.len() >= MAX_QUEUED {
            self.counters[self.direction]
                .overflowed
                .fetch_add(1, Relaxed);
            return;
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        self.queue.push(Pending { due, seq, datagram });
    }

    /// Sends every datagram whose deadline has passed, earliest first.
    async fn send_due(&mut self) {
        let counters = &self.counters[self.direction];
        let now = Instant::now();
        while let Some(pending) = self.queue.peek_mut() {
            if pending.due > now {
                break;
            }
            let d = PeekMut::pop(pending).datagram;
            match d.out.send_to(&d.bytes, d.to).await {
                Ok(_) => counters.forwarded.fetch_add(1, Relaxed),
                Err(_) => counters.send_errors.fetch_add(1, Relaxed),
            };
        }
    }
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One direction's counters, shared between its tasks and [`Link::stats`].
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
    /// A datagram that never reached the scheduler: count it as received and overflowed.
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
        let now = Instant::now();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("nonblocking");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let out = Arc::new(rt.block_on(async { UdpSocket::from_std(socket).expect("tokio") }));
        let datagram = |tag: u8| {
            Arc::new(Datagram {
                arrival: now,
                bytes: vec![tag],
                out: Arc::clone(&out),
                to: (Ipv4Addr::LOCALHOST, 9).into(),
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
