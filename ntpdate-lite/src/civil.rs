//! Calendar dates and times for display: UTC by arithmetic, local time by the C library's
//! time-zone offset for that instant.

use ntp_proto::time::civil_from_days;

/// A broken-down time in some zone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Civil {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 to 999 999 999.
    pub nanos: u32,
    /// 0 is Sunday.
    pub weekday: u32,
    /// Seconds east of UTC.
    pub utc_offset: i64,
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Civil {
    /// The instant `unix_nanos` in UTC, or in the local zone unless `utc`.
    pub fn at(unix_nanos: i128, utc: bool) -> Self {
        let seconds = unix_nanos.div_euclid(1_000_000_000) as i64;
        let offset = if utc { 0 } else { local_utc_offset(seconds) };
        let mut civil = Self::utc(seconds + offset);
        civil.nanos = unix_nanos.rem_euclid(1_000_000_000) as u32;
        civil.utc_offset = offset;
        civil
    }

    fn utc(seconds: i64) -> Self {
        let days = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            nanos: 0,
            weekday: (days + 4).rem_euclid(7) as u32, // 1970-01-01 was a Thursday
            utc_offset: 0,
        }
    }

    /// Python's `time.ctime`: `Wed Jul 30 12:34:56 2025` (day padded with a space).
    pub fn ctime(&self) -> String {
        format!(
            "{} {} {:2} {:02}:{:02}:{:02} {}",
            DAYS[self.weekday as usize],
            MONTHS[self.month as usize - 1],
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.year
        )
    }

    /// RFC 3339 with microseconds: `2025-07-30T12:34:56.123456Z` or `...+02:00`.
    pub fn rfc3339(&self) -> String {
        let zone = if self.utc_offset == 0 {
            "Z".to_owned()
        } else {
            let (sign, off) = sign_and_abs(self.utc_offset);
            format!("{sign}{:02}:{:02}", off / 3600, off / 60 % 60)
        };
        format!("{}T{}{zone}", self.date(), self.time_of_day())
    }

    /// ntpdate's log stamp: ` 2 Aug 10:20:30`.
    pub fn ntpdate_stamp(&self) -> String {
        format!(
            "{:2} {} {:02}:{:02}:{:02}",
            self.day,
            MONTHS[self.month as usize - 1],
            self.hour,
            self.minute,
            self.second
        )
    }

    /// sntp's stamp: `2025-07-30 12:34:56.123456 (+0200)`.
    pub fn sntp_stamp(&self) -> String {
        let (sign, off) = sign_and_abs(self.utc_offset);
        format!(
            "{} {} ({sign}{:02}{:02})",
            self.date(),
            self.time_of_day(),
            off / 3600,
            off / 60 % 60
        )
    }

    fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    fn time_of_day(&self) -> String {
        format!(
            "{:02}:{:02}:{:02}.{:06}",
            self.hour,
            self.minute,
            self.second,
            self.nanos / 1000
        )
    }
}

fn sign_and_abs(offset: i64) -> (char, i64) {
    if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    }
}

/// The local zone's offset from UTC at that instant, from localtime_r (0 if it fails).
fn local_utc_offset(unix_seconds: i64) -> i64 {
    let t = unix_seconds as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct (its zone pointer may be
    // null); localtime_r overwrites it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the thread-safe variant and
    // writes only to `tm`.
    let result = unsafe { libc::localtime_r(&t, &mut tm) };
    if result.is_null() { 0 } else { tm.tm_gmtoff }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix_seconds: i64, nanos: i64) -> Civil {
        Civil::at(
            i128::from(unix_seconds) * 1_000_000_000 + i128::from(nanos),
            true,
        )
    }

    #[test]
    fn utc_formats() {
        // 2025-07-03 04:05:06.789 UTC, a Thursday.
        let c = at(1_751_515_506, 789_000_000);
        assert_eq!(c.ctime(), "Thu Jul  3 04:05:06 2025");
        assert_eq!(c.rfc3339(), "2025-07-03T04:05:06.789000Z");
        assert_eq!(c.ntpdate_stamp(), " 3 Jul 04:05:06");
        assert_eq!(c.sntp_stamp(), "2025-07-03 04:05:06.789000 (+0000)");
    }

    #[test]
    fn epochs_and_the_2036_rollover() {
        assert_eq!(at(0, 0).ctime(), "Thu Jan  1 00:00:00 1970");
        // NTP era 1 begins 2036-02-07 06:28:16 UTC.
        assert_eq!(
            at(2_085_978_496, 0).rfc3339(),
            "2036-02-07T06:28:16.000000Z"
        );
        assert_eq!(at(951_782_400, 0).ctime(), "Tue Feb 29 00:00:00 2000");
        assert_eq!(at(-1, 0).rfc3339(), "1969-12-31T23:59:59.000000Z");
    }

    #[test]
    fn offsets_render_with_sign() {
        let mut c = at(0, 0);
        c.utc_offset = -(5 * 3600 + 30 * 60);
        assert_eq!(c.sntp_stamp(), "1970-01-01 00:00:00.000000 (-0530)");
        assert_eq!(c.rfc3339(), "1970-01-01T00:00:00.000000-05:30");
    }
}
