//! The server's whole decision (`Server::decide`: parse, mode, version, access list, rate limit,
//! answer) on arbitrary datagrams, client addresses, policies, system snapshots and timing. It
//! must never panic; a reply is never longer than the request, always parses as a mode 4 answer
//! to that request, is a kiss-o'-death only for a denied client (DENY) or a rate-limited one
//! (RATE, only with a limiter that kisses), and otherwise never looks like one; each drop has the
//! reason of the first gate the request fails; the rate limiter answers no more than its burst
//! plus one per interval elapsed, and of a run of requests it limits (between two it allows) it
//! kisses at most one in `KOD_EVERY`.
//!
//! Input: a 64-byte header choosing the policy, snapshot, client and timing (below), then the
//! datagram, decided `repeats` times, `step_ms` apart.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ntp_proto::packet::ParseError;
use ntp_proto::server::{AccessList, Cidr, DenyAction, KOD_EVERY, RateLimitConfig, RateLimiter};
use ntp_proto::system::DEFAULT_POLL_LIMITS;
use ntp_proto::{
    Decision, DropReason, LeapIndicator, Mode, NtpDuration, NtpTimestamp, Packet, Precision,
    ReferenceId, Server, Stratum, SystemSnapshot,
};

const SETUP_LEN: usize = 64;

/// What the policy and the request say should happen, before the rate limiter has its say.
#[derive(Debug, PartialEq)]
enum Expected {
    Drop(DropReason),
    Deny,
    Serve,
}

struct Setup<'a> {
    server: Server,
    access: AccessList,
    rate: Option<RateLimitConfig>,
    client: IpAddr,
    snapshot: SystemSnapshot,
    receive: NtpTimestamp,
    /// The rate limiter's epoch; the requests come `step_ms` apart from it on.
    epoch: Instant,
    repeats: usize,
    step_ms: u64,
    datagram: &'a [u8],
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(data[at..at + 8].try_into().unwrap())
}

/// Layout: 0 flags (bit 0 allow list, 1 deny list, 2 deny action ignore, 3 rate limiter, 4 it
/// kisses, 5 IPv6 client, 6 local reference snapshot, else unsynchronized); 1-2 allow prefix
/// length and the bits flipped in the client's last byte to make its network; 3-4 the same for
/// deny; 5 burst; 6-7 interval ms; 8-9 rate prefix lengths v4, v6 (any u8: the core must cope);
/// 10 repeats; 11-13 step ms; 14-21 receive time; 22 snapshot stratum (low 5 bits) and leap (top
/// 2); 23 precision; 24-31 reference time; 32-39 root delay; 40-47 root dispersion; 48-63 client.
fn setup(data: &[u8]) -> Option<Setup<'_>> {
    let (head, datagram) = data.split_at_checked(SETUP_LEN)?;
    let flags = head[0];
    let client = if flags & 1 << 5 != 0 {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&head[48..64]).unwrap()))
    } else {
        IpAddr::V4(Ipv4Addr::new(head[48], head[49], head[50], head[51]))
    };
    let network = |len: u8, flip: u8| {
        let near = match client {
            IpAddr::V4(v4) => {
                let mut o = v4.octets();
                o[3] ^= flip;
                IpAddr::V4(o.into())
            }
            IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[15] ^= flip;
                IpAddr::V6(o.into())
            }
        };
        Cidr::new(near, len)
    };
    let access = AccessList::new(
        (flags & 1 != 0).then(|| network(head[1], head[2])),
        (flags & 1 << 1 != 0).then(|| network(head[3], head[4])),
        if flags & 1 << 2 != 0 {
            DenyAction::Ignore
        } else {
            DenyAction::Kiss
        },
    );
    let rate = (flags & 1 << 3 != 0).then(|| RateLimitConfig {
        interval: Duration::from_millis(u64::from(u16::from_be_bytes([head[6], head[7]]))),
        burst: u32::from(head[5]),
        ipv4_prefix: head[8],
        ipv6_prefix: head[9],
        kiss: flags & 1 << 4 != 0,
    });
    let snapshot = if flags & 1 << 6 != 0 {
        SystemSnapshot {
            leap: LeapIndicator::from_bits(head[22] >> 6),
            stratum: Stratum::new(head[22] & 0x1f),
            reference_id: ReferenceId::LOCL,
            precision: Precision::new(head[23] as i8),
            root_delay: NtpDuration::from_bits(u64_at(head, 32) as i64),
            root_dispersion: NtpDuration::from_bits(u64_at(head, 40) as i64),
            reference_time: NtpTimestamp::from_bits(u64_at(head, 24)),
            poll_limits: DEFAULT_POLL_LIMITS,
        }
    } else {
        SystemSnapshot::unsynchronized(Precision::new(head[23] as i8))
    };
    let epoch = Instant::now();
    Some(Setup {
        server: Server::new(access.clone(), rate.map(|r| RateLimiter::new(r, epoch))),
        access,
        rate,
        client,
        snapshot,
        receive: NtpTimestamp::from_bits(u64_at(head, 14)),
        epoch,
        repeats: 1 + usize::from(head[10] % 8),
        step_ms: u64::from(u32::from_be_bytes([0, head[11], head[12], head[13]])),
        datagram,
    })
}

