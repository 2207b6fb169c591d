//! Interleaved client/server mode (RFC 9769 section 2; chrony's `xleave`).
//!
//! A server can only write an estimate of its transmit time into a reply: the packet leaves after
//! its transmit timestamp was written. The kernel knows the real time it left, but only after
//! the send. In interleaved mode the server keeps that precise time and sends it in its *next*
//! reply to the same client, which combines it with the timestamps of the previous exchange.
//!
//! - A client asks for it by naming, as its request's origin, the receive timestamp of the
//!   server's previous reply, and by sending a receive timestamp different from its transmit
//!   timestamp. The server answers in interleaved mode when its [`TransmitLog`] holds the
//!   precise transmit time of the reply with that receive timestamp: origin = the request's
//!   receive timestamp, receive = this request's arrival, transmit = that earlier reply's
//!   precise transmit time. Otherwise it answers in basic mode (origin = the request's transmit).
//! - The client tells the two kinds of reply apart by their origin: it sends random, distinct
//!   receive and transmit timestamps, so that only the server it asked can produce either
//!   origin.

use std::net::IpAddr;

use crate::packet::Packet;
use crate::time::{NtpDuration, NtpTimestamp};

/// Entries of a [`TransmitLog`]: at about 48 bytes each, some 200 kB, like chrony's client log.
pub const TRANSMIT_LOG_ENTRIES: usize = 4096;
/// Entries per set: replies whose receive timestamps hash alike, the oldest of them replaced
/// first.
const WAYS: usize = 8;

/// One reply's precise transmit time, under the receive timestamp a client names it by.
#[derive(Clone, Copy, Debug)]
struct Entry {
    client: IpAddr,
    receive: NtpTimestamp,
    transmit: NtpTimestamp,
    /// When it was recorded, in records made: the oldest entry of a set makes room first.
    order: u64,
}

/// The server's precise transmit timestamps of its last replies (RFC 9769 section 2), in bounded
/// memory: a set-associative table of [`TRANSMIT_LOG_ENTRIES`] entries, hashed by the reply's
/// receive timestamp (as chrony keys its map), [`WAYS`] per set, the oldest of a set replaced
/// first. So the table is shared by replies, not by addresses: the many clients behind one NAT
/// address keep their entries as long as any other client's, where sets by address held eight
/// between them. An entry answers only the address it was recorded for. Memory is taken on the
/// first record, so a server no client interleaves with spends none.
#[derive(Clone, Debug, Default)]
pub struct TransmitLog {
    entries: Vec<Option<Entry>>,
    records: u64,
}

impl TransmitLog {
    /// RFC 9769 section 2: the precise transmit time of our reply to `client` whose receive
    /// timestamp was `origin`, if we still have it.
    pub fn lookup(&self, client: IpAddr, origin: NtpTimestamp) -> Option<NtpTimestamp> {
        if origin.is_zero() || self.entries.is_empty() {
            return None;
        }
        let client = client.to_canonical();
        self.set(origin)
            .iter()
            .flatten()
            .find(|e| e.client == client && e.receive == origin)
            .map(|e| e.transmit)
    }

    /// Remembers that our reply to `client` with receive timestamp `receive` left at `transmit`.
    pub fn record(&mut self, client: IpAddr, receive: NtpTimestamp, transmit: NtpTimestamp) {
        if self.entries.is_empty() {
            self.entries = vec![None; TRANSMIT_LOG_ENTRIES];
        }
        let client = client.to_canonical();
        self.records += 1;
        let order = self.records;
        let start = self.set_start(receive);
        let ways = &mut self.entries[start..start + WAYS];
        let index = ways
            .iter()
            .position(|e| e.is_some_and(|e| e.client == client && e.receive == receive))
            .or_else(|| ways.iter().position(Option::is_none))
            .or_else(|| {
                let oldest = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.map(|e| e.order));
                oldest.map(|(i, _)| i)
            })
            .unwrap_or(0);
        ways[index] = Some(Entry {
            client,
            receive,
            transmit,
            order,
        });
    }

    fn set_start(&self, receive: NtpTimestamp) -> usize {
        let sets = self.entries.len() / WAYS;
        (crate::client_hash::mix(receive.to_bits()) as usize % sets.max(1)) * WAYS
    }

    fn set(&self, receive: NtpTimestamp) -> &[Option<Entry>] {
        let start = self.set_start(receive);
        &self.entries[start..start + WAYS]
    }
}

