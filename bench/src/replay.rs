//! Sessions without a drafter model: common's replay strategy
//! ([`Replay`]) on the round driver, through the same remote verifier as
//! the edge. It stands in for a fleet of edge devices drafting in parallel
//! when this machine cannot run one drafter model per client.

use std::ops::ControlFlow;

use ouro_common::draft::PhrasePool;
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::strategy::replay::Replay;
use ouro_common::spec::{self, DraftStrategy, Opening, Rounds, SpecStats};
use ouro_common::tree::TreeLimits;
use ouro_edge::link::session::RemoteVerifier;
use ouro_edge::link::{LinkError, SessionStream};

/// Drafts `gamma` tokens a round from `reference`, each wrong with
/// probability `1 - accept`, until `reference` is committed.
pub async fn replay(
    stream: &mut SessionStream,
    committed_len: usize,
    reference: &[u32],
    gamma: usize,
    accept: f64,
    vocab: u32,
    seed: u64,
) -> Result<SpecStats, LinkError> {
    let spec = ReplaySpec { gamma, accept, vocab, seed };
    replay_with(stream, committed_len, reference, spec, |_| ControlFlow::Continue(())).await
}

/// How [`replay_with`] drafts.
#[derive(Debug, Clone, Copy)]
pub struct ReplaySpec {
    pub gamma: usize,
    pub accept: f64,
    pub vocab: u32,
    pub seed: u64,
}

/// [`replay`], handing each round's committed tokens to `on_tokens` as
/// they arrive (for latencies).
pub async fn replay_with(
    stream: &mut SessionStream,
    committed_len: usize,
    reference: &[u32],
    spec: ReplaySpec,
    on_tokens: impl FnMut(&[u32]) -> ControlFlow<()> + Send,
) -> Result<SpecStats, LinkError> {
    let ReplaySpec { gamma, accept, vocab, seed } = spec;
    let strategy = Replay { reference: reference.to_vec(), gamma, accept, seed };
    let mut pool = PhrasePool::default();
    let at = Opening {
        drafter: None,
        prompt: &[],
        sampling: SamplingParams::greedy(),
        stop_ids: &[],
        pool: &mut pool,
        draft_window: 0,
    };
    let mut source = strategy.open(at)?;
    let mut policy = strategy.policy(None);
    let rounds = Rounds {
        prompt_len: committed_len,
        max_new: reference.len(),
        stop_ids: &[],
        sampled: false,
        pipeline: false,
        // Replayed chains are γ long; the cloud checks its own limits.
        limits: TreeLimits { max_nodes: usize::MAX, max_depth: usize::MAX },
        vocab: vocab as usize,
        max_context: usize::MAX,
        // A replayed round is the load, not the gaps between rounds.
        run_on: false,
    };
    let mut verifier = RemoteVerifier::new(stream, committed_len, 0, false);
    let mut run = SpecStats::default();
    spec::drive(&mut verifier, &mut *source, &mut *policy, &rounds, &mut run, on_tokens).await?;
    Ok(run)
}
