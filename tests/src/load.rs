//! The bookkeeping of the `ntp-load` generator, apart from its sockets so that it can be tested:
//! the window of outstanding requests of one socket (each request's transmit timestamp names its
//! slot), the check of a reply, a latency histogram and the counters it all adds up to.

use std::time::{Duration, Instant};

use ntp_proto::auth::Sealed;
use ntp_proto::nts::{NONCE_LEN, SessionKeys, ntp as nts_ntp};
use ntp_proto::{LeapIndicator, Mode, NtpTimestamp, Packet, PollInterval, Version};
use serde::Serialize;

/// The largest window a socket may have (the slot index is 16 bits of the transmit timestamp).
pub const MAX_WINDOW: usize = 1 << 12;

/// Transmit timestamp layout: `prefix:16 | counter:32 | slot:16`. The counter makes every stamp of
/// a run unique, the slot makes the lookup of a reply's origin O(1), and the random prefix keeps a
/// stray reply from another run (or another socket) from matching.
const SLOT_BITS: u32 = 16;
const COUNTER_BITS: u32 = 32;

/// A mode 3, version 4 request with `transmit` as its cookie (RFC 5905 section 7.3).
pub fn request(transmit: NtpTimestamp) -> [u8; 48] {
    Packet::client_request(Version::V4, PollInterval::new(6), transmit).serialize()
}

/// NTS requests (RFC 8915) for the load: the keys and one cookie of one NTS-KE exchange. The
/// server keeps no state per client, so the same cookie serves every request; each request
/// asks for one cookie back (no placeholders), as a client with a full pool does.
#[derive(Clone)]
pub struct NtsLoad {
    keys: SessionKeys,
    cookie: Vec<u8>,
}

impl std::fmt::Debug for NtsLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NtsLoad({}-byte cookie)", self.cookie.len())
    }
}

impl NtsLoad {
    /// The load of `keys` and `cookie`.
    pub fn new(keys: SessionKeys, cookie: Vec<u8>) -> Self {
        Self { keys, cookie }
    }

    /// The NTS request with `transmit` as its cookie: the stamp, unique in the run, also makes
    /// the unique identifier and the nonce unique.
    pub fn request(&self, transmit: NtpTimestamp) -> Option<Sealed> {
        let stamp = transmit.to_bits().to_be_bytes();
        let mut uid = [0u8; 32];
        uid[..8].copy_from_slice(&stamp);
        let mut nonce = [0xa5u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&stamp);
        nts_ntp::seal_request(
            &request(transmit),
            &uid,
            &self.cookie,
            0,
            &self.keys.c2s,
            &nonce,
        )
    }

    /// True if `datagram` authenticates under the S2C key.
    pub fn authentic(&self, datagram: &[u8]) -> bool {
        nts_ntp::authenticates(datagram, &self.keys.s2c)
    }
}

/// The requests of one socket that await a reply, at most `size` at a time.
#[derive(Debug)]
pub struct Window {
    prefix: u64,
    counter: u32,
    /// Per slot: the transmit timestamp in flight (zero when free) and when it was sent.
    slots: Vec<(NtpTimestamp, Instant)>,
    free: Vec<u16>,
}

impl Window {
    /// An empty window of `size` slots (1 to [`MAX_WINDOW`]); `prefix` should be random.
    pub fn new(size: usize, prefix: u16, now: Instant) -> Self {
        let size = size.clamp(1, MAX_WINDOW);
        Self {
            prefix: u64::from(prefix) << (SLOT_BITS + COUNTER_BITS),
            counter: 0,
            slots: vec![(NtpTimestamp::ZERO, now); size],
            free: (0..size as u16).rev().collect(),
        }
    }

