//! # ntp-proto: NTPv4 without IO
//!
//! The protocol half of ntp-lite, in the shape of quinn-proto and rustls: this crate opens no
//! socket, reads no clock, sleeps never and draws no random numbers of its own. Time and random
//! bytes come in as arguments; packets and clock corrections go out as values. The daemon
//! (`ntpd-lite`) and the query tool (`ntpdate-lite`) only move bytes, read clocks and sleep.
//!
//! - [`time`]: the NTP time formats and era-aware conversions (RFC 5905 section 6).
//! - [`packet`]: the 48-byte header and its typed fields, extension fields skipped safely (RFC 5905
//!   section 7.3, RFC 7822).
//! - [`auth`]: symmetric keys: the keys file, the MAC after a packet and the crypto-NAK (RFC 5905
//!   section 7.3, RFC 8573).
//! - [`sample`]: the checks on a reply and the offset, delay and dispersion of one exchange
//!   (RFC 4330 section 5, RFC 5905 section 8).
//! - [`broadcast`]: broadcast mode, the client's side: delay calibration and the checks on each
//!   broadcast (RFC 5905 sections 8 and 9.2, mode 5).
//! - [`nts`]: Network Time Security (RFC 8915): NTS-KE records and logic, cookies and server
//!   keys, the NTS extension fields of requests and responses.
//! - [`query`]: the one-shot query of ntpdate-lite: a few exchanges per address, the best sample.
//! - [`stats`]: one source's samples in the uncorrected timescale and the weighted line through
//!   them: offset now, frequency, and their errors (the clock filter of RFC 5905 section 10, done
//!   as chrony does).
//! - [`select`](mod@select): which sources agree, which survive clustering, the combined offset
//!   and the system peer (RFC 5905 section 11.2).
//! - [`soft_clock`]: the model of a disciplined clock (steps, frequency, slews that end by
//!   themselves), shared by the discipline's record, the daemon's virtual clock and the simulator.
//! - [`discipline`]: the clock discipline: step, slew or refuse, and the exact record of every
//!   correction (RFC 5905 section 11.3).
//! - [`leap`]: leap seconds: the leap-seconds file, the sources' vote, what is announced, and the
//!   leap's correction in each mode (step, slew, smear, ignore).
//! - [`source`]: one upstream association: poll timer and its adaptation, reply deadline, reach
//!   register, kiss-o'-death, its statistics and its fitness for selection (sections 9 and 13).
//! - [`system`]: the system process: a selection round over all sources, the discipline, and
//!   the system variables a server answers with (RFC 5905 section 11).
//! - [`client`]: the client core: sources by stable id, names to resolve, the system process,
//!   timers as data; datagrams, deadlines and clock actions out (quinn-proto's shape).
//! - [`server`]: request in, response, kiss-o'-death or counted drop out (RFC 5905 section 9.2);
//!   broadcast announcements on a schedule.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod broadcast;
pub mod client;
mod client_hash;
pub mod discipline;
pub mod interleave;
pub mod leap;
pub mod nts;
pub mod packet;
pub mod query;
pub mod sample;
pub mod select;
pub mod server;
pub mod soft_clock;
pub mod source;
pub mod stats;
pub mod system;
pub mod time;

pub use auth::{AuthError, DigestType, KeyId, Keys, KeysFileError, Seal, Sealed, SymmetricKey};
pub use broadcast::{Delay as BroadcastDelay, Listener};
pub use client::{
    Client, ClientConfig, CommandError, Event, NameId, NameKind, NameSpec, NamesChange,
    Replacement, SourceReport, Transmit,
};
pub use discipline::{ClockAction, Discipline, DisciplineConfig, Estimate};
pub use leap::{
    Leap, LeapConfig, LeapFile, LeapFileError, LeapKind, LeapMode, LeapOrigin, LeapStatus, Leaps,
};
pub use packet::{
    ExtensionField, LeapIndicator, Mode, Packet, ParseError, PollInterval, Precision, ReferenceId,
    Stratum, Trailer, Version,
};
pub use sample::{AssociationKind, Exchange, ReplyError, ReplyLimits, Sample, SentRequest};
pub use select::{Candidate, Combined, Selection, Verdict, select};
pub use server::{Broadcaster, Decision, DropReason, Response, Server};
pub use soft_clock::SoftClock;
pub use source::{
    ReplyInfo, ReplyOutcome, SelectOptions, Source, SourceConfig, SourceCounters, SourceEstimate,
    SourceId, Unfit,
};
pub use stats::{Fit, RawSample, SourceStats};
pub use system::{SourceState, SyncConfig, System, SystemEvent, SystemSnapshot, Update};
pub use time::{NtpDuration, NtpShort, NtpTimestamp};
