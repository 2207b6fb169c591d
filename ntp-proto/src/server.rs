//! The server side: a request, the system snapshot and the receive time in; a response, a
//! kiss-o'-death or a counted drop out (RFC 5905 sections 7.4 and 9, RFC 8633 section 3.2); and
//! the [`Broadcaster`]'s announcements (mode 5) on a schedule, while synchronized.
//!
//! The policy order is fixed and short: parse, mode, version, access list, rate limit, answer.
//! A response is never longer than its request: requests shorter than the 48-byte header are
//! dropped, and every response is the 48-byte header, followed by a MAC under the request's key
//! for an authenticated request or a 4-byte crypto-NAK for one that does not authenticate (RFC
//! 5905 section 7.3; see [`crate::auth`]): never more than the request's own MAC.

use core::fmt;
use core::str::FromStr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prefix_trie::PrefixSet;

use crate::auth::{KeyId, Keys, Seal, Sealed};
use crate::client_hash::address_hash;
use crate::interleave::TransmitLog;
use crate::nts::{self, CookieKeys, NtsReply, NtsVerdict};
use crate::packet::{
    LeapIndicator, Mode, Packet, ParseError, PollInterval, ReferenceId, Stratum, Version,
};
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
    /// Reserved mode 0, or a symmetric mode (1, 2) from an address that is no configured peer
    /// (mode 1 is answered statelessly only with passive peers allowed).
    UnsupportedMode,
    /// Version 0 or above 4.
    BadVersion,
    /// The access list says to ignore this client.
    AccessIgnored,
    /// Over the rate limit, and not this request's turn for a kiss-o'-death.
    RateLimited,
    /// A packet from a peer with a key that carries no MAC, or is a mode 2 without a valid MAC
    /// under its key: a crypto-NAK would be longer than the packet or answer an answer.
    Unauthenticated,
    /// An NTS request (RFC 8915 section 5.7) whose cookie is ours but whose authenticator does
    /// not verify, or whose NTS fields are malformed.
    NtsUnauthenticated,
}

impl DropReason {
    /// Every reason, for counters and metrics.
    pub const ALL: [Self; 10] = [
        Self::TooShort,
        Self::Malformed,
        Self::NotARequest,
        Self::Control,
        Self::UnsupportedMode,
        Self::BadVersion,
        Self::AccessIgnored,
        Self::RateLimited,
        Self::Unauthenticated,
        Self::NtsUnauthenticated,
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
            Self::Unauthenticated => "unauthenticated",
            Self::NtsUnauthenticated => "nts_unauthenticated",
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
    /// A configured peer's packet.
    Peer {
        /// Hand it to the peer's association: it may answer our request (its origin is not zero).
        forward: bool,
        /// The symmetric passive answer to its poll, sent as [`Decision::Respond`] would; tell the
        /// association its transmit timestamp, which the peer's next packet may answer.
        response: Option<Response>,
    },
}

/// A response waiting for its transmit timestamp.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Response {
    packet: Packet,
    seal: Seal,
    nts: Option<NtsReply>,
    interleave: Interleave,
}

/// What a mode 4 answer knows of its request for interleaved mode (RFC 9769 section 2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Interleave {
    /// The request's origin: the receive timestamp of the reply whose transmit time it asks for.
    origin: NtpTimestamp,
    /// The request's receive timestamp: the origin of an interleaved answer.
    receive: NtpTimestamp,
    /// A mode 4 answer to a request that could be interleaved (not a kiss, not a peer's).
    eligible: bool,
    /// The transmit timestamp is set: the precise time of an earlier reply.
    interleaved: bool,
}

impl Response {
    /// An unauthenticated packet to send once its transmit timestamp is set.
    pub(crate) fn new(packet: Packet) -> Self {
        Self {
            packet,
            seal: Seal::None,
            nts: None,
            interleave: Interleave::default(),
        }
    }

    /// RFC 9769 section 2: answers in interleaved mode if the request asks for it (a non-zero
    /// origin, and a receive timestamp unlike its transmit timestamp) and `log` holds the
    /// precise transmit time of our reply to `client` that the origin names: origin = the
    /// request's receive timestamp, transmit = that time. Returns true if it did.
    pub fn interleave(&mut self, log: &TransmitLog, client: IpAddr) -> bool {
        let request = self.interleave;
        if !self.asks_interleaved() {
            return false;
        }
        let Some(transmit) = log.lookup(client, request.origin) else {
            return false;
        };
        self.packet.origin_timestamp = request.receive;
        self.packet.transmit_timestamp = transmit;
        self.interleave.interleaved = true;
        true
    }

    /// True if the request could be an interleaved one ([`Response::interleave`] would look it up).
    pub fn asks_interleaved(&self) -> bool {
        let request = self.interleave;
        request.eligible
            && !request.origin.is_zero()
            && request.receive != self.packet.origin_timestamp
    }

    /// The receive timestamp to keep this response's precise transmit time under, if the client
    /// may ask for it (RFC 9769 section 2): its request carried timestamps of an earlier
    /// exchange, as an interleaving client's do. Plain basic-mode clients (origin and receive
    /// zero) cost nothing.
    pub fn keeps_transmit(&self) -> Option<NtpTimestamp> {
        let request = self.interleave;
        (request.eligible && !(request.origin.is_zero() && request.receive.is_zero()))
            .then_some(self.packet.receive_timestamp)
    }

    /// The response header (its transmit timestamp is still unset).
    pub const fn packet(&self) -> &Packet {
        &self.packet
    }

    /// The kiss code, if this is a kiss-o'-death.
    pub const fn kiss_code(&self) -> Option<ReferenceId> {
        self.packet.kiss_code()
    }

    /// What follows the header: nothing, a MAC or a crypto-NAK.
    pub const fn seal(&self) -> &Seal {
        &self.seal
    }

    /// The NTS fields that follow the header of an answer to an NTS request (RFC 8915 section 5.7).
    pub const fn nts(&self) -> Option<&NtsReply> {
        self.nts.as_ref()
    }

