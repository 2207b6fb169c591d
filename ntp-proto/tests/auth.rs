//! Symmetric keys through the public API: the server answers each key with its own MAC and
//! anything that does not authenticate with a crypto-NAK; an authenticated source takes only
//! replies signed with its key, and everything else (unsigned, crypto-NAK, another key, a flipped
//! bit, an unsigned kiss-o'-death, a replay) is counted and changes nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ntp_proto::auth::{AuthError, CRYPTO_NAK, DigestType, KeyId, Keys, Seal, SymmetricKey};
use ntp_proto::packet::HEADER_LEN;
use ntp_proto::{
    AssociationKind, Client, ClientConfig, ClockAction, Decision, DropReason, Event, Mode,
    NtpDuration, NtpTimestamp, Packet, PollInterval, Precision, ReferenceId, ReplyError,
    ReplyOutcome, Server, SourceConfig, Stratum, SystemSnapshot, Version,
};

const T: NtpTimestamp = NtpTimestamp::from_parts(3_900_000_000, 0);

fn aes() -> SymmetricKey {
    SymmetricKey::new(KeyId(1), DigestType::Aes128Cmac, &[0x11; 16]).expect("key")
}

fn sha1() -> SymmetricKey {
    SymmetricKey::new(KeyId(2), DigestType::Sha1, b"twenty-byte-secret!!").expect("key")
}

fn md5() -> SymmetricKey {
    SymmetricKey::new(KeyId(3), DigestType::Md5, b"legacy").expect("key")
}

fn snapshot() -> SystemSnapshot {
    SystemSnapshot::local_reference(Stratum::new(1), ReferenceId::LOCL, Precision::new(-22), T)
}

fn client_address() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 40_000))
}

fn request(mode: Mode, seal: Seal) -> Vec<u8> {
    let mut packet = Packet::client_request(
        Version::V4,
        PollInterval::new(6),
        NtpTimestamp::from_bits(99),
    );
    packet.mode = mode;
    seal.seal(packet.serialize()).to_vec()
}

/// The server's answer to `bytes` from `from`, finished at T + 1 s.
fn answer(server: &Server, bytes: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let decision = server.decide(bytes, from, &snapshot(), T, Instant::now());
    let response = match decision {
        Decision::Respond(r) => r,
        Decision::Peer { response, .. } => response?,
        Decision::Drop(_) => return None,
    };
    Some(response.finish(T + NtpDuration::from_seconds(1)).to_vec())
}

#[test]
fn the_server_answers_each_key_with_its_mac_and_bad_macs_with_a_crypto_nak() {
    let server = Server::default().with_keys(Keys::new([aes(), sha1(), md5()]), Vec::new());
    for key in [aes(), sha1(), md5()] {
        let req = request(Mode::CLIENT, Seal::Key(key));
        let reply = answer(&server, &req, client_address()).expect("answered");
        assert_eq!(reply.len(), req.len(), "{key:?}: as long as the request");
        let (packet, trailer) = Packet::parse(&reply).expect("parses");
        assert_eq!(packet.mode, Mode::SERVER);
        assert_eq!(
            ntp_proto::auth::check_reply(Some(&key), &reply, trailer.mac()),
            Ok(())
        );
    }
    // No MAC: answered as ever, 48 bytes.
    let plain = request(Mode::CLIENT, Seal::None);
    assert_eq!(
        answer(&server, &plain, client_address()).map(|r| r.len()),
        Some(HEADER_LEN)
    );
    // An unknown key, a wrong secret, a flipped bit: a crypto-NAK, never longer than the request.
    let unknown = SymmetricKey::new(KeyId(77), DigestType::Md5, b"x").expect("key");
    let impostor = SymmetricKey::new(KeyId(1), DigestType::Aes128Cmac, &[0x22; 16]).expect("key");
    let mut flipped = request(Mode::CLIENT, Seal::Key(aes()));
    flipped[40] ^= 1;
    for bad in [
        request(Mode::CLIENT, Seal::Key(unknown)),
        request(Mode::CLIENT, Seal::Key(impostor)),
        flipped,
    ] {
        let reply = answer(&server, &bad, client_address()).expect("a crypto-NAK");
        assert_eq!(reply.len(), HEADER_LEN + 4);
        assert!(reply.len() <= bad.len());
        assert_eq!(reply[HEADER_LEN..], CRYPTO_NAK);
    }
}

#[test]
fn a_keyed_peer_must_sign_every_packet() {
    let peer = SocketAddr::from(([192, 0, 2, 7], 123));
    let server = Server::default()
        .with_peers(vec![peer], false)
        .with_keys(Keys::new([aes(), sha1()]), vec![(peer, KeyId(1))]);
    let decide = |bytes: &[u8]| server.decide(bytes, peer, &snapshot(), T, Instant::now());
    // Signed with its key: to its association, answered in mode 2 with the same key.
    let signed = request(Mode::SYMMETRIC_ACTIVE, Seal::Key(aes()));
    let Decision::Peer {
        response: Some(response),
        ..
    } = decide(&signed)
    else {
        panic!("a signed poll is the peer's");
    };
    assert_eq!(response.seal(), &Seal::Key(aes()));
    // Without a MAC: dropped (a crypto-NAK would be longer); a valid MAC under another key or a
    // bad one: a crypto-NAK, and the association never sees it.
    assert_eq!(
        decide(&request(Mode::SYMMETRIC_ACTIVE, Seal::None)),
        Decision::Drop(DropReason::Unauthenticated)
    );
    for other in [Seal::Key(sha1()), Seal::CryptoNak] {
        let Decision::Respond(r) = decide(&request(Mode::SYMMETRIC_ACTIVE, other)) else {
            panic!("answered with a crypto-NAK");
        };
        assert_eq!(r.seal(), &Seal::CryptoNak);
    }
    let mut passive = request(Mode::SYMMETRIC_PASSIVE, Seal::Key(sha1()));
    passive[24] = 1; // a non-zero origin: it would answer our poll
    assert_eq!(
        decide(&passive),
        Decision::Drop(DropReason::Unauthenticated)
    );
}

