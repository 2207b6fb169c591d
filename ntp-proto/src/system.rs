//! System variables (RFC 5905 section 11.2.3 and appendix A.5.5.7): what this host tells its
//! clients about its own synchronization.

use std::net::IpAddr;

use std::collections::BTreeMap;

use crate::discipline::{ClockAction, Discipline, DisciplineConfig, Estimate};
use crate::leap::{self, Leap, LeapFile, LeapKind, LeapMode, LeapOrigin};
use crate::packet::{LeapIndicator, PollInterval, Precision, ReferenceId, Stratum};
use crate::sample::{MIN_DISPERSION, PHI};
use crate::select::{Candidate, Selection, Verdict, select};
use crate::source::{ReplyInfo, Source, SourceEstimate, SourceId, Unfit};
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
    /// error we add (its scatter and the system's, its dispersion, the offset being corrected).
    pub fn synchronized_to(
        address: IpAddr,
        reply: &ReplyInfo,
        estimate: &SourceEstimate,
        system_jitter: NtpDuration,
        precision: Precision,
        now: NtpTimestamp,
    ) -> Self {
        let jitter = estimate
            .jitter
            .to_seconds_f64()
            .hypot(system_jitter.to_seconds_f64());
        let added = (NtpDuration::from_seconds_f64(estimate.offset_sd.min(1e6))
            + estimate.offset.abs())
        .max(MIN_DISPERSION);
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

/// What the system process is configured to do.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct SyncConfig {
    /// How many sources must agree before the clock is adjusted.
    pub min_sources: usize,
    /// After this long without a clock update we are no longer synchronized; never less than two
    /// of the system peer's poll intervals, so that a source that answers every poll keeps us
    /// synchronized at any poll interval.
    pub holdover: NtpDuration,
    /// Measure only, never adjust the clock (like `chronyd -x`).
    pub monitor_only: bool,
    /// Step, slew and panic thresholds, the clock's slew rate and frequency limit.
    pub discipline: DisciplineConfig,
    /// A local reference clock (stratum, reference ID) to serve while no source is selected,
    /// like chrony's `local stratum N`.
    pub local_reference: Option<(Stratum, ReferenceId)>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            min_sources: 1,
            holdover: NtpDuration::from_seconds(3600),
            monitor_only: false,
            discipline: DisciplineConfig::default(),
            local_reference: None,
        }
    }
}

/// How the last selection round saw one source.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SourceState {
    /// The system peer.
    Selected,
    /// Agreed with the majority and survived clustering (or was pruned by it).
    Candidate,
    /// Its interval missed the majority's intersection.
    Falseticker,
    /// No reply to the last eight polls.
    Unreachable,
    /// Not fit for selection for another reason.
    Rejected(Unfit),
}

impl SourceState {
    /// The name `status` prints.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Selected => "selected",
            Self::Candidate => "candidate",
            Self::Falseticker => "falseticker",
            Self::Unreachable => "unreachable",
            Self::Rejected(_) => "rejected",
        }
    }
}

/// Something an operator should hear about, one log line each.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum SystemEvent {
    /// The clock was told to step by this much.
    Step(NtpDuration),
    /// An offset beyond the panic threshold was refused.
    Refused(NtpDuration),
    /// Synchronized to this source.
    SyncGained(SourceId),
    /// The system peer changed to this source.
    PeerChanged(SourceId),
    /// Not synchronized any more: no agreement, or the holdover ran out.
    SyncLost,
    /// This source changed state.
    SourceChanged(SourceId, SourceState),
    /// The local clock was set by someone else, by this much.
    ClockJumped(NtpDuration),
    /// The coming leap second changed: now this one (and where it is known from), or none.
    LeapPending(Option<(Leap, LeapOrigin)>),
    /// The correction for this leap second began (its instant, or its slew or smear window).
    LeapBegun(Leap),
    /// The clock should be told of this leap second, which it is to make itself at midnight (in
    /// `step` mode, while it is announced), or that none is coming: a kernel clock (STA_INS,
    /// STA_DEL) makes the leap then, and [`ClockAction::Leap`] finds it made.
    LeapArm(Option<LeapKind>),
}

