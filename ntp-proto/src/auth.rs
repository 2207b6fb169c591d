//! Symmetric-key authentication: the keys file, the MAC after a packet (RFC 5905 section 7.3,
//! RFC 8573 AES-128-CMAC and the legacy MD5 and SHA-1 digests) and the crypto-NAK (RFC 5905
//! section 7.4).
//!
//! A MAC is a 4-byte key ID and a digest over everything before it: the 48-byte header and any
//! extension fields. AES-128-CMAC (16 bytes) is the digest RFC 8573 recommends; MD5 (16 bytes)
//! and SHA-1 (20 bytes) digest the key followed by the packet, as ntpd and chrony compute them.
//! Digests are compared in constant time. This module reads no file: the daemon reads the keys
//! file, checks its permissions, and hands the text to [`Keys::parse`].

use core::fmt;
use std::collections::BTreeMap;
use std::sync::Arc;

use aes::Aes128;
use cmac::{Cmac, Mac as _};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::packet::HEADER_LEN;

/// Longest key secret accepted, bytes (ntpd's ASCII keys are at most 20; chrony's may be longer).
pub const MAX_SECRET_LEN: usize = 64;
/// Longest digest: SHA-1's 20 bytes (RFC 7822 section 3 bounds a MAC at 24 bytes with the key ID).
pub const MAX_DIGEST_LEN: usize = 20;
/// Longest packet we send: an NTS request with its cookie and placeholders, or an NTS response
/// with its cookies (see [`crate::nts`]), kept within the IPv6 minimum MTU's payload; a packet
/// with a MAC is far shorter.
pub const MAX_SEALED_LEN: usize = 1232;
/// A crypto-NAK: a MAC of just a zero key ID (RFC 5905 section 7.4).
pub const CRYPTO_NAK: [u8; 4] = [0; 4];
/// Longest unprefixed key that is read as ASCII text; longer ones are hex (ntpd's rule).
const MAX_ASCII_UNPREFIXED: usize = 20;

/// A key's number in the keys file and in the MAC (RFC 5905 section 7.3, keyid). Zero is the
/// crypto-NAK and never a key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The digest a key computes (RFC 8573 section 4 recommends AES-128-CMAC; MD5 and SHA-1 are legacy).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DigestType {
    /// AES-128-CMAC (RFC 8573, RFC 4493): 16 bytes, keyed with exactly 16 bytes.
    Aes128Cmac,
    /// SHA-1 over the key then the packet: 20 bytes (legacy).
    Sha1,
    /// MD5 over the key then the packet: 16 bytes (RFC 5905 section 7.3; legacy).
    Md5,
}

impl DigestType {
    /// The name the keys file uses (chrony's spelling).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aes128Cmac => "AES128",
            Self::Sha1 => "SHA1",
            Self::Md5 => "MD5",
        }
    }

    /// Bytes of digest after the key ID.
    pub const fn digest_len(self) -> usize {
        match self {
            Self::Aes128Cmac | Self::Md5 => 16,
            Self::Sha1 => 20,
        }
    }

    /// The type named `name` in an ntpd, ntpsec or chrony keys file, in any case.
    fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            // chrony writes AES128; ntpsec 1.2 reads AES, AES-128 and AES128CMAC (it refuses
            // AES128 and AES-128-CMAC): AES-128 suits both.
            "AES" | "AES128" | "AES-128" | "AES128CMAC" | "AES-128-CMAC" => Some(Self::Aes128Cmac),
            "SHA1" | "SHA-1" | "SHA" => Some(Self::Sha1),
            "MD5" | "M" => Some(Self::Md5),
            _ => None,
        }
    }
}

/// A key that was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum KeyError {
    /// Key ID 0 is the crypto-NAK.
    #[error("key ID 0 is reserved for the crypto-NAK; use 1 to 4294967295")]
    ZeroId,
    /// The secret is empty or too long.
    #[error("the key must be 1 to {MAX_SECRET_LEN} bytes long, not {0}")]
    Length(usize),
    /// AES-128-CMAC needs a 128-bit key.
    #[error(
        "an AES128 key must be exactly 16 bytes (32 hex digits after HEX:), not {0}; generate one with `head -c 16 /dev/urandom | xxd -p`"
    )]
    AesLength(usize),
}

/// One symmetric key: its ID, digest and secret. `Debug` never shows the secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SymmetricKey {
    id: KeyId,
    digest: DigestType,
    secret: [u8; MAX_SECRET_LEN],
    len: u8,
}

