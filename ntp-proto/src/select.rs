//! Choosing whom to believe among several sources (RFC 5905 section 11.2): the intersection
//! algorithm splits truechimers from falsetickers, the cluster algorithm prunes the noisiest
//! truechimers, and the combine algorithm averages the survivors and names the system peer.
//!
//! [`select`] is one pure function over the sources' current estimates ([`Candidate`]s). The caller
//! passes only sources that pass the RFC's fit test (reachable, synchronized, root distance below
//! MAXDIST, no loop); this module judges agreement only.
//!
//! Refinements of the RFC's reference code, all deliberate:
//! - The intersection scans interval edges only, as ntpd 4.2.8 and chrony do. RFC 5905's appendix
//!   code also counts offsets (midpoints) outside the interval against the falseticker allowance,
//!   which rejects two honest servers whose offsets lie just outside each other's intervals.
//! - A candidate is a truechimer when its correctness interval `offset ± root_distance` *overlaps*
//!   the intersection interval (ntpd 4.2.8, chrony and ntpd-rs do the same); RFC 5905's reference
//!   code asks for the offset itself to lie inside, which drops honest but imprecise sources.
//! - Survivors whose root distance is more than [`COMBINE_LIMIT`] times the system peer's are not
//!   averaged in (chrony's `combinelimit`): the RFC's 1 / distance weights let a source with a
//!   large asymmetric delay, whose wide interval still touches the others, pull the average by a
//!   fraction of its error.
//! - With two sources that disagree there is no majority: nobody can tell which is right, so both
//!   are falsetickers and nothing is combined. Three or more sources are needed to outvote one
//!   liar.
//! - chrony's source options: with `trust`ed candidates the intersection is theirs (the others
//!   are truechimers if they overlap it, falsetickers otherwise, whatever their number); with
//!   `prefer`red survivors, the system peer is one of them and only they are combined.

use crate::packet::Stratum;
use crate::sample::MAX_DISTANCE;
use crate::time::NtpDuration;

/// Fewest survivors the cluster algorithm keeps, 3 (RFC 5905 appendix A.1.1, NMIN).
pub const MIN_CLUSTER_SURVIVORS: usize = 3;

/// Survivors farther than this many times the system peer's root distance are not combined
/// (chrony's default `combinelimit`).
pub const COMBINE_LIMIT: f64 = 3.0;

/// Floor of the distance used as a combine weight, so a zero distance cannot divide by zero.
const MIN_WEIGHT_DISTANCE: f64 = 1e-9;

/// One source's current estimate as the selection sees it (RFC 5905 section 11.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Candidate {
    /// The source's clock filter offset: server minus local clock.
    pub offset: NtpDuration,
    /// Root distance through this source: the half-width of its correctness interval.
    pub root_distance: NtpDuration,
    /// The source's peer jitter (RMS of recent offset differences).
    pub jitter: NtpDuration,
    /// The source's stratum.
    pub stratum: Stratum,
    /// Configured `prefer`: chosen and combined before the others.
    pub prefer: bool,
    /// Configured `trust`: assumed a truechimer.
    pub trust: bool,
}

impl Candidate {
    /// stratum * MAXDIST + root distance: lower is better (RFC 5905 section 11.2.2).
    pub fn metric(&self) -> NtpDuration {
        NtpDuration::from_bits(
            MAX_DISTANCE
                .to_bits()
                .saturating_mul(i64::from(self.stratum.get())),
        ) + self.radius()
    }

    fn radius(&self) -> NtpDuration {
        self.root_distance.max(NtpDuration::ZERO)
    }

    fn low(&self) -> NtpDuration {
        self.offset - self.radius()
    }

    fn high(&self) -> NtpDuration {
        self.offset + self.radius()
    }
}

