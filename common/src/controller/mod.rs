//! Acceptance feedback tunes the draft.
//!
//! After every verified round the edge tells a [`DraftPolicy`] what happened
//! ([`RoundFeedback`]) and asks it for the shape of the next draft
//! ([`DraftPlan`]: a trunk from the drafter plus pool phrases hanging as
//! parallel branches).
//!
//! - [`ema`]: the moving average every estimate here is built on;
//! - [`acceptance`]: per-depth acceptance rates;
//! - [`cost`]: the verifier's cost curve c(k);
//! - [`round`]: plans and feedback;
//! - [`objective`]: expected tokens and the two objectives under a cost model;
//! - [`adaptive`]: the [`Controller`] that maximises the objective;
//! - [`baseline`]: fixed and heuristic policies to benchmark it against.

pub mod acceptance;
pub mod adaptive;
pub mod baseline;
pub mod cost;
pub mod ema;
pub mod objective;
pub mod round;
#[cfg(test)]
mod sim;

pub use acceptance::AcceptanceStats;
pub use adaptive::{Controller, ControllerConfig, ControllerError, Learned};
pub use baseline::{FixedPolicy, HeuristicPolicy};
pub use cost::{CostCurve, CostCurveError, RoundCosts};
pub use ema::Ema;
pub use objective::{CostModel, Objective};
pub use round::{BranchFeedback, DraftPlan, Prediction, RoundFeedback};

/// Decides the shape of each draft from what earlier rounds showed.
pub trait DraftPolicy {
    /// The draft to build next.
    fn plan(&self) -> DraftPlan;
    /// Learns from one verified round.
    fn observe(&mut self, feedback: &RoundFeedback);
    /// What the policy expects of `plan`, for policies that model it.
    fn predict(&self, _plan: &DraftPlan) -> Option<Prediction> {
        None
    }
    /// What the policy learned that a later generation can start from
    /// (policies that learn nothing have nothing to hand on).
    fn learned(&self) -> Option<Learned> {
        None
    }
    /// Starts from what an earlier generation learned.
    fn warm(&mut self, _learned: &Learned) {}
    /// What a round costs, for policies that measure it.
    fn round_costs(&self) -> Option<RoundCosts> {
        None
    }
}
