//! The link emulator against a tiny UDP echo server on 127.0.0.1: delays, asymmetry, jitter, loss,
//! duplication, reordering, runtime changes, routing of replies, and shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ntp_lite_tests::link::{Impairment, Link, LinkConfig, LinkStats, MIN_DELAY};
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep, timeout};

const MS: Duration = Duration::from_millis(1);
/// How late a delayed hop may come out as this test sees it (the relay itself is a few us late;
/// the echo server's and the client's tokio tasks add their wake-ups on a shared machine). Early
/// is never allowed.
const HOP_SLACK: Duration = Duration::from_millis(1);
/// The same for a round trip.
const RTT_SLACK: Duration = Duration::from_millis(2);

/// When and from where the echo server saw each sequence number.
type ServerLog = Arc<Mutex<Vec<(u32, Instant, SocketAddr)>>>;

/// Starts an echo server on 127.0.0.1 that logs each datagram's sequence number and arrival time.
async fn echo_server() -> (SocketAddr, ServerLog) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = socket.local_addr().expect("echo addr");
    let log = ServerLog::default();
    let server_log = Arc::clone(&log);
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let now = Instant::now();
            server_log
                .lock()
                .expect("log")
                .push((seq_of(&buf[..len]), now, from));
            let _ = socket.send_to(&buf[..len], from).await;
        }
    });
    (addr, log)
}

/// A 48-byte datagram (the size of an NTP header) carrying a sequence number.
fn datagram(seq: u32) -> [u8; 48] {
    let mut bytes = [0u8; 48];
    bytes[..4].copy_from_slice(&seq.to_be_bytes());
    bytes
}

fn seq_of(bytes: &[u8]) -> u32 {
    bytes
        .first_chunk::<4>()
        .map_or(u32::MAX, |b| u32::from_be_bytes(*b))
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("bind client")
}

/// Sends one datagram and waits for its echo: (send time, receive time).
async fn ping(client: &UdpSocket, link: &Link, seq: u32) -> (Instant, Instant) {
    let sent = Instant::now();
    client
        .send_to(&datagram(seq), link.local_addr())
        .await
        .expect("send");
    let mut buf = [0u8; 64];
    let (len, _) = timeout(Duration::from_secs(2), client.recv_from(&mut buf))
        .await
        .expect("echo within 2 s")
        .expect("recv");
    assert_eq!(seq_of(&buf[..len]), seq);
    (sent, Instant::now())
}

