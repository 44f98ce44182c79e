//! Lossless verification of a draft tree against the target model's logits.
//!
//! Whatever the drafter proposes, the emitted tokens must be distributed
//! exactly as if the target had decoded alone: greedy verification reproduces
//! target-only greedy output token for token, and sampling verification uses
//! recursive rejection sampling (SpecInfer, Sequoia) so each emitted token has
//! the target's distribution.
//!
//! Row `r` of the logits is the target's prediction after the path ending at
//! row `r`: row 0 is the root (last committed token), row `i + 1` is node `i`,
//! matching [`DraftTree::verify_inputs`](crate::tree::DraftTree::verify_inputs).

mod error;
mod greedy;
mod residual;
mod rows;
pub mod run_on;
mod sampling;
mod stack;
mod verdict;

#[cfg(test)]
mod chi_square;
#[cfg(test)]
mod statistical_tests;
#[cfg(test)]
mod synthetic;

pub use error::VerifyError;
pub use greedy::verify_greedy;
pub use rows::split_rows;
pub use sampling::verify_sampling;
pub use stack::StackedRounds;
pub use verdict::Verdict;