/// The longest a server may hold a request before its reply leaves (chrony's
/// MAX_SERVER_INTERVAL): an interleaved transmit time later than this after the earlier
/// request's arrival is not that reply's.
const MAX_SERVER_INTERVAL: NtpDuration = NtpDuration::from_seconds(4);
/// Requests without a valid reply after which the client asks in basic mode again (chrony's
/// MAX_CLIENT_INTERLEAVED_TX): the server will have forgotten the exchange it would name.
const MAX_INTERLEAVED_TX: u32 = 4;

/// One exchange whose reply's precise transmit time the next interleaved reply brings: our T1 and
/// T4 and the server's T2 (by which the server finds it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Previous {
    /// When our request left.
    pub t1: NtpTimestamp,
    /// When it reached the server: the origin of our next interleaved request.
    pub t2: NtpTimestamp,
    /// When the server's reply reached us.
    pub t4: NtpTimestamp,
}

/// What a reply to an interleaving client's request is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReplyKind {
    /// A basic reply (origin = our transmit timestamp): an exchange of its own.
    Basic,
    /// An interleaved reply (origin = our receive timestamp): its transmit timestamp completes
    /// the previous exchange.
    Interleaved(Previous),
}

/// The client's half of interleaved mode (RFC 9769 section 2): what each request names, and how
/// a reply reads. A request always carries a receive timestamp (random, unlike its transmit
/// timestamp), so that the server keeps its reply's precise transmit time; it names the previous
/// exchange (origin = that reply's receive timestamp) while that exchange is recent. A lost reply
/// leaves the previous exchange in place, so the next request names the last one that completed,
/// which a server that kept it can still answer; a reordered or replayed reply names nothing we
/// asked and is dropped by its origin. A server without interleaved mode answers in basic mode,
/// and every exchange is then a basic one.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ClientInterleave {
    previous: Option<Previous>,
    unanswered: u32,
}

impl ClientInterleave {
    /// The origin and receive timestamps of the next request, whose receive timestamp is
    /// `receive_cookie`: origin is the previous exchange's T2, or zero (basic mode).
    pub fn request_fields(&mut self, receive_cookie: NtpTimestamp) -> (NtpTimestamp, NtpTimestamp) {
        let origin = self
            .previous
            .filter(|_| self.unanswered < MAX_INTERLEAVED_TX)
            .map_or(NtpTimestamp::ZERO, |p| p.t2);
        self.unanswered = self.unanswered.saturating_add(1);
        (origin, receive_cookie)
    }

    /// RFC 9769 section 2: a reply whose origin is our request's transmit timestamp `cookie` is
    /// basic; one whose origin is its receive timestamp `receive_cookie` is interleaved, if we
    /// named an exchange; anything else answers nothing we asked.
    pub fn classify(
        &self,
        reply: &Packet,
        cookie: NtpTimestamp,
        receive_cookie: NtpTimestamp,
    ) -> Option<ReplyKind> {
        if reply.origin_timestamp == cookie {
            return Some(ReplyKind::Basic);
        }
        match self.previous {
            Some(previous) if reply.origin_timestamp == receive_cookie => {
                Some(ReplyKind::Interleaved(previous))
            }
            _ => None,
        }
    }

