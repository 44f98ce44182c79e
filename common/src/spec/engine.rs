//! Drafter and verifier in one process: the round driver of
//! [`crate::spec`] with the target model as its verifier, minus the network.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use super::{block_on_ready, drive, DraftStrategy, InProcessVerifier, Opening, Rounds, SpecStats};
use crate::controller::Learned;
use crate::draft::PhrasePool;
use crate::generate::GenerateConfig;
use crate::model::CausalLm;
use crate::tree::TreeLimits;

use crate::engine::{EngineError, VerifierSession, DEFAULT_DRAFT_WINDOW};

pub struct SpecEngine<'m> {
    pub drafter: &'m dyn CausalLm,
    pub target: &'m dyn CausalLm,
    pub strategy: Arc<dyn DraftStrategy>,
    pub limits: TreeLimits,
    /// What an earlier generation's policy learned (its
    /// [`SpecStats::learned`]): greedy generations start from it, as the
    /// edge daemon's do across requests.
    pub warm: Option<Learned>,
    /// The drafter reads at most this many of the prompt's last tokens
    /// ([`DrafterConfig::window`](crate::engine::DrafterConfig::window)).
    pub draft_window: usize,
}

impl<'m> SpecEngine<'m> {
    pub fn new(
        drafter: &'m dyn CausalLm,
        target: &'m dyn CausalLm,
        strategy: Arc<dyn DraftStrategy>,
    ) -> Result<Self, EngineError> {
        let (d, v) = (drafter.config().vocab_size, target.config().vocab_size);
        if d != v {
            return Err(EngineError::VocabMismatch { drafter: d, verifier: v });
        }
        let limits = TreeLimits { max_nodes: 64, max_depth: 32 };
        Ok(Self { drafter, target, strategy, limits, warm: None, draft_window: DEFAULT_DRAFT_WINDOW })
    }

    /// Generates after `prompt`, handing each round's committed tokens to
    /// `on_tokens`. `pool` carries phrases across requests; it is returned.
    pub fn generate(
        &self,
        prompt: &[u32],
        cfg: &GenerateConfig,
        mut pool: PhrasePool,
        on_tokens: impl FnMut(&[u32]) -> ControlFlow<()> + Send,
    ) -> Result<(SpecStats, PhrasePool), EngineError> {
        let wall = Instant::now();
        let mut policy = self.strategy.warm_policy(None, self.warm.as_ref(), !cfg.sampling.is_greedy());
        let session = VerifierSession::open(self.target, prompt, cfg.sampling, self.limits)?;
        let mut verifier = InProcessVerifier { session };
        let mut stats = SpecStats { prompt_tokens: prompt.len(), ..SpecStats::default() };
        {
            let mut source = self.strategy.open(Opening {
                drafter: Some(self.drafter),
                prompt,
                sampling: cfg.sampling,
                stop_ids: &cfg.stop_ids,
                pool: &mut pool,
                draft_window: self.draft_window,
            })?;
            let rounds = Rounds {
                prompt_len: prompt.len(),
                max_new: cfg.max_new_tokens,
                stop_ids: &cfg.stop_ids,
                sampled: !cfg.sampling.is_greedy(),
                pipeline: false,
                limits: self.limits,
                vocab: self.target.config().vocab_size,
                max_context: self.target.config().max_context.min(self.drafter.config().max_context),
                // In one process the verifier never waits on a link.
                run_on: false,
            };
            block_on_ready(drive(&mut verifier, &mut *source, &mut *policy, &rounds, &mut stats, on_tokens))?;
        }
        stats.learned = policy.learned();
        stats.target_forward_passes = verifier.session.forward_passes();
        stats.wall_secs = wall.elapsed().as_secs_f64();
        Ok((stats, pool))
    }
}
