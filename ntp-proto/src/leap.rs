//! Leap seconds: knowing one is coming (the IETF/IERS `leap-seconds.list`, and the leap indicators
//! of the selected sources, RFC 5905 section 7.3), announcing it, and the correction the clock
//! makes for it in each mode.
//!
//! # The leap-free timescale
//!
//! Around a leap a server's timestamps jump by a second (an inserted second repeats 23:59:59). A
//! source's line must not see that as a jump, so every sample whose server timestamps fall after
//! a leap in play is moved back into the *leap-free* timescale (UTC as if that leap had not
//! happened), and samples within two seconds of it, which cannot be placed, are not used. The
//! clock's target is then the leap-free time plus the leap's *curve*: nothing before the leap and
//! the whole second after it, reached at once (`step`), by a slew after the leap (`slew`), or
//! linearly over a window centred on it (`smear`). `ignore` does none of this: the jump is then
//! corrected afterwards like any offset.

use std::fmt;

use sha1::{Digest, Sha1};

use crate::packet::LeapIndicator;
use crate::time::{NtpDuration, NtpTimestamp, civil_from_days};

/// Seconds in a day: a leap happens at the end of a UTC day.
const DAY: i64 = 86_400;
/// Server timestamps this close to a leap cannot be placed on either side of it.
const AMBIGUOUS: NtpDuration = NtpDuration::from_seconds(2);
/// Leaps kept after they are over (their correction stays in force); older ones are folded.
const MAX_PAST: usize = 8;
/// The rate of a leap slew, s/s: half of chrony's `maxslewrate`, 0.5 s in 12 s (the
/// discipline lowers it to half what the clock can slew).
pub const DEFAULT_SLEW_RATE: f64 = 0.041_666;
/// A leap not begun by its time (a timer that fired late) still begins this long after it.
const GRACE: NtpDuration = NtpDuration::from_seconds(DAY / 2);

/// Whether the last minute of the day has 61 or 59 seconds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LeapKind {
    /// 23:59:60 is inserted: a UTC clock repeats a second.
    Insert,
    /// 23:59:59 is deleted: a UTC clock skips a second.
    Delete,
}

impl LeapKind {
    /// The leap a header's leap indicator announces, if any.
    pub const fn from_indicator(leap: LeapIndicator) -> Option<Self> {
        match leap {
            LeapIndicator::InsertSecond => Some(Self::Insert),
            LeapIndicator::DeleteSecond => Some(Self::Delete),
            _ => None,
        }
    }

    /// The leap indicator that announces it.
    pub const fn indicator(self) -> LeapIndicator {
        match self {
            Self::Insert => LeapIndicator::InsertSecond,
            Self::Delete => LeapIndicator::DeleteSecond,
        }
    }

    /// What the leap adds to a UTC clock: -1 s for an insertion (the clock goes back), +1 s for
    /// a deletion.
    pub const fn correction(self) -> NtpDuration {
        match self {
            Self::Insert => NtpDuration::from_seconds(-1),
            Self::Delete => NtpDuration::from_seconds(1),
        }
    }

    /// `insert` or `delete`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Delete => "delete",
        }
    }
}

/// One leap second: `at` is the first instant of the following day (00:00:00 UTC), as the
/// leap-seconds file gives it, in NTP time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Leap {
    /// Midnight at the end of the day whose last minute changes.
    pub at: NtpTimestamp,
    /// Insert or delete.
    pub kind: LeapKind,
}

impl Leap {
    /// The leap the sources announce at `now`: at the end of the current UTC day, if that day
    /// ends a month (leaps happen only there; an indicator still set just after a leap, or set on
    /// any other day, announces nothing).
    pub fn at_end_of_day(now: NtpTimestamp, kind: LeapKind) -> Option<Self> {
        let next_day = now.utc_day().0 + 1;
        (civil_from_days(next_day).2 == 1).then(|| Self {
            at: NtpTimestamp::from_unix_nanos(i128::from(next_day * DAY) * 1_000_000_000),
            kind,
        })
    }
}

