//! Hostile peers over real UDP on loopback. A malicious server races every genuine reply with
//! forgeries, replays, floods and a jump; a malicious client floods the server with every mode,
//! version and length. Each test asserts what must hold: the clock is not moved, the source keeps
//! polling, the server keeps answering honest clients, no reply is longer than its request, and
//! every datagram is counted once.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ntp_lite_tests::client::Client;
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::fake_server::{FakeServer, Script, reply};
use ntp_lite_tests::lab::{Node, clock_error, wait_for, worst_error_over};
use ntp_proto::{Mode, NtpDuration, NtpTimestamp, Packet, ReferenceId, Stratum};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// A tiny deterministic generator (xorshift), so that every run sends the same bytes.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// The one source of a status.
fn source(status: &Value) -> &Value {
    &status["sources"][0]
}

fn counter(value: &Value, name: &str) -> u64 {
    value[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {value}"))
}

/// Every datagram a client association was handed: used, failed a check, or ignored.
fn handled(status: &Value) -> u64 {
    let s = source(status);
    counter(s, "accepted") + counter(s, "rejected") + counter(s, "ignored")
}

/// A scripted server that counts what it sends and can be muted; the script gets the request,
/// T2 and the number of the request (from 0).
struct Scripted {
    server: FakeServer,
    sent: Arc<AtomicU64>,
    muted: Arc<AtomicBool>,
}

impl Scripted {
    fn start(
        script: impl Fn(&Packet, NtpTimestamp, u64) -> Vec<Vec<u8>> + Send + Sync + 'static,
    ) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let muted = Arc::new(AtomicBool::new(false));
        let requests = AtomicU64::new(0);
        let (counted, mute) = (Arc::clone(&sent), Arc::clone(&muted));
        let script: Script = Box::new(move |request, t2| {
            if mute.load(Ordering::SeqCst) {
                return Vec::new();
            }
            let datagrams = script(request, t2, requests.fetch_add(1, Ordering::SeqCst));
            counted.fetch_add(datagrams.len() as u64, Ordering::SeqCst);
            datagrams
        });
        let server = FakeServer::start(IpAddr::from([127, 0, 0, 1]), script).expect("bind");
        Self {
            server,
            sent,
            muted,
        }
    }

    /// Stops answering and returns how many datagrams were sent in all.
    fn mute(&self) -> u64 {
        self.muted.store(true, Ordering::SeqCst);
        self.sent.load(Ordering::SeqCst)
    }
}

/// A client daemon on 127.0.0.`host` with `server` as its one source, its virtual clock on time.
fn client_of(name: &str, host: u8, server: SocketAddr) -> Daemon {
    Node::new(name, host).sources(&[server]).start()
}

/// Mutes `server`, then waits until the daemon has handled every datagram it sent, and checks that
/// the source's counters add up.
fn assert_every_datagram_counted(daemon: &mut Daemon, server: &Scripted, what: &str) -> Value {
    let sent = server.mute();
    let status = wait_for(
        daemon,
        DEADLINE,
        &format!("{what}: all {sent} datagrams handled"),
        |s| handled(s) >= sent,
    );
    let s = source(&status);
    ntp_lite_tests::figures!(
        "{what}: server sent {sent} datagrams; source sent {} requests, accepted {}, rejected {}, ignored {}",
        counter(s, "sent"),
        counter(s, "accepted"),
        counter(s, "rejected"),
        counter(s, "ignored")
    );
    assert_eq!(handled(&status), sent, "each datagram counted once: {s}");
    assert!(counter(s, "accepted") <= counter(s, "sent"), "{s}");
    status
}

/// A reply claiming a time 1000 s ahead.
fn ahead(request: &Packet, t2: NtpTimestamp) -> Packet {
    reply(request, t2, NtpDuration::from_seconds(1000))
}

fn bytes_of(packet: &Packet) -> Vec<u8> {
    packet.serialize().to_vec()
}

/// `packet` with its first byte (leap, version, mode) replaced.
fn with_first_byte(packet: &Packet, first: u8) -> Vec<u8> {
    let mut bytes = bytes_of(packet);
    bytes[0] = first;
    bytes
}

