//! One client/server exchange: the checks a client makes on a reply (RFC 4330 section 5, RFC 5905
//! section 8) and the offset, delay and dispersion it measures.

use crate::auth::AuthError;
use crate::packet::{LeapIndicator, Mode, Packet, Precision, ReferenceId, Stratum, Version};
use crate::time::{NtpDuration, NtpTimestamp};

/// Frequency tolerance: how fast dispersion grows, 15 ppm (RFC 5905 section 7.2, PHI).
pub const PHI: f64 = 15e-6;
/// Largest root distance a usable reply may have, 1.5 s (RFC 5905 section 7.2, MAXDIST).
pub const MAX_DISTANCE: NtpDuration = NtpDuration::from_bits(3 << 31);
/// Dispersion of an empty filter stage, 16 s (RFC 5905 section 7.2, MAXDISP).
pub const MAX_DISPERSION: NtpDuration = NtpDuration::from_seconds(16);
/// Floor of the root distance, 5 ms (RFC 5905 section 7.2, MINDISP).
pub const MIN_DISPERSION: NtpDuration = NtpDuration::from_bits(21_474_836); // 0.005 * 2^32

/// What one valid reply measured (RFC 5905 section 8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Sample {
    /// Server clock minus client clock: add this to the client's clock to correct it.
    pub offset: NtpDuration,
    /// Round-trip delay, never below the local clock's precision.
    pub delay: NtpDuration,
    /// Error bound from both clocks' precision and the frequency tolerance over the exchange.
    pub dispersion: NtpDuration,
    /// T4, the local time the reply arrived; the filter ages the sample from here.
    pub time: NtpTimestamp,
}

/// The four timestamps of an exchange, in local (T1, T4) and server (T2, T3) time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Exchange {
    /// T1: when the request left the client (the real time, not the random cookie it carried).
    pub t1: NtpTimestamp,
    /// T2: when the request reached the server.
    pub t2: NtpTimestamp,
    /// T3: when the reply left the server.
    pub t3: NtpTimestamp,
    /// T4: when the reply reached the client.
    pub t4: NtpTimestamp,
}

impl Exchange {
    /// offset = ((T2 - T1) + (T3 - T4)) / 2: server minus client, so a client 2.5 s fast measures
    /// -2.5 s (RFC 5905 section 8). An asymmetric path adds half the difference of the two one-way
    /// delays, which no exchange can see.
    pub fn offset(&self) -> NtpDuration {
        (self.t2 - self.t1).midpoint(self.t3 - self.t4)
    }

    /// delay = (T4 - T1) - (T3 - T2), not less than `local_precision` (RFC 5905 section 8).
    pub fn delay(&self, local_precision: Precision) -> NtpDuration {
        ((self.t4 - self.t1) - (self.t3 - self.t2)).max(local_precision.to_duration())
    }

    /// The sample this exchange gives: dispersion = server precision + local precision
    /// + PHI * (T4 - T1) (RFC 5905 section 8).
    pub fn sample(&self, server_precision: Precision, local_precision: Precision) -> Sample {
        let round_trip = (self.t4 - self.t1).max(NtpDuration::ZERO);
        Sample {
            offset: self.offset(),
            delay: self.delay(local_precision),
            dispersion: server_precision.to_duration()
                + local_precision.to_duration()
                + round_trip.mul_f64(PHI),
            time: self.t4,
        }
    }
}

impl Sample {
    /// The root distance through this sample's server: half the total round trip to the root plus
    /// all dispersion, floored at MINDISP for the delay term (RFC 5905 section 11.2, root_dist()).
    pub fn root_distance(
        &self,
        root_delay: NtpDuration,
        root_dispersion: NtpDuration,
    ) -> NtpDuration {
        (root_delay + self.delay).max(MIN_DISPERSION).half() + root_dispersion + self.dispersion
    }
}

/// What an association is, which decides the modes that may answer its requests (RFC 5905
/// section 9.2, the dispatch table).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum AssociationKind {
    /// A client of a server: only mode 4 answers a mode 3 request.
    #[default]
    Server,
    /// A symmetric active peer: mode 1 or 2 answers a mode 1 request.
    Peer,
    /// A broadcast client: mode 5 broadcasts are its samples once its client/server exchanges
    /// (mode 3, answered by mode 4) calibrated them.
    Broadcast,
}