/// Why a leap-seconds file was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum LeapFileError {
    /// A line is neither a comment nor `NTP-seconds TAI-offset`.
    #[error(
        "line {line}: {reason}; expected `NTP-seconds TAI-offset` as in the IERS leap-seconds.list"
    )]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// No `#@` expiry line.
    #[error("no expiry date (`#@` line): use the IERS or tzdata leap-seconds.list")]
    NoExpiry,
    /// No `#h` hash line.
    #[error("no hash (`#h` line): use the IERS or tzdata leap-seconds.list, unedited")]
    NoHash,
    /// The hash does not match the data.
    #[error("hash mismatch: the file is damaged or was edited; fetch a fresh leap-seconds.list")]
    HashMismatch,
    /// No leap entries.
    #[error("no leap-second entries")]
    Empty,
    /// Entries out of order, or offsets changing by more than one second.
    #[error("line {0}: entries must be in time order and change the TAI offset by one second")]
    Inconsistent(usize),
}

/// A parsed, hash-checked `leap-seconds.list` (the IETF/IERS format that tzdata ships).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LeapFile {
    /// (NTP time from which the offset holds, TAI - UTC seconds), in time order.
    entries: Vec<(NtpTimestamp, i32)>,
    /// When the file stops being valid.
    pub expires: NtpTimestamp,
}

impl LeapFile {
    /// Parses and checks `text`: every data line, the expiry (`#@`), and the SHA-1 hash (`#h`)
    /// over the digits of the update time, the expiry and the data lines.
    pub fn parse(text: &str) -> Result<Self, LeapFileError> {
        let mut hasher = Sha1::new();
        let mut digits = |s: &str| {
            let d: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
            hasher.update(&d);
        };
        let mut entries: Vec<(NtpTimestamp, i32)> = Vec::new();
        let (mut expires, mut hash) = (None, None);
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let bad = |reason| LeapFileError::Line {
                line: number,
                reason,
            };
            if let Some(rest) = line.strip_prefix("#$") {
                digits(rest);
                ntp_seconds(rest).ok_or(bad("bad update time"))?;
            } else if let Some(rest) = line.strip_prefix("#@") {
                digits(rest);
                expires = Some(ntp_seconds(rest).ok_or(bad("bad expiry time"))?);
            } else if let Some(rest) = line.strip_prefix("#h") {
                let words: Vec<u32> = rest
                    .split_whitespace()
                    .map(|w| u32::from_str_radix(w, 16))
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("bad hash"))?;
                hash = Some(words);
            } else if line.starts_with('#') || line.trim().is_empty() {
                continue;
            } else {
                let data = line.split('#').next().unwrap_or_default();
                digits(data);
                let mut fields = data.split_whitespace();
                let time = fields.next().and_then(ntp_seconds).ok_or(bad("bad time"))?;
                let offset = fields
                    .next()
                    .and_then(|f| f.parse::<i32>().ok())
                    .ok_or(bad("bad TAI offset"))?;
                if let Some(&(last_time, last_offset)) = entries.last()
                    && (time - last_time <= NtpDuration::ZERO || (offset - last_offset).abs() != 1)
                {
                    return Err(LeapFileError::Inconsistent(number));
                }
                entries.push((time, offset));
            }
        }
        let expires = expires.ok_or(LeapFileError::NoExpiry)?;
        let hash = hash.ok_or(LeapFileError::NoHash)?;
        let computed: Vec<u32> = hasher
            .finalize()
            .chunks(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        if hash != computed {
            return Err(LeapFileError::HashMismatch);
        }
        if entries.is_empty() {
            return Err(LeapFileError::Empty);
        }
        Ok(Self { entries, expires })
    }

    /// The first leap after `now`, if the file knows one.
    pub fn next_leap(&self, now: NtpTimestamp) -> Option<Leap> {
        self.entries.windows(2).find_map(|pair| {
            let ((_, before), (at, after)) = (pair[0], pair[1]);
            (at - now > NtpDuration::ZERO).then_some(Leap {
                at,
                kind: if after > before {
                    LeapKind::Insert
                } else {
                    LeapKind::Delete
                },
            })
        })
    }

    /// True once the file's expiry date has passed: it may not know a leap announced since.
    pub fn is_expired(&self, now: NtpTimestamp) -> bool {
        now - self.expires >= NtpDuration::ZERO
    }
}

