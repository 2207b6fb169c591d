//! System variables (RFC 5905 section 11.2.3 and appendix A.5.5.7): what this host tells its
//! clients about its own synchronization.

use crate::packet::{LeapIndicator, PollInterval, Precision, ReferenceId, Stratum};
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
        let grown = self.root_dispersion + age.max(NtpDuration::ZERO).mul_f64(crate::sample::PHI);
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
}
