//! The server's cookies (RFC 8915 section 6): the session keys of a client, encrypted under a
//! server key that only the server knows, so that the server keeps no state per client. The keys
//! rotate; the newest encrypts, the older ones still decrypt cookies handed out before, until
//! they drop out. The key file (text: one `ID KEY CREATED` a line) lets a restarted server, and
//! other servers sharing the file, keep decrypting the cookies their clients hold.
//!
//! A cookie is the key ID (4 bytes), a nonce (16), the SIV tag (16) and the encrypted C2S and S2C
//! keys (64): 100 bytes, like chrony's.

use core::fmt;

use super::{AeadKey, KEY_LEN, NONCE_LEN, SessionKeys, TAG_LEN};

/// Length of the cookies we make.
pub const COOKIE_LEN: usize = 4 + NONCE_LEN + TAG_LEN + 2 * KEY_LEN;
/// Server keys kept by default: the current one and two before it (chrony keeps three too).
pub const KEPT_KEYS: usize = 3;

/// One server key: its ID (carried in every cookie), the key, and when it was made (Unix
/// seconds, for rotation). `Debug` never shows the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieKey {
    /// Its ID.
    pub id: u32,
    /// The key.
    pub key: AeadKey,
    /// When it was made, Unix seconds.
    pub created: u64,
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CookieKey({:08x}, created {})", self.id, self.created)
    }
}

impl CookieKey {
    /// A cookie holding `session` under this key, with a nonce that must never repeat under it
    /// (random: section 6 asks that cookies be unlinkable).
    pub fn encrypt(&self, session: &SessionKeys, nonce: [u8; NONCE_LEN]) -> [u8; COOKIE_LEN] {
        let mut cookie = [0; COOKIE_LEN];
        let (id, rest) = cookie.split_at_mut(4);
        id.copy_from_slice(&self.id.to_be_bytes());
        let (nonce_out, sealed) = rest.split_at_mut(NONCE_LEN);
        nonce_out.copy_from_slice(&nonce);
        sealed[TAG_LEN..TAG_LEN + KEY_LEN].copy_from_slice(&session.c2s.0);
        sealed[TAG_LEN + KEY_LEN..].copy_from_slice(&session.s2c.0);
        self.key.seal(id, &nonce, sealed);
        cookie
    }
}

/// The server keys, oldest first; the last one encrypts new cookies.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CookieKeys {
    keys: Vec<CookieKey>,
}

/// A key file line that could not be used.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum KeyFileError {
    /// A line is not `ID KEY CREATED`.
    #[error(
        "line {0}: expected `ID KEY CREATED` (8 hex digits, 64 hex digits, Unix seconds); delete the file to have the server make a new one (clients then go back to NTS-KE once)"
    )]
    Line(usize),
    /// No key at all.
    #[error(
        "the NTS key file holds no key; delete it to have the server make a new one (clients then go back to NTS-KE once)"
    )]
    Empty,
}

impl CookieKeys {
    /// Keys starting with one.
    pub fn new(first: CookieKey) -> Self {
        Self { keys: vec![first] }
    }

    /// The key that encrypts new cookies.
    pub fn current(&self) -> CookieKey {
        // Never empty: built from one key, and rotation only adds.
        self.keys[self.keys.len() - 1]
    }

    /// All keys, oldest first.
    pub fn keys(&self) -> &[CookieKey] {
        &self.keys
    }

    /// True if the current key is at least `period` seconds old at `now` (Unix seconds).
    pub fn needs_rotation(&self, now: u64, period: u64) -> bool {
        now.saturating_sub(self.current().created) >= period
    }

    /// `new` becomes the current key; only the newest `keep` keys (at least one) stay.
    pub fn rotate(&mut self, new: CookieKey, keep: usize) {
        self.keys.retain(|k| k.id != new.id);
        self.keys.push(new);
        let excess = self.keys.len().saturating_sub(keep.max(1));
        self.keys.drain(..excess);
    }

    /// A cookie holding `session` under the current key (see [`CookieKey::encrypt`]).
    pub fn encrypt(&self, session: &SessionKeys, nonce: [u8; NONCE_LEN]) -> [u8; COOKIE_LEN] {
        self.current().encrypt(session, nonce)
    }

    /// The session keys in `cookie`, if one of our keys made it and it is intact.
    pub fn decrypt(&self, cookie: &[u8]) -> Option<SessionKeys> {
        let cookie: &[u8; COOKIE_LEN] = cookie.try_into().ok()?;
        let (id, rest) = cookie.split_first_chunk::<4>()?;
        let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>()?;
        let id_value = u32::from_be_bytes(*id);
        let key = self.keys.iter().find(|k| k.id == id_value)?;
        let mut buffer = [0u8; TAG_LEN + 2 * KEY_LEN];
        buffer.copy_from_slice(sealed);
        key.key.open(id, nonce, &mut buffer).ok()?;
        let (c2s, s2c) = buffer[TAG_LEN..].split_at(KEY_LEN);
        Some(SessionKeys {
            c2s: AeadKey(c2s.try_into().ok()?),
            s2c: AeadKey(s2c.try_into().ok()?),
        })
    }

