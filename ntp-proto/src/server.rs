//! The server side: a request, the system snapshot and the receive time in; a response, a
//! kiss-o'-death or a counted drop out (RFC 5905 sections 7.4 and 9, RFC 8633 section 3.2).
//!
//! The policy order is fixed and short: parse, mode, version, access list, rate limit, answer.
//! A response is never longer than its request: requests shorter than the 48-byte header are
//! dropped, and every response is exactly 48 bytes.

use core::fmt;
use core::str::FromStr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::packet::{HEADER_LEN, LeapIndicator, Mode, Packet, ParseError, ReferenceId, Stratum};
use crate::system::SystemSnapshot;
use crate::time::{NtpShort, NtpTimestamp};

/// Why a datagram got no answer. Every drop is counted by its reason.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DropReason {
    /// Shorter than the 48-byte header.
    TooShort,
    /// Bytes after the header that are neither extension fields nor a MAC.
    Malformed,
    /// A server or broadcast packet (mode 4/5): answering would let two servers loop.
    NotARequest,
    /// Mode 6/7 control and monitoring queries: not served (amplification risk).
    Control,
    /// Symmetric or reserved modes (0, 1, 2): not served.
    UnsupportedMode,
    /// Version 0 or above 4.
    BadVersion,
    /// The access list says to ignore this client.
    AccessIgnored,
    /// Over the rate limit, and not this request's turn for a kiss-o'-death.
    RateLimited,
}

impl DropReason {
    /// Every reason, for counters and metrics.
    pub const ALL: [Self; 8] = [
        Self::TooShort,
        Self::Malformed,
        Self::NotARequest,
        Self::Control,
        Self::UnsupportedMode,
        Self::BadVersion,
        Self::AccessIgnored,
        Self::RateLimited,
    ];

    /// A stable lower-case name for logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::Malformed => "malformed",
            Self::NotARequest => "not_a_request",
            Self::Control => "control",
            Self::UnsupportedMode => "unsupported_mode",
            Self::BadVersion => "bad_version",
            Self::AccessIgnored => "access_ignored",
            Self::RateLimited => "rate_limited",
        }
    }

    /// The position of this reason in [`DropReason::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What to do with one datagram.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    /// Send this response; set its transmit timestamp as late as possible with [`Response::finish`].
    Respond(Response),
    /// Send nothing.
    Drop(DropReason),
}

/// A response waiting for its transmit timestamp.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Response {
    packet: Packet,
}

impl Response {
    /// The response header (its transmit timestamp is still unset).
    pub const fn packet(&self) -> &Packet {
        &self.packet
    }

    /// The kiss code, if this is a kiss-o'-death.
    pub const fn kiss_code(&self) -> Option<ReferenceId> {
        self.packet.kiss_code()
    }

    /// Sets the transmit timestamp (T3), read by the caller just before sending, and encodes the
    /// 48 bytes. A kiss-o'-death carries real receive and transmit timestamps too: ntpd 4.2.8
    /// drops one with zero timestamps, so its clients would ignore our RATE and DENY (chrony fills
    /// them as well); its stratum 0 and LI 3 still tell every client not to use the time.
    pub fn finish(mut self, transmit: NtpTimestamp) -> [u8; HEADER_LEN] {
        self.packet.transmit_timestamp = transmit;
        self.packet.serialize()
    }
}

/// What to do with a client the access list denies.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum DenyAction {
    /// Answer with a kiss-o'-death DENY, so a well-behaved client stops.
    #[default]
    Kiss,
    /// Drop silently.
    Ignore,
}

/// An address prefix such as `192.0.2.0/24` or `2001:db8::/32`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Why text is not an address prefix.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("`{0}` is not an address prefix; write e.g. 192.0.2.0/24, 2001:db8::/32 or a bare address")]
pub struct CidrError(String);

impl Cidr {
    /// The prefix of `len` bits that contains `address`.
    pub fn new(address: IpAddr, len: u8) -> Self {
        let address = address.to_canonical();
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = len.min(max);
        Self {
            network: mask(address, prefix_len),
            prefix_len,
        }
    }

