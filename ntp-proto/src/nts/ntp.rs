//! NTS in NTP packets (RFC 8915 section 5): the Unique Identifier, NTS Cookie, Cookie Placeholder
//! and Authenticator extension fields; the client's side (a session: keys, a cookie pool, the
//! identifier of the request in flight) and the server's (check a request, seal its response).

use std::collections::VecDeque;

use super::cookie::COOKIE_LEN;
use super::{AeadKey, COOKIES, CookieKey, CookieKeys, NONCE_LEN, SessionKeys, Stream, TAG_LEN};
use crate::auth::{AuthError, MAX_SEALED_LEN, Sealed};
use crate::packet::{HEADER_LEN, Packet, ReferenceId, Stratum};

/// An NTS extension field type (RFC 8915 section 5.2 to 5.6).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FieldType(pub u16);

impl FieldType {
    /// Unique Identifier (section 5.3).
    pub const UNIQUE_ID: Self = Self(0x0104);
    /// NTS Cookie (section 5.4).
    pub const COOKIE: Self = Self(0x0204);
    /// NTS Cookie Placeholder (section 5.5).
    pub const PLACEHOLDER: Self = Self(0x0304);
    /// NTS Authenticator and Encrypted Extension Fields (section 5.6).
    pub const AUTHENTICATOR: Self = Self(0x0404);
}

/// Length of the unique identifiers we send (section 5.3: at least 32 bytes).
pub const UNIQUE_ID_LEN: usize = 32;
/// Longest unique identifier a server echoes (the response must fit in the request anyway).
pub const MAX_UNIQUE_ID_LEN: usize = 64;
/// The kiss code of an NTS NAK (section 5.7).
pub const NTSN: ReferenceId = ReferenceId::from_bytes(*b"NTSN");
/// Longest datagram the NTS code looks into.
const MAX_DATAGRAM: usize = 2048;

/// One extension field of a datagram, with where it starts.
#[derive(Clone, Copy, Debug)]
struct Field<'a> {
    start: usize,
    field_type: FieldType,
    body: &'a [u8],
}

/// The extension fields of `bytes` from offset `at` on, each with its offset, until one is
/// malformed (RFC 7822 section 3: a length of at least 16 and a multiple of 4). A trailing MAC
/// stops the walk.
fn fields_from(bytes: &[u8], mut at: usize) -> impl Iterator<Item = Field<'_>> {
    core::iter::from_fn(move || {
        let rest = bytes.get(at..)?;
        let (header, _) = rest.split_first_chunk::<4>()?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if len < 16 || len % 4 != 0 {
            return None;
        }
        let body = rest.get(4..len)?;
        let field = Field {
            start: at,
            field_type: FieldType(u16::from_be_bytes([header[0], header[1]])),
            body,
        };
        at += len;
        Some(field)
    })
}

/// The extension fields after a datagram's header.
fn fields(datagram: &[u8]) -> impl Iterator<Item = Field<'_>> {
    fields_from(datagram, HEADER_LEN)
}

/// True if `datagram` carries a Unique Identifier field: the sender speaks NTS.
pub fn is_nts(datagram: &[u8]) -> bool {
    fields(datagram).any(|f| f.field_type == FieldType::UNIQUE_ID)
}

/// Appends an extension field to `out[*at..]`, its body padded with zeros to a multiple of 4 and
/// to RFC 7822's 16-byte minimum; `false` (and nothing written) if it does not fit.
fn put_field(out: &mut [u8], at: &mut usize, field_type: FieldType, body: &[u8]) -> bool {
    let len = (4 + body.len()).next_multiple_of(4).max(16);
    let Some(slot) = out.get_mut(*at..*at + len) else {
        return false;
    };
    let Ok(len16) = u16::try_from(len) else {
        return false;
    };
    slot[..2].copy_from_slice(&field_type.0.to_be_bytes());
    slot[2..4].copy_from_slice(&len16.to_be_bytes());
    slot[4..4 + body.len()].copy_from_slice(body);
    slot[4 + body.len()..].fill(0);
    *at += len;
    true
}

