//! The NTP packet header (RFC 5905 section 7.3), its typed fields, and the trailer of extension
//! fields (RFC 7822) and MAC that may follow it.
//!
//! Wire values are open newtypes: a field value this code has no name for still parses and
//! re-encodes to the same bits. [`Packet::parse`] never panics and never reads past its input.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use byteorder::{BigEndian, ByteOrder};
use md5::{Digest, Md5};

use crate::time::{NtpDuration, NtpShort, NtpTimestamp};

/// Byte offsets of the header fields (RFC 5905 figure 8).
mod field {
    use core::ops::Range;
    pub const LI_VN_MODE: usize = 0;
    pub const STRATUM: usize = 1;
    pub const POLL: usize = 2;
    pub const PRECISION: usize = 3;
    pub const ROOT_DELAY: Range<usize> = 4..8;
    pub const ROOT_DISPERSION: Range<usize> = 8..12;
    pub const REFERENCE_ID: Range<usize> = 12..16;
    pub const REFERENCE_TS: Range<usize> = 16..24;
    pub const ORIGIN_TS: Range<usize> = 24..32;
    pub const RECEIVE_TS: Range<usize> = 32..40;
    pub const TRANSMIT_TS: Range<usize> = 40..48;
}

/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 48;
/// Longest MAC: a 4-byte key ID and a 20-byte SHA-1 digest (RFC 7822 section 3).
const MAX_MAC_LEN: usize = 24;
/// Shortest extension field (RFC 7822 section 3).
const MIN_EXTENSION_LEN: usize = 16;

/// Leap indicator: a warning of a leap second at the end of the day, or "clock unsynchronized"
/// (RFC 5905 figure 9).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum LeapIndicator {
    /// No leap second pending.
    #[default]
    NoWarning,
    /// The last minute of the day has 61 seconds.
    InsertSecond,
    /// The last minute of the day has 59 seconds.
    DeleteSecond,
    /// The clock is unsynchronized (alarm condition).
    Unsynchronized,
}

impl LeapIndicator {
    /// From the two wire bits (only the low two bits of `bits` are used).
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => Self::NoWarning,
            1 => Self::InsertSecond,
            2 => Self::DeleteSecond,
            _ => Self::Unsynchronized,
        }
    }

    /// The two wire bits.
    pub const fn to_bits(self) -> u8 {
        self as u8
    }
}

/// Protocol version number, 3 bits on the wire; any value round-trips.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Version(u8);

impl Version {
    /// NTPv3 (RFC 1305).
    pub const V3: Self = Self(3);
    /// NTPv4 (RFC 5905).
    pub const V4: Self = Self(4);

    /// From the wire bits; values above 7 are truncated to 3 bits.
    pub const fn new(version: u8) -> Self {
        Self(version & 0b111)
    }

    /// The version number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// True for the versions a server answers: 1 to 4.
    pub const fn is_supported(self) -> bool {
        matches!(self.0, 1..=4)
    }
}

/// Association mode, 3 bits on the wire (RFC 5905 figure 10); any value round-trips.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(u8);

impl Mode {
    /// Reserved (0).
    pub const RESERVED: Self = Self(0);
    /// Symmetric active (1).
    pub const SYMMETRIC_ACTIVE: Self = Self(1);
    /// Symmetric passive (2).
    pub const SYMMETRIC_PASSIVE: Self = Self(2);
    /// Client (3).
    pub const CLIENT: Self = Self(3);
    /// Server (4).
    pub const SERVER: Self = Self(4);
    /// Broadcast (5).
    pub const BROADCAST: Self = Self(5);
    /// NTP control message (6, RFC 1305 appendix B).
    pub const CONTROL: Self = Self(6);
    /// Reserved for private use (7, ntpd's ntpdc).
    pub const PRIVATE: Self = Self(7);

    /// From the wire bits; values above 7 are truncated to 3 bits.
    pub const fn new(mode: u8) -> Self {
        Self(mode & 0b111)
    }

    /// The mode number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::RESERVED => "reserved",
            Self::SYMMETRIC_ACTIVE => "symmetric-active",
            Self::SYMMETRIC_PASSIVE => "symmetric-passive",
            Self::CLIENT => "client",
            Self::SERVER => "server",
            Self::BROADCAST => "broadcast",
            Self::CONTROL => "control",
            _ => "private",
        };
        write!(f, "Mode({} {name})", self.0)
    }
}

