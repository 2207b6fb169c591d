//! The client core: every source, the system process and the discipline as one state machine in
//! the quinn-proto shape (RFC 5905 sections 9 to 13). It opens no socket and reads no clock.
//!
//! # Call order
//!
//! Each call takes `now`, a monotonic instant for timers, and most take `local`, the reading of
//! the disciplined clock at that instant.
//! 1. Configure: [`Client::add_name`] for names the shell must resolve (a `server` contributes
//!    one address, a `pool` up to its `max_sources`, never one already in use), or
//!    [`Client::add_source`] for a known address.
//! 2. Loop:
//!    - [`Client::poll_event`] until `None`, first: apply every [`Event::Clock`] at once (the core
//!      assumes it was applied at the `local` of the call that produced it, so a request's T1 must
//!      not be read before it), log the rest;
//!    - [`Client::poll_resolve`] until `None`: look each name up, then [`Client::handle_resolved`];
//!    - [`Client::poll_transmit`] until `None`: send each request from a fresh socket with a random
//!      source port (RFC 9109), record its real send time T1, and hand every datagram that
//!      arrives on that socket within `wait` to [`Client::handle_reply`] with its kernel receive
//!      time T4;
//!    - sleep until [`Client::poll_timeout`] or the next datagram, then [`Client::handle_timeout`].
//!
//! Waking early is harmless; there is no periodic tick. Requests to different sources leave at
//! least a [`sampling_separation`] apart, so many sources never make a burst. Selection runs when
//! a reply gives a sample; the first clock update waits until every source has answered its first request or
//! given up on it, so that the first reply alone cannot set the clock when others could outvote it.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::auth::{KeyId, Seal, Sealed};
use crate::discipline::ClockAction;
use crate::leap::{LeapFile, LeapStatus};
use crate::nts::ClientSession;
use crate::packet::Packet;
use crate::packet::{PollInterval, Precision};
use crate::sample::{AssociationKind, ReplyLimits};
use crate::source::{
    ReplyOutcome, Source, SourceConfig, SourceCounters, SourceEstimate, SourceId,
    sampling_separation,
};
use crate::system::{SourceState, Sources, SyncConfig, System, SystemEvent, SystemSnapshot};
use crate::time::{NtpDuration, NtpTimestamp};

/// How often a name that did not resolve is looked up again.
pub const RESOLVE_RETRY: Duration = Duration::from_secs(30);
/// A local clock that moved this much more (plus [`JUMP_TOLERANCE_PPM`] of the elapsed time) than
/// the monotonic clock and our own corrections explain was set by someone else.
pub const JUMP_THRESHOLD: NtpDuration = NtpDuration::from_bits(1 << 31); // 0.5 s
/// Rate difference allowed between the monotonic and the local clock, ppm.
pub const JUMP_TOLERANCE_PPM: f64 = 2000.0;
/// How often the local clock is checked for a jump while nothing else wakes the core: a clock set
/// by someone else is corrected within this long, not at the next poll up to 17 minutes later.
pub const JUMP_CHECK: Duration = Duration::from_secs(16);
/// Selection rounds in a row a named source may be a falseticker before a fresh address of its
/// name replaces it (chrony replaces falsetickers of a pool too).
pub const FALSETICKER_ROUNDS: u32 = 4;
/// How long an address that was replaced is not taken again from its name; after that it is taken
/// only when no address that was never replaced is left.
pub const REPLACED_MEMORY: Duration = Duration::from_secs(3600);
/// Replaced addresses remembered (the oldest is forgotten first).
pub const REPLACED_KEPT: usize = 64;
/// Shortest wait before a name that resolved is asked again for a fresh address (a source of it
/// waits to be replaced, or a pool gave fewer than it may take): its minpoll, within this and
/// [`RESOLVE_RETRY`].
pub const REPLACE_RETRY: Duration = Duration::from_secs(2);

/// Why a named source is replaced by a fresh address of its name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Replacement {
    /// None of its last eight polls was answered.
    Unreachable,
    /// It was a falseticker for [`FALSETICKER_ROUNDS`] selection rounds in a row.
    Falseticker,
    /// It sent a kiss-o'-death DENY or RSTR.
    Denied,
}

impl Replacement {
    /// A stable lower-case name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Falseticker => "falseticker",
            Self::Denied => "denied",
        }
    }
}

/// How the client is configured.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct ClientConfig {
    /// Selection, holdover, discipline and local reference.
    pub sync: SyncConfig,
    /// What a reply must satisfy.
    pub limits: ReplyLimits,
    /// The local clock's precision.
    pub precision: Precision,
    /// A drift-file frequency, ppm.
    pub initial_frequency_ppm: Option<f64>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            sync: SyncConfig::default(),
            limits: ReplyLimits::default(),
            precision: Precision::new(-20),
            initial_frequency_ppm: None,
        }
    }
}

/// What a configured name stands for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NameKind {
    /// One server: one address of the name (a dual-stack host must not vote twice).
    Server,
    /// A pool: up to this many of its addresses.
    Pool {
        /// Most sources taken from the pool.
        max_sources: usize,
    },
}

/// A configured name, resolved by the shell when the core asks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NameId(pub usize);

/// A request to send.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Transmit {
    /// The source it is for.
    pub source: SourceId,
    /// Where to send it.
    pub address: SocketAddr,
    /// The request: the header, then its MAC if the source has a key.
    pub bytes: Sealed,
    /// How long replies to it are worth handing back.
    pub wait: Duration,
    /// A client request (send it from a fresh socket) or a peer's (send it from the server's
    /// socket, where the peer's packets arrive).
    pub kind: AssociationKind,
}

/// What the shell must do or may log.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Event {
    /// Apply this to the clock now.
    Clock(ClockAction),
    /// Something the system process did.
    System(SystemEvent),
    /// A source was added for a name.
    SourceAdded(SourceId, SocketAddr),
    /// A datagram from a source was not used, and why.
    Reply(SourceId, ReplyOutcome),
    /// A source of a name was replaced by a fresh address of the same name (the new source is
    /// announced by [`Event::SourceAdded`] just before).
    SourceReplaced {
        /// The source removed, and its address.
        old: (SourceId, SocketAddr),
        /// The source that took its place, and its address.
        new: (SourceId, SocketAddr),
        /// Why.
        reason: Replacement,
    },
}

/// A source as `status` shows it.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct SourceReport {
    /// Its id.
    pub id: SourceId,
    /// Its address.
    pub address: SocketAddr,
    /// The reach register.
    pub reach: u8,
    /// The current poll interval.
    pub poll: PollInterval,
    /// The stratum of its last valid reply (0 before one).
    pub stratum: u8,
    /// A server or a symmetric peer.
    pub kind: AssociationKind,
    /// What its samples say now.
    pub estimate: Option<SourceEstimate>,
    /// How the last selection round saw it.
    pub state: SourceState,
    /// What it sent and received.
    pub counters: SourceCounters,
    /// The key that authenticates it, if any.
    pub key: Option<KeyId>,
    /// False while the operator has taken it offline.
    pub online: bool,
    /// For an NTS association (RFC 8915), the cookies it holds.
    pub nts_cookies: Option<usize>,
}

#[derive(Clone, Debug)]
struct Name {
    name: String,
    kind: NameKind,
    config: SourceConfig,
    /// When to look it up next; `None` once it has given all the sources it may.
    next_lookup: Option<Instant>,
    /// From the configuration (what [`Client::replace_names`] compares), or added by the
    /// operator at run time.
    configured: bool,
}

/// A configured name, as [`Client::replace_names`] compares it with the running ones.
#[derive(Clone, PartialEq, Debug)]
pub struct NameSpec {
    /// The name (or address) to resolve.
    pub name: String,
    /// A server or a pool.
    pub kind: NameKind,
    /// How its sources are configured.
    pub config: SourceConfig,
}

/// What [`Client::replace_names`] did, by name.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct NamesChange {
    /// New names, to be resolved now.
    pub added: Vec<String>,
    /// Names gone, with their sources.
    pub removed: Vec<String>,
    /// Names whose options changed: their sources keep their samples, reach and poll.
    pub changed: Vec<String>,
    /// Names left exactly as they were.
    pub unchanged: usize,
}

/// Why an operator's command changed nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CommandError {
    /// No source has that address.
    #[error("no source has the address {0}; `sources` lists them")]
    NoSuchSource(SocketAddr),
    /// A source already has that address.
    #[error("a source already has the address {0}")]
    AlreadyUsed(SocketAddr),
    /// The clock only measures.
    #[error("the clock is in monitor mode, which never adjusts it: nothing was stepped")]
    MonitorOnly,
    /// No source could be selected: there is no offset to step by.
    #[error("no source can be selected now (see `sources`): nothing was stepped")]
    NoSelection,
}

