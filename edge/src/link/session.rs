//! One speculative session over the wire: the drafter runs here, the
//! verifier in the cloud, one `DraftRound` and one `Verdict` per round.

use std::time::Instant;

use ouro_common::controller::{Controller, DraftPolicy, FixedPolicy, RoundFeedback};
use ouro_common::draft::PhrasePool;
use ouro_common::engine::{Drafter, DrafterConfig};
use ouro_common::model::CausalLm;
use ouro_common::sampling::SamplingParams;
use ouro_common::tree::TreeLimits;
use ouro_proto::v1;
use prost::Message;

use super::grpc::LinkError;
use super::transport::Transport;

/// How the drafter plans in [`speculate`].
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    Chain(usize),
    Ouroboros,
}

/// What a speculative generation produced.
#[derive(Debug, Default)]
pub struct SpecRun {
    pub tokens: Vec<u32>,
    pub rounds: usize,
    /// Protobuf payload bytes sent and received.
    pub bytes_out: usize,
    pub bytes_in: usize,
    /// Time spent drafting, and waiting for verdicts (network + cloud).
    pub draft_secs: f64,
    pub wait_secs: f64,
    /// Cloud forward-pass time the verdicts reported (shared passes counted whole).
    pub cloud_compute_us: u64,
}

/// Speculative generation over the wire: the drafter runs here, the verifier
/// in the server. Stops at `max_new` tokens or a stop token.
#[allow(clippy::too_many_arguments)]
pub async fn speculate(
    client: &mut impl Transport,
    drafter_model: &dyn CausalLm,
    tokenizer_hash: &str,
    prompt: &[u32],
    max_new: usize,
    stop_ids: &[u32],
    plan: Plan,
) -> Result<SpecRun, LinkError> {
    let open = v1::Open { tokenizer_hash: tokenizer_hash.into(), prompt: prompt.to_vec(), ..Default::default() };
    let (mut s, opened) = client.open_session(open).await?;
    let info = client.info().await?;
    let limits = TreeLimits { max_nodes: info.max_tree_nodes as usize, max_depth: info.max_tree_depth as usize };
    let cfg = DrafterConfig { use_pool: matches!(plan, Plan::Ouroboros), ..DrafterConfig::default() };
    let mut drafter =
        Drafter::open(drafter_model, prompt, SamplingParams::greedy(), PhrasePool::default(), cfg, stop_ids.to_vec())?;
    let mut policy: Box<dyn DraftPolicy + Send> = match plan {
        Plan::Chain(g) => Box::new(FixedPolicy(g)),
        Plan::Ouroboros => Box::new(Controller::default()),
    };
    let mut run = SpecRun::default();
    let mut committed = opened.committed_len as usize;
    while run.tokens.len() < max_new {
        let mut p = policy.plan();
        p.trunk_len = p.trunk_len.min(max_new - run.tokens.len() - 1);
        let draft = drafter.draft(&p, &limits, info.vocab_size as usize)?;
        let msg = v1::DraftRound::from_draft(run.rounds as u64 + 1, committed, &draft.tree, None);
        run.bytes_out += msg.encoded_len();
        let t = Instant::now();
        let verdict = s.round(msg).await?;
        run.wait_secs += t.elapsed().as_secs_f64();
        run.cloud_compute_us += verdict.compute_us as u64;
        run.bytes_in += verdict.encoded_len();
        let v = verdict.to_verdict(&draft.tree)?;
        let (on_trunk, branches) = drafter.commit(&draft, &v);
        policy.observe(&RoundFeedback {
            offered_depth: draft.trunk_len,
            accepted_len: on_trunk,
            branches,
            nodes: draft.tree.len(),
            draft_ms: None,
            verify_ms: None,
            rtt_ms: None,
        });
        run.rounds += 1;
        committed = verdict.committed_len as usize;
        let mut emitted = v.emitted_tokens(&draft.tree);
        emitted.truncate(max_new - run.tokens.len());
        let stop = emitted.iter().position(|t| stop_ids.contains(t));
        if let Some(i) = stop {
            emitted.truncate(i + 1);
        }
        run.tokens.extend(emitted);
        if stop.is_some() {
            break;
        }
    }
    s.close().await;
    Ok(run)
}