    /// True if `address` lies in this prefix (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.network.is_ipv4()
            && mask(address, self.prefix_len) == self.network
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let error = || CidrError(text.to_owned());
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len.parse::<u8>().map_err(|_| error())?)),
            None => (text, None),
        };
        let address: IpAddr = addr.parse().map_err(|_| error())?;
        let max = if address.to_canonical().is_ipv4() {
            32
        } else {
            128
        };
        match len {
            Some(len) if len > max => Err(error()),
            Some(len) => Ok(Self::new(address, len)),
            None => Ok(Self::new(address, max)),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The first `prefix_len` bits of `address`; a prefix longer than the address means all of it
/// (a [`RateLimitConfig`] is plain data: its prefix lengths are not checked before they get here).
fn mask(address: IpAddr, prefix_len: u8) -> IpAddr {
    let len = u32::from(prefix_len);
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

/// Who may be served: if `allow` is not empty a client must match it, and it must not match
/// `deny` (RFC 8633 section 3.2 advises restricting by address).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct AccessList {
    /// Prefixes served; empty means everyone.
    pub allow: Vec<Cidr>,
    /// Prefixes refused.
    pub deny: Vec<Cidr>,
    /// What a refused client gets.
    pub action: DenyAction,
}

impl AccessList {
    /// True if `client` may be served.
    pub fn permits(&self, client: IpAddr) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|c| c.contains(client));
        allowed && !self.deny.iter().any(|c| c.contains(client))
    }
}

/// Rate limit per client prefix: on average one request per `interval`, bursts of `burst`.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct RateLimitConfig {
    /// Average spacing of requests a client may send.
    pub interval: Duration,
    /// How many requests may come back to back.
    pub burst: u32,
    /// IPv4 clients sharing this prefix share one limit.
    pub ipv4_prefix: u8,
    /// IPv6 clients sharing this prefix share one limit.
    pub ipv6_prefix: u8,
    /// Send a kiss-o'-death RATE to one in [`KOD_EVERY`] limited requests; drop all if false.
    pub kiss: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            burst: 8,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            kiss: true,
        }
    }
}

/// Of the requests over the limit, one in this many gets a kiss-o'-death, the rest are dropped
/// (chrony's default "leak" of 1 in 4), so a KoD cannot be used to amplify a flood.
pub const KOD_EVERY: u64 = 4;
/// Slots in the rate-limit table; clients whose prefixes hash alike share a slot until one evicts
/// the other, so memory stays fixed whatever the number of clients.
const RATE_TABLE_SLOTS: usize = 1 << 14;

/// A fixed-size, lock-free table of per-prefix rate limits using the generic cell rate algorithm:
/// each slot holds a tag of the prefix, a count of limited requests and the theoretical arrival
/// time (TAT) in milliseconds since the table was made. Shared by all server workers.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    epoch: Instant,
    slots: Box<[AtomicU64]>,
}

/// What the rate limiter says about one request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RateVerdict {
    /// Within the limit.
    Allow,
    /// Over the limit: answer with a kiss-o'-death RATE.
    Kiss,
    /// Over the limit: drop.
    Drop,
}

const TAG_BITS: u32 = 16;
const COUNT_BITS: u32 = 8;
const TAT_BITS: u32 = 64 - TAG_BITS - COUNT_BITS;

impl RateLimiter {
    /// An empty table; `epoch` is any instant not after the first request.
    pub fn new(config: RateLimitConfig, epoch: Instant) -> Self {
        let slots = (0..RATE_TABLE_SLOTS).map(|_| AtomicU64::new(0)).collect();
        Self {
            config,
            epoch,
            slots,
        }
    }

