//! NTS Key Establishment (RFC 8915 section 4), both sides, as data in and data out: the caller
//! runs TLS 1.3 with ALPN `ntske/1`, reads one message (see [`super::record::message_len`]),
//! hands it here with a way to export keys from the TLS session, and writes back what comes out.

use super::cookie::COOKIE_LEN;
use super::record::{self, ErrorCode, Record, RecordError, RecordType};
use super::{AeadAlgorithm, COOKIES, CookieKeys, NONCE_LEN, NextProtocol, SessionKeys};

/// Longest cookie a client keeps: a request carries one and placeholders as long, and must stay
/// below the IPv6 minimum MTU (chrony's limit is 256 too).
pub const MAX_COOKIE_LEN: usize = 256;

/// Why a KE message was refused: ours to a server's response, or a server's reason in its Error
/// record.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum KeError {
    /// Not a well-formed message.
    #[error("malformed NTS-KE message: {0}")]
    Records(#[from] RecordError),
    /// The server answered with an Error record (section 4.1.3).
    #[error(
        "the NTS-KE server refused the request with error {0}; check that it is an NTS-KE server for NTPv4"
    )]
    Refused(u16),
    /// A critical record of a type we do not know (section 4).
    #[error("unrecognized critical NTS-KE record type {0}")]
    UnrecognizedCritical(u16),
    /// NTPv4 was not agreed on (section 4.1.2).
    #[error("the NTS-KE server does not offer NTPv4")]
    NoNtpv4,
    /// No AEAD algorithm we speak was agreed on (section 4.1.5).
    #[error("the NTS-KE server does not offer AEAD_AES_SIV_CMAC_256")]
    NoAead,
    /// No usable cookie came (section 4.1.6).
    #[error(
        "the NTS-KE server sent no usable cookie (none, or longer than {MAX_COOKIE_LEN} bytes)"
    )]
    NoCookies,
    /// A record's body cannot be what its type says (odd length, bad text, repeated).
    #[error("malformed NTS-KE record: {0}")]
    BadRecord(&'static str),
    /// The TLS exporter gave no keys.
    #[error("could not export NTS keys from the TLS session")]
    Export,
}

/// A client's request, as the server reads it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeRequest {
    /// The client offered NTPv4.
    pub ntpv4: bool,
    /// The AEAD algorithm chosen from the client's list, if we speak one of them.
    pub aead: Option<AeadAlgorithm>,
}

impl KeRequest {
    /// Reads a client's request (section 4.1): Next Protocol exactly once, AEAD Algorithm at most
    /// once, Server and Port allowed (we answer with ours), any other known record or an unknown
    /// critical one refused.
    pub fn parse(message: &[u8]) -> Result<Self, (ErrorCode, KeError)> {
        let bad = |why| (ErrorCode::BAD_REQUEST, KeError::BadRecord(why));
        let records =
            record::parse_message(message).map_err(|e| (ErrorCode::BAD_REQUEST, e.into()))?;
        let mut protocols = None;
        let mut aead = None;
        for r in &records {
            match r.record_type {
                RecordType::NEXT_PROTOCOL => {
                    let list = r.u16s().ok_or(bad("odd Next Protocol length"))?;
                    if protocols.replace(list.collect::<Vec<_>>()).is_some() {
                        return Err(bad("two Next Protocol records"));
                    }
                }
                RecordType::AEAD_ALGORITHM => {
                    let list = r.u16s().ok_or(bad("odd AEAD Algorithm length"))?;
                    if aead.replace(list.collect::<Vec<_>>()).is_some() {
                        return Err(bad("two AEAD Algorithm records"));
                    }
                }
                RecordType::SERVER | RecordType::PORT | RecordType::WARNING => {}
                RecordType::ERROR | RecordType::NEW_COOKIE => {
                    return Err(bad("a record only a server may send"));
                }
                RecordType(other) if r.critical => {
                    return Err((
                        ErrorCode::UNRECOGNIZED_CRITICAL,
                        KeError::UnrecognizedCritical(other),
                    ));
                }
                _ => {}
            }
        }
        let protocols = protocols.ok_or(bad("no Next Protocol record"))?;
        let ntpv4 = protocols.contains(&NextProtocol::NTPV4.0);
        let aead = aead
            .unwrap_or_default()
            .into_iter()
            .map(AeadAlgorithm)
            .find(|&a| a == AeadAlgorithm::AES_SIV_CMAC_256);
        Ok(Self { ntpv4, aead })
    }
}

