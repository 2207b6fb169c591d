//! NTP time formats (RFC 5905 section 6): 64-bit timestamps, 32-bit short format, signed durations.
//!
//! An [`NtpTimestamp`] only counts seconds within an *era* of 2^32 seconds (about 136 years); era 0
//! began 1900-01-01 and era 1 begins 2036-02-07 06:28:16 UTC. Differences between timestamps are
//! computed with wrapping 64-bit arithmetic, which is right whenever the two instants are less than
//! 68 years apart, whatever their eras. To turn a timestamp back into an absolute time, it is placed in
//! the era window closest to a *pivot* the caller supplies (usually its own clock).

use core::fmt;
use core::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP prime epoch (1900-01-01) to the Unix epoch (1970-01-01); RFC 5905 figure 4.
pub const UNIX_OFFSET_SECONDS: u64 = 2_208_988_800;

const FRACTION_SCALE: f64 = 4_294_967_296.0; // 2^32
const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// A point in time on the wire: 32 bits of seconds and 32 bits of fraction since the era began
/// (RFC 5905 section 6). Zero means "unknown"; arithmetic wraps at the era boundary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NtpTimestamp(u64);

impl NtpTimestamp {
    /// The all-zero timestamp, which NTP uses for "not set".
    pub const ZERO: Self = Self(0);

    /// From the raw 32.32 wire bits.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw 32.32 wire bits.
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// From whole seconds and a 2^-32 s fraction within the era.
    pub const fn from_parts(seconds: u32, fraction: u32) -> Self {
        Self(((seconds as u64) << 32) | fraction as u64)
    }

    /// Whole seconds within the era.
    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Fraction of a second, in units of 2^-32 s.
    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// True for the "unknown" value 0.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// From nanoseconds since the Unix epoch (negative before 1970); the era is dropped.
    pub fn from_unix_nanos(unix_nanos: i128) -> Self {
        let ntp_nanos = unix_nanos + i128::from(UNIX_OFFSET_SECONDS) * NANOS_PER_SECOND;
        let seconds = ntp_nanos.div_euclid(NANOS_PER_SECOND);
        let nanos = ntp_nanos.rem_euclid(NANOS_PER_SECOND);
        // Round to the nearest 2^-32 s; a carry into the seconds wraps like the wire format does.
        let fraction = ((nanos << 32) + NANOS_PER_SECOND / 2) / NANOS_PER_SECOND;
        Self(((seconds as u64) << 32).wrapping_add(fraction as u64))
    }

    /// Nanoseconds since the Unix epoch, placing this timestamp in the era window closest to `pivot`
    /// (also nanoseconds since the Unix epoch): the result is within 2^31 s (68 years) of the pivot.
    pub fn to_unix_nanos(self, pivot_unix_nanos: i128) -> i128 {
        let pivot = Self::from_unix_nanos(pivot_unix_nanos);
        pivot_unix_nanos + (self - pivot).as_nanos()
    }

    /// From a [`SystemTime`]; the era is dropped.
    pub fn from_system_time(time: SystemTime) -> Self {
        Self::from_unix_nanos(system_time_to_unix_nanos(time))
    }

    /// The [`SystemTime`] in the era window closest to `pivot`.
    pub fn to_system_time(self, pivot: SystemTime) -> SystemTime {
        unix_nanos_to_system_time(self.to_unix_nanos(system_time_to_unix_nanos(pivot)))
    }

    /// Seconds since the Unix epoch as a float, in the era window closest to `pivot` (for display
    /// and JSON, where ntplib uses floats).
    pub fn to_unix_seconds_f64(self, pivot: SystemTime) -> f64 {
        self.to_unix_nanos(system_time_to_unix_nanos(pivot)) as f64 / 1e9
    }
}

impl fmt::Debug for NtpTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NtpTimestamp({:08x}.{:08x})",
            self.seconds(),
            self.fraction()
        )
    }
}

impl Sub for NtpTimestamp {
    type Output = NtpDuration;

    /// The signed difference, correct across era boundaries for instants less than 68 years apart.
    fn sub(self, rhs: Self) -> NtpDuration {
        NtpDuration(self.0.wrapping_sub(rhs.0) as i64)
    }
}

impl Add<NtpDuration> for NtpTimestamp {
    type Output = Self;

    fn add(self, rhs: NtpDuration) -> Self {
        Self(self.0.wrapping_add(rhs.0 as u64))
    }
}

impl AddAssign<NtpDuration> for NtpTimestamp {
    fn add_assign(&mut self, rhs: NtpDuration) {
        *self = *self + rhs;
    }
}