    /// Sets the transmit timestamp (T3), read by the caller just before sending, and encodes the
    /// header and its MAC or crypto-NAK, if any. A kiss-o'-death carries real receive and transmit timestamps too: ntpd 4.2.8
    /// drops one with zero timestamps, so its clients would ignore our RATE and DENY (chrony fills
    /// them as well); its stratum 0 and LI 3 still tell every client not to use the time.
    /// An interleaved answer keeps the earlier reply's transmit time.
    pub fn finish(mut self, transmit: NtpTimestamp) -> Sealed {
        if !self.interleave.interleaved {
            self.packet.transmit_timestamp = transmit;
        }
        match &self.nts {
            Some(nts) => nts.seal(&self.packet.serialize()),
            None => self.seal.seal(self.packet.serialize()),
        }
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

/// Who may be served: if the allow list is not empty a client must match it, and it must not
/// match the deny list, whatever the lengths of the prefixes that match (RFC 8633 section 3.2
/// advises restricting by address). IPv4-mapped IPv6 clients count as IPv4.
///
/// Each list is a prefix trie, so a lookup costs a handful of node visits however long the list
/// is: a linear scan of 400,000 prefixes answered 1,600 lookups a second.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AccessList {
    allow: PrefixTable,
    deny: PrefixTable,
    action: DenyAction,
}

impl AccessList {
    /// Serves clients in `allow` (everyone if it is empty) that are not in `deny`; `action` says
    /// what the others get. Duplicate prefixes count once.
    pub fn new(
        allow: impl IntoIterator<Item = Cidr>,
        deny: impl IntoIterator<Item = Cidr>,
        action: DenyAction,
    ) -> Self {
        Self {
            allow: allow.into_iter().collect(),
            deny: deny.into_iter().collect(),
            action,
        }
    }

    /// True if `client` may be served.
    pub fn permits(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        (self.allow.is_empty() || self.allow.covers(client)) && !self.deny.covers(client)
    }

    /// What a refused client gets.
    pub const fn action(&self) -> DenyAction {
        self.action
    }

    /// How many distinct prefixes the allow list holds.
    pub fn allow_len(&self) -> usize {
        self.allow.len()
    }

    /// How many distinct prefixes the deny list holds.
    pub fn deny_len(&self) -> usize {
        self.deny.len()
    }
}

impl fmt::Debug for AccessList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts, not the prefixes: a list may hold hundreds of thousands.
        f.debug_struct("AccessList")
            .field("allow", &format_args!("{} prefixes", self.allow.len()))
            .field("deny", &format_args!("{} prefixes", self.deny.len()))
            .field("action", &self.action)
            .finish()
    }
}

/// A set of prefixes that answers "does any of them contain this address": one trie per address
/// family, keyed by the network's bits and the prefix length (prefix-trie's tree bitmap, which
/// visits at most 7 nodes for IPv4 and 26 for IPv6).
#[derive(Clone, PartialEq, Eq, Default)]
struct PrefixTable {
    v4: PrefixSet<(u32, u8)>,
    v6: PrefixSet<(u128, u8)>,
}

