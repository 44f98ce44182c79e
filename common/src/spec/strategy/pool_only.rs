//! Drafter-free drafting: the phrase pool alone (prompt lookup and what
//! earlier requests taught), for devices too small to run a drafter model.
//! The trunk is the best continuation of the text's last tokens; other
//! continuations hang from the root as branches.
//!
//! A phrase found on a short match is often wrong, and a wrong phrase still
//! costs its rows of the verify pass. On Spec-Bench's translation prompts
//! every one-token match failed and pool drafting ran at 0.89x plain
//! decoding; so each round first asks how often phrases found on a match
//! that long have been right in this text ([`MatchStats`]), and sends none
//! (a plain decoding step) where they rarely are.
//!
//! Where the text repeats itself on more tokens than the pool matches on, the
//! round is a copy of what followed the earlier occurrence instead
//! (`draft::lookup`), as long as copies found on matches that long have held.

use std::sync::Arc;

use crate::controller::{BranchFeedback, Controller, CostCurve, DraftPlan, DraftPolicy, RoundCosts};
use crate::draft::{until_stop, CopyStats, PhrasePool, PhraseSource, MAX_SUFFIX_MATCH};
use crate::engine::{Draft, EngineError};
use crate::sampling::SparseDist;
use crate::tree::{DraftTree, TreeLimits};
use crate::verify::Verdict;

use super::{adaptive, copy_name, copying, DraftSource, DraftStrategy, Entry, Opening};

/// Committed tokens a lookup matches on (the pool's longest suffix match).
const SUFFIX: usize = MAX_SUFFIX_MATCH;

/// How often a phrase's first token must be right, at its match length, to
/// be sent. A node of a verify pass of a few rows costs a few percent of a
/// decoding step and a phrase is sent as up to a few nodes, so a phrase
/// right less than about one time in five costs more than it brings.
const MIN_FIRST_HIT: f64 = 0.2;

/// Pseudo-counts of the prior per match length.
const PRIOR_OFFERED: f64 = 4.0;

/// One phrase in this many that the estimate turns down is sent anyway, so
/// that a match length written off early can earn its way back when the
/// text turns repetitive.
const RETRY_EVERY: u32 = 8;

/// How often a phrase's first token was accepted, per suffix match length.
#[derive(Debug, Clone, Default)]
pub struct MatchStats {
    offered: [u32; SUFFIX + 1],
    accepted: [u32; SUFFIX + 1],
    turned_down: u32,
}

impl MatchStats {
    /// Estimated first-token acceptance of a phrase found on `matched`
    /// tokens. The prior trusts longer matches more.
    pub fn rate(&self, matched: usize) -> f64 {
        let m = matched.min(SUFFIX);
        let prior = if m <= 1 { 0.3 } else { 0.5 };
        (self.accepted[m] as f64 + prior * PRIOR_OFFERED) / (self.offered[m] as f64 + PRIOR_OFFERED)
    }

    /// Whether to send a phrase found on `matched` tokens.
    pub fn worth(&mut self, matched: usize) -> bool {
        if self.rate(matched) >= MIN_FIRST_HIT {
            return true;
        }
        self.turned_down = self.turned_down.wrapping_add(1);
        self.turned_down.is_multiple_of(RETRY_EVERY)
    }

    pub fn record(&mut self, matched: usize, accepted: bool) {
        let m = matched.min(SUFFIX);
        self.offered[m] = self.offered[m].saturating_add(1);
        self.accepted[m] = self.accepted[m].saturating_add(u32::from(accepted));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOnly {
    /// Copies of the text's earlier tokens on long matches (`draft::lookup`).
    pub copies: bool,
}

pub const ENTRY: Entry = Entry {
    name: "pool",
    usage: "pool[-nocopy]",
    about: "no drafter model: copies of earlier text (prompt lookup) and phrase pool continuations",
    build: |rest| copying(rest, |copies| Arc::new(PoolOnly { copies })),
};

impl DraftStrategy for PoolOnly {
    fn name(&self) -> String {
        copy_name("pool", self.copies)
    }

    fn policy(&self, costs: Option<CostCurve>) -> Box<dyn DraftPolicy + Send> {
        adaptive(Controller::default(), costs)
    }

    fn open<'a>(&self, at: Opening<'a>) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
        self.source(at.pool, at.prompt, at.stop_ids)
    }
}

impl PoolOnly {
    /// [`open`](DraftStrategy::open) for a caller with no drafter and no
    /// sampling to pass: the source holds only the pool, and copies of
    /// `prompt` and `stop_ids` (the cloud drafts for itself this way while it
    /// runs on).
    pub fn source<'a>(
        &self,
        pool: &'a mut PhrasePool,
        prompt: &[u32],
        stop_ids: &[u32],
    ) -> Result<Box<dyn DraftSource + Send + 'a>, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        pool.add_context(prompt);
        Ok(Box::new(PoolSource {
            pool,
            text: prompt.to_vec(),
            stop_ids: stop_ids.to_vec(),
            matches: MatchStats::default(),
            sent_match: None,
            copies: self.copies.then(CopyStats::default),
            costs: None,
        }))
    }
}