impl Sub<NtpDuration> for NtpTimestamp {
    type Output = Self;

    fn sub(self, rhs: NtpDuration) -> Self {
        Self(self.0.wrapping_sub(rhs.0 as u64))
    }
}

/// A signed span of time in 32.32 fixed point: 2^-32 s (0.23 ns) resolution, ±68 years range.
/// Arithmetic saturates instead of wrapping, so a huge bogus offset stays huge.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpDuration(i64);

impl NtpDuration {
    /// No time at all.
    pub const ZERO: Self = Self(0);
    /// The largest representable span (about 68 years).
    pub const MAX: Self = Self(i64::MAX);
    /// The most negative representable span.
    pub const MIN: Self = Self(i64::MIN);
    /// One second.
    pub const ONE_SECOND: Self = Self(1 << 32);

    /// From raw signed 32.32 bits.
    pub const fn from_bits(bits: i64) -> Self {
        Self(bits)
    }

    /// The raw signed 32.32 bits.
    pub const fn to_bits(self) -> i64 {
        self.0
    }

    /// From whole seconds, saturating.
    pub const fn from_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(1 << 32))
    }

    /// From floating-point seconds, saturating; NaN becomes zero.
    pub fn from_seconds_f64(seconds: f64) -> Self {
        // `as` from f64 to i64 saturates at the bounds and maps NaN to 0.
        Self((seconds * FRACTION_SCALE).round() as i64)
    }

    /// As floating-point seconds.
    pub fn to_seconds_f64(self) -> f64 {
        self.0 as f64 / FRACTION_SCALE
    }

    /// From nanoseconds, saturating.
    pub fn from_nanos(nanos: i128) -> Self {
        let bits = (nanos << 32).div_euclid(NANOS_PER_SECOND);
        Self(bits.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    /// As nanoseconds, rounded to nearest.
    pub const fn as_nanos(self) -> i128 {
        (self.0 as i128 * NANOS_PER_SECOND + (1 << 31)).div_euclid(1 << 32)
    }

    /// 2^exponent seconds, the unit of the poll and precision fields; saturating.
    pub const fn from_log2(exponent: i8) -> Self {
        let shift = 32 + exponent as i32;
        if shift < 0 {
            Self(0)
        } else if shift >= 63 {
            Self::MAX
        } else {
            Self(1 << shift)
        }
    }

    /// From a [`Duration`], saturating.
    pub fn from_std(duration: Duration) -> Self {
        Self::from_nanos(duration.as_nanos() as i128)
    }

    /// As a [`Duration`]; negative spans become zero.
    pub fn to_std(self) -> Duration {
        Duration::from_nanos(u64::try_from(self.as_nanos().max(0)).unwrap_or(u64::MAX))
    }

    /// The absolute value, saturating at [`NtpDuration::MAX`].
    pub const fn abs(self) -> Self {
        Self(self.0.saturating_abs())
    }

    /// True if negative.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Half of this span, rounding toward negative infinity.
    pub const fn half(self) -> Self {
        Self(self.0 >> 1)
    }

    /// The mean of two spans, without overflow.
    pub const fn midpoint(self, other: Self) -> Self {
        Self(((self.0 as i128 + other.0 as i128) >> 1) as i64)
    }

    /// Scales by a float factor, saturating.
    pub fn mul_f64(self, factor: f64) -> Self {
        Self::from_seconds_f64(self.to_seconds_f64() * factor)
    }
}

impl fmt::Debug for NtpDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NtpDuration({:+.9}s)", self.to_seconds_f64())
    }
}

impl fmt::Display for NtpDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:+.6}s", self.to_seconds_f64())
    }
}

impl Add for NtpDuration {
    type Output = Self;

    fn add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for NtpDuration {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl Sub for NtpDuration {
    type Output = Self;

    fn sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }
}

impl SubAssign for NtpDuration {
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}

impl Neg for NtpDuration {
    type Output = Self;

    fn neg(self) -> Self {
        Self(self.0.saturating_neg())
    }
}

/// The 32-bit short format (RFC 5905 section 6): unsigned 16.16 seconds, used for root delay and
/// root dispersion. Conversions from a duration saturate at 0 and at 65535.99998 s.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpShort(u32);

impl NtpShort {
    /// Zero seconds.
    pub const ZERO: Self = Self(0);
    /// The largest value, just under 65536 s.
    pub const MAX: Self = Self(u32::MAX);

    /// From the raw 16.16 wire bits.
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw 16.16 wire bits.
    pub const fn to_bits(self) -> u32 {
        self.0
    }

