//! Baseline policies the controller is benchmarked against.

use super::round::{DraftPlan, RoundFeedback};
use super::DraftPolicy;

/// Always the same trunk of γ tokens, no branches: classic speculative
/// decoding. γ = 0 is plain autoregressive decoding through the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPolicy(pub usize);

impl DraftPolicy for FixedPolicy {
    fn plan(&self) -> DraftPlan {
        DraftPlan::chain(self.0)
    }

    fn observe(&mut self, _feedback: &RoundFeedback) {}
}

/// The common heuristic: +2 after a fully accepted trunk, −1 otherwise,
/// within `[min, max]`. No branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeuristicPolicy {
    min: usize,
    max: usize,
    trunk: usize,
}

impl HeuristicPolicy {
    /// Bounds given in either order are sorted; `start` is clamped into them.
    pub fn new(min: usize, max: usize, start: usize) -> Self {
        let (min, max) = (min.min(max), min.max(max));
        Self { min, max, trunk: start.clamp(min, max) }
    }
}

impl Default for HeuristicPolicy {
    fn default() -> Self {
        Self::new(1, 16, DraftPlan::DEFAULT.trunk_len)
    }
}

impl DraftPolicy for HeuristicPolicy {
    fn plan(&self) -> DraftPlan {
        DraftPlan::chain(self.trunk)
    }

    fn observe(&mut self, feedback: &RoundFeedback) {
        self.trunk = if feedback.full_accept() { self.trunk.saturating_add(2) } else { self.trunk.saturating_sub(1) }
            .clamp(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::Sim;
    use super::*;

    fn fb(offered: usize, accepted: usize) -> RoundFeedback {
        RoundFeedback { offered_depth: offered, accepted_len: accepted, ..Default::default() }
    }

    #[test]
    fn fixed_never_moves() {
        let mut p = FixedPolicy(5);
        let plans = Sim::new(1).trunk_p(0.99).run(&mut p, 20);
        assert!(plans.iter().all(|&plan| plan == DraftPlan::chain(5)));
        assert_eq!(FixedPolicy(0).plan().nodes(), 0);
    }

    #[test]
    fn heuristic_steps_and_stays_bounded() {
        let mut p = HeuristicPolicy::new(2, 6, 4);
        p.observe(&fb(4, 4));
        assert_eq!(p.plan(), DraftPlan::chain(6));
        p.observe(&fb(6, 6));
        assert_eq!(p.plan().trunk_len, 6);
        p.observe(&fb(6, 5));
        assert_eq!(p.plan().trunk_len, 5);
        for _ in 0..10 {
            p.observe(&fb(5, 0));
        }
        assert_eq!(p.plan().trunk_len, 2);
        // An empty draft is not a full accept.
        p.observe(&fb(0, 0));
        assert_eq!(p.plan().trunk_len, 2);
        assert_eq!(HeuristicPolicy::new(9, 3, 100).plan().trunk_len, 9);
        assert_eq!(HeuristicPolicy::default().plan(), DraftPlan::DEFAULT);
    }

    #[test]
    fn heuristic_follows_acceptance() {
        let mut high = HeuristicPolicy::default();
        let mut low = HeuristicPolicy::default();
        let h = Sim::new(2).trunk_p(0.97).run(&mut high, 100);
        let l = Sim::new(2).trunk_p(0.2).run(&mut low, 100);
        let mean = |v: &[DraftPlan]| v.iter().map(|p| p.trunk_len).sum::<usize>() as f64 / v.len() as f64;
        assert!(mean(&h[50..]) > 8.0 && mean(&l[50..]) < 2.0);
    }
}
