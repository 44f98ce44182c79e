//! Drafting material that costs no model forward: the Ouroboros phrase pool.
//!
//! - [`pool`]: n-grams keyed by their first token, bounded, with hit-aware
//!   eviction and suffix lookup;
//! - [`persist`]: the on-disk warm-start format and its errors;
//! - [`lookup`]: prompt lookup, the text's own earlier tokens copied where
//!   its last tokens occurred before, sized by how long copies have held.
//!
//! The pool is fed from three places (the prompt and committed text, the
//! drafter's own lookahead, and the verifier's argmax on rejected branches) and
//! read when the edge grows a draft tree: its phrases become extra branches
//! that cost the drafter nothing and the verifier only their node count.

pub mod lookup;
pub mod persist;
pub mod pool;

pub use lookup::{find_repeat, CopyStats, Repeat};
pub use persist::PoolError;
pub use pool::{InsertOutcome, PhrasePool, PhraseSource, PoolConfig, PoolMark, PoolStats, MAX_SUFFIX_MATCH};