    /// As a duration (exact).
    pub const fn to_duration(self) -> NtpDuration {
        NtpDuration((self.0 as i64) << 16)
    }

    /// From a duration, rounding up to the next 2^-16 s so that an error bound is never understated,
    /// and saturating at both ends.
    pub const fn from_duration(duration: NtpDuration) -> Self {
        if duration.0 <= 0 {
            return Self(0);
        }
        let bits = (duration.0 as u64).div_ceil(1 << 16);
        if bits > u32::MAX as u64 {
            Self::MAX
        } else {
            Self(bits as u32)
        }
    }

    /// As floating-point seconds.
    pub fn to_seconds_f64(self) -> f64 {
        f64::from(self.0) / 65536.0
    }
}

impl fmt::Debug for NtpShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NtpShort({:.6}s)", self.to_seconds_f64())
    }
}

fn system_time_to_unix_nanos(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

fn unix_nanos_to_system_time(nanos: i128) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs().min(u128::from(u64::MAX)) as u64);
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// The proleptic Gregorian (year, month 1-12, day 1-31) of Unix day `days` (days since
/// 1970-01-01; H. Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl NtpTimestamp {
    /// The UTC day (days since 1970-01-01) and second of that day of this timestamp, in the era
    /// nearest 2030 (1962 to 2098: any pivot within 68 years of a time places it in its era).
    pub fn utc_day(self) -> (i64, i64) {
        const PIVOT_2030_UNIX_NANOS: i128 = 1_893_456_000 * 1_000_000_000;
        let seconds = self
            .to_unix_nanos(PIVOT_2030_UNIX_NANOS)
            .div_euclid(1_000_000_000) as i64;
        (seconds.div_euclid(86_400), seconds.rem_euclid(86_400))
    }

    /// The UTC date and time, `2016-12-31 23:59:59`, as [`NtpTimestamp::utc_day`] places it, for
    /// logs and status.
    pub fn utc_string(self) -> String {
        let (days, of_day) = self.utc_day();
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NS: i128 = NANOS_PER_SECOND;
    /// 2036-02-07 06:28:16 UTC, where era 0 ends.
    const ERA1_UNIX: i128 = (1 << 32) - UNIX_OFFSET_SECONDS as i128;

    #[test]
    fn unix_epoch_maps_to_the_published_ntp_seconds() {
        let ts = NtpTimestamp::from_unix_nanos(0);
        assert_eq!(ts.seconds(), 2_208_988_800);
        assert_eq!(ts.fraction(), 0);
    }

    #[test]
    fn the_vector_timestamp_decodes_to_its_readme_date() {
        // chrony-request.hex transmit: 2026-11-21 18:25:14.511079 UTC.
        let ts = NtpTimestamp::from_bits(0xeeac608a_82d61800);
        let unix = ts.to_unix_nanos(1_795_000_000 * NS);
        assert_eq!(unix / NS, 1_795_285_514);
        assert_eq!((unix % NS) / 1000, 511_079);
    }

    #[test]
    fn era_rollover_is_seamless() {
        let before = NtpTimestamp::from_unix_nanos(ERA1_UNIX * NS - NS / 2);
        let after = NtpTimestamp::from_unix_nanos(ERA1_UNIX * NS + NS / 2);
        assert_eq!(before.seconds(), u32::MAX);
        assert_eq!(after.seconds(), 0);
        assert_eq!(after - before, NtpDuration::ONE_SECOND);
        assert_eq!(before - after, -NtpDuration::ONE_SECOND);
        assert_eq!(before + NtpDuration::ONE_SECOND, after);
        // Placed with a pivot on either side of the boundary, both land at the right absolute time.
        for pivot in [ERA1_UNIX - 1000, ERA1_UNIX + 1000] {
            assert_eq!(after.to_unix_nanos(pivot * NS), ERA1_UNIX * NS + NS / 2);
            assert_eq!(before.to_unix_nanos(pivot * NS), ERA1_UNIX * NS - NS / 2);
        }
    }

    #[test]
    fn era_window_edges_are_half_an_era_around_the_pivot() {
        let pivot = 1_795_285_514 * NS;
        let half_era = (1i128 << 31) * NS;
        // Just inside the window on both sides.
        for target in [pivot - half_era + NS, pivot + half_era - NS] {
            let ts = NtpTimestamp::from_unix_nanos(target);
            assert_eq!(ts.to_unix_nanos(pivot), target);
        }
        // Just outside: it folds into the other side of the window.
        let beyond = pivot + half_era + NS;
        let ts = NtpTimestamp::from_unix_nanos(beyond);
        assert_eq!(ts.to_unix_nanos(pivot), beyond - (1i128 << 32) * NS);
    }

    #[test]
    fn dates_after_2036_round_trip_through_system_time() {
        let when =
            UNIX_EPOCH + Duration::from_secs(2_200_000_000) + Duration::from_nanos(123_456_789);
        let ts = NtpTimestamp::from_system_time(when);
        assert_eq!(ts.seconds(), 114_021_504, "era 1 counts again from zero");
        let back = ts.to_system_time(UNIX_EPOCH + Duration::from_secs(2_100_000_000));
        let error = back.duration_since(when).unwrap_or_else(|e| e.duration());
        assert!(error < Duration::from_nanos(1));
    }

    #[test]
    fn worked_durations() {
        assert_eq!(NtpDuration::from_seconds_f64(1.5).to_bits(), 3 << 31);
        assert_eq!(NtpDuration::from_log2(-20), NtpDuration::from_bits(1 << 12));
        assert_eq!(NtpDuration::from_log2(-33), NtpDuration::ZERO);
        assert_eq!(NtpDuration::from_log2(40), NtpDuration::MAX);
        assert_eq!(
            NtpDuration::from_nanos(-2_500_000_000).to_seconds_f64(),
            -2.5
        );
        assert_eq!(NtpDuration::from_seconds_f64(f64::NAN), NtpDuration::ZERO);
        assert_eq!(NtpDuration::from_seconds_f64(1e30), NtpDuration::MAX);
        assert_eq!(NtpDuration::MAX + NtpDuration::ONE_SECOND, NtpDuration::MAX);
        assert_eq!(-NtpDuration::MIN, NtpDuration::MAX);
    }

    #[test]
    fn short_format_rounds_up_and_saturates() {
        assert_eq!(
            NtpShort::from_duration(NtpDuration::from_bits(1)).to_bits(),
            1
        );
        assert_eq!(
            NtpShort::from_duration(-NtpDuration::ONE_SECOND),
            NtpShort::ZERO
        );
        assert_eq!(
            NtpShort::from_duration(NtpDuration::from_seconds(70_000)),
            NtpShort::MAX
        );
        assert_eq!(NtpShort::from_bits(0x0001_8000).to_seconds_f64(), 1.5);
    }

    proptest! {
        #[test]
        fn unix_round_trip_within_the_window(pivot_s in -3_000_000_000i64..6_000_000_000, delta in -(1i64 << 31) + 1..(1i64 << 31) - 1, nanos in 0i64..1_000_000_000) {
            let target = i128::from(pivot_s + delta) * NS + i128::from(nanos);
            let ts = NtpTimestamp::from_unix_nanos(target);
            let back = ts.to_unix_nanos(i128::from(pivot_s) * NS);
            prop_assert!((back - target).abs() <= 1, "{back} vs {target}");
        }

        #[test]
        fn difference_is_exact_across_eras(a_s in ERA1_UNIX as i64 - 100_000..ERA1_UNIX as i64 + 100_000, d in -(1i64 << 40)..(1i64 << 40)) {
            let a = NtpTimestamp::from_unix_nanos(i128::from(a_s) * NS);
            let b = a + NtpDuration::from_bits(d);
            prop_assert_eq!((b - a).to_bits(), d);
            prop_assert_eq!(b - NtpDuration::from_bits(d), a);
        }

        #[test]
        fn every_rollover_offset_is_seen_from_both_eras(offset in -100_000i64..100_000, pivot_side in prop::bool::ANY) {
            let target = (ERA1_UNIX + i128::from(offset)) * NS;
            let pivot = (ERA1_UNIX + if pivot_side { 50_000 } else { -50_000 }) * NS;
            prop_assert_eq!(NtpTimestamp::from_unix_nanos(target).to_unix_nanos(pivot), target);
        }

        #[test]
        fn seconds_f64_round_trip(bits in -(1i64 << 52)..(1i64 << 52)) {
            let d = NtpDuration::from_bits(bits);
            prop_assert_eq!(NtpDuration::from_seconds_f64(d.to_seconds_f64()), d);
        }

        #[test]
        fn nanos_round_trip(nanos in -(1i128 << 60)..(1i128 << 60)) {
            let d = NtpDuration::from_nanos(nanos);
            prop_assert!((d.as_nanos() - nanos).abs() <= 1);
        }

        #[test]
        fn short_never_understates(bits in 0i64..(1i64 << 48)) {
            let d = NtpDuration::from_bits(bits);
            let s = NtpShort::from_duration(d).to_duration();
            prop_assert!(s >= d && s - d < NtpDuration::from_bits(1 << 16));
        }
    }
}
