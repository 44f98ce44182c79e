//! Sampling primitives shared by target-only decoding, the drafter and the
//! verifier.
//!
//! Speculative output is only lossless if every side agrees on the small
//! details: how ties are broken, how a distribution is filtered, and which
//! random numbers are drawn. Keeping those details in one place is what makes
//! "speculative output == target-only output" a property of the code rather
//! than a coincidence.

mod argmax;
mod error;
mod params;
mod probs;
mod rng;
mod sparse;

pub use argmax::argmax;
pub use error::SamplingError;
pub use params::SamplingParams;
pub use probs::{probs, probs_f64};
pub use rng::{sample_dense, sample_dense_f64, SamplerRng};
pub use sparse::SparseDist;
