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
//! - [`sample`]: the checks on a reply and the offset, delay and dispersion of one exchange
//!   (RFC 4330 section 5, RFC 5905 section 8).
//! - [`query`]: the one-shot query of ntpdate-lite: a few exchanges per address, the best sample.
//! - [`filter`]: the 8-stage clock filter of one source, with the popcorn spike gate (RFC 5905
//!   section 10).
//! - [`select`](mod@select): which sources agree, which survive clustering, the combined offset
//!   and the system peer (RFC 5905 section 11.2).
//! - [`discipline`]: the clock discipline: step, slew or refuse, a least-squares frequency
//!   estimate, poll adaptation (RFC 5905 sections 11.3 and 13).
//! - [`source`]: one upstream association: poll timer, reach register, kiss-o'-death, reply
//!   checks, its clock filter and its fitness for selection (RFC 5905 sections 9 and 13).
//! - [`system`]: the system process: a selection round over all sources, the discipline, and
//!   the system variables a server answers with (RFC 5905 section 11).
//! - [`server`]: request in, response, kiss-o'-death or counted drop out (RFC 5905 section 9.2).
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod discipline;
pub mod filter;
pub mod packet;
pub mod query;
pub mod sample;
pub mod select;
pub mod server;
pub mod source;
pub mod system;
pub mod time;

pub use discipline::{ClockAction, Discipline, DisciplineConfig};
pub use filter::{ClockFilter, FilterOutput};
pub use packet::{
    ExtensionField, LeapIndicator, Mode, Packet, ParseError, PollInterval, Precision, ReferenceId,
    Stratum, Trailer, Version,
};
pub use sample::{Exchange, ReplyError, ReplyLimits, Sample, SentRequest};
pub use select::{Candidate, Combined, Selection, Verdict, select};
pub use server::{Decision, DropReason, Response, Server};
pub use source::{ReplyInfo, ReplyOutcome, Source, SourceConfig, SourceCounters, Unfit};
pub use system::{SourceState, SyncConfig, System, SystemEvent, SystemSnapshot, Update};
pub use time::{NtpDuration, NtpShort, NtpTimestamp};