fn s(seconds: f64) -> NtpDuration {
    NtpDuration::from_seconds_f64(seconds)
}

fn lab(key: Option<SymmetricKey>) -> SourceConfig {
    SourceConfig {
        min_poll: PollInterval::new(0),
        max_poll: PollInterval::new(2),
        key,
        ..SourceConfig::default()
    }
}

fn clock_actions(client: &mut Client) -> Vec<ClockAction> {
    std::iter::from_fn(|| client.poll_event())
        .filter_map(|e| match e {
            Event::Clock(action) => Some(action),
            _ => None,
        })
        .collect()
}

/// A reply to `request` from a server `offset` seconds ahead, signed as `seal` says.
fn reply(request: &[u8], offset: f64, seal: Seal) -> Vec<u8> {
    let (req, _) = Packet::parse(request).expect("our request parses");
    let mut reply = Packet::client_request(Version::V4, req.poll, T + s(offset + 0.001));
    reply.mode = Mode::SERVER;
    reply.stratum = Stratum::PRIMARY;
    reply.reference_id = ReferenceId::LOCL;
    reply.origin_timestamp = req.transmit_timestamp;
    reply.receive_timestamp = T + s(offset + 0.001);
    seal.seal(reply.serialize()).to_vec()
}

#[test]
fn an_authenticated_source_takes_only_replies_signed_with_its_key() {
    for key in [aes(), sha1(), md5()] {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let id = client
            .add_source(client_address(), lab(Some(key)), start)
            .expect("added");
        let transmit = client.poll_transmit(start, 42).expect("due");
        assert_eq!(transmit.kind, AssociationKind::Server);
        let (_, trailer) = Packet::parse(&transmit.bytes).expect("parses");
        assert_eq!(
            ntp_proto::auth::check_reply(Some(&key), &transmit.bytes, trailer.mac()),
            Ok(()),
            "the request is signed"
        );
        assert_eq!(client.sources(T)[0].key, Some(key.id()));
        let other = if key == aes() { sha1() } else { aes() };
        let mut flipped = reply(&transmit.bytes, 0.0, Seal::Key(key));
        flipped[47] ^= 0x80;
        let mut kiss = Packet::parse(&reply(&transmit.bytes, 0.0, Seal::None))
            .expect("parses")
            .0;
        (kiss.stratum, kiss.reference_id) = (Stratum::UNSPECIFIED, ReferenceId::DENY);
        // Racing the genuine reply: 1000 s off without a MAC, a crypto-NAK, another key, a bit
        // flipped, an unsigned kiss-o'-death DENY.
        let attacks = [
            (
                reply(&transmit.bytes, 1000.0, Seal::None),
                AuthError::Missing,
            ),
            (
                reply(&transmit.bytes, 1000.0, Seal::CryptoNak),
                AuthError::CryptoNak,
            ),
            (
                reply(&transmit.bytes, 1000.0, Seal::Key(other)),
                AuthError::WrongKey(other.id()),
            ),
            (flipped, AuthError::BadDigest(key.id())),
            (kiss.serialize().to_vec(), AuthError::Missing),
        ];
        for (bytes, why) in &attacks {
            client.handle_reply(start, T, id, T, T + s(0.002), bytes, None);
            let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
            assert!(
                events.contains(&Event::Reply(
                    id,
                    ReplyOutcome::Rejected(ReplyError::Unauthenticated(*why))
                )),
                "{key:?} {why:?}: {events:?}"
            );
        }
        let report = client.sources(T)[0];
        assert_eq!((report.counters.rejected, report.counters.accepted), (5, 0));
        assert!(client.poll_timeout().is_some(), "still polling: not denied");
        // The genuine reply still counts, once; its replay is ignored.
        let genuine = reply(&transmit.bytes, 0.0, Seal::Key(key));
        client.handle_reply(start, T, id, T, T + s(0.002), &genuine, None);
        client.handle_reply(start, T, id, T, T + s(0.002), &genuine, None);
        let report = client.sources(T)[0];
        assert_eq!(report.counters.accepted, 1, "{report:?}");
        assert_eq!(report.counters.ignored, 1, "the replay");
        let actions = clock_actions(&mut client);
        assert!(
            matches!(actions[..], [ClockAction::Slew { offset, .. }] if offset.abs() < s(0.01)),
            "{key:?}: {actions:?}"
        );
        // The next request is signed too, and a replay of the old reply answers nothing.
        let next = client
            .poll_transmit(start + Duration::from_secs(2), 43)
            .expect("due");
        assert!(next.bytes.len() > HEADER_LEN);
        client.handle_reply(start, T, id, T, T + s(2.002), &genuine, None);
        assert_eq!(client.sources(T)[0].counters.accepted, 1);
    }
}

#[test]
fn our_client_and_server_agree_on_every_digest() {
    let keys = Keys::new([aes(), sha1(), md5()]);
    let server = Server::default().with_keys(keys.clone(), Vec::new());
    for key in keys.iter() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let id = client
            .add_source(client_address(), lab(Some(*key)), start)
            .expect("added");
        let transmit = client.poll_transmit(start, 7).expect("due");
        let reply = answer(&server, &transmit.bytes, client_address()).expect("answered");
        client.handle_reply(start, T, id, T, T + s(1.5), &reply, None);
        assert_eq!(client.sources(T)[0].counters.accepted, 1, "{key:?}");
    }
}
