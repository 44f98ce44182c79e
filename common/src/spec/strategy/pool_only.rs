//! Drafter-free drafting: the phrase pool alone (prompt lookup and what
//! earlier requests taught), for devices too small to run a drafter model.
//! The trunk is the best continuation of the text's last tokens; other
//! continuations hang from the root as branches.

use std::sync::Arc;

use crate::controller::{BranchFeedback, Controller, CostCurve, DraftPlan, DraftPolicy};
use crate::draft::{PhrasePool, PhraseSource};
use crate::engine::{Draft, EngineError};
use crate::sampling::SparseDist;
use crate::tree::{DraftTree, TreeLimits};
use crate::verify::Verdict;

use super::{adaptive, bare, DraftSource, DraftStrategy, Entry, Opening};

/// Committed tokens a lookup matches on (the pool's longest suffix match).
const SUFFIX: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOnly;

pub const ENTRY: Entry = Entry {
    name: "pool",
    usage: "pool",
    about: "no drafter model: phrase pool continuations only (prompt lookup)",
    build: |rest| bare(rest, || Arc::new(PoolOnly)),
};

impl DraftStrategy for PoolOnly {
    fn name(&self) -> String {
        "pool".into()
    }

    fn policy(&self, costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send> {
        adaptive(Controller::default(), costs)
    }

    fn open<'a>(&self, at: Opening<'a>) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
        if at.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        at.pool.add_context(at.prompt);
        let tail = at.prompt[at.prompt.len().saturating_sub(SUFFIX)..].to_vec();
        Ok(Box::new(PoolSource { pool: at.pool, tail, stop_ids: at.stop_ids.to_vec() }))
    }
}

struct PoolSource<'a> {
    pool: &'a mut PhrasePool,
    /// The last committed tokens, which lookups continue.
    tail: Vec<u32>,
    stop_ids: Vec<u32>,
}

impl DraftSource for PoolSource<'_> {
    fn draft(&mut self, plan: &DraftPlan, limits: &TreeLimits, vocab: usize) -> Result<Draft, EngineError> {
        let mut tree = DraftTree::empty(limits, vocab);
        let mut dists = Vec::new();
        let cap = plan.trunk_len.min(limits.max_depth).min(limits.max_nodes);
        let conts: Vec<Vec<u32>> =
            self.pool.continuations(&self.tail, plan.branches + 1).into_iter().map(<[u32]>::to_vec).collect();
        let mut conts = conts.into_iter();
        let mut trunk_len = 0;
        if let Some(first) = conts.next().filter(|_| cap > 0) {
            // A stop token ends the text: nothing after it can be accepted.
            let end = first.iter().position(|t| self.stop_ids.contains(t)).map_or(first.len(), |i| i + 1);
            for (i, &t) in first[..end.min(cap)].iter().enumerate() {
                tree.push(t, i.checked_sub(1))?;
                dists.push(SparseDist::point(t));
            }
            trunk_len = tree.len();
        }
        let pooled = (trunk_len > 0).then(|| self.tail.clone());
        let mut draft = Draft { tree, dists, trunk_len, branches: Vec::new(), pooled, siblings: Vec::new() };
        for c in conts.take(plan.branches) {
            let len = c.len().min(plan.branch_len).min(limits.max_depth);
            // A branch starting like the trunk would merge with it.
            let tree = &draft.tree;
            if len == 0 || tree.len() + len > limits.max_nodes || (trunk_len > 0 && c[0] == tree.token(0)) {
                continue;
            }
            draft.push_branch(None, &c[..len])?;
        }
        Ok(draft)
    }

    fn commit(&mut self, draft: &Draft, verdict: &Verdict) -> (usize, Vec<BranchFeedback>) {
        let on_trunk = draft.trunk_accepted(verdict);
        let emitted = verdict.emitted_tokens(&draft.tree);
        if on_trunk > 0 {
            let mut hit = self.tail.clone();
            hit.extend_from_slice(&emitted[..on_trunk]);
            self.pool.record_hit(&hit[hit.len() - on_trunk - 1..]);
        }
        // What the verifier said where the pool was wrong teaches the pool
        // at once, as the drafter strategies' commit does.
        for phrase in draft.verifier_phrases(verdict) {
            self.pool.add_phrase(&phrase, PhraseSource::VerifierOutput);
        }
        self.pool.extend_context(&emitted);
        self.tail.extend_from_slice(&emitted);
        let cut = self.tail.len().saturating_sub(SUFFIX);
        self.tail.drain(..cut);
        (on_trunk, draft.branch_feedback(verdict))
    }
}