    /// How many requests are in flight.
    pub fn outstanding(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes a free slot for a request sent at `now`; returns its transmit timestamp, or `None`
    /// when the window is full.
    pub fn open(&mut self, now: Instant) -> Option<NtpTimestamp> {
        let slot = self.free.pop()?;
        self.counter = self.counter.wrapping_add(1);
        let bits = self.prefix | (u64::from(self.counter) << SLOT_BITS) | u64::from(slot);
        let stamp = NtpTimestamp::from_bits(bits);
        self.slots[usize::from(slot)] = (stamp, now);
        Some(stamp)
    }

    /// Closes the request whose transmit timestamp was `origin`; returns when it was sent, or
    /// `None` if no such request is in flight (a duplicate, a late reply, or a stranger).
    pub fn close(&mut self, origin: NtpTimestamp) -> Option<Instant> {
        let slot = (origin.to_bits() & ((1 << SLOT_BITS) - 1)) as u16;
        let entry = self.slots.get_mut(usize::from(slot))?;
        if origin.is_zero() || entry.0 != origin {
            return None;
        }
        entry.0 = NtpTimestamp::ZERO;
        self.free.push(slot);
        Some(entry.1)
    }

    /// Frees the slots of requests sent before `now - timeout`; returns how many (the lost ones).
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> u64 {
        let mut lost = 0;
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            if !entry.0.is_zero() && now.saturating_duration_since(entry.1) > timeout {
                entry.0 = NtpTimestamp::ZERO;
                self.free.push(slot as u16);
                lost += 1;
            }
        }
        lost
    }
}

/// What one reply amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered a request in flight and is a usable server reply; the round trip it took.
    Valid(Duration),
    /// It answered a request in flight but is not a usable reply (mode, stratum, LI 3, no time).
    Invalid,
    /// Its origin names no request in flight: a duplicate, a reply after its timeout, a stranger.
    Unmatched,
}

/// Matches `datagram`, received at `now`, to its request in `window` and checks it: mode 4,
/// stratum 1 to 15, LI not 3, a transmit timestamp (RFC 4330 section 5 client checks).
pub fn check_reply(window: &mut Window, datagram: &[u8], now: Instant) -> Verdict {
    let Ok((reply, _)) = Packet::parse(datagram) else {
        return Verdict::Unmatched;
    };
    let Some(sent) = window.close(reply.origin_timestamp) else {
        return Verdict::Unmatched;
    };
    let usable = reply.mode == Mode::SERVER
        && reply.stratum.is_synchronized()
        && reply.leap != LeapIndicator::Unsynchronized
        && !reply.transmit_timestamp.is_zero();
    if usable {
        Verdict::Valid(now.saturating_duration_since(sent))
    } else {
        Verdict::Invalid
    }
}

/// Round-trip times in 1 µs buckets up to a limit, and one bucket above it.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
}

impl Histogram {
    /// Buckets up to `limit`.
    pub fn new(limit: Duration) -> Self {
        let micros = usize::try_from(limit.as_micros()).unwrap_or(usize::MAX);
        Self {
            buckets: vec![0; micros.clamp(1, 10_000_000) + 1],
        }
    }

    /// Counts one round trip.
    pub fn record(&mut self, rtt: Duration) {
        let last = self.buckets.len() - 1;
        let micros = usize::try_from(rtt.as_micros()).unwrap_or(last).min(last);
        self.buckets[micros] += 1;
    }

    /// Adds another histogram of the same limit.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }

    /// The `q` quantile (0 to 1) in whole microseconds; `None` when empty.
    pub fn quantile_micros(&self, q: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q.clamp(0.0, 1.0)).ceil() as u64).max(1);
        let mut seen = 0;
        self.buckets
            .iter()
            .position(|&n| {
                seen += n;
                seen >= rank
            })
            .map(|micros| micros as u64)
    }
}

/// What one generator thread counted.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Requests the kernel took.
    pub sent: u64,
    /// Valid replies to requests in flight.
    pub valid: u64,
    /// Replies to requests in flight that failed the checks.
    pub invalid: u64,
    /// Replies that matched no request in flight.
    pub unmatched: u64,
    /// Requests with no reply within the timeout.
    pub lost: u64,
    /// System calls that failed (other than "would block").
    pub errors: u64,
    /// Round-trip times of the valid replies.
    pub latency: Histogram,
}

