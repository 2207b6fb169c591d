//! Interleaved mode (RFC 9769) through the real cores, sans IO: a `Source` with `xleave` asks a
//! `Server` whose replies leave 40 us after their transmit timestamp is written (the kernel's
//! transmit time is kept in a `TransmitLog`), over a symmetric 100 us path, the two clocks equal.
//! Basic mode then errs by -20 us; interleaved mode sees the truth. And the attacks: forged,
//! replayed and reordered replies, a precise time that cannot be the earlier reply's, a lost
//! reply, a server without interleaved mode.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ntp_proto::interleave::TransmitLog;
use ntp_proto::packet::{Packet, Precision, ReferenceId, Stratum};
use ntp_proto::sample::ReplyError;
use ntp_proto::server::{Decision, Server};
use ntp_proto::source::{ReplyOutcome, Source, SourceConfig};
use ntp_proto::system::SystemSnapshot;
use ntp_proto::{Discipline, NtpDuration, NtpTimestamp, PollInterval, ReplyLimits};

const T0: NtpTimestamp = NtpTimestamp::from_parts(3_900_000_000, 0);
/// One-way delay each way.
const PATH: f64 = 100e-6;
/// From the server's transmit timestamp to the packet leaving.
const LATE: f64 = 40e-6;

fn us(micros: f64) -> NtpDuration {
    NtpDuration::from_seconds_f64(micros * 1e-6)
}

fn client_ip() -> IpAddr {
    "192.0.2.7".parse().expect("address")
}

/// A server and its transmit log, and a client source polling it every second.
struct Lab {
    server: Server,
    snapshot: SystemSnapshot,
    log: TransmitLog,
    interleaves: bool,
    source: Source,
    discipline: Discipline,
    start: Instant,
    round: u64,
}

/// One request's journey: what the server sent back and when it reaches the client.
struct Reply {
    bytes: Vec<u8>,
    t1: NtpTimestamp,
    t4: NtpTimestamp,
    interleaved: bool,
}

impl Lab {
    fn new(xleave: bool, server_interleaves: bool) -> Self {
        let config = SourceConfig {
            min_poll: PollInterval::new(0),
            max_poll: PollInterval::new(0),
            xleave,
            ..SourceConfig::default()
        };
        let start = Instant::now();
        let server_address = SocketAddr::from(([192, 0, 2, 1], 123));
        Self {
            server: Server::default(),
            snapshot: SystemSnapshot::local_reference(
                Stratum::PRIMARY,
                ReferenceId::LOCL,
                Precision::new(-24),
                T0,
            ),
            log: TransmitLog::default(),
            interleaves: server_interleaves,
            source: Source::new(server_address, config, start),
            discipline: Discipline::new(Default::default(), None),
            start,
            round: 0,
        }
    }

    /// Sends the next poll and lets the server answer it.
    fn exchange(&mut self) -> Reply {
        let now = self.source.next_poll().expect("polls");
        self.round += 1;
        let t1 = T0 + NtpDuration::from_std(now - self.start);
        let (request, _) = self
            .source
            .poll_transmit(
                now,
                NtpTimestamp::from_bits(0x5eed_0000_0000_0000 ^ self.round),
            )
            .expect("due");
        let t2 = t1 + us(PATH * 1e6);
        // A local reference refreshes its reference time all the time (ntpd-lite's every second):
        // later than the earlier reply whose transmit time an interleaved reply carries.
        self.snapshot.reference_time = t1;
        let from = SocketAddr::new(client_ip(), 40_000);
        let Decision::Respond(mut response) =
            self.server.decide(&request, from, &self.snapshot, t2, now)
        else {
            panic!("answered");
        };
        let interleaved = self.interleaves
            && response.asks_interleaved()
            && response.interleave(&self.log, client_ip());
        let keep = response.keeps_transmit().filter(|_| self.interleaves);
        let t3_written = t2 + us(10.0);
        let departure = t3_written + us(LATE * 1e6);
        let bytes = response.finish(t3_written).to_vec();
        if let Some(receive) = keep {
            self.log.record(client_ip(), receive, departure);
        }
        Reply {
            bytes,
            t1,
            t4: departure + us(PATH * 1e6),
            interleaved,
        }
    }

    fn deliver(&mut self, reply: &Reply) -> ReplyOutcome {
        self.deliver_bytes(reply, &reply.bytes)
    }

    fn deliver_bytes(&mut self, reply: &Reply, bytes: &[u8]) -> ReplyOutcome {
        self.source.handle_reply(
            reply.t1,
            reply.t4,
            bytes,
            &ReplyLimits::default(),
            &self.discipline,
        )
    }

    /// The source's offset estimate now, microseconds.
    fn offset_us(&self) -> f64 {
        let now = T0 + NtpDuration::from_seconds(i64::try_from(self.round).expect("small") + 1);
        self.source
            .estimate(now, &self.discipline)
            .expect("estimate")
            .offset
            .to_seconds_f64()
            * 1e6
    }
}

