//! Where entries go in the server's bounded tables: the rate limiter's client log by the client's
//! address, the interleaved mode's transmit log by a reply's receive timestamp. One mixer for both.

use std::net::IpAddr;

/// SplitMix64's finalizer over an address: cheap and well mixed.
pub(crate) fn address_hash(address: IpAddr) -> u64 {
    let bits = match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) | (1 << 127),
        IpAddr::V6(v6) => u128::from(v6),
    };
    mix((bits as u64) ^ ((bits >> 64) as u64).rotate_left(29))
}

/// SplitMix64's finalizer: every input bit moves every output bit.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
