//! Why a verification request could not be carried out.

use crate::sampling::SamplingError;

/// Inputs that do not fit together. Verification itself never fails; only
/// mismatched shapes and unusable settings are refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("expected {expected} logit rows (root + one per node), got {got}")]
    RowCount { expected: usize, got: usize },
    #[error("logit row {row} has {got} entries, expected {expected}")]
    RowWidth { row: usize, expected: usize, got: usize },
    #[error("logit rows are empty: the vocabulary cannot be 0")]
    EmptyVocab,
    #[error("{len} flat logits are not a whole number of rows of {vocab}")]
    RaggedFlat { len: usize, vocab: usize },
    #[error("expected one draft distribution per node ({expected}), got {got}")]
    DraftDistCount { expected: usize, got: usize },
    #[error(transparent)]
    Params(#[from] SamplingError),
}
