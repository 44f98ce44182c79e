//! The outcome of verifying one draft tree.

use crate::tree::DraftTree;

/// What the target made of a draft tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Node indices of the accepted path, root-first; empty if the root's
    /// children were all rejected.
    pub accepted: Vec<usize>,
    /// The token after the accepted path: a correction where drafting went
    /// wrong, or a bonus token after a fully accepted leaf.
    pub next_token: u32,
    /// The target's argmax at the root (index 0) and at every node `i`
    /// (index `i + 1`), whether or not that node was reached. Drafters use it
    /// to recover phrases that were right but sat in the wrong place.
    pub target_argmax: Vec<u32>,
}

impl Verdict {
    /// Tokens of the accepted nodes, in order.
    pub fn accepted_tokens(&self, tree: &DraftTree) -> Vec<u32> {
        self.accepted.iter().map(|&i| tree.token(i)).collect()
    }

    /// Everything this round commits: accepted tokens, then `next_token`.
    pub fn emitted_tokens(&self, tree: &DraftTree) -> Vec<u32> {
        let mut out = self.accepted_tokens(tree);
        out.push(self.next_token);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emitted_is_accepted_then_next() {
        let tree = DraftTree::chain(&[4, 5, 6]);
        let v = Verdict { accepted: vec![0, 1], next_token: 9, target_argmax: vec![4, 5, 0, 0] };
        assert_eq!(v.accepted_tokens(&tree), vec![4, 5]);
        assert_eq!(v.emitted_tokens(&tree), vec![4, 5, 9]);
    }
}
