//! Errors of the sampling primitives.

/// A sampling setting or a distribution that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("temperature {0} is negative")]
    NegativeTemperature(f32),
    #[error("temperature {0} is not a finite number")]
    NonFiniteTemperature(f32),
    #[error("top_p {0} is outside (0, 1]")]
    TopPOutOfRange(f32),
    #[error("top_k is 0: at least one token must stay possible")]
    TopKZero,
    #[error("k is 0: a truncated distribution needs at least one token")]
    ZeroK,
    #[error("the distribution has no positive, finite probability mass")]
    EmptyDistribution,
    #[error("token {id} has probability {prob}, expected a finite value >= 0")]
    InvalidProbability { id: u32, prob: f32 },
    #[error("token {0} appears more than once")]
    DuplicateId(u32),
    #[error("index {id} is outside a vocabulary subset of {len} ids")]
    IdOutOfRange { id: u32, len: usize },
}