/// The result of a selection round.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Update {
    /// What to do to the clock, if anything.
    pub action: Option<ClockAction>,
    /// What happened.
    pub events: Vec<SystemEvent>,
}

/// A correction is spread over this fraction of the system peer's poll interval at most.
const SETTLE_FRACTION: f64 = 0.5;
/// ... and over less the more it exceeds this many standard errors of the estimate.
const SETTLE_NOISE: f64 = 100.0;

/// How long to spread a correction of `offset` known to `offset_sd` (chrony's idea, corrtimeratio:
/// the larger a correction against the noise, the faster it is made). A correction within the
/// noise is spread over half the poll interval, so the clock's frequency never jumps by
/// more than the noise demands; one far beyond the noise (a new frequency just learned, an offset
/// after an outage) is made in proportionally less time.
fn settle_time(offset: NtpDuration, offset_sd: f64, poll: PollInterval) -> NtpDuration {
    let offset = offset.to_seconds_f64().abs();
    let share = if offset > 0.0 {
        (SETTLE_NOISE * offset_sd / offset).min(1.0)
    } else {
        1.0
    };
    poll.to_duration().mul_f64(SETTLE_FRACTION * share)
}

/// What a selection round chose: the system peer, the combined estimate, the system jitter, and
/// whether the operator asked for a step.
#[derive(Clone, Copy, Debug)]
struct Chosen {
    peer: SourceId,
    estimate: Estimate,
    system_jitter: NtpDuration,
    step: bool,
}

/// A source's fitness in one round: what it offers the selection, or why it may not take part.
type Judged = (SourceId, Result<(Candidate, SourceEstimate), Unfit>);

/// The sources as the client core keeps them, by stable id.
pub type Sources = BTreeMap<SourceId, Source>;

/// The system process (RFC 5905 section 11): a selection round over all sources, the
/// discipline, and the system variables that follow.
#[derive(Debug)]
pub struct System {
    config: SyncConfig,
    discipline: Discipline,
    precision: Precision,
    snapshot: SystemSnapshot,
    states: BTreeMap<SourceId, SourceState>,
    peer: Option<SourceId>,
    last_offset: Option<NtpDuration>,
    last_update: Option<NtpTimestamp>,
    /// The holdover in force since the last update: the configured one, or two of the system
    /// peer's poll intervals if that is longer.
    holdover: NtpDuration,
    refusing: bool,
    /// The coming leap and the announcement as last reported.
    leap_pending: Option<(Leap, LeapOrigin)>,
    leap_armed: Option<LeapKind>,
}

impl System {
    /// An unsynchronized system; `frequency_ppm` from a drift file.
    pub fn new(config: SyncConfig, precision: Precision, frequency_ppm: Option<f64>) -> Self {
        Self {
            config,
            discipline: Discipline::new(config.discipline, frequency_ppm),
            precision,
            snapshot: SystemSnapshot::unsynchronized(precision),
            states: BTreeMap::new(),
            peer: None,
            last_offset: None,
            last_update: None,
            holdover: config.holdover,
            refusing: false,
            leap_pending: None,
            leap_armed: None,
        }
    }

    /// Uses `file` (or none) to know the coming leap seconds.
    pub fn set_leap_file(&mut self, file: Option<LeapFile>) {
        self.discipline.set_leap_file(file);
    }