/// An NTP seconds count as the file writes it (era 0).
fn ntp_seconds(text: &str) -> Option<NtpTimestamp> {
    let seconds: u32 = text.split_whitespace().next()?.parse().ok()?;
    Some(NtpTimestamp::from_parts(seconds, 0))
}

/// What the clock does at a leap (`[leap] mode`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum LeapMode {
    /// The clock repeats (or skips) a second at the leap, as a UTC clock must.
    #[default]
    Step,
    /// The clock is slewed by the second after the leap (chrony's `leapsecmode slew`).
    Slew,
    /// The clock, and so the time served, runs slow (or fast) by one second spread over a window
    /// centred on the leap; clients never see a leap and it is not announced.
    Smear,
    /// Nothing is done; the second is corrected afterwards like any offset.
    Ignore,
}

impl LeapMode {
    /// The config name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Step => "step",
            Self::Slew => "slew",
            Self::Smear => "smear",
            Self::Ignore => "ignore",
        }
    }
}

/// How leaps are handled.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct LeapConfig {
    /// What the clock does.
    pub mode: LeapMode,
    /// How long before a leap it is announced to clients (RFC 5905 allows earlier; one day is
    /// what most servers do).
    pub announce: NtpDuration,
    /// The smear window, centred on the leap.
    pub smear: NtpDuration,
    /// The rate of the slew after the leap in `slew` mode, s/s.
    pub slew_rate: f64,
}

impl Default for LeapConfig {
    fn default() -> Self {
        Self {
            mode: LeapMode::Step,
            announce: NtpDuration::from_seconds(DAY),
            smear: NtpDuration::from_seconds(DAY),
            slew_rate: DEFAULT_SLEW_RATE,
        }
    }
}

/// Where the coming leap is known from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LeapOrigin {
    /// The leap-seconds file.
    File,
    /// The leap indicators of a majority of the selected sources.
    Vote,
}

impl LeapOrigin {
    /// `file` or `vote`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Vote => "vote",
        }
    }
}

impl fmt::Display for LeapOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The leaps of one run: the next one (from the file, or else the vote), those in progress or
/// over, and the correction they make.
#[derive(Clone, Debug)]
pub struct Leaps {
    config: LeapConfig,
    file: Option<LeapFile>,
    /// The leap the selected sources announced at the last selection round, for the end of the
    /// day it was announced on.
    vote: Option<Leap>,
    /// Leaps whose curve has begun (their correction is in force, their samples converted), in
    /// time order; the coming one is added when its curve begins.
    begun: Vec<Leap>,
    /// Corrections of leaps folded out of `begun` (long over): seconds added for good.
    folded: NtpDuration,
}

/// The leap state for `status`.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct LeapStatus {
    /// The coming (or current) leap, and where it is known from.
    pub pending: Option<(Leap, LeapOrigin)>,
    /// What the selected sources announce.
    pub vote: Option<LeapKind>,
    /// The leap indicator served now.
    pub announced: LeapIndicator,
    /// The leap-seconds file's expiry, if a file is used, and whether it has passed.
    pub file_expires: Option<(NtpTimestamp, bool)>,
    /// The mode.
    pub mode: LeapMode,
}

impl Leaps {
    /// Leap handling with `config` and, optionally, a leap-seconds file.
    pub fn new(config: LeapConfig, file: Option<LeapFile>) -> Self {
        Self {
            config,
            file,
            vote: None,
            begun: Vec::new(),
            folded: NtpDuration::ZERO,
        }
    }

    /// Uses `file` (or none) to know the coming leaps.
    pub fn set_file(&mut self, file: Option<LeapFile>) {
        self.file = file;
    }

    /// The mode.
    pub fn mode(&self) -> LeapMode {
        self.config.mode
    }

    /// Records what the selected sources announce at `now` (their majority, see [`vote`]).
    pub fn set_vote(&mut self, now: NtpTimestamp, vote: Option<LeapKind>) {
        self.vote = vote.and_then(|kind| Leap::at_end_of_day(now, kind));
    }

