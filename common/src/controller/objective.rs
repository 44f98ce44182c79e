//! What a plan is worth: expected tokens per round under a cost model.
//!
//! # Branch model
//!
//! The trunk and every branch are treated as independent paths from the
//! root, and the verifier commits the longest accepted one, so
//!
//! ```text
//! P(L >= k) = 1 - (1 - P_trunk(k)) * (1 - P_branch(k))^branches
//! E[accepted] = sum over k >= 1 of P(L >= k)
//! ```
//!
//! with `P_path(k) = Π_{j<=k} a_j` from that path's [`AcceptanceStats`] (all
//! branches share one set of estimates, learned from every branch offered).
//! Independence ignores that the trunk and a branch usually compete for the
//! same next token; since branch rates are measured marginally (including the
//! rounds where the trunk already won) the model undervalues branches a bit
//! rather than overvaluing them. Identical branches give diminishing returns
//! through the power, which is the shape we want without modelling the rank
//! of each pool candidate.
//!
//! # Runner-up siblings
//!
//! Where the trunk breaks at depth k, a runner-up sibling beside it may be
//! the verifier's token instead (dynamic trees); that path then ends at k.
//! With `rescue` the measured share of broken trunks a sibling took over,
//!
//! ```text
//! P_trunk(>= k) = P_trunk(k) + P_trunk(k-1) * (1 - a_k) * rescue
//! ```
//!
//! Leaving this out made the controller predict about a sixth fewer tokens
//! than its rounds committed, and value deeper trunks (more places for a
//! sibling to catch a miss) too little.

use serde::{Deserialize, Serialize};

use super::acceptance::AcceptanceStats;
use super::cost::CostCurve;
use super::round::DraftPlan;

/// Guards divisions when a cost is measured as 0.
const MIN_COST_MS: f64 = 1e-3;

/// What the controller maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Objective {
    /// Committed tokens per second of wall-clock time on the edge: one round
    /// costs the trunk's drafter forwards, the round trip and the verifier.
    #[default]
    Latency,
    /// Committed tokens per millisecond of verifier compute: what a cloud
    /// serving many clients cares about. Drafter time and RTT are free here.
    VerifierCompute,
}

/// The measured costs of a round.
#[derive(Debug, Clone, Copy)]
pub struct CostModel<'a> {
    pub drafter_ms_per_token: f64,
    pub rtt_ms: f64,
    pub verifier: &'a CostCurve,
    /// How often a round whose trunk was accepted whole is followed by one
    /// drafted ahead (0 without pipelining; below 1 when the drafter's guess
    /// at the verifier's own token misses).
    pub ahead_win: f64,
    /// Rounds drafted ahead are also sent ahead of the verdict they bet on,
    /// so a won bet is verified with no round trip before it.
    pub sends_ahead: bool,
}

impl CostModel<'_> {
    /// Wall-clock milliseconds of one round with this plan, every part in turn.
    pub fn round_ms(&self, plan: &DraftPlan) -> f64 {
        self.draft_ms(plan) + self.rtt_ms + self.verifier.cost(plan.nodes())
    }

    pub fn draft_ms(&self, plan: &DraftPlan) -> f64 {
        self.drafter_ms_per_token * plan.trunk_len as f64
    }

    /// Time expected to be hidden: a round accepted whole lets the next one
    /// be drafted during its flight, and, sent ahead, verified with no round
    /// trip before it. Such a round then costs the longer of its drafting
    /// and its flight (just its verification if it was sent ahead); its
    /// drafting takes one pass more than the trunk (the trunk's last token,
    /// whose logits give the guessed verifier token). Without this, deeper
    /// trunks look as costly as if every round's drafting waited, and plans
    /// stay short.
    pub fn hidden_ms(&self, plan: &DraftPlan, trunk: &AcceptanceStats) -> f64 {
        let verify = self.verifier.cost(plan.nodes());
        let drafting = self.drafter_ms_per_token * (plan.trunk_len + 1) as f64;
        let won = if self.sends_ahead { verify.max(drafting) } else { (self.rtt_ms + verify).max(drafting) };
        let hideable = (self.round_ms(plan) - won).max(0.0);
        self.ahead_win.clamp(0.0, 1.0) * trunk.survival(plan.trunk_len) * hideable
    }

    /// [`round_ms`](Self::round_ms) less the drafting expected to be hidden.
    pub fn expected_round_ms(&self, plan: &DraftPlan, trunk: &AcceptanceStats) -> f64 {
        self.round_ms(plan) - self.hidden_ms(plan, trunk)
    }
}