struct PoolSource<'a> {
    pool: &'a mut PhrasePool,
    /// The committed text, whose last tokens lookups continue.
    text: Vec<u32>,
    stop_ids: Vec<u32>,
    matches: MatchStats,
    /// The match length of the phrase sent as the last round's trunk.
    sent_match: Option<usize>,
    /// How copies have held; `None` when the strategy does not copy.
    copies: Option<CopyStats>,
    costs: Option<RoundCosts>,
}

impl PoolSource<'_> {
    /// The last committed tokens, which pool lookups continue.
    fn tail(&self) -> &[u32] {
        &self.text[self.text.len().saturating_sub(SUFFIX)..]
    }
}

impl DraftSource for PoolSource<'_> {
    fn draft(&mut self, plan: &DraftPlan, limits: &TreeLimits, vocab: usize) -> Result<Draft, EngineError> {
        let mut tree = DraftTree::empty(limits, vocab);
        let mut dists = Vec::new();
        let cap = plan.trunk_len.min(limits.max_depth).min(limits.max_nodes);
        // A copy is sized by how copies have held, not by the plan.
        let max_copy = limits.max_depth.min(limits.max_nodes);
        let costs = self.costs.as_ref();
        let copy = self.copies.as_mut().and_then(|c| c.propose(&self.text, max_copy, &self.stop_ids, costs));
        let tail = self.tail().to_vec();
        let found = self.pool.continuations_with_match(&tail, plan.branches + 1);
        // The first continuation is the best one; the round sends phrases
        // only if those found on a match that long have paid in this text.
        self.sent_match =
            found.first().map(|&(m, _)| m).filter(|&m| copy.is_none() && cap > 0 && self.matches.worth(m));
        let mut conts: Vec<Vec<u32>> = found.into_iter().map(|(_, c)| c.to_vec()).collect();
        let copied = copy.as_ref().map(|c| c.matched);
        let trunk = match (copy, self.sent_match) {
            (Some(copy), _) => copy.tokens,
            (None, Some(_)) => {
                let first = conts.remove(0);
                let first = until_stop(&first, &self.stop_ids);
                first[..cap.min(first.len())].to_vec()
            }
            (None, None) => {
                conts.clear();
                Vec::new()
            }
        };
        for (i, &t) in trunk.iter().enumerate() {
            tree.push(t, i.checked_sub(1))?;
            dists.push(SparseDist::point(t));
        }
        let trunk_len = trunk.len();
        let pooled = (trunk_len > 0).then_some(tail);
        let mut draft = Draft { tree, dists, trunk_len, branches: Vec::new(), pooled, copied, siblings: Vec::new() };
        for c in conts.into_iter().take(plan.branches) {
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
        if let Some(m) = self.sent_match.take().filter(|_| draft.trunk_len > 0) {
            self.matches.record(m, on_trunk > 0);
        }
        if let (Some(m), Some(copies)) = (draft.copied, self.copies.as_mut()) {
            copies.record(m, draft.trunk_len, on_trunk);
        }
        let emitted = verdict.emitted_tokens(&draft.tree);
        if on_trunk > 0 {
            let mut hit = self.tail().to_vec();
            hit.extend_from_slice(&emitted[..on_trunk]);
            self.pool.record_hit(&hit[hit.len() - on_trunk - 1..]);
        }
        // What the verifier said where the pool was wrong teaches the pool
        // at once, as the drafter strategies' commit does.
        for phrase in draft.verifier_phrases(verdict) {
            self.pool.add_phrase(&phrase, PhraseSource::VerifierOutput);
        }
        self.pool.extend_context(&emitted);
        self.text.extend_from_slice(&emitted);
        (on_trunk, draft.branch_feedback(verdict))
    }

    fn extend(&mut self, tokens: &[u32]) {
        self.pool.extend_context(tokens);
        self.text.extend_from_slice(tokens);
    }

    fn price(&mut self, costs: RoundCosts) {
        self.costs = Some(costs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_on_matches_that_keep_failing_stop_being_sent() {
        let mut m = MatchStats::default();
        // Before any data: tried at every match length.
        assert!((1..=SUFFIX).all(|len| m.worth(len)));
        for _ in 0..8 {
            m.record(1, false);
            m.record(3, false);
        }
        // Longer matches start from a better prior and take longer to give up on.
        assert!(m.rate(3) > m.rate(1));
        // Written off, but one in RETRY_EVERY is still tried.
        let sent = (0..RETRY_EVERY * 4).filter(|_| m.worth(1)).count();
        assert_eq!(sent, 4, "{}", m.rate(1));
        for _ in 0..20 {
            m.record(1, true);
        }
        assert!(m.worth(1), "{}", m.rate(1));
        // Lengths past the pool's longest match share its slot.
        m.record(SUFFIX + 5, true);
        assert_eq!(m.offered[SUFFIX], 9);
    }
}