    /// The next leap not yet begun, at `now`: the file's (it beats the vote while it is valid),
    /// else the one the vote announces for the end of today.
    pub fn upcoming(&self, now: NtpTimestamp) -> Option<(Leap, LeapOrigin)> {
        let next = match &self.file {
            Some(file) if !file.is_expired(now) => file
                .next_leap(now - GRACE)
                .map(|leap| (leap, LeapOrigin::File)),
            _ => self
                .vote
                .filter(|leap| leap.at - now > -GRACE)
                .map(|leap| (leap, LeapOrigin::Vote)),
        };
        next.filter(|(leap, _)| !self.begun.iter().any(|b| b.at == leap.at))
    }

    /// When the curve of `leap` begins and ends (the same instant for a step).
    fn window(&self, leap: &Leap) -> (NtpTimestamp, NtpTimestamp) {
        match self.config.mode {
            LeapMode::Smear => (
                leap.at - self.config.smear.half(),
                leap.at + self.config.smear.half(),
            ),
            LeapMode::Slew => (
                leap.at,
                leap.at + NtpDuration::from_seconds_f64(1.0 / self.config.slew_rate.max(1e-9)),
            ),
            LeapMode::Step | LeapMode::Ignore => (leap.at, leap.at),
        }
    }

    /// Starts the curve of the coming leap once `now` reaches its window; folds leaps long over.
    /// Returns the leap that began, if one did. In `ignore` mode no leap ever begins.
    pub fn advance(&mut self, now: NtpTimestamp) -> Option<Leap> {
        if self.config.mode == LeapMode::Ignore {
            return None;
        }
        let (leap, _) = self.upcoming(now)?;
        let (start, _) = self.window(&leap);
        if now - start < NtpDuration::ZERO {
            return None;
        }
        self.begun.push(leap);
        if self.begun.len() > MAX_PAST {
            let oldest = self.begun.remove(0);
            self.folded += oldest.kind.correction();
        }
        Some(leap)
    }