/// What the controller knows of how far a round's paths get.
#[derive(Debug, Clone, Copy)]
pub struct Paths<'a> {
    pub trunk: &'a AcceptanceStats,
    /// Every pool branch shares one set of estimates.
    pub branch: &'a AcceptanceStats,
    /// Share of broken trunks a runner-up sibling took over (0 without siblings).
    pub rescue: f64,
}

/// Expected accepted draft tokens (not counting the verifier's bonus token).
pub fn expected_accepted(plan: &DraftPlan, paths: &Paths<'_>) -> f64 {
    let branch_len = if plan.branches == 0 { 0 } else { plan.branch_len };
    let depth = plan.trunk_len.max(branch_len);
    let rescue = paths.rescue.clamp(0.0, 1.0);
    let mut trunk_survive = 1.0;
    let mut branch_survive = 1.0;
    let mut total = 0.0;
    for k in 1..=depth {
        let trunk_reach = if k <= plan.trunk_len {
            let rate = paths.trunk.rate(k);
            let reach = trunk_survive * (rate + (1.0 - rate) * rescue);
            trunk_survive *= rate;
            reach
        } else {
            0.0
        };
        branch_survive = if k <= branch_len { branch_survive * paths.branch.rate(k) } else { 0.0 };
        let none = (1.0 - trunk_reach) * (1.0 - branch_survive).powi(plan.branches as i32);
        total += 1.0 - none;
    }
    total
}

