//! Any 48 bytes are a header: `parse_header` then `serialize` gives the same bytes back, and the
//! typed fields rebuilt from their wire values give the same packet (open enums lose nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntp_proto::packet::{HEADER_LEN, Packet};
use ntp_proto::{LeapIndicator, Mode, ReferenceId, Stratum, Version};

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = data.first_chunk::<HEADER_LEN>() else {
        return;
    };
    let packet = Packet::parse_header(bytes);
    let wire = packet.serialize();
    assert_eq!(&wire, bytes, "serialize(parse_header(b)) == b");

    let (parsed, trailer) = Packet::parse(&wire).expect("48 bytes parse");
    assert_eq!(parsed, packet);
    assert!(trailer.is_empty());

    let rebuilt = Packet {
        leap: LeapIndicator::from_bits(packet.leap.to_bits()),
        version: Version::new(packet.version.get()),
        mode: Mode::new(packet.mode.get()),
        stratum: Stratum::new(packet.stratum.get()),
        reference_id: ReferenceId::from_bytes(packet.reference_id.to_bytes()),
        ..packet
    };
    assert_eq!(
        rebuilt, packet,
        "typed fields round-trip through their wire values"
    );
});