/// The client core.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    names: BTreeMap<NameId, Name>,
    next_name: usize,
    sources: Sources,
    name_of: BTreeMap<SourceId, NameId>,
    next_id: u64,
    system: System,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// The last instant, local time and uncorrected time seen: to turn local deadlines into
    /// instants, and to notice a clock set by someone else.
    last_seen: Option<(Instant, NtpTimestamp, NtpTimestamp)>,
    /// When the last request left: the next one waits for the sampling separation.
    last_transmit: Option<Instant>,
    /// Named sources that should give way to a fresh address of their name, and why.
    to_replace: BTreeMap<SourceId, Replacement>,
    /// Selection rounds in a row each source has been a falseticker.
    falseticker_rounds: BTreeMap<SourceId, u32>,
    /// Addresses replaced (at most [`REPLACED_KEPT`], oldest first), and until when they are
    /// not taken again.
    replaced: Vec<(SocketAddr, Instant)>,
}

impl Client {
    /// A client with no sources yet.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            names: BTreeMap::new(),
            next_name: 0,
            sources: Sources::new(),
            name_of: BTreeMap::new(),
            next_id: 0,
            system: System::new(config.sync, config.precision, config.initial_frequency_ppm),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_seen: None,
            last_transmit: None,
            to_replace: BTreeMap::new(),
            falseticker_rounds: BTreeMap::new(),
            replaced: Vec::new(),
        }
    }

    /// Adds a name to resolve: [`Client::poll_resolve`] asks for it at `now`.
    pub fn add_name(
        &mut self,
        name: &str,
        kind: NameKind,
        config: SourceConfig,
        now: Instant,
    ) -> NameId {
        self.push_name(name, kind, config, now, true)
    }

    /// Like [`Client::add_name`], for a source the operator adds at run time: a reload of the
    /// configuration leaves it alone.
    pub fn add_operator_name(
        &mut self,
        name: &str,
        kind: NameKind,
        config: SourceConfig,
        now: Instant,
    ) -> NameId {
        self.push_name(name, kind, config, now, false)
    }

    fn push_name(
        &mut self,
        name: &str,
        kind: NameKind,
        config: SourceConfig,
        now: Instant,
        configured: bool,
    ) -> NameId {
        let id = NameId(self.next_name);
        self.next_name += 1;
        let entry = Name {
            name: name.to_owned(),
            kind,
            config,
            next_lookup: Some(now),
            configured,
        };
        self.names.insert(id, entry);
        id
    }

    /// Makes the configured names `specs` (a reloaded configuration): a name with the same
    /// kind and options is left alone, one whose options changed is reconfigured in place (its
    /// sources keep their samples, reach and poll), a name no longer listed goes with its
    /// sources, and a new one is resolved at `now`. Names the operator added are not touched.
    pub fn replace_names(&mut self, specs: &[NameSpec], now: Instant) -> NamesChange {
        let mut change = NamesChange::default();
        let mut wanted: Vec<&NameSpec> = specs.iter().collect();
        let configured: Vec<NameId> = self
            .names
            .iter()
            .filter(|(_, n)| n.configured)
            .map(|(id, _)| *id)
            .collect();
        for id in configured {
            let Some(name) = self.names.get(&id) else {
                continue;
            };
            let same = wanted
                .iter()
                .position(|s| s.name == name.name && s.kind == name.kind);
            match same.map(|i| wanted.remove(i)) {
                Some(spec) if spec.config == name.config => change.unchanged += 1,
                Some(spec) => {
                    change.changed.push(spec.name.clone());
                    self.reconfigure_name(id, spec.config);
                }
                None => {
                    change.removed.push(name.name.clone());
                    self.remove_name(id);
                }
            }
        }
        for spec in wanted {
            self.add_name(&spec.name, spec.kind, spec.config, now);
            change.added.push(spec.name.clone());
        }
        change
    }

    fn reconfigure_name(&mut self, id: NameId, config: SourceConfig) {
        if let Some(name) = self.names.get_mut(&id) {
            name.config = config;
        }
        for (source, _) in self.name_of.iter().filter(|(_, n)| **n == id) {
            if let Some(source) = self.sources.get_mut(source) {
                source.reconfigure(config);
            }
        }
    }

    /// Removes a name and every source it gave.
    fn remove_name(&mut self, id: NameId) {
        self.names.remove(&id);
        let gone: Vec<SourceId> = self
            .name_of
            .iter()
            .filter(|(_, n)| **n == id)
            .map(|(s, _)| *s)
            .collect();
        for source in gone {
            self.remove_source(source);
        }
    }

    /// Adds a source at a known address, polled first at `now`; `None` if one already uses it.
    pub fn add_source(
        &mut self,
        address: SocketAddr,
        config: SourceConfig,
        now: Instant,
    ) -> Option<SourceId> {
        if self.sources.values().any(|s| s.address() == address) {
            return None;
        }
        let id = SourceId(self.next_id);
        self.next_id += 1;
        self.sources.insert(id, Source::new(address, config, now));
        self.events.push_back(Event::SourceAdded(id, address));
        Some(id)
    }

    /// Removes a source; its id is never used again.
    pub fn remove_source(&mut self, id: SourceId) {
        self.sources.remove(&id);
        self.name_of.remove(&id);
        self.to_replace.remove(&id);
        self.falseticker_rounds.remove(&id);
    }

    /// The source at `address`, if one is.
    pub fn source_at(&self, address: SocketAddr) -> Option<SourceId> {
        self.sources
            .iter()
            .find(|(_, s)| s.address() == address)
            .map(|(id, _)| *id)
    }

    /// The operator's `remove-source`: the source at `address` goes, and with it the `server`
    /// name it came from (a pool's name stays, with its other sources).
    pub fn remove_address(&mut self, address: SocketAddr) -> Result<SourceId, CommandError> {
        let id = self
            .source_at(address)
            .ok_or(CommandError::NoSuchSource(address))?;
        let name = self.name_of.get(&id).copied();
        let server = name
            .and_then(|n| self.names.get(&n))
            .is_some_and(|n| n.kind == NameKind::Server);
        match name {
            Some(name) if server => self.remove_name(name),
            _ => self.remove_source(id),
        }
        Ok(id)
    }

    /// The operator's `offline` or `online`: for the source at `address`, or every source. An
    /// offline source is not polled; its samples, reach and poll stay. Back online, it is
    /// polled at once. Returns how many sources changed.
    pub fn set_online(
        &mut self,
        address: Option<SocketAddr>,
        online: bool,
        now: Instant,
    ) -> Result<usize, CommandError> {
        let targets: Vec<SourceId> = match address {
            Some(address) => vec![
                self.source_at(address)
                    .ok_or(CommandError::NoSuchSource(address))?,
            ],
            None => self.sources.keys().copied().collect(),
        };
        let mut changed = 0;
        for id in targets {
            if let Some(source) = self.sources.get_mut(&id) {
                changed += usize::from(source.is_online() != online);
                source.set_online(online, now);
            }
        }
        Ok(changed)
    }

    /// The operator's `burst`: every online source sends four requests from `now` (see
    /// [`Source::burst`]). Returns how many sources burst.
    pub fn burst(&mut self, now: Instant) -> usize {
        let mut count = 0;
        for source in self
            .sources
            .values_mut()
            .filter(|s| s.next_poll().is_some())
        {
            source.burst(now);
            count += 1;
        }
        count
    }

    /// The operator's `makestep` at `now` and local time `local`: a selection round whose
    /// offset is stepped at once, through the events like any clock action, whatever the step
    /// and panic thresholds. Returns the step.
    pub fn make_step(
        &mut self,
        now: Instant,
        local: NtpTimestamp,
    ) -> Result<NtpDuration, CommandError> {
        if self.config.sync.monitor_only {
            return Err(CommandError::MonitorOnly);
        }
        self.observe(now, local);
        let update = self.system.make_step(&mut self.sources, local);
        let step = match update.action {
            Some(ClockAction::Step { offset, .. }) => Some(offset),
            _ => None,
        };
        self.events.extend(update.action.map(Event::Clock));
        self.events
            .extend(update.events.into_iter().map(Event::System));
        step.ok_or(CommandError::NoSelection)
    }

    /// The next name to look up at `now`, if any is due.
    pub fn poll_resolve(&mut self, now: Instant) -> Option<(NameId, String)> {
        let (id, name) = self
            .names
            .iter_mut()
            .find(|(_, n)| n.next_lookup.is_some_and(|t| t <= now))?;
        // Asked once: the next try waits for the retry interval unless the answer comes first.
        name.next_lookup = Some(now + RESOLVE_RETRY);
        Some((*id, name.name.clone()))
    }

    /// The addresses a name resolved to (empty if it did not resolve): a server takes its first
    /// address not already in use, a pool as many as it may. A source of the name waiting to be
    /// replaced gives way to a fresh address (never one in use, nor one replaced within
    /// [`REPLACED_MEMORY`]); without one it stays, and the name is looked up again later.
    pub fn handle_resolved(&mut self, now: Instant, name: NameId, addresses: &[SocketAddr]) {
        let Some(entry) = self.names.get(&name) else {
            return;
        };
        let (kind, config) = (entry.kind, entry.config);
        let wanted = match kind {
            NameKind::Server => 1,
            NameKind::Pool { max_sources } => max_sources,
        };
        // Never one in use, nor one replaced within REPLACED_MEMORY; one never replaced before
        // one replaced longer ago.
        let replaced_until = |a: &SocketAddr| {
            self.replaced
                .iter()
                .find(|(r, _)| r == a)
                .map(|(_, until)| *until)
        };
        let mut candidates: Vec<SocketAddr> = addresses
            .iter()
            .copied()
            .filter(|a| {
                replaced_until(a).is_none_or(|until| until <= now)
                    && !self.sources.values().any(|s| s.address() == *a)
            })
            .collect();
        candidates.sort_by_key(|a| replaced_until(a).is_some());
        let mut fresh = candidates.into_iter();
        let leaving: Vec<(SourceId, Replacement)> = self
            .to_replace
            .iter()
            .filter(|(id, _)| self.name_of.get(id) == Some(&name))
            .map(|(id, reason)| (*id, *reason))
            .collect();
        let mut replacements = Vec::new();
        for (old, reason) in leaving {
            let Some(address) = fresh.next() else {
                break;
            };
            replacements.push((old, address, reason));
        }
        let have = self.name_of.values().filter(|n| **n == name).count();
        let vacancies: Vec<SocketAddr> = fresh.take(wanted.saturating_sub(have)).collect();
        for (old, address, reason) in replacements {
            let Some(old_address) = self.sources.get(&old).map(Source::address) else {
                continue;
            };
            self.remove_source(old);
            self.replaced.retain(|(r, _)| *r != old_address);
            if self.replaced.len() == REPLACED_KEPT {
                self.replaced.remove(0);
            }
            self.replaced.push((old_address, now + REPLACED_MEMORY));
            if let Some(id) = self.add_source(address, config, now) {
                self.name_of.insert(id, name);
                self.events.push_back(Event::SourceReplaced {
                    old: (old, old_address),
                    new: (id, address),
                    reason,
                });
            }
        }
        for address in vacancies {
            if let Some(id) = self.add_source(address, config, now) {
                self.name_of.insert(id, name);
            }
        }
        let have = self.name_of.values().filter(|n| **n == name).count();
        let waiting = self
            .to_replace
            .keys()
            .any(|id| self.name_of.get(id) == Some(&name));
        let retry = if addresses.is_empty() {
            RESOLVE_RETRY
        } else {
            crate::source::duration_of(config.min_poll).clamp(REPLACE_RETRY, RESOLVE_RETRY)
        };
        if let Some(entry) = self.names.get_mut(&name) {
            entry.next_lookup = (have < wanted || waiting).then_some(now + retry);
        }
    }

    /// Marks the named sources that should give way to a fresh address of their name: one that
    /// denied us, is unreachable, or was a falseticker for [`FALSETICKER_ROUNDS`] rounds; its
    /// name is looked up again at once (RFC 5905 leaves this to the implementation; chrony
    /// replaces pool sources the same way).
    /// A source that recovered before a fresh address came is no longer marked.
    fn mark_replacements(&mut self, now: Instant) {
        for (id, source) in &self.sources {
            let Some(name) = self.name_of.get(id) else {
                continue;
            };
            let state = self.system.source_state(*id);
            let rounds = self.falseticker_rounds.get(id).copied().unwrap_or(0);
            let reason = if source.is_denied() {
                Replacement::Denied
            } else if state == Some(SourceState::Unreachable) {
                Replacement::Unreachable
            } else if rounds >= FALSETICKER_ROUNDS {
                Replacement::Falseticker
            } else {
                self.to_replace.remove(id);
                continue;
            };
            if self.to_replace.insert(*id, reason).is_none()
                && let Some(entry) = self.names.get_mut(name)
            {
                entry.next_lookup = Some(now);
            }
        }
    }

    /// Counts each source's falseticker rounds after a selection round.
    fn count_falsetickers(&mut self) {
        for id in self.sources.keys() {
            let rounds = self.falseticker_rounds.entry(*id).or_insert(0);
            if self.system.source_state(*id) == Some(SourceState::Falseticker) {
                *rounds += 1;
            } else {
                *rounds = 0;
            }
        }
    }

    /// The next request to send, if a poll is due at `now` and the last request left at least a
    /// sampling separation ago. `cookie` is 64 random bits: the request carries them instead of
    /// our clock's time (RFC 9109, and chrony's practice).
    pub fn poll_transmit(&mut self, now: Instant, cookie: u64) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        let (id, source) = self
            .sources
            .iter_mut()
            .filter(|(_, s)| s.is_due(now))
            .min_by_key(|(_, s)| s.next_poll())?;
        let separated = self
            .last_transmit
            .is_none_or(|last| now >= last + sampling_separation(source.poll()));
        if !separated {
            return None;
        }
        let (mut bytes, wait) = source.poll_transmit(now, NtpTimestamp::from_bits(cookie))?;
        let (id, address, kind) = (*id, source.address(), source.kind());
        // An NTS association without a cookie sends nothing: its poll goes unanswered until a
        // new NTS-KE exchange (see `nts_ke_needed`).
        let nts = match source.nts_mut() {
            Some(session) => Some(session.seal_request(&bytes)?),
            None => None,
        };
        let seal = Seal::with(source.key());
        if kind == AssociationKind::Peer {
            bytes = self.peer_request(&bytes);
        }
        self.last_transmit = Some(now);
        Some(Transmit {
            source: id,
            address,
            bytes: nts.unwrap_or_else(|| seal.seal(bytes)),
            wait,
            kind,
        })
    }

    /// Makes `source` an NTS association with the session of a new NTS-KE exchange (RFC 8915
    /// section 5.7); replaces the session it had.
    pub fn set_nts(&mut self, source: SourceId, session: ClientSession) {
        if let Some(entry) = self.sources.get_mut(&source) {
            entry.set_nts(session);
        }
    }

    /// The NTS associations that need a new NTS-KE exchange: out of cookies, or NAKed.
    pub fn nts_ke_needed(&self) -> impl Iterator<Item = SourceId> + '_ {
        self.sources
            .iter()
            .filter(|(_, s)| s.nts().is_some_and(ClientSession::needs_ke))
            .map(|(id, _)| *id)
    }

    /// A symmetric active request carries our system variables, as a server's reply does, so that
    /// the peer can tell whether we are synchronized, and to whom (RFC 5905 section 9.2: the
    /// peer's loop and stratum checks read them). Its transmit timestamp stays the random cookie,
    /// and origin and receive stay zero: it answers nothing, only asks.
    fn peer_request(&self, bytes: &[u8; 48]) -> [u8; 48] {
        let Ok((mut packet, _)) = Packet::parse(bytes) else {
            return *bytes;
        };
        let local = self
            .last_seen
            .map_or(NtpTimestamp::ZERO, |(_, local, _)| local);
        let snapshot = self.system.serving_snapshot(local);
        crate::server::describe_system(&mut packet, &snapshot, local);
        packet.serialize()
    }

    /// The symmetric peer at `address`, if one is configured: where the shell hands a peer's
    /// packets, which arrive on the server's socket.
    pub fn peer_at(&self, address: SocketAddr) -> Option<SourceId> {
        self.sources
            .iter()
            .find(|(_, s)| s.kind() == AssociationKind::Peer && s.address() == address)
            .map(|(id, _)| *id)
    }

    /// A peer's poll was answered in symmetric passive mode (by the server side) with transmit
    /// timestamp `transmit`, read just before it left: the peer's next packet may answer it.
    pub fn handle_passive_sent(&mut self, source: SourceId, transmit: NtpTimestamp) {
        if let Some(entry) = self.sources.get_mut(&source) {
            entry.passive_sent(transmit);
        }
    }

    /// Handles a datagram that arrived for `source` on the socket its request went out of: T1 is
    /// when that request left, T4 when this arrived, `local_address` the socket's local address.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_reply(
        &mut self,
        now: Instant,
        local: NtpTimestamp,
        source: SourceId,
        t1: NtpTimestamp,
        t4: NtpTimestamp,
        bytes: &[u8],
        local_address: Option<IpAddr>,
    ) {
        self.observe(now, local);
        let limits = self.config.limits;
        let discipline = self.system.discipline();
        let Some(entry) = self.sources.get_mut(&source) else {
            return;
        };
        if let Some(address) = local_address {
            entry.set_local_address(address);
        }
        let outcome = entry.handle_reply(t1, t4, bytes, &limits, discipline);
        if outcome != ReplyOutcome::Accepted {
            self.events.push_back(Event::Reply(source, outcome));
        } else if self.system.has_updated() || self.first_round_complete() {
            self.select(local);
        }
        self.mark_replacements(now);
    }

    /// Handles a broadcast (mode 5) from `from` that arrived at `t4` on a broadcast or multicast
    /// address: the broadcast association of that server takes it (RFC 5905 section 9.2: only
    /// from the server it calibrated against, whatever the port). Returns false, and changes
    /// nothing, when no broadcast association has that address: the shell counts a stray.
    pub fn handle_broadcast(
        &mut self,
        now: Instant,
        local: NtpTimestamp,
        from: SocketAddr,
        t4: NtpTimestamp,
        bytes: &[u8],
    ) -> bool {
        let Some((&id, _)) = self.sources.iter().find(|(_, s)| {
            s.kind() == AssociationKind::Broadcast
                && s.address().ip().to_canonical() == from.ip().to_canonical()
        }) else {
            return false;
        };
        self.observe(now, local);
        let limits = self.config.limits;
        let discipline = self.system.discipline();
        let Some(entry) = self.sources.get_mut(&id) else {
            return false;
        };
        let outcome = entry.handle_broadcast(now, t4, bytes, &limits, discipline);
        if outcome != ReplyOutcome::Accepted {
            self.events.push_back(Event::Reply(id, outcome));
        } else if self.system.has_updated() || self.first_round_complete() {
            self.select(local);
        }
        true
    }

    /// Handles the timers due at `now`: overdue replies, the holdover. Polls that are due are
    /// handed out by [`Client::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant, local: NtpTimestamp) {
        let leaps = self.system.discipline().leaps();
        let leap_due = self
            .last_seen
            .and_then(|(_, seen, _)| leaps.next_change(seen))
            .is_some_and(|change| local - change >= NtpDuration::ZERO);
        self.observe(now, local);
        // A leap second's instant, or a turn of its slew or smear: a disciplined clock runs a
        // round (its update follows the curve); one not (yet) disciplined, a local reference
        // among them, makes the leap itself and reports what it knows of the coming one.
        if leap_due || !self.system.has_updated() {
            if self.system.has_updated() {
                self.select(local);
            } else {
                let update = self.system.leap_round(&mut self.sources, local);
                self.events.extend(update.action.map(Event::Clock));
                self.events
                    .extend(update.events.into_iter().map(Event::System));
            }
        }
        let mut missed = false;
        for source in self.sources.values_mut() {
            missed |= source.handle_timeout(now);
        }
        if missed {
            if !self.system.has_updated() && self.first_round_complete() {
                self.select(local);
            } else {
                let events = self.system.survey(&self.sources, local);
                self.events.extend(events.into_iter().map(Event::System));
            }
        }
        if let Some(event) = self.system.check_holdover(local) {
            self.events.push_back(Event::System(event));
        }
        self.mark_replacements(now);
    }

    /// When the core next needs [`Client::handle_timeout`] or [`Client::poll_transmit`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let polls = self.sources.values().filter_map(|s| {
            let separated = self
                .last_transmit
                .map(|t| t + sampling_separation(s.poll()));
            s.next_poll()
                .map(|due| separated.map_or(due, |ok| due.max(ok)))
        });
        let replies = self.sources.values().filter_map(Source::reply_deadline);
        let sources = polls.chain(replies);
        let names = self.names.values().filter_map(|n| n.next_lookup);
        let holdover = self.system.holdover_deadline().and_then(|deadline| {
            let (instant, local, _) = self.last_seen?;
            let left = (deadline - local).max(NtpDuration::ZERO);
            Some(instant + left.to_std() + Duration::from_millis(1))
        });
        let jump_check = self
            .system
            .has_updated()
            .then(|| self.last_seen.map(|(instant, _, _)| instant + JUMP_CHECK))
            .flatten();
        let leap = self.last_seen.and_then(|(instant, local, uncorrected)| {
            // The uncorrected clock runs with the monotonic one: a clock slewing a leap reaches
            // the local deadline later (or sooner) than its reading says.
            let discipline = self.system.discipline();
            let change = discipline.leaps().next_change(local)?;
            let left = discipline.uncorrected(change) - uncorrected;
            Some(instant + left.max(NtpDuration::ZERO).to_std())
        });
        sources
            .chain(names)
            .chain(holdover)
            .chain(jump_check)
            .chain(leap)
            .min()
    }

    /// Uses `file` (or none) to know the coming leap seconds; the sources' vote decides without
    /// one, or once it has expired.
    pub fn set_leap_file(&mut self, file: Option<LeapFile>) {
        self.system.set_leap_file(file);
    }

    /// The coming leap second, the vote, what is announced, at local time `local`.
    pub fn leap_status(&self, local: NtpTimestamp) -> LeapStatus {
        self.system.discipline().leaps().status(local)
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Notices a local clock that someone else set: it moved by more than the monotonic time and
    /// our own corrections explain. Everything remembered in local time moves with it, so the
    /// sources see the jump as an offset to correct, not as a broken line.
    fn observe(&mut self, now: Instant, local: NtpTimestamp) {
        let mut jumped = false;
        if let Some((before, _, before_uncorrected)) = self.last_seen
            && let Some(elapsed) = now.checked_duration_since(before)
        {
            let elapsed = NtpDuration::from_std(elapsed);
            // The uncorrected clock advanced with the monotonic one; the record of our own steps
            // and slews says what the local clock should read now. The rest was someone else.
            let expected = self
                .system
                .discipline()
                .local_at(before_uncorrected + elapsed);
            let jump = local - expected;
            if jump.abs() > JUMP_THRESHOLD + elapsed.mul_f64(JUMP_TOLERANCE_PPM * 1e-6) {
                self.system.clock_jumped(local, jump, &mut self.sources);
                self.events
                    .push_back(Event::System(SystemEvent::ClockJumped(jump)));
                jumped = true;
            }
        }
        // Before any step of ours below: `local` was read before it.
        let uncorrected = self.system.discipline().uncorrected(local);
        self.last_seen = Some((now, local, uncorrected));
        // The sources' lines still hold in the uncorrected timescale: they already know the offset
        // the jump made, so correct it now rather than at the next reply.
        if jumped && self.system.has_updated() {
            self.select(local);
        }
    }

    fn select(&mut self, local: NtpTimestamp) {
        let update = self.system.select(&mut self.sources, local);
        self.events.extend(update.action.map(Event::Clock));
        self.events
            .extend(update.events.into_iter().map(Event::System));
        self.count_falsetickers();
    }

    /// True once every source has answered a request, or has been asked and given up on. A peer
    /// counts once asked: its answer may wait for its own next poll, and it is a backup, not a
    /// reason to delay the first update by a whole poll interval. A broadcast server is never
    /// asked before its first broadcast, so it never holds the first update back.
    fn first_round_complete(&self) -> bool {
        self.sources.values().all(|s| {
            let asked = s.counters().sent > 0;
            s.samples() > 0
                || !s.is_online()
                || s.kind() == AssociationKind::Broadcast
                || (asked && (!s.is_waiting() || s.kind() == AssociationKind::Peer))
        })
    }

    /// Every source, for `status`, as seen at local time `local`.
    pub fn sources(&self, local: NtpTimestamp) -> Vec<SourceReport> {
        let discipline = self.system.discipline();
        self.sources
            .iter()
            .map(|(id, s)| SourceReport {
                id: *id,
                address: s.address(),
                reach: s.reach(),
                poll: s.poll(),
                stratum: s.last_reply().map_or(0, |r| r.stratum.get()),
                kind: s.kind(),
                estimate: s.estimate(local, discipline),
                state: self
                    .system
                    .source_state(*id)
                    .unwrap_or(SourceState::Rejected(crate::source::Unfit::NoSamples)),
                counters: s.counters(),
                key: s.key().map(|k| k.id()),
                online: s.is_online(),
                nts_cookies: s.nts().map(ClientSession::cookies),
            })
            .collect()
    }

    /// The system variables to serve at local time `local`.
    pub fn serving_snapshot(&self, local: NtpTimestamp) -> SystemSnapshot {
        self.system.serving_snapshot(local)
    }

    /// The last combined offset, if any.
    pub fn last_offset(&self) -> Option<NtpDuration> {
        self.system.last_offset()
    }

    /// The frequency correction, ppm, for a drift file.
    pub fn frequency_ppm(&self) -> f64 {
        self.system.frequency_ppm()
    }

    /// The system peer.
    pub fn system_peer(&self) -> Option<SourceId> {
        self.system.system_peer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Mode, Packet, ReferenceId, Stratum, Version};
    use crate::source::ReplyOutcome;

    const T0: NtpTimestamp = NtpTimestamp::from_parts(3_900_000_000, 0);

    fn s(seconds: f64) -> NtpDuration {
        NtpDuration::from_seconds_f64(seconds)
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 123))
    }

    /// A server `offset` seconds ahead of the client's clock, answering at `t1` + 1 ms.
    fn answer(request: &[u8], t1: NtpTimestamp, offset: f64) -> [u8; 48] {
        let (req, _) = Packet::parse(request).expect("our request parses");
        let server_time = t1 + s(offset + 0.001);
        let mut reply = Packet::client_request(Version::V4, req.poll, server_time);
        reply.mode = Mode::SERVER;
        reply.stratum = Stratum::PRIMARY;
        reply.reference_id = ReferenceId::LOCL;
        reply.origin_timestamp = req.transmit_timestamp;
        reply.receive_timestamp = server_time;
        reply.serialize()
    }

    fn lab() -> SourceConfig {
        SourceConfig {
            min_poll: PollInterval::new(0),
            max_poll: PollInterval::new(2),
            iburst: true,
            ..SourceConfig::default()
        }
    }

    fn clock_actions(client: &mut Client) -> Vec<ClockAction> {
        std::iter::from_fn(|| client.poll_event())
            .filter_map(|e| match e {
                Event::Clock(action) => Some(action),
                _ => None,
            })
            .collect()
    }

    /// A broadcast from a server `offset` s ahead, sent at local time `t3_local`.
    fn broadcast(t3_local: NtpTimestamp, offset: f64) -> [u8; 48] {
        let mut packet =
            Packet::client_request(Version::V4, PollInterval::new(0), t3_local + s(offset));
        packet.mode = Mode::BROADCAST;
        packet.stratum = Stratum::PRIMARY;
        packet.reference_id = ReferenceId::LOCL;
        packet.serialize()
    }

    #[test]
    fn a_broadcast_association_calibrates_then_uses_broadcasts_and_no_other_takes_them() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let server = client.add_source(addr(1), lab(), start).expect("added");
        let broadcast_config = SourceConfig {
            kind: AssociationKind::Broadcast,
            ..lab()
        };
        let id = client
            .add_source(addr(2), broadcast_config, start)
            .expect("added");
        let local = |now: Instant| T0 + NtpDuration::from_std(now - start);
        // A client association never takes a broadcast, even from its own server's address.
        let b = broadcast(local(start), 0.0);
        let taken = client.handle_broadcast(start, local(start), addr(1), local(start), &b);
        assert!(!taken);
        client.remove_source(server);
        // Nothing is asked of the broadcaster before it broadcasts.
        assert!(client.poll_transmit(start, 1).is_none());
        let mut now = start;
        let one_way = 0.0004;
        for round in 0..12u32 {
            now += Duration::from_secs(3);
            let t4 = local(now);
            let b = broadcast(t4 - s(one_way), 0.010 + one_way);
            // From any port of the broadcaster's address.
            let from = SocketAddr::new(addr(2).ip(), 40_000);
            assert!(client.handle_broadcast(now, t4, from, t4, &b));
            if let Some(t) = client.poll_transmit(now, u64::from(round) + 1) {
                assert_eq!(t.kind, AssociationKind::Broadcast);
                let t1 = local(now);
                let reply = answer(&t.bytes, t1, 0.010);
                client.handle_reply(now, t1, id, t1, t1 + s(0.002), &reply, None);
            }
        }
        let report = client.sources(local(now));
        let source = report.iter().find(|r| r.id == id).expect("the source");
        assert_eq!(source.kind, AssociationKind::Broadcast);
        assert_eq!(
            source.counters.sent, 4,
            "four calibration exchanges, then none"
        );
        assert!(source.counters.accepted >= 11, "{:?}", source.counters);
        let offset = source.estimate.expect("estimate").offset;
        assert!((offset - s(0.010)).abs() < s(0.0005), "{offset}");
    }

    #[test]
    fn a_pool_source_that_denies_us_gives_way_to_a_fresh_address_of_the_pool() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let pool = client.add_name("pool.test", NameKind::Pool { max_sources: 2 }, lab(), start);
        let (name, text) = client.poll_resolve(start).expect("asked");
        assert_eq!((name, text.as_str()), (pool, "pool.test"));
        let all = [addr(1), addr(2), addr(3)];
        client.handle_resolved(start, pool, &all);
        let addresses = |client: &Client| {
            let mut a: Vec<SocketAddr> = client.sources(T0).iter().map(|r| r.address).collect();
            a.sort();
            a
        };
        assert_eq!(addresses(&client), [addr(1), addr(2)]);
        // 192.0.2.1 answers its first request with a kiss-o'-death DENY.
        let t = std::iter::from_fn(|| client.poll_transmit(start, 7))
            .find(|t| t.address == addr(1))
            .expect("a request to .1");
        let mut kiss = Packet::parse(&answer(&t.bytes, T0, 0.0)).expect("parses").0;
        kiss.stratum = Stratum::UNSPECIFIED;
        kiss.reference_id = ReferenceId::DENY;
        client.handle_reply(
            start,
            T0,
            t.source,
            T0,
            T0 + s(0.002),
            &kiss.serialize(),
            None,
        );
        // Its name is looked up again at once, and the fresh address takes its place.
        let (again, _) = client.poll_resolve(start).expect("looked up again");
        assert_eq!(again, pool);
        client.handle_resolved(start, pool, &all);
        assert_eq!(addresses(&client), [addr(2), addr(3)]);
        let replaced = std::iter::from_fn(|| client.poll_event()).find_map(|e| match e {
            Event::SourceReplaced { old, new, reason } => Some((old.1, new.1, reason)),
            _ => None,
        });
        assert_eq!(replaced, Some((addr(1), addr(3), Replacement::Denied)));
        // The replaced address is not taken back from a later answer.
        client.handle_resolved(start, pool, &all);
        assert_eq!(addresses(&client), [addr(2), addr(3)]);
    }

    #[test]
    fn an_unreachable_server_stays_until_its_name_gives_another_address() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let name = client.add_name("ntp.test", NameKind::Server, lab(), start);
        client.poll_resolve(start).expect("asked");
        client.handle_resolved(start, name, &[addr(1)]);
        // Nobody answers: after eight unanswered polls it is unreachable.
        let mut now = start;
        let mut looked_up = false;
        for cookie in 1..40 {
            client.poll_transmit(now, cookie);
            now = client.poll_timeout().expect("timer");
            client.handle_timeout(now, T0 + NtpDuration::from_std(now - start));
            if client.poll_resolve(now).is_some() {
                looked_up = true;
                // The name still gives only the same address: the source stays.
                client.handle_resolved(now, name, &[addr(1)]);
                assert_eq!(client.sources(T0).len(), 1);
                assert_eq!(client.sources(T0)[0].address, addr(1));
                break;
            }
        }
        assert!(looked_up, "an unreachable server's name is looked up again");
        // The name now gives another address: it replaces the unreachable one.
        client.handle_resolved(now, name, &[addr(1), addr(9)]);
        assert_eq!(client.sources(T0)[0].address, addr(9));
    }

    #[test]
    fn iburst_then_regular_polls_and_early_wakeups_are_harmless() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let config = SourceConfig {
            min_poll: PollInterval::new(4),
            max_poll: PollInterval::new(4),
            iburst: true,
            ..SourceConfig::default()
        };
        client.add_source(addr(1), config, start).expect("added");
        let mut now = start;
        let mut gaps = Vec::new();
        for cookie in 1..=6 {
            let t = client.poll_transmit(now, cookie).expect("due");
            let (packet, _) = Packet::parse(&t.bytes).expect("parses");
            assert_eq!(packet.transmit_timestamp, NtpTimestamp::from_bits(cookie));
            assert!(
                client.poll_transmit(now, 99).is_none(),
                "one request per poll"
            );
            // Nobody answers: the reply deadline passes, then the next poll.
            let deadline = client.poll_timeout().expect("timer");
            client.handle_timeout(deadline, T0);
            let next = client.poll_timeout().expect("timer");
            assert!(
                client
                    .poll_transmit(next - Duration::from_millis(1), 9)
                    .is_none()
            );
            gaps.push(next - now);
            now = next;
        }
        let expected = [2, 2, 2, 2, 16, 16].map(Duration::from_secs);
        assert_eq!(
            gaps, expected,
            "four burst requests 2 s apart, then 2^minpoll"
        );
    }

    #[test]
    fn a_source_polled_every_4096_s_keeps_the_client_synchronized() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let config = SourceConfig {
            min_poll: PollInterval::new(12),
            max_poll: PollInterval::new(12),
            ..SourceConfig::default()
        };
        let id = client.add_source(addr(1), config, start).expect("added");
        let local = |now: Instant| T0 + NtpDuration::from_std(now - start);
        let (mut now, mut answered) = (start, 0);
        while answered < 3 {
            if let Some(t) = client.poll_transmit(now, answered + 1) {
                let t1 = local(now);
                let reply = answer(&t.bytes, t1, 0.0);
                client.handle_reply(now, t1, id, t1, t1 + s(0.002), &reply, None);
                answered += 1;
            }
            now = client.poll_timeout().expect("a timer");
            client.handle_timeout(now, local(now));
        }
        let events: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::System(SystemEvent::SyncLost))),
            "the holdover outlasts the poll interval: {events:?}"
        );
    }

    #[test]
    fn a_forged_packet_changes_nothing_and_the_genuine_reply_still_counts() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let id = client.add_source(addr(1), lab(), start).expect("added");
        let transmit = client.poll_transmit(start, 42).expect("due");
        let genuine = answer(&transmit.bytes, T0, 0.0);
        // An off-path attacker: +1000 s, as a broadcast, then with a wrong origin, then version 0.
        let forged = Packet::parse(&answer(&transmit.bytes, T0, 1000.0))
            .expect("parses")
            .0;
        for mutate in [
            (|p: &mut Packet| p.mode = Mode::BROADCAST) as fn(&mut Packet),
            |p| p.origin_timestamp = NtpTimestamp::from_bits(43),
            |p| p.version = Version::new(0),
        ] {
            let mut bad = forged;
            mutate(&mut bad);
            client.handle_reply(start, T0, id, T0, T0 + s(0.002), &bad.serialize(), None);
            assert!(matches!(
                client.poll_event(),
                Some(Event::SourceAdded(..)) | Some(Event::Reply(_, ReplyOutcome::Rejected(_)))
            ));
        }
        assert!(
            clock_actions(&mut client).is_empty(),
            "nothing moved the clock"
        );
        client.handle_reply(start, T0, id, T0, T0 + s(0.002), &genuine, None);
        let report = client.sources(T0)[0];
        assert_eq!(report.counters.accepted, 1, "{report:?}");
        assert_eq!(report.counters.rejected, 3);
        let actions = clock_actions(&mut client);
        assert!(
            matches!(actions[..], [ClockAction::Slew { offset, .. }] if offset.abs() < s(0.001)),
            "{actions:?}"
        );
        // The same reply again is a duplicate: ignored.
        client.handle_reply(start, T0, id, T0, T0 + s(0.002), &genuine, None);
        assert_eq!(client.sources(T0)[0].counters.ignored, 1);
    }

    #[test]
    fn an_exchange_that_straddles_a_step_is_no_sample() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let a = client.add_source(addr(1), lab(), start).expect("added");
        let b = client.add_source(addr(2), lab(), start).expect("added");
        let ta = client.poll_transmit(start, 1).expect("due");
        assert!(
            client.poll_transmit(start, 2).is_none(),
            "a separation apart"
        );
        let separated = start + sampling_separation(PollInterval::new(0));
        assert_eq!(client.poll_timeout(), Some(separated));
        let tb = client.poll_transmit(separated, 2).expect("due");
        assert_eq!((ta.source, tb.source), (a, b));
        // Source a answers 0.5 s ahead; the first update waits for b's first answer.
        client.handle_reply(
            start,
            T0,
            a,
            T0,
            T0 + s(0.002),
            &answer(&ta.bytes, T0, 0.5),
            None,
        );
        assert!(
            clock_actions(&mut client).is_empty(),
            "waits for b's first answer"
        );
        // a's second request went out before the step; its reply comes after it.
        let t2 = start + Duration::from_secs(2);
        let in_flight = client.poll_transmit(t2, 3).expect("a's next burst request");
        assert_eq!(in_flight.source, a);
        let reply = answer(&in_flight.bytes, T0 + s(2.0), 0.5);
        let b_reply = answer(&tb.bytes, T0, 0.5);
        let soon = start + Duration::from_millis(2);
        client.handle_reply(soon, T0 + s(0.002), b, T0, T0 + s(0.002), &b_reply, None);
        let before = client.sources(T0)[0].counters;
        let actions = clock_actions(&mut client);
        assert!(
            matches!(actions[..], [ClockAction::Step { .. }]),
            "{actions:?}"
        );
        // What we serve is dated in the stepped clock's time, never after our transmit times.
        let reference = client.serving_snapshot(T0).reference_time;
        assert!(
            (reference - (T0 + s(0.502))).abs() < s(0.01),
            "reference time {reference:?} after a +0.5 s step at T0 + 2 ms"
        );
        let later = t2 + Duration::from_millis(2);
        client.handle_reply(
            later,
            T0 + s(2.502),
            a,
            T0 + s(2.0),
            T0 + s(2.502),
            &reply,
            None,
        );
        assert!(
            !std::iter::from_fn(|| client.poll_event())
                .any(|e| matches!(e, Event::System(SystemEvent::ClockJumped(_)))),
            "our own step is no jump"
        );
        let after = client.sources(T0)[0].counters;
        assert_eq!(after.ignored, before.ignored + 1, "{after:?}");
        assert_eq!(after.accepted, before.accepted);
    }

    fn with_options(selection: crate::source::SelectOptions) -> SourceConfig {
        SourceConfig { selection, ..lab() }
    }

    /// Polls `id` at `now` (local time T0 + the seconds since `start`) and answers `offset`
    /// seconds ahead over a round trip of `delay`.
    fn exchange(client: &mut Client, id: SourceId, now: Instant, offset: f64, delay: f64) {
        let t = client.poll_transmit(now, 9).expect("a poll is due");
        assert_eq!(t.source, id);
        let local = T0 + NtpDuration::from_std(now.duration_since(START.with(|s| *s)));
        let reply = answer(&t.bytes, local, offset);
        client.handle_reply(now, local, id, local, local + s(delay), &reply, None);
    }

    thread_local! {
        /// The instant local time T0 stands for in [`exchange`].
        static START: Instant = Instant::now();
    }

    fn start() -> Instant {
        START.with(|s| *s)
    }

    #[test]
    fn a_noselect_source_is_measured_and_never_selected() {
        let start = start();
        let mut client = Client::new(ClientConfig::default());
        let noselect = crate::source::SelectOptions {
            noselect: true,
            ..Default::default()
        };
        let id = client
            .add_source(addr(1), with_options(noselect), start)
            .expect("added");
        exchange(&mut client, id, start, 0.5, 0.002);
        let report = client.sources(T0)[0];
        assert_eq!((report.counters.accepted, report.reach), (1, 1));
        assert!(report.estimate.is_some(), "measured");
        assert_eq!(
            report.state,
            SourceState::Rejected(crate::source::Unfit::NoSelect)
        );
        assert!(clock_actions(&mut client).is_empty());
    }

    #[test]
    fn a_source_with_min_samples_waits_for_them() {
        let start = start();
        let mut client = Client::new(ClientConfig::default());
        let two = crate::source::SelectOptions {
            min_samples: 2,
            ..Default::default()
        };
        let id = client
            .add_source(addr(1), with_options(two), start)
            .expect("added");
        exchange(&mut client, id, start, 0.5, 0.002);
        assert_eq!(
            client.sources(T0)[0].state,
            SourceState::Rejected(crate::source::Unfit::TooFewSamples { have: 1, need: 2 })
        );
        assert!(clock_actions(&mut client).is_empty());
        let next = client.poll_timeout().expect("the burst's next poll");
        exchange(&mut client, id, next, 0.5, 0.002);
        assert_eq!(client.sources(T0)[0].state, SourceState::Selected);
        assert_eq!(clock_actions(&mut client).len(), 1);
    }

    #[test]
    fn a_reply_over_maxdelay_is_rejected_but_the_source_is_reachable() {
        let start = start();
        let mut client = Client::new(ClientConfig::default());
        let config = SourceConfig {
            max_delay: Some(s(0.010)),
            ..lab()
        };
        let id = client.add_source(addr(1), config, start).expect("added");
        exchange(&mut client, id, start, 0.5, 0.050);
        let report = client.sources(T0)[0];
        assert_eq!(
            (
                report.counters.accepted,
                report.counters.rejected,
                report.reach
            ),
            (0, 1, 1)
        );
        assert!(report.estimate.is_none());
        assert!(clock_actions(&mut client).is_empty());
        // A fast reply is used.
        let next = client.poll_timeout().expect("the burst's next poll");
        exchange(&mut client, id, next, 0.5, 0.004);
        assert_eq!(client.sources(T0)[0].counters.accepted, 1);
        assert_eq!(clock_actions(&mut client).len(), 1);
    }

    #[test]
    fn makestep_steps_what_would_be_slewed_and_is_refused_without_a_source_or_in_monitor_mode() {
        let start = start();
        let mut config = ClientConfig::default();
        config.sync.discipline.step_threshold = s(100.0);
        let mut client = Client::new(config);
        assert_eq!(client.make_step(start, T0), Err(CommandError::NoSelection));
        let id = client.add_source(addr(1), lab(), start).expect("added");
        exchange(&mut client, id, start, 0.5, 0.002);
        assert!(matches!(
            clock_actions(&mut client)[..],
            [ClockAction::Slew { .. }]
        ));
        let step = client.make_step(start, T0).expect("stepped");
        assert!((step - s(0.5)).abs() < s(0.002), "{step:?}");
        let events: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
        assert!(
            events.iter().any(
                |e| matches!(e, Event::Clock(ClockAction::Step { offset, .. }) if *offset == step)
            ),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::System(SystemEvent::Step(_))))
        );
        let mut monitor = ClientConfig::default();
        monitor.sync.monitor_only = true;
        assert_eq!(
            Client::new(monitor).make_step(start, T0),
            Err(CommandError::MonitorOnly)
        );
    }

    #[test]
    fn burst_sends_four_requests_and_offline_sources_are_not_polled() {
        let start = start();
        let mut client = Client::new(ClientConfig::default());
        let slow = SourceConfig {
            min_poll: PollInterval::new(6),
            max_poll: PollInterval::new(6),
            ..SourceConfig::default()
        };
        let id = client.add_source(addr(1), slow, start).expect("added");
        client.poll_transmit(start, 1).expect("the first poll");
        let later = start + Duration::from_secs(1);
        assert!(client.poll_transmit(later, 2).is_none(), "64 s to the next");
        assert_eq!(client.burst(later), 1);
        let mut sent = 0;
        let mut now = later;
        while now < later + Duration::from_secs(10) {
            if client.poll_transmit(now, 3).is_some() {
                sent += 1;
            }
            now = client
                .poll_timeout()
                .expect("timer")
                .max(now + Duration::from_millis(100));
        }
        assert_eq!(sent, 4, "four requests 2 s apart, then the 64 s poll");
        // Offline: never polled, whatever the time; its counters stay.
        assert_eq!(client.set_online(None, false, now), Ok(1));
        assert!(
            client
                .poll_timeout()
                .is_none_or(|t| client.poll_transmit(t, 4).is_none())
        );
        assert!(
            client
                .poll_transmit(now + Duration::from_secs(3600), 4)
                .is_none()
        );
        assert!(!client.sources(T0)[0].online);
        assert_eq!(client.burst(now), 0, "an offline source does not burst");
        // Online again: polled at once.
        let back = now + Duration::from_secs(3600);
        assert_eq!(client.set_online(Some(addr(1)), true, back), Ok(1));
        assert_eq!(client.poll_transmit(back, 5).map(|t| t.source), Some(id));
        assert_eq!(
            client.set_online(Some(addr(9)), false, back),
            Err(CommandError::NoSuchSource(addr(9)))
        );
    }

    #[test]
    fn replacing_the_configured_names_keeps_what_did_not_change() {
        let start = start();
        let mut client = Client::new(ClientConfig::default());
        let spec = |last: u8, config: SourceConfig| NameSpec {
            name: addr(last).to_string(),
            kind: NameKind::Server,
            config,
        };
        let first = [spec(1, lab()), spec(2, lab()), spec(3, lab())];
        assert_eq!(client.replace_names(&first, start).added.len(), 3);
        client.add_operator_name(&addr(4).to_string(), NameKind::Server, lab(), start);
        while let Some((id, name)) = client.poll_resolve(start) {
            let address: SocketAddr = name.parse().expect("an address");
            client.handle_resolved(start, id, &[address]);
        }
        let ids: Vec<SourceId> = client.sources(T0).iter().map(|r| r.id).collect();
        exchange(&mut client, ids[0], start, 0.0, 0.002);
        let before = client.sources(T0)[0];
        let prefer = with_options(crate::source::SelectOptions {
            prefer: true,
            ..Default::default()
        });
        let second = [spec(1, lab()), spec(3, prefer), spec(5, lab())];
        let change = client.replace_names(&second, start);
        assert_eq!(
            change,
            NamesChange {
                added: vec![addr(5).to_string()],
                removed: vec![addr(2).to_string()],
                changed: vec![addr(3).to_string()],
                unchanged: 1,
            }
        );
        let after = client.sources(T0);
        let addresses: Vec<SocketAddr> = after.iter().map(|r| r.address).collect();
        assert_eq!(
            addresses,
            [addr(1), addr(3), addr(4)],
            "the operator's stays"
        );
        assert_eq!(after[0], before, "untouched");
        assert_eq!(after[1].id, ids[2], "reconfigured in place");
        assert_eq!(
            client.poll_resolve(start).map(|(_, n)| n),
            Some(addr(5).to_string())
        );
        // remove-source takes a server's name with it: it is not resolved again.
        assert_eq!(client.remove_address(addr(1)), Ok(ids[0]));
        assert_eq!(
            client.remove_address(addr(1)),
            Err(CommandError::NoSuchSource(addr(1)))
        );
        // A reload restores what the file still lists.
        let change = client.replace_names(&second, start + RESOLVE_RETRY);
        assert_eq!(change.added, [addr(1).to_string()]);
    }

    #[test]
    fn a_server_name_gives_one_address_and_a_pool_several_never_twice() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let server = client.add_name("dual.example", NameKind::Server, lab(), start);
        let pool = client.add_name(
            "pool.example",
            NameKind::Pool { max_sources: 3 },
            lab(),
            start,
        );
        let mut asked = Vec::new();
        while let Some((id, name)) = client.poll_resolve(start) {
            asked.push((id, name));
        }
        assert_eq!(asked.len(), 2);
        let v6: SocketAddr = "[2001:db8::1]:123".parse().expect("address");
        client.handle_resolved(start, server, &[addr(1), v6]);
        client.handle_resolved(start, pool, &[addr(1), addr(2), addr(3), addr(4), addr(5)]);
        let addresses: Vec<SocketAddr> = client.sources(T0).iter().map(|r| r.address).collect();
        assert_eq!(addresses, [addr(1), addr(2), addr(3), addr(4)]);
        assert!(
            client.poll_resolve(start + RESOLVE_RETRY).is_none(),
            "both complete"
        );
        // A name that did not resolve is asked again after the retry interval.
        let missing = client.add_name("missing.example", NameKind::Server, lab(), start);
        assert!(client.poll_resolve(start).is_some());
        client.handle_resolved(start, missing, &[]);
        assert!(client.poll_resolve(start).is_none());
        assert_eq!(
            client.poll_resolve(start + RESOLVE_RETRY).map(|(id, _)| id),
            Some(missing)
        );
    }

    #[test]
    fn a_late_reply_is_unexpected_and_kiss_of_death_deny_stops_polling() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let id = client.add_source(addr(1), lab(), start).expect("added");
        let t = client.poll_transmit(start, 5).expect("due");
        let deadline = start + t.wait;
        client.handle_timeout(deadline, T0 + s(1.0));
        client.handle_reply(
            deadline,
            T0,
            id,
            T0,
            T0 + s(1.0),
            &answer(&t.bytes, T0, 0.0),
            None,
        );
        assert_eq!(client.sources(T0)[0].counters.ignored, 1);
        // DENY: no more requests, ever.
        let next = client.poll_timeout().expect("the next poll");
        let t = client.poll_transmit(next, 6).expect("due");
        let mut kiss = Packet::parse(&answer(&t.bytes, T0, 0.0)).expect("parses").0;
        kiss.stratum = Stratum::UNSPECIFIED;
        kiss.reference_id = ReferenceId::DENY;
        client.handle_reply(next, T0, id, T0, T0 + s(0.002), &kiss.serialize(), None);
        assert_eq!(client.poll_timeout(), None);
        assert_eq!(
            client.sources(T0)[0].state,
            SourceState::Rejected(crate::source::Unfit::NoSamples)
        );
        assert!(
            client
                .poll_transmit(next + Duration::from_secs(3600), 7)
                .is_none()
        );
    }

    fn peer_config() -> SourceConfig {
        SourceConfig {
            kind: AssociationKind::Peer,
            ..lab()
        }
    }

    /// A peer `offset` seconds ahead answering `request` in `mode`, stratum 2, with `refid`.
    fn peer_answer(request: &[u8], t1: NtpTimestamp, mode: Mode, refid: ReferenceId) -> Packet {
        let mut reply = Packet::parse(&answer(request, t1, 0.0)).expect("parses").0;
        reply.mode = mode;
        reply.stratum = Stratum::new(2);
        reply.reference_id = refid;
        reply
    }

    #[test]
    fn a_peer_is_polled_in_mode_1_with_our_system_variables_and_answered_in_mode_1_or_2() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let id = client
            .add_source(addr(1), peer_config(), start)
            .expect("added");
        assert_eq!(client.peer_at(addr(1)), Some(id));
        assert_eq!(client.peer_at(addr(2)), None);
        let t = client.poll_transmit(start, 42).expect("due");
        assert_eq!(t.kind, AssociationKind::Peer);
        let request = Packet::parse(&t.bytes).expect("parses").0;
        assert_eq!(request.mode, Mode::SYMMETRIC_ACTIVE);
        assert_eq!(request.transmit_timestamp, NtpTimestamp::from_bits(42));
        assert_eq!(
            request.origin_timestamp,
            NtpTimestamp::ZERO,
            "asks, answers nothing"
        );
        assert_eq!(
            request.stratum,
            Stratum::UNSYNCHRONIZED,
            "not synchronized yet"
        );
        // A server's mode 4 does not answer a peer's request: rejected, still outstanding.
        let mode4 = answer(&t.bytes, T0, 0.0);
        client.handle_reply(start, T0, id, T0, T0 + s(0.002), &mode4, None);
        // Nor does a mode 2 whose origin is not our transmit (bogus).
        let mut bogus = peer_answer(&t.bytes, T0, Mode::SYMMETRIC_PASSIVE, ReferenceId::LOCL);
        bogus.origin_timestamp = NtpTimestamp::from_bits(41);
        client.handle_reply(start, T0, id, T0, T0 + s(0.002), &bogus.serialize(), None);
        let report = client.sources(T0)[0];
        assert_eq!((report.counters.rejected, report.counters.accepted), (2, 0));
        assert_eq!(report.kind, AssociationKind::Peer);
        // The genuine mode 2 answer is a sample; the same packet again is a duplicate.
        let genuine =
            peer_answer(&t.bytes, T0, Mode::SYMMETRIC_PASSIVE, ReferenceId::LOCL).serialize();
        client.handle_reply(start, T0, id, T0, T0 + s(0.002), &genuine, None);
        client.handle_reply(start, T0, id, T0, T0 + s(0.002), &genuine, None);
        let report = client.sources(T0)[0];
        assert_eq!((report.counters.accepted, report.counters.ignored), (1, 1));
        assert_eq!(report.stratum, 2);
        // The next poll is answered by the peer's own mode 1 poll (chrony's way): also a sample,
        // and its duplicate is ignored even while our next request is outstanding.
        let next = client.poll_timeout().expect("timer");
        client.handle_timeout(next, T0 + s(1.0));
        let t = client.poll_transmit(next, 43).expect("due");
        let mut active = peer_answer(
            &t.bytes,
            T0 + s(1.0),
            Mode::SYMMETRIC_ACTIVE,
            ReferenceId::LOCL,
        );
        active.origin_timestamp = NtpTimestamp::from_bits(43);
        let active = active.serialize();
        client.handle_reply(
            next,
            T0 + s(1.0),
            id,
            T0 + s(1.0),
            T0 + s(1.002),
            &active,
            None,
        );
        assert_eq!(client.sources(T0)[0].counters.accepted, 2);
        // The first update set us to the peer's stratum + 1: our next poll says so.
        let later = client.poll_timeout().expect("timer");
        client.handle_timeout(later, T0 + s(2.0));
        let t = client.poll_transmit(later, 44).expect("due");
        let request = Packet::parse(&t.bytes).expect("parses").0;
        assert_eq!(request.stratum, Stratum::new(3));
        assert_eq!(request.reference_id, ReferenceId::from_ip(addr(1).ip()));
        client.handle_reply(
            later,
            T0 + s(2.0),
            id,
            T0 + s(2.0),
            T0 + s(2.002),
            &active,
            None,
        );
        assert_eq!(client.sources(T0)[0].counters.ignored, 2, "a duplicate");
    }

    #[test]
    fn a_client_association_never_accepts_a_symmetric_packet() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let id = client.add_source(addr(1), lab(), start).expect("added");
        let t = client.poll_transmit(start, 42).expect("due");
        assert_eq!(
            Packet::parse(&t.bytes).expect("parses").0.mode,
            Mode::CLIENT
        );
        for mode in [
            Mode::SYMMETRIC_ACTIVE,
            Mode::SYMMETRIC_PASSIVE,
            Mode::BROADCAST,
        ] {
            let reply = peer_answer(&t.bytes, T0, mode, ReferenceId::LOCL).serialize();
            client.handle_reply(start, T0, id, T0, T0 + s(0.002), &reply, None);
        }
        let report = client.sources(T0)[0];
        assert_eq!((report.counters.rejected, report.counters.accepted), (3, 0));
        assert!(clock_actions(&mut client).is_empty());
    }

    #[test]
    fn a_peer_synchronized_to_us_is_a_loop_and_not_selectable() {
        // One exchange with a peer whose reference ID is `refid`, heard on our address `us`.
        let exchange = |refid: IpAddr, us: IpAddr| {
            let start = Instant::now();
            let mut client = Client::new(ClientConfig::default());
            let id = client
                .add_source(addr(1), peer_config(), start)
                .expect("added");
            let t = client.poll_transmit(start, 42).expect("due");
            let reply = peer_answer(
                &t.bytes,
                T0,
                Mode::SYMMETRIC_PASSIVE,
                ReferenceId::from_ip(refid),
            );
            client.handle_reply(
                start,
                T0,
                id,
                T0,
                T0 + s(0.002),
                &reply.serialize(),
                Some(us),
            );
            client
        };
        // The peer says its reference is our address: it is synchronized to us.
        let us: IpAddr = "127.0.0.3".parse().expect("address");
        let mut client = exchange(us, us);
        let report = client.sources(T0)[0];
        assert_eq!(report.counters.accepted, 1);
        assert_eq!(
            report.state,
            SourceState::Rejected(crate::source::Unfit::Loop)
        );
        assert!(clock_actions(&mut client).is_empty(), "never follows it");
        // 127.0.0.1 names every host: it signals no loop.
        let localhost: IpAddr = "127.0.0.1".parse().expect("address");
        let other = exchange(localhost, localhost);
        assert_eq!(other.sources(T0)[0].state, SourceState::Selected);
    }

    #[test]
    fn a_peer_poll_that_answers_our_passive_answer_is_a_sample_and_our_poll_stays_outstanding() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let id = client
            .add_source(addr(1), peer_config(), start)
            .expect("added");
        let t = client.poll_transmit(start, 42).expect("due");
        // The peer polled us; the server side answered at T0 + 10 ms (its transmit timestamp).
        let ours = T0 + s(0.010);
        client.handle_passive_sent(id, ours);
        // The peer's next poll carries that as its origin (chrony's way): T1 = our transmit.
        let mut poll = peer_answer(&t.bytes, ours, Mode::SYMMETRIC_ACTIVE, ReferenceId::LOCL);
        poll.origin_timestamp = ours;
        let bytes = poll.serialize();
        client.handle_reply(start, T0, id, T0, ours + s(0.002), &bytes, None);
        let report = client.sources(T0)[0];
        assert_eq!(
            (report.counters.accepted, report.reach),
            (1, 1),
            "{report:?}"
        );
        let delay = report.estimate.expect("a sample").delay;
        assert!(
            delay < s(0.0025),
            "T1 is the passive answer's transmit: {delay:?}"
        );
        // Used once; our own poll is still awaited and its genuine answer still counts.
        client.handle_reply(start, T0, id, T0, ours + s(0.003), &bytes, None);
        assert_eq!(client.sources(T0)[0].counters.accepted, 1);
        let genuine =
            peer_answer(&t.bytes, T0, Mode::SYMMETRIC_PASSIVE, ReferenceId::LOCL).serialize();
        client.handle_reply(start, T0, id, T0, T0 + s(0.002), &genuine, None);
        assert_eq!(client.sources(T0)[0].counters.accepted, 2);
    }

    #[test]
    fn a_silent_peer_does_not_delay_the_first_update() {
        let start = Instant::now();
        let mut client = Client::new(ClientConfig::default());
        let server = client.add_source(addr(1), lab(), start).expect("added");
        client
            .add_source(addr(2), peer_config(), start)
            .expect("added");
        let ts = client.poll_transmit(start, 1).expect("the server's poll");
        let separated = client.poll_timeout().expect("timer");
        let tp = client.poll_transmit(separated, 2).expect("the peer's poll");
        assert_eq!(
            tp.wait,
            Duration::from_secs(1),
            "a peer is awaited a whole poll"
        );
        let reply = answer(&ts.bytes, T0, 0.0);
        client.handle_reply(separated, T0, server, T0, T0 + s(0.002), &reply, None);
        assert!(
            matches!(clock_actions(&mut client)[..], [ClockAction::Slew { .. }]),
            "the server's answer updates the clock at once"
        );
    }
}
