//! Rounds that arrive after the verifier ran on alone.
//!
//! A greedy verifier with no round in hand may decode on its own rather than
//! sit idle for a round trip (`DraftRound.run_on` on the wire). The edge's
//! next round then builds on a text the verifier has already moved past. Its
//! tree is walked along the verifier's own tokens, taking at each depth the
//! first child by index that holds the token, as greedy verification itself
//! would. Where the walk reaches the end of those tokens, the subtree below
//! is verified as a round of its own ([`Walk::Reached`]); where the text
//! leaves the tree, the round is answered at once, with no pass
//! ([`Walk::Left`]). Either way the verdict is the one greedy verification
//! of the whole tree would give, since the verifier's tokens are what it
//! would have found at those nodes.

use super::Verdict;
use crate::tree::{DraftTree, TreeError};

/// Where the verifier's own tokens lead through a round's tree.
#[derive(Debug, Clone)]
pub enum Walk {
    /// Every token was found; the rest of the tree is to be verified.
    Reached(Below),
    /// The text left the tree after `path` (the nodes of its first tokens).
    Left { path: Vec<usize> },
}

/// The part of a tree below the end of a walk, as a tree of its own.
#[derive(Debug, Clone)]
pub struct Below {
    /// The walked nodes, root-first.
    path: Vec<usize>,
    tree: DraftTree,
    /// The whole tree's index of each of `tree`'s nodes.
    nodes: Vec<usize>,
}

/// Walks `tree` along `text`, the tokens the verifier committed after the
/// round's root.
pub fn walk(tree: &DraftTree, text: &[u32]) -> Result<Walk, TreeError> {
    let mut path = Vec::with_capacity(text.len());
    for &token in text {
        match tree.children(path.last().copied()).find(|&c| tree.token(c) == token) {
            Some(c) => path.push(c),
            None => return Ok(Walk::Left { path }),
        }
    }
    // Indices only grow from parent to child, so the descendants of the
    // walk's end, in index order, list every parent before its children.
    let end = path.last().copied();
    let mut nodes = Vec::new();
    let mut parents = Vec::new();
    for n in 0..tree.len() {
        let parent = match tree.parent(n) {
            p if p == end => -1,
            Some(p) => match nodes.iter().position(|&m| m == p) {
                Some(i) => i as i32,
                None => continue,
            },
            None => continue,
        };
        nodes.push(n);
        parents.push(parent);
    }
    let tokens = nodes.iter().map(|&n| tree.token(n)).collect();
    let below = DraftTree::new(tokens, parents, tree.limits(), tree.vocab_size())?;
    Ok(Walk::Reached(Below { path, tree: below, nodes }))
}

impl Below {
    /// What is left to verify, rooted at the walk's last token.
    pub fn tree(&self) -> &DraftTree {
        &self.tree
    }

    /// The whole tree's verdict from the verdict on [`tree`](Self::tree).
    pub fn verdict(&self, whole: &DraftTree, below: &Verdict) -> Verdict {
        let mut accepted = self.path.clone();
        accepted.extend(below.accepted.iter().map(|&i| self.nodes[i]));
        let mut argmax = unreached(whole);
        for (i, &n) in self.nodes.iter().enumerate() {
            argmax[n + 1] = below.target_argmax[i + 1];
        }
        // Along the walk, each node's argmax is the token after it.
        let after: Vec<u32> =
            self.path.iter().skip(1).map(|&n| whole.token(n)).chain([below.target_argmax[0]]).collect();
        put_path(&mut argmax, &self.path, &after);
        argmax[0] = self.path.first().map_or(below.target_argmax[0], |&n| whole.token(n));
        Verdict { accepted, next_token: below.next_token, target_argmax: argmax }
    }
}

/// The verdict on a tree that `text` left after `path` ([`Walk::Left`]):
/// the path accepted and the next token of the text as the verifier's own.
/// The tokens after that one are what else the verifier ran on.
pub fn left_verdict(tree: &DraftTree, path: &[usize], text: &[u32]) -> Verdict {
    let next_token = text[path.len()];
    let mut argmax = unreached(tree);
    put_path(&mut argmax, path, &text[1..=path.len()]);
    argmax[0] = text[0];
    Verdict { accepted: path.to_vec(), next_token, target_argmax: argmax }
}

/// Argmax slots for nodes no pass has seen: each node's own token, what the
/// drafter already proposed there, so that no phrase learned from them is
/// new. (The root's slot is always filled in afterwards.)
fn unreached(tree: &DraftTree) -> Vec<u32> {
    std::iter::once(0).chain(tree.tokens().iter().copied()).collect()
}

