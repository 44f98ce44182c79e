//! The draft → verify → commit cycle, shared by every deployment.
//!
//! - [`verifier`]: the target side of a session (what the cloud runs);
//! - [`drafter`]: the draft side (what the edge runs): the drafter model, the
//!   phrase pool and the tree builder;
//!
//! Both in one process, on the round driver, is [`crate::spec::SpecEngine`].

pub mod drafter;
pub mod siblings;
pub mod verifier;

pub use drafter::{draft_choice, Ahead, Draft, Drafter, DrafterConfig, DEFAULT_DRAFT_WINDOW};
pub use verifier::{PendingVerify, VerifierSession};

use crate::model::ModelError;
use crate::sampling::SamplingError;
use crate::tree::TreeError;
use crate::verify::VerifyError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the context is full ({len} of {max} tokens)")]
    ContextFull { len: usize, max: usize },
    #[error("the {0} draft strategy needs a drafter model")]
    NoDrafter(String),
    #[error("drafter and verifier vocabularies differ ({drafter} vs {verifier} ids)")]
    VocabMismatch { drafter: usize, verifier: usize },
    #[error("the verifier streamed tokens {streamed:?} where its verdict says {verdict:?}")]
    RanOnMismatch { streamed: Vec<u32>, verdict: Vec<u32> },
}