impl PrefixTable {
    /// True if a prefix of the set contains `address`, which must be canonical (an IPv4-mapped
    /// address would be looked up among the IPv6 prefixes).
    fn covers(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(v4) => self.v4.is_covered(&(u32::from(v4), 32)),
            IpAddr::V6(v6) => self.v6.is_covered(&(u128::from(v6), 128)),
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

impl FromIterator<Cidr> for PrefixTable {
    fn from_iter<I: IntoIterator<Item = Cidr>>(prefixes: I) -> Self {
        let mut table = Self::default();
        // A `Cidr`'s network is canonical and has no bits past its length, as the trie expects.
        for Cidr {
            network,
            prefix_len,
        } in prefixes
        {
            match network {
                IpAddr::V4(v4) => table.v4.insert((u32::from(v4), prefix_len)),
                IpAddr::V6(v6) => table.v6.insert((u128::from(v6), prefix_len)),
            };
        }
        table
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

    /// What it limits.
    pub const fn config(&self) -> RateLimitConfig {
        self.config
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
                // The count of limited requests runs on: a client just over the limit, allowed
                // one request in two, still gets a KoD for only one limited request in four.
                Some(pack(tag, count, tat.max(now_ms) + interval_ms))
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
        address_hash(mask(client, len))
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

/// Records of the client log: at most this many clients are remembered per log.
pub const CLIENT_LOG_SLOTS: usize = 1024;
/// Records per set of the client log.
const CLIENT_LOG_WAYS: usize = 4;
/// A client not heard from for this long is the first to make room for a new one.
const CLIENT_LOG_STALE: Duration = Duration::from_secs(3600);

/// What the server did for one client, as the client log remembers it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClientRecord {
    /// The client's address.
    pub address: IpAddr,
    /// Requests received from it.
    pub requests: u64,
    /// Kiss-o'-death sent to it (RATE or DENY).
    pub kisses: u64,
    /// Requests dropped (rate limit, access list, malformed ...).
    pub dropped: u64,
    /// When it was last heard from.
    pub last: Instant,
}

/// The server's clients for the operator's `clients` view (chrony's client log), in bounded
/// memory: a set-associative table of [`CLIENT_LOG_SLOTS`] records, hashed by address; a new
/// client takes the record of its set with the fewest requests (a stale one first: not heard
/// from for an hour), so the busy clients stay and a flood of one-off addresses neither grows
/// the table nor pushes them out. The rate limiter's table cannot serve: it keeps a hash
/// of each prefix, not the address.
#[derive(Clone, Debug)]
pub struct ClientLog {
    slots: Vec<Option<ClientRecord>>,
}

impl Default for ClientLog {
    fn default() -> Self {
        Self {
            slots: vec![None; CLIENT_LOG_SLOTS],
        }
    }
}

impl ClientLog {
    /// Records what `decision` did for a request from `client` at `now`; a configured peer's
    /// traffic is not a client's.
    pub fn record(&mut self, client: IpAddr, decision: &Decision, now: Instant) {
        let (kiss, dropped) = match decision {
            Decision::Respond(response) => (response.kiss_code().is_some(), false),
            Decision::Drop(_) => (false, true),
            Decision::Peer { .. } => return,
        };
        let client = client.to_canonical();
        let sets = self.slots.len() / CLIENT_LOG_WAYS;
        let set = (address_hash(client) as usize % sets.max(1)) * CLIENT_LOG_WAYS;
        let ways = &mut self.slots[set..set + CLIENT_LOG_WAYS];
        let index = ways
            .iter()
            .position(|r| r.is_some_and(|r| r.address == client))
            .or_else(|| ways.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                let weakest = ways.iter().enumerate().min_by_key(|(_, r)| {
                    r.map(|r| {
                        let fresh = now.saturating_duration_since(r.last) < CLIENT_LOG_STALE;
                        (fresh, r.requests, r.last)
                    })
                });
                weakest.map_or(0, |(i, _)| i)
            });
        let record = match ways[index] {
            Some(known) if known.address == client => known,
            _ => ClientRecord {
                address: client,
                requests: 0,
                kisses: 0,
                dropped: 0,
                last: now,
            },
        };
        ways[index] = Some(ClientRecord {
            requests: record.requests + 1,
            kisses: record.kisses + u64::from(kiss),
            dropped: record.dropped + u64::from(dropped),
            last: now,
            ..record
        });
    }

    /// Every client remembered.
    pub fn records(&self) -> impl Iterator<Item = ClientRecord> + '_ {
        self.slots.iter().flatten().copied()
    }

    /// The `count` busiest clients of several logs (one per server worker: a client's requests
    /// may reach several), most requests first.
    pub fn busiest(
        records: impl IntoIterator<Item = ClientRecord>,
        count: usize,
    ) -> Vec<ClientRecord> {
        let mut merged: Vec<ClientRecord> = Vec::new();
        for record in records {
            match merged.iter_mut().find(|r| r.address == record.address) {
                Some(known) => {
                    known.requests += record.requests;
                    known.kisses += record.kisses;
                    known.dropped += record.dropped;
                    known.last = known.last.max(record.last);
                }
                None => merged.push(record),
            }
        }
        merged.sort_by(|a, b| b.requests.cmp(&a.requests).then(b.last.cmp(&a.last)));
        merged.truncate(count);
        merged
    }
}

/// Server policy: who is served and how often.
#[derive(Debug, Default)]
pub struct Server {
    access: AccessList,
    rate_limiter: Option<Arc<RateLimiter>>,
    peers: Vec<SocketAddr>,
    passive_peers: bool,
    keys: Keys,
    peer_keys: Vec<(SocketAddr, KeyId)>,
}

impl Server {
    /// A server with the given access list and optional rate limiter.
    pub fn new(access: AccessList, rate_limiter: Option<RateLimiter>) -> Self {
        Self {
            access,
            rate_limiter: rate_limiter.map(Arc::new),
            peers: Vec::new(),
            passive_peers: false,
            keys: Keys::default(),
            peer_keys: Vec::new(),
        }
    }

    /// The same server with a new access list and rate limit (a reloaded configuration), its
    /// peers and keys unchanged. The rate limiter's table is kept when its configuration did not
    /// change, so that a client over the limit stays over it; a new one starts empty at `now`.
    pub fn reconfigured(
        &self,
        access: AccessList,
        rate_limit: Option<RateLimitConfig>,
        now: Instant,
    ) -> Self {
        let rate_limiter = match (&self.rate_limiter, rate_limit) {
            (Some(running), Some(config)) if running.config == config => Some(Arc::clone(running)),
            (_, config) => config.map(|c| Arc::new(RateLimiter::new(c, now))),
        };
        Self {
            access,
            rate_limiter,
            peers: self.peers.clone(),
            passive_peers: self.passive_peers,
            keys: self.keys.clone(),
            peer_keys: self.peer_keys.clone(),
        }
    }

    /// True when both use the same rate limiter's table.
    pub fn shares_rate_limiter(&self, other: &Self) -> bool {
        match (&self.rate_limiter, &other.rate_limiter) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Answers requests signed with one of `keys` with a MAC under the same key, and those with
    /// an unknown key or a bad MAC with a crypto-NAK (RFC 5905 sections 7.3 and 7.4). A peer in
    /// `peer_keys` must sign every packet with its key: anything else never reaches its
    /// association, and is dropped or (a mode 1 with a MAC) answered with a crypto-NAK.
    pub fn with_keys(mut self, keys: Keys, peer_keys: Vec<(SocketAddr, KeyId)>) -> Self {
        self.keys = keys;
        self.peer_keys = peer_keys;
        self
    }

    /// Also takes symmetric packets: from the configured `peers` (their packets go to their
    /// associations, their mode 1 is answered with mode 2), and, with `passive`, mode 1 from
    /// anyone else, answered with mode 2 and no association (RFC 5905 section 9.2).
    pub fn with_peers(mut self, peers: Vec<SocketAddr>, passive: bool) -> Self {
        self.peers = peers;
        self.passive_peers = passive;
        self
    }

    /// Decides what to send back for `datagram` from `from`, received at `receive` (our clock's
    /// time, T2) and at monotonic `now` (RFC 5905 section 9.2 fast_xmit, in the policy order
    /// parse, mode, version, access, rate, answer).
    pub fn decide(
        &self,
        datagram: &[u8],
        from: SocketAddr,
        snapshot: &SystemSnapshot,
        receive: NtpTimestamp,
        now: Instant,
    ) -> Decision {
        self.decide_nts(datagram, from, snapshot, receive, now, None)
    }

    /// [`Server::decide`] for a server that also speaks NTS (RFC 8915 section 5.7) with the
    /// cookie keys in `nts`: a client request with a Unique Identifier field is answered, after
    /// the access list and the rate limit, only if its cookie decrypts and its authenticator
    /// verifies (with fresh cookies, nonces from the 16 random bytes given), with an NTS NAK if
    /// the cookie is not ours, and dropped otherwise.
    pub fn decide_nts(
        &self,
        datagram: &[u8],
        from: SocketAddr,
        snapshot: &SystemSnapshot,
        receive: NtpTimestamp,
        now: Instant,
        nts: Option<(&CookieKeys, [u8; 16])>,
    ) -> Decision {
        let (request, mac) = match Packet::parse(datagram) {
            Ok((request, trailer)) => (request, trailer.mac()),
            Err(ParseError::TooShort(_)) => return Decision::Drop(DropReason::TooShort),
            Err(ParseError::MalformedTrailer(_)) => return Decision::Drop(DropReason::Malformed),
        };
        let client = from.ip();
        let symmetric = match request.mode {
            Mode::CLIENT => false,
            Mode::SYMMETRIC_ACTIVE | Mode::SYMMETRIC_PASSIVE => true,
            Mode::SERVER | Mode::BROADCAST => return Decision::Drop(DropReason::NotARequest),
            Mode::CONTROL | Mode::PRIVATE => return Decision::Drop(DropReason::Control),
            _ => return Decision::Drop(DropReason::UnsupportedMode),
        };
        if !request.version.is_supported() {
            return Decision::Drop(DropReason::BadVersion);
        }
        let seal = || match self.keys.check_request(datagram, mac) {
            Ok(key) => Seal::with(key.as_ref()),
            Err(_) => Seal::CryptoNak,
        };
        if symmetric {
            return self.decide_symmetric(&request, seal, from, snapshot, receive, now);
        }
        if !self.access.permits(client) {
            return match self.access.action() {
                DenyAction::Kiss => Decision::Respond(kiss(&request, ReferenceId::DENY, receive)),
                DenyAction::Ignore => Decision::Drop(DropReason::AccessIgnored),
            };
        }
        let rate = self
            .rate_limiter
            .as_ref()
            .map_or(RateVerdict::Allow, |l| l.check(client, now));
        match rate {
            RateVerdict::Allow => match nts.filter(|_| nts::ntp::is_nts(datagram)) {
                Some((keys, seed)) => answer_nts(&request, datagram, snapshot, receive, keys, seed),
                None => Decision::Respond(answer(&request, snapshot, receive, seal())),
            },
            RateVerdict::Kiss => Decision::Respond(kiss(&request, ReferenceId::RATE, receive)),
            RateVerdict::Drop => Decision::Drop(DropReason::RateLimited),
        }
    }
}

impl Server {
    /// A mode 1 or 2 packet (RFC 5905 section 9.2): a configured peer's goes to its association
    /// if it may answer our request (a non-zero origin), and its mode 1 gets a mode 2 answer (the
    /// exchange it asks for); mode 1 from anyone else is answered only with passive peers
    /// allowed, without an association; mode 2 from anyone else answers nothing we asked. A
    /// packet of a peer with a key that is not signed with that key goes to no association, and
    /// is answered with a crypto-NAK.
    fn decide_symmetric(
        &self,
        request: &Packet,
        seal: impl Fn() -> Seal,
        from: SocketAddr,
        snapshot: &SystemSnapshot,
        receive: NtpTimestamp,
        now: Instant,
    ) -> Decision {
        let active = request.mode == Mode::SYMMETRIC_ACTIVE;
        if !self.access.permits(from.ip()) {
            return Decision::Drop(DropReason::AccessIgnored);
        }
        let respond = |seal| answer_as(Mode::SYMMETRIC_PASSIVE, request, snapshot, receive, seal);
        let seal = seal();
        if let Some(&(_, id)) = self.peer_keys.iter().find(|(a, _)| *a == from)
            && !matches!(seal, Seal::Key(key) if key.id() == id)
        {
            return if active && !matches!(seal, Seal::None) {
                Decision::Respond(respond(Seal::CryptoNak))
            } else {
                Decision::Drop(DropReason::Unauthenticated)
            };
        }
        if self.peers.contains(&from) {
            // Mode 2 with origin zero answers nothing and asks nothing.
            if !active && request.origin_timestamp.is_zero() {
                return Decision::Drop(DropReason::UnsupportedMode);
            }
            return Decision::Peer {
                forward: !request.origin_timestamp.is_zero(),
                response: active.then(|| respond(seal)),
            };
        }
        if !(active && self.passive_peers) {
            return Decision::Drop(DropReason::UnsupportedMode);
        }
        let rate = self
            .rate_limiter
            .as_ref()
            .map_or(RateVerdict::Allow, |l| l.check(from.ip(), now));
        match rate {
            RateVerdict::Allow => Decision::Respond(respond(seal)),
            RateVerdict::Kiss | RateVerdict::Drop => Decision::Drop(DropReason::RateLimited),
        }
    }
}

/// The answer to an NTS request (RFC 8915 section 5.7): authenticated with fresh cookies, an NTS
/// NAK for a cookie we cannot read, or nothing.
fn answer_nts(
    request: &Packet,
    datagram: &[u8],
    snapshot: &SystemSnapshot,
    receive: NtpTimestamp,
    keys: &CookieKeys,
    seed: [u8; 16],
) -> Decision {
    match nts::ntp::check_request(datagram, keys, seed) {
        NtsVerdict::Answer(reply) => {
            let mut response = answer(request, snapshot, receive, Seal::None);
            response.nts = Some(reply);
            Decision::Respond(response)
        }
        NtsVerdict::Nak(nak) => {
            let mut response = kiss(request, nts::ntp::NTSN, receive);
            response.nts = Some(nak);
            Decision::Respond(response)
        }
        NtsVerdict::Drop => Decision::Drop(DropReason::NtsUnauthenticated),
    }
}

/// The mode 4 answer to a mode 3 request (RFC 5905 section 9.2): version and poll echoed (poll
/// clamped to our limits), origin = the request's transmit, the rest from the snapshot.
fn answer(
    request: &Packet,
    snapshot: &SystemSnapshot,
    receive: NtpTimestamp,
    seal: Seal,
) -> Response {
    let mut response = answer_as(Mode::SERVER, request, snapshot, receive, seal);
    response.interleave = Interleave {
        origin: request.origin_timestamp,
        receive: request.receive_timestamp,
        eligible: true,
        interleaved: false,
    };
    response
}

/// The answer in `mode`: 4 to a client, 2 (symmetric passive) to a peer's mode 1 (RFC 5905
/// section 9.2, fast_xmit and the symmetric passive reply are built alike).
fn answer_as(
    mode: Mode,
    request: &Packet,
    snapshot: &SystemSnapshot,
    receive: NtpTimestamp,
    seal: Seal,
) -> Response {
    let (min_poll, max_poll) = snapshot.poll_limits;
    let mut packet = Packet::client_request(
        request.version,
        request.poll.clamp(min_poll, max_poll),
        NtpTimestamp::ZERO,
    );
    packet.mode = mode;
    describe_system(&mut packet, snapshot, receive);
    packet.origin_timestamp = request.transmit_timestamp;
    packet.receive_timestamp = receive;
    Response {
        packet,
        seal,
        nts: None,
        interleave: Interleave::default(),
    }
}

/// Writes our system variables into `packet` at local time `at`: leap, stratum, precision, root
/// delay and dispersion, reference ID and time; LI 3 and stratum 16 while unsynchronized (RFC
/// 5905 section 9.2, the header of every packet we send).
pub fn describe_system(packet: &mut Packet, snapshot: &SystemSnapshot, at: NtpTimestamp) {
    let synchronized = snapshot.is_synchronized();
    packet.leap = if synchronized {
        snapshot.leap
    } else {
        LeapIndicator::Unsynchronized
    };
    packet.stratum = if synchronized {
        snapshot.stratum
    } else {
        Stratum::UNSYNCHRONIZED
    };
    packet.precision = snapshot.precision;
    packet.root_delay = NtpShort::from_duration(snapshot.root_delay);
    packet.root_dispersion = snapshot.root_dispersion_at(at);
    packet.reference_id = snapshot.reference_id;
    packet.reference_timestamp = snapshot.reference_time;
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
    Response::new(packet)
}

/// One address the server announces its time to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Target {
    address: SocketAddr,
    interval: PollInterval,
    next: Instant,
}

/// The server's announcements: each address gets a mode 5 packet every `2^interval` s, with the
/// system variables, while we are synchronized (RFC 5905 section 9.2: a broadcast server is a
/// source only when it has one).
#[derive(Clone, Debug, Default)]
pub struct Broadcaster {
    targets: Vec<Target>,
    sent: u64,
    skipped: u64,
}

impl Broadcaster {
    /// Announces to each `(address, interval)`, the first time at `now`.
    pub fn new(
        targets: impl IntoIterator<Item = (SocketAddr, PollInterval)>,
        now: Instant,
    ) -> Self {
        let targets = targets
            .into_iter()
            .map(|(address, interval)| Target {
                address,
                interval,
                next: now,
            })
            .collect();
        Self {
            targets,
            ..Self::default()
        }
    }

    /// When the next announcement is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.targets.iter().map(|t| t.next).min()
    }

    /// The next announcement due at `now`, at local time `local`, to send with its transmit time
    /// set just before the send ([`Response::finish`]). While unsynchronized, due announcements
    /// are skipped (and counted): a client must never take time from a server that has none.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        snapshot: &SystemSnapshot,
        local: NtpTimestamp,
    ) -> Option<(SocketAddr, Response)> {
        loop {
            let target = self
                .targets
                .iter_mut()
                .filter(|t| t.next <= now)
                .min_by_key(|t| t.next)?;
            let period = target.interval.to_duration().to_std();
            target.next = if target.next + period > now {
                target.next + period
            } else {
                now + period
            };
            if !snapshot.is_synchronized() {
                self.skipped += 1;
                continue;
            }
            let mut packet =
                Packet::client_request(Version::V4, target.interval, NtpTimestamp::ZERO);
            packet.mode = Mode::BROADCAST;
            describe_system(&mut packet, snapshot, local);
            self.sent += 1;
            return Some((target.address, Response::new(packet)));
        }
    }