impl AssociationKind {
    /// A stable lower-case name for logs and status.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Peer => "peer",
            Self::Broadcast => "broadcast",
        }
    }

    /// The mode of our requests.
    pub const fn request_mode(self) -> Mode {
        match self {
            Self::Server | Self::Broadcast => Mode::CLIENT,
            Self::Peer => Mode::SYMMETRIC_ACTIVE,
        }
    }

    /// True if a packet of `mode` may answer our request (RFC 5905 section 9.2).
    pub fn answers_with(self, mode: Mode) -> bool {
        match self {
            Self::Server | Self::Broadcast => mode == Mode::SERVER,
            Self::Peer => mode == Mode::SYMMETRIC_ACTIVE || mode == Mode::SYMMETRIC_PASSIVE,
        }
    }
}

/// Why a reply was not used. Each is a misbehaving or unsuitable server, never a crash.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ReplyError {
    /// Not a mode that answers our request: only a server (4) answers a client, only a peer (1 or
    /// 2) a symmetric active request.
    #[error("not a reply to our request (mode {})", .0.get())]
    WrongMode(Mode),
    /// Version outside 1-4.
    #[error("unsupported NTP version {}", .0.get())]
    BadVersion(Version),
    /// The origin timestamp is not the transmit timestamp we sent: a stale, duplicate or forged
    /// reply (RFC 5905 section 8, "bogus").
    #[error("origin timestamp does not match our request (bogus, stale or forged reply)")]
    BogusOrigin,
    /// The association has a key and the reply carries no valid MAC under it (RFC 5905 section
    /// 7.3, RFC 8573): it proves nothing, not even a kiss-o'-death.
    #[error("not authentic: {0}")]
    Unauthenticated(AuthError),
    /// Kiss-o'-death: the server asks us to slow down (RATE) or go away (DENY, RSTR).
    #[error("kiss-o'-death {}", kiss_text(.0))]
    Kiss(ReferenceId),
    /// The server says it is not synchronized (LI 3 or stratum 16 and above).
    #[error("server is not synchronized (leap indicator 3 or stratum 16)")]
    Unsynchronized,
    /// The server's receive or transmit timestamp is zero.
    #[error("server sent a zero timestamp")]
    ZeroTimestamp,
    /// The server says it was last synchronized after it sent the reply (RFC 5905 appendix
    /// A.5.1.1, "invalid header values": reftime > xmt).
    #[error("server's reference time is later than its transmit time (invalid header)")]
    ReferenceAfterTransmit,
    /// The server claims to have held the request longer than the whole round trip took
    /// (T3 - T2 > T4 - T1): impossible, so the timestamps are wrong or forged.
    #[error("server processing time exceeds the round trip (impossible timestamps)")]
    ImpossibleDelay,
    /// The server is too far from its reference to be trusted.
    #[error("root distance {0} exceeds the limit")]
    RootDistance(NtpDuration),
    /// A broadcast disagrees with what the exchanges with its server measured by this much:
    /// forged, or the server moved (an exchange checks).
    #[error("broadcast is {0} from the calibrated estimate")]
    BroadcastOutlier(NtpDuration),
    /// The round trip took longer than the source's `maxdelay`: a genuine answer over a path too
    /// slow (or too congested) to trust.
    #[error("round-trip delay {0} exceeds the source's maxdelay")]
    DelayTooLarge(NtpDuration),
}

impl ReplyError {
    /// True when the packet does not provably answer our request (wrong mode, bad version, wrong
    /// origin, not authentic): it may be forged by anyone, so it must change no state and the
    /// request stays outstanding for the genuine reply (RFC 5905 section 8: bogus packets are
    /// dropped).
    pub const fn is_unmatched(self) -> bool {
        matches!(
            self,
            Self::WrongMode(_) | Self::BadVersion(_) | Self::BogusOrigin | Self::Unauthenticated(_)
        )
    }
}

fn kiss_text(code: &ReferenceId) -> String {
    code.as_ascii().map_or_else(|| code.hex(), str::to_owned)
}

/// The request a reply must answer, and what the client knows of it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SentRequest {
    /// The transmit timestamp the request carried (a random cookie, RFC 9109 style).
    pub cookie: NtpTimestamp,
    /// T1: the real local time it was sent.
    pub t1: NtpTimestamp,
}

/// What a client accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReplyLimits {
    /// The local clock's precision (floors the delay, adds to the dispersion).
    pub local_precision: Precision,
    /// Largest acceptable root distance (MAXDIST by default).
    pub max_root_distance: NtpDuration,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            local_precision: Precision::new(-20),
            max_root_distance: MAX_DISTANCE,
        }
    }
}

