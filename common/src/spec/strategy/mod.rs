//! How drafts are made: one [`DraftStrategy`] per file, and the one name
//! table ([`TABLE`]) that every CLI's draft flag is parsed with.
//!
//! A strategy gives, for each generation, a planner (a [`DraftPolicy`]: how
//! deep and how bushy the next draft is) and a [`DraftSource`] (builds the
//! tree, learns from each verdict). The [round driver](super::drive) does the
//! rest, the same for every strategy.
//!
//! To add one: a new file here implementing [`DraftStrategy`], and a line in
//! [`TABLE`] (a strategy that needs inputs no flag can give, like
//! [`replay::Replay`], is built in code instead).

pub mod chain;
pub mod heuristic;
pub mod hybrid;
pub mod ouroboros;
pub mod pool_only;
pub mod replay;

use std::fmt;
use std::sync::Arc;

use crate::controller::{
    BranchFeedback, Controller, CostCurve, DraftPlan, DraftPolicy, Learned, Objective, RoundCosts,
};
use crate::draft::PhrasePool;
use crate::engine::{Ahead, Draft, Drafter, DrafterConfig, EngineError};
use crate::model::CausalLm;
use crate::sampling::SamplingParams;
use crate::tree::TreeLimits;
use crate::verify::Verdict;

/// Builds one generation's drafts and learns from its verdicts.
pub trait DraftSource {
    /// The next round's draft, shaped by `plan` within `limits`.
    fn draft(&mut self, plan: &DraftPlan, limits: &TreeLimits, vocab: usize) -> Result<Draft, EngineError>;

    /// The round after `current`, drafted while `current`'s verdict is in
    /// flight; `None` when there is nothing to bet on (the default).
    fn draft_ahead(
        &mut self,
        _current: &Draft,
        _plan: &DraftPlan,
        _limits: &TreeLimits,
        _vocab: usize,
    ) -> Result<Option<Ahead>, EngineError> {
        Ok(None)
    }

    /// Takes a verdict on `draft` in. Returns how many trunk tokens were
    /// accepted and how each branch fared (the policy's feedback).
    fn commit(&mut self, draft: &Draft, verdict: &Verdict) -> (usize, Vec<BranchFeedback>);

    /// Takes in tokens the verifier decoded on its own right after the last
    /// verdict (it ran on while no round was in hand); a round drafted
    /// ahead on that verdict is dropped with them.
    fn extend(&mut self, tokens: &[u32]);

    /// Drafter model passes run so far.
    fn forward_passes(&self) -> usize {
        0
    }

    /// What rounds cost now, for drafts a source sizes itself (copies of
    /// the text); sources that size nothing themselves ignore it.
    fn price(&mut self, _costs: RoundCosts) {}
}

/// What a strategy may draw on for one generation.
pub struct Opening<'a> {
    /// The drafter model, where there is one (the benchmarks' replay runs without).
    pub drafter: Option<&'a dyn CausalLm>,
    /// Every committed token so far.
    pub prompt: &'a [u32],
    pub sampling: SamplingParams,
    pub stop_ids: &'a [u32],
    /// Phrases shared across requests. Borrowed, so that what a generation
    /// learned stays in the caller's pool even if the generation is dropped
    /// half-way (a cancelled request).
    pub pool: &'a mut PhrasePool,
    /// The drafter reads at most this many of the prompt's last tokens (0:
    /// all of it; [`DrafterConfig::window`]).
    pub draft_window: usize,
}

/// A way of drafting, chosen by name on every CLI.
pub trait DraftStrategy: fmt::Debug + Send + Sync {
    /// The name [`parse`] reads back.
    fn name(&self) -> String;

    /// What its plans maximise.
    fn objective(&self) -> Objective {
        Objective::Latency
    }

    /// The planner for one generation. `costs` is the verifier's own cost
    /// curve, given only when plans may depend on measurements (greedy runs).
    fn policy(&self, costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send>;

    /// [`policy`](Self::policy), starting from what an earlier generation
    /// learned. Sampled runs start cold: which sample a seed yields depends
    /// on the tree's shape, so their plans must not depend on anything
    /// measured.
    fn warm_policy(
        &self,
        costs: Option<CostCurve>,
        warm: Option<&Learned>,
        sampled: bool,
    ) -> Box<dyn DraftPolicy + Send> {
        let mut policy = self.policy(costs);
        if let (false, Some(learned)) = (sampled, warm) {
            policy.warm(learned);
        }
        policy
    }

    /// The tree builder for one generation.
    fn open<'a>(&self, at: Opening<'a>) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError>;
}