    /// What the leaps ask of the clock at local time `now`, besides the sources' estimate (see
    /// [`Discipline::advance_leap`]), and a change of the coming leap to report.
    pub fn leap_round(&mut self, sources: &mut Sources, now: NtpTimestamp) -> Update {
        let mut update = Update::default();
        // A clock serving its local reference follows no source: it makes the leap itself.
        let primary = self.config.local_reference.is_some() && self.peer.is_none();
        let (began, action) = self.discipline.advance_leap(now, primary);
        update.events.extend(began.map(SystemEvent::LeapBegun));
        if let Some(ClockAction::Leap { offset, .. }) = action {
            update.events.push(SystemEvent::Step(offset));
            sources.values_mut().for_each(Source::clock_stepped);
            if let Some(t) = &mut self.last_update {
                *t += offset;
            }
            self.snapshot.reference_time += offset;
        }
        let status = self.discipline.leaps().status(now);
        if status.pending != self.leap_pending {
            self.leap_pending = status.pending;
            update.events.push(SystemEvent::LeapPending(status.pending));
        }
        let arm =
            LeapKind::from_indicator(status.announced).filter(|_| status.mode == LeapMode::Step);
        if arm != self.leap_armed {
            self.leap_armed = arm;
            update.events.push(SystemEvent::LeapArm(arm));
        }
        update.action = action;
        update
    }

    /// The discipline, whose record of corrections the sources need.
    pub fn discipline(&self) -> &Discipline {
        &self.discipline
    }

    /// Runs a selection round at local time `now` (RFC 5905 sections 11.2 and 11.3): who is fit,
    /// who agrees, the combined offset and frequency, what the discipline makes of them, and our
    /// new system variables.
    pub fn select(&mut self, sources: &mut Sources, now: NtpTimestamp) -> Update {
        self.select_and(sources, now, false)
    }

    /// An operator's `makestep` at local time `now`: a selection round whose offset is stepped
    /// at once, whatever the step threshold (and, after the first update, the panic threshold:
    /// the operator decided). Its update has no action when no source could be selected.
    pub fn make_step(&mut self, sources: &mut Sources, now: NtpTimestamp) -> Update {
        self.select_and(sources, now, true)
    }

    fn select_and(&mut self, sources: &mut Sources, now: NtpTimestamp, step: bool) -> Update {
        let mut update = self.leap_round(sources, now);
        if update.action.is_some() {
            // The leap second itself this round; the sources' estimate is applied at the next.
            return update;
        }
        let (fit, selection) = self.judge(sources, now, &mut update);
        let announced: Vec<LeapIndicator> = fit
            .iter()
            .zip(&selection.verdicts)
            .filter(|(_, v)| matches!(v, Verdict::Survivor | Verdict::SystemPeer))
            .filter_map(|((id, _, _), _)| sources.get(id)?.last_reply().map(|r| r.leap))
            .collect();
        self.discipline.set_leap_vote(now, leap::vote(&announced));
        let Some(combined) = selection.combined else {
            // Sources that disagree (or too few agreeing) end synchronization at once; sources
            // that merely have no usable samples (unreachable) do not: the holdover decides that.
            if !fit.is_empty() && self.peer.take().is_some() {
                update.events.push(SystemEvent::SyncLost);
                self.snapshot = SystemSnapshot::unsynchronized(self.precision);
            }
            return update;
        };
        let peer = fit[combined.system_peer].0;
        let frequency = combined_frequency(&fit, &selection.verdicts);
        let Some(peer_source) = sources.get(&peer) else {
            return update;
        };
        let settle = settle_time(
            combined.offset,
            fit[combined.system_peer].2.offset_sd,
            peer_source.poll(),
        );
        let estimate = Estimate {
            offset: combined.offset,
            frequency,
            settle,
        };
        let chosen = Chosen {
            peer,
            estimate,
            system_jitter: combined.jitter,
            step,
        };
        self.apply(sources, chosen, now, &mut update);
        update
    }

    /// Re-judges every source at `now` without touching the clock or the system variables, so
    /// that a source that stopped answering shows as unreachable between selection rounds.
    pub fn survey(&mut self, sources: &Sources, now: NtpTimestamp) -> Vec<SystemEvent> {
        let mut update = Update::default();
        self.judge(sources, now, &mut update);
        update.events
    }

