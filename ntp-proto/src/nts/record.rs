//! NTS-KE records (RFC 8915 section 4): a critical bit and a 15-bit type, a 16-bit body length,
//! the body. A message is records up to and including End of Message. The codec never panics and
//! never reads past its input; unknown record types round-trip.

use core::fmt;

/// Longest KE message accepted, bytes: eight cookies of the longest a KE record can carry are
/// far less, so anything longer is an attack on memory.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// A record type (RFC 8915 section 7.3); unknown ones round-trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordType(pub u16);

impl RecordType {
    /// End of Message (section 4.1.1).
    pub const END_OF_MESSAGE: Self = Self(0);
    /// NTS Next Protocol Negotiation (section 4.1.2).
    pub const NEXT_PROTOCOL: Self = Self(1);
    /// Error (section 4.1.3).
    pub const ERROR: Self = Self(2);
    /// Warning (section 4.1.4).
    pub const WARNING: Self = Self(3);
    /// AEAD Algorithm Negotiation (section 4.1.5).
    pub const AEAD_ALGORITHM: Self = Self(4);
    /// New Cookie for NTPv4 (section 4.1.6).
    pub const NEW_COOKIE: Self = Self(5);
    /// NTPv4 Server Negotiation (section 4.1.7).
    pub const SERVER: Self = Self(6);
    /// NTPv4 Port Negotiation (section 4.1.8).
    pub const PORT: Self = Self(7);
}

impl fmt::Debug for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::END_OF_MESSAGE => "EndOfMessage",
            Self::NEXT_PROTOCOL => "NextProtocol",
            Self::ERROR => "Error",
            Self::WARNING => "Warning",
            Self::AEAD_ALGORITHM => "AeadAlgorithm",
            Self::NEW_COOKIE => "NewCookie",
            Self::SERVER => "Server",
            Self::PORT => "Port",
            Self(other) => return write!(f, "RecordType({other})"),
        };
        f.write_str(name)
    }
}

/// An Error record's code (RFC 8915 section 4.1.3); unknown ones round-trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// Unrecognized Critical Record.
    pub const UNRECOGNIZED_CRITICAL: Self = Self(0);
    /// Bad Request.
    pub const BAD_REQUEST: Self = Self(1);
    /// Internal Server Error.
    pub const INTERNAL: Self = Self(2);
}

/// One record; the body borrows the message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Record<'a> {
    /// The critical bit: a receiver that does not know the type must fail (section 4).
    pub critical: bool,
    /// Its type.
    pub record_type: RecordType,
    /// Its body.
    pub body: &'a [u8],
}

/// Bytes that are not a well-formed KE message.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RecordError {
    /// The message is longer than [`MAX_MESSAGE`] before its End of Message.
    #[error("NTS-KE message longer than {MAX_MESSAGE} bytes")]
    TooLong,
    /// Bytes follow End of Message.
    #[error("bytes after the NTS-KE End of Message record")]
    TrailingBytes,
    /// The stream ended inside a record or before End of Message.
    #[error("NTS-KE message ends before its End of Message record")]
    Truncated,
}

impl<'a> Record<'a> {
    /// A record; `body` must be at most 65535 bytes (longer ones are cut there).
    pub const fn new(critical: bool, record_type: RecordType, body: &'a [u8]) -> Self {
        Self {
            critical,
            record_type,
            body,
        }
    }

    /// Appends the record's wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = (self.record_type.0 & 0x7fff) | if self.critical { 0x8000 } else { 0 };
        let body = &self.body[..self.body.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }

    /// The first record of `bytes` and what follows it, or `None` if `bytes` ends inside it.
    pub fn parse(bytes: &'a [u8]) -> Option<(Self, &'a [u8])> {
        let (header, rest) = bytes.split_first_chunk::<4>()?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let body = rest.get(..len)?;
        let record = Self {
            critical: kind & 0x8000 != 0,
            record_type: RecordType(kind & 0x7fff),
            body,
        };
        Some((record, &rest[len..]))
    }

    /// The body as a list of big-endian u16 (Next Protocol, AEAD Algorithm), `None` if its
    /// length is odd.
    pub fn u16s(&self) -> Option<impl Iterator<Item = u16> + 'a> {
        let body = self.body;
        (body.len() % 2 == 0).then(|| {
            body.chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        })
    }
}

/// The length of the first complete message in `bytes` (through its End of Message), `Ok(None)`
/// while more bytes are needed. A reader calls it after each read.
pub fn message_len(bytes: &[u8]) -> Result<Option<usize>, RecordError> {
    let mut rest = bytes;
    loop {
        let Some((record, after)) = Record::parse(rest) else {
            return if bytes.len() > MAX_MESSAGE {
                Err(RecordError::TooLong)
            } else {
                Ok(None)
            };
        };
        rest = after;
        let len = bytes.len() - rest.len();
        if len > MAX_MESSAGE {
            return Err(RecordError::TooLong);
        }
        if record.record_type == RecordType::END_OF_MESSAGE {
            return Ok(Some(len));
        }
    }
}

/// The records of one complete message, End of Message excluded.
pub fn parse_message(bytes: &[u8]) -> Result<Vec<Record<'_>>, RecordError> {
    let len = message_len(bytes)?.ok_or(RecordError::Truncated)?;
    if len != bytes.len() {
        return Err(RecordError::TrailingBytes);
    }
    let mut records = Vec::new();
    let mut rest = bytes;
    while let Some((record, after)) = Record::parse(rest) {
        if record.record_type == RecordType::END_OF_MESSAGE {
            break;
        }
        records.push(record);
        rest = after;
    }
    Ok(records)
}

/// Encodes `records` followed by End of Message (critical, as section 4.1.1 requires).
pub fn encode_message(records: &[Record<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        record.encode(&mut out);
    }
    Record::new(true, RecordType::END_OF_MESSAGE, &[]).encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_message_round_trips() {
        let records = [
            Record::new(true, RecordType::NEXT_PROTOCOL, &[0, 0]),
            Record::new(false, RecordType(0x1234), b"unknown"),
            Record::new(false, RecordType::AEAD_ALGORITHM, &[0, 15]),
        ];
        let bytes = encode_message(&records);
        assert_eq!(&bytes[..6], &[0x80, 1, 0, 2, 0, 0]);
        assert_eq!(&bytes[bytes.len() - 4..], &[0x80, 0, 0, 0]);
        assert_eq!(message_len(&bytes), Ok(Some(bytes.len())));
        assert_eq!(parse_message(&bytes).expect("parses"), records);
        for cut in 0..bytes.len() {
            assert_eq!(message_len(&bytes[..cut]), Ok(None), "{cut} bytes");
        }
        let mut more = bytes.clone();
        more.push(0);
        assert_eq!(parse_message(&more), Err(RecordError::TrailingBytes));
    }

    #[test]
    fn an_endless_message_is_refused() {
        let mut bytes = Vec::new();
        while bytes.len() <= MAX_MESSAGE {
            Record::new(false, RecordType::WARNING, &[0; 1000]).encode(&mut bytes);
        }
        assert_eq!(message_len(&bytes), Err(RecordError::TooLong));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = message_len(&bytes);
            if let Ok(records) = parse_message(&bytes) {
                let again = encode_message(&records);
                // End of Message may have carried a body or lacked its critical bit.
                prop_assert_eq!(parse_message(&again).expect("re-encoded"), records);
            }
        }
    }
}