impl Tally {
    /// All zero, with a histogram up to `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            sent: 0,
            valid: 0,
            invalid: 0,
            unmatched: 0,
            lost: 0,
            errors: 0,
            latency: Histogram::new(timeout),
        }
    }

    /// Counts one reply.
    pub fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Valid(rtt) => {
                self.valid += 1;
                self.latency.record(rtt);
            }
            Verdict::Invalid => self.invalid += 1,
            Verdict::Unmatched => self.unmatched += 1,
        }
    }

    /// Adds another thread's counts.
    pub fn merge(&mut self, other: &Self) {
        self.sent += other.sent;
        self.valid += other.valid;
        self.invalid += other.invalid;
        self.unmatched += other.unmatched;
        self.lost += other.lost;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
    }
}

/// The result of a run, as printed (`--json` prints exactly these fields).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The server driven.
    pub server: String,
    /// Length of the measured interval (after the warm-up), seconds.
    pub seconds: f64,
    /// Sockets (source ports).
    pub sockets: usize,
    /// Requests in flight per socket, at most.
    pub window: usize,
    /// Generator threads.
    pub threads: usize,
    /// Requests sent.
    pub sent: u64,
    /// Valid replies.
    pub valid: u64,
    /// Replies that failed the checks.
    pub invalid: u64,
    /// Replies matching no request in flight.
    pub unmatched: u64,
    /// Requests unanswered within the timeout.
    pub lost: u64,
    /// Requests still in flight when the run ended (neither lost nor answered).
    pub in_flight: u64,
    /// Failed system calls.
    pub errors: u64,
    /// Valid replies per second.
    pub replies_per_second: f64,
    /// CPU time (user + system) the generator itself used, whole run, seconds.
    pub cpu_seconds: f64,
    /// Median round trip, microseconds.
    pub p50_us: Option<u64>,
    /// 99th percentile round trip, microseconds.
    pub p99_us: Option<u64>,
}

