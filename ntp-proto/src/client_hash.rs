//! Where a client's entries go in the server's per-client tables (the rate limiter's client log
//! and the interleaved mode's transmit log): one hash of its address, shared by both.

use std::net::IpAddr;

/// SplitMix64's finalizer over an address: cheap and well mixed.
pub(crate) fn address_hash(address: IpAddr) -> u64 {
    let bits = match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) | (1 << 127),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let mut x = (bits as u64) ^ ((bits >> 64) as u64).rotate_left(29);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