#[test]
fn interleaved_replies_carry_the_precise_transmit_time_and_remove_the_error() {
    let mut basic = Lab::new(false, true);
    let mut xleave = Lab::new(true, true);
    let mut interleaved = 0;
    for _ in 0..10 {
        let reply = basic.exchange();
        assert_eq!(basic.deliver(&reply), ReplyOutcome::Accepted);
        let reply = xleave.exchange();
        interleaved += usize::from(reply.interleaved);
        assert_eq!(xleave.deliver(&reply), ReplyOutcome::Accepted);
    }
    // Every reply after the first is interleaved: the first request already carried a receive
    // timestamp, so the server kept its reply's transmit time.
    assert_eq!(interleaved, 9);
    assert_eq!(xleave.source.counters().interleaved, 9);
    let (b, x) = (basic.offset_us(), xleave.offset_us());
    assert!(
        (b + LATE * 1e6 / 2.0).abs() < 1.0,
        "basic mode offset {b} us"
    );
    assert!(x.abs() < 1.0, "interleaved offset {x} us");
}

#[test]
fn a_server_without_interleaved_mode_gets_basic_requests_answered_in_basic_mode() {
    let mut lab = Lab::new(true, false);
    for _ in 0..6 {
        let reply = lab.exchange();
        assert!(!reply.interleaved);
        assert_eq!(lab.deliver(&reply), ReplyOutcome::Accepted);
    }
    assert_eq!(lab.source.counters().accepted, 6);
}

#[test]
fn a_lost_reply_is_bridged_by_naming_the_last_completed_exchange() {
    let mut lab = Lab::new(true, true);
    for _ in 0..3 {
        let reply = lab.exchange();
        assert_eq!(lab.deliver(&reply), ReplyOutcome::Accepted);
    }
    let _lost = lab.exchange();
    // The next request names the exchange before the lost one; the server still has it.
    let reply = lab.exchange();
    assert!(reply.interleaved);
    assert_eq!(lab.deliver(&reply), ReplyOutcome::Accepted);
    for _ in 0..4 {
        let reply = lab.exchange();
        assert_eq!(lab.deliver(&reply), ReplyOutcome::Accepted);
    }
    assert!(lab.offset_us().abs() < 1.0, "offset {} us", lab.offset_us());
}

#[test]
fn forged_replayed_and_reordered_interleaved_replies_change_nothing() {
    let mut lab = Lab::new(true, true);
    for _ in 0..3 {
        let reply = lab.exchange();
        assert_eq!(lab.deliver(&reply), ReplyOutcome::Accepted);
    }
    let old = lab.exchange();
    assert_eq!(lab.deliver(&old), ReplyOutcome::Accepted);
    let genuine = lab.exchange();
    assert!(genuine.interleaved);
    let (packet, _) = Packet::parse(&genuine.bytes).expect("parses");
    let before = lab.source.counters();

    // An off-path forger who guesses the origin wrong, with a transmit time 1 ms off.
    let mut forged = packet;
    forged.origin_timestamp = NtpTimestamp::from_bits(packet.origin_timestamp.to_bits() ^ 1);
    forged.transmit_timestamp = packet.transmit_timestamp + us(1000.0);
    assert_eq!(
        lab.deliver_bytes(&genuine, &forged.serialize()),
        ReplyOutcome::Rejected(ReplyError::BogusOrigin)
    );
    // The previous interleaved reply replayed (or reordered behind the new request): its
    // transmit timestamp was used already (RFC 5905 test 1), and its origin names nothing now.
    assert_eq!(
        lab.deliver_bytes(&genuine, &old.bytes),
        ReplyOutcome::Unexpected
    );
    let mut replayed = Packet::parse(&old.bytes).expect("parses").0;
    replayed.transmit_timestamp += us(1.0);
    assert_eq!(
        lab.deliver_bytes(&genuine, &replayed.serialize()),
        ReplyOutcome::Rejected(ReplyError::BogusOrigin)
    );
    // A forged basic-mode answer naming the receive cookie's neighbour: nothing matches.
    let mut basic = packet;
    basic.origin_timestamp = NtpTimestamp::ZERO;
    assert_eq!(
        lab.deliver_bytes(&genuine, &basic.serialize()),
        ReplyOutcome::Rejected(ReplyError::BogusOrigin)
    );
    let after = lab.source.counters();
    assert_eq!(after.accepted, before.accepted);
    // The genuine reply still counts, once.
    assert_eq!(lab.deliver(&genuine), ReplyOutcome::Accepted);
    assert_eq!(lab.deliver(&genuine), ReplyOutcome::Unexpected);
    assert!(lab.offset_us().abs() < 1.0, "offset {} us", lab.offset_us());
}

#[test]
fn a_precise_time_that_cannot_be_the_earlier_replys_is_refused_and_the_client_starts_over() {
    let mut lab = Lab::new(true, true);
    for _ in 0..3 {
        let reply = lab.exchange();
        assert_eq!(lab.deliver(&reply), ReplyOutcome::Accepted);
    }
    let genuine = lab.exchange();
    assert!(genuine.interleaved);
    let (mut packet, _) = Packet::parse(&genuine.bytes).expect("parses");
    // A server (or one on the path) claiming its earlier reply left 5 s after the request came.
    packet.transmit_timestamp += NtpDuration::from_seconds(5);
    assert_eq!(
        lab.deliver_bytes(&genuine, &packet.serialize()),
        ReplyOutcome::Rejected(ReplyError::ImpossibleDelay)
    );
    // The next request asks in basic mode (origin zero), then interleaving resumes.
    let next = lab.exchange();
    assert!(!next.interleaved);
    assert_eq!(lab.deliver(&next), ReplyOutcome::Accepted);
    let after = lab.exchange();
    assert!(after.interleaved);
    assert_eq!(lab.deliver(&after), ReplyOutcome::Accepted);
}