    /// Accounts one request from `client` at `now`.
    pub fn check(&self, client: IpAddr, now: Instant) -> RateVerdict {
        let hash = self.prefix_hash(client);
        let slot = &self.slots[(hash as usize) % RATE_TABLE_SLOTS];
        let tag = (hash >> 48) & ((1 << TAG_BITS) - 1);
        let now_ms =
            (now.saturating_duration_since(self.epoch).as_millis() as u64) & ((1 << TAT_BITS) - 1);
        let interval_ms = (self.config.interval.as_millis() as u64).max(1);
        // GCRA's tolerance: a request is within the limit if the theoretical arrival time is at
        // most (burst - 1) intervals ahead of now.
        let tolerance_ms = interval_ms.saturating_mul(u64::from(self.config.burst.max(1) - 1));
        let mut verdict = RateVerdict::Allow;
        // A lost race only means two requests were judged on the same state: harmless.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| {
            let (old_tag, count, tat) = unpack(state);
            // Another prefix in this slot: take the slot over only once its occupant is idle
            // (its TAT has passed). While it is busy the newcomer shares its budget, so that
            // alternating with a colliding prefix never buys an abuser a fresh burst.
            let (tag, count, tat) = if old_tag == tag || tat > now_ms {
                (old_tag, count, tat)
            } else {
                (tag, 0, 0)
            };
            if tat.saturating_sub(now_ms) <= tolerance_ms {
                verdict = RateVerdict::Allow;
                Some(pack(tag, 0, tat.max(now_ms) + interval_ms))
            } else {
                let count = (count + 1) & ((1 << COUNT_BITS) - 1);
                let kiss = self.config.kiss && count % KOD_EVERY == 1;
                verdict = if kiss {
                    RateVerdict::Kiss
                } else {
                    RateVerdict::Drop
                };
                Some(pack(tag, count, tat))
            }
        });
        verdict
    }

    fn prefix_hash(&self, client: IpAddr) -> u64 {
        let client = client.to_canonical();
        let len = if client.is_ipv4() {
            self.config.ipv4_prefix
        } else {
            self.config.ipv6_prefix
        };
        let bits = match mask(client, len) {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) | (1 << 127),
            IpAddr::V6(v6) => u128::from(v6),
        };
        // SplitMix64 finalizer over both halves: cheap and well mixed.
        let mut x = (bits as u64) ^ ((bits >> 64) as u64).rotate_left(29);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

const fn pack(tag: u64, count: u64, tat: u64) -> u64 {
    (tag << (64 - TAG_BITS)) | (count << TAT_BITS) | (tat & ((1 << TAT_BITS) - 1))
}

const fn unpack(state: u64) -> (u64, u64, u64) {
    (
        state >> (64 - TAG_BITS),
        (state >> TAT_BITS) & ((1 << COUNT_BITS) - 1),
        state & ((1 << TAT_BITS) - 1),
    )
}

/// Server policy: who is served and how often.
#[derive(Debug, Default)]
pub struct Server {
    access: AccessList,
    rate_limiter: Option<RateLimiter>,
}

impl Server {
    /// A server with the given access list and optional rate limiter.
    pub fn new(access: AccessList, rate_limiter: Option<RateLimiter>) -> Self {
        Self {
            access,
            rate_limiter,
        }
    }

    /// Decides what to send back for `datagram` from `client`, received at `receive` (our clock's
    /// time, T2) and at monotonic `now` (RFC 5905 section 9.2 fast_xmit, in the policy order
    /// parse, mode, version, access, rate, answer).
    pub fn decide(
        &self,
        datagram: &[u8],
        client: IpAddr,
        snapshot: &SystemSnapshot,
        receive: NtpTimestamp,
        now: Instant,
    ) -> Decision {
        let request = match Packet::parse(datagram) {
            Ok((request, _trailer)) => request,
            Err(ParseError::TooShort(_)) => return Decision::Drop(DropReason::TooShort),
            Err(ParseError::MalformedTrailer(_)) => return Decision::Drop(DropReason::Malformed),
        };
        match request.mode {
            Mode::CLIENT => {}
            Mode::SERVER | Mode::BROADCAST => return Decision::Drop(DropReason::NotARequest),
            Mode::CONTROL | Mode::PRIVATE => return Decision::Drop(DropReason::Control),
            _ => return Decision::Drop(DropReason::UnsupportedMode),
        }
        if !request.version.is_supported() {
            return Decision::Drop(DropReason::BadVersion);
        }
        if !self.access.permits(client) {
            return match self.access.action {
                DenyAction::Kiss => Decision::Respond(kiss(&request, ReferenceId::DENY, receive)),
                DenyAction::Ignore => Decision::Drop(DropReason::AccessIgnored),
            };
        }
        let rate = self
            .rate_limiter
            .as_ref()
            .map_or(RateVerdict::Allow, |l| l.check(client, now));
        match rate {
            RateVerdict::Allow => Decision::Respond(answer(&request, snapshot, receive)),
            RateVerdict::Kiss => Decision::Respond(kiss(&request, ReferenceId::RATE, receive)),
            RateVerdict::Drop => Decision::Drop(DropReason::RateLimited),
        }
    }
}

