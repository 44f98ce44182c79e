//! Text ⇄ token ids, identical on the edge and in the cloud.
//!
//! A [`Tokenizer`] wraps a [`tokenizers::Tokenizer`] built either from the
//! `tokenizer.ggml.*` metadata of a GGUF file ([`Tokenizer::from_gguf`]) or from
//! a Hugging Face `tokenizer.json` ([`Tokenizer::from_tokenizer_json`]), plus
//! the facts the decoding loop needs ([`TokenizerInfo`]): BOS/EOS, the ids that
//! end generation, whether prompts start with BOS, the chat template and an
//! identity hash the edge and the cloud compare before they exchange ids.
//!
//! GGUF vocabularies are rebuilt to tokenize exactly as llama.cpp does (it
//! wrote these files, and the reference vectors come from it):
//!
//! * `gpt2`: byte-level BPE with llama.cpp's pre-tokenizer regexes for
//!   `tokenizer.ggml.pre`. A missing `pre` falls back to llama.cpp's "default"
//!   regexes with a warning; an unknown one is an error
//!   ([`TokenizerError::UnsupportedPreTokenizer`]) rather than a silent
//!   mis-tokenization. No Unicode normalisation is applied (the upstream Qwen2
//!   `tokenizer.json` has NFC, llama.cpp does not).
//! * `llama`: SentencePiece vocabularies, rebuilt as Hugging Face's
//!   `LlamaConverter` does: a BPE whose merges are derived from the scores,
//!   `<0xXX>` byte fallback, "▁" for spaces.
//!
//! Token types follow llama.cpp: control and unknown tokens are special added
//! tokens (parsed only when asked, dropped by `skip_special`); user-defined
//! tokens (such as Qwen's `<tool_call>`) are always parsed as one token and are
//! kept when decoding, as both llama.cpp and `transformers` do.

mod gguf;
mod identity;
mod json;
mod stream;

use std::path::Path;
use std::sync::OnceLock;

use candle_core::quantized::gguf_file;

pub use stream::StreamDecoder;

/// Everything that can go wrong while building or using a [`Tokenizer`].
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("GGUF metadata key `{0}` is missing")]
    MissingKey(String),
    #[error("GGUF metadata key `{key}` should be {expected}, found {found}")]
    WrongType { key: String, expected: &'static str, found: String },
    #[error("unsupported tokenizer model `{0}` (supported: gpt2, llama)")]
    UnsupportedModel(String),
    #[error("unsupported pre-tokenizer `{0}`")]
    UnsupportedPreTokenizer(String),
    #[error("merge #{index} `{merge}` is not two space-separated tokens")]
    InvalidMerge { index: usize, merge: String },
    #[error("invalid vocabulary: {0}")]
    InvalidVocab(String),
    #[error("token id {id} is out of range for a vocabulary of {vocab_size}")]
    IdOutOfRange { id: u32, vocab_size: usize },
    #[error("cannot read {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("invalid JSON in {path}: {source}")]
    Json { path: std::path::PathBuf, source: serde_json::Error },
    #[error("streamed text diverged from its prefix (decoder is not prefix-stable)")]
    StreamDiverged,
    #[error("tokenizers: {0}")]
    Tokenizers(#[source] tokenizers::Error),
}

pub type Result<T> = std::result::Result<T, TokenizerError>;

/// Where a tokenizer came from, which decides how it was assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerKind {
    /// GGUF `gpt2`: byte-level BPE; `pre` is `tokenizer.ggml.pre` (empty if absent).
    ByteLevelBpe { pre: String },
    /// GGUF `llama`: SentencePiece vocabulary with scores.
    SentencePiece,
    /// A Hugging Face `tokenizer.json`.
    HfJson,
}

/// The facts about a tokenizer that the decoding loop and the handshake need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerInfo {
    pub kind: TokenizerKind,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Ids that end generation: EOS plus the end-of-turn/FIM-stop tokens
    /// llama.cpp treats as end-of-generation. Sorted, without duplicates.
    pub stop_ids: Vec<u32>,
    /// Whether prompts should start with [`TokenizerInfo::bos`]; [`Tokenizer::encode`]
    /// never adds it itself.
    pub add_bos: bool,
    /// Number of ids, including added tokens (and GGUF padding tokens).
    pub vocab_size: usize,
    pub chat_template: Option<String>,
    /// Hex SHA-256 over the tokens in id order, the merges (or SentencePiece
    /// scores) and the added tokens. See [`Tokenizer::from_gguf`] for what is
    /// left out so a GGUF and its `tokenizer.json` agree.
    pub identity: String,
}

