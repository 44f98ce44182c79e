//! Per-depth acceptance rates of a draft path.

use super::ema::Ema;

/// How many pseudo-samples the prior counts for at a new depth: enough that
/// one rejection does not zero a depth, few enough that real data wins fast.
const PRIOR_WEIGHT: f64 = 2.0;

/// Share of the EMA weight with which a depth not offered in a round drifts
/// towards the depth above: slow next to real samples (weight `alpha`), fast
/// enough that a stale estimate heals within a few dozen rounds.
const DRIFT: f64 = 0.5;

/// Estimates `a_d = P(depth d accepted | depth d-1 accepted)` for depths
/// 1, 2, ... of a draft path, each as an [`Ema`].
///
/// Conditioning on the previous depth is what makes the estimates usable:
/// depth d is only ever judged when the verifier got that far, so its raw
/// acceptance frequency would mix in the failures of every shallower depth.
///
/// A depth that was never observed borrows the estimate of the deepest
/// observed one (or the prior if none). That is optimistic for deep drafts,
/// which is the point: the only way to learn about depth 9 is to offer it.
///
/// For the same reason a depth that is no longer offered drifts back towards
/// the depth above it. Otherwise one early rejection at depth 2 would keep a
/// controller on one-token trunks for the rest of a generation, however
/// often the drafter is right (seen on Spec-Bench: 60 rounds in a row of one
/// token offered and accepted).
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptanceStats {
    /// Index `d - 1` holds depth d; observed depths are always contiguous
    /// from 1 since judging depth d needs depth d-1 accepted.
    depths: Vec<Ema>,
    prior: f64,
    alpha: f64,
    max_depth: usize,
    rounds: u64,
}

impl AcceptanceStats {
    /// `prior` is clamped to [0, 1]; depths beyond `max_depth` (at least 1)
    /// share the estimate of `max_depth` to keep memory bounded.
    pub fn new(prior: f64, alpha: f64, max_depth: usize) -> Self {
        Self {
            depths: Vec::new(),
            prior: if prior.is_finite() { prior.clamp(0.0, 1.0) } else { 0.5 },
            alpha,
            max_depth: max_depth.max(1),
            rounds: 0,
        }
    }

    /// Records one verified path: `offered` tokens drafted, the first
    /// `accepted` of them accepted (clamped to `offered`). Depths 1..=accepted
    /// count as accepted, depth accepted+1 (if offered) as rejected, deeper
    /// depths are not judged at all.
    pub fn observe(&mut self, offered: usize, accepted: usize) {
        if offered == 0 {
            return;
        }
        self.rounds += 1;
        let accepted = accepted.min(offered);
        let judged = (accepted + 1).min(offered);
        for depth in 1..=judged {
            let outcome = if depth <= accepted { 1.0 } else { 0.0 };
            let slot = depth.min(self.max_depth);
            if slot > self.depths.len() {
                let start = self.rate(slot);
                self.depths.push(Ema::new(start, self.alpha, PRIOR_WEIGHT));
            }
            self.depths[slot - 1].update(outcome);
        }
        // Depths past what was offered learned nothing this round.
        for slot in (offered.min(self.max_depth) + 1)..=self.depths.len() {
            let above = self.rate(slot - 1);
            self.depths[slot - 1].relax(above, self.alpha * DRIFT);
        }
    }

    /// Estimated `a_d`; depth 0 (the root, always kept) is 1.
    pub fn rate(&self, depth: usize) -> f64 {
        if depth == 0 {
            return 1.0;
        }
        let slot = depth.min(self.max_depth).min(self.depths.len());
        match slot {
            0 => self.prior,
            s => self.depths[s - 1].value().clamp(0.0, 1.0),
        }
    }

    /// `P(depth d accepted) = Π_{j<=d} a_j`.
    pub fn survival(&self, depth: usize) -> f64 {
        (1..=depth).map(|d| self.rate(d)).product()
    }

    /// Expected accepted tokens of a path of `len` drafted tokens.
    pub fn expected_accepted(&self, len: usize) -> f64 {
        let mut survive = 1.0;
        let mut total = 0.0;
        for d in 1..=len {
            survive *= self.rate(d);
            total += survive;
        }
        total
    }

    /// How many times depth d was judged.
    pub fn samples(&self, depth: usize) -> u64 {
        match depth {
            0 => 0,
            d if d <= self.depths.len() => self.depths[d - 1].samples(),
            _ => 0,
        }
    }

    /// Paths observed so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The deepest depth judged so far.
    pub fn observed_depth(&self) -> usize {
        self.depths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reached_depths_are_judged() {
        let mut s = AcceptanceStats::new(0.5, 0.1, 16);
        s.observe(4, 2);
        assert_eq!((s.samples(1), s.samples(2), s.samples(3), s.samples(4)), (1, 1, 1, 0));
        assert!(s.rate(1) > 0.5 && s.rate(2) > 0.5 && s.rate(3) < s.rate(2));
        // Depth 4 was never judged and borrows depth 3.
        assert_eq!(s.rate(4), s.rate(3));
        s.observe(3, 3);
        assert_eq!(s.samples(3), 2);
        assert_eq!(s.samples(4), 0);
        // Nonsense is clamped, empty drafts are ignored.
        s.observe(2, 99);
        s.observe(0, 5);
        assert_eq!(s.rounds(), 3);
    }

    #[test]
    fn no_history_is_the_prior() {
        let s = AcceptanceStats::new(0.6, 0.1, 8);
        assert_eq!(s.rate(1), 0.6);
        assert_eq!(s.rate(0), 1.0);
        assert!((s.expected_accepted(2) - (0.6 + 0.36)).abs() < 1e-12);
        assert!((s.survival(3) - 0.216).abs() < 1e-12);
        assert_eq!(s.expected_accepted(0), 0.0);
    }

    #[test]
    fn converges_to_the_conditional_rates() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let truth = [0.9, 0.8, 0.5, 0.5, 0.5, 0.5];
        let mut s = AcceptanceStats::new(0.5, 0.02, 6);
        for _ in 0..20_000 {
            let accepted = truth.iter().take_while(|&&p| rng.random_bool(p)).count();
            s.observe(truth.len(), accepted);
        }
        for (d, p) in truth.iter().enumerate().take(4) {
            assert!((s.rate(d + 1) - p).abs() < 0.06, "depth {}: {}", d + 1, s.rate(d + 1));
        }
    }

    #[test]
    fn depths_no_longer_offered_drift_back_to_the_depth_above() {
        let mut s = AcceptanceStats::new(0.5, 0.1, 8);
        // An unlucky start: depth 2 rejected, so a controller offers 1 token.
        s.observe(2, 1);
        s.observe(2, 1);
        let stale = s.rate(2);
        for _ in 0..40 {
            s.observe(1, 1);
        }
        assert!(s.rate(1) > 0.9, "{}", s.rate(1));
        assert!(s.rate(2) > stale + 0.4, "depth 2 still at {} (was {stale})", s.rate(2));
        assert_eq!(s.samples(2), 2, "drifting is not a sample");
        // Offered depths are judged, not drifted: depth 2 falls again on data.
        for _ in 0..20 {
            s.observe(2, 1);
        }
        assert!(s.rate(2) < 0.2, "{}", s.rate(2));
    }

    #[test]
    fn depths_beyond_the_cap_share_the_last_slot() {
        let mut s = AcceptanceStats::new(0.5, 0.1, 2);
        s.observe(10, 10);
        assert_eq!(s.observed_depth(), 2);
        assert_eq!(s.rate(9), s.rate(2));
        assert_eq!(s.samples(2), 9);
    }
}
