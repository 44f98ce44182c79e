//! Speculative generation, transport-free: the one round driver every
//! deployment runs, and the seams it runs through.
//!
//! - [`ceiling`]: what any strategy could gain at most with a drafter, from
//!   traces of where it ranked the verifier's tokens;
//! - [`driver`]: plan → draft → verify → commit, with truncation at stop and
//!   length, feedback to the policy, drafting ahead and the statistics;
//! - [`verifier`]: the [`Verifier`] seam the driver talks to (in process
//!   here; the edge's link implements it over the wire);
//! - [`strategy`]: the [`DraftStrategy`] seam and the one name table every
//!   CLI's `--draft`/mode flag is parsed with;
//! - [`stats`]: what a run did ([`SpecStats`]);
//! - [`engine`]: drafter and verifier in one process, without a network
//!   ([`SpecEngine`]).

pub mod ceiling;
pub mod driver;
pub mod engine;
mod gap;
pub mod stats;
pub mod strategy;
pub mod verifier;

pub use driver::{drive, Rounds};
pub use engine::SpecEngine;
pub use stats::{PredictionError, RoundLog, SpecStats};
pub use strategy::{DraftSource, DraftStrategy, Opening, StrategyError};
pub use verifier::{block_on_ready, InProcessVerifier, Reply, Verifier};