impl TokenizerInfo {
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.binary_search(&id).is_ok()
    }
}

/// A Hugging Face tokenizer plus the metadata ouro needs about it.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    // `tokenizers` switches special-token parsing off with a `&mut` setter, so
    // the parse-special-off variant is a lazily made clone rather than a toggle.
    plain: OnceLock<tokenizers::Tokenizer>,
    /// Control tokens by content, longest first (see [`Tokenizer::special_tokens`]).
    specials: OnceLock<Vec<(String, u32)>>,
    info: TokenizerInfo,
}

// The derived form would print the whole vocabulary.
impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` keys.
    ///
    /// The identity covers the tokens in id order (trailing unused padding
    /// tokens excluded, so a padded GGUF matches the `tokenizer.json` it was
    /// converted from), the merges, or the scores for SentencePiece, and the
    /// added tokens (id and content). It does not cover the pre-tokenizer.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        Self::from_gguf_metadata(&ct.metadata)
    }

    /// [`Tokenizer::from_gguf`] over the metadata map alone.
    pub fn from_gguf_metadata(metadata: &std::collections::HashMap<String, gguf_file::Value>) -> Result<Self> {
        gguf::build(metadata)
    }

    /// Loads a Hugging Face `tokenizer.json`; BOS/EOS, `add_bos_token` and the
    /// chat template come from `tokenizer_config.json`, `config.json`,
    /// `generation_config.json` and `chat_template.jinja` beside it when present.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        json::load(path)
    }

    pub(crate) fn new(inner: tokenizers::Tokenizer, info: TokenizerInfo) -> Self {
        Self { inner, plain: OnceLock::new(), specials: OnceLock::new(), info }
    }

    /// Token ids of `text`, never with BOS (prepend [`TokenizerInfo::bos`] when
    /// [`TokenizerInfo::add_bos`]). With `parse_special`, control tokens written
    /// in the text (`<|im_start|>`) become their ids; without it they are
    /// tokenized as plain text. User-defined tokens are parsed either way.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tk = if parse_special {
            &self.inner
        } else {
            self.plain.get_or_init(|| {
                let mut tk = self.inner.clone();
                tk.set_encode_special_tokens(true);
                tk
            })
        };
        let enc = tk.encode_fast(text, false).map_err(TokenizerError::Tokenizers)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`; `skip_special` drops control tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let vocab_size = self.info.vocab_size;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(TokenizerError::IdOutOfRange { id, vocab_size });
        }
        self.inner.decode(ids, skip_special).map_err(TokenizerError::Tokenizers)
    }

    /// A decoder that turns ids, one at a time, into UTF-8 text deltas.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<&Self> {
        StreamDecoder::new(self, skip_special)
    }

    pub fn info(&self) -> &TokenizerInfo {
        &self.info
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The control tokens (`<|im_start|>`, `<|endoftext|>`...) with their
    /// ids, longest content first, so the first match at a position is the
    /// one [`Tokenizer::encode`] with `parse_special` would take.
    pub fn special_tokens(&self) -> &[(String, u32)] {
        self.specials.get_or_init(|| {
            let mut v: Vec<(String, u32)> = self
                .inner
                .get_added_tokens_decoder()
                .into_iter()
                .filter(|(_, t)| t.special && !t.content.is_empty())
                .map(|(id, t)| (t.content, id))
                .collect();
            v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
            v
        })
    }

    /// The id of a token written exactly as in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

/// Tokens llama.cpp ends generation on, by content (`llama-vocab.cpp`); it
/// also forces them to control type.
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// FIM tokens llama.cpp also stops on: a code model that emits them has left
/// the current file.
const FIM_STOPS: &[&str] = &[
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// Other FIM tokens llama.cpp forces to control type, so they are parsed as
/// one token whatever type the converter gave them.
const FIM_OTHER: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<PRE>",
    "▁<PRE>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<SUF>",
    "▁<SUF>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<MID>",
    "▁<MID>",
];

/// Whether a token ends generation by its content alone. `</s>` only does when
/// it is also a control token (the SentencePiece EOS), which callers check.
fn is_stop_name(token: &str) -> bool {
    END_OF_GENERATION.contains(&token) || FIM_STOPS.contains(&token)
}

fn is_forced_control(token: &str) -> bool {
    is_stop_name(token) || FIM_OTHER.contains(&token)
}

#[cfg(test)]
mod tests;
