//! The client's reply path on arbitrary datagrams: `Client::handle_reply` must never panic, and a
//! datagram that does not echo the request's cookie must change nothing: no clock action, no
//! sample, the request still outstanding. The first 16 bytes choose T1 and T4; the rest is the
//! datagram, whose origin timestamp is replaced by the cookie when the 16th byte is odd, so the
//! fuzzer also reaches the checks after the origin match (KoD, LI, stratum, delay, distance).
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ntp_proto::{Client, ClientConfig, ClockAction, Event, NtpTimestamp, SourceConfig};

const COOKIE: u64 = 0x0123_4567_89ab_cdef;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let t1 = NtpTimestamp::from_bits(u64::from_be_bytes(data[..8].try_into().unwrap()));
    let t4 = NtpTimestamp::from_bits(u64::from_be_bytes(data[8..16].try_into().unwrap()));
    let mut datagram = data[16..].to_vec();
    let matched = data[15] & 1 == 1 && datagram.len() >= 48;
    if matched {
        datagram[24..32].copy_from_slice(&COOKIE.to_be_bytes());
    }
    let now = Instant::now();
    let mut client = Client::new(ClientConfig::default());
    let address: SocketAddr = "192.0.2.1:123".parse().unwrap();
    let id = client.add_source(address, SourceConfig::default(), now).unwrap();
    let transmit = client.poll_transmit(now, COOKIE).unwrap();
    assert!(transmit.bytes.len() <= 48);
    client.handle_reply(now, t4, id, t1, t4, &datagram, None);
    let mut moved = false;
    while let Some(event) = client.poll_event() {
        if let Event::Clock(ClockAction::Step { .. } | ClockAction::Slew { .. }) = event {
            moved = true;
        }
    }
    let report = client.sources(t4)[0];
    if !matched || datagram.get(24..32) != Some(&COOKIE.to_be_bytes()[..]) {
        assert!(!moved, "a datagram without our cookie moved the clock");
        assert_eq!(report.counters.accepted, 0);
        assert!(report.estimate.is_none());
    }
    assert!(report.counters.accepted <= report.counters.sent);
});
