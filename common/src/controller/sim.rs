//! A simulated edge–cloud pair for testing policies: acceptances are drawn
//! with a fixed per-depth probability, costs follow fixed curves.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cost::CostCurve;
use super::round::{BranchFeedback, DraftPlan, RoundFeedback};
use super::DraftPolicy;

pub(crate) struct Sim {
    trunk_p: f64,
    branch_p: f64,
    /// Where the trunk breaks, how often a runner-up sibling takes over.
    rescue_p: f64,
    drafter_ms: f64,
    rtt_ms: f64,
    verifier: CostCurve,
    /// Each round accepted whole is followed by one drafted ahead.
    pipeline: bool,
    /// Rounds drafted ahead are sent ahead too: a won bet skips the round trip.
    send_ahead: bool,
    last_full: bool,
    rng: StdRng,
}

impl Sim {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            trunk_p: 0.7,
            branch_p: 0.2,
            rescue_p: 0.0,
            drafter_ms: 8.0,
            rtt_ms: 50.0,
            verifier: CostCurve::linear(30.0, 1.5),
            pipeline: false,
            send_ahead: false,
            last_full: false,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub(crate) fn trunk_p(mut self, p: f64) -> Self {
        self.trunk_p = p;
        self
    }

    pub(crate) fn branch_p(mut self, p: f64) -> Self {
        self.branch_p = p;
        self
    }

    pub(crate) fn rescue_p(mut self, p: f64) -> Self {
        self.rescue_p = p;
        self
    }

    pub(crate) fn rtt_ms(mut self, ms: f64) -> Self {
        self.rtt_ms = ms;
        self
    }

    pub(crate) fn drafter_ms(mut self, ms: f64) -> Self {
        self.drafter_ms = ms;
        self
    }

    pub(crate) fn pipeline(mut self, on: bool) -> Self {
        self.pipeline = on;
        self
    }

    pub(crate) fn send_ahead(mut self, on: bool) -> Self {
        self.send_ahead = on;
        self
    }

    pub(crate) fn verifier(mut self, curve: CostCurve) -> Self {
        self.verifier = curve;
        self
    }

    fn path(&mut self, len: usize, p: f64) -> usize {
        (0..len).take_while(|_| self.rng.random_bool(p)).count()
    }

    /// Verifies one draft of this shape.
    pub(crate) fn round(&mut self, plan: DraftPlan) -> RoundFeedback {
        let accepted_len = self.path(plan.trunk_len, self.trunk_p);
        let branches = (0..plan.branches)
            .map(|_| BranchFeedback { offered: plan.branch_len, accepted: self.path(plan.branch_len, self.branch_p) })
            .collect();
        let rescued = accepted_len < plan.trunk_len && self.rng.random_bool(self.rescue_p);
        let ahead = self.pipeline && self.last_full;
        self.last_full = plan.trunk_len > 0 && accepted_len == plan.trunk_len;
        RoundFeedback {
            offered_depth: plan.trunk_len,
            accepted_len,
            branches,
            nodes: plan.nodes(),
            draft_ms: Some(self.drafter_ms * plan.trunk_len as f64),
            verify_ms: Some(self.verifier.cost(plan.nodes())),
            rtt_ms: Some(self.rtt_ms),
            ahead,
            sent_ahead: ahead && self.send_ahead,
            rescued,
        }
    }

    /// Runs `rounds` rounds; returns the plan used in each.
    pub(crate) fn run(&mut self, policy: &mut dyn DraftPolicy, rounds: usize) -> Vec<DraftPlan> {
        let mut plans = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let plan = policy.plan();
            let feedback = self.round(plan);
            policy.observe(&feedback);
            plans.push(plan);
        }
        plans
    }
}
