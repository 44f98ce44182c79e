//! The model runtime: one trait for a causal LM with explicit positions, an
//! explicit attention mask and a rollback-capable KV cache.
//!
//! - [`config`]: architecture and shape;
//! - [`mask`]: which new tokens see which (causal chains and draft trees);
//! - [`kv_cache`]: per-sequence keys/values with truncate and keep-path;
//! - [`transformer`]: the llama/qwen2/minicpm decoder;
//! - [`gguf`] and [`safetensors`]: loading from files;
//! - [`vocab`]: restricted drafter vocabularies (FR-Spec) and their ranking files.

pub mod config;
pub mod gguf;
pub mod kv_cache;
mod linear;
pub mod mask;
mod ops;
pub mod safetensors;
pub mod transformer;
pub mod vocab;

pub use config::{Arch, MiniCpmScales, ModelConfig};
pub use kv_cache::KvCache;
pub use mask::AttnMask;
pub use ouro_kernels::Isa;
pub use transformer::{DraftHead, Transformer};
pub use vocab::{RankedVocab, VocabError, VocabSubset};

/// Errors of the model runtime. Bad input is always one of these, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid attention mask: {0}")]
    InvalidMask(String),
    #[error("token id {token} is out of range for a vocabulary of {vocab}")]
    TokenOutOfRange { token: u32, vocab: usize },
    #[error("position {position} is beyond the context length {max}")]
    PositionOutOfRange { position: usize, max: usize },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("unsupported architecture `{0}` (supported: llama, qwen2, minicpm)")]
    UnsupportedArchitecture(String),
    #[error("unsupported tensor type {dtype} for `{tensor}`")]
    UnsupportedDType { tensor: String, dtype: String },
    #[error("missing `{0}` in the model file")]
    Missing(String),
    #[error("bad model file {path}: {reason}")]
    BadFile { path: String, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Vocab(#[from] VocabError),
    #[error(transparent)]
    Kernel(#[from] ouro_kernels::KernelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Which of a sequence's new rows need logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsRows {
    /// Every new token (tree verification).
    All,
    /// Only the last one (prefill and plain decoding).
    Last,
    /// None (cache warm-up).
    None,
}

/// Which LM head computes a sequence's logits. (The values index a pass's
/// per-head row lists.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Head {
    /// Every token id (verification, plain decoding).
    #[default]
    Full = 0,
    /// Only the ids of the model's restricted drafter vocabulary
    /// ([`CausalLm::draft_vocab`]); an error on a model without one.
    Draft = 1,
}

/// One sequence's share of a forward pass.
pub struct SeqInput<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
    /// Rotary position of each new token (a tree node's is prefix + depth).
    pub positions: &'a [usize],
    /// Visibility among the new tokens; all of them see the whole cache.
    pub mask: &'a AttnMask,
    pub logits: LogitsRows,
    pub head: Head,
}

/// Logits of the requested rows of one sequence, row-major.
#[derive(Debug, Clone)]
pub struct Logits {
    /// Indices (among the sequence's new tokens) of the rows held here.
    pub rows: Vec<usize>,
    /// Columns per row: the vocabulary size, or the subset's size.
    pub vocab: usize,
    pub data: Vec<f32>,
    /// The token id of each column when a restricted head computed them
    /// ([`Head::Draft`]); `None` when column `i` is token `i`.
    pub subset: Option<VocabSubset>,
}

impl Logits {
    /// The logits of the `i`-th row held (not the `i`-th new token).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }

    pub fn last(&self) -> Option<&[f32]> {
        self.rows.len().checked_sub(1).map(|i| self.row(i))
    }

    /// The token id of column `col`.
    pub fn token(&self, col: usize) -> u32 {
        self.subset.as_ref().map_or(col as u32, |s| s.token(col))
    }
}

/// A causal language model over explicit positions and masks.
///
/// Weights are shared (`&self`); every sequence brings its own [`KvCache`],
/// so one forward pass can serve several sequences (the cloud batches the
/// draft trees of many sessions this way) and each still gets exactly the
/// logits it would get alone.
pub trait CausalLm: Send + Sync {
    fn config(&self) -> &ModelConfig;

    fn new_cache(&self) -> KvCache;

    /// Evaluates the new tokens of every sequence, appends their keys and
    /// values to the sequences' caches and returns the requested logits. On
    /// error no cache is changed.
    fn forward(&self, seqs: &mut [SeqInput<'_>]) -> Result<Vec<Logits>>;

    /// The restricted vocabulary [`Head::Draft`] computes, if the model was
    /// given one (only a drafter is; see [`vocab`]).
    fn draft_vocab(&self) -> Option<&VocabSubset> {
        None
    }

    /// One sequence's forward pass with an explicit mask (a draft tree).
    fn forward_masked(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        positions: &[usize],
        mask: &AttnMask,
        logits: LogitsRows,
    ) -> Result<Logits> {
        self.forward_head(cache, tokens, positions, mask, logits, Head::Full)
    }

    /// [`CausalLm::forward_masked`] with the logits of the given head.
    fn forward_head(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        positions: &[usize],
        mask: &AttnMask,
        logits: LogitsRows,
        head: Head,
    ) -> Result<Logits> {
        let mut seq = [SeqInput { cache, tokens, positions, mask, logits, head }];
        Ok(self.forward(&mut seq)?.remove(0))
    }

    /// Appends a causal run of tokens at the end of `cache`.
    fn forward_causal(&self, cache: &mut KvCache, tokens: &[u32], logits: LogitsRows) -> Result<Logits> {
        let start = cache.len();
        let positions: Vec<usize> = (start..start + tokens.len()).collect();
        self.forward_masked(cache, tokens, &positions, &AttnMask::causal(tokens.len()), logits)
    }
}

/// A model seen without its restricted drafter vocabulary, so a drafter
/// running on it computes every id: the same weights compared with and
/// without FR-Spec in one process (`ouro-edge bench-spec --compare-full-vocab`).
pub struct FullVocab<'m>(pub &'m dyn CausalLm);

impl CausalLm for FullVocab<'_> {
    fn config(&self) -> &ModelConfig {
        self.0.config()
    }

    fn new_cache(&self) -> KvCache {
        self.0.new_cache()
    }

    fn forward(&self, seqs: &mut [SeqInput<'_>]) -> Result<Vec<Logits>> {
        if seqs.iter().any(|s| s.head == Head::Draft) {
            return Err(ModelError::InvalidInput("this view of the model has no restricted vocabulary".into()));
        }
        self.0.forward(seqs)
    }
}