/// The mode 4 answer to a mode 3 request (RFC 5905 section 9.2): version and poll echoed (poll
/// clamped to our limits), origin = the request's transmit, the rest from the snapshot.
fn answer(request: &Packet, snapshot: &SystemSnapshot, receive: NtpTimestamp) -> Response {
    let (min_poll, max_poll) = snapshot.poll_limits;
    let synchronized = snapshot.is_synchronized();
    Response {
        packet: Packet {
            leap: if synchronized {
                snapshot.leap
            } else {
                LeapIndicator::Unsynchronized
            },
            version: request.version,
            mode: Mode::SERVER,
            stratum: if synchronized {
                snapshot.stratum
            } else {
                Stratum::UNSYNCHRONIZED
            },
            poll: request.poll.clamp(min_poll, max_poll),
            precision: snapshot.precision,
            root_delay: NtpShort::from_duration(snapshot.root_delay),
            root_dispersion: snapshot.root_dispersion_at(receive),
            reference_id: snapshot.reference_id,
            reference_timestamp: snapshot.reference_time,
            origin_timestamp: request.transmit_timestamp,
            receive_timestamp: receive,
            transmit_timestamp: NtpTimestamp::ZERO,
        },
    }
}

/// A kiss-o'-death (RFC 5905 section 7.4): LI 3, stratum 0, the code in the reference ID, the
/// request's transmit timestamp as origin so the client can match it, and no time.
fn kiss(request: &Packet, code: ReferenceId, receive: NtpTimestamp) -> Response {
    let mut packet = Packet::client_request(request.version, request.poll, NtpTimestamp::ZERO);
    packet.leap = LeapIndicator::Unsynchronized;
    packet.mode = Mode::SERVER;
    packet.stratum = Stratum::UNSPECIFIED;
    packet.reference_id = code;
    packet.origin_timestamp = request.transmit_timestamp;
    packet.receive_timestamp = receive;
    Response { packet }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PollInterval, Precision, Version};
    use crate::time::NtpDuration;

    const T: NtpTimestamp = NtpTimestamp::from_parts(3_900_000_000, 0);

    fn snapshot() -> SystemSnapshot {
        let mut s = SystemSnapshot::local_reference(
            Stratum::new(2),
            ReferenceId::LOCL,
            Precision::new(-22),
            T,
        );
        s.root_delay = NtpDuration::from_seconds_f64(0.25);
        s
    }

    fn request(version: u8, poll: i8) -> [u8; 48] {
        let cookie = NtpTimestamp::from_bits(0x7e23_e826_342e_7f08);
        Packet::client_request(Version::new(version), PollInterval::new(poll), cookie).serialize()
    }

    fn client() -> IpAddr {
        "192.0.2.1".parse().expect("literal")
    }

    fn decide(server: &Server, bytes: &[u8]) -> Decision {
        server.decide(
            bytes,
            client(),
            &snapshot(),
            T + NtpDuration::from_seconds(10),
            Instant::now(),
        )
    }

    fn respond(server: &Server, bytes: &[u8]) -> Packet {
        match decide(server, bytes) {
            Decision::Respond(r) => {
                let (p, _) =
                    Packet::parse(&r.finish(T + NtpDuration::from_seconds(11))).expect("48 bytes");
                p
            }
            Decision::Drop(why) => panic!("dropped: {why:?}"),
        }
    }

    #[test]
    fn answers_a_client_request() {
        let p = respond(&Server::default(), &request(4, 6));
        assert_eq!(
            (p.mode, p.version, p.stratum),
            (Mode::SERVER, Version::V4, Stratum::new(2))
        );
        assert_eq!(p.leap, LeapIndicator::NoWarning);
        assert_eq!(p.poll, PollInterval::new(6));
        assert_eq!(p.precision, Precision::new(-22));
        assert_eq!(p.reference_id, ReferenceId::LOCL);
        assert_eq!(p.reference_timestamp, T);
        assert_eq!(
            p.origin_timestamp,
            NtpTimestamp::from_bits(0x7e23_e826_342e_7f08)
        );
        assert_eq!(p.receive_timestamp, T + NtpDuration::from_seconds(10));
        assert_eq!(p.transmit_timestamp, T + NtpDuration::from_seconds(11));
        assert_eq!(p.root_delay.to_seconds_f64(), 0.25);
        // 10 s after the reference time the dispersion has grown by 10 * PHI.
        assert!((p.root_dispersion.to_seconds_f64() - 150e-6).abs() < 2e-5);
    }

    #[test]
    fn echoes_versions_1_to_4_and_clamps_poll() {
        for version in 1..=4 {
            assert_eq!(
                respond(&Server::default(), &request(version, 6)).version,
                Version::new(version)
            );
        }
        assert_eq!(
            respond(&Server::default(), &request(4, 0)).poll,
            PollInterval::new(4)
        );
        assert_eq!(
            respond(&Server::default(), &request(4, 30)).poll,
            PollInterval::new(17)
        );
    }

    #[test]
    fn unsynchronized_server_says_so() {
        let server = Server::default();
        let unsync = SystemSnapshot::unsynchronized(Precision::new(-20));
        let Decision::Respond(r) =
            server.decide(&request(4, 6), client(), &unsync, T, Instant::now())
        else {
            panic!("an unsynchronized server still answers");
        };
        assert_eq!(r.packet().leap, LeapIndicator::Unsynchronized);
        assert_eq!(r.packet().stratum, Stratum::UNSYNCHRONIZED);
    }

    #[test]
    fn answers_chrony_and_ntpdig_requests_from_the_vectors() {
        // chronyd's first client request (random cookie, precision +32) and ntpdig's (LI 3).
        for hex in [
            "2300002000000000000000000000000000000000000000000000000000000000000000000000000000000000000000007e23e826342e7f08",
            "e300000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000eeac608a90776000",
        ] {
            let bytes: Vec<u8> = (0..48)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            let p = respond(&Server::default(), &bytes);
            assert_eq!(p.origin_timestamp.to_bits().to_be_bytes(), bytes[40..48]);
        }
    }

    #[test]
    fn drops_by_reason() {
        let server = Server::default();
        let with_mode = |mode: u8| {
            let mut b = request(4, 6);
            b[0] = (b[0] & !0b111) | mode;
            decide(&server, &b)
        };
        assert_eq!(with_mode(4), Decision::Drop(DropReason::NotARequest));
        assert_eq!(with_mode(5), Decision::Drop(DropReason::NotARequest));
        assert_eq!(with_mode(6), Decision::Drop(DropReason::Control));
        assert_eq!(with_mode(7), Decision::Drop(DropReason::Control));
        for mode in 0..=2 {
            assert_eq!(with_mode(mode), Decision::Drop(DropReason::UnsupportedMode));
        }
        assert_eq!(
            decide(&server, &request(0, 6)),
            Decision::Drop(DropReason::BadVersion)
        );
        assert_eq!(
            decide(&server, &request(5, 6)),
            Decision::Drop(DropReason::BadVersion)
        );
        assert_eq!(
            decide(&server, &request(4, 6)[..47]),
            Decision::Drop(DropReason::TooShort)
        );
        let mut long = request(4, 6).to_vec();
        long.extend([0u8; 9]);
        assert_eq!(
            decide(&server, &long),
            Decision::Drop(DropReason::Malformed)
        );
    }

    #[test]
    fn access_list_denies_with_kiss_or_silence() {
        let deny = vec!["192.0.2.0/24".parse().expect("cidr")];
        let kod = Server::new(
            AccessList {
                deny: deny.clone(),
                ..AccessList::default()
            },
            None,
        );
        let p = respond(&kod, &request(4, 6));
        assert_eq!(
            (p.leap, p.stratum, p.reference_id),
            (
                LeapIndicator::Unsynchronized,
                Stratum::UNSPECIFIED,
                ReferenceId::DENY
            )
        );
        assert_eq!(
            p.origin_timestamp,
            NtpTimestamp::from_bits(0x7e23_e826_342e_7f08)
        );
        // Real receive and transmit times: ntpd 4.2.8 drops a KoD whose timestamps are zero.
        assert_eq!(p.receive_timestamp, T + NtpDuration::from_seconds(10));
        assert_eq!(p.transmit_timestamp, T + NtpDuration::from_seconds(11));
        let ignore = Server::new(
            AccessList {
                deny,
                action: DenyAction::Ignore,
                ..AccessList::default()
            },
            None,
        );
        assert_eq!(
            decide(&ignore, &request(4, 6)),
            Decision::Drop(DropReason::AccessIgnored)
        );
        let allow_other = Server::new(
            AccessList {
                allow: vec!["10.0.0.0/8".parse().expect("cidr")],
                ..AccessList::default()
            },
            None,
        );
        assert!(respond(&allow_other, &request(4, 6)).is_kiss());
    }

    #[test]
    fn cidr_matching_and_parsing() {
        let net: Cidr = "192.0.2.0/24".parse().expect("cidr");
        assert!(net.contains("192.0.2.200".parse().expect("ip")));
        assert!(
            net.contains("::ffff:192.0.2.9".parse().expect("ip")),
            "IPv4-mapped counts as IPv4"
        );
        assert!(!net.contains("192.0.3.1".parse().expect("ip")));
        let v6: Cidr = "2001:db8::/32".parse().expect("cidr");
        assert!(v6.contains("2001:db8:1::5".parse().expect("ip")));
        assert!(!v6.contains("192.0.2.1".parse().expect("ip")));
        let any: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(any.contains("203.0.113.9".parse().expect("ip")));
        assert_eq!(
            "10.1.2.3".parse::<Cidr>().expect("bare").to_string(),
            "10.1.2.3/32"
        );
        for bad in ["10.0.0.0/33", "banana", "::/129", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_spread_over_milliseconds_is_still_one_burst() {
        let epoch = Instant::now();
        let config = RateLimitConfig {
            interval: Duration::from_secs(1),
            burst: 2,
            ..RateLimitConfig::default()
        };
        let limiter = RateLimiter::new(config, epoch);
        let verdicts: Vec<_> = (0..5)
            .map(|ms| limiter.check(client(), epoch + Duration::from_millis(ms)))
            .collect();
        assert_eq!(
            verdicts
                .iter()
                .filter(|v| **v == RateVerdict::Allow)
                .count(),
            2,
            "{verdicts:?}"
        );
        // One interval later exactly one more is allowed.
        assert_eq!(
            limiter.check(client(), epoch + Duration::from_millis(1005)),
            RateVerdict::Allow
        );
        assert_ne!(
            limiter.check(client(), epoch + Duration::from_millis(1006)),
            RateVerdict::Allow
        );
    }

    #[test]
    fn rate_limit_allows_a_burst_then_kisses_one_in_four() {
        let epoch = Instant::now();
        let config = RateLimitConfig {
            interval: Duration::from_secs(1),
            burst: 8,
            ..RateLimitConfig::default()
        };
        let limiter = RateLimiter::new(config, epoch);
        let client = client();
        let verdicts: Vec<_> = (0..24).map(|_| limiter.check(client, epoch)).collect();
        assert!(
            verdicts[..8].iter().all(|v| *v == RateVerdict::Allow),
            "{verdicts:?}"
        );
        let over = &verdicts[8..];
        assert_eq!(
            over.iter().filter(|v| **v == RateVerdict::Kiss).count(),
            4,
            "{over:?}"
        );
        assert_eq!(over.iter().filter(|v| **v == RateVerdict::Drop).count(), 12);
        // Another client is not affected; after a second one more request is allowed.
        assert_eq!(
            limiter.check("192.0.2.2".parse().expect("ip"), epoch),
            RateVerdict::Allow
        );
        assert_eq!(
            limiter.check(client, epoch + Duration::from_millis(1000)),
            RateVerdict::Allow
        );
        assert_ne!(
            limiter.check(client, epoch + Duration::from_millis(1000)),
            RateVerdict::Allow
        );
    }

    #[test]
    fn a_colliding_prefix_cannot_reset_an_abusers_budget() {
        let epoch = Instant::now();
        let config = RateLimitConfig {
            interval: Duration::from_secs(1),
            burst: 4,
            ..RateLimitConfig::default()
        };
        let limiter = RateLimiter::new(config, epoch);
        let abuser: IpAddr = "192.0.2.1".parse().expect("ip");
        let slot = |ip: IpAddr| limiter.prefix_hash(ip) as usize % RATE_TABLE_SLOTS;
        // Another /32 that lands in the abuser's slot (there are 2^14 slots).
        let partner = (0..1u32 << 24)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .find(|ip| slot(*ip) == slot(abuser))
            .expect("a colliding address");
        let (mut abuser_allowed, mut partner_allowed) = (0, 0);
        for _ in 0..50 {
            abuser_allowed += usize::from(limiter.check(abuser, epoch) == RateVerdict::Allow);
            partner_allowed += usize::from(limiter.check(partner, epoch) == RateVerdict::Allow);
        }
        // Before, each alternation reset the slot: all 50 of the abuser's requests were allowed.
        // Now the two share the slot's one burst while it is busy.
        assert_eq!(abuser_allowed + partner_allowed, 4, "one burst in all");
        // Once the abuser has been quiet for its burst, the slot is free again.
        let later = epoch + Duration::from_secs(60);
        assert_eq!(limiter.check(partner, later), RateVerdict::Allow);
    }

    #[test]
    fn rate_limit_by_prefix_and_without_kiss() {
        let epoch = Instant::now();
        let config = RateLimitConfig {
            burst: 1,
            ipv6_prefix: 64,
            kiss: false,
            ..RateLimitConfig::default()
        };
        let limiter = RateLimiter::new(config, epoch);
        assert_eq!(
            limiter.check("2001:db8::1".parse().expect("ip"), epoch),
            RateVerdict::Allow
        );
        assert_eq!(
            limiter.check("2001:db8::2".parse().expect("ip"), epoch),
            RateVerdict::Drop,
            "same /64"
        );
        assert_eq!(
            limiter.check("2001:db8:0:1::1".parse().expect("ip"), epoch),
            RateVerdict::Allow
        );
    }

    #[test]
    fn rate_limit_prefixes_longer_than_the_address_mean_the_whole_address() {
        let epoch = Instant::now();
        let config = RateLimitConfig {
            burst: 1,
            ipv4_prefix: 200,
            ipv6_prefix: 255,
            ..RateLimitConfig::default()
        };
        let limiter = RateLimiter::new(config, epoch);
        for (a, b) in [("192.0.2.1", "192.0.2.2"), ("2001:db8::1", "2001:db8::2")] {
            let (a, b): (IpAddr, IpAddr) = (a.parse().expect("ip"), b.parse().expect("ip"));
            assert_eq!(limiter.check(a, epoch), RateVerdict::Allow);
            assert_ne!(limiter.check(a, epoch), RateVerdict::Allow);
            assert_eq!(
                limiter.check(b, epoch),
                RateVerdict::Allow,
                "{b} has its own limit"
            );
        }
    }

    #[test]
    fn rate_limited_server_sends_kod_rate_and_counts_drops() {
        let config = RateLimitConfig {
            burst: 1,
            ..RateLimitConfig::default()
        };
        let server = Server::new(
            AccessList::default(),
            Some(RateLimiter::new(config, Instant::now())),
        );
        assert!(!respond(&server, &request(4, 6)).is_kiss());
        let kod = respond(&server, &request(4, 6));
        assert_eq!(kod.kiss_code(), Some(ReferenceId::RATE));
        assert_eq!(
            decide(&server, &request(4, 6)),
            Decision::Drop(DropReason::RateLimited)
        );
    }

    #[test]
    fn never_answers_longer_than_the_request() {
        let server = Server::default();
        let mut state = 0x1234_5678u32;
        for len in 0..=1500usize {
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    if i == 0 { 0x23 } else { (state >> 24) as u8 }
                })
                .collect();
            if let Decision::Respond(r) = decide(&server, &bytes) {
                assert!(
                    r.finish(T).len() <= len,
                    "{len}-byte request answered with 48"
                );
            }
        }
    }
}