impl fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SymmetricKey({} {})", self.id, self.digest.name())
    }
}

impl SymmetricKey {
    /// A key `id` of type `digest` with `secret` (AES128: exactly 16 bytes; others 1 to 64).
    pub fn new(id: KeyId, digest: DigestType, secret: &[u8]) -> Result<Self, KeyError> {
        if id.0 == 0 {
            return Err(KeyError::ZeroId);
        }
        if digest == DigestType::Aes128Cmac && secret.len() != 16 {
            return Err(KeyError::AesLength(secret.len()));
        }
        let len = u8::try_from(secret.len())
            .ok()
            .filter(|&l| (1..=MAX_SECRET_LEN as u8).contains(&l))
            .ok_or(KeyError::Length(secret.len()))?;
        let mut key = Self {
            id,
            digest,
            secret: [0; MAX_SECRET_LEN],
            len,
        };
        key.secret[..secret.len()].copy_from_slice(secret);
        Ok(key)
    }

    /// Its ID.
    pub const fn id(&self) -> KeyId {
        self.id
    }

    /// Its digest type.
    pub const fn digest_type(&self) -> DigestType {
        self.digest
    }

    fn secret(&self) -> &[u8] {
        &self.secret[..usize::from(self.len)]
    }

    /// The digest of `message` (header and extension fields) under this key (RFC 5905 section
    /// 7.3; RFC 8573 section 4 for AES-128-CMAC); the first [`DigestType::len`] bytes are used.
    pub fn digest(&self, message: &[u8]) -> [u8; MAX_DIGEST_LEN] {
        let mut out = [0; MAX_DIGEST_LEN];
        match self.digest {
            DigestType::Aes128Cmac => {
                // The length was checked in `new`: 16 bytes always make a valid AES-128 key.
                if let Ok(mut mac) = <Cmac<Aes128> as cmac::Mac>::new_from_slice(self.secret()) {
                    mac.update(message);
                    out[..16].copy_from_slice(&mac.finalize().into_bytes());
                }
            }
            DigestType::Md5 => {
                let digest = Md5::new()
                    .chain_update(self.secret())
                    .chain_update(message)
                    .finalize();
                out[..16].copy_from_slice(&digest);
            }
            DigestType::Sha1 => {
                let digest = Sha1::new()
                    .chain_update(self.secret())
                    .chain_update(message)
                    .finalize();
                out.copy_from_slice(&digest);
            }
        }
        out
    }

    /// True if `mac` (key ID and digest) is this key's MAC of `message`, compared in constant time.
    pub fn verifies(&self, message: &[u8], mac: &[u8]) -> bool {
        let len = self.digest.digest_len();
        let Some((id, digest)) = split_mac(mac) else {
            return false;
        };
        if id != self.id || digest.len() != len {
            return false;
        }
        bool::from(self.digest(message)[..len].ct_eq(digest))
    }
}

/// A MAC's key ID and digest, if it is long enough to have both.
fn split_mac(mac: &[u8]) -> Option<(KeyId, &[u8])> {
    let (id, digest) = mac.split_first_chunk::<4>()?;
    Some((KeyId(u32::from_be_bytes(*id)), digest))
}

/// Why a packet is not authentic.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum AuthError {
    /// No MAC where one is required.
    #[error("no MAC (unauthenticated packet on an authenticated association)")]
    Missing,
    /// A crypto-NAK: the other side does not know our key or our MAC failed there.
    #[error("crypto-NAK: the other side does not know our key, or our MAC did not verify there")]
    CryptoNak,
    /// A MAC under a key ID we do not have.
    #[error("MAC under unknown key {0}")]
    UnknownKey(KeyId),
    /// A MAC under another key than the association's.
    #[error("MAC under key {0}, not the association's key")]
    WrongKey(KeyId),
    /// The digest does not verify under the key.
    #[error("MAC under key {0} does not verify (wrong key or altered packet)")]
    BadDigest(KeyId),
    /// On an NTS association: no NTS authenticator, another request's unique identifier, or an
    /// authenticator that does not verify (RFC 8915 section 5.7).
    #[error("not NTS-authenticated (no or a bad authenticator, or not our unique identifier)")]
    NtsUnauthenticated,
    /// An NTS NAK (kiss code NTSN) for our request: the server cannot read our cookie.
    #[error("NTS NAK: the server cannot read our cookie; a new NTS-KE exchange is needed")]
    NtsNak,
}

