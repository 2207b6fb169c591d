//! System variables (RFC 5905 section 11.2.3 and appendix A.5.5.7): what this host tells its
//! clients about its own synchronization.

use std::net::IpAddr;

use crate::discipline::{ClockAction, Discipline, DisciplineConfig};
use crate::filter::FilterOutput;
use crate::packet::{LeapIndicator, PollInterval, Precision, ReferenceId, Stratum};
use crate::sample::{MIN_DISPERSION, PHI};
use crate::select::{Candidate, Combined, Selection, Verdict, select};
use crate::source::{ReplyInfo, Source, Unfit};
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
    /// After this long without a clock update we are no longer synchronized.
    pub holdover: NtpDuration,
    /// Measure only, never adjust the clock (like `chronyd -x`).
    pub monitor_only: bool,
    /// Step, slew and panic thresholds and poll limits.
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
    /// Synchronized to the source at this index.
    SyncGained(usize),
    /// The system peer changed to the source at this index.
    PeerChanged(usize),
    /// Not synchronized any more: no agreement, or the holdover ran out.
    SyncLost,
    /// The source at this index changed state.
    SourceChanged(usize, SourceState),
}

/// The result of a selection round.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Update {
    /// What to do to the clock, if anything.
    pub action: Option<ClockAction>,
    /// What happened.
    pub events: Vec<SystemEvent>,
}

/// The system process (RFC 5905 section 11): a selection round over all sources whenever one of
/// them has a new estimate, the discipline, and the system variables that follow.
#[derive(Debug)]
pub struct System {
    config: SyncConfig,
    discipline: Discipline,
    precision: Precision,
    snapshot: SystemSnapshot,
    states: Vec<SourceState>,
    peer: Option<usize>,
    last_offset: Option<NtpDuration>,
    last_update: Option<NtpTimestamp>,
    refusing: bool,
}

impl System {
    /// An unsynchronized system; `frequency_ppm` from a drift file. Sources may be added at any
    /// time: the slice given to [`System::select`] is the list.
    pub fn new(config: SyncConfig, precision: Precision, frequency_ppm: Option<f64>) -> Self {
        Self {
            config,
            discipline: Discipline::new(config.discipline, frequency_ppm),
            precision,
            snapshot: SystemSnapshot::unsynchronized(precision),
            states: Vec::new(),
            peer: None,
            last_offset: None,
            last_update: None,
            refusing: false,
        }
    }

    /// Runs a selection round at local time `now` (RFC 5905 sections 11.2 and 11.3): who is fit,
    /// who agrees, the combined offset, what the discipline makes of it, and our new system
    /// variables. After a step every source's filter is cleared.
    pub fn select(&mut self, sources: &mut [Source], now: NtpTimestamp) -> Update {
        let mut update = Update::default();
        let (fit, selection) = self.judge(sources, now, &mut update);
        let Some(combined) = selection.combined else {
            // Sources that disagree (or too few agreeing) end synchronization at once; sources
            // that merely have no usable samples (refilling after a step, unreachable) do not:
            // the holdover decides that.
            if !fit.is_empty() && self.peer.take().is_some() {
                update.events.push(SystemEvent::SyncLost);
                self.snapshot = SystemSnapshot::unsynchronized(self.precision);
            }
            return update;
        };
        let peer = fit[combined.system_peer].0;
        self.apply(sources, peer, combined, now, &mut update);
        update
    }

    /// Re-judges every source at `now` without touching the clock or the system variables, so
    /// that a source that stopped answering shows as unreachable between selection rounds.
    pub fn survey(&mut self, sources: &[Source], now: NtpTimestamp) -> Vec<SystemEvent> {
        let mut update = Update::default();
        self.judge(sources, now, &mut update);
        update.events
    }