    /// The key file's text: a comment, then `ID KEY CREATED` a line, oldest first.
    pub fn to_file(&self) -> String {
        let mut text = String::from(
            "# ntpd-lite NTS server keys: ID KEY CREATED (Unix seconds). Secret: keep it 0600.\n",
        );
        for key in &self.keys {
            text.push_str(&format!("{:08x} ", key.id));
            for byte in key.key.0 {
                text.push_str(&format!("{byte:02x}"));
            }
            text.push_str(&format!(" {}\n", key.created));
        }
        text
    }

    /// Reads a key file's text (see [`CookieKeys::to_file`]); `#` starts a comment.
    pub fn parse_file(text: &str) -> Result<Self, KeyFileError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let content = line.split('#').next().unwrap_or_default();
            let words: Vec<&str> = content.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            let parsed = match words[..] {
                [id, key, created] => parse_key(id, key, created),
                _ => None,
            };
            keys.push(parsed.ok_or(KeyFileError::Line(index + 1))?);
        }
        if keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(Self { keys })
    }
}

fn parse_key(id: &str, key: &str, created: &str) -> Option<CookieKey> {
    let id = u32::from_str_radix(id, 16).ok()?;
    let created = created.parse().ok()?;
    if key.len() != 2 * KEY_LEN || !key.is_ascii() {
        return None;
    }
    let mut bytes = [0; KEY_LEN];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(key.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(CookieKey {
        id,
        key: AeadKey(bytes),
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, created: u64) -> CookieKey {
        CookieKey {
            id,
            key: AeadKey([id as u8; KEY_LEN]),
            created,
        }
    }

    fn session() -> SessionKeys {
        SessionKeys {
            c2s: AeadKey([1; KEY_LEN]),
            s2c: AeadKey([2; KEY_LEN]),
        }
    }

    #[test]
    fn a_cookie_decrypts_until_its_key_is_rotated_out() {
        let mut keys = CookieKeys::new(key(1, 100));
        let cookie = keys.encrypt(&session(), [9; NONCE_LEN]);
        assert_eq!(keys.decrypt(&cookie), Some(session()));
        for id in 2..=KEPT_KEYS as u32 {
            keys.rotate(key(id, 100 * u64::from(id)), KEPT_KEYS);
            assert_eq!(keys.decrypt(&cookie), Some(session()), "after key {id}");
        }
        let newer = keys.encrypt(&session(), [9; NONCE_LEN]);
        assert_ne!(newer, cookie, "another key, another cookie");
        keys.rotate(key(99, 1000), KEPT_KEYS);
        assert_eq!(keys.decrypt(&cookie), None);
        assert_eq!(keys.decrypt(&newer), Some(session()));
    }

    #[test]
    fn a_forged_or_cut_cookie_decrypts_to_nothing() {
        let keys = CookieKeys::new(key(1, 0));
        let cookie = keys.encrypt(&session(), [3; NONCE_LEN]);
        for i in 0..COOKIE_LEN {
            let mut forged = cookie;
            forged[i] ^= 0x40;
            assert_eq!(keys.decrypt(&forged), None, "byte {i}");
        }
        assert_eq!(keys.decrypt(&cookie[..COOKIE_LEN - 1]), None);
        assert_eq!(keys.decrypt(&[]), None);
    }

    #[test]
    fn rotation_is_due_after_the_period() {
        let keys = CookieKeys::new(key(1, 1000));
        assert!(!keys.needs_rotation(1000 + 3599, 3600));
        assert!(keys.needs_rotation(1000 + 3600, 3600));
        assert!(!keys.needs_rotation(0, 3600), "a clock set back");
    }

    #[test]
    fn the_key_file_round_trips_and_refuses_garbage() {
        let mut keys = CookieKeys::new(key(0xdead_beef, 1));
        keys.rotate(key(2, 5), KEPT_KEYS);
        let text = keys.to_file();
        assert_eq!(CookieKeys::parse_file(&text), Ok(keys));
        assert_eq!(
            CookieKeys::parse_file("# nothing\n"),
            Err(KeyFileError::Empty)
        );
        assert_eq!(
            CookieKeys::parse_file("1 00ff 3\n"),
            Err(KeyFileError::Line(1))
        );
        assert_eq!(
            CookieKeys::parse_file(&format!("\n1 {} x\n", "0".repeat(64))),
            Err(KeyFileError::Line(2))
        );
    }
}