/// The keys of a keys file, by ID. Cheap to clone; `Debug` shows IDs and types, never secrets.
#[derive(Clone, Default)]
pub struct Keys {
    keys: Arc<BTreeMap<KeyId, SymmetricKey>>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.values()).finish()
    }
}

/// A keys file line that could not be used.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct KeysFileError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl Keys {
    /// Keys from a list; a later key with the same ID replaces an earlier one.
    pub fn new(keys: impl IntoIterator<Item = SymmetricKey>) -> Self {
        Self {
            keys: Arc::new(keys.into_iter().map(|k| (k.id, k)).collect()),
        }
    }

    /// Parses a keys file in the ntpd/ntpsec/chrony format: `ID TYPE KEY` a line, `#` to the end
    /// of a line is a comment. TYPE is AES128 (also AES, AES-128, AES128CMAC), SHA1 or MD5 (also M),
    /// and may be left out for MD5 (chrony). KEY is `HEX:` and hex digits or `ASCII:` and text
    /// (chrony), or without prefix ASCII text of at most 20 characters, else hex (ntpd). Never
    /// panics; every error names its line and what to write.
    pub fn parse(text: &str) -> Result<Self, KeysFileError> {
        let mut keys = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or_default();
            let words: Vec<&str> = content.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            let fail = |message: String| KeysFileError { line, message };
            let key = parse_line(&words).map_err(fail)?;
            if keys.insert(key.id, key).is_some() {
                return Err(fail(format!(
                    "key {} is defined twice; keep one line for it",
                    key.id
                )));
            }
        }
        Ok(Self {
            keys: Arc::new(keys),
        })
    }

    /// The key with `id`.
    pub fn get(&self, id: KeyId) -> Option<&SymmetricKey> {
        self.keys.get(&id)
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys in ID order.
    pub fn iter(&self) -> impl Iterator<Item = &SymmetricKey> {
        self.keys.values()
    }

    /// The authentication of a request whose MAC (as [`crate::packet::Trailer::mac`] split it) is
    /// `mac`, over `datagram` (RFC 5905 section 7.3): `Ok(None)` without a MAC, the key for a
    /// valid one, an error for a crypto-NAK, an unknown key ID or a digest that does not verify.
    pub fn check_request(
        &self,
        datagram: &[u8],
        mac: Option<&[u8]>,
    ) -> Result<Option<SymmetricKey>, AuthError> {
        let Some(mac) = mac else {
            return Ok(None);
        };
        let (id, _) = split_mac(mac).ok_or(AuthError::Missing)?;
        if mac.len() == CRYPTO_NAK.len() {
            return Err(AuthError::CryptoNak);
        }
        let key = self.get(id).ok_or(AuthError::UnknownKey(id))?;
        let message = &datagram[..datagram.len().saturating_sub(mac.len())];
        if key.verifies(message, mac) {
            Ok(Some(*key))
        } else {
            Err(AuthError::BadDigest(id))
        }
    }
}

fn parse_line(words: &[&str]) -> Result<SymmetricKey, String> {
    let (id, digest, secret) = match words {
        [id, secret] => (id, DigestType::Md5, secret),
        [id, kind, secret] => {
            let digest = DigestType::from_name(kind).ok_or_else(|| {
                format!("unknown key type {kind:?}; use AES128 (recommended), SHA1 or MD5")
            })?;
            (id, digest, secret)
        }
        _ => {
            return Err(
                "expected `ID TYPE KEY`, e.g. `1 AES128 HEX:000102030405060708090a0b0c0d0e0f`"
                    .to_owned(),
            );
        }
    };
    let id = id
        .parse::<u32>()
        .map_err(|_| format!("key ID {id:?} is not a number from 1 to 4294967295"))?;
    let bytes = secret_bytes(secret)?;
    SymmetricKey::new(KeyId(id), digest, &bytes).map_err(|e| e.to_string())
}

