//! Drafter and verifier in one process: the same draft/verify/commit cycle
//! the networked system runs, minus the network.

use std::ops::ControlFlow;
use std::time::Instant;

use crate::controller::{Controller, DraftPlan, DraftPolicy, FixedPolicy, HeuristicPolicy, RoundFeedback};
use crate::draft::PhrasePool;
use crate::generate::{FinishReason, GenerateConfig};
use crate::model::CausalLm;
use crate::tree::TreeLimits;

use super::drafter::{Drafter, DrafterConfig};
use super::verifier::VerifierSession;
use super::EngineError;

/// How drafts are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftMode {
    /// Classic speculation: a chain of `gamma` drafter tokens, no pool.
    Chain { gamma: usize },
    /// A chain whose length follows "+2 on full accept, −1 otherwise".
    Heuristic,
    /// Ouroboros: phrase-extended trunk, pool branches, adaptive controller.
    Ouroboros,
}

#[derive(Debug, Clone, Default)]
pub struct SpecStats {
    pub prompt_tokens: usize,
    pub generated: usize,
    pub rounds: usize,
    /// Draft tokens accepted (excluding the verifier's own token per round).
    pub accepted: usize,
    pub drafted_nodes: usize,
    pub target_forward_passes: usize,
    pub drafter_forward_passes: usize,
    pub draft_secs: f64,
    pub verify_secs: f64,
    pub wall_secs: f64,
    /// `accept_hist[n]`: rounds that accepted `n` draft tokens.
    pub accept_hist: Vec<usize>,
    pub finish: Option<FinishReason>,
}

impl SpecStats {
    /// Mean tokens committed per verify step (accepted + the verifier's own).
    pub fn tokens_per_round(&self) -> f64 {
        self.generated as f64 / self.rounds.max(1) as f64
    }
}

pub struct SpecEngine<'m> {
    pub drafter: &'m dyn CausalLm,
    pub target: &'m dyn CausalLm,
    pub mode: DraftMode,
    pub limits: TreeLimits,
    pub drafter_config: DrafterConfig,
}

impl<'m> SpecEngine<'m> {
    pub fn new(drafter: &'m dyn CausalLm, target: &'m dyn CausalLm, mode: DraftMode) -> Result<Self, EngineError> {
        let (d, v) = (drafter.config().vocab_size, target.config().vocab_size);
        if d != v {
            return Err(EngineError::VocabMismatch { drafter: d, verifier: v });
        }
        let drafter_config = DrafterConfig { use_pool: mode == DraftMode::Ouroboros, ..DrafterConfig::default() };
        Ok(Self { drafter, target, mode, limits: TreeLimits { max_nodes: 64, max_depth: 32 }, drafter_config })
    }

    /// Generates after `prompt`, handing each round's committed tokens to
    /// `on_tokens`. `pool` carries phrases across requests; it is returned.
    pub fn generate(
        &self,
        prompt: &[u32],
        cfg: &GenerateConfig,
        pool: PhrasePool,
        mut on_tokens: impl FnMut(&[u32]) -> ControlFlow<()>,
    ) -> Result<(SpecStats, PhrasePool), EngineError> {
        let wall = Instant::now();
        let mut policy: Box<dyn DraftPolicy> = match self.mode {
            DraftMode::Chain { gamma } => Box::new(FixedPolicy(gamma)),
            DraftMode::Heuristic => Box::new(HeuristicPolicy::default()),
            DraftMode::Ouroboros => Box::new(Controller::default()),
        };
        let mut verifier = VerifierSession::open(self.target, prompt, cfg.sampling, self.limits)?;
        let mut drafter =
            Drafter::open(self.drafter, prompt, cfg.sampling, pool, self.drafter_config.clone(), cfg.stop_ids.clone())?;
        let vocab = self.target.config().vocab_size;
        let mut stats = SpecStats { prompt_tokens: prompt.len(), ..SpecStats::default() };
        let max_ctx = self.target.config().max_context.min(self.drafter.config().max_context);
        while stats.generated < cfg.max_new_tokens {
            if verifier.committed().len() + 1 >= max_ctx {
                stats.finish = Some(FinishReason::Length);
                break;
            }
            let remaining = cfg.max_new_tokens - stats.generated;
            let planned = policy.plan();
            // Drafting past the end of the request would be wasted work.
            let plan = DraftPlan { trunk_len: planned.trunk_len.min(remaining.saturating_sub(1)), ..planned };
            let t0 = Instant::now();
            let draft = drafter.draft(&plan, &self.limits, vocab)?;
            let draft_ms = t0.elapsed().as_secs_f64() * 1e3;
            let t1 = Instant::now();
            let verdict = verifier.verify(&draft.tree, &draft.dists)?;
            let verify_ms = t1.elapsed().as_secs_f64() * 1e3;
            let (on_trunk, branches) = drafter.commit(&draft, &verdict);
            // Under sampling, which sample a seed yields depends on the tree
            // shape; plans made from wall-clock timings would make seeded runs
            // irreproducible. So sampled runs plan from acceptance alone (with
            // the controller's default costs); greedy output cannot depend on
            // the plan, so greedy runs use the measured costs.
            let timed = cfg.sampling.is_greedy();
            policy.observe(&RoundFeedback {
                offered_depth: draft.trunk_len,
                accepted_len: on_trunk,
                branches,
                nodes: draft.tree.len(),
                draft_ms: timed.then_some(draft_ms),
                verify_ms: timed.then_some(verify_ms),
                rtt_ms: timed.then_some(0.0),
            });
            stats.rounds += 1;
            stats.accepted += verdict.accepted.len();
            stats.drafted_nodes += draft.tree.len();
            stats.draft_secs += draft_ms / 1e3;
            stats.verify_secs += verify_ms / 1e3;
            if stats.accept_hist.len() <= verdict.accepted.len() {
                stats.accept_hist.resize(verdict.accepted.len() + 1, 0);
            }
            stats.accept_hist[verdict.accepted.len()] += 1;

            let mut emitted = verdict.emitted_tokens(&draft.tree);
            emitted.truncate(remaining);
            if let Some(i) = emitted.iter().position(|t| cfg.stop_ids.contains(t)) {
                emitted.truncate(i + 1);
                stats.finish = Some(FinishReason::Stop);
            }
            stats.generated += emitted.len();
            if on_tokens(&emitted).is_break() {
                stats.finish = Some(FinishReason::Cancelled);
            }
            if stats.finish.is_some() {
                break;
            }
        }
        stats.finish.get_or_insert(FinishReason::Length);
        stats.target_forward_passes = verifier.forward_passes();
        stats.drafter_forward_passes = drafter.forward_passes();
        stats.wall_secs = wall.elapsed().as_secs_f64();
        Ok((stats, drafter.into_pool()))
    }
}