/// Where the server tells clients to send NTP (sections 4.1.7 and 4.1.8): `None` leaves the
/// client with the KE server's address and port 123.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Negotiation {
    /// An IP address or a host name.
    pub server: Option<String>,
    /// The NTP port.
    pub port: Option<u16>,
}

/// How a KE request ended, for the server's counters and logs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum KeOutcome {
    /// Keys agreed on and cookies sent.
    Accepted,
    /// Answered with the agreement that nothing was agreed (an empty Next Protocol or AEAD
    /// record): the client offered nothing we speak.
    NothingInCommon,
    /// Answered with an Error record.
    Refused(KeError),
}

/// The server's response to `message` (section 4): with NTPv4 and AEAD_AES_SIV_CMAC_256 agreed,
/// [`COOKIES`] new cookies under the current key of `cookie_keys`, each with a nonce from
/// `nonces`, for the keys `export` takes from the TLS session for that algorithm.
pub fn respond(
    message: &[u8],
    export: impl FnOnce(AeadAlgorithm) -> Option<SessionKeys>,
    cookie_keys: &CookieKeys,
    mut nonces: impl FnMut() -> [u8; NONCE_LEN],
    negotiation: &Negotiation,
) -> (Vec<u8>, KeOutcome) {
    let request = match KeRequest::parse(message) {
        Ok(request) => request,
        Err((code, error)) => return refuse(code, error),
    };
    let protocols: &[u8] = if request.ntpv4 { &[0, 0] } else { &[] };
    let (Some(aead), true) = (request.aead, request.ntpv4) else {
        let records = [
            Record::new(true, RecordType::NEXT_PROTOCOL, protocols),
            Record::new(true, RecordType::AEAD_ALGORITHM, &[]),
        ];
        return (record::encode_message(&records), KeOutcome::NothingInCommon);
    };
    let Some(keys) = export(aead) else {
        return refuse(ErrorCode::INTERNAL, KeError::Export);
    };
    let cookies: Vec<[u8; COOKIE_LEN]> = (0..COOKIES)
        .map(|_| cookie_keys.encrypt(&keys, nonces()))
        .collect();
    let aead_body = aead.0.to_be_bytes();
    let port = negotiation.port.map(u16::to_be_bytes);
    let mut records = vec![
        Record::new(true, RecordType::NEXT_PROTOCOL, protocols),
        Record::new(true, RecordType::AEAD_ALGORITHM, &aead_body),
    ];
    records.extend(
        cookies
            .iter()
            .map(|c| Record::new(false, RecordType::NEW_COOKIE, c)),
    );
    if let Some(server) = &negotiation.server {
        records.push(Record::new(true, RecordType::SERVER, server.as_bytes()));
    }
    if let Some(port) = &port {
        records.push(Record::new(true, RecordType::PORT, port));
    }
    (record::encode_message(&records), KeOutcome::Accepted)
}

fn refuse(code: ErrorCode, error: KeError) -> (Vec<u8>, KeOutcome) {
    let body = code.0.to_be_bytes();
    let message = record::encode_message(&[Record::new(true, RecordType::ERROR, &body)]);
    (message, KeOutcome::Refused(error))
}

