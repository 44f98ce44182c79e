//! The model runtime: one trait for a causal LM with explicit positions, an
//! explicit attention mask and a rollback-capable KV cache.

pub mod mask;

pub use mask::AttnMask;

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
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