/// Appends an Authenticator field whose ciphertext seals `plaintext` (extension fields) under
/// `key`, with everything already in `out[..*at]` as associated data (section 5.6).
fn put_authenticator(
    out: &mut [u8],
    at: &mut usize,
    key: &AeadKey,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> bool {
    let sealed_len = TAG_LEN + plaintext.len();
    let len = 4 + 4 + NONCE_LEN + sealed_len.next_multiple_of(4);
    let start = *at;
    if out.len() < start + len {
        return false;
    }
    let (aad, field) = out.split_at_mut(start);
    let Ok(len16) = u16::try_from(len) else {
        return false;
    };
    field[..2].copy_from_slice(&FieldType::AUTHENTICATOR.0.to_be_bytes());
    field[2..4].copy_from_slice(&len16.to_be_bytes());
    field[4..6].copy_from_slice(&(NONCE_LEN as u16).to_be_bytes());
    field[6..8].copy_from_slice(&(sealed_len as u16).to_be_bytes());
    field[8..8 + NONCE_LEN].copy_from_slice(nonce);
    let sealed = &mut field[8 + NONCE_LEN..8 + NONCE_LEN + sealed_len];
    sealed[TAG_LEN..].copy_from_slice(plaintext);
    key.seal(aad, nonce, sealed);
    field[8 + NONCE_LEN + sealed_len..len].fill(0);
    *at += len;
    true
}

/// Checks the Authenticator field `auth` of `datagram` under `key` and decrypts its ciphertext
/// into `plaintext`; returns the plaintext's length.
fn open_authenticator(
    datagram: &[u8],
    auth: &Field<'_>,
    key: &AeadKey,
    plaintext: &mut [u8; MAX_DATAGRAM],
) -> Option<usize> {
    let (lengths, rest) = auth.body.split_first_chunk::<4>()?;
    let nonce_len = usize::from(u16::from_be_bytes([lengths[0], lengths[1]]));
    let sealed_len = usize::from(u16::from_be_bytes([lengths[2], lengths[3]]));
    let nonce = rest.get(..nonce_len)?;
    let sealed = rest
        .get(nonce_len.next_multiple_of(4)..)?
        .get(..sealed_len)?;
    if sealed_len < TAG_LEN || nonce_len == 0 {
        return None;
    }
    let buffer = plaintext.get_mut(..sealed_len)?;
    buffer.copy_from_slice(sealed);
    key.open(&datagram[..auth.start], nonce, buffer).ok()?;
    plaintext.copy_within(TAG_LEN..sealed_len, 0);
    Some(sealed_len - TAG_LEN)
}

/// An NTS request (section 5.7): `header`, the unique identifier `uid`, `cookie`, up to
/// `placeholders` cookie placeholders (as many as fit in [`MAX_SEALED_LEN`]), and the
/// authenticator under `c2s` with `nonce`, which must never repeat under that key. `None` if
/// the cookie is too long to fit.
pub fn seal_request(
    header: &[u8; HEADER_LEN],
    uid: &[u8],
    cookie: &[u8],
    placeholders: usize,
    c2s: &AeadKey,
    nonce: &[u8; NONCE_LEN],
) -> Option<Sealed> {
    let mut out = [0u8; MAX_SEALED_LEN];
    out[..HEADER_LEN].copy_from_slice(header);
    let mut at = HEADER_LEN;
    put_field(&mut out, &mut at, FieldType::UNIQUE_ID, uid);
    put_field(&mut out, &mut at, FieldType::COOKIE, cookie);
    let auth_len = 8 + NONCE_LEN + TAG_LEN;
    let zeros = [0u8; super::ke::MAX_COOKIE_LEN];
    let placeholder = zeros.get(..cookie.len())?;
    for _ in 0..placeholders {
        let room = out.len() - at;
        if room < (4 + cookie.len()).next_multiple_of(4).max(16) + auth_len {
            break;
        }
        put_field(&mut out, &mut at, FieldType::PLACEHOLDER, placeholder);
    }
    put_authenticator(&mut out, &mut at, c2s, nonce, &[]).then(|| Sealed::from_slice(&out[..at]))
}

/// True if `datagram` carries an NTS authenticator, last, that verifies under `s2c` (section
/// 5.7; the unique identifier is not checked: for load generators that keep no session).
pub fn authenticates(datagram: &[u8], s2c: &AeadKey) -> bool {
    let Some(auth) = fields(datagram).last() else {
        return false;
    };
    let mut plaintext = [0u8; MAX_DATAGRAM];
    auth.field_type == FieldType::AUTHENTICATOR
        && open_authenticator(datagram, &auth, s2c, &mut plaintext).is_some()
}

/// A client's NTS state for one server (section 5.7): the session keys, the cookies, and the
/// unique identifier of the request in flight.
#[derive(Clone, Debug)]
pub struct ClientSession {
    keys: SessionKeys,
    cookies: VecDeque<Vec<u8>>,
    stream: Stream,
    expected: Option<[u8; UNIQUE_ID_LEN]>,
    nak: bool,
}

impl ClientSession {
    /// A session with the keys and cookies an NTS-KE exchange gave; `seed` (32 random bytes)
    /// makes the unique identifiers and nonces.
    pub fn new(keys: SessionKeys, cookies: Vec<Vec<u8>>, seed: [u8; 32]) -> Self {
        Self {
            keys,
            cookies: cookies.into_iter().take(COOKIES).collect(),
            stream: Stream::new(seed),
            expected: None,
            nak: false,
        }
    }

    /// Cookies left.
    pub fn cookies(&self) -> usize {
        self.cookies.len()
    }

    /// True when a new NTS-KE exchange is needed: no cookie left, or the server sent an NTS NAK.
    pub fn needs_ke(&self) -> bool {
        self.cookies.is_empty() || self.nak
    }

    /// The request with `header`: a fresh unique identifier, one cookie, placeholders so that
    /// the response brings the pool back to [`COOKIES`], and the authenticator (section 5.7).
    /// `None` without a cookie.
    pub fn seal_request(&mut self, header: &[u8; HEADER_LEN]) -> Option<Sealed> {
        if self.nak {
            return None;
        }
        let cookie = self.cookies.pop_front()?;
        let mut uid = [0; UNIQUE_ID_LEN];
        uid[..16].copy_from_slice(&self.stream.next_block());
        uid[16..].copy_from_slice(&self.stream.next_block());
        let nonce = self.stream.next_block();
        let wanted = COOKIES.saturating_sub(self.cookies.len() + 1);
        let sealed = seal_request(header, &uid, &cookie, wanted, &self.keys.c2s, &nonce)?;
        self.expected = Some(uid);
        Some(sealed)
    }

    /// Checks a reply (section 5.7): it must carry the unique identifier of our request in flight
    /// and authenticate under the S2C key; its encrypted cookies join the pool. A reply that
    /// passes ends the request (a replay of it fails). An NTS NAK (kiss code NTSN) with our
    /// identifier is [`AuthError::NtsNak`]: the caller, once the origin timestamp matched too,
    /// calls [`ClientSession::nak`].
    pub fn check_reply(&mut self, datagram: &[u8], reply: &Packet) -> Result<(), AuthError> {
        let expected = self.expected.ok_or(AuthError::NtsUnauthenticated)?;
        let mut uid_ok = false;
        let mut auth = None;
        for field in fields(datagram) {
            if auth.is_some() {
                // Nothing may follow the authenticator unauthenticated.
                return Err(AuthError::NtsUnauthenticated);
            }
            match field.field_type {
                FieldType::UNIQUE_ID => uid_ok = field.body == expected,
                FieldType::AUTHENTICATOR => auth = Some(field),
                _ => {}
            }
        }
        if !uid_ok {
            return Err(AuthError::NtsUnauthenticated);
        }
        let is_nak = reply.stratum == Stratum::UNSPECIFIED && reply.reference_id == NTSN;
        let Some(auth) = auth else {
            return Err(if is_nak {
                AuthError::NtsNak
            } else {
                AuthError::NtsUnauthenticated
            });
        };
        let mut plaintext = [0u8; MAX_DATAGRAM];
        let len = open_authenticator(datagram, &auth, &self.keys.s2c, &mut plaintext)
            .ok_or(AuthError::NtsUnauthenticated)?;
        self.expected = None;
        for field in fields_from(&plaintext[..len], 0) {
            if field.field_type == FieldType::COOKIE
                && (1..=super::ke::MAX_COOKIE_LEN).contains(&field.body.len())
                && self.cookies.len() < COOKIES
            {
                self.cookies.push_back(field.body.to_vec());
            }
        }
        Ok(())
    }

    /// The server sent an NTS NAK for our request in flight: our cookies are no good there.
    pub fn nak(&mut self) {
        self.nak = true;
        self.cookies.clear();
        self.expected = None;
    }
}

/// What an NTS request gets (RFC 8915 section 5.7).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NtsVerdict {
    /// It authenticates: an answer with these fields.
    Answer(NtsReply),
    /// The cookie is not one of ours (forged, or its key rotated out): an NTS NAK with these
    /// fields (the unique identifier only).
    Nak(NtsReply),
    /// No unique identifier, cookie or authenticator, malformed ones, or an authenticator that
    /// does not verify: nothing.
    Drop,
}