/// What the selection made of one candidate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Its correctness interval misses the majority's intersection (RFC 5905 section 11.2.1).
    Falseticker,
    /// A truechimer pruned by the cluster algorithm for its selection jitter (section 11.2.2).
    Outlier,
    /// A truechimer that survived clustering (section 11.2.3); averaged into the offset unless
    /// its root distance exceeds [`COMBINE_LIMIT`] times the system peer's.
    Survivor,
    /// The survivor the system synchronizes to; its stratum and refid become ours.
    SystemPeer,
}

impl Verdict {
    /// Agreed with the majority (anything but a falseticker).
    pub const fn is_truechimer(self) -> bool {
        !matches!(self, Self::Falseticker)
    }

    /// Survived clustering (a survivor or the system peer).
    pub const fn is_survivor(self) -> bool {
        matches!(self, Self::Survivor | Self::SystemPeer)
    }
}

/// The combined estimate of all survivors (RFC 5905 section 11.2.3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Combined {
    /// Index (into the candidates) of the system peer.
    pub system_peer: usize,
    /// Survivor offsets weighted by 1 / root distance: the offset to feed the discipline.
    pub offset: NtpDuration,
    /// System jitter: the system peer's jitter and the survivors' selection jitter, added in
    /// quadrature.
    pub jitter: NtpDuration,
}

/// The outcome of one selection round.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Selection {
    /// One verdict per candidate, in input order.
    pub verdicts: Vec<Verdict>,
    /// The combined estimate, or `None` when no majority agrees or fewer than `min_agree` do.
    pub combined: Option<Combined>,
}

impl Selection {
    /// How many candidates agreed with the majority.
    pub fn truechimers(&self) -> usize {
        self.verdicts.iter().filter(|v| v.is_truechimer()).count()
    }

    /// How many candidates survived clustering.
    pub fn survivors(&self) -> usize {
        self.verdicts.iter().filter(|v| v.is_survivor()).count()
    }

    /// The index of the system peer, if any.
    pub fn system_peer(&self) -> Option<usize> {
        self.combined.map(|c| c.system_peer)
    }
}

/// Intersection (Marzullo/RFC 5905 11.2.1), cluster (11.2.2), combine (11.2.3).
///
/// `min_agree` is the fewest truechimers needed to combine (ntpd's `minsane`; 0 acts as 1).
/// `previous_peer` is the index of the last system peer: it is kept while it survives and has the
/// best survivor's stratum, so that equal sources do not make the clock hop between them.
pub fn select(
    candidates: &[Candidate],
    min_agree: usize,
    previous_peer: Option<usize>,
) -> Selection {
    let mut verdicts = vec![Verdict::Falseticker; candidates.len()];
    let trusted: Vec<Candidate> = candidates.iter().copied().filter(|c| c.trust).collect();
    let voters = if trusted.is_empty() {
        candidates
    } else {
        &trusted[..]
    };
    let Some((low, high)) = intersection(voters) else {
        return Selection {
            verdicts,
            combined: None,
        };
    };
    let truechimers: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].low() <= high && candidates[i].high() >= low)
        .collect();
    for &i in &truechimers {
        verdicts[i] = Verdict::Outlier;
    }
    let survivors = cluster(candidates, truechimers.clone());
    for &i in &survivors {
        verdicts[i] = Verdict::Survivor;
    }
    if truechimers.len() < min_agree.max(1) {
        return Selection {
            verdicts,
            combined: None,
        };
    }
    let preferred: Vec<usize> = survivors
        .iter()
        .copied()
        .filter(|&i| candidates[i].prefer)
        .collect();
    let chosen = if preferred.is_empty() {
        &survivors
    } else {
        &preferred
    };
    let peer = choose_peer(candidates, chosen, previous_peer);
    let limit = candidates[peer].radius().mul_f64(COMBINE_LIMIT);
    let near: Vec<usize> = chosen
        .iter()
        .copied()
        .filter(|&i| candidates[i].radius() <= limit)
        .collect();
    verdicts[peer] = Verdict::SystemPeer;
    Selection {
        verdicts,
        combined: Some(combine(candidates, &near, peer)),
    }
}

