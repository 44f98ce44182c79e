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

/// `tokens` up to and including the first of `stop_ids`: a stop token ends
/// the text, so nothing drafted after it can be accepted.
pub fn until_stop<'t>(tokens: &'t [u32], stop_ids: &[u32]) -> &'t [u32] {
    let end = tokens.iter().position(|t| stop_ids.contains(t)).map_or(tokens.len(), |i| i + 1);
    &tokens[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_draft_ends_at_its_first_stop_token() {
        assert_eq!(super::until_stop(&[5, 6, 2, 7, 2], &[2]), [5, 6, 2]);
        assert_eq!(super::until_stop(&[5, 6], &[2]), [5, 6]);
        assert_eq!(super::until_stop(&[], &[2]), [0u32; 0]);
    }
}