/// What the response to an NTS request carries after its header (section 5.7): the request's
/// unique identifier, and (unless it is a NAK) fresh cookies for the client's keys, encrypted
/// under its S2C key. Plain data; [`NtsReply::seal`] does the crypto.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NtsReply {
    keys: Option<SessionKeys>,
    uid: [u8; MAX_UNIQUE_ID_LEN],
    uid_len: u8,
    cookies: u8,
    cookie_key: Option<CookieKey>,
    seed: [u8; NONCE_LEN],
    limit: u16,
}

impl NtsReply {
    /// The request's unique identifier.
    pub fn unique_id(&self) -> &[u8] {
        &self.uid[..usize::from(self.uid_len)]
    }

    /// How many cookies the response carries (0 for a NAK).
    pub fn cookies(&self) -> usize {
        usize::from(self.cookies)
    }

    /// True for an NTS NAK.
    pub fn is_nak(&self) -> bool {
        self.keys.is_none()
    }

    /// `header` followed by the unique identifier and, unless this is a NAK, the authenticator
    /// with the new cookies inside (section 5.7); never longer than the request was.
    pub fn seal(&self, header: &[u8; HEADER_LEN]) -> Sealed {
        let limit = usize::from(self.limit).min(MAX_SEALED_LEN);
        let mut out = [0u8; MAX_SEALED_LEN];
        out[..HEADER_LEN].copy_from_slice(header);
        let mut at = HEADER_LEN;
        put_field(&mut out, &mut at, FieldType::UNIQUE_ID, self.unique_id());
        let (Some(keys), Some(cookie_key)) = (self.keys, self.cookie_key) else {
            return Sealed::from_slice(&out[..at]);
        };
        let field_len = 4 + COOKIE_LEN;
        let auth_len = 8 + NONCE_LEN + TAG_LEN;
        let fit = limit.saturating_sub(at + auth_len) / field_len;
        let count = self.cookies().min(fit);
        let mut plaintext = [0u8; COOKIES * (4 + COOKIE_LEN)];
        let mut inner = 0;
        for i in 0..count {
            let mut nonce = self.seed;
            nonce[NONCE_LEN - 1] ^= (i + 1) as u8;
            let cookie = cookie_key.encrypt(&keys, nonce);
            put_field(&mut plaintext, &mut inner, FieldType::COOKIE, &cookie);
        }
        put_authenticator(
            &mut out[..limit],
            &mut at,
            &keys.s2c,
            &self.seed,
            &plaintext[..inner],
        );
        Sealed::from_slice(&out[..at])
    }
}