/// The interval shared by the largest clique of candidates, allowing f falsetickers with f < n/2
/// (RFC 5905 section 11.2.1 and appendix A.5.5.1); `None` when no majority agrees.
fn intersection(candidates: &[Candidate]) -> Option<(NtpDuration, NtpDuration)> {
    let n = candidates.len();
    // Lower edge -1, upper edge +1. At equal values lower edges sort first, so touching
    // intervals count as overlapping in both scans.
    let mut edges: Vec<(NtpDuration, i8)> = candidates
        .iter()
        .flat_map(|c| [(c.low(), -1), (c.high(), 1)])
        .collect();
    edges.sort_unstable();
    for allow in 0..n.div_ceil(2) {
        let needed = n - allow;
        let low = scan(edges.iter(), -1, needed);
        let high = scan(edges.iter().rev(), 1, needed);
        if let (Some(low), Some(high)) = (low, high)
            && high >= low
        {
            return Some((low, high));
        }
    }
    None
}

/// Walks the edges until `needed` intervals are open at once and returns that point (appendix
/// A.5.5.1's `chime` count).
fn scan<'a>(
    edges: impl Iterator<Item = &'a (NtpDuration, i8)>,
    direction: i8,
    needed: usize,
) -> Option<NtpDuration> {
    let mut open: i64 = 0;
    for &(value, kind) in edges {
        open += i64::from(kind * direction);
        if open >= needed as i64 {
            return Some(value);
        }
    }
    None
}

/// Removes the truechimer with the largest selection jitter while that jitter exceeds the smallest
/// peer jitter and more than NMIN remain (RFC 5905 section 11.2.2). Returns the survivors sorted by
/// metric, best first.
fn cluster(candidates: &[Candidate], mut survivors: Vec<usize>) -> Vec<usize> {
    survivors.sort_by_key(|&i| (candidates[i].metric(), i));
    while survivors.len() > MIN_CLUSTER_SURVIVORS {
        // On equal jitter the later survivor (worse metric) goes.
        let Some((worst, worst_jitter)) = survivors
            .iter()
            .map(|&i| selection_jitter(candidates, &survivors, i))
            .enumerate()
            .rev()
            .max_by(|a, b| a.1.total_cmp(&b.1))
        else {
            break;
        };
        let min_peer_jitter = survivors
            .iter()
            .map(|&i| candidates[i].jitter.to_seconds_f64())
            .fold(f64::INFINITY, f64::min);
        if worst_jitter <= min_peer_jitter {
            break;
        }
        survivors.remove(worst);
    }
    survivors
}

/// RMS of the other survivors' offsets relative to candidate `i` (RFC 5905 section 11.2.2).
fn selection_jitter(candidates: &[Candidate], survivors: &[usize], i: usize) -> f64 {
    let own = candidates[i].offset;
    let sum: f64 = survivors
        .iter()
        .map(|&j| (candidates[j].offset - own).to_seconds_f64().powi(2))
        .sum();
    (sum / (survivors.len().saturating_sub(1).max(1)) as f64).sqrt()
}

/// The best survivor by metric, unless the previous peer survives at the same stratum (RFC 5905
/// appendix A.5.5.3, "don't do a clock hop"). `survivors` is sorted best first and not empty.
fn choose_peer(candidates: &[Candidate], survivors: &[usize], previous: Option<usize>) -> usize {
    let best = survivors[0];
    match previous {
        Some(p) if survivors.contains(&p) && candidates[p].stratum == candidates[best].stratum => p,
        _ => best,
    }
}