/// Checks the reply header against the request it should answer, in the order RFC 4330 section 5
/// lists: mode, version, origin (bogus), authentication (`authentic`, the verdict of
/// [`crate::auth::check_reply`]; RFC 5905 section 8 puts it after the origin), kiss-o'-death,
/// unsynchronized, zero timestamps, then the reference time (RFC 5905 appendix A.5.1.1). A kiss-o'-death is believed only after the origin
/// matched: anyone can forge one otherwise.
///
/// RFC 5905's packet tests and where each lives: *duplicate* (a request is answered at most once:
/// `Source` ignores what arrives with no request outstanding); *bogus* ([`ReplyError::BogusOrigin`]);
/// *invalid*, zero timestamps ([`ReplyError::ZeroTimestamp`]); *unsynchronized*
/// ([`ReplyError::Unsynchronized`]); *invalid header values*, reference time after transmit time
/// ([`ReplyError::ReferenceAfterTransmit`]) and root distance ([`ReplyError::RootDistance`], in
/// [`process_reply`]). Mode and version come first, as for any packet.
pub fn check_header(reply: &Packet, sent: &SentRequest) -> Result<(), ReplyError> {
    check_header_for(AssociationKind::Server, reply, Ok(()), sent)
}

/// [`check_header`] for an association of `kind`: the same tests, with the modes that answer it.
pub fn check_header_for(
    kind: AssociationKind,
    reply: &Packet,
    authentic: Result<(), AuthError>,
    sent: &SentRequest,
) -> Result<(), ReplyError> {
    if !kind.answers_with(reply.mode) {
        return Err(ReplyError::WrongMode(reply.mode));
    }
    if !reply.version.is_supported() {
        return Err(ReplyError::BadVersion(reply.version));
    }
    if reply.origin_timestamp != sent.cookie {
        return Err(ReplyError::BogusOrigin);
    }
    authentic.map_err(ReplyError::Unauthenticated)?;
    if let Some(code) = reply.kiss_code() {
        return Err(ReplyError::Kiss(code));
    }
    if reply.leap == LeapIndicator::Unsynchronized || reply.stratum >= Stratum::UNSYNCHRONIZED {
        return Err(ReplyError::Unsynchronized);
    }
    if reply.transmit_timestamp.is_zero() || reply.receive_timestamp.is_zero() {
        return Err(ReplyError::ZeroTimestamp);
    }
    // A zero reference time (some SNTP servers send one) says nothing; it is not in the future.
    if !reply.reference_timestamp.is_zero()
        && reply.transmit_timestamp - reply.reference_timestamp < NtpDuration::ZERO
    {
        return Err(ReplyError::ReferenceAfterTransmit);
    }
    Ok(())
}

/// The one reply judge of a client association and of the one-shot query: every check a client
/// makes on a reply received at `t4`, then the sample it gives; the last checks are the
/// impossible delay and the root distance (RFC 5905 section 11.2, the peer process's tests).
pub fn process_reply(
    reply: &Packet,
    sent: &SentRequest,
    t4: NtpTimestamp,
    limits: &ReplyLimits,
) -> Result<Sample, ReplyError> {
    judge_reply(AssociationKind::Server, reply, Ok(()), sent, t4, limits)
}

