//! System variables (RFC 5905 section 11.2.3 and appendix A.5.5.7): what this host tells its
//! clients about its own synchronization.

use std::net::IpAddr;

use crate::filter::FilterOutput;
use crate::packet::{LeapIndicator, PollInterval, Precision, ReferenceId, Stratum};
use crate::sample::{MIN_DISPERSION, PHI};
use crate::source::ReplyInfo;
use crate::time::{NtpDuration, NtpShort, NtpTimestamp};

/// The system variables a server answers with, as one immutable value that the daemon shares
/// with its server workers and replaces whole after each clock update.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SystemSnapshot {
    /// Leap warning, or `Unsynchronized` until the clock is synchronized.
    pub leap: LeapIndicator,
    /// Our stratum: the chosen source's plus one, the local reference's, or 16.
    pub stratum: Stratum,
    /// The chosen source's address or hash, or the local reference's name.
    pub reference_id: ReferenceId,
    /// The measured precision of our clock.
    pub precision: Precision,
    /// Round-trip delay to the primary reference (RFC 5905 section 11.2.3).
    pub root_delay: NtpDuration,
    /// Dispersion to the primary reference at `reference_time`; it grows at PHI from then on.
    pub root_dispersion: NtpDuration,
    /// When the clock was last updated, in our own clock's time.
    pub reference_time: NtpTimestamp,
    /// The poll interval range a server advertises back to clients (RFC 5905 MINPOLL, MAXPOLL).
    pub poll_limits: (PollInterval, PollInterval),
}

impl SystemSnapshot {
    /// Not synchronized to anything: LI 3, stratum 16, so that no client follows us.
    pub const fn unsynchronized(precision: Precision) -> Self {
        Self {
            leap: LeapIndicator::Unsynchronized,
            stratum: Stratum::UNSYNCHRONIZED,
            reference_id: ReferenceId::INIT,
            precision,
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::ZERO,
            reference_time: NtpTimestamp::ZERO,
            poll_limits: DEFAULT_POLL_LIMITS,
        }
    }

    /// Disciplined by a local reference clock at `stratum` (like chrony's `local stratum N`): no
    /// delay or dispersion to the root, reference time = now.
    pub const fn local_reference(
        stratum: Stratum,
        reference_id: ReferenceId,
        precision: Precision,
        now: NtpTimestamp,
    ) -> Self {
        Self {
            leap: LeapIndicator::NoWarning,
            stratum,
            reference_id,
            precision,
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::ZERO,
            reference_time: now,
            poll_limits: DEFAULT_POLL_LIMITS,
        }
    }

    /// The system variables once the system peer at `address` has updated the clock at `now`
    /// (RFC 5905 appendix A.5.5.1, clock_update()): its stratum plus one, its address as our
    /// reference ID, its root delay plus the delay to it, and its root dispersion plus every
    /// error we add (jitter, filter dispersion aged at PHI, the offset just corrected).
    pub fn synchronized_to(
        address: IpAddr,
        reply: &ReplyInfo,
        estimate: &FilterOutput,
        system_jitter: NtpDuration,
        precision: Precision,
        now: NtpTimestamp,
    ) -> Self {
        let jitter = (estimate.jitter.to_seconds_f64().powi(2)
            + system_jitter.to_seconds_f64().powi(2))
        .sqrt();
        let age = (now - estimate.time).max(NtpDuration::ZERO);
        let added =
            (estimate.dispersion + age.mul_f64(PHI) + estimate.offset.abs()).max(MIN_DISPERSION);
        Self {
            leap: reply.leap,
            stratum: reply.stratum.next(),
            reference_id: ReferenceId::from_ip(address.to_canonical()),
            precision,
            root_delay: reply.root_delay + estimate.delay,
            root_dispersion: reply.root_dispersion + NtpDuration::from_seconds_f64(jitter) + added,
            reference_time: now,
            poll_limits: DEFAULT_POLL_LIMITS,
        }
    }

