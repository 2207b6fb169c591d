//! The keys file codec and the MAC checks on arbitrary bytes: `Keys::parse` must never panic; an
//! error names a line of the text and says something; every key it accepts has a non-zero ID and
//! a secret its digest can use, and a packet sealed with it verifies under the parsed keys and
//! fails once a byte changes. The same bytes as a datagram go through `Keys::check_request` and
//! `auth::check_reply`, which must never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntp_proto::auth::{self, Keys, Seal};
use ntp_proto::packet::HEADER_LEN;
use ntp_proto::Packet;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, trailer)) = Packet::parse(data) {
        let fixed = Keys::parse("1 AES128 HEX:000102030405060708090a0b0c0d0e0f\n2 SHA1 x\n3 MD5 y")
            .expect("fixed keys");
        let _ = fixed.check_request(data, trailer.mac());
        for key in fixed.iter() {
            let _ = auth::check_reply(Some(key), data, trailer.mac());
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Keys::parse(text) {
        Ok(keys) => {
            let mut header = [0u8; HEADER_LEN];
            for (i, b) in data.iter().take(HEADER_LEN).enumerate() {
                header[i] = *b;
            }
            header[0] = 0x23; // version 4, client
            for key in keys.iter() {
                assert_ne!(key.id().0, 0);
                let sealed = Seal::Key(*key).seal(header);
                assert_eq!(sealed.len(), HEADER_LEN + 4 + key.digest_type().digest_len());
                let (_, trailer) = Packet::parse(&sealed).expect("a sealed packet parses");
                assert_eq!(keys.check_request(&sealed, trailer.mac()), Ok(Some(*key)));
                let mut altered = sealed.to_vec();
                altered[47] ^= 1;
                assert!(auth::check_reply(Some(key), &altered, trailer.mac()).is_err());
            }
        }
        Err(error) => {
            assert!(error.line >= 1 && error.line <= text.lines().count().max(1));
            assert!(!error.message.is_empty());
        }
    }
});
