//! The drafter's side of one generation: its model and KV cache, the
//! Ouroboros phrase pool, and the tree builder.

use crate::controller::{BranchFeedback, DraftPlan, RoundCosts};
use crate::draft::{until_stop, CopyStats, PhrasePool, PhraseSource, MAX_SUFFIX_MATCH};
use crate::model::{AttnMask, CausalLm, Head, KvCache, LogitsRows, VocabSubset};
use crate::sampling::{argmax, probs, SamplerRng, SamplingError, SamplingParams, SparseDist};
use crate::tree::{DraftTree, TreeError, TreeLimits};
use crate::verify::Verdict;

use super::siblings::{bucket, top2, SiblingStats, MIN_GAIN};
use super::EngineError;

#[derive(Debug, Clone)]
pub struct DrafterConfig {
    /// Pairs kept of the drafter's distribution per sampled node (q̃); the
    /// verifier needs nothing else to stay exact.
    pub top_k: usize,
    /// Phrases from the pool checked per drafter pass.
    pub phrase_candidates: usize,
    /// Draft with the phrase pool (Ouroboros) or with the drafter alone.
    pub use_pool: bool,
    /// Hybrid drafting: a round whose text the pool continues (on at least
    /// [`POOL_FIRST_MATCH`] tokens, for at least [`POOL_FIRST_MIN_LEN`]) sends
    /// the pool's phrase as the trunk without running the drafter at all; the
    /// drafter drafts only the rounds the pool has nothing for.
    pub pool_first: bool,
    /// Dynamic trees under greedy drafting: the drafter's runner-up beside
    /// trunk tokens it is unsure of ([`super::siblings`]).
    pub siblings: bool,
    /// Prompt lookup: where the text repeats itself on a long match, the
    /// round is a copy of what followed the earlier occurrence, sized by how
    /// such copies have held, with no drafter pass (`draft::lookup`).
    pub copies: bool,
    /// The drafter reads at most this many of the prompt's last tokens (0:
    /// all of it). A long prompt's prefill on the drafter costs a third of
    /// the verifier's on the same cores, or seconds of a phone's time before
    /// the first round, for drafts that mostly hang on the last few hundred
    /// tokens; the pool and copies still see the whole text.
    pub window: usize,
}

impl Default for DrafterConfig {
    fn default() -> Self {
        Self {
            top_k: 8,
            phrase_candidates: 4,
            use_pool: true,
            pool_first: false,
            siblings: false,
            copies: false,
            window: 0,
        }
    }
}

/// The prompt tokens a drafter reads by default ([`DrafterConfig::window`]).
pub const DEFAULT_DRAFT_WINDOW: usize = 256;

/// Text tokens a pool phrase must match to be a hybrid round's trunk: one
/// shared token is too weak a cue to skip the drafter for.
pub const POOL_FIRST_MATCH: usize = 2;
/// Shortest pool trunk worth a round without the drafter.
pub const POOL_FIRST_MIN_LEN: usize = 2;

/// One round's draft.
pub struct Draft {
    pub tree: DraftTree,
    /// Per node, the distribution it was drawn from (point masses for
    /// deterministic choices).
    pub dists: Vec<SparseDist>,
    /// Nodes `0..trunk_len` are the trunk, in order.
    pub trunk_len: usize,
    /// Each branch's first node index and length.
    pub branches: Vec<(usize, usize)>,
    /// Set when the trunk is a pool phrase sent without a drafter pass
    /// (hybrid and pool-only drafting): the text tokens the phrase was looked
    /// up with, so that the commit can credit it with what was accepted.
    pub pooled: Option<Vec<u32>>,
    /// Set when the trunk is a copy of the text's earlier tokens (prompt
    /// lookup, `draft::lookup`): the match length it was found on. Its
    /// length came from how copies have held, not from the plan.
    pub copied: Option<usize>,
    /// The runner-up siblings sent (dynamic trees): node and confidence bucket.
    pub siblings: Vec<(usize, usize)>,
}