/// Fills the argmax along `path`: `after[i]` follows `path[i]`.
fn put_path(argmax: &mut [u32], path: &[usize], after: &[u32]) {
    for (&n, &t) in path.iter().zip(after) {
        argmax[n + 1] = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::TreeLimits;
    use crate::verify::verify_greedy;

    /// Root children 5 (node 0) and 6 (node 1); 0 → 7 (2) → 8 (3); 0 → 9 (4); 1 → 7 (5).
    fn tree() -> DraftTree {
        let limits = TreeLimits { max_nodes: 16, max_depth: 8 };
        DraftTree::new(vec![5, 6, 7, 8, 9, 7], vec![-1, -1, 0, 2, 0, 1], &limits, 100).unwrap()
    }

    /// Logits rows of a target whose greedy text is `text` whatever came before.
    fn rows_for(tree: &DraftTree, next: impl Fn(Option<usize>) -> u32) -> Vec<Vec<f32>> {
        let mut rows = Vec::new();
        for r in 0..=tree.len() {
            let mut row = vec![0.0; 100];
            row[next(r.checked_sub(1)) as usize] = 1.0;
            rows.push(row);
        }
        rows
    }

    #[test]
    fn an_empty_text_leaves_the_whole_tree_to_verify() {
        let t = tree();
        let Walk::Reached(b) = walk(&t, &[]).unwrap() else { panic!("reached") };
        assert_eq!(b.tree().tokens(), t.tokens());
        assert_eq!(b.tree().parents(), t.parents());
    }

    #[test]
    fn the_walk_takes_the_first_child_with_the_token_and_keeps_its_subtree() {
        let t = tree();
        let Walk::Reached(b) = walk(&t, &[5, 7]).unwrap() else { panic!("reached") };
        assert_eq!(b.path, [0, 2]);
        assert_eq!(b.tree().tokens(), [8]);
        assert_eq!(b.tree().parents(), [-1]);
        let Walk::Reached(b) = walk(&t, &[5]).unwrap() else { panic!("reached") };
        assert_eq!((b.tree().tokens(), b.tree().parents()), (&[7, 8, 9][..], &[-1, 0, -1][..]));
        assert_eq!(b.nodes, [2, 3, 4]);
    }

    #[test]
    fn a_text_that_leaves_the_tree_says_where() {
        let t = tree();
        assert!(matches!(walk(&t, &[5, 3, 8]).unwrap(), Walk::Left { path } if path == [0]));
        assert!(matches!(walk(&t, &[4]).unwrap(), Walk::Left { path } if path.is_empty()));
        // Past a leaf the text has left the tree too.
        assert!(matches!(walk(&t, &[5, 7, 8, 1]).unwrap(), Walk::Left { path } if path == [0, 2, 3]));
    }

    #[test]
    fn a_walked_verdict_is_the_whole_tree_s_greedy_verdict() {
        let t = tree();
        // The target says 5, 7, 8, then 11: node 3 is a leaf, so 11 is its bonus token.
        let text = [5, 7, 8, 11];
        let next = |node: Option<usize>| match node {
            None => 5,
            Some(0) => 7,
            Some(2) => 8,
            Some(3) => 11,
            Some(_) => 42,
        };
        let rows = rows_for(&t, next);
        let rows: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let whole = verify_greedy(&t, &rows).unwrap();
        for ran in 0..=3 {
            let Walk::Reached(b) = walk(&t, &text[..ran]).unwrap() else { panic!("reached") };
            let sub_rows = rows_for(b.tree(), |n| next(n.map(|i| b.nodes[i]).or(b.path.last().copied())));
            let sub_rows: Vec<&[f32]> = sub_rows.iter().map(|r| &r[..]).collect();
            let sub = verify_greedy(b.tree(), &sub_rows).unwrap();
            let v = b.verdict(&t, &sub);
            assert_eq!((v.accepted.clone(), v.next_token), (whole.accepted.clone(), whole.next_token), "ran on {ran}");
            // Along the accepted path, what the pass saw.
            for &n in &v.accepted {
                assert_eq!(v.target_argmax[n + 1], whole.target_argmax[n + 1], "node {n} after {ran}");
            }
            assert_eq!(v.target_argmax[0], whole.target_argmax[0]);
        }
    }

    #[test]
    fn a_left_verdict_accepts_the_path_and_takes_the_text_s_next_token() {
        let t = tree();
        let v = left_verdict(&t, &[0], &[5, 3, 8]);
        assert_eq!((v.accepted, v.next_token), (vec![0], 3));
        assert_eq!((v.target_argmax[0], v.target_argmax[1]), (5, 3));
        // Unreached nodes carry their own tokens, which teach no new phrase.
        assert_eq!(v.target_argmax[2..], [6, 7, 8, 9, 7]);
        let v = left_verdict(&t, &[], &[4]);
        assert_eq!((v.accepted, v.next_token, v.target_argmax[0]), (vec![], 4, 4));
    }
}
