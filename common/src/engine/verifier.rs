//! The verifier's side of one generation: its KV cache, the committed text,
//! and one tree verification per round.

use crate::model::{AttnMask, CausalLm, Head, KvCache, Logits, LogitsRows, ModelError, SeqInput};
use crate::sampling::{SamplerRng, SamplingParams, SparseDist};
use crate::tree::{DraftTree, TreeLimits};
use crate::verify::{verify_sampling, Verdict};

use super::EngineError;

/// The target side of a session.
///
/// The cache always holds every committed token but the last (the *root*):
/// the root is evaluated together with the next draft, so one forward pass
/// per round yields the root's logits and every node's. Target-only decoding
/// is the same call with an empty tree.
pub struct VerifierSession<'m> {
    model: &'m dyn CausalLm,
    cache: KvCache,
    committed: Vec<u32>,
    params: SamplingParams,
    rng: SamplerRng,
    limits: TreeLimits,
    forward_passes: usize,
}

impl<'m> VerifierSession<'m> {
    /// Opens a session on `prompt`: everything but its last token is prefilled.
    pub fn open(
        model: &'m dyn CausalLm,
        prompt: &[u32],
        params: SamplingParams,
        limits: TreeLimits,
    ) -> Result<Self, EngineError> {
        let mut session = Self::start(model, prompt, params, limits)?;
        session.prefill(usize::MAX)?;
        Ok(session)
    }

