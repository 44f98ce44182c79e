//! Why a draft tree was refused.

/// A malformed draft tree. Trees arrive from the network, so each defect is
/// reported with the offending index and value rather than trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("{tokens} tokens but {parents} parents")]
    LengthMismatch { tokens: usize, parents: usize },
    #[error("{len} nodes exceed the limit of {max}")]
    TooManyNodes { len: usize, max: usize },
    #[error("node {index} has token {token}, outside a vocabulary of {vocab}")]
    TokenOutOfVocab { index: usize, token: u32, vocab: usize },
    #[error("node {index} has parent {parent}, outside -1..{len}")]
    ParentOutOfRange { index: usize, parent: i64, len: usize },
    #[error("node {index} has parent {parent}: a parent must come before its child")]
    ParentNotBefore { index: usize, parent: usize },
    #[error("node {index} is at depth {depth}, beyond the limit of {max}")]
    TooDeep { index: usize, depth: usize, max: usize },
}