/// A client's request (section 4): NTPv4, AEAD_AES_SIV_CMAC_256, both critical.
pub fn client_request() -> Vec<u8> {
    record::encode_message(&[
        Record::new(true, RecordType::NEXT_PROTOCOL, &[0, 0]),
        Record::new(
            true,
            RecordType::AEAD_ALGORITHM,
            &AeadAlgorithm::AES_SIV_CMAC_256.0.to_be_bytes(),
        ),
    ])
}

/// What a server's response gave the client.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeResponse {
    /// The AEAD algorithm agreed on: export the keys for it.
    pub aead: AeadAlgorithm,
    /// The cookies, in order.
    pub cookies: Vec<Vec<u8>>,
    /// Where to send NTP, if not to the KE server's address and port 123.
    pub negotiation: Negotiation,
}

impl KeResponse {
    /// Reads a server's response (section 4.1): an Error record or an unknown critical record
    /// fails; NTPv4 and AEAD_AES_SIV_CMAC_256 must be agreed on, and at least one cookie of at
    /// most [`MAX_COOKIE_LEN`] bytes sent (at most [`COOKIES`] are kept).
    pub fn parse(message: &[u8]) -> Result<Self, KeError> {
        let records = record::parse_message(message)?;
        let mut protocol_agreed = None;
        let mut aead = None;
        let mut cookies = Vec::new();
        let mut negotiation = Negotiation::default();
        for r in &records {
            match r.record_type {
                RecordType::ERROR => {
                    let code = r.u16s().and_then(|mut c| c.next()).unwrap_or(u16::MAX);
                    return Err(KeError::Refused(code));
                }
                RecordType::NEXT_PROTOCOL => {
                    let list: Vec<u16> = r
                        .u16s()
                        .ok_or(KeError::BadRecord("odd Next Protocol length"))?
                        .collect();
                    protocol_agreed = Some(list == [NextProtocol::NTPV4.0]);
                }
                RecordType::AEAD_ALGORITHM => {
                    let list: Vec<u16> = r
                        .u16s()
                        .ok_or(KeError::BadRecord("odd AEAD Algorithm length"))?
                        .collect();
                    aead = list.first().copied().map(AeadAlgorithm);
                }
                RecordType::NEW_COOKIE
                    if (1..=MAX_COOKIE_LEN).contains(&r.body.len()) && cookies.len() < COOKIES =>
                {
                    cookies.push(r.body.to_vec());
                }
                RecordType::NEW_COOKIE => {}
                RecordType::SERVER => {
                    let name = core::str::from_utf8(r.body)
                        .ok()
                        .filter(|n| !n.is_empty() && n.is_ascii() && n.len() <= 255)
                        .ok_or(KeError::BadRecord("server name is not ASCII text"))?;
                    negotiation.server = Some(name.to_owned());
                }
                RecordType::PORT => {
                    let port: [u8; 2] = r
                        .body
                        .try_into()
                        .map_err(|_| KeError::BadRecord("port is not two bytes"))?;
                    negotiation.port = Some(u16::from_be_bytes(port));
                }
                RecordType::WARNING => {}
                RecordType(other) if r.critical => {
                    return Err(KeError::UnrecognizedCritical(other));
                }
                _ => {}
            }
        }
        if protocol_agreed != Some(true) {
            return Err(KeError::NoNtpv4);
        }
        let aead = aead
            .filter(|&a| a == AeadAlgorithm::AES_SIV_CMAC_256)
            .ok_or(KeError::NoAead)?;
        if cookies.is_empty() {
            return Err(KeError::NoCookies);
        }
        Ok(Self {
            aead,
            cookies,
            negotiation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nts::{AeadKey, CookieKey};

    fn cookie_keys() -> CookieKeys {
        CookieKeys::new(CookieKey {
            id: 7,
            key: AeadKey([5; 32]),
            created: 0,
        })
    }

    fn session() -> SessionKeys {
        SessionKeys {
            c2s: AeadKey([1; 32]),
            s2c: AeadKey([2; 32]),
        }
    }

    fn serve(message: &[u8], negotiation: &Negotiation) -> (Vec<u8>, KeOutcome) {
        let mut n = 0u8;
        respond(
            message,
            |_| Some(session()),
            &cookie_keys(),
            || {
                n += 1;
                [n; NONCE_LEN]
            },
            negotiation,
        )
    }

    #[test]
    fn a_client_request_gets_eight_cookies_and_the_negotiated_port() {
        let negotiation = Negotiation {
            server: Some("127.0.0.1".into()),
            port: Some(11123),
        };
        let (response, outcome) = serve(&client_request(), &negotiation);
        assert_eq!(outcome, KeOutcome::Accepted);
        let parsed = KeResponse::parse(&response).expect("a good response");
        assert_eq!(parsed.aead, AeadAlgorithm::AES_SIV_CMAC_256);
        assert_eq!(parsed.cookies.len(), COOKIES);
        assert_eq!(parsed.negotiation, negotiation);
        let keys = cookie_keys();
        for cookie in &parsed.cookies {
            assert_eq!(keys.decrypt(cookie), Some(session()));
        }
        assert_ne!(parsed.cookies[0], parsed.cookies[1], "fresh nonces");
    }

    #[test]
    fn chronys_request_is_understood() {
        // A request in the shape of chronyd's (nts_ke_client.c, written by hand, not captured):
        // Next Protocol [0] and AEAD [30, 15] (AES-128-GCM-SIV first where its nettle has it),
        // both critical, End of Message.
        let chrony = [
            0x80, 1, 0, 2, 0, 0, 0x80, 4, 0, 4, 0, 30, 0, 15, 0x80, 0, 0, 0,
        ];
        assert_eq!(
            KeRequest::parse(&chrony),
            Ok(KeRequest {
                ntpv4: true,
                aead: Some(AeadAlgorithm::AES_SIV_CMAC_256)
            })
        );
    }

    #[test]
    fn a_request_without_common_ground_is_answered_but_gets_no_cookie() {
        let only_gcm = record::encode_message(&[
            Record::new(true, RecordType::NEXT_PROTOCOL, &[0, 0]),
            Record::new(true, RecordType::AEAD_ALGORITHM, &[0, 30]),
        ]);
        let (response, outcome) = serve(&only_gcm, &Negotiation::default());
        assert_eq!(outcome, KeOutcome::NothingInCommon);
        assert_eq!(KeResponse::parse(&response), Err(KeError::NoAead));
    }

    #[test]
    fn bad_requests_get_an_error_record() {
        let unknown_critical = record::encode_message(&[
            Record::new(true, RecordType::NEXT_PROTOCOL, &[0, 0]),
            Record::new(true, RecordType(0x4321), &[]),
        ]);
        let no_protocol = record::encode_message(&[]);
        let cookie_from_client = record::encode_message(&[
            Record::new(true, RecordType::NEXT_PROTOCOL, &[0, 0]),
            Record::new(false, RecordType::NEW_COOKIE, &[1, 2, 3]),
        ]);
        for (request, code) in [
            (&unknown_critical[..], 0),
            (&no_protocol, 1),
            (&cookie_from_client, 1),
            (&[1, 2, 3][..], 1),
        ] {
            let (response, outcome) = serve(request, &Negotiation::default());
            assert!(matches!(outcome, KeOutcome::Refused(_)), "{outcome:?}");
            assert_eq!(KeResponse::parse(&response), Err(KeError::Refused(code)));
        }
    }

    #[test]
    fn a_response_with_an_unknown_critical_record_is_refused() {
        let response = record::encode_message(&[
            Record::new(true, RecordType::NEXT_PROTOCOL, &[0, 0]),
            Record::new(true, RecordType::AEAD_ALGORITHM, &[0, 15]),
            Record::new(false, RecordType::NEW_COOKIE, &[1; 100]),
            Record::new(true, RecordType(99), &[]),
        ]);
        assert_eq!(
            KeResponse::parse(&response),
            Err(KeError::UnrecognizedCritical(99))
        );
    }
}