    /// The interleaved reply as the exchange it completes: T2 = the previous exchange's, T3 = the
    /// reply's transmit timestamp (T1 and T4 are the previous exchange's too). The reference time
    /// is checked against this reply's own receive timestamp, the latest server time it carries
    /// (RFC 5905 appendix A.5.1.1 checks it against the transmit timestamp, which here is the
    /// earlier reply's): a server that updated its reference since then is not at fault.
    pub fn completed_exchange(previous: Previous, reply: &Packet) -> Packet {
        let mut exchange = *reply;
        exchange.receive_timestamp = previous.t2;
        if reply.receive_timestamp - reply.reference_timestamp >= NtpDuration::ZERO
            && reply.transmit_timestamp - reply.reference_timestamp < NtpDuration::ZERO
        {
            exchange.reference_timestamp = reply.transmit_timestamp;
        }
        exchange
    }

    /// True if the interleaved reply's transmit time can be that of the previous exchange's
    /// reply: within [`MAX_SERVER_INTERVAL`] after its T2.
    pub fn plausible(previous: Previous, reply: &Packet) -> bool {
        let held = reply.transmit_timestamp - previous.t2;
        held >= NtpDuration::ZERO && held <= MAX_SERVER_INTERVAL
    }

    /// A valid reply to our last request arrived: it is the exchange the next request names.
    pub fn answered(&mut self, t1: NtpTimestamp, reply: &Packet, t4: NtpTimestamp) {
        self.previous = Some(Previous {
            t1,
            t2: reply.receive_timestamp,
            t4,
        });
        self.unanswered = 0;
    }

    /// Forgets the previous exchange (the clock was stepped, or the reply was not usable).
    pub fn forget(&mut self) {
        self.previous = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: u64) -> NtpTimestamp {
        NtpTimestamp::from_bits(0xe000_0000_0000_0000 + n)
    }

    #[test]
    fn a_recorded_transmit_is_found_by_its_client_and_receive_timestamp_only() {
        let mut log = TransmitLog::default();
        let a: IpAddr = "192.0.2.1".parse().expect("address");
        let b: IpAddr = "192.0.2.2".parse().expect("address");
        assert_eq!(log.lookup(a, ts(1)), None);
        log.record(a, ts(1), ts(2));
        assert_eq!(log.lookup(a, ts(1)), Some(ts(2)));
        assert_eq!(log.lookup(b, ts(1)), None, "another client");
        assert_eq!(log.lookup(a, ts(2)), None, "another reply");
        assert_eq!(log.lookup(a, NtpTimestamp::ZERO), None);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("address");
        assert_eq!(log.lookup(mapped, ts(1)), Some(ts(2)));
    }

    #[test]
    fn clients_behind_one_address_keep_their_entries_and_the_oldest_make_room() {
        let mut log = TransmitLog::default();
        let nat: IpAddr = "192.0.2.1".parse().expect("address");
        // Two hundred clients behind one address, one reply each since their last poll: every
        // one is still there to be named.
        for n in 0..200 {
            log.record(nat, ts(1000 + n), ts(2000 + n));
        }
        assert!((0..200).all(|n| log.lookup(nat, ts(1000 + n)) == Some(ts(2000 + n))));
        // Past the table's size, the oldest go first: of four tables' worth, the first is gone
        // and most of the last is kept.
        let total = 4 * TRANSMIT_LOG_ENTRIES as u64;
        for n in 0..total {
            log.record(nat, ts(10_000 + n), ts(1));
        }
        let kept = |range: std::ops::Range<u64>| {
            range
                .filter(|n| log.lookup(nat, ts(10_000 + n)).is_some())
                .count()
        };
        assert_eq!(kept(0..TRANSMIT_LOG_ENTRIES as u64), 0);
        let last = total - TRANSMIT_LOG_ENTRIES as u64 / 2;
        assert!(kept(last..total) > TRANSMIT_LOG_ENTRIES / 2 * 9 / 10);
    }

    fn reply(origin: NtpTimestamp, receive: NtpTimestamp, transmit: NtpTimestamp) -> Packet {
        let mut p = Packet::client_request(
            crate::packet::Version::new(4),
            crate::packet::PollInterval::new(0),
            transmit,
        );
        p.mode = crate::packet::Mode::SERVER;
        p.origin_timestamp = origin;
        p.receive_timestamp = receive;
        p
    }

