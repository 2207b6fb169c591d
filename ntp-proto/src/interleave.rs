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

use crate::time::NtpTimestamp;

/// Entries of a [`TransmitLog`]: at about 48 bytes each, some 200 kB, like chrony's client log.
pub const TRANSMIT_LOG_ENTRIES: usize = 4096;
/// Entries per set: the replies to one client (or to clients whose addresses hash alike) that
/// are remembered at once.
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

/// The server's precise transmit timestamps of its last replies to each client (RFC 9769
/// section 2), in bounded memory: a set-associative table of [`TRANSMIT_LOG_ENTRIES`] entries,
/// hashed by the client's address, [`WAYS`] per set, the oldest of a set replaced first. Memory
/// is taken on the first record, so a server no client interleaves with spends none.
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
        self.set(client)
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
        let start = self.set_start(client);
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

    fn set_start(&self, client: IpAddr) -> usize {
        let sets = self.entries.len() / WAYS;
        (crate::server::address_hash(client) as usize % sets.max(1)) * WAYS
    }

    fn set(&self, client: IpAddr) -> &[Option<Entry>] {
        let start = self.set_start(client);
        &self.entries[start..start + WAYS]
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
    fn a_client_keeps_its_last_replies_and_the_oldest_make_room() {
        let mut log = TransmitLog::default();
        let a: IpAddr = "192.0.2.1".parse().expect("address");
        for n in 0..20 {
            log.record(a, ts(100 + n), ts(200 + n));
        }
        let kept: Vec<u64> = (0..20)
            .filter(|n| log.lookup(a, ts(100 + n)).is_some())
            .collect();
        assert_eq!(kept, (12..20).collect::<Vec<_>>());
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