/// Round-trip times of `count` pings in a row.
async fn rtts(client: &UdpSocket, link: &Link, first_seq: u32, count: u32) -> Vec<Duration> {
    let mut rtts = Vec::new();
    for seq in first_seq..first_seq + count {
        let (sent, received) = ping(client, link, seq).await;
        rtts.push(received - sent);
    }
    rtts
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Asserts that every value is at least `want` (a link is never early), that the fastest is at most
/// `slack` above it (the link itself adds no more), and that the median is within three times the
/// slack (a loaded machine may delay a few datagrams, not most).
fn assert_near(what: &str, values: &[Duration], want: Duration, slack: Duration) {
    let (min, med) = (values.iter().min().copied(), median(values));
    println!("{what}: want {want:?}, min {min:?}, median {med:?}, all {values:?}");
    assert!(
        min >= Some(want),
        "{what}: faster than the configured delay"
    );
    assert!(
        min <= Some(want + slack),
        "{what}: fastest {min:?} too slow"
    );
    assert!(med <= want + 3 * slack, "{what}: median {med:?} too slow");
}

/// Sends `count` datagrams, pausing 1 ms every `burst` of them so no socket buffer overflows.
async fn send_paced(client: &UdpSocket, to: SocketAddr, count: u32, burst: u32) {
    for seq in 0..count {
        client.send_to(&datagram(seq), to).await.expect("send");
        if seq % burst == burst - 1 {
            sleep(MS).await;
        }
    }
}

/// Receives sequence numbers in arrival order until the link has been quiet for `quiet`.
async fn collect(client: &UdpSocket, quiet: Duration) -> Vec<u32> {
    let mut buf = [0u8; 64];
    let mut seqs = Vec::new();
    while let Ok(received) = timeout(quiet, client.recv_from(&mut buf)).await {
        let (len, _) = received.expect("recv");
        seqs.push(seq_of(&buf[..len]));
    }
    seqs
}

/// Pushes `count` paced datagrams through a fresh link and returns what came back, in order.
async fn run_traffic(config: LinkConfig, count: u32, burst: u32) -> (Vec<u32>, LinkStats) {
    let (server, _) = echo_server().await;
    let link = Link::start(server, config).await.expect("link");
    let client = client().await;
    let to = link.local_addr();
    let (_, seqs) = tokio::join!(
        send_paced(&client, to, count, burst),
        collect(&client, 300 * MS)
    );
    let stats = link.stats();
    link.stop().await;
    (seqs, stats)
}

#[tokio::test]
async fn rtt_is_the_sum_of_both_delays() {
    let (server, _) = echo_server().await;
    let config = LinkConfig {
        forward: Impairment::delay(50 * MS),
        backward: Impairment::delay(20 * MS),
        seed: 1,
    };
    let link = Link::start(server, config).await.expect("link");
    let client = client().await;
    let rtts = rtts(&client, &link, 0, 8).await;
    assert_near("rtt 50+20 ms", &rtts, 70 * MS, RTT_SLACK);
    let stats = link.stats();
    assert_eq!((stats.forward.forwarded, stats.backward.forwarded), (8, 8));
}

#[tokio::test]
async fn asymmetric_delays_apply_per_direction() {
    let (server, log) = echo_server().await;
    let config = LinkConfig {
        forward: Impairment::delay(60 * MS),
        backward: Impairment::delay(10 * MS),
        seed: 2,
    };
    let link = Link::start(server, config).await.expect("link");
    let client = client().await;
    let (mut out, mut back) = (Vec::new(), Vec::new());
    for seq in 0..6 {
        let (sent, received) = ping(&client, &link, seq).await;
        let at_server = log
            .lock()
            .expect("log")
            .last()
            .map(|e| e.1)
            .expect("logged");
        out.push(at_server - sent);
        back.push(received - at_server);
    }
    assert_near("client to server", &out, 60 * MS, HOP_SLACK);
    assert_near("server to client", &back, 10 * MS, HOP_SLACK);
}

#[tokio::test]
async fn jitter_adds_an_exponential_delay_with_the_configured_mean() {
    let (server, log) = echo_server().await;
    let forward = Impairment::delay(10 * MS).with_jitter(10 * MS);
    let link = Link::start(
        server,
        LinkConfig {
            forward,
            ..LinkConfig::default()
        },
    )
    .await
    .expect("link");
    let client = client().await;
    let mut sent = BTreeMap::new();
    for seq in 0..100 {
        sent.insert(seq, Instant::now());
        client
            .send_to(&datagram(seq), link.local_addr())
            .await
            .expect("send");
        sleep(2 * MS).await;
    }
    // Every datagram arrives (no loss configured): wait for all of them, however busy the host.
    for _ in 0..3000 {
        if log.lock().expect("log").len() >= 100 {
            break;
        }
        sleep(10 * MS).await;
    }
    let delays: Vec<Duration> = log
        .lock()
        .expect("log")
        .iter()
        .map(|(s, at, _)| *at - sent[s])
        .collect();
    assert_eq!(delays.len(), 100);
    let extra_ms = delays
        .iter()
        .map(|d| (*d - 10 * MS).as_secs_f64() * 1e3)
        .sum::<f64>()
        / 100.0;
    println!(
        "jitter: mean extra delay {extra_ms:.2} ms (configured mean 10 ms), min {:?}",
        delays.iter().min()
    );
    assert!(delays.iter().all(|d| *d >= 10 * MS));
    assert!((7.0..=15.0).contains(&extra_ms), "mean extra {extra_ms} ms");
}

#[tokio::test]
async fn loss_is_near_the_configured_rate_and_repeats_with_the_seed() {
    let lossy = |seed| LinkConfig {
        forward: Impairment::delay(MS).with_loss(1.0 / 3.0),
        backward: Impairment::NONE,
        seed,
    };
    let (first, second, other) = tokio::join!(
        run_traffic(lossy(42), 300, 10),
        run_traffic(lossy(42), 300, 10),
        run_traffic(lossy(43), 300, 10),
    );
    let lost = |(seqs, stats): &(Vec<u32>, LinkStats)| {
        assert_eq!(stats.forward.received, 300, "the kernel dropped nothing");
        assert_eq!(seqs.len() as u64, 300 - stats.forward.dropped);
        let got: BTreeSet<u32> = seqs.iter().copied().collect();
        (0..300).filter(|s| !got.contains(s)).collect::<Vec<u32>>()
    };
    let (a, b, c) = (lost(&first), lost(&second), lost(&other));
    println!(
        "loss 1/3 of 300: seed 42 lost {} twice, seed 43 lost {}",
        a.len(),
        c.len()
    );
    assert!((70..=130).contains(&a.len()), "{} lost", a.len());
    assert_eq!(a, b, "same seed, same losses");
    assert_ne!(a, c, "another seed, other losses");
}

#[tokio::test]
async fn duplication_delivers_some_datagrams_twice() {
    let config = LinkConfig {
        forward: Impairment::delay(MS).with_duplicate(0.5),
        seed: 3,
        ..LinkConfig::default()
    };
    let (seqs, stats) = run_traffic(config, 100, 10).await;
    let mut copies = BTreeMap::<u32, u32>::new();
    for seq in &seqs {
        *copies.entry(*seq).or_default() += 1;
    }
    let twice = copies.values().filter(|&&n| n == 2).count() as u64;
    println!(
        "duplicate 0.5 of 100: {} arrivals, {twice} twice, stats {:?}",
        seqs.len(),
        stats.forward
    );
    assert_eq!(copies.len(), 100, "every datagram arrives");
    assert!(copies.values().all(|&n| n <= 2));
    assert_eq!(twice, stats.forward.duplicated);
    assert_eq!(seqs.len() as u64, 100 + twice);
    assert!((30..=70).contains(&twice));
}

/// How many datagrams arrived after one with a higher sequence number.
fn overtaken(arrivals: &[u32]) -> usize {
    let mut highest = None;
    arrivals
        .iter()
        .filter(|&&seq| {
            let late = highest.is_some_and(|h| seq < h);
            highest = highest.max(Some(seq));
            late
        })
        .count()
}

#[tokio::test]
async fn reordering_lets_later_datagrams_overtake() {
    let reordering = LinkConfig {
        forward: Impairment::delay(5 * MS).with_reorder(0.25, 40 * MS),
        seed: 4,
        ..LinkConfig::default()
    };
    let in_order = LinkConfig {
        forward: Impairment::delay(5 * MS),
        ..reordering
    };
    let ((mixed, stats), (straight, _)) = tokio::join!(
        run_traffic(reordering, 100, 1),
        run_traffic(in_order, 100, 1)
    );
    let late = overtaken(&mixed);
    println!(
        "reorder 0.25 of 100: {} held back, {late} arrived after a later one",
        stats.forward.reordered
    );
    assert_eq!(mixed.len(), 100);
    assert!(late > 0 && late as u64 <= stats.forward.reordered);
    assert!(
        late as u64 * 2 >= stats.forward.reordered,
        "most held datagrams are overtaken"
    );
    assert_eq!(
        overtaken(&straight),
        0,
        "without reordering the order is kept"
    );
    assert_eq!(straight, (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_delay_change_takes_effect_mid_run() {
    let (server, _) = echo_server().await;
    let config = LinkConfig {
        forward: Impairment::delay(20 * MS),
        ..LinkConfig::default()
    };
    let link = Link::start(server, config).await.expect("link");
    let client = client().await;
    assert_near(
        "before",
        &rtts(&client, &link, 0, 4).await,
        20 * MS,
        RTT_SLACK,
    );
    link.set_forward(Impairment::delay(40 * MS)).expect("valid");
    assert_eq!(link.forward(), Impairment::delay(40 * MS));
    assert_near(
        "after doubling",
        &rtts(&client, &link, 4, 4).await,
        40 * MS,
        RTT_SLACK,
    );
    link.set_backward(Impairment::delay(10 * MS))
        .expect("valid");
    assert_near(
        "after adding 10 ms back",
        &rtts(&client, &link, 8, 4).await,
        50 * MS,
        RTT_SLACK,
    );
}

#[tokio::test]
async fn replies_go_back_to_the_client_that_asked() {
    let (server, log) = echo_server().await;
    let link = Link::start(server, LinkConfig::default())
        .await
        .expect("link");
    let (a, b) = (client().await, client().await);
    for seq in 0..5 {
        ping(&a, &link, seq).await;
        ping(&b, &link, 100 + seq).await;
    }
    let sources: BTreeSet<SocketAddr> = log.lock().expect("log").iter().map(|e| e.2).collect();
    assert_eq!(sources.len(), 2, "one upstream port per client");
    assert!(!sources.contains(&link.local_addr()));
}

#[tokio::test]
async fn no_datagram_is_faster_than_the_least_delay() {
    let (server, log) = echo_server().await;
    let client = client().await;
    let link = Link::start(server, LinkConfig::default())
        .await
        .expect("link");
    let mut out = Vec::new();
    for seq in 0..8 {
        let (sent, _) = ping(&client, &link, seq).await;
        let arrived = log.lock().expect("log").last().expect("logged").1;
        out.push(arrived - sent);
    }
    assert_near("no delay configured", &out, MIN_DELAY, HOP_SLACK);
}

#[tokio::test]
async fn invalid_probabilities_are_rejected() {
    let (server, _) = echo_server().await;
    let bad = LinkConfig {
        forward: Impairment::NONE.with_loss(1.5),
        ..LinkConfig::default()
    };
    let err = Link::start(server, bad).await.expect_err("loss 1.5");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    println!("{err}");
    let link = Link::start(server, LinkConfig::default())
        .await
        .expect("link");
    assert!(
        link.set_backward(Impairment::NONE.with_duplicate(-0.5))
            .is_err()
    );
    assert_eq!(
        link.backward(),
        Impairment::NONE,
        "a rejected change changes nothing"
    );
}

#[tokio::test]
async fn stop_and_drop_close_the_port() {
    let (server, log) = echo_server().await;
    let client = client().await;

    let link = Link::start(server, LinkConfig::default())
        .await
        .expect("link");
    let addr = link.local_addr();
    ping(&client, &link, 0).await;
    link.stop().await;
    std::net::UdpSocket::bind(addr).expect("port free right after stop");

    let link = Link::start(server, LinkConfig::default())
        .await
        .expect("link");
    let addr = link.local_addr();
    ping(&client, &link, 1).await;
    drop(link);
    let mut freed = false;
    for _ in 0..100 {
        if std::net::UdpSocket::bind(addr).is_ok() {
            freed = true;
            break;
        }
        sleep(10 * MS).await;
    }
    assert!(freed, "port freed within 1 s of drop");
    client.send_to(&datagram(2), addr).await.expect("send");
    sleep(50 * MS).await;
    assert_eq!(
        log.lock().expect("log").len(),
        2,
        "nothing relayed after shutdown"
    );
}