/// Offsets weighted by 1 / root distance; selection jitter relative to the system peer, combined
/// with its peer jitter (RFC 5905 section 11.2.3 and appendix A.5.5.4).
fn combine(candidates: &[Candidate], survivors: &[usize], peer: usize) -> Combined {
    let anchor = candidates[peer].offset;
    let (mut weights, mut weighted, mut spread) = (0.0, 0.0, 0.0);
    for &i in survivors {
        let c = &candidates[i];
        let weight = 1.0 / c.radius().to_seconds_f64().max(MIN_WEIGHT_DISTANCE);
        // Relative to the peer so that large offsets keep full precision.
        let delta = (c.offset - anchor).to_seconds_f64();
        weights += weight;
        weighted += weight * delta;
        spread += weight * delta * delta;
    }
    let selection_jitter = (spread / weights).sqrt();
    let peer_jitter = candidates[peer].jitter.to_seconds_f64();
    Combined {
        system_peer: peer,
        offset: anchor + NtpDuration::from_seconds_f64(weighted / weights),
        jitter: NtpDuration::from_seconds_f64(selection_jitter.hypot(peer_jitter)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(seconds: f64) -> NtpDuration {
        NtpDuration::from_seconds_f64(seconds)
    }

    fn cand(offset: f64, distance: f64, jitter: f64, stratum: u8) -> Candidate {
        Candidate {
            offset: s(offset),
            root_distance: s(distance),
            jitter: s(jitter),
            stratum: Stratum::new(stratum),
            prefer: false,
            trust: false,
        }
    }

    fn honest() -> Vec<Candidate> {
        vec![
            cand(0.001, 0.010, 0.0005, 2),
            cand(-0.002, 0.015, 0.0007, 2),
            cand(0.0005, 0.012, 0.0004, 2),
        ]
    }

    #[test]
    fn one_server_at_plus_2_5_seconds_is_a_falseticker_wherever_it_sits() {
        // Stratum 1 and the smallest distance: the best metric, if it were believed.
        let liar = cand(2.5, 0.008, 0.0001, 1);
        for position in 0..4 {
            let mut all = honest();
            all.insert(position, liar);
            for previous in [None, Some(position)] {
                let sel = select(&all, 1, previous);
                assert_eq!(sel.verdicts[position], Verdict::Falseticker, "{sel:?}");
                assert_eq!(sel.truechimers(), 3);
                let combined = sel.combined.expect("three agree");
                assert_ne!(combined.system_peer, position);
                assert!(combined.offset.abs() < s(0.003), "{}", combined.offset);
            }
        }
    }

    #[test]
    fn a_source_with_a_one_second_asymmetry_is_not_averaged_in() {
        // Requests to two servers take 1 s longer than replies: they read 0.5 s behind with a
        // distance just as wide, so their intervals still touch the good server's.
        let all = [
            cand(0.0, 0.002, 0.0001, 1),
            cand(-0.5, 0.5011, 0.0001, 1),
            cand(-0.5, 0.5012, 0.0001, 1),
        ];
        let sel = select(&all, 1, None);
        assert_eq!(sel.survivors(), 3);
        let combined = sel.combined.expect("a peer");
        assert_eq!(combined.system_peer, 0);
        assert_eq!(combined.offset, NtpDuration::ZERO);
    }

    /// Two servers 5 s apart: no majority exists (a 1-of-2 clique is not more than half), so
    /// neither can be trusted and nothing is combined. Add a third server to break the tie.
    #[test]
    fn a_preferred_survivor_is_the_system_peer_and_alone_combined() {
        let mut all = honest();
        // The worst metric of the three: stratum 3 and the largest distance.
        all[1] = Candidate {
            prefer: true,
            ..cand(-0.002, 0.015, 0.0007, 3)
        };
        for previous in [None, Some(0)] {
            let selection = select(&all, 1, previous);
            let combined = selection.combined.expect("agreement");
            assert_eq!(combined.system_peer, 1, "{selection:?}");
            assert_eq!(
                combined.offset, all[1].offset,
                "only the preferred is combined"
            );
        }
        // A preferred falseticker is still a falseticker.
        all[1] = Candidate {
            prefer: true,
            ..cand(2.5, 0.008, 0.0001, 1)
        };
        let selection = select(&all, 1, None);
        assert_eq!(selection.verdicts[1], Verdict::Falseticker);
        assert_ne!(selection.system_peer(), Some(1));
    }

    #[test]
    fn a_trusted_source_outvotes_a_majority_that_disagrees_with_it() {
        let trusted = Candidate {
            trust: true,
            ..cand(0.5, 0.010, 0.0005, 2)
        };
        // Alone against two that agree with each other, 0.5 s away.
        let all = [
            cand(0.0, 0.010, 0.0005, 2),
            trusted,
            cand(0.001, 0.010, 0.0005, 2),
        ];
        let selection = select(&all, 1, None);
        assert_eq!(
            selection.verdicts,
            [
                Verdict::Falseticker,
                Verdict::SystemPeer,
                Verdict::Falseticker
            ]
        );
        // Two that disagree: without trust nobody wins; with it, the trusted one does.
        let pair = [cand(0.0, 0.010, 0.0005, 2), trusted];
        assert_eq!(select(&pair, 1, None).system_peer(), Some(1));
        // Untrusted sources that agree with it are truechimers and combined.
        let agreeing = [cand(0.501, 0.010, 0.0005, 2), trusted];
        let selection = select(&agreeing, 2, None);
        assert!(
            selection.verdicts.iter().all(|v| v.is_survivor()),
            "{selection:?}"
        );
    }

    #[test]
    fn two_servers_that_disagree_have_no_majority() {
        let two = [cand(0.0, 0.010, 0.001, 2), cand(5.0, 0.010, 0.001, 2)];
        let sel = select(&two, 1, Some(0));
        assert_eq!(sel.verdicts, vec![Verdict::Falseticker; 2]);
        assert_eq!(sel.combined, None);
        assert_eq!(sel.truechimers(), 0);

        let three = [two[0], two[1], cand(0.002, 0.010, 0.001, 2)];
        let sel = select(&three, 1, None);
        assert_eq!(sel.verdicts[1], Verdict::Falseticker);
        assert_eq!(sel.truechimers(), 2);
    }

    #[test]
    fn empty_input_selects_nothing() {
        let sel = select(&[], 1, Some(3));
        assert!(sel.verdicts.is_empty());
        assert_eq!(sel.combined, None);
        assert_eq!(sel.truechimers(), 0);
    }

    #[test]
    fn a_single_server_is_its_own_majority() {
        let one = [cand(-0.25, 0.020, 0.001, 3)];
        let sel = select(&one, 1, None);
        assert_eq!(sel.verdicts, vec![Verdict::SystemPeer]);
        let combined = sel.combined.expect("one of one");
        assert_eq!(combined.offset, s(-0.25));
        assert_eq!(combined.system_peer, 0);
        // Zero distance: a point interval still intersects itself.
        let point = [cand(1.0, 0.0, 0.0, 1)];
        assert_eq!(select(&point, 0, None).system_peer(), Some(0));
    }

    #[test]
    fn min_agree_withholds_the_combined_estimate_but_keeps_the_verdicts() {
        let mut all = honest();
        all.push(cand(2.5, 0.010, 0.001, 2));
        let short = select(&all, 4, None);
        assert_eq!(short.combined, None);
        assert_eq!(short.truechimers(), 3);
        assert_eq!(short.verdicts[3], Verdict::Falseticker);
        assert!(short.verdicts[..3].iter().all(|v| *v == Verdict::Survivor));
        let enough = select(&all, 3, None);
        assert!(enough.combined.is_some());
        assert_eq!(enough.truechimers(), 3);
    }

    #[test]
    fn ties_go_to_the_lowest_index_or_the_previous_peer() {
        let same = [cand(0.001, 0.010, 0.001, 2); 3];
        let sel = select(&same, 1, None);
        assert_eq!(sel.system_peer(), Some(0));
        assert_eq!(sel.survivors(), 3);
        assert_eq!(sel.combined.map(|c| c.offset), Some(s(0.001)));
        assert_eq!(sel.combined.map(|c| c.jitter), Some(s(0.001)));
        assert_eq!(select(&same, 1, Some(2)).system_peer(), Some(2));
        // An out-of-range previous peer is ignored.
        assert_eq!(select(&same, 1, Some(9)).system_peer(), Some(0));
    }

    #[test]
    fn lower_stratum_wins_over_shorter_distance() {
        let all = [
            cand(0.000, 0.010, 0.001, 2),
            cand(0.001, 0.100, 0.001, 1),
            cand(0.002, 0.020, 0.001, 2),
        ];
        // 1 * 1.5 + 0.1 < 2 * 1.5 + 0.01.
        assert_eq!(select(&all, 1, None).system_peer(), Some(1));
    }

    #[test]
    fn the_previous_peer_is_kept_only_at_the_best_stratum() {
        let all = [
            cand(0.000, 0.010, 0.001, 2),
            cand(0.001, 0.030, 0.001, 2),
            cand(0.002, 0.020, 0.001, 3),
        ];
        assert_eq!(select(&all, 1, None).system_peer(), Some(0));
        assert_eq!(select(&all, 1, Some(1)).system_peer(), Some(1));
        // Stratum 3 while a stratum 2 survives: hop to the better stratum.
        assert_eq!(select(&all, 1, Some(2)).system_peer(), Some(0));
    }

    #[test]
    fn cluster_prunes_a_noisy_outlier() {
        // The intersection cannot reject +80 ms (its 200 ms distance covers the others), but its
        // selection jitter dwarfs everyone's peer jitter. The other four spread 2 ms, within their
        // own 2 ms jitter, so they all stay.
        let mut all = vec![
            cand(0.0000, 0.010, 0.002, 2),
            cand(0.0010, 0.010, 0.002, 2),
            cand(-0.0010, 0.010, 0.002, 2),
            cand(0.0005, 0.010, 0.002, 2),
        ];
        all.insert(2, cand(0.080, 0.200, 0.002, 2));
        let sel = select(&all, 1, Some(2));
        assert_eq!(sel.verdicts[2], Verdict::Outlier, "{sel:?}");
        assert_eq!(sel.truechimers(), 5);
        assert_eq!(sel.survivors(), 4);
        let combined = sel.combined.expect("four survive");
        assert_ne!(combined.system_peer, 2);
        assert!(combined.offset.abs() < s(0.001), "{}", combined.offset);
    }

    #[test]
    fn cluster_stops_at_nmin_and_when_peers_are_noisier_than_the_spread() {
        // Spread 100 ms, peer jitter 1 ms: prune, but never below three.
        let spread: Vec<Candidate> = (0..6)
            .map(|i| cand(0.1 * f64::from(i), 1.0, 0.001, 2))
            .collect();
        let sel = select(&spread, 1, None);
        assert_eq!(sel.truechimers(), 6);
        assert_eq!(sel.survivors(), MIN_CLUSTER_SURVIVORS);
        // The extremes go first.
        assert_eq!(sel.verdicts[0], Verdict::Outlier);
        assert_eq!(sel.verdicts[5], Verdict::Outlier);
        // Spread 1 ms, peer jitter 5 ms: the spread is within the noise, keep everyone.
        let tight: Vec<Candidate> = (0..6)
            .map(|i| cand(0.0002 * f64::from(i), 0.010, 0.005, 2))
            .collect();
        assert_eq!(select(&tight, 1, None).survivors(), 6);
    }

    #[test]
    fn combine_weights_by_inverse_root_distance() {
        let all = [cand(0.000, 0.040, 0.002, 2), cand(0.030, 0.050, 0.001, 2)];
        let combined = select(&all, 1, None)
            .combined
            .expect("each offset is in the other's interval");
        assert_eq!(combined.system_peer, 0);
        let (w0, w1) = (1.0 / 0.040, 1.0 / 0.050);
        let offset = 0.030 * w1 / (w0 + w1);
        assert!(
            (combined.offset.to_seconds_f64() - offset).abs() < 1e-9,
            "{}",
            combined.offset
        );
        let selection_jitter = (0.030f64.powi(2) * w1 / (w0 + w1)).sqrt();
        let jitter = (selection_jitter.powi(2) + 0.002f64.powi(2)).sqrt();
        assert!(
            (combined.jitter.to_seconds_f64() - jitter).abs() < 1e-9,
            "{}",
            combined.jitter
        );
    }

    #[test]
    fn large_offsets_keep_full_precision() {
        let base = 1_000_000.0;
        let all = [
            cand(base, 0.010, 0.0, 2),
            cand(base + 0.000_001, 0.010, 0.0, 2),
        ];
        let combined = select(&all, 1, None).combined.expect("agree");
        let error = combined.offset - s(base + 0.000_000_5);
        assert!(error.abs() < s(1e-9), "{error}");
    }

    #[test]
    fn overlapping_intervals_agree_even_when_offsets_lie_outside_each_other() {
        // 0 ± 10 ms and +15 ms ± 10 ms share [5 ms, 10 ms]: both are truechimers (the RFC's
        // midpoint rule would reject both).
        let pair = [cand(0.0, 0.010, 0.001, 2), cand(0.015, 0.010, 0.001, 2)];
        let sel = select(&pair, 2, None);
        assert_eq!(sel.truechimers(), 2);
        assert!(sel.combined.is_some());
        // A wide liar covering both narrow ones agrees too, but weighs little.
        let all = [pair[0], pair[1], cand(1.0, 1.2, 0.001, 2)];
        let combined = select(&all, 1, None).combined.expect("majority");
        assert!(combined.offset < s(0.02), "{}", combined.offset);
        assert_eq!(combined.system_peer, 0);
    }

    fn any_candidate() -> impl Strategy<Value = Candidate> {
        (-5_000i64..5_000, 0i64..2_000, 0i64..100, 1u8..16)
            .prop_map(|(o, d, j, st)| cand(o as f64 * 1e-3, d as f64 * 1e-3, j as f64 * 1e-3, st))
    }

    proptest! {
        #[test]
        fn selection_is_consistent(
            all in prop::collection::vec(any_candidate(), 0..12),
            min_agree in 0usize..5,
            previous in prop::option::of(0usize..14),
        ) {
            let sel = select(&all, min_agree, previous);
            prop_assert_eq!(sel.verdicts.len(), all.len());
            let truechimers = sel.truechimers();
            prop_assert!(truechimers == 0 || 2 * truechimers > all.len());
            let peers = sel.verdicts.iter().filter(|v| **v == Verdict::SystemPeer).count();
            match sel.combined {
                None => prop_assert_eq!(peers, 0),
                Some(c) => {
                    prop_assert_eq!(peers, 1);
                    prop_assert_eq!(sel.verdicts[c.system_peer], Verdict::SystemPeer);
                    prop_assert!(truechimers >= min_agree.max(1));
                    prop_assert!(sel.survivors() >= truechimers.min(MIN_CLUSTER_SURVIVORS));
                    let survivors: Vec<NtpDuration> = all
                        .iter()
                        .zip(&sel.verdicts)
                        .filter(|(_, v)| v.is_survivor())
                        .map(|(c, _)| c.offset)
                        .collect();
                    let lo = survivors.iter().min().copied().unwrap_or_default();
                    let hi = survivors.iter().max().copied().unwrap_or_default();
                    prop_assert!(c.offset >= lo - s(1e-9) && c.offset <= hi + s(1e-9));
                }
            }
        }
    }
}
