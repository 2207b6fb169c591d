//! `Packet::parse` on arbitrary bytes: it must never panic, and whatever it accepts must account
//! for every input byte and re-encode to the bytes it came from (RFC 5905 section 7.3, RFC 7822).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntp_proto::packet::{HEADER_LEN, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok((packet, trailer)) = Packet::parse(data) else {
        return;
    };
    let header = packet.serialize();
    assert_eq!(header.as_slice(), &data[..HEADER_LEN], "header re-encodes");

    let extensions_len: usize = trailer.extensions().map(|f| 4 + f.value.len()).sum();
    let mac_len = trailer.mac().map_or(0, <[u8]>::len);
    assert_eq!(
        HEADER_LEN + extensions_len + mac_len,
        data.len(),
        "extension fields and MAC cover the rest of the input"
    );

    let (again, empty) = Packet::parse(&header).expect("a serialized header parses");
    assert_eq!(again, packet, "parse(serialize(p)) == p");
    assert!(empty.is_empty());
});