/// Checks an NTS request (section 5.7, server side): one unique identifier, one cookie that one
/// of `keys` decrypts, placeholders, and the authenticator last, verifying under the cookie's C2S
/// key. The reply gets the current key and `seed` (16 random bytes) for its nonces.
pub fn check_request(datagram: &[u8], keys: &CookieKeys, seed: [u8; NONCE_LEN]) -> NtsVerdict {
    let (mut uid, mut cookie, mut auth) = (None, None, None);
    let mut placeholders = 0usize;
    for field in fields(datagram) {
        if auth.is_some() {
            return NtsVerdict::Drop;
        }
        match field.field_type {
            FieldType::UNIQUE_ID if uid.is_none() => uid = Some(field.body),
            FieldType::COOKIE if cookie.is_none() => cookie = Some(field.body),
            FieldType::UNIQUE_ID | FieldType::COOKIE => return NtsVerdict::Drop,
            FieldType::PLACEHOLDER => placeholders += 1,
            FieldType::AUTHENTICATOR => auth = Some(field),
            _ => {}
        }
    }
    let (Some(uid), Some(cookie), Some(auth)) = (uid, cookie, auth) else {
        return NtsVerdict::Drop;
    };
    if !(UNIQUE_ID_LEN..=MAX_UNIQUE_ID_LEN).contains(&uid.len()) {
        return NtsVerdict::Drop;
    }
    let mut reply = NtsReply {
        keys: None,
        uid: [0; MAX_UNIQUE_ID_LEN],
        uid_len: uid.len() as u8,
        cookies: 0,
        cookie_key: None,
        seed,
        limit: u16::try_from(datagram.len()).unwrap_or(u16::MAX),
    };
    reply.uid[..uid.len()].copy_from_slice(uid);
    // Cookie bodies may carry padding after our 100 bytes.
    let Some(session) = cookie.get(..COOKIE_LEN).and_then(|c| keys.decrypt(c)) else {
        return NtsVerdict::Nak(reply);
    };
    let mut plaintext = [0u8; MAX_DATAGRAM];
    if open_authenticator(datagram, &auth, &session.c2s, &mut plaintext).is_none() {
        return NtsVerdict::Drop;
    }
    reply.keys = Some(session);
    reply.cookie_key = Some(keys.current());
    reply.cookies = (1 + placeholders).min(COOKIES) as u8;
    NtsVerdict::Answer(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nts::CookieKey;
    use crate::packet::{PollInterval, Version};
    use crate::time::NtpTimestamp;

    fn server_keys(id: u32) -> CookieKeys {
        CookieKeys::new(CookieKey {
            id,
            key: AeadKey([id as u8; 32]),
            created: 0,
        })
    }

    fn session_keys() -> SessionKeys {
        SessionKeys {
            c2s: AeadKey([1; 32]),
            s2c: AeadKey([2; 32]),
        }
    }

    /// A client session holding `n` cookies from `server`.
    fn client(server: &CookieKeys, n: usize) -> ClientSession {
        let cookies = (0..n)
            .map(|i| server.encrypt(&session_keys(), [i as u8; 16]).to_vec())
            .collect();
        ClientSession::new(session_keys(), cookies, [9; 32])
    }

    fn header(transmit: u64) -> [u8; HEADER_LEN] {
        Packet::client_request(
            Version::V4,
            PollInterval::new(6),
            NtpTimestamp::from_bits(transmit),
        )
        .serialize()
    }

    fn reply_to(request: &[u8], keys: &CookieKeys) -> Sealed {
        let NtsVerdict::Answer(reply) = check_request(request, keys, [4; 16]) else {
            panic!("authentic");
        };
        let mut packet = Packet::parse(request).expect("parses").0;
        packet.mode = crate::packet::Mode::SERVER;
        reply.seal(&packet.serialize())
    }

    #[test]
    fn an_exchange_authenticates_and_refills_the_pool() {
        let server = server_keys(1);
        let mut session = client(&server, 2);
        let request = session.seal_request(&header(5)).expect("a cookie");
        assert_eq!(session.cookies(), 1);
        assert!(is_nts(&request));
        assert!(Packet::parse(&request).is_ok(), "a well-formed NTP packet");
        let NtsVerdict::Answer(reply) = check_request(&request, &server, [4; 16]) else {
            panic!("authentic");
        };
        assert_eq!(
            reply.cookies(),
            COOKIES - 1,
            "the one used and 6 placeholders"
        );
        let response = reply_to(&request, &server);
        assert!(response.len() <= request.len(), "no amplification");
        let packet = Packet::parse(&response).expect("parses").0;
        assert_eq!(session.check_reply(&response, &packet), Ok(()));
        assert_eq!(session.cookies(), COOKIES);
        assert_eq!(
            session.check_reply(&response, &packet),
            Err(AuthError::NtsUnauthenticated),
            "a replay"
        );
    }

    #[test]
    fn any_altered_byte_fails_authentication() {
        let server = server_keys(1);
        let mut session = client(&server, 8);
        let request = session.seal_request(&header(5)).expect("a cookie");
        let response = reply_to(&request, &server);
        for i in 0..response.len() {
            let mut forged = response.to_vec();
            forged[i] ^= 1;
            let Ok((packet, _)) = Packet::parse(&forged) else {
                continue;
            };
            assert!(
                session.clone().check_reply(&forged, &packet).is_err(),
                "byte {i}"
            );
        }
        for i in 0..request.len() {
            let mut forged = request.to_vec();
            forged[i] ^= 1;
            assert!(
                !matches!(
                    check_request(&forged, &server, [0; 16]),
                    NtsVerdict::Answer(_)
                ),
                "byte {i}"
            );
        }
    }

    #[test]
    fn an_unknown_cookie_gets_a_nak_and_the_client_goes_back_to_ke() {
        let mut session = client(&server_keys(1), 8);
        let request = session.seal_request(&header(5)).expect("a cookie");
        let NtsVerdict::Nak(nak) = check_request(&request, &server_keys(2), [0; 16]) else {
            panic!("a NAK");
        };
        assert!(nak.is_nak());
        let mut kiss = Packet::parse(&request).expect("parses").0;
        kiss.stratum = Stratum::UNSPECIFIED;
        kiss.reference_id = NTSN;
        let response = nak.seal(&kiss.serialize());
        assert_eq!(response.len(), HEADER_LEN + 4 + UNIQUE_ID_LEN);
        let packet = Packet::parse(&response).expect("parses").0;
        assert_eq!(
            session.check_reply(&response, &packet),
            Err(AuthError::NtsNak)
        );
        session.nak();
        assert!(session.needs_ke());
        assert!(session.seal_request(&header(6)).is_none());
    }

    #[test]
    fn an_unauthenticated_reply_changes_nothing() {
        let server = server_keys(1);
        let mut session = client(&server, 3);
        let request = session.seal_request(&header(5)).expect("a cookie");
        let plain = header(5);
        let packet = Packet::parse(&plain).expect("parses").0;
        assert_eq!(
            session.check_reply(&plain, &packet),
            Err(AuthError::NtsUnauthenticated)
        );
        // The genuine reply still passes afterwards.
        let response = reply_to(&request, &server);
        let packet = Packet::parse(&response).expect("parses").0;
        assert_eq!(session.check_reply(&response, &packet), Ok(()));
    }

    #[test]
    fn a_session_runs_dry_without_answers() {
        let mut session = client(&server_keys(1), 2);
        assert!(session.seal_request(&header(1)).is_some());
        assert!(session.seal_request(&header(2)).is_some());
        assert!(session.needs_ke());
        assert!(session.seal_request(&header(3)).is_none());
    }

    #[test]
    fn a_request_without_placeholders_gets_one_cookie() {
        let server = server_keys(1);
        let mut session = client(&server, 8);
        let request = session.seal_request(&header(5)).expect("a cookie");
        let NtsVerdict::Answer(reply) = check_request(&request, &server, [4; 16]) else {
            panic!("authentic");
        };
        assert_eq!(reply.cookies(), 1);
        assert_eq!(reply_to(&request, &server).len(), request.len());
    }
}