    /// Announcements handed out, and skipped while unsynchronized.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent, self.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PollInterval, Precision, Version};
    use crate::time::NtpDuration;
    use proptest::prelude::*;

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
            SocketAddr::new(client(), 123),
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
            other => panic!("not answered: {other:?}"),
        }
    }

    /// A request carrying `origin`, `receive` and `transmit`, as an interleaving client sends.
    fn interleaved_request(origin: u64, receive: u64, transmit: u64) -> [u8; 48] {
        let mut p = Packet::client_request(
            Version::new(4),
            PollInterval::new(6),
            NtpTimestamp::from_bits(transmit),
        );
        p.origin_timestamp = NtpTimestamp::from_bits(origin);
        p.receive_timestamp = NtpTimestamp::from_bits(receive);
        p.serialize()
    }

    fn response(server: &Server, bytes: &[u8]) -> Response {
        match decide(server, bytes) {
            Decision::Respond(r) => r,
            other => panic!("not answered: {other:?}"),
        }
    }

    #[test]
    fn an_interleaved_request_naming_a_logged_reply_gets_its_precise_transmit_time() {
        let server = Server::default();
        let mut log = TransmitLog::default();
        // A basic-mode client's request (origin and receive zero) is not worth logging.
        assert_eq!(response(&server, &request(4, 6)).keeps_transmit(), None);
        // The first request of an interleaving client: logged under its receive timestamp.
        let first = response(&server, &interleaved_request(0, 11, 12));
        let t2 = T + NtpDuration::from_seconds(10);
        assert_eq!(first.keeps_transmit(), Some(t2));
        let precise = T + NtpDuration::from_seconds_f64(10.000_05);
        log.record(client(), t2, precise);
        // The next names it as origin: answered in interleaved mode (RFC 9769 section 2).
        let mut next = response(&server, &interleaved_request(t2.to_bits(), 21, 22));
        assert!(next.interleave(&log, client()));
        let (p, _) = Packet::parse(&next.finish(T + NtpDuration::from_seconds(11))).expect("48");
        assert_eq!(
            p.origin_timestamp.to_bits(),
            21,
            "origin = the request's receive"
        );
        assert_eq!(p.receive_timestamp, t2, "receive = this request's arrival");
        assert_eq!(
            p.transmit_timestamp, precise,
            "transmit = the earlier reply's"
        );
        // Another client, an unknown origin, or receive = transmit: basic mode.
        let mut other = response(&server, &interleaved_request(t2.to_bits(), 21, 22));
        assert!(!other.interleave(&log, "192.0.2.9".parse().expect("address")));
        let mut unknown = response(&server, &interleaved_request(t2.to_bits() + 1, 21, 22));
        assert!(!unknown.interleave(&log, client()));
        let mut same = response(&server, &interleaved_request(t2.to_bits(), 22, 22));
        assert!(!same.interleave(&log, client()));
        let (p, _) = Packet::parse(&same.finish(T + NtpDuration::from_seconds(11))).expect("48");
        assert_eq!(
            p.origin_timestamp.to_bits(),
            22,
            "basic: origin = the request's transmit"
        );
        assert_eq!(p.transmit_timestamp, T + NtpDuration::from_seconds(11));
    }

    #[test]
    fn a_kiss_is_never_interleaved_nor_logged() {
        let limit = RateLimitConfig {
            burst: 1,
            interval: Duration::from_secs(60),
            ..RateLimitConfig::default()
        };
        let server = Server::new(
            AccessList::default(),
            Some(RateLimiter::new(limit, Instant::now())),
        );
        let t2 = T + NtpDuration::from_seconds(10);
        let mut log = TransmitLog::default();
        log.record(client(), t2, t2);
        let _ = response(&server, &interleaved_request(t2.to_bits(), 21, 22));
        let mut kiss = response(&server, &interleaved_request(t2.to_bits(), 21, 22));
        assert_eq!(kiss.kiss_code(), Some(ReferenceId::RATE));
        assert!(!kiss.interleave(&log, client()));
        assert_eq!(kiss.keeps_transmit(), None);
    }

    #[test]
    fn a_reconfigured_server_applies_its_new_access_list_and_keeps_an_unchanged_rate_table() {
        let limit = RateLimitConfig {
            burst: 1,
            interval: Duration::from_secs(60),
            ..RateLimitConfig::default()
        };
        let now = Instant::now();
        let open = Server::new(AccessList::default(), Some(RateLimiter::new(limit, now)));
        assert!(
            matches!(decide(&open, &request(4, 6)), Decision::Respond(r) if r.kiss_code().is_none())
        );
        // The same limit: the same table, so the client stays over it; a DENY list applies.
        let deny = AccessList::new([], [Cidr::new(client(), 32)], DenyAction::Ignore);
        let closed = open.reconfigured(deny, Some(limit), now);
        assert!(closed.shares_rate_limiter(&open));
        assert_eq!(
            decide(&closed, &request(4, 6)),
            Decision::Drop(DropReason::AccessIgnored)
        );
        let reopened = closed.reconfigured(AccessList::default(), Some(limit), now);
        assert!(
            matches!(
                decide(&reopened, &request(4, 6)),
                Decision::Respond(r) if r.kiss_code() == Some(ReferenceId::RATE)
            ) || decide(&reopened, &request(4, 6)) == Decision::Drop(DropReason::RateLimited)
        );
        // A changed limit starts a fresh table: the client is within it again.
        let looser = RateLimitConfig { burst: 8, ..limit };
        let fresh = reopened.reconfigured(AccessList::default(), Some(looser), now);
        assert!(!fresh.shares_rate_limiter(&reopened));
        assert!(
            matches!(decide(&fresh, &request(4, 6)), Decision::Respond(r) if r.kiss_code().is_none())
        );
        let unlimited = fresh.reconfigured(AccessList::default(), None, now);
        assert!(!unlimited.shares_rate_limiter(&fresh));
    }

    #[test]
    fn the_client_log_counts_per_client_in_bounded_memory_and_lists_the_busiest() {
        let start = Instant::now();
        let mut log = ClientLog::default();
        let answered = decide(&Server::default(), &request(4, 6));
        let busy: IpAddr = "192.0.2.7".parse().expect("literal");
        for i in 0..10 {
            log.record(busy, &answered, start + Duration::from_millis(i));
        }
        log.record(busy, &Decision::Drop(DropReason::RateLimited), start);
        // A flood of one-off addresses: memory stays fixed, the busy client stays.
        for i in 0..100_000u32 {
            let address = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            log.record(address, &answered, start + Duration::from_secs(1));
        }
        assert!(log.records().count() <= CLIENT_LOG_SLOTS);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("literal");
        log.record(mapped, &answered, start + Duration::from_secs(2));
        // Another worker's log with the same client: merged.
        let mut second = ClientLog::default();
        second.record(busy, &answered, start);
        let top = ClientLog::busiest(second.records().chain(log.records()), 3);
        assert_eq!(top.len(), 3);
        let first = top[0];
        assert_eq!(first.address, busy, "IPv4-mapped counts as IPv4");
        assert_eq!((first.requests, first.dropped, first.kisses), (13, 1, 0));
        let peer = Decision::Peer {
            forward: true,
            response: None,
        };
        let mut quiet = ClientLog::default();
        quiet.record(busy, &peer, start);
        assert_eq!(quiet.records().count(), 0, "a peer is no client");
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
        let Decision::Respond(r) = server.decide(
            &request(4, 6),
            SocketAddr::new(client(), 123),
            &unsync,
            T,
            Instant::now(),
        ) else {
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
        let deny: Cidr = "192.0.2.0/24".parse().expect("cidr");
        let kod = Server::new(AccessList::new([], [deny], DenyAction::Kiss), None);
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
        let ignore = Server::new(AccessList::new([], [deny], DenyAction::Ignore), None);
        assert_eq!(
            decide(&ignore, &request(4, 6)),
            Decision::Drop(DropReason::AccessIgnored)
        );
        let allow_other = Server::new(
            AccessList::new(["10.0.0.0/8".parse().expect("cidr")], [], DenyAction::Kiss),
            None,
        );
        assert!(respond(&allow_other, &request(4, 6)).is_kiss());
    }

    fn cidrs(texts: &[&str]) -> Vec<Cidr> {
        texts
            .iter()
            .map(|t| t.parse().unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The access list as it was before the tries: every prefix of both lists tried in turn. The
    /// reference that [`AccessList::permits`] must agree with.
    fn linear_permits(allow: &[Cidr], deny: &[Cidr], client: IpAddr) -> bool {
        let allowed = allow.is_empty() || allow.iter().any(|c| c.contains(client));
        allowed && !deny.iter().any(|c| c.contains(client))
    }

    /// Asserts that `list`, built from `allow` and `deny`, answers for each of `permitted` yes
    /// and for each of `refused` no, and that the linear reference agrees.
    fn assert_verdicts(allow: &[&str], deny: &[&str], permitted: &[&str], refused: &[&str]) {
        let (allow, deny) = (cidrs(allow), cidrs(deny));
        let list = AccessList::new(
            allow.iter().copied(),
            deny.iter().copied(),
            DenyAction::Kiss,
        );
        for (clients, expected) in [(permitted, true), (refused, false)] {
            for client in clients {
                let client = ip(client);
                assert_eq!(list.permits(client), expected, "{client} with {list:?}");
                assert_eq!(linear_permits(&allow, &deny, client), expected, "{client}");
            }
        }
    }

    #[test]
    fn a_zero_length_prefix_covers_its_family_only() {
        let v4 = [
            "0.0.0.0",
            "203.0.113.9",
            "255.255.255.255",
            "::ffff:203.0.113.9",
        ];
        let v6 = [
            "::",
            "::1",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        assert_verdicts(&[], &["0.0.0.0/0"], &v6, &v4);
        // IPv4-mapped clients count as IPv4, so ::/0 does not cover them.
        assert_verdicts(&[], &["::/0"], &v4, &v6);
        assert_verdicts(&["::/0"], &[], &v6, &v4);
        assert_verdicts(&["0.0.0.0/0", "::/0"], &[], &[v4, v6].concat(), &[]);
    }

    #[test]
    fn a_full_length_prefix_covers_one_address() {
        let deny = [
            "192.0.2.1/32",
            "0.0.0.0/32",
            "255.255.255.255",
            "2001:db8::1/128",
            "::/128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        let refused = [
            "192.0.2.1",
            "::ffff:192.0.2.1",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ];
        let neighbours = [
            "192.0.2.0",
            "192.0.2.2",
            "0.0.0.1",
            "255.255.255.254",
            "2001:db8::",
            "2001:db8::2",
            "::2",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
        ];
        assert_verdicts(&[], &deny, &neighbours, &refused);
        assert_verdicts(&deny, &[], &refused, &neighbours);
    }

    #[test]
    fn ipv4_mapped_clients_and_prefixes_count_as_ipv4() {
        // A bare mapped address is an IPv4 /32.
        assert_eq!(
            "::ffff:192.0.2.7"
                .parse::<Cidr>()
                .expect("cidr")
                .to_string(),
            "192.0.2.7/32"
        );
        assert_verdicts(
            &[],
            &["::ffff:192.0.2.7"],
            &["192.0.2.8", "::ffff:192.0.2.8"],
            &["192.0.2.7", "::ffff:192.0.2.7"],
        );
        // Only ::ffff:0:0/96 is mapped: the deprecated IPv4-compatible ::192.0.2.9 is IPv6.
        assert_verdicts(
            &["192.0.2.0/24"],
            &[],
            &["192.0.2.200", "::ffff:192.0.2.9"],
            &["::192.0.2.9", "::ffff:198.51.100.1", "2001:db8::1"],
        );
    }

    #[test]
    fn deny_wins_over_allow_whatever_the_lengths() {
        assert_verdicts(
            &["192.0.2.0/25", "2001:db8::/48"],
            &["192.0.2.0/24", "2001:db8::/32"],
            &[],
            &["192.0.2.1", "2001:db8::1", "198.51.100.1"],
        );
        assert_verdicts(
            &["192.0.2.0/24"],
            &["192.0.2.128/25"],
            &["192.0.2.1", "192.0.2.127"],
            &["192.0.2.128", "192.0.2.255", "198.51.100.1", "::1"],
        );
        // An empty allow list serves everyone the deny list does not name.
        assert_verdicts(&[], &[], &["192.0.2.1", "::1"], &[]);
    }

    #[test]
    fn duplicates_count_once_and_debug_shows_counts() {
        let list = AccessList::new(
            cidrs(&["192.0.2.0/24", "192.0.2.9/24", "2001:db8::/32"]),
            cidrs(&["10.0.0.0/8"]),
            DenyAction::Ignore,
        );
        assert_eq!((list.allow_len(), list.deny_len()), (2, 1));
        assert_eq!(list.action(), DenyAction::Ignore);
        assert_eq!(
            format!("{list:?}"),
            "AccessList { allow: 2 prefixes, deny: 1 prefixes, action: Ignore }"
        );
    }

    /// Addresses a few bits from one of a few bases, so that random prefixes nest, overlap and
    /// border one another; and some anywhere. IPv4 about half the time, sometimes written as
    /// IPv4-mapped IPv6; a base in ::ffff:0:0/96 makes mapped prefixes too.
    fn address() -> impl Strategy<Value = IpAddr> {
        const V4: [u32; 4] = [0, 0xc000_0201, 0x0a01_0203, u32::MAX];
        const V6: [u128; 4] = [0, 0x2001_0db8 << 96, 0xffff_c000_0207, u128::MAX];
        let near = (
            any::<bool>(),
            0usize..4,
            prop::option::of(0u32..128),
            0u8..3,
        )
            .prop_map(|(v6, base, flip, form)| {
                let flip =
                    |bits: u128, width: u32| flip.map_or(bits, |b| bits ^ (1 << (b % width)));
                if v6 {
                    IpAddr::V6(flip(V6[base], 128).into())
                } else {
                    let v4 = std::net::Ipv4Addr::from(flip(u128::from(V4[base]), 32) as u32);
                    if form == 0 {
                        IpAddr::V6(v4.to_ipv6_mapped())
                    } else {
                        IpAddr::V4(v4)
                    }
                }
            });
        let anywhere = prop_oneof![
            any::<u32>().prop_map(|b| IpAddr::V4(b.into())),
            any::<u128>().prop_map(|b| IpAddr::V6(b.into())),
        ];
        prop_oneof![4 => near, 1 => anywhere]
    }

    fn cidr() -> impl Strategy<Value = Cidr> {
        (address(), 0u8..=128).prop_map(|(address, len)| {
            let max = if address.to_canonical().is_ipv4() {
                33
            } else {
                129
            };
            Cidr::new(address, len % max)
        })
    }

    proptest! {
        #[test]
        fn the_tries_answer_as_the_linear_scan_did(
            allow in prop::collection::vec(cidr(), 0..24),
            deny in prop::collection::vec(cidr(), 0..24),
            clients in prop::collection::vec(address(), 1..32),
        ) {
            let list = AccessList::new(allow.iter().copied(), deny.iter().copied(), DenyAction::Kiss);
            for client in clients {
                prop_assert_eq!(
                    list.permits(client),
                    linear_permits(&allow, &deny, client),
                    "{} with allow {:?} deny {:?}", client, allow, deny
                );
            }
            let distinct = |list: &[Cidr]| {
                list.iter().map(ToString::to_string).collect::<std::collections::HashSet<_>>().len()
            };
            prop_assert_eq!(list.allow_len(), distinct(&allow));
            prop_assert_eq!(list.deny_len(), distinct(&deny));
        }
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
    fn a_client_just_over_the_limit_gets_a_kod_for_one_limited_request_in_four() {
        // One request a second allowed, none in reserve; the client asks every 0.6 s, so it is
        // allowed about one request in two: only one of its limited requests in four is kissed.
        let config = RateLimitConfig {
            burst: 1,
            ..RateLimitConfig::default()
        };
        let start = Instant::now();
        let limiter = RateLimiter::new(config, start);
        let client = IpAddr::from([192, 0, 2, 7]);
        let verdicts: Vec<RateVerdict> = (0..200u64)
            .map(|i| limiter.check(client, start + Duration::from_millis(600 * i)))
            .collect();
        let count = |v: RateVerdict| verdicts.iter().filter(|x| **x == v).count();
        let limited = count(RateVerdict::Kiss) + count(RateVerdict::Drop);
        assert!(limited > 60, "{limited} limited of 200");
        assert_eq!(
            count(RateVerdict::Kiss),
            limited.div_ceil(4),
            "{verdicts:?}"
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

    fn symmetric(mode: Mode, origin: u64) -> [u8; 48] {
        let mut p = Packet::parse(&request(4, 6)).expect("parses").0;
        p.mode = mode;
        p.origin_timestamp = NtpTimestamp::from_bits(origin);
        p.serialize()
    }

    fn decide_from(server: &Server, bytes: &[u8], from: SocketAddr) -> Decision {
        server.decide(bytes, from, &snapshot(), T, Instant::now())
    }

    #[test]
    fn a_configured_peer_is_answered_in_mode_2_and_its_replies_go_to_its_association() {
        let peer = SocketAddr::new(client(), 11123);
        let server = Server::default().with_peers(vec![peer], false);
        let xmt = Packet::parse(&request(4, 6))
            .expect("parses")
            .0
            .transmit_timestamp;
        // A bare request (origin zero) answers nothing of ours: only answered.
        let Decision::Peer {
            forward: false,
            response: Some(r),
        } = decide_from(&server, &symmetric(Mode::SYMMETRIC_ACTIVE, 0), peer)
        else {
            panic!("answered");
        };
        let answer = Packet::parse(&r.finish(T)).expect("parses").0;
        assert_eq!(answer.mode, Mode::SYMMETRIC_PASSIVE);
        assert_eq!(answer.origin_timestamp, xmt);
        assert_eq!(
            (answer.stratum, answer.receive_timestamp),
            (Stratum::new(2), T)
        );
        // Mode 1 that may answer our request: to the association, and answered.
        assert!(matches!(
            decide_from(&server, &symmetric(Mode::SYMMETRIC_ACTIVE, 7), peer),
            Decision::Peer {
                forward: true,
                response: Some(_)
            }
        ));
        // Mode 2 is never answered (two peers would echo each other forever).
        assert_eq!(
            decide_from(&server, &symmetric(Mode::SYMMETRIC_PASSIVE, 7), peer),
            Decision::Peer {
                forward: true,
                response: None
            }
        );
        assert_eq!(
            decide_from(&server, &symmetric(Mode::SYMMETRIC_PASSIVE, 0), peer),
            Decision::Drop(DropReason::UnsupportedMode)
        );
        // The same address on another port is no configured peer.
        let stranger = SocketAddr::new(client(), 11124);
        for mode in [Mode::SYMMETRIC_ACTIVE, Mode::SYMMETRIC_PASSIVE] {
            assert_eq!(
                decide_from(&server, &symmetric(mode, 7), stranger),
                Decision::Drop(DropReason::UnsupportedMode)
            );
        }
    }

    #[test]
    fn passive_peers_get_a_stateless_mode_2_answer_only_when_allowed() {
        let stranger = SocketAddr::new(client(), 123);
        let closed = Server::default();
        let open = Server::default().with_peers(Vec::new(), true);
        assert_eq!(
            decide_from(&closed, &symmetric(Mode::SYMMETRIC_ACTIVE, 0), stranger),
            Decision::Drop(DropReason::UnsupportedMode)
        );
        let Decision::Respond(r) =
            decide_from(&open, &symmetric(Mode::SYMMETRIC_ACTIVE, 0), stranger)
        else {
            panic!("answered");
        };
        assert_eq!(r.packet().mode, Mode::SYMMETRIC_PASSIVE);
        assert_eq!(
            decide_from(&open, &symmetric(Mode::SYMMETRIC_PASSIVE, 7), stranger),
            Decision::Drop(DropReason::UnsupportedMode)
        );
        // The access list holds for peers too.
        let denied = Server::new(
            AccessList::new([], [Cidr::new(client(), 32)], DenyAction::Kiss),
            None,
        )
        .with_peers(vec![stranger], true);
        assert_eq!(
            decide_from(&denied, &symmetric(Mode::SYMMETRIC_ACTIVE, 7), stranger),
            Decision::Drop(DropReason::AccessIgnored)
        );
    }

    #[test]
    fn the_broadcaster_announces_on_schedule_only_while_synchronized() {
        let start = Instant::now();
        let address: SocketAddr = "10.0.0.255:123".parse().expect("address");
        let mut broadcaster = Broadcaster::new([(address, PollInterval::new(2))], start);
        assert_eq!(broadcaster.poll_timeout(), Some(start));
        let unsynchronized = SystemSnapshot::unsynchronized(Precision::new(-20));
        assert!(
            broadcaster
                .poll_transmit(start, &unsynchronized, T)
                .is_none()
        );
        assert_eq!(broadcaster.counts(), (0, 1));
        let next = start + Duration::from_secs(4);
        assert_eq!(broadcaster.poll_timeout(), Some(next));
        let early = next - Duration::from_millis(1);
        assert!(broadcaster.poll_transmit(early, &snapshot(), T).is_none());
        let (to, response) = broadcaster
            .poll_transmit(next, &snapshot(), T)
            .expect("due");
        assert_eq!(to, address);
        let sent = Packet::parse(&response.finish(T)).expect("parses").0;
        assert_eq!(sent.mode, Mode::BROADCAST);
        assert_eq!(sent.poll, PollInterval::new(2));
        assert_eq!(sent.stratum, Stratum::new(2));
        assert!(sent.origin_timestamp.is_zero() && sent.receive_timestamp.is_zero());
        assert_eq!(sent.transmit_timestamp, T);
        assert_eq!(crate::broadcast::check_header(&sent), Ok(()));
        assert_eq!(broadcaster.counts(), (1, 1));
    }
}