/// Stratum: 0 kiss-o'-death or unspecified, 1 primary, 2-15 secondary, 16 unsynchronized, above
/// 16 reserved (RFC 5905 figure 11); any value round-trips.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Stratum(u8);

impl Stratum {
    /// Unspecified or invalid; in a reply this is a kiss-o'-death packet.
    pub const UNSPECIFIED: Self = Self(0);
    /// A primary server, directly attached to a reference clock.
    pub const PRIMARY: Self = Self(1);
    /// The highest stratum a synchronized server may have (RFC 5905 MAXSTRAT - 1).
    pub const MAX_SYNCHRONIZED: Self = Self(15);
    /// Unsynchronized (RFC 5905 MAXSTRAT).
    pub const UNSYNCHRONIZED: Self = Self(16);

    /// From the wire byte.
    pub const fn new(stratum: u8) -> Self {
        Self(stratum)
    }

    /// The stratum number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Stratum 0: a reply with this stratum is a kiss-o'-death packet.
    pub const fn is_kiss(self) -> bool {
        self.0 == 0
    }

    /// Stratum 1 to 15: a server that can be synchronized to.
    pub const fn is_synchronized(self) -> bool {
        matches!(self.0, 1..=15)
    }

    /// The stratum of a server synchronized to this one: one more, at most 16.
    pub const fn next(self) -> Self {
        if self.0 >= 16 {
            Self(16)
        } else {
            Self(self.0 + 1)
        }
    }
}

/// A signed log2 of seconds, used for the poll interval and the precision (RFC 5905 section 7.3).
macro_rules! log2_seconds {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
        pub struct $name(i8);

        impl $name {
            /// From the signed log2 value.
            pub const fn new(log2_seconds: i8) -> Self {
                Self(log2_seconds)
            }

            /// The signed log2 value.
            pub const fn get(self) -> i8 {
                self.0
            }

            /// 2^value seconds.
            pub const fn to_duration(self) -> NtpDuration {
                NtpDuration::from_log2(self.0)
            }
        }
    };
}

log2_seconds!(
    /// Poll interval: the maximum interval between messages, as a signed log2 of seconds.
    PollInterval
);
log2_seconds!(
    /// Precision of the system clock, as a signed log2 of seconds (-20 is about one microsecond).
    Precision
);

/// Reference ID (RFC 5905 section 7.3): a kiss code or reference-clock name at stratum 0 and 1,
/// otherwise the IPv4 address of the upstream server, or the first 4 bytes of the MD5 hash of its
/// IPv6 address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ReferenceId([u8; 4]);

impl ReferenceId {
    /// Kiss code: rate exceeded, reduce the poll rate (RFC 5905 section 7.4).
    pub const RATE: Self = Self(*b"RATE");
    /// Kiss code: access denied, stop sending.
    pub const DENY: Self = Self(*b"DENY");
    /// Kiss code: access restricted, stop sending.
    pub const RSTR: Self = Self(*b"RSTR");
    /// Kiss code: the association has not yet synchronized.
    pub const INIT: Self = Self(*b"INIT");
    /// Kiss code: a step change in the system time has occurred.
    pub const STEP: Self = Self(*b"STEP");
    /// Reference clock: an undisciplined local clock.
    pub const LOCL: Self = Self(*b"LOCL");
    /// Zero: no reference.
    pub const NONE: Self = Self([0; 4]);

    /// From the four wire bytes.
    pub const fn from_bytes(bytes: [u8; 4]) -> Self {
        Self(bytes)
    }

    /// The four wire bytes.
    pub const fn to_bytes(self) -> [u8; 4] {
        self.0
    }

    /// From one to four ASCII characters (a kiss code or a reference-clock name such as `GPS`),
    /// padded with NUL bytes; `None` for anything else.
    pub fn from_ascii(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > 4 || !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut id = [0u8; 4];
        id[..bytes.len()].copy_from_slice(bytes);
        Some(Self(id))
    }