impl Draft {
    /// No draft at all: the verifier decodes its own token (a round sent
    /// only to hear what it decoded).
    pub fn empty(limits: &TreeLimits, vocab: usize) -> Self {
        Self {
            tree: DraftTree::empty(limits, vocab),
            dists: Vec::new(),
            trunk_len: 0,
            branches: Vec::new(),
            pooled: None,
            copied: None,
            siblings: Vec::new(),
        }
    }

    /// Leading trunk tokens the verdict accepted.
    pub fn trunk_accepted(&self, verdict: &Verdict) -> usize {
        verdict.accepted.iter().zip(0..self.trunk_len).take_while(|(a, i)| *a == i).count()
    }

    /// Hangs a pool phrase under `parent` (`None`: the root) as a branch:
    /// point masses, as the pool's tokens are chosen, not drawn.
    pub fn push_branch(&mut self, parent: Option<usize>, phrase: &[u32]) -> Result<(), TreeError> {
        let first = self.tree.len();
        let mut parent = parent;
        for &t in phrase {
            parent = Some(self.tree.push(t, parent)?);
            self.dists.push(SparseDist::point(t));
        }
        self.branches.push((first, phrase.len()));
        Ok(())
    }

    /// The target's argmax after each rejected node, path by path: right
    /// tokens that the draft put in the wrong place (Ouroboros' candidate
    /// reuse), for the pool. Phrases shorter than two tokens say nothing a
    /// lookup could use.
    pub fn verifier_phrases(&self, verdict: &Verdict) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for path in self.tree.paths() {
            if let Some(j) = path.iter().position(|n| !verdict.accepted.contains(n)) {
                let phrase: Vec<u32> = path[j..].iter().map(|&n| verdict.target_argmax[n + 1]).collect();
                if phrase.len() >= 2 {
                    out.push(phrase);
                }
            }
        }
        out
    }

    /// How each branch fared, for the policy.
    pub fn branch_feedback(&self, verdict: &Verdict) -> Vec<BranchFeedback> {
        self.branches
            .iter()
            .map(|&(first, len)| BranchFeedback {
                offered: len,
                accepted: (first..first + len).filter(|n| verdict.accepted.contains(n)).count(),
            })
            .collect()
    }
}

/// A round drafted while the previous verdict was in flight.
pub struct Ahead {
    pub draft: Draft,
    /// The tokens the bet assumes the verdict commits: the whole trunk, then
    /// the drafter's own guess at the verifier's next token.
    pub assumed: Vec<u32>,
}

/// The drafter's choice from one row of its logits: the token and the
/// distribution `q` it was drawn from (a point mass under greedy decoding).
///
/// With a restricted vocabulary (`subset`: the token of each column) `q` is
/// the request's distribution renormalised over the subset, zero outside
/// it, then cut to its `top_k` most likely ids as always; verification
/// stays exact for any `q`, the residual distribution giving the ids the
/// drafter cannot propose their full target probability.
pub fn draft_choice(
    logits: &[f32],
    subset: Option<&VocabSubset>,
    params: &SamplingParams,
    top_k: usize,
    rng: &mut SamplerRng,
) -> Result<(u32, SparseDist), SamplingError> {
    let token = |col: u32| subset.map_or(col, |s| s.token(col as usize));
    if params.is_greedy() {
        let t = token(argmax(logits));
        return Ok((t, SparseDist::point(t)));
    }
    let mut q = SparseDist::from_probs_top_k(&probs(logits, params), top_k)?;
    if let Some(s) = subset {
        q = q.map_ids(s.ids())?;
    }
    Ok((q.sample(rng), q))
}