/// The one reply judge for an association of `kind`: a peer's packet that answers our symmetric
/// active request (origin = our transmit) is an exchange like a server's reply, with T2 its receive
/// and T3 its transmit timestamp, and passes the same tests (RFC 5905 sections 8 and 9.2).
pub fn judge_reply(
    kind: AssociationKind,
    reply: &Packet,
    authentic: Result<(), AuthError>,
    sent: &SentRequest,
    t4: NtpTimestamp,
    limits: &ReplyLimits,
) -> Result<Sample, ReplyError> {
    check_header_for(kind, reply, authentic, sent)?;
    let exchange = Exchange {
        t1: sent.t1,
        t2: reply.receive_timestamp,
        t3: reply.transmit_timestamp,
        t4,
    };
    let tolerance = reply.precision.to_duration() + limits.local_precision.to_duration();
    if (exchange.t3 - exchange.t2) > (exchange.t4 - exchange.t1) + tolerance {
        return Err(ReplyError::ImpossibleDelay);
    }
    let sample = exchange.sample(reply.precision, limits.local_precision);
    let distance = sample.root_distance(
        reply.root_delay.to_duration(),
        reply.root_dispersion.to_duration(),
    );
    if distance > limits.max_root_distance {
        return Err(ReplyError::RootDistance(distance));
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PollInterval;
    use crate::time::NtpShort;

    fn at_ms(ms: i64) -> NtpTimestamp {
        // An arbitrary base in era 0 so the arithmetic is not near zero.
        NtpTimestamp::from_parts(3_900_000_000, 0)
            + NtpDuration::from_nanos(i128::from(ms) * 1_000_000)
    }

    fn secs(d: NtpDuration) -> f64 {
        d.to_seconds_f64()
    }

    #[test]
    fn worked_example_gives_20ms_delay_and_zero_offset() {
        let e = Exchange {
            t1: at_ms(1000),
            t2: at_ms(1010),
            t3: at_ms(1015),
            t4: at_ms(1025),
        };
        assert!((secs(e.delay(Precision::new(-20))) - 0.020).abs() < 1e-9);
        assert!(secs(e.offset()).abs() < 1e-9);
    }

    #[test]
    fn client_fast_by_2_5_seconds_measures_minus_2_5() {
        // True time 0 at T1; 10 ms each way; the server's clock is true, ours reads +2.5 s.
        let fast = 2500;
        let e = Exchange {
            t1: at_ms(fast),
            t2: at_ms(10),
            t3: at_ms(11),
            t4: at_ms(21 + fast),
        };
        assert!((secs(e.offset()) + 2.5).abs() < 1e-9, "{}", e.offset());
        assert!((secs(e.delay(Precision::new(-20))) - 0.020).abs() < 1e-9);
    }

    #[test]
    fn asymmetry_errs_by_half_the_difference() {
        // Perfectly synchronized clocks; 0.1 s out, 0.5 s back.
        let e = Exchange {
            t1: at_ms(0),
            t2: at_ms(100),
            t3: at_ms(100),
            t4: at_ms(600),
        };
        assert!((secs(e.offset()) + 0.2).abs() < 1e-9, "{}", e.offset());
        assert!((secs(e.delay(Precision::new(-20))) - 0.6).abs() < 1e-9);
    }

    #[test]
    fn delay_is_clamped_at_the_local_precision() {
        // The server claims it held the request longer than the round trip: negative raw delay.
        let e = Exchange {
            t1: at_ms(0),
            t2: at_ms(1),
            t3: at_ms(9),
            t4: at_ms(5),
        };
        assert_eq!(
            e.delay(Precision::new(-20)),
            Precision::new(-20).to_duration()
        );
    }

    #[test]
    fn dispersion_and_root_distance() {
        let e = Exchange {
            t1: at_ms(0),
            t2: at_ms(10),
            t3: at_ms(10),
            t4: at_ms(1000),
        };
        let s = e.sample(Precision::new(-10), Precision::new(-20));
        let expected = 2f64.powi(-10) + 2f64.powi(-20) + 15e-6 * 1.0;
        assert!((secs(s.dispersion) - expected).abs() < 1e-9);
        let rd = s.root_distance(
            NtpDuration::from_seconds_f64(0.010),
            NtpDuration::from_seconds_f64(0.002),
        );
        assert!((secs(rd) - ((0.010 + 1.000) / 2.0 + 0.002 + expected)).abs() < 1e-9);
        // The delay term is floored at MINDISP.
        let tiny = Sample {
            delay: NtpDuration::ZERO,
            dispersion: NtpDuration::ZERO,
            ..s
        };
        assert_eq!(
            tiny.root_distance(NtpDuration::ZERO, NtpDuration::ZERO),
            MIN_DISPERSION.half()
        );
    }

    /// The chrony vector's exchange (capture.json's T4) measures what its README says.
    #[test]
    fn chrony_vector_exchange() {
        let sent = SentRequest {
            cookie: NtpTimestamp::from_bits(0xeeac608a_82d61800),
            t1: NtpTimestamp::from_bits(0xeeac608a_82d61800),
        };
        let bytes: Vec<u8> = (0..48)
            .map(|i| u8::from_str_radix(&CHRONY_REPLY[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let (reply, _) = Packet::parse(&bytes).expect("vector parses");
        let s = process_reply(
            &reply,
            &sent,
            NtpTimestamp::from_bits(0xeeac608a_82e3c000),
            &ReplyLimits::default(),
        )
        .expect("valid");
        assert!((secs(s.delay) - 122.7e-6).abs() < 0.1e-6, "{}", s.delay);
        assert!((secs(s.offset) + 0.6e-6).abs() < 0.1e-6, "{}", s.offset);
    }

    const CHRONY_REPLY: &str = "240206e600000000000000007f7f0101eeac60891990d576eeac608a82d61800eeac608a82da131beeac608a82dfb0fc";

    fn good_reply(sent: &SentRequest) -> Packet {
        let mut p = Packet::client_request(Version::V4, PollInterval::new(6), at_ms(12));
        p.mode = Mode::SERVER;
        p.stratum = Stratum::new(2);
        p.precision = Precision::new(-20);
        p.origin_timestamp = sent.cookie;
        p.receive_timestamp = at_ms(10);
        p.transmit_timestamp = at_ms(11);
        p
    }

    fn check(reply: &Packet, sent: &SentRequest) -> Result<Sample, ReplyError> {
        process_reply(reply, sent, at_ms(20), &ReplyLimits::default())
    }

    #[test]
    fn each_reply_check_has_its_reason() {
        let sent = SentRequest {
            cookie: NtpTimestamp::from_bits(0x1234_5678_9abc_def0),
            t1: at_ms(0),
        };
        let good = good_reply(&sent);
        assert!(check(&good, &sent).is_ok());

        type Mutation = fn(&mut Packet);
        let cases: [(Mutation, ReplyError); 12] = [
            (
                |p| p.mode = Mode::CLIENT,
                ReplyError::WrongMode(Mode::CLIENT),
            ),
            (
                |p| p.mode = Mode::CONTROL,
                ReplyError::WrongMode(Mode::CONTROL),
            ),
            (
                |p| p.version = Version::new(5),
                ReplyError::BadVersion(Version::new(5)),
            ),
            (|p| p.origin_timestamp = at_ms(0), ReplyError::BogusOrigin),
            (
                |p| {
                    p.stratum = Stratum::UNSPECIFIED;
                    p.reference_id = ReferenceId::RATE;
                },
                ReplyError::Kiss(ReferenceId::RATE),
            ),
            (
                |p| {
                    p.stratum = Stratum::UNSPECIFIED;
                    p.reference_id = ReferenceId::DENY;
                },
                ReplyError::Kiss(ReferenceId::DENY),
            ),
            (
                |p| p.leap = LeapIndicator::Unsynchronized,
                ReplyError::Unsynchronized,
            ),
            (
                |p| p.stratum = Stratum::UNSYNCHRONIZED,
                ReplyError::Unsynchronized,
            ),
            (
                |p| p.transmit_timestamp = NtpTimestamp::ZERO,
                ReplyError::ZeroTimestamp,
            ),
            (
                |p| p.receive_timestamp = NtpTimestamp::ZERO,
                ReplyError::ZeroTimestamp,
            ),
            (
                |p| p.reference_timestamp = at_ms(12),
                ReplyError::ReferenceAfterTransmit,
            ),
            // A kiss-o'-death is believed only once the origin matched.
            (
                |p| {
                    p.stratum = Stratum::UNSPECIFIED;
                    p.reference_id = ReferenceId::DENY;
                    p.origin_timestamp = at_ms(0);
                },
                ReplyError::BogusOrigin,
            ),
        ];
        for (mutate, expected) in cases {
            let mut reply = good;
            mutate(&mut reply);
            assert_eq!(check(&reply, &sent), Err(expected));
        }

        let mut far = good;
        far.root_dispersion = NtpShort::from_duration(NtpDuration::from_seconds(2));
        assert!(matches!(check(&far, &sent), Err(ReplyError::RootDistance(d)) if d > MAX_DISTANCE));
    }

    #[test]
    fn only_a_server_reply_answers_and_messages_are_readable() {
        let sent = SentRequest {
            cookie: NtpTimestamp::from_bits(7),
            t1: at_ms(0),
        };
        // A broadcast packet answers no request: forged ones must not move a client's clock.
        let mut b = good_reply(&sent);
        b.mode = Mode::BROADCAST;
        assert_eq!(
            check_header(&b, &sent),
            Err(ReplyError::WrongMode(Mode::BROADCAST))
        );
        assert!(ReplyError::WrongMode(Mode::BROADCAST).is_unmatched());
        assert!(ReplyError::BogusOrigin.is_unmatched());
        assert!(!ReplyError::Kiss(ReferenceId::RATE).is_unmatched());
        assert_eq!(
            ReplyError::Kiss(ReferenceId::RATE).to_string(),
            "kiss-o'-death RATE"
        );
    }

    #[test]
    fn a_server_that_held_the_request_longer_than_the_round_trip_is_impossible() {
        let sent = SentRequest {
            cookie: NtpTimestamp::from_bits(7),
            t1: at_ms(0),
        };
        let mut reply = good_reply(&sent);
        reply.receive_timestamp = at_ms(1);
        reply.transmit_timestamp = at_ms(50);
        let limits = ReplyLimits::default();
        assert_eq!(
            process_reply(&reply, &sent, at_ms(10), &limits),
            Err(ReplyError::ImpossibleDelay)
        );
        assert!(process_reply(&reply, &sent, at_ms(60), &limits).is_ok());
    }
}