/// The secret as written: `HEX:`, `ASCII:`, or ntpd's rule for no prefix.
fn secret_bytes(word: &str) -> Result<Vec<u8>, String> {
    let prefixed = |prefix: &str| {
        word.get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .map(|_| &word[prefix.len()..])
    };
    if let Some(hex) = prefixed("HEX:") {
        return decode_hex(hex).ok_or_else(|| {
            "the key after HEX: must be an even number of hex digits (0-9, a-f)".to_owned()
        });
    }
    if let Some(text) = prefixed("ASCII:") {
        return Ok(text.as_bytes().to_vec());
    }
    if word.len() <= MAX_ASCII_UNPREFIXED {
        return Ok(word.as_bytes().to_vec());
    }
    decode_hex(word).ok_or_else(|| {
        format!(
            "a key longer than {MAX_ASCII_UNPREFIXED} characters must be hex (ntpd's rule); write HEX:... or ASCII:... to say which"
        )
    })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What follows a packet we send (RFC 5905 section 7.3): nothing, a crypto-NAK, or a MAC.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Seal {
    /// An unauthenticated packet.
    #[default]
    None,
    /// A crypto-NAK (RFC 5905 section 7.4): the request's key is unknown or its MAC failed.
    CryptoNak,
    /// A MAC under this key.
    Key(SymmetricKey),
}

impl Seal {
    /// The seal for a packet sent with `key`, if any.
    pub fn with(key: Option<&SymmetricKey>) -> Self {
        key.map_or(Self::None, |k| Self::Key(*k))
    }

    /// `header` followed by this seal's MAC.
    pub fn seal(&self, header: [u8; HEADER_LEN]) -> Sealed {
        let mut sealed = Sealed {
            bytes: [0; MAX_SEALED_LEN],
            len: HEADER_LEN as u16,
        };
        sealed.bytes[..HEADER_LEN].copy_from_slice(&header);
        match self {
            Self::None => {}
            Self::CryptoNak => sealed.len += CRYPTO_NAK.len() as u16,
            Self::Key(key) => {
                let len = key.digest.digest_len();
                let digest = key.digest(&header);
                sealed.bytes[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&key.id.0.to_be_bytes());
                sealed.bytes[HEADER_LEN + 4..HEADER_LEN + 4 + len].copy_from_slice(&digest[..len]);
                sealed.len += (4 + len) as u16;
            }
        }
        sealed
    }
}

/// A packet ready to send: the header and its MAC or crypto-NAK, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    bytes: [u8; MAX_SEALED_LEN],
    len: u16,
}

impl Sealed {
    /// A packet of `bytes`, cut at [`MAX_SEALED_LEN`].
    pub(crate) fn from_slice(bytes: &[u8]) -> Self {
        let len = bytes.len().min(MAX_SEALED_LEN);
        let mut sealed = Self {
            bytes: [0; MAX_SEALED_LEN],
            len: len as u16,
        };
        sealed.bytes[..len].copy_from_slice(&bytes[..len]);
        sealed
    }
}

impl core::ops::Deref for Sealed {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.len)
    }
}