    /// The reference ID a server synchronized to `address` advertises (RFC 5905 section 7.3).
    pub fn from_ip(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self(v4.octets()),
            IpAddr::V6(v6) => Self::from_ipv6(v6),
        }
    }

    /// The first four bytes of the MD5 hash of an IPv6 address.
    pub fn from_ipv6(address: Ipv6Addr) -> Self {
        let digest = Md5::digest(address.octets());
        Self([digest[0], digest[1], digest[2], digest[3]])
    }

    /// The text of a kiss code or reference-clock name, if every byte is printable ASCII up to
    /// optional trailing NUL padding.
    pub fn as_ascii(&self) -> Option<&str> {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(4);
        let (text, padding) = self.0.split_at(len);
        let printable = !text.is_empty() && text.iter().all(|b| b.is_ascii_graphic());
        if printable && padding.iter().all(|&b| b == 0) {
            core::str::from_utf8(text).ok()
        } else {
            None
        }
    }

    /// As an IPv4 address (the meaning at stratum 2 and above for an IPv4 upstream).
    pub const fn as_ipv4(self) -> Ipv4Addr {
        Ipv4Addr::new(self.0[0], self.0[1], self.0[2], self.0[3])
    }

    /// How a person reads this ID from a server of the given stratum: the ASCII code at stratum 0
    /// and 1 (hex if not printable), a dotted IPv4 address above, or hex when `upstream_is_ipv6`
    /// says it is the hash of an IPv6 address.
    pub fn display(self, stratum: Stratum, upstream_is_ipv6: bool) -> String {
        match (stratum.get(), self.as_ascii()) {
            (0 | 1, Some(text)) => text.to_owned(),
            (0 | 1, None) => self.hex(),
            _ if upstream_is_ipv6 => self.hex(),
            _ => self.as_ipv4().to_string(),
        }
    }

    /// Eight lowercase hex digits.
    pub fn hex(self) -> String {
        format!("{:08x}", u32::from_be_bytes(self.0))
    }
}

impl fmt::Debug for ReferenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_ascii() {
            Some(text) => write!(f, "ReferenceId({text:?})"),
            None => write!(f, "ReferenceId({})", self.hex()),
        }
    }
}

/// An NTP packet header, every field typed (RFC 5905 section 7.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Packet {
    /// Leap warning or "unsynchronized".
    pub leap: LeapIndicator,
    /// Protocol version.
    pub version: Version,
    /// Association mode.
    pub mode: Mode,
    /// Stratum (0 in a reply: kiss-o'-death).
    pub stratum: Stratum,
    /// Poll interval, log2 seconds.
    pub poll: PollInterval,
    /// Precision of the sender's clock, log2 seconds.
    pub precision: Precision,
    /// Total round-trip delay to the reference clock.
    pub root_delay: NtpShort,
    /// Total dispersion to the reference clock.
    pub root_dispersion: NtpShort,
    /// Reference ID or kiss code.
    pub reference_id: ReferenceId,
    /// When the sender's clock was last set or corrected.
    pub reference_timestamp: NtpTimestamp,
    /// T1 as echoed by the server: the transmit timestamp of the request.
    pub origin_timestamp: NtpTimestamp,
    /// T2: when the request arrived at the server.
    pub receive_timestamp: NtpTimestamp,
    /// T3: when this packet left its sender.
    pub transmit_timestamp: NtpTimestamp,
}

/// Why bytes are not an NTP packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ParseError {
    /// Fewer bytes than the 48-byte header.
    #[error("packet too short: {0} bytes, an NTP header needs 48")]
    TooShort(usize),
    /// The bytes after the header are neither extension fields nor a MAC.
    #[error("malformed trailer after the header: {0}")]
    MalformedTrailer(&'static str),
}

impl Packet {
    /// A client request (mode 3) as RFC 5905 and RFC 9109 advise: every field zero except the
    /// version, the poll, and a transmit timestamp that the caller draws at random, so that a reply
    /// reveals nothing about our clock and an off-path attacker cannot guess it.
    pub fn client_request(version: Version, poll: PollInterval, transmit: NtpTimestamp) -> Self {
        Self {
            leap: LeapIndicator::NoWarning,
            version,
            mode: Mode::CLIENT,
            stratum: Stratum::UNSPECIFIED,
            poll,
            precision: Precision::new(0),
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: ReferenceId::NONE,
            reference_timestamp: NtpTimestamp::ZERO,
            origin_timestamp: NtpTimestamp::ZERO,
            receive_timestamp: NtpTimestamp::ZERO,
            transmit_timestamp: transmit,
        }
    }

