//! NTS extension fields (RFC 8915 section 5) on arbitrary datagrams, and on genuine ones the
//! fuzzer alters. The first byte chooses: below 128, the rest is a datagram as it arrives; else a
//! genuine NTS request is built (header from the next 48 bytes, cookies held from the next byte)
//! and the remaining bytes are (offset, xor) pairs applied to it.
//!
//! Checks: `check_request` never panics, and answers only requests that are unaltered or whose
//! alterations it cannot see (the header is authenticated, so only the nonce-free parts the AEAD
//! does not cover: none); a NAK only when the cookie changed; every response is at most as long
//! as the request, parses as NTP, and (unless a NAK) authenticates at the client with cookies the
//! server can decrypt. A client session's `check_reply` never panics on any datagram and accepts
//! none but the server's genuine reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ntp_proto::nts::ntp::{self, NtsVerdict};
use ntp_proto::nts::{AeadKey, ClientSession, CookieKey, CookieKeys, SessionKeys, COOKIES};
use ntp_proto::packet::HEADER_LEN;
use ntp_proto::{Mode, Packet};

fn server_keys() -> CookieKeys {
    CookieKeys::new(CookieKey {
        id: 9,
        key: AeadKey([5; 32]),
        created: 0,
    })
}

fn session_keys() -> SessionKeys {
    SessionKeys {
        c2s: AeadKey([1; 32]),
        s2c: AeadKey([2; 32]),
    }
}

fn session(cookies: usize) -> ClientSession {
    let keys = server_keys();
    let cookies = (0..cookies.clamp(1, COOKIES))
        .map(|i| keys.encrypt(&session_keys(), [i as u8; 16]).to_vec())
        .collect();
    ClientSession::new(session_keys(), cookies, [4; 32])
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let keys = server_keys();
    if choice < 128 {
        let _ = ntp::check_request(rest, &keys, [0; 16]);
        if let Ok((packet, _)) = Packet::parse(rest) {
            let mut client = session(8);
            let _ = client.seal_request(&[0x23; HEADER_LEN]);
            assert!(client.check_reply(rest, &packet).is_err(), "no forged reply passes");
        }
        return;
    }
    let Some((header, rest)) = rest.split_first_chunk::<HEADER_LEN>() else {
        return;
    };
    let Some((&held, alterations)) = rest.split_first() else {
        return;
    };
    let mut client = session(usize::from(held % 9));
    let Some(genuine) = client.seal_request(header) else {
        return;
    };
    let mut request = genuine.to_vec();
    for pair in alterations.chunks_exact(2) {
        let at = usize::from(pair[0]) * request.len() / 256;
        request[at] ^= pair[1];
    }
    let altered = request != genuine.to_vec();
    let reply = match ntp::check_request(&request, &keys, [6; 16]) {
        NtsVerdict::Answer(reply) => {
            assert!(!altered, "an altered request was answered");
            reply
        }
        NtsVerdict::Nak(nak) => {
            assert!(altered, "a genuine cookie was NAKed");
            let sealed = nak.seal(&[0; HEADER_LEN]);
            assert!(sealed.len() <= request.len());
            return;
        }
        NtsVerdict::Drop => return,
    };
    let mut response = Packet::parse_header(header);
    response.mode = Mode::SERVER;
    let sealed = reply.seal(&response.serialize());
    assert!(sealed.len() <= request.len(), "longer than the request");
    let (packet, _) = Packet::parse(&sealed).expect("the response parses");
    assert_eq!(client.check_reply(&sealed, &packet), Ok(()));
    assert!(client.cookies() >= 1);
});