#[derive(Debug, thiserror::Error)]
#[error("unknown draft strategy `{given}` (one of: {})", names())]
pub struct StrategyError {
    pub given: String,
}

/// One row of the name table: a strategy's name, and how to build it from
/// what follows the name (`chain4` → `"4"`; empty for a bare name).
pub struct Entry {
    pub name: &'static str,
    /// How the name is written, with its parameter (`chainN`).
    pub usage: &'static str,
    pub about: &'static str,
    pub build: fn(&str) -> Option<Arc<dyn DraftStrategy>>,
}

/// Every strategy a flag can name.
pub const TABLE: &[Entry] =
    &[chain::ENTRY, heuristic::ENTRY, ouroboros::ENTRY, ouroboros::COMPUTE_ENTRY, pool_only::ENTRY, hybrid::ENTRY];

/// Parses a draft flag (`chain4`, `heuristic`, `ouroboros`, …). Longer
/// names are tried first, so `ouroboros-compute` is not read as `ouroboros`
/// with a parameter.
pub fn parse(given: &str) -> Result<Arc<dyn DraftStrategy>, StrategyError> {
    let mut entries: Vec<&Entry> = TABLE.iter().collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.name.len()));
    entries
        .into_iter()
        .find_map(|e| given.strip_prefix(e.name).and_then(e.build))
        .ok_or_else(|| StrategyError { given: given.to_string() })
}

/// The table's names as a flag's help or error says them.
pub fn names() -> String {
    TABLE.iter().map(|e| e.usage).collect::<Vec<_>>().join(", ")
}

/// Builds a bare name's strategy only when nothing follows the name.
fn bare(rest: &str, make: impl FnOnce() -> Arc<dyn DraftStrategy>) -> Option<Arc<dyn DraftStrategy>> {
    rest.is_empty().then(make)
}

/// The suffix that turns prompt lookup off (`pool-nocopy`), to measure what
/// copies bring side by side in the same run.
const NO_COPY: &str = "-nocopy";

/// Builds a strategy that copies the text's earlier tokens, or with
/// [`NO_COPY`] after its name one that does not.
fn copying(rest: &str, make: impl FnOnce(bool) -> Arc<dyn DraftStrategy>) -> Option<Arc<dyn DraftStrategy>> {
    match rest {
        "" => Some(make(true)),
        NO_COPY => Some(make(false)),
        _ => None,
    }
}

/// A strategy's name as [`parse`] takes it back.
fn copy_name(base: &str, copies: bool) -> String {
    if copies {
        base.to_string()
    } else {
        format!("{base}{NO_COPY}")
    }
}

/// The adaptive controller as a planner, starting from the verifier's
/// measured costs when they are given.
fn adaptive(controller: Controller, costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send> {
    Box::new(match costs {
        Some(curve) => controller.with_cost_curve(curve),
        None => controller,
    })
}

/// The drafter model's own source, with or without the phrase pool.
fn model_source<'a>(
    name: &str,
    at: Opening<'a>,
    cfg: DrafterConfig,
) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
    let model = at.drafter.ok_or_else(|| EngineError::NoDrafter(name.to_string()))?;
    let cfg = DrafterConfig { window: at.draft_window, ..cfg };
    Ok(Box::new(Drafter::open(model, at.prompt, at.sampling, at.pool, cfg, at.stop_ids.to_vec())?))
}

#[cfg(test)]
pub(crate) mod tests;

/// The drafter model behind the chain, heuristic and Ouroboros strategies.
impl DraftSource for Drafter<'_> {
    fn draft(&mut self, plan: &DraftPlan, limits: &TreeLimits, vocab: usize) -> Result<Draft, EngineError> {
        Drafter::draft(self, plan, limits, vocab)
    }

    fn draft_ahead(
        &mut self,
        current: &Draft,
        plan: &DraftPlan,
        limits: &TreeLimits,
        vocab: usize,
    ) -> Result<Option<Ahead>, EngineError> {
        Drafter::draft_ahead(self, current, plan, limits, vocab)
    }

    fn commit(&mut self, draft: &Draft, verdict: &Verdict) -> (usize, Vec<BranchFeedback>) {
        Drafter::commit(self, draft, verdict)
    }

    fn extend(&mut self, tokens: &[u32]) {
        Drafter::extend(self, tokens)
    }

    fn forward_passes(&self) -> usize {
        Drafter::forward_passes(self)
    }

    fn price(&mut self, costs: RoundCosts) {
        Drafter::price(self, costs)
    }
}
