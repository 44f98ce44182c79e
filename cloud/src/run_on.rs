//! What a greedy session decodes alone while no round is in hand
//! (`DraftRound.run_on`, docs/PROTOCOL.md item 4): its budget, the tokens it
//! decoded since the client last heard, and the drafts it makes for itself.
//!
//! There is no drafter model here, so the cloud's own drafts are the
//! drafter-free kind the edge's `pool` strategy makes: copies of the
//! session's earlier text (prompt lookup) and phrase-pool continuations of
//! its last tokens. They are verified as any round is, so a pass that finds
//! a phrase right commits it and the token after it: where the text repeats
//! itself (a summary quoting its source, code repeating identifiers) a
//! run-on pass yields several tokens instead of one. A phrase is sent only
//! where phrases found on a match that long have been right in this text,
//! so where nothing repeats a pass is the plain decoding step it was.

use ouro_common::controller::{CostCurve, DraftPlan, DraftPolicy, RoundFeedback};
use ouro_common::draft::{PhrasePool, PoolConfig};
use ouro_common::engine::{Draft, EngineError};
use ouro_common::spec::strategy::pool_only::PoolOnly;
use ouro_common::spec::{DraftSource, DraftStrategy};
use ouro_common::tree::{DraftTree, TreeLimits};
use ouro_common::verify::Verdict;

/// Phrases a session's own pool keeps: a few per distinct token of a long
/// context, a few hundred kilobytes at most per session.
const POOL_PHRASES: usize = 4096;

pub(crate) struct RunOn {
    pub greedy: bool,
    pub stop_ids: Vec<u32>,
    /// Tokens it may still decode alone before a round arrives.
    pub budget: usize,
    /// The committed length the last answered round left: its own tokens
    /// follow.
    pub since: usize,
    pub own: Vec<u32>,
}

impl RunOn {
    /// Whether to decode alone now, with `committed` tokens held.
    pub fn may_step(&self, committed: usize, max_context: usize) -> bool {
        self.greedy && self.budget > 0 && committed + 2 < max_context
    }

    /// Tokens a pass may commit now: the budget, the context's end (the
    /// token after a pass's last row must still fit) and nothing past a stop.
    pub fn room(&self, committed: usize, max_context: usize) -> usize {
        self.budget.min(max_context.saturating_sub(committed + 1))
    }

    pub fn took(&mut self, token: u32) {
        self.own.push(token);
        self.budget = self.budget.saturating_sub(1);
        if self.stop_ids.contains(&token) {
            self.budget = 0;
        }
    }

    /// A round was answered and left `committed` tokens: the client knows them all.
    pub fn answered(&mut self, committed: usize) {
        self.since = committed;
        self.own.clear();
    }
}

/// The session's own drafts while it runs on (see the module docs).
pub(crate) struct OwnDrafts<'a> {
    source: Source<'a>,
    policy: Box<dyn DraftPolicy + Send>,
    stop_ids: Vec<u32>,
    /// Committed tokens the source has seen.
    known: usize,
}