    #[test]
    fn a_client_names_its_last_completed_exchange_until_too_many_requests_go_unanswered() {
        let mut client = ClientInterleave::default();
        assert_eq!(client.request_fields(ts(7)), (NtpTimestamp::ZERO, ts(7)));
        let (cookie, receive_cookie) = (ts(1), ts(7));
        let basic = reply(cookie, ts(100), ts(101));
        assert_eq!(
            client.classify(&basic, cookie, receive_cookie),
            Some(ReplyKind::Basic)
        );
        client.answered(ts(99), &basic, ts(102));
        // The next request names that exchange by the server's T2.
        assert_eq!(client.request_fields(ts(8)), (ts(100), ts(8)));
        // A reply is lost: the next still names it, up to the limit; then basic mode again.
        for _ in 1..MAX_INTERLEAVED_TX {
            assert_eq!(client.request_fields(ts(9)).0, ts(100));
        }
        assert_eq!(client.request_fields(ts(9)).0, NtpTimestamp::ZERO);
    }

    #[test]
    fn an_interleaved_reply_completes_the_previous_exchange_and_nothing_else_matches() {
        let mut client = ClientInterleave::default();
        client.answered(ts(99), &reply(ts(1), ts(100), ts(101)), ts(102));
        let (cookie, receive_cookie) = (ts(11), ts(17));
        client.request_fields(receive_cookie);
        let previous = Previous {
            t1: ts(99),
            t2: ts(100),
            t4: ts(102),
        };
        let precise = ts(100) + NtpDuration::from_nanos(30_000);
        let interleaved = reply(receive_cookie, ts(200), precise);
        assert_eq!(
            client.classify(&interleaved, cookie, receive_cookie),
            Some(ReplyKind::Interleaved(previous))
        );
        assert!(ClientInterleave::plausible(previous, &interleaved));
        let exchange = ClientInterleave::completed_exchange(previous, &interleaved);
        assert_eq!(
            (exchange.receive_timestamp, exchange.transmit_timestamp),
            (ts(100), precise)
        );
        // A reference time after the earlier reply left but before this one's receive timestamp
        // passes; one after that fails as it would in basic mode.
        let mut updated = interleaved;
        updated.reference_timestamp = ts(150);
        let exchange = ClientInterleave::completed_exchange(previous, &updated);
        assert!(exchange.transmit_timestamp - exchange.reference_timestamp >= NtpDuration::ZERO);
        updated.reference_timestamp = ts(201);
        let exchange = ClientInterleave::completed_exchange(previous, &updated);
        assert_eq!(exchange.reference_timestamp, ts(201));
        // A transmit time before the earlier request arrived, or seconds after: not that reply's.
        let early = reply(receive_cookie, ts(200), ts(99));
        assert!(!ClientInterleave::plausible(previous, &early));
        let late = reply(
            receive_cookie,
            ts(200),
            ts(100) + NtpDuration::from_seconds(5),
        );
        assert!(!ClientInterleave::plausible(previous, &late));
        // An origin that is neither cookie: a stale, replayed or forged reply.
        let stale = reply(ts(1), ts(200), precise);
        assert_eq!(client.classify(&stale, cookie, receive_cookie), None);
        // Without a previous exchange, the receive cookie names nothing.
        client.forget();
        assert_eq!(client.classify(&interleaved, cookie, receive_cookie), None);
    }

    #[test]
    fn a_flood_of_clients_stays_within_the_table() {
        let mut log = TransmitLog::default();
        for n in 0..100_000u32 {
            log.record(IpAddr::from(n.to_be_bytes()), ts(u64::from(n)), ts(1));
        }
        assert_eq!(log.entries.len(), TRANSMIT_LOG_ENTRIES);
        let last = IpAddr::from(99_999u32.to_be_bytes());
        assert_eq!(log.lookup(last, ts(99_999)), Some(ts(1)));
    }
}