    /// Parses the 48-byte header and checks that whatever follows is well-formed extension fields
    /// and an optional MAC, which are exposed but not interpreted.
    pub fn parse(bytes: &[u8]) -> Result<(Self, Trailer<'_>), ParseError> {
        let Some((header, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(ParseError::TooShort(bytes.len()));
        };
        Ok((Self::parse_header(header), Trailer::parse(rest)?))
    }

    /// Decodes the fixed header; every 48-byte input is a header.
    pub fn parse_header(h: &[u8; HEADER_LEN]) -> Self {
        let first = h[field::LI_VN_MODE];
        Self {
            leap: LeapIndicator::from_bits(first >> 6),
            version: Version::new(first >> 3),
            mode: Mode::new(first),
            stratum: Stratum::new(h[field::STRATUM]),
            poll: PollInterval::new(h[field::POLL] as i8),
            precision: Precision::new(h[field::PRECISION] as i8),
            root_delay: NtpShort::from_bits(BigEndian::read_u32(&h[field::ROOT_DELAY])),
            root_dispersion: NtpShort::from_bits(BigEndian::read_u32(&h[field::ROOT_DISPERSION])),
            reference_id: ReferenceId::from_bytes(array(h, field::REFERENCE_ID)),
            reference_timestamp: timestamp(h, field::REFERENCE_TS),
            origin_timestamp: timestamp(h, field::ORIGIN_TS),
            receive_timestamp: timestamp(h, field::RECEIVE_TS),
            transmit_timestamp: timestamp(h, field::TRANSMIT_TS),
        }
    }

    /// Encodes the header: exactly 48 bytes.
    pub fn serialize(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[field::LI_VN_MODE] =
            (self.leap.to_bits() << 6) | (self.version.get() << 3) | self.mode.get();
        h[field::STRATUM] = self.stratum.get();
        h[field::POLL] = self.poll.get() as u8;
        h[field::PRECISION] = self.precision.get() as u8;
        BigEndian::write_u32(&mut h[field::ROOT_DELAY], self.root_delay.to_bits());
        BigEndian::write_u32(
            &mut h[field::ROOT_DISPERSION],
            self.root_dispersion.to_bits(),
        );
        h[field::REFERENCE_ID].copy_from_slice(&self.reference_id.to_bytes());
        let stamps = [
            (field::REFERENCE_TS, self.reference_timestamp),
            (field::ORIGIN_TS, self.origin_timestamp),
            (field::RECEIVE_TS, self.receive_timestamp),
            (field::TRANSMIT_TS, self.transmit_timestamp),
        ];
        for (range, ts) in stamps {
            BigEndian::write_u64(&mut h[range], ts.to_bits());
        }
        h
    }

    /// True for a kiss-o'-death packet: stratum 0 (RFC 5905 section 7.4).
    pub const fn is_kiss(&self) -> bool {
        self.stratum.is_kiss()
    }

    /// The kiss code of a kiss-o'-death packet.
    pub const fn kiss_code(&self) -> Option<ReferenceId> {
        if self.is_kiss() {
            Some(self.reference_id)
        } else {
            None
        }
    }
}

fn array<const N: usize>(h: &[u8; HEADER_LEN], range: core::ops::Range<usize>) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&h[range]);
    out
}

fn timestamp(h: &[u8; HEADER_LEN], range: core::ops::Range<usize>) -> NtpTimestamp {
    NtpTimestamp::from_bits(BigEndian::read_u64(&h[range]))
}

/// What follows the header: zero or more extension fields (RFC 7822), then an optional MAC or a
/// 4-byte crypto-NAK. Exposed for inspection; nothing here is authenticated or trusted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Trailer<'a> {
    extensions: &'a [u8],
    mac: Option<&'a [u8]>,
}

impl<'a> Trailer<'a> {
    /// Splits the bytes after the header. As RFC 7822 section 7.5 prescribes, while more than a
    /// MAC's worth of bytes remain they must be an extension field; what is left must be empty, a
    /// crypto-NAK (4 bytes) or a MAC (20 or 24 bytes).
    fn parse(mut rest: &'a [u8]) -> Result<Self, ParseError> {
        let all = rest;
        while rest.len() > MAX_MAC_LEN {
            let Some((field_header, _)) = rest.split_first_chunk::<4>() else {
                return Err(ParseError::MalformedTrailer(
                    "truncated extension field header",
                ));
            };
            let len = usize::from(BigEndian::read_u16(&field_header[2..]));
            if len < MIN_EXTENSION_LEN || len % 4 != 0 {
                return Err(ParseError::MalformedTrailer(
                    "extension field length invalid",
                ));
            }
            rest = rest.get(len..).ok_or(ParseError::MalformedTrailer(
                "extension field longer than packet",
            ))?;
        }
        let extensions = &all[..all.len() - rest.len()];
        let mac = match rest.len() {
            0 => None,
            4 | 20 | 24 => Some(rest),
            _ => return Err(ParseError::MalformedTrailer("MAC length invalid")),
        };
        Ok(Self { extensions, mac })
    }