/// Everything an attacker can send before the genuine reply arrives: each is wrong in one way
/// that RFC 5905's packet tests or the mode and version checks catch, and each claims +1000 s.
fn forgeries(request: &Packet, t2: NtpTimestamp, random: &mut Bytes) -> Vec<Vec<u8>> {
    let forged = ahead(request, t2);
    let wrong_origin = request.transmit_timestamp + NtpDuration::from_seconds(1);
    let kiss = |code: &[u8; 4], mode: Mode, origin: NtpTimestamp| Packet {
        mode,
        stratum: Stratum::UNSPECIFIED,
        reference_id: ReferenceId::from_bytes(*code),
        origin_timestamp: origin,
        ..forged
    };
    let mut out = vec![
        // Broadcast (mode 5), echoing our origin and as a real broadcast does (origin zero).
        bytes_of(&Packet {
            mode: Mode::BROADCAST,
            ..forged
        }),
        bytes_of(&Packet {
            mode: Mode::BROADCAST,
            origin_timestamp: NtpTimestamp::ZERO,
            ..forged
        }),
        // Bogus origin (RFC 5905 section 8), and a zero origin.
        bytes_of(&Packet {
            origin_timestamp: wrong_origin,
            ..forged
        }),
        bytes_of(&Packet {
            origin_timestamp: NtpTimestamp::ZERO,
            ..forged
        }),
        // Kiss-o'-death whose origin does not match, or that is not a server packet.
        bytes_of(&kiss(b"DENY", Mode::SERVER, wrong_origin)),
        bytes_of(&kiss(b"RATE", Mode::SERVER, wrong_origin)),
        bytes_of(&kiss(b"DENY", Mode::BROADCAST, request.transmit_timestamp)),
        bytes_of(&kiss(b"RATE", Mode::BROADCAST, request.transmit_timestamp)),
        // Truncated, padded to a length no extension field explains, and empty of sense.
        bytes_of(&forged)[..47].to_vec(),
        [bytes_of(&forged), vec![0xa5; 7]].concat(),
        vec![0; 48],
        random.fill(48),
        random.fill(300),
    ];
    // Every other mode (0-3, 6, 7) and every unsupported version (0, 5, 6, 7), echoing our origin.
    for mode in [0u8, 1, 2, 3, 6, 7] {
        out.push(with_first_byte(&forged, (4 << 3) | mode));
    }
    for version in [0u8, 5, 6, 7] {
        out.push(with_first_byte(&forged, (version << 3) | 4));
    }
    out
}

#[test]
fn forgeries_racing_every_genuine_reply_never_move_the_clock() {
    let previous: Mutex<Option<Vec<u8>>> = Mutex::new(None);
    let random = Mutex::new(Bytes(0x5eed_1234_abcd_0001));
    let server = Scripted::start(move |request, t2, _| {
        let mut random = random.lock().expect("lock");
        let genuine = bytes_of(&reply(request, t2, NtpDuration::ZERO));
        let mut out = forgeries(request, t2, &mut random);
        out.push(genuine.clone());
        // A duplicate of the genuine reply, and a replay of the one before.
        out.push(genuine.clone());
        if let Some(stale) = previous.lock().expect("lock").replace(genuine) {
            out.push(stale);
        }
        out
    });
    let mut daemon = client_of("forged", 61, server.server.addr());
    wait_for(
        &mut daemon,
        DEADLINE,
        "synchronized through forgeries",
        |s| s["synchronized"] == true && counter(source(s), "accepted") >= 8,
    );
    let worst = worst_error_over(&mut daemon, Duration::from_secs(3));
    let status = assert_every_datagram_counted(&mut daemon, &server, "forgeries");
    let s = source(&status);
    ntp_lite_tests::figures!(
        "forgeries: worst clock error over 3 s {worst:.6} s; poll 2^{} s",
        s["poll"]
    );
    assert!(worst < 0.001, "the clock moved: {worst} s");
    assert!(clock_error(&status).abs() < 0.001);
    assert_eq!(s["state"], "selected", "{s}");
    assert!(
        s["poll"].as_i64() <= Some(0),
        "a forged RATE raised the poll: {s}"
    );
    // Each request drew 22 forgeries and 2 copies of old replies, all rejected or ignored.
    assert!(counter(s, "rejected") + counter(s, "ignored") >= 22 * counter(s, "accepted"));
    // The source keeps polling after a forged DENY.
    let sent = counter(s, "sent");
    wait_for(&mut daemon, DEADLINE, "still polling", |now| {
        counter(source(now), "sent") > sent + 2
    });
}

#[test]
fn a_flood_of_bogus_replies_is_counted_and_the_genuine_one_still_used() {
    let random = Mutex::new(Bytes(0xf100_d000_0000_0002));
    // 200 bogus datagrams before each of the first 20 genuine replies: 4,000 in all.
    let server = Scripted::start(move |request, t2, n| {
        let mut random = random.lock().expect("lock");
        let mut out = Vec::new();
        if n < 20 {
            for i in 0..200u64 {
                out.push(if i % 2 == 0 {
                    bytes_of(&Packet {
                        origin_timestamp: NtpTimestamp::from_bits(random.next()),
                        ..ahead(request, t2)
                    })
                } else {
                    let len = 48 + (random.next() % 400) as usize;
                    random.fill(len)
                });
            }
        }
        out.push(bytes_of(&reply(request, t2, NtpDuration::ZERO)));
        out
    });
    let mut daemon = client_of("flooded", 62, server.server.addr());
    wait_for(
        &mut daemon,
        DEADLINE,
        "synchronized through the flood",
        |s| s["synchronized"] == true && counter(source(s), "accepted") >= 24,
    );
    let status = assert_every_datagram_counted(&mut daemon, &server, "flood");
    let s = source(&status);
    assert!(
        clock_error(&status).abs() < 0.001,
        "{}",
        clock_error(&status)
    );
    assert!(
        counter(s, "rejected") + counter(s, "ignored") >= 4000,
        "{s}"
    );
}