impl Report {
    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        let quantile = |q: Option<u64>| q.map_or_else(|| "-".to_owned(), |us| format!("{us} us"));
        format!(
            "ntp-load: {} for {:.1} s, {} sockets x window {}, {} thread(s)\n  \
             sent       {:>10}\n  valid      {:>10}  ({:.0} replies/s)\n  \
             invalid    {:>10}\n  unmatched  {:>10}\n  lost       {:>10}\n  \
             in flight  {:>10}\n  errors     {:>10}\n  latency    p50 {}, p99 {}\n  \
             generator  {:.2} s CPU\n",
            self.server,
            self.seconds,
            self.sockets,
            self.window,
            self.threads,
            self.sent,
            self.valid,
            self.replies_per_second,
            self.invalid,
            self.unmatched,
            self.lost,
            self.in_flight,
            self.errors,
            quantile(self.p50_us),
            quantile(self.p99_us),
            self.cpu_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntp_proto::{ReferenceId, Stratum};

    fn reply_to(request: &[u8; 48], stratum: u8, leap: LeapIndicator) -> [u8; 48] {
        let (request, _) = Packet::parse(request).expect("48 bytes");
        let mut reply = request;
        reply.mode = Mode::SERVER;
        reply.stratum = Stratum::new(stratum);
        reply.leap = leap;
        reply.reference_id = ReferenceId::LOCL;
        reply.origin_timestamp = request.transmit_timestamp;
        reply.receive_timestamp = NtpTimestamp::from_parts(3_900_000_000, 1);
        reply.transmit_timestamp = NtpTimestamp::from_parts(3_900_000_000, 2);
        reply.serialize()
    }

    #[test]
    fn a_reply_closes_its_request_once() {
        let t0 = Instant::now();
        let mut window = Window::new(4, 0xabcd, t0);
        let stamp = window.open(t0).expect("a free slot");
        let reply = reply_to(&request(stamp), 1, LeapIndicator::NoWarning);
        let later = t0 + Duration::from_micros(250);
        assert_eq!(
            check_reply(&mut window, &reply, later),
            Verdict::Valid(Duration::from_micros(250))
        );
        assert_eq!(window.outstanding(), 0);
        // The same reply again is a duplicate.
        assert_eq!(check_reply(&mut window, &reply, later), Verdict::Unmatched);
    }

    #[test]
    fn bad_replies_close_their_request_but_are_invalid() {
        let t0 = Instant::now();
        let mut window = Window::new(4, 1, t0);
        for (stratum, leap) in [
            (0, LeapIndicator::NoWarning),
            (16, LeapIndicator::NoWarning),
            (2, LeapIndicator::Unsynchronized),
        ] {
            let stamp = window.open(t0).expect("a free slot");
            let reply = reply_to(&request(stamp), stratum, leap);
            assert_eq!(check_reply(&mut window, &reply, t0), Verdict::Invalid);
        }
        let stamp = window.open(t0).expect("a free slot");
        let mut mode3 = reply_to(&request(stamp), 1, LeapIndicator::NoWarning);
        mode3[0] = (mode3[0] & !0b111) | 3;
        assert_eq!(check_reply(&mut window, &mode3, t0), Verdict::Invalid);
        // Our own request echoed back carries no origin at all.
        let stamp = window.open(t0).expect("a free slot");
        assert_eq!(
            check_reply(&mut window, &request(stamp), t0),
            Verdict::Unmatched
        );
        window.close(stamp).expect("still in flight");
        assert_eq!(window.outstanding(), 0);
    }

    #[test]
    fn the_window_is_bounded_and_every_stamp_is_unique() {
        let t0 = Instant::now();
        let mut window = Window::new(3, 7, t0);
        let mut stamps = std::collections::HashSet::new();
        for _ in 0..1000 {
            let opened: Vec<_> = std::iter::from_fn(|| window.open(t0)).collect();
            assert_eq!(opened.len(), 3);
            for stamp in opened {
                assert!(stamps.insert(stamp), "stamp {stamp:?} reused");
                assert!(window.close(stamp).is_some());
            }
        }
    }

    #[test]
    fn strangers_and_stale_stamps_do_not_match() {
        let t0 = Instant::now();
        let mut window = Window::new(2, 5, t0);
        let stamp = window.open(t0).expect("a free slot");
        let other_run = Window::new(2, 6, t0).open(t0).expect("a free slot");
        assert_eq!(window.close(other_run), None);
        assert_eq!(window.close(NtpTimestamp::ZERO), None);
        assert_eq!(window.close(NtpTimestamp::from_bits(u64::MAX)), None);
        assert!(window.close(stamp).is_some());
        let reopened = window.open(t0).expect("a free slot");
        assert_ne!(reopened, stamp);
        assert_eq!(window.close(stamp), None, "the old stamp of a reused slot");
    }

    #[test]
    fn old_requests_expire_and_free_their_slots() {
        let t0 = Instant::now();
        let mut window = Window::new(2, 9, t0);
        let old = window.open(t0).expect("slot");
        let young = window.open(t0 + Duration::from_millis(150)).expect("slot");
        assert_eq!(window.open(t0), None, "full");
        let now = t0 + Duration::from_millis(250);
        assert_eq!(window.expire(now, Duration::from_millis(200)), 1);
        assert_eq!(
            window.close(old),
            None,
            "expired, so a late reply is unmatched"
        );
        assert!(window.close(young).is_some());
        assert_eq!(window.outstanding(), 0);
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut h = Histogram::new(Duration::from_millis(1));
        assert_eq!(h.quantile_micros(0.5), None);
        for us in 1..=100 {
            h.record(Duration::from_micros(us));
        }
        h.record(Duration::from_secs(5)); // clamped into the top bucket
        assert_eq!(h.quantile_micros(0.5), Some(51));
        assert_eq!(h.quantile_micros(0.99), Some(100));
        assert_eq!(h.quantile_micros(1.0), Some(1000));
        let mut total = Tally::new(Duration::from_millis(1));
        let mut part = Tally::new(Duration::from_millis(1));
        part.count(Verdict::Valid(Duration::from_micros(10)));
        part.count(Verdict::Unmatched);
        total.merge(&part);
        total.merge(&part);
        assert_eq!((total.valid, total.unmatched), (2, 2));
        assert_eq!(total.latency.quantile_micros(0.5), Some(10));
    }
}
