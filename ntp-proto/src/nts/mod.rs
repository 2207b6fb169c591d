//! Network Time Security (RFC 8915): the NTS-KE records and their request and response logic, the
//! server's cookies and cookie keys, and the NTS extension fields of NTP packets, client and
//! server side.
//!
//! Nothing here does IO: the daemon runs TLS (rustls) and hands this module the bytes of a KE
//! exchange and the keys it exported from the TLS session; the NTP packets go through
//! [`crate::server::Server`] and [`crate::source::Source`] as for unauthenticated NTP. Randomness
//! (cookie-key material, nonces, unique identifiers) comes in as arguments or as seeds.
//!
//! The only AEAD algorithm is AEAD_AES_SIV_CMAC_256 (RFC 5297, IANA number 15), the one every
//! implementation must support (RFC 8915 section 5.1) and chrony's default.

pub mod cookie;
pub mod ke;
pub mod ntp;
pub mod record;

use core::fmt;

use aes_siv::KeyInit as _;
use aes_siv::siv::Aes128Siv;

pub use cookie::{CookieKey, CookieKeys, KeyFileError};
pub use ke::{KeError, KeOutcome, KeRequest};
pub use ntp::{ClientSession, NtsReply, NtsVerdict};

/// AEAD_AES_SIV_CMAC_256's key length: two AES-128 keys (RFC 5297 section 6.1).
pub const KEY_LEN: usize = 32;
/// The SIV tag that starts every ciphertext.
pub const TAG_LEN: usize = 16;
/// The nonce length we send (RFC 8915 section 5.6 asks for at least 16 bytes with SIV).
pub const NONCE_LEN: usize = 16;
/// Cookies a client keeps, and that a KE server hands out (RFC 8915 section 4: eight).
pub const COOKIES: usize = 8;
/// TLS exporter label for the NTS keys (RFC 8915 section 5.1).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-network-time-security";
/// The ALPN protocol of NTS-KE (RFC 8915 section 4).
pub const ALPN: &[u8] = b"ntske/1";
/// The NTS-KE TCP port (RFC 8915 section 4).
pub const KE_PORT: u16 = 4460;

/// An AEAD algorithm number (RFC 8915 section 7.5, the IANA AEAD registry); unknown ones
/// round-trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct AeadAlgorithm(pub u16);

impl AeadAlgorithm {
    /// AEAD_AES_SIV_CMAC_256 (RFC 5297), the only one we speak.
    pub const AES_SIV_CMAC_256: Self = Self(15);
}

/// A next protocol number (RFC 8915 section 7.6); unknown ones round-trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NextProtocol(pub u16);

impl NextProtocol {
    /// NTPv4, the only one defined.
    pub const NTPV4: Self = Self(0);
}

/// Which way a key protects packets (RFC 8915 section 5.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Client to server: requests.
    C2s,
    /// Server to client: responses.
    S2c,
}

/// The TLS exporter context of a key (RFC 8915 section 5.1): the next protocol, the AEAD
/// algorithm and 0 (C2S) or 1 (S2C).
pub fn exporter_context(aead: AeadAlgorithm, direction: Direction) -> [u8; 5] {
    let [p0, p1] = NextProtocol::NTPV4.0.to_be_bytes();
    let [a0, a1] = aead.0.to_be_bytes();
    let d = match direction {
        Direction::C2s => 0,
        Direction::S2c => 1,
    };
    [p0, p1, a0, a1, d]
}

/// One AEAD_AES_SIV_CMAC_256 key. `Debug` never shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AeadKey(pub [u8; KEY_LEN]);

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AeadKey(..)")
    }
}

/// The bytes did not authenticate under the key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AeadError;

impl AeadKey {
    /// Encrypts `buffer[TAG_LEN..]` in place and writes the SIV tag to `buffer[..TAG_LEN]`, with
    /// the associated data `aad` and `nonce` (RFC 5297 section 3 as RFC 8915 section 5.6 uses it).
    pub fn seal(&self, aad: &[u8], nonce: &[u8], buffer: &mut [u8]) {
        let Some((tag, plaintext)) = buffer.split_first_chunk_mut::<TAG_LEN>() else {
            return;
        };
        let mut siv = Aes128Siv::new(&self.0.into());
        // Only more than 126 headers make this fail; we pass two.
        if let Ok(computed) = siv.encrypt_in_place_detached([aad, nonce], plaintext) {
            tag.copy_from_slice(&computed);
        }
    }

    /// Checks and decrypts `buffer` (tag, then ciphertext) in place; the plaintext is
    /// `buffer[TAG_LEN..]`. On failure the buffer holds garbage.
    pub fn open(&self, aad: &[u8], nonce: &[u8], buffer: &mut [u8]) -> Result<(), AeadError> {
        let (tag, ciphertext) = buffer.split_first_chunk_mut::<TAG_LEN>().ok_or(AeadError)?;
        let tag = (*tag).into();
        let mut siv = Aes128Siv::new(&self.0.into());
        siv.decrypt_in_place_detached([aad, nonce], ciphertext, &tag)
            .map_err(|_| AeadError)
    }
}

/// The two keys of one NTS session, exported from its TLS session (RFC 8915 section 5.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SessionKeys {
    /// Protects requests.
    pub c2s: AeadKey,
    /// Protects responses.
    pub s2c: AeadKey,
}