    /// The fit sources' candidates and estimates, the selection over them, and each source's
    /// recorded state.
    fn judge(
        &mut self,
        sources: &Sources,
        now: NtpTimestamp,
        update: &mut Update,
    ) -> (Vec<(SourceId, Candidate, SourceEstimate)>, Selection) {
        let judged: Vec<Judged> = sources
            .iter()
            .map(|(id, s)| (*id, s.candidate(now, &self.discipline)))
            .collect();
        let fit: Vec<(SourceId, Candidate, SourceEstimate)> = judged
            .iter()
            .filter_map(|(id, judged)| judged.as_ref().ok().map(|(c, e)| (*id, *c, *e)))
            .collect();
        let candidates: Vec<Candidate> = fit.iter().map(|(_, c, _)| *c).collect();
        let previous = self
            .peer
            .and_then(|p| fit.iter().position(|(id, _, _)| *id == p));
        let selection = select(&candidates, self.config.min_sources, previous);
        self.record_states(&judged, &selection.verdicts, update);
        (fit, selection)
    }

    /// Each source's state from its fitness and, for the fit (in order), the selection's verdict.
    fn record_states(&mut self, judged: &[Judged], verdicts: &[Verdict], update: &mut Update) {
        self.states
            .retain(|id, _| judged.iter().any(|(judged_id, _)| judged_id == id));
        let mut verdicts = verdicts.iter();
        for (id, fitness) in judged {
            let state = match fitness {
                Ok(_) => match verdicts.next() {
                    Some(Verdict::SystemPeer) => SourceState::Selected,
                    Some(Verdict::Falseticker) => SourceState::Falseticker,
                    Some(Verdict::Survivor | Verdict::Outlier) | None => SourceState::Candidate,
                },
                Err(Unfit::Unreachable) => SourceState::Unreachable,
                Err(why) => SourceState::Rejected(*why),
            };
            let before = self
                .states
                .insert(*id, state)
                .unwrap_or(SourceState::Rejected(Unfit::NoSamples));
            if before.name() != state.name() && state != SourceState::Selected {
                update.events.push(SystemEvent::SourceChanged(*id, state));
            }
        }
    }

    fn apply(
        &mut self,
        sources: &mut Sources,
        chosen: Chosen,
        now: NtpTimestamp,
        update: &mut Update,
    ) {
        let Chosen {
            peer,
            estimate,
            system_jitter,
            step,
        } = chosen;
        let Some(source) = sources.get(&peer) else {
            return;
        };
        let (Some(reply), Some(mut peer_estimate)) =
            (source.last_reply(), source.estimate(now, &self.discipline))
        else {
            return;
        };
        let address = source.address().ip();
        let peer_poll = NtpDuration::from_std(source.poll_interval());
        let action = if self.config.monitor_only {
            None
        } else if step {
            Some(self.discipline.step_now(now, estimate.offset))
        } else {
            Some(self.discipline.update(now, estimate))
        };
        if let Some(ClockAction::Refused { offset }) = action {
            // One event per episode of refusals, not one per refused update.
            if !std::mem::replace(&mut self.refusing, true) {
                update.events.push(SystemEvent::Refused(offset));
            }
            update.action = action;
            return;
        }
        self.refusing = false;
        if matches!(action, Some(ClockAction::Ignored)) {
            return;
        }
        // The clock reads `now` until the action; a step moves every later reading, the reference
        // time and the holdover's start included (else a server stepped back would advertise a
        // reference time after its transmit time, which clients reject).
        let mut now = now;
        if let Some(ClockAction::Step { offset, .. }) = action {
            update.events.push(SystemEvent::Step(offset));
            sources.values_mut().for_each(Source::clock_stepped);
            // The step corrected the offset at once: what is left is the error to advertise.
            peer_estimate.offset -= offset;
            now += offset;
        }
        match self.peer.replace(peer) {
            None => update.events.push(SystemEvent::SyncGained(peer)),
            Some(old) if old != peer => update.events.push(SystemEvent::PeerChanged(peer)),
            Some(_) => {}
        }
        self.last_offset = Some(estimate.offset);
        self.last_update = Some(now);
        self.holdover = self.config.holdover.max(peer_poll.mul_f64(2.0));
        self.snapshot = SystemSnapshot::synchronized_to(
            address,
            &reply,
            &peer_estimate,
            system_jitter,
            self.precision,
            now,
        );
        update.action = action;
    }