/// The objective's value of a plan; higher is better. Tokens per second for
/// [`Objective::Latency`], tokens per verifier millisecond for
/// [`Objective::VerifierCompute`]; both count the bonus token, since every
/// round commits at least one.
pub fn score(plan: &DraftPlan, objective: Objective, paths: &Paths<'_>, cost: &CostModel<'_>) -> f64 {
    let tokens = expected_accepted(plan, paths) + 1.0;
    match objective {
        Objective::Latency => 1000.0 * tokens / cost.expected_round_ms(plan, paths.trunk).max(MIN_COST_MS),
        Objective::VerifierCompute => tokens / cost.verifier.cost(plan.nodes()).max(MIN_COST_MS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_only_matches_the_product_formula() {
        let a = AcceptanceStats::new(0.5, 0.1, 16);
        let plan = DraftPlan::chain(3);
        let paths = Paths { trunk: &a, branch: &a, rescue: 0.0 };
        assert!((expected_accepted(&plan, &paths) - (0.5 + 0.25 + 0.125)).abs() < 1e-12);
        assert_eq!(expected_accepted(&DraftPlan::chain(0), &paths), 0.0);
    }

    #[test]
    fn branches_add_diminishing_gain() {
        let trunk = AcceptanceStats::new(0.5, 0.1, 16);
        let branch = AcceptanceStats::new(0.4, 0.1, 16);
        let paths = Paths { trunk: &trunk, branch: &branch, rescue: 0.0 };
        let with = |branches| expected_accepted(&DraftPlan { trunk_len: 2, branches, branch_len: 3 }, &paths);
        let (e0, e1, e2) = (with(0), with(1), with(2));
        assert!(e1 > e0 && e2 > e1 && e2 - e1 < e1 - e0);
        // Depth 1: 1 - 0.5 * 0.6 = 0.7.
        let one_deep = DraftPlan { trunk_len: 1, branches: 1, branch_len: 1 };
        assert!((expected_accepted(&one_deep, &paths) - 0.7).abs() < 1e-12);
    }

    #[test]
    fn siblings_catch_a_share_of_the_broken_trunks() {
        let a = AcceptanceStats::new(0.5, 0.1, 16);
        let plain = Paths { trunk: &a, branch: &a, rescue: 0.0 };
        let rescued = Paths { rescue: 0.4, ..plain };
        // Depth 1: 0.5 + 0.5 * 0.4; depth 2: 0.25 + 0.25 * 0.4.
        let one = DraftPlan::chain(1);
        assert!((expected_accepted(&one, &rescued) - 0.7).abs() < 1e-12);
        let two = DraftPlan::chain(2);
        assert!((expected_accepted(&two, &rescued) - (0.7 + 0.35)).abs() < 1e-12);
        // So a deeper trunk gains more from siblings than a shallow one.
        let gain = |p: &DraftPlan| expected_accepted(p, &rescued) - expected_accepted(p, &plain);
        assert!(gain(&DraftPlan::chain(4)) > gain(&one));
        // A rescue rate of 1 takes every broken trunk one token further, no more.
        let always = Paths { rescue: 1.0, ..plain };
        assert!((expected_accepted(&one, &always) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn objectives_price_different_costs() {
        let a = AcceptanceStats::new(0.8, 0.1, 16);
        let curve = CostCurve::linear(20.0, 2.0);
        let cost = CostModel {
            drafter_ms_per_token: 5.0,
            rtt_ms: 100.0,
            verifier: &curve,
            ahead_win: 0.0,
            sends_ahead: false,
        };
        let plan = DraftPlan::chain(2);
        let tokens = 1.0 + 0.8 + 0.64;
        assert_eq!(cost.round_ms(&plan), 10.0 + 100.0 + 24.0);
        let paths = Paths { trunk: &a, branch: &a, rescue: 0.0 };
        let lat = score(&plan, Objective::Latency, &paths, &cost);
        assert!((lat - 1000.0 * tokens / 134.0).abs() < 1e-9);
        let comp = score(&plan, Objective::VerifierCompute, &paths, &cost);
        assert!((comp - tokens / 24.0).abs() < 1e-12);
        let free = CostCurve::linear(0.0, 0.0);
        let zero =
            CostModel { drafter_ms_per_token: 0.0, rtt_ms: 0.0, verifier: &free, ahead_win: 0.0, sends_ahead: false };
        assert!(score(&plan, Objective::VerifierCompute, &paths, &zero).is_finite());

        // Drafting ahead hides up to the flight (rtt + verify) of a round
        // accepted whole: here all 10 ms of drafting, with probability
        // 0.64 × 0.5.
        let piped = CostModel { ahead_win: 0.5, ..cost };
        assert!((piped.hidden_ms(&plan, &a) - 0.5 * 0.64 * 10.0).abs() < 1e-9);
        assert!((piped.expected_round_ms(&plan, &a) - (134.0 - 3.2)).abs() < 1e-9);
        assert!(score(&plan, Objective::Latency, &paths, &piped) > lat);
        // It never hides more than the flight less the pass drafting ahead
        // spends on the trunk's last token.
        let slow = CostModel { drafter_ms_per_token: 50.0, ahead_win: 1.0, ..cost };
        assert!((slow.hidden_ms(&plan, &a) - 0.64 * (124.0 - 50.0)).abs() < 1e-9);
        let slower = CostModel { drafter_ms_per_token: 500.0, ahead_win: 1.0, ..cost };
        assert_eq!(slower.hidden_ms(&plan, &a), 0.0);
        // Sent ahead, a won bet also skips the round trip: all 10 ms of
        // drafting and the 100 ms flight, with probability 0.64 × 0.5.
        let sent = CostModel { sends_ahead: true, ..piped };
        assert!((sent.hidden_ms(&plan, &a) - 0.5 * 0.64 * 110.0).abs() < 1e-9);
        assert!(score(&plan, Objective::Latency, &paths, &sent) > score(&plan, Objective::Latency, &paths, &piped));
    }
}