/// The edge side of a session.
///
/// Invariant: `cache` holds `seq[base..base + cache.len()]`, and `seq` is
/// the committed text followed by the trunk of the round in flight.
pub struct Drafter<'m> {
    model: &'m dyn CausalLm,
    cache: KvCache,
    /// Where in `seq` the cache starts: the prompt tokens before it are
    /// outside the drafter's window ([`DrafterConfig::window`]).
    base: usize,
    seq: Vec<u32>,
    committed: usize,
    /// Borrowed, so that what this generation taught stays with the caller
    /// even if the generation is dropped half-way.
    pool: &'m mut PhrasePool,
    params: SamplingParams,
    rng: SamplerRng,
    cfg: DrafterConfig,
    stop_ids: Vec<u32>,
    forward_passes: usize,
    /// The model's restricted vocabulary, which every drafting pass then
    /// computes instead of the whole one (FR-Spec).
    subset: Option<VocabSubset>,
    /// How the runner-up siblings of dynamic trees have fared.
    sibling_stats: SiblingStats,
    /// How copies of the text's earlier tokens have held, and what rounds
    /// cost, which sizes them.
    copy_stats: CopyStats,
    costs: Option<RoundCosts>,
}

impl<'m> Drafter<'m> {
    /// Starts drafting after `prompt`. The pool may come warm from earlier
    /// requests of the same client.
    pub fn open(
        model: &'m dyn CausalLm,
        prompt: &[u32],
        params: SamplingParams,
        pool: &'m mut PhrasePool,
        cfg: DrafterConfig,
        stop_ids: Vec<u32>,
    ) -> Result<Self, EngineError> {
        params.validate()?;
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        pool.add_context(prompt);
        // Prefill now, so that the first round's drafting time measures
        // drafting (the controller sizes drafts from it), not the prompt.
        let mut cache = model.new_cache();
        let mut forward_passes = 0;
        let base = match cfg.window {
            0 => 0,
            w => prompt.len().saturating_sub(w),
        };
        if prompt.len() > base + 1 {
            model.forward_causal(&mut cache, &prompt[base..prompt.len() - 1], LogitsRows::None)?;
            forward_passes += 1;
        }
        Ok(Self {
            model,
            cache,
            base,
            seq: prompt.to_vec(),
            committed: prompt.len(),
            pool,
            params,
            rng: SamplerRng::with_stream(params.seed, 1),
            cfg,
            stop_ids,
            forward_passes,
            subset: model.draft_vocab().cloned(),
            sibling_stats: SiblingStats::default(),
            copy_stats: CopyStats::default(),
            costs: None,
        })
    }

    /// What rounds cost now, which sizes copies (see
    /// [`CopyStats::length`](crate::draft::CopyStats::length)).
    pub fn price(&mut self, costs: RoundCosts) {
        self.costs = Some(costs);
    }

    pub fn forward_passes(&self) -> usize {
        self.forward_passes
    }

    pub fn committed(&self) -> &[u32] {
        &self.seq[..self.committed]
    }

    fn choose(&mut self, logits: &[f32]) -> Result<(u32, SparseDist), EngineError> {
        Ok(draft_choice(logits, self.subset.as_ref(), &self.params, self.cfg.top_k, &mut self.rng)?)
    }

    /// The drafter's greedy token after a row of its logits.
    fn greedy(&self, logits: &[f32]) -> u32 {
        let col = argmax(logits);
        self.subset.as_ref().map_or(col, |s| s.token(col as usize))
    }

    fn head(&self) -> Head {
        if self.subset.is_some() {
            Head::Draft
        } else {
            Head::Full
        }
    }

    /// How far into `seq` the cache reaches.
    fn cached(&self) -> usize {
        self.base + self.cache.len()
    }

    /// Drops the cache's rows past `seq[..len]`.
    fn truncate_cache(&mut self, len: usize) {
        self.cache.truncate(len.saturating_sub(self.base));
    }

    /// Tokens of context the drafter model holds after `seq[..len]`.
    fn context(&self, len: usize) -> usize {
        len.saturating_sub(self.base)
    }