    /// Each leap in play (begun, then the coming one), with the correction of those before it:
    /// its window holds in leap-free time, which the local clock reads plus that correction.
    fn frames(&self, now: NtpTimestamp) -> impl Iterator<Item = (Leap, NtpDuration)> + '_ {
        let coming = self.upcoming(now).map(|(leap, _)| leap);
        self.begun
            .iter()
            .copied()
            .chain(coming)
            .scan(self.folded, |before, leap| {
                let frame = (leap, *before);
                *before += leap.kind.correction();
                Some(frame)
            })
    }

    /// The next local time after `now` at which anything changes: the announcement starts, a
    /// window starts, a leap happens, a window ends.
    pub fn next_change(&self, now: NtpTimestamp) -> Option<NtpTimestamp> {
        self.frames(now)
            .flat_map(|(leap, before)| {
                let (start, end) = self.window(&leap);
                let whole = leap.kind.correction();
                // A step's window has no length: it ends at the leap, not a second before.
                let end = if end == start { end } else { end + whole };
                [leap.at - self.config.announce, start, leap.at, end].map(|t| t + before)
            })
            .filter(|t| *t - now > NtpDuration::ZERO)
            .min_by_key(|t| *t - now)
    }

    /// The correction the leaps begun add to the clock's target at local time `now`, and its
    /// rate (s/s of leap-free time): the clock should read the leap-free time plus this. Each
    /// curve is a line in leap-free time from its window's start to its end.
    pub fn correction(&self, now: NtpTimestamp) -> (NtpDuration, f64) {
        let mut total = self.folded;
        let mut rate = 0.0;
        for leap in &self.begun {
            let (start, end) = self.window(leap);
            let whole = leap.kind.correction();
            // Local time in this leap's frame (before its own correction).
            let x = now - total;
            let (span, w) = ((end - start).to_seconds_f64(), whole.to_seconds_f64());
            if x - start < NtpDuration::ZERO {
                continue;
            }
            if span <= 0.0 || x - (end + whole) >= NtpDuration::ZERO {
                total += whole;
            } else {
                // c = w (T - start) / span with T = x - c, the leap-free time.
                total += whole.mul_f64((x - start).to_seconds_f64() / (span + w));
                rate += w / span;
            }
        }
        (total, rate)
    }

    /// Moves a sample's server timestamps into the leap-free timescale: the shift to add to its
    /// offset, or `None` when they fall too close to a leap to be placed.
    pub fn leap_free_shift(
        &self,
        server_receive: NtpTimestamp,
        server_transmit: NtpTimestamp,
    ) -> Option<NtpDuration> {
        if self.config.mode == LeapMode::Ignore {
            return Some(NtpDuration::ZERO);
        }
        // The coming leap counts too: a reply may arrive before the clock's own timer began it.
        let coming = self.upcoming(server_transmit).map(|(leap, _)| leap);
        let mut shift = -self.folded;
        for leap in self.begun.iter().chain(coming.iter()) {
            // Up to the leap's instant, and while a server that slews the leap as we do is still
            // slewing it, its time is neither side's.
            let (_, end) = self.window(leap);
            let after = (end - leap.at).max(NtpDuration::ZERO) + AMBIGUOUS;
            let near = |t: NtpTimestamp| {
                let into = t - leap.at;
                into > -AMBIGUOUS && into < after
            };
            if near(server_receive) || near(server_transmit) {
                return None;
            }
            if server_transmit - leap.at > NtpDuration::ZERO {
                shift -= leap.kind.correction();
            }
        }
        Some(shift)
    }

    /// The leap indicator to serve at `now`: the coming leap during its announcement window,
    /// except in smear mode (its clients never see the leap).
    pub fn announced(&self, now: NtpTimestamp) -> LeapIndicator {
        if self.config.mode == LeapMode::Smear {
            return LeapIndicator::NoWarning;
        }
        let pending = self.upcoming(now).map(|(leap, _)| leap).or_else(|| {
            // Begun (its window opened) but not yet happened.
            self.begun
                .iter()
                .copied()
                .find(|l| l.at - now > NtpDuration::ZERO)
        });
        match pending {
            Some(leap)
                if leap.at - now <= self.config.announce && leap.at - now > NtpDuration::ZERO =>
            {
                leap.kind.indicator()
            }
            _ => LeapIndicator::NoWarning,
        }
    }

    /// What `status` shows at `now`.
    pub fn status(&self, now: NtpTimestamp) -> LeapStatus {
        let begun = self
            .begun
            .iter()
            .copied()
            .find(|l| l.at - now > NtpDuration::ZERO)
            .map(|l| (l, self.origin_of(&l)));
        LeapStatus {
            pending: begun.or_else(|| self.upcoming(now)),
            vote: self.vote.map(|l| l.kind),
            announced: self.announced(now),
            file_expires: self.file.as_ref().map(|f| (f.expires, f.is_expired(now))),
            mode: self.config.mode,
        }
    }

    fn origin_of(&self, leap: &Leap) -> LeapOrigin {
        let in_file = self
            .file
            .as_ref()
            .is_some_and(|f| f.entries.iter().any(|(at, _)| *at == leap.at));
        if in_file {
            LeapOrigin::File
        } else {
            LeapOrigin::Vote
        }
    }
}

