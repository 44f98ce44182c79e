//! A drafter that costs nothing, for benchmarks: it replays a known output
//! (the target's own greedy text) with errors injected at a set rate. It
//! stands in for a fleet of edge devices drafting in parallel when one
//! machine cannot run a drafter model per client, so the cloud's cost per
//! token can be measured under realistic concurrency. Acceptance is whatever
//! the injected errors allow; the verified text must still equal the
//! reference. Built in code (it needs the reference), not by name.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::controller::{BranchFeedback, CostCurve, DraftPlan, DraftPolicy, FixedPolicy};
use crate::engine::{Draft, EngineError};
use crate::sampling::SparseDist;
use crate::tree::{DraftTree, TreeLimits};
use crate::verify::Verdict;

use super::{DraftSource, DraftStrategy, Opening};

#[derive(Debug, Clone)]
pub struct Replay {
    /// The text to replay; a run should ask for exactly its length.
    pub reference: Vec<u32>,
    /// Tokens drafted a round.
    pub gamma: usize,
    /// Chance that each drafted token is the reference's.
    pub accept: f64,
    pub seed: u64,
}

impl DraftStrategy for Replay {
    fn name(&self) -> String {
        format!("replay{}", self.gamma)
    }

    fn policy(&self, _costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send> {
        Box::new(FixedPolicy(self.gamma))
    }

    fn open<'a>(&self, _at: Opening<'a>) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
        Ok(Box::new(ReplaySource {
            reference: self.reference.clone(),
            accept: self.accept.clamp(0.0, 1.0),
            rng: ChaCha8Rng::seed_from_u64(self.seed),
            done: 0,
        }))
    }
}

struct ReplaySource {
    reference: Vec<u32>,
    accept: f64,
    rng: ChaCha8Rng,
    /// Reference tokens committed so far.
    done: usize,
}

impl DraftSource for ReplaySource {
    fn draft(&mut self, plan: &DraftPlan, _limits: &TreeLimits, vocab: usize) -> Result<Draft, EngineError> {
        let start = self.done.min(self.reference.len());
        let n = plan.trunk_len.min(self.reference.len().saturating_sub(start + 1));
        let vocab = vocab.max(1) as u32;
        let tokens: Vec<u32> = self.reference[start..start + n]
            .iter()
            .map(|&t| if self.rng.random_bool(self.accept) { t } else { (t + 1) % vocab })
            .collect();
        let dists = tokens.iter().map(|&t| SparseDist::point(t)).collect();
        Ok(Draft {
            tree: DraftTree::chain(&tokens),
            dists,
            trunk_len: n,
            branches: Vec::new(),
            pooled: None,
            copied: None,
            siblings: Vec::new(),
        })
    }

    fn commit(&mut self, draft: &Draft, verdict: &Verdict) -> (usize, Vec<BranchFeedback>) {
        self.done += verdict.emitted_tokens(&draft.tree).len();
        (verdict.accepted.len(), Vec::new())
    }

    fn extend(&mut self, tokens: &[u32]) {
        self.done += tokens.len();
    }
}