    /// Root distance as advertised at `now`: half the root delay plus the root dispersion
    /// (RFC 5905 section 11.2, what a client of ours computes).
    pub fn root_distance_at(&self, now: NtpTimestamp) -> NtpDuration {
        self.root_delay.half() + self.root_dispersion_at(now).to_duration()
    }

    /// True when clients may synchronize to us.
    pub fn is_synchronized(&self) -> bool {
        self.leap != LeapIndicator::Unsynchronized && self.stratum.is_synchronized()
    }

    /// Root dispersion as advertised at `now`: the snapshot's value plus PHI times its age
    /// (RFC 5905 section 11.2.3; ages the error bound between updates).
    pub fn root_dispersion_at(&self, now: NtpTimestamp) -> NtpShort {
        let age = if self.reference_time.is_zero() {
            NtpDuration::ZERO
        } else {
            now - self.reference_time
        };
        let grown = self.root_dispersion + age.max(NtpDuration::ZERO).mul_f64(PHI);
        NtpShort::from_duration(grown)
    }
}

/// Default poll range advertised to clients: 2^4 s to 2^17 s (RFC 5905 MINPOLL, MAXPOLL).
pub const DEFAULT_POLL_LIMITS: (PollInterval, PollInterval) =
    (PollInterval::new(4), PollInterval::new(17));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispersion_grows_at_phi() {
        let t0 = NtpTimestamp::from_parts(3_900_000_000, 0);
        let snap = SystemSnapshot::local_reference(
            Stratum::PRIMARY,
            ReferenceId::LOCL,
            Precision::new(-20),
            t0,
        );
        assert_eq!(snap.root_dispersion_at(t0), NtpShort::ZERO);
        let later = t0 + NtpDuration::from_seconds(1000);
        let grown = snap.root_dispersion_at(later).to_seconds_f64();
        assert!((grown - 0.015).abs() < 1e-4, "{grown}");
        assert!(snap.is_synchronized());
        assert!(!SystemSnapshot::unsynchronized(Precision::new(-20)).is_synchronized());
    }

    #[test]
    fn stratum_refid_and_root_values_accumulate_through_the_peer() {
        let t0 = NtpTimestamp::from_parts(3_900_000_000, 0);
        let reply = ReplyInfo {
            leap: LeapIndicator::NoWarning,
            stratum: Stratum::new(2),
            reference_id: ReferenceId::LOCL,
            precision: Precision::new(-20),
            root_delay: NtpDuration::from_seconds_f64(0.010),
            root_dispersion: NtpDuration::from_seconds_f64(0.020),
        };
        let estimate = FilterOutput {
            offset: NtpDuration::from_seconds_f64(-0.001),
            delay: NtpDuration::from_seconds_f64(0.004),
            dispersion: NtpDuration::from_seconds_f64(0.002),
            jitter: NtpDuration::from_seconds_f64(0.0003),
            time: t0,
        };
        let jitter = NtpDuration::from_seconds_f64(0.0004);
        let s = SystemSnapshot::synchronized_to(
            "192.0.2.5".parse().expect("ip"),
            &reply,
            &estimate,
            jitter,
            Precision::new(-22),
            t0,
        );
        assert_eq!(s.stratum, Stratum::new(3));
        assert_eq!(s.reference_id.as_ipv4().to_string(), "192.0.2.5");
        assert!((s.root_delay.to_seconds_f64() - 0.014).abs() < 1e-9);
        // 0.020 + sqrt(0.0003^2 + 0.0004^2) + max(0.002 + 0 + 0.001, 0.005)
        assert!(
            (s.root_dispersion.to_seconds_f64() - (0.020 + 0.0005 + 0.005)).abs() < 1e-6,
            "{:?}",
            s.root_dispersion
        );
        let v6 = SystemSnapshot::synchronized_to(
            "::1".parse().expect("ip"),
            &reply,
            &estimate,
            jitter,
            Precision::new(-22),
            t0,
        );
        assert_eq!(v6.reference_id.hex(), "cf404dc8");
    }
}