    /// Someone else set the local clock by `jump`: the discipline records it like a step (so the
    /// sources' samples stay valid in the uncorrected timescale), and requests in flight give no
    /// sample.
    pub fn clock_jumped(&mut self, now: NtpTimestamp, jump: NtpDuration, sources: &mut Sources) {
        self.discipline.clock_jumped(now, jump);
        if let Some(t) = &mut self.last_update {
            *t += jump;
        }
        sources.values_mut().for_each(Source::clock_stepped);
    }

    /// When the holdover runs out, in local time, if the system is synchronized.
    pub fn holdover_deadline(&self) -> Option<NtpTimestamp> {
        self.peer?;
        self.last_update.map(|t| t + self.holdover)
    }

    /// Checks the holdover at `now`: after `holdover` without a clock update we tell clients we
    /// are unsynchronized again. Returns the event if that just happened.
    pub fn check_holdover(&mut self, now: NtpTimestamp) -> Option<SystemEvent> {
        let expired = self.last_update.is_some_and(|t| now - t > self.holdover);
        if expired && self.peer.take().is_some() {
            self.snapshot = SystemSnapshot::unsynchronized(self.precision);
            return Some(SystemEvent::SyncLost);
        }
        None
    }

    /// The system variables to serve at `now`: the synchronized ones, else the local reference
    /// clock if one is configured, else unsynchronized.
    pub fn serving_snapshot(&self, now: NtpTimestamp) -> SystemSnapshot {
        let snapshot = match self.config.local_reference {
            Some((stratum, reference_id)) if !self.snapshot.is_synchronized() => {
                SystemSnapshot::local_reference(stratum, reference_id, self.precision, now)
            }
            _ => self.snapshot,
        };
        if !snapshot.is_synchronized() {
            return snapshot;
        }
        // Our own leap decision, not a copy of the system peer's indicator.
        SystemSnapshot {
            leap: self.discipline.leaps().announced(now),
            ..snapshot
        }
    }

    /// How the last round saw a source.
    pub fn source_state(&self, id: SourceId) -> Option<SourceState> {
        self.states.get(&id).copied()
    }

    /// The last combined offset (source minus us), if any.
    pub fn last_offset(&self) -> Option<NtpDuration> {
        self.last_offset
    }

    /// The frequency correction to keep in a drift file, ppm.
    pub fn frequency_ppm(&self) -> f64 {
        self.discipline.frequency_ppm()
    }

    /// The system peer.
    pub fn system_peer(&self) -> Option<SourceId> {
        self.peer
    }

    /// True once the clock has been set from the sources.
    pub fn has_updated(&self) -> bool {
        self.last_update.is_some()
    }
}

/// The survivors' frequencies, weighted by the inverse of their variances (chrony's
/// combine_sources); `None` while no survivor's line has a slope yet.
fn combined_frequency(
    fit: &[(SourceId, Candidate, SourceEstimate)],
    verdicts: &[Verdict],
) -> Option<(f64, f64)> {
    let (sum, weights) = fit
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| v.is_survivor())
        .filter_map(|((_, _, e), _)| e.frequency)
        .filter(|(_, sd)| *sd > 0.0 && sd.is_finite())
        .fold((0.0, 0.0), |(sum, weights), (f, sd)| {
            let w = sd.powi(-2);
            (sum + f * w, weights + w)
        });
    (weights > 0.0).then(|| (sum / weights, weights.powf(-0.5)))
}

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
        let estimate = SourceEstimate {
            offset: NtpDuration::from_seconds_f64(-0.001),
            offset_sd: 0.002,
            frequency: None,
            delay: NtpDuration::from_seconds_f64(0.004),
            jitter: NtpDuration::from_seconds_f64(0.0003),
            root_distance: NtpDuration::from_seconds_f64(0.05),
            samples: 8,
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
        // 0.020 + sqrt(0.0003^2 + 0.0004^2) + max(0.002 + 0.001, 0.005)
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
