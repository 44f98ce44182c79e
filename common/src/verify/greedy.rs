//! Greedy verification: keep the longest drafted path the target agrees with.

use super::rows::{check_rows, row_argmaxes};
use super::{Verdict, VerifyError};
use crate::tree::DraftTree;

/// Accepts, level by level, the child whose token is the target's
/// [`argmax`](crate::sampling::argmax) at its parent's row (the first by index
/// among duplicates), and ends with the argmax after the last accepted node.
///
/// The emitted tokens are exactly what target-only greedy decoding would have
/// produced, because both use the same argmax on the same logits.
pub fn verify_greedy(tree: &DraftTree, logits: &[&[f32]]) -> Result<Verdict, VerifyError> {
    check_rows(tree, logits)?;
    let target_argmax = row_argmaxes(logits);
    let mut accepted = Vec::new();
    let mut node = None;
    let next_token = loop {
        let row = node.map_or(0, |n| n + 1);
        let want = target_argmax[row];
        match tree.children(node).find(|&c| tree.token(c) == want) {
            Some(c) => {
                accepted.push(c);
                node = Some(c);
            }
            None => break want,
        }
    };
    Ok(Verdict { accepted, next_token, target_argmax })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{argmax, SamplerRng};
    use crate::tree::TreeLimits;
    use crate::verify::synthetic::GreedyTarget;
    use proptest::prelude::*;
    use rand::RngCore;

    fn one_hot(v: usize, i: u32) -> Vec<f32> {
        let mut r = vec![0.0; v];
        r[i as usize] = 1.0;
        r
    }

    #[test]
    fn accepts_matching_path_and_adds_bonus() {
        // Root children 0 (tok 3) and 1 (tok 5); 1 <- 2 (tok 6).
        let lim = TreeLimits { max_nodes: 8, max_depth: 4 };
        let tree = DraftTree::new(vec![3, 5, 6], vec![-1, -1, 1], &lim, 8).unwrap();
        let rows = [one_hot(8, 5), one_hot(8, 0), one_hot(8, 6), one_hot(8, 7)];
        let rows: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let v = verify_greedy(&tree, &rows).unwrap();
        assert_eq!(v.accepted, vec![1, 2]);
        assert_eq!(v.next_token, 7);
        assert_eq!(v.target_argmax, vec![5, 0, 6, 7]);
    }

    #[test]
    fn rejects_at_root_with_correction() {
        let tree = DraftTree::chain(&[1, 2]);
        let rows = [one_hot(4, 3), one_hot(4, 2), one_hot(4, 0)];
        let rows: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let v = verify_greedy(&tree, &rows).unwrap();
        assert!(v.accepted.is_empty());
        assert_eq!(v.next_token, 3);
    }

    #[test]
    fn duplicate_children_take_the_first() {
        let lim = TreeLimits::UNBOUNDED;
        let tree = DraftTree::new(vec![2, 2, 1], vec![-1, -1, 1], &lim, 4).unwrap();
        // Only the second duplicate has a matching child, but the first wins.
        let rows = [one_hot(4, 2), one_hot(4, 0), one_hot(4, 1), one_hot(4, 3)];
        let rows: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let v = verify_greedy(&tree, &rows).unwrap();
        assert_eq!(v.accepted, vec![0]);
        assert_eq!(v.next_token, 0);
    }

    #[test]
    fn empty_tree_emits_the_root_argmax() {
        let rows = [vec![0.0, 1.0, 1.0]];
        let rows: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let v = verify_greedy(&DraftTree::chain(&[]), &rows).unwrap();
        assert_eq!((v.accepted.len(), v.next_token), (0, 1));
    }

    #[test]
    fn shape_errors_are_reported() {
        let tree = DraftTree::chain(&[1]);
        let r = [0.0f32; 3];
        assert!(matches!(verify_greedy(&tree, &[&r]), Err(VerifyError::RowCount { .. })));
    }

    /// A random tree drafted at `ctx` against `target`: each node follows the
    /// target's greedy choice when its `follow` flag is set, so deep
    /// agreement, duplicates and near-misses all occur.
    fn draft(target: &GreedyTarget, ctx: &[u32], spec: &[(usize, bool, bool, u32)]) -> DraftTree {
        let mut tree = DraftTree::empty(&TreeLimits::UNBOUNDED, target.vocab);
        for (i, (pick, at_root, follow, tok)) in spec.iter().enumerate() {
            let parent = if *at_root || i == 0 { None } else { Some(pick % i) };
            let mut path = ctx.to_vec();
            if let Some(p) = parent {
                path.extend(tree.path_to(p).iter().map(|&n| tree.token(n)));
            }
            let token = if *follow { argmax(&target.logits(&path)) } else { *tok };
            tree.push(token, parent).unwrap();
        }
        tree
    }

    fn rows_for(target: &GreedyTarget, ctx: &[u32], tree: &DraftTree) -> Vec<Vec<f32>> {
        let mut rows = vec![target.logits(ctx)];
        for i in 0..tree.len() {
            let mut path = ctx.to_vec();
            path.extend(tree.path_to(i).iter().map(|&n| tree.token(n)));
            rows.push(target.logits(&path));
        }
        rows
    }

    fn arb_spec() -> impl Strategy<Value = Vec<(usize, bool, bool, u32)>> {
        prop::collection::vec((any::<usize>(), any::<bool>(), any::<bool>(), 0u32..6), 0..30)
    }

    proptest! {
        #[test]
        fn greedy_verdict_matches_stepwise_target(salt in any::<u64>(), root in 0u32..6, spec in arb_spec()) {
            let target = GreedyTarget { vocab: 6, salt };
            let ctx = vec![root];
            let tree = draft(&target, &ctx, &spec);
            let rows = rows_for(&target, &ctx, &tree);
            let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
            let v = verify_greedy(&tree, &refs).unwrap();

            // The accepted nodes form a real path from the root.
            if let Some(&last) = v.accepted.last() {
                prop_assert_eq!(tree.path_to(last), v.accepted.clone());
            }
            // Its tokens and the next token are the target's own greedy steps.
            let mut path = ctx.clone();
            let mut parent = None;
            for &n in &v.accepted {
                let want = argmax(&target.logits(&path));
                prop_assert_eq!(tree.token(n), want);
                // The first child by index carrying that token.
                let first = tree.children(parent).find(|&c| tree.token(c) == want);
                prop_assert_eq!(first, Some(n));
                path.push(want);
                parent = Some(n);
            }
            let want = argmax(&target.logits(&path));
            prop_assert_eq!(v.next_token, want);
            // Maximal: the tree had no child continuing the greedy path.
            prop_assert!(tree.children(parent).all(|c| tree.token(c) != want));
            prop_assert_eq!(v.target_argmax, refs.iter().map(|r| argmax(r)).collect::<Vec<_>>());
        }

        #[test]
        fn speculative_greedy_is_byte_identical(salt in any::<u64>(), root in 0u32..6, seed in any::<u64>()) {
            let target = GreedyTarget { vocab: 6, salt };
            let n = 40;
            let mut plain = vec![root];
            while plain.len() <= n {
                plain.push(argmax(&target.logits(&plain)));
            }
            let mut spec_ctx = vec![root];
            let mut rng = SamplerRng::new(seed);
            while spec_ctx.len() <= n {
                // Draft trees of random shape and quality for each round.
                let nodes = (rng.next_f64() * 12.0) as usize;
                let spec: Vec<_> = (0..nodes)
                    .map(|_| {
                        let pick = rng.next_u64() as usize;
                        (pick, rng.next_f64() < 0.3, rng.next_f64() < 0.7, (rng.next_f64() * 6.0) as u32)
                    })
                    .collect();
                let tree = draft(&target, &spec_ctx, &spec);
                let rows = rows_for(&target, &spec_ctx, &tree);
                let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
                let v = verify_greedy(&tree, &refs).unwrap();
                spec_ctx.extend(v.emitted_tokens(&tree));
            }
            prop_assert_eq!(&spec_ctx[..=n], &plain[..]);
        }
    }
}