impl SessionKeys {
    /// Both keys for `aead` from a finished TLS 1.3 session (RFC 8915 section 5.1): `export`
    /// is the session's keying-material exporter, asked for each key with [`EXPORTER_LABEL`] and
    /// that key's [`exporter_context`] (the TLS library stays with the caller).
    pub fn export<E>(
        aead: AeadAlgorithm,
        mut export: impl FnMut(&mut [u8; KEY_LEN], &[u8], &[u8]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let mut key = |direction| {
            let mut key = [0u8; KEY_LEN];
            export(&mut key, EXPORTER_LABEL, &exporter_context(aead, direction))?;
            Ok(AeadKey(key))
        };
        Ok(Self {
            c2s: key(Direction::C2s)?,
            s2c: key(Direction::S2c)?,
        })
    }
}

/// A deterministic generator of unpredictable bytes, seeded by the caller: AES-SIV over a counter
/// under a random key. The unique identifiers and nonces an NTS client sends come from here, so
/// that [`crate::client::Client::poll_transmit`] needs no more randomness than it has.
#[derive(Clone)]
pub struct Stream {
    key: AeadKey,
    counter: u64,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stream({} blocks drawn)", self.counter)
    }
}

impl Stream {
    /// A stream from 32 random bytes.
    pub fn new(seed: [u8; KEY_LEN]) -> Self {
        Self {
            key: AeadKey(seed),
            counter: 0,
        }
    }

    /// The next 16 bytes (the SIV tag of an empty message under a fresh counter: a PRF output).
    pub fn next_block(&mut self) -> [u8; TAG_LEN] {
        self.counter += 1;
        let mut block = [0; TAG_LEN];
        self.key.seal(&self.counter.to_be_bytes(), b"", &mut block);
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn siv_matches_rfc_5297_appendix_a1() {
        // RFC 5297 A.1: deterministic authenticated encryption, one header and no nonce. Our
        // `seal` always passes a nonce, so check the construction through the crate directly and
        // then our round trip.
        let key: [u8; 32] = hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .try_into()
            .expect("32 bytes");
        let aad = hex("101112131415161718191a1b1c1d1e1f2021222324252627");
        let mut plaintext = hex("112233445566778899aabbccddee");
        let mut siv = Aes128Siv::new(&key.into());
        let tag = siv
            .encrypt_in_place_detached([&aad[..]], &mut plaintext)
            .expect("encrypts");
        assert_eq!(tag[..], hex("85632d07c6e8f37f950acd320a2ecc93")[..]);
        assert_eq!(plaintext, hex("40c02b9690c4dc04daef7f6afe5c"));

        let key = AeadKey(key);
        let mut buffer = [0u8; TAG_LEN + 5];
        buffer[TAG_LEN..].copy_from_slice(b"hello");
        key.seal(b"aad", b"nonce-of-16-byte", &mut buffer);
        assert_ne!(&buffer[TAG_LEN..], b"hello");
        let mut forged = buffer;
        forged[TAG_LEN] ^= 1;
        assert_eq!(
            key.open(b"aad", b"nonce-of-16-byte", &mut forged),
            Err(AeadError)
        );
        key.open(b"aad", b"nonce-of-16-byte", &mut buffer)
            .expect("opens");
        assert_eq!(&buffer[TAG_LEN..], b"hello");
    }

    #[test]
    fn an_empty_plaintext_still_authenticates() {
        let key = AeadKey([7; 32]);
        let mut tag = [0u8; TAG_LEN];
        key.seal(b"header", b"n", &mut tag);
        assert!(key.open(b"header", b"n", &mut tag.clone()).is_ok());
        assert!(key.open(b"headex", b"n", &mut tag).is_err());
    }

    #[test]
    fn session_keys_are_exported_with_the_label_and_each_directions_context() {
        let mut asked = Vec::new();
        let keys = SessionKeys::export(AeadAlgorithm::AES_SIV_CMAC_256, |key, label, context| {
            asked.push((label.to_vec(), context.to_vec()));
            key.fill(context[4] + 1);
            Ok::<(), ()>(())
        })
        .expect("keys");
        assert_eq!(
            asked,
            [
                (EXPORTER_LABEL.to_vec(), vec![0, 0, 0, 15, 0]),
                (EXPORTER_LABEL.to_vec(), vec![0, 0, 0, 15, 1]),
            ]
        );
        assert_eq!((keys.c2s.0[0], keys.s2c.0[0]), (1, 2));
        let failed = SessionKeys::export(AeadAlgorithm::AES_SIV_CMAC_256, |_, _, _| Err("no"));
        assert_eq!(failed, Err("no"));
    }

    #[test]
    fn exporter_contexts_are_rfc_8915s() {
        assert_eq!(
            exporter_context(AeadAlgorithm::AES_SIV_CMAC_256, Direction::C2s),
            [0, 0, 0, 15, 0]
        );
        assert_eq!(
            exporter_context(AeadAlgorithm::AES_SIV_CMAC_256, Direction::S2c),
            [0, 0, 0, 15, 1]
        );
    }

    #[test]
    fn a_stream_never_repeats_a_block() {
        let mut stream = Stream::new([1; 32]);
        let a = stream.next_block();
        let b = stream.next_block();
        assert_ne!(a, b);
        assert_ne!(Stream::new([2; 32]).next_block(), a);
    }
}