    /// True if nothing followed the header.
    pub fn is_empty(&self) -> bool {
        self.extensions.is_empty() && self.mac.is_none()
    }

    /// The extension fields, in order.
    pub fn extensions(&self) -> ExtensionFields<'a> {
        ExtensionFields {
            rest: self.extensions,
        }
    }

    /// The MAC (key ID and digest) or crypto-NAK, if present.
    pub fn mac(&self) -> Option<&'a [u8]> {
        self.mac
    }
}

/// One extension field (RFC 7822 section 3): a type and its value, padding included.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExtensionField<'a> {
    /// Field type.
    pub field_type: u16,
    /// Value bytes after the 4-byte field header.
    pub value: &'a [u8],
}

/// Iterator over extension fields already checked by [`Packet::parse`].
#[derive(Clone, Debug)]
pub struct ExtensionFields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ExtensionFields<'a> {
    type Item = ExtensionField<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (field_header, _) = self.rest.split_first_chunk::<4>()?;
        let field_type = BigEndian::read_u16(&field_header[..2]);
        let len = usize::from(BigEndian::read_u16(&field_header[2..]));
        let value = self.rest.get(4..len)?;
        self.rest = self.rest.get(len..)?;
        Some(ExtensionField { field_type, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        let text = text.trim();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
            .collect()
    }

    fn vector(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        hex(&text)
    }

    /// Parses a captured packet, checks it is exactly a header, and that it re-encodes to itself.
    fn decode(name: &str) -> Packet {
        let bytes = vector(name);
        let (packet, trailer) = Packet::parse(&bytes).expect(name);
        assert!(trailer.is_empty());
        assert_eq!(
            packet.serialize().as_slice(),
            bytes.as_slice(),
            "{name} re-encodes"
        );
        packet
    }

    fn ts(bits: u64) -> NtpTimestamp {
        NtpTimestamp::from_bits(bits)
    }

    fn assert_client_request(p: &Packet, leap: LeapIndicator, poll: i8, precision: i8, xmt: u64) {
        assert_eq!(p.leap, leap);
        assert_eq!(p.version, Version::V4);
        assert_eq!(p.mode, Mode::CLIENT);
        assert_eq!(p.stratum, Stratum::UNSPECIFIED);
        assert_eq!(p.poll, PollInterval::new(poll));
        assert_eq!(p.precision, Precision::new(precision));
        assert_eq!(
            (p.root_delay, p.root_dispersion),
            (NtpShort::ZERO, NtpShort::ZERO)
        );
        assert_eq!(p.reference_id, ReferenceId::NONE);
        assert!(p.reference_timestamp.is_zero());
        assert!(p.origin_timestamp.is_zero() && p.receive_timestamp.is_zero());
        assert_eq!(p.transmit_timestamp, ts(xmt));
    }

    /// The server fields every chronyd reply in the captures shares.
    fn assert_chrony_server(p: &Packet, poll: i8) {
        assert_eq!(p.leap, LeapIndicator::NoWarning);
        assert_eq!(p.version, Version::V4);
        assert_eq!(p.mode, Mode::SERVER);
        assert_eq!(p.stratum, Stratum::new(2));
        assert_eq!(p.poll, PollInterval::new(poll));
        assert_eq!(p.precision, Precision::new(-26));
        assert_eq!(
            (p.root_delay, p.root_dispersion),
            (NtpShort::ZERO, NtpShort::ZERO)
        );
        assert_eq!(p.reference_id.as_ipv4(), Ipv4Addr::new(127, 127, 1, 1));
        assert_eq!(p.reference_id.display(p.stratum, false), "127.127.1.1");
        assert_eq!(p.reference_timestamp, ts(0xeeac6089_1990d576));
        assert!(!p.is_kiss());
    }

    #[test]
    fn chrony_request_vector() {
        let p = decode("chrony-request");
        assert_client_request(&p, LeapIndicator::NoWarning, 6, -20, 0xeeac608a_82d61800);
    }

    #[test]
    fn chrony_reply_vector() {
        let p = decode("chrony-reply");
        assert_chrony_server(&p, 6);
        assert_eq!(p.origin_timestamp, ts(0xeeac608a_82d61800));
        assert_eq!(p.receive_timestamp, ts(0xeeac608a_82da131b));
        assert_eq!(p.transmit_timestamp, ts(0xeeac608a_82dfb0fc));
        let server_time = (p.transmit_timestamp - p.receive_timestamp).to_seconds_f64();
        assert!(
            (server_time - 85.7e-6).abs() < 0.1e-6,
            "T3-T2 {server_time}"
        );
    }

    #[test]
    fn ntpdig_vectors() {
        let request = decode("ntpdig-request");
        assert_client_request(
            &request,
            LeapIndicator::Unsynchronized,
            0,
            0,
            0xeeac608a_90776000,
        );
        let reply = decode("ntpdig-reply");
        assert_chrony_server(&reply, 0);
        assert_eq!(reply.origin_timestamp, request.transmit_timestamp);
    }

    #[test]
    fn chronyd_client_vectors() {
        let request = decode("chronyc-request");
        assert_client_request(
            &request,
            LeapIndicator::NoWarning,
            0,
            32,
            0x7e23e826_342e7f08,
        );
        let reply = decode("chronyc-reply");
        assert_chrony_server(&reply, 0);
        assert_eq!(
            reply.origin_timestamp,
            ts(0x7e23e826_342e7f08),
            "random cookie echoed"
        );
    }

    #[test]
    fn ntpsec_vectors() {
        let request = decode("ntpsec-request");
        assert_client_request(
            &request,
            LeapIndicator::NoWarning,
            6,
            -20,
            0xeeac608f_90710000,
        );
        let p = decode("ntpsec-reply");
        assert_eq!(
            (p.leap, p.version, p.mode),
            (LeapIndicator::NoWarning, Version::V4, Mode::SERVER)
        );
        assert_eq!(p.stratum, Stratum::new(5));
        assert_eq!(
            (p.poll, p.precision),
            (PollInterval::new(6), Precision::new(-24))
        );
        assert_eq!(p.reference_id.display(p.stratum, false), "127.0.0.1");
        assert!(p.reference_timestamp.is_zero());
        assert_eq!(p.origin_timestamp, request.transmit_timestamp);
        assert_eq!(p.receive_timestamp, ts(0xeeac608f_907400a8));
        assert_eq!(p.transmit_timestamp, ts(0xeeac608f_90777cff));
    }

    #[test]
    fn short_input_is_an_error_at_every_length() {
        let bytes = vector("chrony-reply");
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::parse(&bytes[..len]), Err(ParseError::TooShort(len)));
        }
    }

    #[test]
    fn kiss_codes() {
        for (code, text) in [
            (ReferenceId::RATE, "RATE"),
            (ReferenceId::DENY, "DENY"),
            (ReferenceId::RSTR, "RSTR"),
        ] {
            let mut p = Packet::client_request(Version::V4, PollInterval::new(6), ts(1));
            p.mode = Mode::SERVER;
            p.stratum = Stratum::UNSPECIFIED;
            p.leap = LeapIndicator::Unsynchronized;
            p.reference_id = code;
            assert!(p.is_kiss());
            assert_eq!(p.kiss_code(), Some(code));
            assert_eq!(code.as_ascii(), Some(text));
            assert_eq!(ReferenceId::from_ascii(text), Some(code));
        }
        let other = ReferenceId::from_bytes(*b"XYZW");
        assert_eq!(other.display(Stratum::UNSPECIFIED, false), "XYZW");
        assert_eq!(
            ReferenceId::from_ascii("GPS").map(|r| r.to_bytes()),
            Some(*b"GPS\0")
        );
        assert_eq!(
            ReferenceId::from_ascii("GPS").map(|r| r.display(Stratum::PRIMARY, false)),
            Some("GPS".into())
        );
        assert_eq!(ReferenceId::from_ascii("TOOLONG"), None);
        assert_eq!(
            ReferenceId::from_bytes([0xff, 0, 1, 2]).display(Stratum::PRIMARY, false),
            "ff000102"
        );
    }

    #[test]
    fn ipv6_reference_id_is_the_md5_prefix() {
        // The first 4 bytes of MD5 over the 16 bytes of ::1 (checked with Python's hashlib).
        let id = ReferenceId::from_ip("::1".parse().expect("literal"));
        assert_eq!(id.hex(), "cf404dc8");
        assert_eq!(id.display(Stratum::new(3), true), "cf404dc8");
        let v4 = ReferenceId::from_ip("192.0.2.7".parse().expect("literal"));
        assert_eq!(v4.display(Stratum::new(3), false), "192.0.2.7");
    }

    #[test]
    fn open_enums_round_trip_every_first_byte() {
        let mut bytes = vector("chrony-reply");
        for first in 0..=255u8 {
            bytes[0] = first;
            let (p, _) = Packet::parse(&bytes).expect("48 bytes");
            assert_eq!(p.serialize()[0], first);
        }
    }

    fn extension(field_type: u16, value_len: usize) -> Vec<u8> {
        let len = (4 + value_len) as u16;
        let mut f = field_type.to_be_bytes().to_vec();
        f.extend_from_slice(&len.to_be_bytes());
        f.extend(std::iter::repeat_n(0xab, value_len));
        f
    }

    #[test]
    fn extension_fields_and_mac_are_exposed() {
        let mut bytes = vector("chrony-request");
        bytes.extend(extension(0x0104, 32)); // NTS unique identifier
        bytes.extend(extension(0x0204, 12));
        bytes.extend([0u8; 20]); // key ID + MD5
        let (packet, trailer) = Packet::parse(&bytes).expect("valid trailer");
        assert_eq!(packet.serialize().as_slice(), &bytes[..HEADER_LEN]);
        let fields: Vec<_> = trailer
            .extensions()
            .map(|f| (f.field_type, f.value.len()))
            .collect();
        assert_eq!(fields, [(0x0104, 32), (0x0204, 12)]);
        assert_eq!(trailer.mac().map(<[u8]>::len), Some(20));
    }

    #[test]
    fn malformed_trailers_are_rejected() {
        let base = vector("chrony-request");
        let cases: [(&[u8], &str); 4] = [
            (&[0; 7], "MAC length"),
            (
                &[
                    0x01, 0x04, 0x00, 0x0e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0,
                ],
                "not a multiple of 4",
            ),
            (
                &[
                    0x01, 0x04, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0,
                ],
                "longer than packet",
            ),
            (
                &[
                    0x01, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0,
                ],
                "zero length",
            ),
        ];
        for (trailer, why) in cases {
            let mut bytes = base.clone();
            bytes.extend_from_slice(trailer);
            assert!(
                matches!(Packet::parse(&bytes), Err(ParseError::MalformedTrailer(_))),
                "{why}"
            );
        }
    }

    fn any_packet() -> impl Strategy<Value = Packet> {
        (any::<[u8; 4]>(), any::<[u32; 3]>(), any::<[u64; 4]>()).prop_map(|(b, s, t)| Packet {
            leap: LeapIndicator::from_bits(b[0] >> 6),
            version: Version::new(b[0] >> 3),
            mode: Mode::new(b[0]),
            stratum: Stratum::new(b[1]),
            poll: PollInterval::new(b[2] as i8),
            precision: Precision::new(b[3] as i8),
            root_delay: NtpShort::from_bits(s[0]),
            root_dispersion: NtpShort::from_bits(s[1]),
            reference_id: ReferenceId::from_bytes(s[2].to_be_bytes()),
            reference_timestamp: ts(t[0]),
            origin_timestamp: ts(t[1]),
            receive_timestamp: ts(t[2]),
            transmit_timestamp: ts(t[3]),
        })
    }

    proptest! {
        #[test]
        fn parse_inverts_serialize(p in any_packet()) {
            let bytes = p.serialize();
            let (back, trailer) = Packet::parse(&bytes).expect("a header parses");
            prop_assert_eq!(back, p);
            prop_assert!(trailer.is_empty());
        }

        #[test]
        fn parse_never_panics_and_headers_reencode(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((p, trailer)) = Packet::parse(&bytes) {
                let header = p.serialize();
                prop_assert_eq!(header.as_slice(), &bytes[..HEADER_LEN]);
                let ext_len: usize = trailer.extensions().map(|f| f.value.len() + 4).sum();
                prop_assert_eq!(HEADER_LEN + ext_len + trailer.mac().map_or(0, <[u8]>::len), bytes.len());
            }
        }
    }
}
