//! A drafter that costs nothing: it replays the target's own greedy output
//! with errors injected at a set rate. It stands in for a fleet of edge
//! devices drafting in parallel when this machine cannot run one drafter
//! model per client, so the cloud's cost per token can be measured under
//! realistic concurrency. Acceptance is whatever the injected errors allow,
//! and the verified text must still equal the reference.

use ouro_common::tree::DraftTree;
use ouro_edge::link::{LinkError, SessionStream};
use ouro_proto::v1;
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What one replayed session did.
#[derive(Debug, Default, Clone)]
pub struct ReplayRun {
    pub tokens: Vec<u32>,
    pub rounds: usize,
    pub accepted: usize,
    pub bytes: usize,
    pub cloud_compute_us: u64,
    pub batch_sizes: Vec<u32>,
}

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
) -> Result<ReplayRun, LinkError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut run = ReplayRun::default();
    let mut committed = committed_len;
    while run.tokens.len() < reference.len() {
        let start = run.tokens.len();
        let n = gamma.min(reference.len() - start - 1);
        let draft: Vec<u32> = reference[start..start + n]
            .iter()
            .map(|&t| if rng.random_bool(accept.clamp(0.0, 1.0)) { t } else { (t + 1) % vocab })
            .collect();
        let tree = DraftTree::chain(&draft);
        let msg = v1::DraftRound::from_draft(run.rounds as u64 + 1, committed, &tree, None);
        run.bytes += msg.encoded_len();
        let verdict = stream.round(msg).await?;
        run.bytes += verdict.encoded_len();
        run.cloud_compute_us += verdict.compute_us as u64;
        run.batch_sizes.push(verdict.batch_size);
        let v = verdict.to_verdict(&tree)?;
        run.accepted += v.accepted.len();
        run.rounds += 1;
        committed = verdict.committed_len as usize;
        run.tokens.extend(v.emitted_tokens(&tree));
    }
    run.tokens.truncate(reference.len());
    Ok(run)
}