    fn step(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let start = self.cache.len();
        let positions: Vec<usize> = (start..start + tokens.len()).collect();
        let mask = AttnMask::causal(tokens.len());
        let head = self.head();
        let l = self.model.forward_head(&mut self.cache, tokens, &positions, &mask, LogitsRows::Last, head)?;
        self.forward_passes += 1;
        Ok(l.last().expect("one row").to_vec())
    }

    /// The drafter's logits after the whole of `seq`, feeding what the cache
    /// lacks. A cache that already holds all of `seq` (a phrase filled the
    /// trunk, or a commit kept every emitted token) gives up its last position
    /// to be fed again, since only logits of fed rows come back.
    fn step_to_end(&mut self) -> Result<Vec<f32>, EngineError> {
        if self.cached() >= self.seq.len() {
            self.truncate_cache(self.seq.len() - 1);
        }
        let pending = self.seq[self.cached()..].to_vec();
        self.step(&pending)
    }

    /// Checks several pool phrases continuing the trunk in one drafter pass
    /// (tree mask) and keeps the longest prefix the drafter itself would have
    /// produced greedily. Returns the logits after the extended trunk, or
    /// `None` when the pool has nothing to offer.
    fn extend_by_phrase(
        &mut self,
        trunk: &mut Vec<u32>,
        dists: &mut Vec<SparseDist>,
        cap: usize,
    ) -> Result<Option<Vec<f32>>, EngineError> {
        let t = *trunk.last().expect("trunk is not empty");
        let ctx_end = self.committed + trunk.len();
        let mut ctx: Vec<u32> = self.seq[self.committed.saturating_sub(3)..self.committed].to_vec();
        ctx.extend_from_slice(trunk);
        let suffix = &ctx[ctx.len().saturating_sub(3)..];
        let room = cap - trunk.len();
        let conts: Vec<Vec<u32>> = self
            .pool
            .continuations(suffix, self.cfg.phrase_candidates)
            .into_iter()
            .map(|c| c[..c.len().min(room)].to_vec())
            .filter(|c| !c.is_empty())
            .collect();
        if conts.is_empty() {
            return Ok(None);
        }
        // Row 0 is `t`; each continuation hangs under it as a chain.
        let start = self.cache.len();
        debug_assert_eq!(self.cached() + 1, ctx_end);
        let mut tokens = vec![t];
        let mut parents = vec![-1i32];
        let mut depth = vec![0usize];
        let mut rows_of = Vec::new();
        for c in &conts {
            let mut rows = Vec::new();
            let mut parent = 0usize;
            for &tok in c {
                tokens.push(tok);
                parents.push(parent as i32);
                depth.push(depth[parent] + 1);
                parent = tokens.len() - 1;
                rows.push(parent);
            }
            rows_of.push(rows);
        }
        let positions: Vec<usize> = depth.iter().map(|d| start + d).collect();
        let mask = AttnMask::from_parents(&parents)?;
        let head = self.head();
        let logits = self.model.forward_head(&mut self.cache, &tokens, &positions, &mask, LogitsRows::All, head)?;
        self.forward_passes += 1;
        // The drafter agrees with a phrase token when it is its own argmax
        // after the previous one: the result equals greedy drafting step by
        // step (the runtime is batch-invariant), several tokens per pass.
        let (mut best, mut best_len) = (0, 0);
        for (ci, c) in conts.iter().enumerate() {
            let mut prev_row = 0;
            let mut n = 0;
            for (j, &tok) in c.iter().enumerate() {
                if self.greedy(logits.row(prev_row)) != tok {
                    break;
                }
                n += 1;
                prev_row = rows_of[ci][j];
            }
            if n > best_len {
                (best, best_len) = (ci, n);
            }
        }
        let kept: Vec<usize> = std::iter::once(0).chain(rows_of[best][..best_len].iter().copied()).collect();
        self.cache.keep(start, &kept)?;
        let last_row = *kept.last().expect("row 0 is kept");
        if best_len > 0 {
            let mut hit = suffix.to_vec();
            hit.extend_from_slice(&conts[best][..best_len]);
            self.pool.record_hit(&hit);
            for &tok in &conts[best][..best_len] {
                trunk.push(tok);
                dists.push(SparseDist::point(tok));
            }
        }
        Ok(Some(logits.row(last_row).to_vec()))
    }