/// Opened at the first pass a session runs alone: most never do, and the
/// pool is built from the text as it is then.
enum Source<'a> {
    Unopened(&'a mut PhrasePool),
    Open(Box<dyn DraftSource + Send + 'a>),
    Failed,
}

const STRATEGY: PoolOnly = PoolOnly { copies: true };

impl<'a> OwnDrafts<'a> {
    pub fn pool() -> PhrasePool {
        PhrasePool::new(PoolConfig { max_phrases: POOL_PHRASES, ..PoolConfig::default() })
    }

    /// Drafts from `pool`, ending at `stop_ids`; `costs` is the server's
    /// c(k), which sizes copies and phrases.
    pub fn new(pool: &'a mut PhrasePool, stop_ids: &[u32], costs: Option<CostCurve>) -> Self {
        Self { source: Source::Unopened(pool), policy: STRATEGY.policy(costs), stop_ids: stop_ids.to_vec(), known: 0 }
    }

    /// A draft continuing `text` (the session's committed tokens, which only
    /// grow), whose accepted path and the token after it commit at most
    /// `room` tokens: possibly empty, a plain decoding step. `None` once the
    /// source could not be opened.
    pub fn draft(
        &mut self,
        text: &[u32],
        limits: &TreeLimits,
        room: usize,
        vocab: usize,
    ) -> Result<Option<Draft>, EngineError> {
        if matches!(self.source, Source::Unopened(_)) {
            // Left `Failed` if the source cannot be opened: later passes
            // decode plainly.
            if let Source::Unopened(pool) = std::mem::replace(&mut self.source, Source::Failed) {
                self.source = Source::Open(STRATEGY.source(pool, text, &self.stop_ids)?);
                self.known = text.len();
            }
        }
        let Source::Open(source) = &mut self.source else { return Ok(None) };
        if let Some(new) = text.get(self.known..).filter(|n| !n.is_empty()) {
            source.extend(new);
            self.known = text.len();
        }
        if let Some(costs) = self.policy.round_costs() {
            source.price(costs);
        }
        let depth = limits.max_depth.min(room.saturating_sub(1));
        let limits = TreeLimits { max_depth: depth, max_nodes: if depth == 0 { 0 } else { limits.max_nodes } };
        let plan = self.policy.plan();
        let plan = DraftPlan { trunk_len: plan.trunk_len.min(depth), ..plan };
        source.draft(&plan, &limits, vocab).map(Some)
    }

    /// What the pass made of `draft`, taught to the pool and the policy.
    pub fn commit(&mut self, draft: &Draft, verdict: &Verdict, verify_ms: f64) {
        let Source::Open(source) = &mut self.source else { return };
        let (on_trunk, branches) = source.commit(draft, verdict);
        self.known += verdict.emitted_tokens(&draft.tree).len();
        // A copy's length is not the plan's (as in the edge's driver).
        let (offered_depth, accepted_len) = if draft.copied.is_some() { (0, 0) } else { (draft.trunk_len, on_trunk) };
        self.policy.observe(&RoundFeedback {
            offered_depth,
            accepted_len,
            branches,
            nodes: draft.tree.len(),
            draft_ms: None,
            verify_ms: Some(verify_ms),
            rtt_ms: Some(0.0),
            ahead: false,
            sent_ahead: false,
            rescued: false,
        });
    }
}

/// This pass's draft of the session's own, if there are drafts, and the
/// tree to verify (empty: a plain decoding step). A draft that cannot be
/// built (it never should: the pool's phrases fit the limits they were cut
/// to) costs only its tokens: the pass decodes one as before. `who` names
/// the request in the warning (a session's id, or `generate`).
pub(crate) fn own_draft(
    drafts: Option<&mut OwnDrafts<'_>>,
    text: &[u32],
    limits: &TreeLimits,
    room: usize,
    vocab: usize,
    who: &str,
) -> (Option<Draft>, DraftTree) {
    let draft = drafts.and_then(|own| {
        own.draft(text, limits, room, vocab)
            .inspect_err(|e| tracing::warn!("{who}: no draft of its own this pass: {e}"))
            .ok()
            .flatten()
    });
    let tree = draft.as_ref().map_or_else(|| DraftTree::empty(limits, vocab), |d| d.tree.clone());
    (draft, tree)
}

/// What a pass committed: the accepted path of its own draft, if it had
/// one (taught back to the drafts), and the verifier's token after it.
pub(crate) fn own_tokens(
    drafts: Option<&mut OwnDrafts<'_>>,
    draft: Option<&Draft>,
    verdict: &Verdict,
    verify_ms: f64,
) -> Vec<u32> {
    match (draft, drafts) {
        (Some(d), Some(own)) => {
            own.commit(d, verdict, verify_ms);
            verdict.emitted_tokens(&d.tree)
        }
        _ => vec![verdict.next_token],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_commits_no_more_than_the_budget_and_the_context_allow() {
        let mut run = RunOn { greedy: true, stop_ids: vec![7], budget: 5, since: 10, own: Vec::new() };
        assert_eq!(run.room(10, 100), 5);
        assert_eq!(run.room(97, 100), 2, "the token after the last row must fit");
        assert!(run.may_step(96, 100) && !run.may_step(98, 100));
        run.took(3);
        assert_eq!((run.budget, run.own.as_slice()), (4, &[3][..]));
        run.took(7);
        assert_eq!(run.budget, 0, "a stop token ends the run");
        run.answered(12);
        assert!(run.own.is_empty() && run.since == 12);
    }

    #[test]
    fn a_repeated_passage_is_drafted_and_drafts_stay_within_the_room() {
        let passage: Vec<u32> = (100..130).collect();
        let mut text = vec![1, 2, 3];
        text.extend(&passage);
        text.extend([9, 9]);
        // The passage again, its first tokens so far.
        text.extend(&passage[..6]);
        let limits = TreeLimits { max_nodes: 64, max_depth: 32 };
        let mut pool = OwnDrafts::pool();
        let mut own = OwnDrafts::new(&mut pool, &[], None);
        let d = own.draft(&text, &limits, 4, 1000).unwrap().unwrap();
        assert!((1..=3).contains(&d.tree.len()), "{} nodes for a room of 4", d.tree.len());
        assert_eq!(d.tree.token(0), passage[6], "the copy goes on where the passage did");
        // No room past the pass's own token: nothing to draft.
        let d = own.draft(&text, &limits, 1, 1000).unwrap().unwrap();
        assert!(d.tree.is_empty());
    }
}
