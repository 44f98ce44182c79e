//! Laying a draft tree out as one verifier forward pass.

use super::DraftTree;
use crate::model::AttnMask;

impl DraftTree {
    /// The verifier's input rows for this tree.
    ///
    /// Row 0 is the root token (the last committed token, not yet in the KV
    /// cache) at position `prefix_len`; node `i` is row `i + 1` at position
    /// `prefix_len + depth(i)`, seeing itself, its ancestors and the root. Every
    /// row also sees the whole cache, which the runtime adds on its own.
    /// Logits of row `r` therefore predict the token after the path ending at
    /// row `r`, which is what verification compares children against.
    pub fn verify_inputs(&self, root_token: u32, prefix_len: usize) -> (Vec<u32>, Vec<usize>, AttnMask) {
        let mut tokens = Vec::with_capacity(self.len() + 1);
        tokens.push(root_token);
        tokens.extend_from_slice(self.tokens());

        let mut positions = Vec::with_capacity(self.len() + 1);
        positions.push(prefix_len);
        positions.extend((0..self.len()).map(|i| prefix_len + self.depth(i)));

        // Shift every node down one row behind the root; the root itself has
        // no parent among the new tokens.
        let mut row_parents = Vec::with_capacity(self.len() + 1);
        row_parents.push(-1);
        row_parents.extend(self.parents().iter().map(|&p| p + 1));
        let mask = AttnMask::from_parents(&row_parents).expect("a validated tree's parents precede their children");
        (tokens, positions, mask)
    }
}

#[cfg(test)]
mod tests {
    use crate::tree::{DraftTree, TreeLimits};
    use proptest::prelude::*;

    #[test]
    fn small_tree_layout() {
        // 0 <- 1 ; 0 <- 2 ; 3 (root child)
        let lim = TreeLimits { max_nodes: 8, max_depth: 4 };
        let t = DraftTree::new(vec![5, 6, 7, 8], vec![-1, 0, 0, -1], &lim, 10).unwrap();
        let (tokens, positions, mask) = t.verify_inputs(9, 20);
        assert_eq!(tokens, vec![9, 5, 6, 7, 8]);
        assert_eq!(positions, vec![20, 21, 22, 22, 21]);
        assert_eq!(mask.row(0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(mask.row(2).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(mask.row(3).collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(mask.row(4).collect::<Vec<_>>(), vec![0, 4]);
    }

    #[test]
    fn empty_tree_is_just_the_root() {
        let (tokens, positions, mask) = DraftTree::chain(&[]).verify_inputs(3, 0);
        assert_eq!((tokens, positions, mask.len()), (vec![3], vec![0], 1));
    }

    /// Random valid trees: each node picks any earlier node or the root.
    fn arb_tree() -> impl Strategy<Value = DraftTree> {
        prop::collection::vec((0u32..50, any::<prop::sample::Index>(), any::<bool>()), 0..40).prop_map(|nodes| {
            let mut t = DraftTree::empty(&TreeLimits::UNBOUNDED, 50);
            for (i, (tok, pick, at_root)) in nodes.into_iter().enumerate() {
                let parent = if at_root || i == 0 { None } else { Some(pick.index(i)) };
                t.push(tok, parent).unwrap();
            }
            t
        })
    }

    proptest! {
        #[test]
        fn rows_see_exactly_their_ancestors(t in arb_tree(), prefix in 0usize..1000, root in 0u32..50) {
            let (tokens, positions, mask) = t.verify_inputs(root, prefix);
            prop_assert_eq!(tokens.len(), t.len() + 1);
            prop_assert_eq!(mask.len(), t.len() + 1);
            prop_assert_eq!(tokens[0], root);
            prop_assert_eq!(positions[0], prefix);
            prop_assert_eq!(mask.row(0).collect::<Vec<_>>(), vec![0]);
            for i in 0..t.len() {
                prop_assert_eq!(tokens[i + 1], t.token(i));
                prop_assert_eq!(positions[i + 1], prefix + t.depth(i));
                let path = t.path_to(i);
                prop_assert_eq!(path.len(), t.depth(i));
                let mut expect = vec![0];
                expect.extend(path.iter().map(|&n| n + 1));
                expect.sort_unstable();
                prop_assert_eq!(mask.row(i + 1).collect::<Vec<_>>(), expect);
            }
        }

        #[test]
        fn paths_cover_every_leaf_once(t in arb_tree()) {
            let paths = t.paths();
            let leaves: Vec<usize> = (0..t.len()).filter(|&i| t.is_leaf(i)).collect();
            prop_assert_eq!(paths.iter().map(|p| *p.last().unwrap()).collect::<Vec<_>>(), leaves);
            for p in &paths {
                prop_assert_eq!(t.parent(p[0]), None);
                for w in p.windows(2) {
                    prop_assert_eq!(t.parent(w[1]), Some(w[0]));
                }
            }
            // Rebuilding from the flat arrays gives the same tree.
            let again = DraftTree::new(t.tokens().to_vec(), t.parents().to_vec(), &TreeLimits::UNBOUNDED, 50);
            prop_assert_eq!(again.as_ref(), Ok(&t));
        }
    }
}