/// The first gate the request fails, judged here from the parsed packet.
fn expected(s: &Setup<'_>) -> (Expected, Option<Packet>) {
    let request = match Packet::parse(s.datagram) {
        Ok((request, _)) => request,
        Err(ParseError::TooShort(_)) => return (Expected::Drop(DropReason::TooShort), None),
        Err(ParseError::MalformedTrailer(_)) => {
            return (Expected::Drop(DropReason::Malformed), None);
        }
    };
    let gate = match request.mode.get() {
        3 if !(1..=4).contains(&request.version.get()) => Expected::Drop(DropReason::BadVersion),
        3 if s.access.permits(s.client) => Expected::Serve,
        3 if s.access.action() == DenyAction::Ignore => Expected::Drop(DropReason::AccessIgnored),
        3 => Expected::Deny,
        // Symmetric modes (no peer configured here, passive peers off): dropped, after the
        // version and the access list like any request.
        1 | 2 if !(1..=4).contains(&request.version.get()) => {
            Expected::Drop(DropReason::BadVersion)
        }
        1 | 2 if !s.access.permits(s.client) => Expected::Drop(DropReason::AccessIgnored),
        4 | 5 => Expected::Drop(DropReason::NotARequest),
        6 | 7 => Expected::Drop(DropReason::Control),
        _ => Expected::Drop(DropReason::UnsupportedMode),
    };
    (gate, Some(request))
}

/// Checks one reply against the request it answers; returns its kiss code.
fn check_reply(s: &Setup<'_>, request: &Packet, bytes: &[u8]) -> Option<ReferenceId> {
    assert!(
        bytes.len() <= s.datagram.len(),
        "reply longer than the request"
    );
    let (reply, trailer) = Packet::parse(bytes).expect("a reply parses");
    assert!(trailer.is_empty());
    assert_eq!(reply.mode, Mode::SERVER);
    assert_eq!(reply.version, request.version, "version echoed");
    assert_eq!(
        reply.origin_timestamp, request.transmit_timestamp,
        "origin = request's transmit"
    );
    assert_eq!(reply.receive_timestamp, s.receive);
    if let Some(code) = reply.kiss_code() {
        assert_eq!(
            reply.leap,
            LeapIndicator::Unsynchronized,
            "a KoD carries LI 3"
        );
        return Some(code);
    }
    let (min, max) = s.snapshot.poll_limits;
    assert!((min..=max).contains(&reply.poll), "poll clamped");
    if s.snapshot.is_synchronized() {
        assert_eq!(
            (reply.leap, reply.stratum),
            (s.snapshot.leap, s.snapshot.stratum)
        );
    } else {
        assert_eq!(
            (reply.leap, reply.stratum),
            (LeapIndicator::Unsynchronized, Stratum::UNSYNCHRONIZED),
            "an unsynchronized server says so"
        );
    }
    None
}

/// Requests limited since the last allowed one, and the position of the last KoD among them.
#[derive(Default)]
struct LimitedRun {
    len: u64,
    last_kiss: Option<u64>,
}

impl LimitedRun {
    fn limited(&mut self, kiss: bool) {
        self.len += 1;
        if kiss {
            if let Some(last) = self.last_kiss {
                assert!(
                    self.len - last >= KOD_EVERY,
                    "KoDs {last} and {} of one run",
                    self.len
                );
            }
            self.last_kiss = Some(self.len);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(s) = setup(data) else {
        return;
    };
    let (gate, request) = expected(&s);
    let mut answered = 0u64;
    let mut run = LimitedRun::default();
    for i in 0..s.repeats {
        let now = s.epoch + Duration::from_millis(s.step_ms * i as u64);
        let decision = s
            .server
            .decide(s.datagram, SocketAddr::new(s.client, 123), &s.snapshot, s.receive, now);
        let transmit = s.receive + NtpDuration::from_bits(i as i64);
        match (decision, &gate, &request) {
            (Decision::Drop(why), Expected::Drop(want), _) => assert_eq!(why, *want),
            (Decision::Respond(r), Expected::Deny, Some(request)) => {
                let code = check_reply(&s, request, &r.finish(transmit));
                assert_eq!(code, Some(ReferenceId::DENY), "a denied client gets DENY");
            }
            (Decision::Respond(r), Expected::Serve, Some(request)) => {
                match check_reply(&s, request, &r.finish(transmit)) {
                    None => {
                        answered += 1;
                        run = LimitedRun::default();
                    }
                    Some(code) => {
                        assert_eq!(code, ReferenceId::RATE, "a served client's KoD is RATE");
                        assert!(
                            s.rate.is_some_and(|r| r.kiss),
                            "RATE only from a limiter that kisses"
                        );
                        run.limited(true);
                    }
                }
            }
            (Decision::Drop(DropReason::RateLimited), Expected::Serve, _) => {
                assert!(s.rate.is_some(), "rate limited without a limiter");
                run.limited(false);
            }
            (decision, gate, _) => panic!("{decision:?} where {gate:?} was due"),
        }
    }
    if let Some(rate) = s.rate {
        // The generic cell rate algorithm: at most `burst` back to back, then one per interval.
        let interval_ms = (rate.interval.as_millis() as u64).max(1);
        let elapsed_ms = s.step_ms * (s.repeats as u64 - 1);
        let burst = u64::from(rate.burst.max(1));
        assert!(
            answered <= burst + elapsed_ms / interval_ms,
            "{answered} answers beat the limit"
        );
        if gate == Expected::Serve {
            assert!(answered >= 1, "a fresh limiter answers the first request");
        }
    }
});