/// The authentication of a reply on an association with `key` (RFC 5905 section 7.3, RFC 8573):
/// without a key anything passes (a MAC is ignored); with one, the reply must carry a valid MAC
/// under that same key. `mac` is the MAC as [`crate::packet::Trailer::mac`] split it off
/// `datagram`.
pub fn check_reply(
    key: Option<&SymmetricKey>,
    datagram: &[u8],
    mac: Option<&[u8]>,
) -> Result<(), AuthError> {
    let Some(key) = key else {
        return Ok(());
    };
    let mac = mac.ok_or(AuthError::Missing)?;
    let (id, _) = split_mac(mac).ok_or(AuthError::Missing)?;
    if mac.len() == CRYPTO_NAK.len() {
        return Err(AuthError::CryptoNak);
    }
    if id != key.id {
        return Err(AuthError::WrongKey(id));
    }
    let message = &datagram[..datagram.len().saturating_sub(mac.len())];
    if key.verifies(message, mac) {
        Ok(())
    } else {
        Err(AuthError::BadDigest(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Packet, PollInterval, Version};
    use crate::time::NtpTimestamp;
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        decode_hex(text).expect("hex")
    }

    fn key(digest: DigestType, secret: &[u8]) -> SymmetricKey {
        SymmetricKey::new(KeyId(123), digest, secret).expect("valid key")
    }

    #[test]
    fn aes_cmac_matches_rfc_4493() {
        // RFC 4493 section 4, examples 1 to 4.
        let k = key(
            DigestType::Aes128Cmac,
            &hex("2b7e151628aed2a6abf7158809cf4f3c"),
        );
        let message = hex(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        );
        for (len, mac) in [
            (0, "bb1d6929e95937287fa37d129b756746"),
            (16, "070a16b46b4d4144f79bdd9dd04a287c"),
            (40, "dfa66747de9ae63030ca32611497c827"),
            (64, "51f0bebf7e3b9d92fc49741779363cfe"),
        ] {
            assert_eq!(k.digest(&message[..len])[..16], hex(mac)[..], "{len} bytes");
        }
    }

    #[test]
    fn digests_match_ntpsecs_vectors() {
        // ntpsec's tests/libntp/macencrypt.c: packet "ijklmnopqrstuvwx", MD5 key "abcdefgh",
        // CMAC key "0123456789abcdef"; SHA-1 of the key then the packet by Python's hashlib.
        let packet = b"ijklmnopqrstuvwx";
        let cases = [
            (
                DigestType::Md5,
                &b"abcdefgh"[..],
                "0c0e84cf0bb7a8688e5238dbbc1c3953",
            ),
            (
                DigestType::Aes128Cmac,
                b"0123456789abcdef",
                "b0a1cfd27f690c43a75d6c55914b1514",
            ),
            (
                DigestType::Sha1,
                b"abcdefgh",
                "d717e22e1659305fad6ef08864923db64aba9c08",
            ),
        ];
        for (digest, secret, expected) in cases {
            let k = key(digest, secret);
            assert_eq!(
                k.digest(packet)[..digest.digest_len()],
                hex(expected)[..],
                "{digest:?}"
            );
            let mut mac = 123u32.to_be_bytes().to_vec();
            mac.extend(hex(expected));
            assert!(k.verifies(packet, &mac), "{digest:?}");
        }
    }

    #[test]
    fn keys_files_of_ntpd_ntpsec_and_chrony_parse() {
        let text = "# ntpd/ntpsec\n\
                    1 M secret # a comment\n\
                    2 SHA1 0123456789abcdef0123456789abcdef01234567\n\
                    3 AES128CMAC 000102030405060708090a0b0c0d0e0f\n\
                    \n  # chrony\n\
                    10 HEX:A0B1\n\
                    11 SHA1 ASCII:long-ascii-key-of-more-than-twenty\n\
                    12 aes128 hex:000102030405060708090a0b0c0d0e0f\n\
                    4294967295 MD5 x\n";
        let keys = Keys::parse(text).expect("parses");
        let ids: Vec<_> = keys.iter().map(|k| (k.id().0, k.digest_type())).collect();
        assert_eq!(
            ids,
            [
                (1, DigestType::Md5),
                (2, DigestType::Sha1),
                (3, DigestType::Aes128Cmac),
                (10, DigestType::Md5),
                (11, DigestType::Sha1),
                (12, DigestType::Aes128Cmac),
                (u32::MAX, DigestType::Md5),
            ]
        );
        let get = |id| keys.get(KeyId(id)).expect("key").secret().to_vec();
        assert_eq!(get(1), b"secret");
        assert_eq!(get(2).len(), 20);
        assert_eq!(get(10), [0xa0, 0xb1]);
        assert_eq!(get(11), b"long-ascii-key-of-more-than-twenty");
        assert_eq!(get(12), (0..16).collect::<Vec<u8>>());
        let debug = format!("{keys:?}");
        assert!(
            !debug.contains("secret") && debug.contains("SymmetricKey(1 MD5)"),
            "{debug}"
        );
    }

    #[test]
    fn bad_keys_files_name_the_line_and_the_fix() {
        let cases = [
            ("1 SHA256 HEX:00", 1, "unknown key type"),
            ("\n0 MD5 x", 2, "key ID 0 is reserved"),
            ("-1 MD5 x", 1, "not a number"),
            ("1 AES128 HEX:0001", 1, "exactly 16 bytes"),
            ("1 AES128 short", 1, "exactly 16 bytes"),
            ("1 MD5 HEX:0g", 1, "hex digits"),
            ("1 MD5 HEX:abc", 1, "hex digits"),
            ("1 MD5 HEX:", 1, "1 to 64 bytes"),
            ("1 MD5 ASCII:", 1, "1 to 64 bytes"),
            ("1 MD5 this-is-longer-than-twenty", 1, "must be hex"),
            ("1 MD5 x y z", 1, "expected `ID TYPE KEY`"),
            ("1", 1, "expected `ID TYPE KEY`"),
            ("1 MD5 x\n1 SHA1 y", 2, "defined twice"),
            ("1 MD5 HEX:é€", 1, "hex digits"),
        ];
        for (text, line, message) in cases {
            let e = Keys::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(message), "{text}: {e}");
        }
        let long = format!("1 SHA1 HEX:{}", "ab".repeat(65));
        assert!(Keys::parse(&long).is_err_and(|e| e.message.contains("1 to 64 bytes")));
    }

    fn header() -> [u8; HEADER_LEN] {
        Packet::client_request(
            Version::V4,
            PollInterval::new(6),
            NtpTimestamp::from_bits(7),
        )
        .serialize()
    }

    fn request(key: Option<&SymmetricKey>) -> Sealed {
        Seal::with(key).seal(header())
    }

    fn mac_of(datagram: &[u8]) -> Option<&[u8]> {
        Packet::parse(datagram).expect("parses").1.mac()
    }

    #[test]
    fn sealed_packets_parse_and_verify_and_nothing_else_does() {
        let aes = key(DigestType::Aes128Cmac, &[7; 16]);
        let sha = SymmetricKey::new(KeyId(2), DigestType::Sha1, b"sha").expect("key");
        let keys = Keys::new([aes, sha]);
        for k in [aes, sha] {
            let sealed = request(Some(&k));
            assert_eq!(sealed.len(), HEADER_LEN + 4 + k.digest_type().digest_len());
            assert_eq!(check_reply(Some(&k), &sealed, mac_of(&sealed)), Ok(()));
            assert_eq!(keys.check_request(&sealed, mac_of(&sealed)), Ok(Some(k)));
        }
        let plain = request(None);
        assert_eq!(plain.len(), HEADER_LEN);
        assert_eq!(keys.check_request(&plain, None), Ok(None));
        assert_eq!(check_reply(None, &plain, None), Ok(()));
        assert_eq!(
            check_reply(Some(&aes), &plain, None),
            Err(AuthError::Missing)
        );
        let sealed = request(Some(&sha));
        assert_eq!(
            check_reply(Some(&aes), &sealed, mac_of(&sealed)),
            Err(AuthError::WrongKey(KeyId(2)))
        );
        let nak = Seal::CryptoNak.seal(header());
        assert_eq!(&nak[HEADER_LEN..], &CRYPTO_NAK);
        assert_eq!(
            check_reply(Some(&aes), &nak, mac_of(&nak)),
            Err(AuthError::CryptoNak)
        );
        assert_eq!(
            keys.check_request(&nak, mac_of(&nak)),
            Err(AuthError::CryptoNak)
        );
        let unknown = SymmetricKey::new(KeyId(9), DigestType::Md5, b"x").expect("key");
        let sealed = request(Some(&unknown));
        assert_eq!(
            keys.check_request(&sealed, mac_of(&sealed)),
            Err(AuthError::UnknownKey(KeyId(9)))
        );
        // The same ID with another secret: the digest fails.
        let impostor = key(DigestType::Aes128Cmac, &[8; 16]);
        let sealed = request(Some(&impostor));
        assert_eq!(
            check_reply(Some(&aes), &sealed, mac_of(&sealed)),
            Err(AuthError::BadDigest(KeyId(123)))
        );
        assert_eq!(
            keys.check_request(&sealed, mac_of(&sealed)),
            Err(AuthError::BadDigest(KeyId(123)))
        );
    }

    fn any_key() -> impl Strategy<Value = SymmetricKey> {
        (
            1u32..,
            prop_oneof![
                Just(DigestType::Aes128Cmac),
                Just(DigestType::Sha1),
                Just(DigestType::Md5)
            ],
            proptest::collection::vec(any::<u8>(), 1..=MAX_SECRET_LEN),
        )
            .prop_map(|(id, digest, mut secret)| {
                if digest == DigestType::Aes128Cmac {
                    secret.resize(16, 0);
                }
                SymmetricKey::new(KeyId(id), digest, &secret).expect("valid")
            })
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips_and_any_bit_flip_fails(
            k in any_key(),
            header in proptest::array::uniform32(any::<u8>()),
            tail in proptest::array::uniform16(any::<u8>()),
            bit in 0usize..(MAX_SEALED_LEN * 8),
        ) {
            let mut full = [0u8; HEADER_LEN];
            full[..32].copy_from_slice(&header);
            full[32..].copy_from_slice(&tail);
            let sealed = Seal::Key(k).seal(full);
            let mac = &sealed[HEADER_LEN..];
            prop_assert!(k.verifies(&sealed[..HEADER_LEN], mac));
            prop_assert_eq!(check_reply(Some(&k), &sealed, Some(mac)), Ok(()));
            let mut flipped = sealed.to_vec();
            let bit = bit % (flipped.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            let (message, mac) = flipped.split_at(HEADER_LEN);
            prop_assert!(!k.verifies(message, mac));
            prop_assert!(check_reply(Some(&k), &flipped, Some(mac)).is_err());
        }

        #[test]
        fn parsing_any_text_never_panics(text in "\\PC{0,200}") {
            let _ = Keys::parse(&text);
        }
    }
}