#[test]
fn a_lone_source_that_jumps_2000_s_is_refused_and_still_polled() {
    let jump = Arc::new(AtomicI64::new(0));
    let offset = Arc::clone(&jump);
    let server = Scripted::start(move |request, t2, _| {
        let seconds = offset.load(Ordering::SeqCst);
        vec![bytes_of(&reply(
            request,
            t2,
            NtpDuration::from_seconds(seconds),
        ))]
    });
    let mut daemon = client_of("jumped", 63, server.server.addr());
    let status = wait_for(&mut daemon, DEADLINE, "synchronized", |s| {
        s["synchronized"] == true && clock_error(s).abs() < 0.001
    });
    jump.store(2000, Ordering::SeqCst);
    let sent = counter(source(&status), "sent");
    let after = wait_for(&mut daemon, DEADLINE, "the jump seen and refused", |s| {
        counter(source(s), "sent") > sent + 8
            && s["sources"][0]["offset"]
                .as_f64()
                .is_some_and(|o| o > 1000.0)
    });
    let worst = worst_error_over(&mut daemon, Duration::from_secs(2));
    ntp_lite_tests::figures!(
        "jump: source offset {} s; worst clock error {worst:.6} s",
        source(&after)["offset"]
    );
    assert!(worst < 0.01, "the clock followed the jump: {worst} s");
    assert!(
        daemon.log().contains("panic-threshold"),
        "the refusal is logged"
    );
    server.mute();
}

/// A local stratum 1 server on 127.0.0.`host`.
fn server_on(name: &str, host: u8) -> (Daemon, SocketAddr) {
    let node = Node::new(name, host).local(1);
    let daemon = node.start();
    (daemon, node.address)
}

#[test]
fn a_hostile_client_flood_never_silences_an_honest_client_and_every_datagram_is_counted() {
    let (mut daemon, address) = server_on("flood-target", 64);
    let (received_before, _, _) = daemon.server_counters();
    let stop = Arc::new(AtomicBool::new(false));
    // The attacker: every mode and version, lengths from empty to jumbo, random bytes, from
    // 127.0.0.65 (one socket per length, so that each reply can be matched to its request size).
    let attacker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let lengths = [0usize, 1, 12, 47, 48, 49, 52, 68, 72, 120, 400, 1200];
            let sockets: Vec<(usize, UdpSocket)> = lengths
                .iter()
                .map(|&len| {
                    let socket = UdpSocket::bind("127.0.0.65:0").expect("bind");
                    socket.connect(address).expect("connect");
                    socket.set_nonblocking(true).expect("nonblocking");
                    (len, socket)
                })
                .collect();
            let mut random = Bytes(0xa77a_c4e5_0000_0003);
            let (mut sent, mut answered, mut longest_reply_excess) = (0u64, 0u64, i64::MIN);
            let mut buffer = [0u8; 2048];
            let started = Instant::now();
            // Bounded: 30,000 datagrams or 30 s, whichever first.
            while sent < 30_000 && started.elapsed() < Duration::from_secs(30) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for (len, socket) in &sockets {
                    let mut bytes = random.fill(*len);
                    if let Some(first) = bytes.first_mut() {
                        *first = (random.next() as u8) & 0x3f; // LI 0, any version and mode
                    }
                    if socket.send(&bytes).is_ok() {
                        sent += 1;
                    }
                    while let Ok(n) = socket.recv(&mut buffer) {
                        answered += 1;
                        longest_reply_excess = longest_reply_excess.max(n as i64 - *len as i64);
                    }
                }
                if sent % 1200 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            (sent, answered, longest_reply_excess)
        })
    };
    // The honest client, from 127.0.0.66: every query answered while the flood runs.
    let honest = {
        let socket = UdpSocket::bind("127.0.0.66:0").expect("bind");
        socket.connect(address).expect("connect");
        Client::from_socket(socket).expect("client")
    };
    let mut honest_sent = 0u64;
    for _ in 0..40 {
        let answered = (0..5).any(|_| {
            honest_sent += 1;
            honest.query(4, 6).is_ok_and(|a| a.sample.is_ok())
        });
        assert!(
            answered,
            "an honest client went unanswered during the flood"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, answered, excess) = attacker.join().expect("attacker");
    // Loopback may drop under the flood; what arrived is counted exactly once.
    let deadline = Instant::now() + DEADLINE;
    let (received, responses, dropped) = loop {
        let (received, responses, dropped) = daemon.server_counters();
        if received == responses + dropped && received >= received_before + honest_sent / 2 {
            break (received, responses, dropped);
        }
        assert!(
            Instant::now() < deadline,
            "counters never added up: {received} received, {responses} answered, {dropped} dropped"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    ntp_lite_tests::figures!(
        "hostile client: sent {sent} datagrams, {answered} answered (longest reply minus request: \
         {excess} bytes); server received {received}, answered {responses}, dropped {dropped}; \
         honest client: 40 of 40 queries answered"
    );
    daemon.assert_running();
    assert!(sent >= 1000, "the flood ran: {sent}");
    assert!(
        excess <= 0,
        "a reply was longer than its request by {excess} bytes"
    );
    assert!(received - received_before <= sent + honest_sent);
}