    /// Checks the prompt and makes the session without running the model:
    /// [`Self::prefill`] then feeds the prompt in chunks, so a long prompt
    /// can share the compute with other sessions' rounds. Chunks give the
    /// same cache bits as one pass (the runtime is batch-invariant).
    pub fn start(
        model: &'m dyn CausalLm,
        prompt: &[u32],
        params: SamplingParams,
        limits: TreeLimits,
    ) -> Result<Self, EngineError> {
        params.validate()?;
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let cfg = model.config();
        // One slot stays free for the first draft's root row.
        if prompt.len() >= cfg.max_context {
            return Err(EngineError::ContextFull { len: prompt.len(), max: cfg.max_context });
        }
        if let Some(&token) = prompt.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ModelError::TokenOutOfRange { token, vocab: cfg.vocab_size }.into());
        }
        Ok(Self {
            model,
            cache: model.new_cache(),
            committed: prompt.to_vec(),
            params,
            // Stream 0 is the verifier's; the drafter draws from its own.
            rng: SamplerRng::with_stream(params.seed, 0),
            limits,
            forward_passes: 0,
        })
    }

    /// Prompt tokens not yet in the cache (all but the last, which the first
    /// round's root carries).
    pub fn prefill_remaining(&self) -> usize {
        (self.committed.len() - 1).saturating_sub(self.cache.len())
    }

    /// Feeds up to `max` more prompt tokens in one forward pass; returns how
    /// many remain. On error the cache is as it was.
    pub fn prefill(&mut self, max: usize) -> Result<usize, EngineError> {
        let (from, left) = (self.cache.len(), self.prefill_remaining());
        let n = left.min(max.max(1));
        if n > 0 {
            let chunk = &self.committed[from..from + n];
            self.model.forward_causal(&mut self.cache, chunk, LogitsRows::None)?;
            self.forward_passes += 1;
        }
        Ok(left - n)
    }

    pub fn committed(&self) -> &[u32] {
        &self.committed
    }

    /// Carries on from `text` instead of the committed tokens, keeping the
    /// cache of what the two share: a client that resumes without the
    /// tokens decoded last (a verdict lost with its connection, a pass run
    /// on alone) gets them again, the same ones, and one that went on
    /// without the verifier (its drafter alone) has only its own tokens
    /// prefilled ([`Self::prefill`] then feeds them). A greedy session may
    /// drop tokens; a sampled one has drawn from its random stream since, so
    /// it only goes on from `text` if `text` begins with all of its tokens.
    /// Returns whether it did (`false` leaves the session as it was).
    pub fn resume_on(&mut self, text: &[u32]) -> Result<bool, EngineError> {
        let cfg = self.model.config();
        if text.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if text.len() >= cfg.max_context {
            return Err(EngineError::ContextFull { len: text.len(), max: cfg.max_context });
        }
        if let Some(&token) = text.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(ModelError::TokenOutOfRange { token, vocab: cfg.vocab_size }.into());
        }
        let shared = self.shared_with(text);
        if shared < self.committed.len() && !self.params.is_greedy() {
            return Ok(false);
        }
        self.committed.truncate(shared);
        self.committed.extend_from_slice(&text[shared..]);
        // What the two share stays cached, but never the last token: the
        // next round's root, outside the cache.
        self.cache.truncate(shared.min(text.len() - 1));
        Ok(true)
    }

    /// How many tokens `text` shares with the committed ones, from the start.
    pub fn shared_with(&self, text: &[u32]) -> usize {
        self.committed.iter().zip(text).take_while(|(a, b)| a == b).count()
    }

    pub fn limits(&self) -> &TreeLimits {
        &self.limits
    }

    pub fn sampling(&self) -> &SamplingParams {
        &self.params
    }

    pub fn forward_passes(&self) -> usize {
        self.forward_passes
    }

    /// Bytes held by this session's KV cache, for the cloud's memory budget.
    pub fn cache_bytes(&self) -> usize {
        self.cache.size_bytes()
    }

    /// Verifies a draft rooted at the last committed token in one forward
    /// pass, commits the accepted path plus the target's own next token, and
    /// keeps exactly their KV entries. `dists` gives, for sampled drafts, the
    /// distribution each node was drawn from (ignored under greedy decoding).
    pub fn verify(&mut self, tree: &DraftTree, dists: &[SparseDist]) -> Result<Verdict, EngineError> {
        let pending = self.begin(tree)?;
        let logits = self.model.forward(&mut [self.seq_input(&pending)])?.remove(0);
        self.finish(pending, tree, dists, &logits)
    }

    /// First half of [`verify`](Self::verify), for callers that batch the
    /// forward passes of several sessions (the cloud): checks the context
    /// and lays the tree out as the runtime's inputs.
    pub fn begin(&self, tree: &DraftTree) -> Result<PendingVerify, EngineError> {
        let max = self.model.config().max_context;
        let start = self.cache.len();
        if start + 1 + tree.len() > max {
            return Err(EngineError::ContextFull { len: start + 1 + tree.len(), max });
        }
        let root = *self.committed.last().expect("a session always has a committed token");
        let (tokens, positions, mask) = tree.verify_inputs(root, start);
        Ok(PendingVerify { start, tokens, positions, mask })
    }

    /// This session's share of a (possibly batched) forward pass.
    pub fn seq_input<'a>(&'a mut self, pending: &'a PendingVerify) -> SeqInput<'a> {
        SeqInput {
            cache: &mut self.cache,
            tokens: &pending.tokens,
            positions: &pending.positions,
            mask: &pending.mask,
            logits: LogitsRows::All,
            // Verification is exact only over every id.
            head: Head::Full,
        }
    }

    /// Second half of [`verify`](Self::verify): decides the verdict from the
    /// pass's logits and commits it.
    pub fn finish(
        &mut self,
        pending: PendingVerify,
        tree: &DraftTree,
        dists: &[SparseDist],
        logits: &Logits,
    ) -> Result<Verdict, EngineError> {
        let start = pending.start;
        if logits.subset.is_some() || logits.vocab != self.model.config().vocab_size {
            self.cache.truncate(start);
            return Err(ModelError::InvalidInput("verification needs logits over the whole vocabulary".into()).into());
        }
        self.forward_passes += 1;
        let rows: Vec<&[f32]> = (0..pending.tokens.len()).map(|i| logits.row(i)).collect();
        let verdict = match verify_sampling(tree, &rows, dists, &self.params, &mut self.rng) {
            Ok(v) => v,
            Err(e) => {
                self.cache.truncate(start);
                return Err(e.into());
            }
        };
        // Keep the root's row and the accepted nodes' rows (row = node + 1).
        let keep: Vec<usize> = std::iter::once(0).chain(verdict.accepted.iter().map(|&i| i + 1)).collect();
        self.cache.keep(start, &keep)?;
        self.committed.extend(verdict.emitted_tokens(tree));
        Ok(verdict)
    }

    /// Undoes a [`begin`](Self::begin) whose forward pass failed.
    pub fn abort(&mut self, pending: PendingVerify) {
        self.cache.truncate(pending.start);
    }
}

/// A verification laid out for the runtime, between `begin` and `finish`.
pub struct PendingVerify {
    start: usize,
    tokens: Vec<u32>,
    positions: Vec<usize>,
    mask: AttnMask,
}
