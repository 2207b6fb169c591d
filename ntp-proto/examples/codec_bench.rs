//! The wire codec's speed: parses and re-serializes the eight captured packets of
//! `tests/vectors` over and over, and prints the time per round trip (parse + serialize).
//!
//! ```sh
//! cargo run --release -p ntp-proto --example codec_bench [-- ROUNDS]
//! ```
//!
//! To compare two builds of the codec, copy one build's `target/release/examples/codec_bench`
//! aside and time both with `farm-bench --vs`; the figure it prints is its own timing of the loop.

use std::hint::black_box;
use std::time::Instant;

use ntp_proto::Packet;

const VECTORS: [&str; 8] = [
    include_str!("../tests/vectors/chrony-request.hex"),
    include_str!("../tests/vectors/chrony-reply.hex"),
    include_str!("../tests/vectors/chronyc-request.hex"),
    include_str!("../tests/vectors/chronyc-reply.hex"),
    include_str!("../tests/vectors/ntpdig-request.hex"),
    include_str!("../tests/vectors/ntpdig-reply.hex"),
    include_str!("../tests/vectors/ntpsec-request.hex"),
    include_str!("../tests/vectors/ntpsec-reply.hex"),
];

fn decode_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| match c {
            b'0'..=b'9' => c - b'0',
            _ => (c | 0x20) - b'a' + 10,
        })
        .collect();
    digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(2_000_000), |a| a.parse())
        .unwrap_or_else(|_| {
            eprintln!("usage: codec_bench [ROUNDS]");
            std::process::exit(2);
        });
    let packets: Vec<Vec<u8>> = VECTORS.iter().map(|v| decode_hex(v)).collect();
    let start = Instant::now();
    let mut checksum = 0u64;
    for _ in 0..rounds {
        for bytes in &packets {
            let Ok((packet, _trailer)) = Packet::parse(black_box(bytes)) else {
                eprintln!("a captured vector no longer parses");
                std::process::exit(1);
            };
            let out = black_box(packet.serialize());
            checksum = checksum.wrapping_add(u64::from(out[47]));
        }
    }
    let elapsed = start.elapsed();
    let trips = rounds * packets.len() as u64;
    println!(
        "{trips} parse+serialize round trips in {:.3} s: {:.2} ns each (checksum {checksum})",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e9 / trips as f64
    );
}
