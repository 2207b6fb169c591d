//! NTS-KE records (RFC 8915 section 4) on arbitrary bytes: `record::message_len` and
//! `parse_message` never panic and agree (a complete message parses, its records re-encode to a
//! message that parses to the same records); `KeRequest::parse` and `KeResponse::parse` never
//! panic; the server's `ke::respond` never panics and always answers with a complete message
//! that a client reads as either eight cookies the server can decrypt or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntp_proto::nts::ke::{self, KeResponse, Negotiation};
use ntp_proto::nts::{
    AeadKey, CookieKey, CookieKeys, KeOutcome, KeRequest, SessionKeys, record, COOKIES,
};

fuzz_target!(|data: &[u8]| {
    match record::message_len(data) {
        Ok(Some(len)) => {
            let records = record::parse_message(&data[..len]).expect("a complete message parses");
            let again = record::encode_message(&records);
            assert_eq!(record::parse_message(&again).expect("re-encoded"), records);
        }
        Ok(None) => assert!(record::parse_message(data).is_err()),
        Err(_) => assert!(record::parse_message(data).is_err()),
    }
    let _ = KeResponse::parse(data);
    let request_ok = KeRequest::parse(data).is_ok();
    let keys = CookieKeys::new(CookieKey {
        id: 7,
        key: AeadKey([3; 32]),
        created: 0,
    });
    let session = SessionKeys {
        c2s: AeadKey([1; 32]),
        s2c: AeadKey([2; 32]),
    };
    let mut n = 0u8;
    let negotiation = Negotiation {
        server: Some("127.0.0.1".into()),
        port: Some(11123),
    };
    let nonces = || {
        n = n.wrapping_add(1);
        [n; 16]
    };
    let (response, outcome) = ke::respond(data, |_| Some(session), &keys, nonces, &negotiation);
    assert_eq!(record::message_len(&response), Ok(Some(response.len())));
    match outcome {
        KeOutcome::Accepted => {
            assert!(request_ok);
            let parsed = KeResponse::parse(&response).expect("our own response parses");
            assert_eq!(parsed.cookies.len(), COOKIES);
            assert!(parsed.cookies.iter().all(|c| keys.decrypt(c) == Some(session)));
            assert_eq!(parsed.negotiation, negotiation);
        }
        KeOutcome::NothingInCommon => assert!(KeResponse::parse(&response).is_err()),
        KeOutcome::Refused(_) => {
            assert!(!request_ok);
            assert!(KeResponse::parse(&response).is_err());
        }
    }
});