    /// A hybrid round: the pool's best continuation of the committed text as
    /// the trunk, sent as it is ([`Self::sent_as_is`]).
    fn draft_from_pool(
        &mut self,
        plan: &DraftPlan,
        limits: &TreeLimits,
        vocab: usize,
        cap: usize,
    ) -> Result<Option<Draft>, EngineError> {
        let suffix = &self.seq[self.committed.saturating_sub(MAX_SUFFIX_MATCH)..self.committed];
        let Some((matched, phrase)) = self.pool.best_continuation(suffix, POOL_FIRST_MATCH) else {
            return Ok(None);
        };
        let phrase = until_stop(phrase, &self.stop_ids);
        let trunk = phrase[..cap.min(phrase.len())].to_vec();
        if trunk.len() < POOL_FIRST_MIN_LEN {
            return Ok(None);
        }
        let matched = matched.to_vec();
        self.sent_as_is(trunk, matched, None, plan, limits, vocab).map(Some)
    }

    /// A copy round: what followed the earlier occurrence of the committed
    /// text's last tokens as the trunk, sent as it is ([`Self::sent_as_is`]);
    /// `None` when the text does not repeat itself on a match whose copies
    /// have held.
    fn draft_from_copy(
        &mut self,
        plan: &DraftPlan,
        limits: &TreeLimits,
        vocab: usize,
        cap: usize,
    ) -> Result<Option<Draft>, EngineError> {
        let text = &self.seq[..self.committed];
        let Some(copy) = self.copy_stats.propose(text, cap, &self.stop_ids, self.costs.as_ref()) else {
            return Ok(None);
        };
        let matched = self.seq[self.committed - copy.matched.min(MAX_SUFFIX_MATCH)..self.committed].to_vec();
        self.sent_as_is(copy.tokens, matched, Some(copy.matched), plan, limits, vocab).map(Some)
    }

    /// A round whose trunk is sent as it is, with no drafter pass (a pool
    /// phrase or a copy looked up after `matched`): point masses, as the
    /// tokens are chosen, not drawn, so exact under sampling too. The
    /// drafter's cache falls behind by the trunk and catches up in one pass
    /// when it drafts next.
    fn sent_as_is(
        &mut self,
        trunk: Vec<u32>,
        matched: Vec<u32>,
        copied: Option<usize>,
        plan: &DraftPlan,
        limits: &TreeLimits,
        vocab: usize,
    ) -> Result<Draft, EngineError> {
        let mut tree = DraftTree::empty(limits, vocab);
        for (i, &t) in trunk.iter().enumerate() {
            tree.push(t, i.checked_sub(1))?;
        }
        let dists = trunk.iter().map(|&t| SparseDist::point(t)).collect();
        self.seq.extend_from_slice(&trunk);
        let mut draft = Draft {
            tree,
            dists,
            trunk_len: trunk.len(),
            branches: Vec::new(),
            pooled: Some(matched),
            copied,
            siblings: Vec::new(),
        };
        if plan.branches > 0 && plan.branch_len > 0 {
            self.add_branches(&mut draft, &trunk, plan)?;
        }
        Ok(draft)
    }