/// The leap a majority of the selected sources announce (RFC 5905 leaves the rule open; ntpd
/// and chrony take the majority): more than half of them must agree, so one source announcing a
/// leap the others do not is outvoted.
pub fn vote(indicators: &[LeapIndicator]) -> Option<LeapKind> {
    let count = |kind: LeapKind| {
        indicators
            .iter()
            .filter(|l| LeapKind::from_indicator(**l) == Some(kind))
            .count()
    };
    [LeapKind::Insert, LeapKind::Delete]
        .into_iter()
        .find(|kind| 2 * count(*kind) > indicators.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tzdata file of this machine's Debian, as it was when the test was written.
    const LIST: &str = include_str!("../tests/vectors/leap-seconds.list");
    /// 2016-12-31 23:59:60 UTC was inserted: 2017-01-01 00:00:00 is NTP 3692217600.
    const LEAP_2016: u32 = 3_692_217_600;

    fn t(seconds: i64) -> NtpTimestamp {
        NtpTimestamp::from_parts(LEAP_2016, 0) + NtpDuration::from_seconds(seconds)
    }

    fn s(seconds: f64) -> NtpDuration {
        NtpDuration::from_seconds_f64(seconds)
    }

    #[test]
    fn the_ietf_list_parses_its_hash_checks_and_it_knows_2016() {
        let file = LeapFile::parse(LIST).expect("the shipped list is valid");
        assert_eq!(
            file.next_leap(t(-10)),
            Some(Leap {
                at: t(0),
                kind: LeapKind::Insert
            })
        );
        assert_eq!(file.next_leap(t(10)), None, "none known after 2016");
        assert!(!file.is_expired(t(0)));
        assert!(file.is_expired(file.expires));
    }

    #[test]
    fn an_edited_or_truncated_list_is_refused() {
        let edited = LIST.replace("37      # 1 Jan 2017", "38      # 1 Jan 2017");
        assert!(edited != LIST, "the vector has the 2016 line");
        assert!(matches!(
            LeapFile::parse(&edited),
            Err(LeapFileError::HashMismatch | LeapFileError::Inconsistent(_))
        ));
        let moved = LIST.replace("3692217600", "3692217601");
        assert_eq!(LeapFile::parse(&moved), Err(LeapFileError::HashMismatch));
        let no_hash: String = LIST
            .lines()
            .filter(|l| !l.starts_with("#h"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(LeapFile::parse(&no_hash), Err(LeapFileError::NoHash));
        assert!(matches!(
            LeapFile::parse("#@ 3991593600\nnonsense\n"),
            Err(LeapFileError::Line { line: 2, .. })
        ));
        assert_eq!(LeapFile::parse(""), Err(LeapFileError::NoExpiry));
    }

    #[test]
    fn the_vote_needs_a_majority() {
        use LeapIndicator::{InsertSecond as I, NoWarning as N};
        assert_eq!(vote(&[I]), Some(LeapKind::Insert));
        assert_eq!(vote(&[I, N, N]), None, "a lone announcer is outvoted");
        assert_eq!(vote(&[I, I, N]), Some(LeapKind::Insert));
        assert_eq!(vote(&[I, N]), None, "half is not a majority");
        assert_eq!(vote(&[]), None);
    }

    #[test]
    fn a_vote_means_the_end_of_the_current_utc_day_if_it_ends_a_month() {
        let at = |now| Leap::at_end_of_day(now, LeapKind::Insert).map(|l| l.at);
        assert_eq!(at(t(-3600)), Some(t(0)), "2016-12-31");
        assert_eq!(at(t(1)), None, "2017-01-01: still set just after the leap");
        assert_eq!(at(t(58 * DAY)), Some(t(59 * DAY)), "2017-02-28");
        assert_eq!(at(t(30 * DAY)), Some(t(31 * DAY)), "2017-01-31");
        assert_eq!(at(t(10 * DAY)), None, "2017-01-11");
        let june_2015 = NtpTimestamp::from_parts(3_644_697_600, 0) - NtpDuration::from_seconds(5);
        assert!(at(june_2015).is_some(), "2015-06-30");
    }

    fn leaps(mode: LeapMode) -> Leaps {
        Leaps::new(
            LeapConfig {
                mode,
                slew_rate: 0.001,
                ..LeapConfig::default()
            },
            Some(LeapFile::parse(LIST).expect("valid")),
        )
    }

    #[test]
    fn a_step_leap_is_announced_for_a_day_then_repeats_a_second() {
        let mut l = leaps(LeapMode::Step);
        assert_eq!(l.announced(t(-DAY - 1)), LeapIndicator::NoWarning);
        assert_eq!(l.announced(t(-DAY + 1)), LeapIndicator::InsertSecond);
        assert_eq!(l.next_change(t(-5)), Some(t(0)));
        assert_eq!(l.advance(t(-1)), None, "not yet");
        assert_eq!(l.correction(t(-1)).0, NtpDuration::ZERO);
        assert!(l.advance(t(0)).is_some());
        assert_eq!(l.correction(t(0)), (s(-1.0), 0.0));
        assert_eq!(l.advance(t(0)), None, "begun once");
        assert_eq!(l.announced(t(1)), LeapIndicator::NoWarning);
        // Samples: after the leap the server reads a second less; near it, unusable.
        assert_eq!(l.leap_free_shift(t(-10), t(-10)), Some(NtpDuration::ZERO));
        assert_eq!(l.leap_free_shift(t(10), t(10)), Some(s(1.0)));
        assert_eq!(l.leap_free_shift(t(-1), t(0)), None);
    }

    #[test]
    fn a_smear_runs_a_second_slow_over_the_day_around_the_leap_and_announces_nothing() {
        let mut l = leaps(LeapMode::Smear);
        assert_eq!(l.announced(t(-3600)), LeapIndicator::NoWarning);
        assert_eq!(l.next_change(t(-DAY)), Some(t(-DAY / 2)));
        assert!(l.advance(t(-DAY / 2)).is_some());
        // Half a second behind at the leap: the local clock then reads 23:59:59.5.
        let (at_leap, rate) = l.correction(t(0) - s(0.5));
        assert!((at_leap.to_seconds_f64() + 0.5).abs() < 1e-9, "{at_leap:?}");
        assert!((rate + 1.0 / 86_400.0).abs() < 1e-12);
        assert_eq!(l.next_change(t(0)), Some(t(DAY / 2) - s(1.0)), "local end");
        assert_eq!(l.correction(t(DAY)), (s(-1.0), 0.0));
    }

    #[test]
    fn a_slew_leap_starts_at_the_leap_and_takes_a_second_over_its_rate() {
        let mut l = leaps(LeapMode::Slew);
        assert!(l.advance(t(0)).is_some());
        // Local time runs 0.1% slow under the slew: 499.5 s local is 500 s leap-free.
        let (half, rate) = l.correction(t(0) + s(499.5));
        assert!((half.to_seconds_f64() + 0.5).abs() < 1e-9);
        assert!((rate + 0.001).abs() < 1e-12);
        assert_eq!(l.correction(t(1000)).0, s(-1.0));
    }

    #[test]
    fn without_a_file_the_vote_decides_and_ignore_does_nothing() {
        let mut l = Leaps::new(LeapConfig::default(), None);
        assert_eq!(l.upcoming(t(-100)), None);
        l.set_vote(t(-100), Some(LeapKind::Delete));
        assert_eq!(
            l.upcoming(t(-100)),
            Some((
                Leap {
                    at: t(0),
                    kind: LeapKind::Delete
                },
                LeapOrigin::Vote
            ))
        );
        assert_eq!(l.announced(t(-100)), LeapIndicator::DeleteSecond);
        let mut ignore = Leaps::new(
            LeapConfig {
                mode: LeapMode::Ignore,
                ..LeapConfig::default()
            },
            None,
        );
        ignore.set_vote(t(-100), Some(LeapKind::Insert));
        assert_eq!(ignore.advance(t(0)), None);
        assert_eq!(ignore.leap_free_shift(t(5), t(5)), Some(NtpDuration::ZERO));
    }

    #[test]
    fn a_file_beats_the_vote_until_it_expires() {
        let mut l = leaps(LeapMode::Step);
        // The file knows no leap at the end of 2017-06-30; the vote is ignored while it is valid.
        let june = t(181 * DAY - 100);
        l.set_vote(june, Some(LeapKind::Insert));
        assert_eq!(l.upcoming(june), None);
        // Once the file has expired, the vote decides (at the end of a month).
        let expires = l.file.as_ref().expect("file").expires;
        let end_of_month = Leap::at_end_of_day(expires, LeapKind::Insert)
            .map_or(expires + s(DAY as f64), |_| expires);
        let mut now = end_of_month;
        while Leap::at_end_of_day(now, LeapKind::Insert).is_none() {
            now += s(DAY as f64);
        }
        l.set_vote(now, Some(LeapKind::Insert));
        assert_eq!(l.upcoming(now).map(|(_, o)| o), Some(LeapOrigin::Vote));
    }
}