    /// Fit candidates (offsets brought up to now), the selection over them, and each source's
    /// recorded state.
    fn judge(
        &mut self,
        sources: &[Source],
        now: NtpTimestamp,
        update: &mut Update,
    ) -> (Vec<(usize, Candidate)>, Selection) {
        let fit: Vec<(usize, Candidate)> = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.candidate(now)
                    .ok()
                    .map(|c| (i, self.brought_up_to(now, s, c)))
            })
            .collect();
        let candidates: Vec<Candidate> = fit.iter().map(|(_, c)| *c).collect();
        let previous = self
            .peer
            .and_then(|p| fit.iter().position(|(i, _)| *i == p));
        let selection = select(&candidates, self.config.min_sources, previous);
        self.record_states(sources, now, &fit, &selection.verdicts, update);
        (fit, selection)
    }

    /// An offset measured at the filter's sample time, less the corrections applied since.
    fn brought_up_to(
        &self,
        now: NtpTimestamp,
        source: &Source,
        mut candidate: Candidate,
    ) -> Candidate {
        if let Some(estimate) = source.estimate() {
            candidate.offset -= self.discipline.correction_since(estimate.time, now);
        }
        candidate
    }

    fn record_states(
        &mut self,
        sources: &[Source],
        now: NtpTimestamp,
        fit: &[(usize, Candidate)],
        verdicts: &[Verdict],
        update: &mut Update,
    ) {
        self.states
            .resize(sources.len(), SourceState::Rejected(Unfit::NoSamples));
        for (i, source) in sources.iter().enumerate() {
            let state = match fit.iter().position(|(index, _)| *index == i) {
                Some(k) => match verdicts[k] {
                    Verdict::SystemPeer => SourceState::Selected,
                    Verdict::Falseticker => SourceState::Falseticker,
                    Verdict::Survivor | Verdict::Outlier => SourceState::Candidate,
                },
                None => match source.candidate(now) {
                    Err(Unfit::Unreachable) => SourceState::Unreachable,
                    Err(why) => SourceState::Rejected(why),
                    Ok(_) => SourceState::Candidate,
                },
            };
            if self.states[i].name() != state.name() && state != SourceState::Selected {
                update.events.push(SystemEvent::SourceChanged(i, state));
            }
            self.states[i] = state;
        }
    }

    fn apply(
        &mut self,
        sources: &mut [Source],
        peer: usize,
        combined: Combined,
        now: NtpTimestamp,
        update: &mut Update,
    ) {
        let (Some(reply), Some(estimate)) = (sources[peer].last_reply(), sources[peer].estimate())
        else {
            return;
        };
        let offset = combined.offset;
        let action = if self.config.monitor_only {
            None
        } else {
            Some(self.discipline.update(now, offset, combined.jitter))
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
        let mut estimate = estimate;
        if let Some(ClockAction::Step { offset, .. }) = action {
            update.events.push(SystemEvent::Step(offset));
            sources.iter_mut().for_each(Source::clear_filter);
            // The step corrected the offset at once: what is left is the error to advertise.
            estimate.offset -= offset;
        }
        match self.peer.replace(peer) {
            None => update.events.push(SystemEvent::SyncGained(peer)),
            Some(old) if old != peer => update.events.push(SystemEvent::PeerChanged(peer)),
            Some(_) => {}
        }
        let poll = self.discipline.poll();
        sources.iter_mut().for_each(|s| s.set_system_poll(poll));
        self.last_offset = Some(offset);
        self.last_update = Some(now);
        self.snapshot = SystemSnapshot::synchronized_to(
            sources[peer].address(),
            &reply,
            &estimate,
            combined.jitter,
            self.precision,
            now,
        );
        update.action = action;
    }

    /// Checks the holdover at `now`: after `holdover` without a clock update we tell clients we
    /// are unsynchronized again. Returns the event if that just happened.
    pub fn check_holdover(&mut self, now: NtpTimestamp) -> Option<SystemEvent> {
        let expired = self
            .last_update
            .is_some_and(|t| now - t > self.config.holdover);
        if expired && self.peer.take().is_some() {
            self.snapshot = SystemSnapshot::unsynchronized(self.precision);
            return Some(SystemEvent::SyncLost);
        }
        None
    }

    /// The system variables to serve.
    pub fn snapshot(&self) -> SystemSnapshot {
        self.snapshot
    }

    /// The system variables to serve at `now`: the synchronized ones, else the local reference
    /// clock if one is configured, else unsynchronized.
    pub fn serving_snapshot(&self, now: NtpTimestamp) -> SystemSnapshot {
        match self.config.local_reference {
            Some((stratum, reference_id)) if !self.snapshot.is_synchronized() => {
                SystemSnapshot::local_reference(stratum, reference_id, self.precision, now)
            }
            _ => self.snapshot,
        }
    }

    /// How the last round saw each source, in source order.
    pub fn source_states(&self) -> &[SourceState] {
        &self.states
    }

    /// The last combined offset (source minus us), if any.
    pub fn last_offset(&self) -> Option<NtpDuration> {
        self.last_offset
    }

    /// The frequency correction to keep in a drift file, ppm.
    pub fn frequency_ppm(&self) -> f64 {
        self.discipline.frequency_ppm()
    }

    /// The index of the system peer.
    pub fn system_peer(&self) -> Option<usize> {
        self.peer
    }
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

    mod process {
        use super::super::*;
        use crate::packet::{Mode, Packet, Version};
        use crate::sample::ReplyLimits;
        use crate::source::SourceConfig;
        use std::time::{Duration, Instant};

        const T0: NtpTimestamp = NtpTimestamp::from_parts(3_900_000_000, 0);

        /// Sources at 127.0.0.1.. whose servers are `offsets` seconds ahead of us, each having
        /// answered `polls` polls one second apart. Returns them and the local time after.
        fn sources(offsets: &[f64], polls: u64) -> (Vec<Source>, NtpTimestamp) {
            let start = Instant::now();
            let config = SourceConfig {
                min_poll: PollInterval::new(0),
                max_poll: PollInterval::new(2),
                iburst: false,
                version: Version::V4,
            };
            let mut sources: Vec<Source> = (0..offsets.len())
                .map(|i| {
                    Source::new(
                        format!("127.0.0.{}", i + 1).parse().expect("ip"),
                        config,
                        start,
                    )
                })
                .collect();
            let mut local = T0;
            for poll in 0..polls {
                let now = start + Duration::from_secs(poll);
                for (source, offset) in sources.iter_mut().zip(offsets) {
                    answer(source, now, local, *offset);
                }
                local += NtpDuration::ONE_SECOND;
            }
            (sources, local)
        }

        fn answer(source: &mut Source, now: Instant, local: NtpTimestamp, offset: f64) {
            let cookie = NtpTimestamp::from_bits(
                u64::from(local.seconds()) << 8 | u64::from(source.reach()),
            );
            let request = source.poll_transmit(now, local, cookie).expect("due");
            let (req, _) = Packet::parse(&request).expect("parses");
            let server = local + NtpDuration::from_seconds_f64(offset + 0.001);
            let mut reply = Packet::client_request(Version::V4, req.poll, server);
            reply.mode = Mode::SERVER;
            reply.stratum = Stratum::PRIMARY;
            reply.reference_id = ReferenceId::LOCL;
            reply.precision = Precision::new(-20);
            reply.origin_timestamp = req.transmit_timestamp;
            reply.receive_timestamp = server;
            let t4 = local + NtpDuration::from_seconds_f64(0.002);
            source.handle_reply(local, t4, &reply.serialize(), &ReplyLimits::default());
        }

        fn system() -> System {
            System::new(SyncConfig::default(), Precision::new(-20), None)
        }

        #[test]
        fn three_honest_sources_outvote_a_falseticker() {
            let (mut sources, now) = sources(&[0.010, 0.0101, 0.0099, 5.0], 8);
            let mut system = system();
            let update = system.select(&mut sources, now);
            let states = system.source_states();
            assert_eq!(states[3], SourceState::Falseticker, "{states:?}");
            let peer = system.system_peer().expect("synchronized");
            assert!(peer < 3);
            assert_eq!(states[peer], SourceState::Selected);
            let Some(ClockAction::Slew { offset, .. }) = update.action else {
                panic!("{update:?}")
            };
            assert!(
                (offset.to_seconds_f64() - 0.010).abs() < 0.0005,
                "{offset:?}"
            );
            assert!(update.events.contains(&SystemEvent::SyncGained(peer)));
            assert!(
                update
                    .events
                    .contains(&SystemEvent::SourceChanged(3, SourceState::Falseticker))
            );
            let snapshot = system.snapshot();
            assert_eq!(snapshot.stratum, Stratum::new(2));
            assert_eq!(
                snapshot.reference_id,
                ReferenceId::from_ip(sources[peer].address())
            );
            assert!(snapshot.is_synchronized());
        }

        #[test]
        fn two_sources_that_disagree_give_no_sync() {
            let (mut sources, now) = sources(&[0.0, 5.0], 8);
            let mut system = system();
            let update = system.select(&mut sources, now);
            assert_eq!(update.action, None);
            assert_eq!(
                system.source_states(),
                [SourceState::Falseticker, SourceState::Falseticker]
            );
            assert!(!system.snapshot().is_synchronized());
        }

        #[test]
        fn min_sources_holds_back_a_lone_source() {
            let (mut sources, now) = sources(&[0.0], 8);
            let config = SyncConfig {
                min_sources: 2,
                ..SyncConfig::default()
            };
            let mut system = System::new(config, Precision::new(-20), None);
            assert_eq!(system.select(&mut sources, now).action, None);
            assert_eq!(system.source_states(), [SourceState::Candidate]);
        }

        #[test]
        fn a_large_first_offset_steps_and_clears_the_filters() {
            let (mut sources, now) = sources(&[2.5, 2.5, 2.5], 8);
            let mut system = system();
            let update = system.select(&mut sources, now);
            let Some(ClockAction::Step { offset, .. }) = update.action else {
                panic!("{update:?}")
            };
            assert!((offset.to_seconds_f64() - 2.5).abs() < 0.001);
            assert!(update.events.contains(&SystemEvent::Step(offset)));
            assert!(
                system.snapshot().root_dispersion < NtpDuration::from_seconds_f64(0.01),
                "a corrected offset is not advertised as error: {:?}",
                system.snapshot().root_dispersion
            );
            assert!(
                sources.iter().all(|s| s.estimate().is_none()),
                "filters cleared after a step"
            );
            let after = system.select(&mut sources, now + NtpDuration::ONE_SECOND);
            assert!(
                !after.events.contains(&SystemEvent::SyncLost),
                "refilling filters is not a loss of sync: {after:?}"
            );
            assert!(system.snapshot().is_synchronized());
        }

        #[test]
        fn a_survey_marks_a_silent_source_unreachable_without_acting() {
            let (mut sources, now) = sources(&[0.001], 8);
            let mut system = system();
            system.select(&mut sources, now);
            let mut poll_time = sources[0].poll_timeout().expect("active");
            for i in 0..9 {
                sources[0]
                    .poll_transmit(poll_time, now, NtpTimestamp::from_bits(1000 + i))
                    .expect("due");
                poll_time = sources[0].poll_timeout().expect("active");
            }
            let events = system.survey(&sources, now);
            assert_eq!(
                events,
                [SystemEvent::SourceChanged(0, SourceState::Unreachable)]
            );
            assert_eq!(system.source_states(), [SourceState::Unreachable]);
            assert!(
                system.snapshot().is_synchronized(),
                "the holdover, not a survey, ends sync"
            );
        }

        #[test]
        fn a_panic_refusal_is_reported_once_per_episode() {
            let (mut sources_ok, now) = sources(&[0.001], 8);
            let mut system = system();
            system.select(&mut sources_ok, now);
            let mut events = Vec::new();
            for k in 1..=3 {
                // Sources whose every sample says +2000 s, judged k seconds later.
                let (mut wrong, t) = sources(&[2000.0], 8);
                events.extend(
                    system
                        .select(&mut wrong, t + NtpDuration::from_seconds(k))
                        .events,
                );
            }
            let refusals = events
                .iter()
                .filter(|e| matches!(e, SystemEvent::Refused(_)))
                .count();
            assert_eq!(refusals, 1, "{events:?}");
        }

        #[test]
        fn a_local_reference_is_served_only_while_no_source_is_selected() {
            let config = SyncConfig {
                local_reference: Some((Stratum::new(10), ReferenceId::LOCL)),
                ..SyncConfig::default()
            };
            let mut system = System::new(config, Precision::new(-20), None);
            let (mut sources, now) = sources(&[0.001], 8);
            let before = system.serving_snapshot(now);
            assert_eq!(
                (before.stratum, before.reference_id),
                (Stratum::new(10), ReferenceId::LOCL)
            );
            system.select(&mut sources, now);
            assert_eq!(
                system.serving_snapshot(now).stratum,
                Stratum::new(2),
                "a selected source wins"
            );
        }

        #[test]
        fn holdover_ends_synchronization() {
            let (mut sources, now) = sources(&[0.001], 8);
            let config = SyncConfig {
                holdover: NtpDuration::from_seconds(10),
                ..SyncConfig::default()
            };
            let mut system = System::new(config, Precision::new(-20), None);
            system.select(&mut sources, now);
            assert!(system.snapshot().is_synchronized());
            assert_eq!(
                system.check_holdover(now + NtpDuration::from_seconds(5)),
                None
            );
            assert_eq!(
                system.check_holdover(now + NtpDuration::from_seconds(11)),
                Some(SystemEvent::SyncLost)
            );
            assert!(!system.snapshot().is_synchronized());
        }

        #[test]
        fn monitor_mode_measures_but_never_acts() {
            let (mut sources, now) = sources(&[0.3], 8);
            let config = SyncConfig {
                monitor_only: true,
                ..SyncConfig::default()
            };
            let mut system = System::new(config, Precision::new(-20), None);
            let update = system.select(&mut sources, now);
            assert_eq!(update.action, None);
            assert!((system.last_offset().expect("measured").to_seconds_f64() - 0.3).abs() < 0.001);
            assert!(
                system.snapshot().root_dispersion >= NtpDuration::from_seconds_f64(0.3),
                "the error is advertised"
            );
        }
    }
}