    fn add_branches(&mut self, draft: &mut Draft, trunk: &[u32], plan: &DraftPlan) -> Result<(), EngineError> {
        let limits = *draft.tree.limits();
        // Near the root first: that is where a trunk most often breaks.
        for p in 0..trunk.len() {
            if draft.branches.len() >= plan.branches {
                break;
            }
            let mut ctx: Vec<u32> = self.seq[self.committed.saturating_sub(3)..self.committed].to_vec();
            ctx.extend_from_slice(&trunk[..p]);
            let suffix = ctx[ctx.len().saturating_sub(3)..].to_vec();
            let conts: Vec<Vec<u32>> =
                self.pool.continuations(&suffix, plan.branches + 1).into_iter().map(|c| c.to_vec()).collect();
            for c in conts {
                if draft.branches.len() >= plan.branches {
                    break;
                }
                if c.first() == Some(&trunk[p]) {
                    continue;
                }
                let len = c.len().min(plan.branch_len).min(limits.max_depth.saturating_sub(p));
                if len == 0 || draft.tree.len() + len > limits.max_nodes {
                    continue;
                }
                draft.push_branch(p.checked_sub(1), &c[..len])?;
            }
        }
        Ok(())
    }
}

/// The drafter model's rounds: the source of the chain, heuristic and
/// Ouroboros strategies (`crate::spec::strategy` makes them its
/// `DraftSource`; the engine stays below the round driver).
impl Drafter<'_> {
    /// Drafts one round: a trunk from the drafter (extended by whole pool
    /// phrases the drafter agrees with), then pool phrases as side branches.
    pub fn draft(&mut self, plan: &DraftPlan, limits: &TreeLimits, vocab: usize) -> Result<Draft, EngineError> {
        let max_ctx = self.model.config().max_context;
        self.seq.truncate(self.committed);
        self.truncate_cache(self.committed);
        let trunk_cap = plan.trunk_len.min(limits.max_nodes).min(limits.max_depth);
        let room = max_ctx.saturating_sub(self.context(self.committed) + 2);
        let trunk_cap = trunk_cap.min(room);
        if self.cfg.copies {
            let cap = limits.max_nodes.min(limits.max_depth).min(room);
            if let Some(draft) = self.draft_from_copy(plan, limits, vocab, cap)? {
                return Ok(draft);
            }
        }
        let mut tree = DraftTree::empty(limits, vocab);
        let mut dists = Vec::new();
        if trunk_cap == 0 {
            return Ok(Draft {
                tree,
                dists,
                trunk_len: 0,
                branches: Vec::new(),
                pooled: None,
                copied: None,
                siblings: Vec::new(),
            });
        }
        if self.cfg.pool_first {
            if let Some(draft) = self.draft_from_pool(plan, limits, vocab, trunk_cap)? {
                return Ok(draft);
            }
        }
        let mut logits = self.step_to_end()?;
        let mut trunk: Vec<u32> = Vec::new();
        // Runner-ups worth a node: (trunk position, token, confidence bucket).
        let mut runner_ups: Vec<(usize, u32, usize)> = Vec::new();
        let mut reach = 1.0f64;
        let siblings = self.cfg.siblings && self.params.is_greedy();
        while trunk.len() < trunk_cap {
            let (t, q) = self.choose(&logits)?;
            // Past MIN_GAIN of reach no sibling can pay (a rate is at most
            // 1), so the softmax over the vocabulary is skipped.
            if siblings && reach >= MIN_GAIN {
                if let Some((p1, col)) = top2(&logits) {
                    if self.sibling_stats.worth(reach, p1) {
                        let token = self.subset.as_ref().map_or(col, |s| s.token(col as usize));
                        runner_ups.push((trunk.len(), token, bucket(p1)));
                    }
                    reach *= f64::from(p1);
                }
            }
            trunk.push(t);
            dists.push(q);
            if trunk.len() == trunk_cap || self.stop_ids.contains(&t) {
                break;
            }
            if self.cfg.use_pool && self.params.is_greedy() {
                if let Some(next) = self.extend_by_phrase(&mut trunk, &mut dists, trunk_cap)? {
                    logits = next;
                    continue;
                }
            }
            logits = self.step(&[t])?;
        }
        self.seq.extend_from_slice(&trunk);
        for (i, &t) in trunk.iter().enumerate() {
            tree.push(t, i.checked_sub(1))?;
        }
        let mut draft = Draft {
            tree,
            dists,
            trunk_len: trunk.len(),
            branches: Vec::new(),
            pooled: None,
            copied: None,
            siblings: Vec::new(),
        };
        // Before the pool's branches: a runner-up is the drafter's own
        // second choice, which a pool phrase rarely beats.
        for (pos, token, b) in runner_ups {
            let parent = pos.checked_sub(1);
            let taken = (0..draft.tree.len()).any(|n| draft.tree.parent(n) == parent && draft.tree.token(n) == token);
            if draft.tree.len() >= limits.max_nodes || taken {
                continue;
            }
            let node = draft.tree.push(token, parent)?;
            draft.dists.push(SparseDist::point(token));
            draft.siblings.push((node, b));
        }
        if self.cfg.use_pool && plan.branches > 0 && plan.branch_len > 0 {
            self.add_branches(&mut draft, &trunk, plan)?;
        }
        Ok(draft)
    }

    /// Drafts the round after `current` while `current`'s verdict is in
    /// flight, betting that the verifier accepts the whole trunk and then
    /// says what the drafter would say next (the guessed bonus token).
    ///
    /// `current` may itself be a round drafted ahead, not yet verified: the
    /// bets then stack, each on the one before (rounds sent ahead keep the
    /// verifier busy while verdicts travel). `current` must be the last
    /// round drafted, so that its trunk ends the drafter's text.
    ///
    /// Under sampling the guess is the drafter's most likely token, and the
    /// bet stays lossless: the round is drafted from the drafter's own random
    /// stream, before and apart from the verifier's draws, and is verified
    /// only on the text it was drafted for. Which rounds are drafted ahead
    /// must then not depend on timing, or seeded text would (the driver's
    /// business).
    ///
    /// Returns `None` when there is nothing to bet on: an empty trunk, a
    /// trunk that ends the text, or a `current` that is not the last round
    /// drafted. On a winning bet [`Drafter::commit`] keeps the drafted-ahead
    /// tokens and their cache, and the returned draft is sent as it is; on a
    /// losing one `commit` rolls both back.
    pub fn draft_ahead(
        &mut self,
        current: &Draft,
        plan: &DraftPlan,
        limits: &TreeLimits,
        vocab: usize,
    ) -> Result<Option<Ahead>, EngineError> {
        let trunk_end = self.seq.len();
        let trunk = &current.tree.tokens()[..current.trunk_len];
        if current.trunk_len == 0
            || trunk_end < self.committed + current.trunk_len
            || self.seq[trunk_end - current.trunk_len..] != *trunk
            || self.stop_ids.contains(&self.seq[trunk_end - 1])
            || self.context(trunk_end) + 2 >= self.model.config().max_context
        {
            return Ok(None);
        }
        let logits = self.step_to_end()?;
        let bonus = self.greedy(&logits);
        self.seq.push(bonus);
        let base = self.committed;
        self.committed = self.seq.len();
        let draft = self.draft(plan, limits, vocab);
        // Until the verdict says otherwise only `base` tokens are committed;
        // `seq` keeps the bet (trunk, bonus, next trunk) for `commit` to judge.
        self.committed = base;
        let mut assumed = self.seq[trunk_end - current.trunk_len..trunk_end].to_vec();
        assumed.push(bonus);
        Ok(Some(Ahead { draft: draft?, assumed }))
    }

    /// Commits a verdict: rolls the cache back to the longest verified prefix
    /// of what it holds, and feeds the pool with what this round taught.
    /// Returns how many trunk tokens were accepted and per-branch feedback.
    pub fn commit(&mut self, draft: &Draft, verdict: &Verdict) -> (usize, Vec<BranchFeedback>) {
        let tree = &draft.tree;
        let accepted = verdict.accepted_tokens(tree);
        let mut emitted = accepted;
        emitted.push(verdict.next_token);
        let trunk = &self.seq[self.committed..];
        let on_trunk = draft.trunk_accepted(verdict);
        // Cached positions stay valid as far as they hold the emitted tokens:
        // the runtime is batch-invariant, so a token's keys and values depend
        // only on the text before it. A draft-ahead bet that won keeps its whole tail, to be verified next.
        let agree = trunk.iter().zip(&emitted).take_while(|(a, b)| a == b).count();
        let keep_tail = agree == emitted.len() && trunk.len() > emitted.len();
        let fed = self.cached().saturating_sub(self.committed);
        // A won bet keeps every row: each was computed on text now confirmed.
        let keep = if keep_tail { fed } else { agree.min(fed) };
        self.cache.truncate((self.committed + keep).saturating_sub(self.base));
        if let Some(matched) = draft.pooled.as_ref().filter(|_| on_trunk > 0) {
            let mut hit = matched.clone();
            hit.extend_from_slice(&emitted[..on_trunk]);
            self.pool.record_hit(&hit);
        }
        if !keep_tail && draft.pooled.is_none() && trunk.len() > on_trunk + 1 {
            // What the drafter would have said next: its lookahead.
            let tail = trunk[on_trunk..].to_vec();
            self.pool.add_phrase(&tail, PhraseSource::DrafterLookahead);
        }
        for phrase in draft.verifier_phrases(verdict) {
            self.pool.add_phrase(&phrase, PhraseSource::VerifierOutput);
        }
        if let Some(m) = draft.copied {
            self.copy_stats.record(m, draft.trunk_len, on_trunk);
        }
        for &(node, b) in &draft.siblings {
            self.sibling_stats.record(b, verdict.accepted.contains(&node));
        }
        let branch_feedback = draft.branch_feedback(verdict);
        if !keep_tail {
            self.seq.truncate(self.committed);
            self.seq.extend_from_slice(&emitted);
        }
        self.committed += emitted.len();
        self.pool.extend_context(&emitted);
        (on_trunk, branch_feedback)
    }

    /// Commits tokens the verifier decoded on its own after the last
    /// verdict (it ran on while no round was in hand). A bet drafted past
    /// that verdict goes, with the cache rows computed for it.
    pub fn extend(&mut self, tokens: &[u32]) {
        self.seq.truncate(self.committed);
        self.truncate_cache(self.cached().min(self.committed));
        self.seq.extend_from_slice(tokens);
        self.committed += tokens.len();
        self.pool.extend_context(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_over_a_subset_name_token_ids() {
        let subset = VocabSubset::new(vec![90, 3, 41, 7], 100).unwrap();
        // Columns are ids 3, 7, 41, 90; column 2 (id 41) is the largest.
        let logits = [0.5, 1.0, 3.0, 2.0];
        let mut rng = SamplerRng::new(0);
        let greedy = SamplingParams::greedy();
        assert_eq!(draft_choice(&logits, Some(&subset), &greedy, 8, &mut rng).unwrap(), (41, SparseDist::point(41)));
        assert_eq!(draft_choice(&logits, None, &greedy, 8, &mut rng).unwrap().0, 2);
        // A tie goes to the lower id, as it would over the full vocabulary.
        let tied = [0.0, 3.0, 3.0, 1.0];
        assert_eq!(draft_choice(&tied, Some(&subset), &greedy, 8, &mut rng).unwrap().0, 7);

        let params = SamplingParams::with_temperature(1.0, 0);
        let (t, q) = draft_choice(&logits, Some(&subset), &params, 3, &mut rng).unwrap();
        let plain = SparseDist::from_probs_top_k(&probs(&logits, &params), 3).unwrap();
        assert_eq!(q.pairs().iter().map(|p| p.0).collect::<Vec<_>>(), vec![7, 41, 90]);
        assert_eq!(
            q.pairs().iter().map(|p| p.1).collect::<Vec<_>>(),
            plain.pairs().iter().map(|p| p.1).collect::<Vec<_>>()
        );
        assert!(subset.contains(t) && q.prob(t) > 0.0);
        // Ids outside the subset are never drafted.
        assert_eq!(q.prob(8), 0.0);
    }
}
