//! One round's plan and what the verifier made of it.

use serde::{Deserialize, Serialize};

/// The shape of one draft: a comb tree.
///
/// The trunk is the drafter's own greedy path (one drafter forward per token).
/// Each branch is a phrase from the pool (no drafter forward) offered as an
/// alternative path; see [`crate::controller::objective`] for how branches
/// are valued. `branch_len` is 0 exactly when `branches` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DraftPlan {
    pub trunk_len: usize,
    pub branches: usize,
    pub branch_len: usize,
}

impl DraftPlan {
    /// The plan with no history: a short trunk that wins when acceptance is
    /// decent and costs little when it is not, and no branches until the
    /// pool has shown its worth.
    pub const DEFAULT: DraftPlan = DraftPlan { trunk_len: 4, branches: 0, branch_len: 0 };

    /// A trunk only.
    pub const fn chain(trunk_len: usize) -> Self {
        Self { trunk_len, branches: 0, branch_len: 0 }
    }

    /// Draft tokens the verifier checks.
    pub fn nodes(&self) -> usize {
        self.trunk_len + self.branches * self.branch_len
    }
}

impl Default for DraftPlan {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How one offered branch fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BranchFeedback {
    /// Tokens the branch had.
    pub offered: usize,
    /// Leading tokens of the branch that matched the verifier (whether or not
    /// the branch was the path finally committed).
    pub accepted: usize,
}

/// What one verified round showed. Values are measurements, so none is
/// trusted: counts are clamped and missing or non-finite times are skipped.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RoundFeedback {
    /// Trunk tokens actually offered (may be fewer than planned, e.g. at EOS).
    pub offered_depth: usize,
    /// Leading trunk tokens the verifier accepted.
    pub accepted_len: usize,
    /// One entry per branch actually offered.
    pub branches: Vec<BranchFeedback>,
    /// Draft nodes the verifier checked in this round.
    pub nodes: usize,
    /// Drafter time for the whole trunk.
    pub draft_ms: Option<f64>,
    /// Verifier compute time for `nodes` (as reported by the cloud).
    pub verify_ms: Option<f64>,
    /// Network round trip, excluding `verify_ms`.
    pub rtt_ms: Option<f64>,
    /// This round was drafted while the previous verdict was in flight, so
    /// its drafting time was hidden behind that round trip.
    #[serde(default)]
    pub ahead: bool,
    /// It was also sent ahead of that verdict, so a won bet skipped the
    /// round trip too.
    #[serde(default)]
    pub sent_ahead: bool,
    /// Where the trunk broke, a runner-up sibling was the verifier's token.
    #[serde(default)]
    pub rescued: bool,
}

impl RoundFeedback {
    /// Whether every trunk token offered was accepted.
    pub fn full_accept(&self) -> bool {
        self.offered_depth > 0 && self.accepted_len >= self.offered_depth
    }
}

/// What a policy expected of a plan, logged beside what the round did so
/// the cost model's error can be reported.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Prediction {
    /// Draft tokens expected to be accepted (the verifier's own token not counted).
    pub accepted: f64,
    pub draft_ms: f64,
    pub verify_ms: f64,
    pub rtt_ms: f64,
    /// The part of the round expected to be hidden behind the previous
    /// round's flight: drafting ahead, and with rounds sent ahead the round
    /// trip too.
    pub hidden_ms: f64,
}

impl Prediction {
    /// The round's expected wall time, as the objective prices it.
    pub fn round_ms(&self) -> f64 {
        self.draft_ms + self.verify_ms + self.rtt_ms - self.hidden_ms
    }
}
