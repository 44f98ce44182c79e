//! Rounds sent ahead, verified in the forward pass of the round they bet on.
//!
//! A round sent ahead bets that the round before it commits `assumed`: a path
//! of that round's tree, then the verifier's own token. When the verifier has
//! both rounds in hand before it starts, the second tree can hang below the
//! first on a node holding the guessed token, and one pass checks both.
//! Greedy verification walks the merged tree exactly as it would walk the
//! rounds in turn: through the first round's nodes as before, into the
//! guessed node only where the target's own token is the guess (the bet
//! won), and from there through the second round. The runtime is
//! batch-invariant, so every row's logits are those the separate passes
//! would give. Sampled rounds are never stacked: the verifier's random draws
//! would follow the merged tree, and with it the timing of arrivals.

use super::Verdict;
use crate::tree::DraftTree;

/// Rounds merged into one tree, the first one's nodes first.
#[derive(Debug, Clone)]
pub struct StackedRounds {
    tree: DraftTree,
    parts: Vec<Part>,
}

/// Where one round sits in the merged tree.
#[derive(Debug, Clone)]
struct Part {
    /// The node holding the guessed token the round's tree hangs below;
    /// `None` for the first round, which starts at the root.
    guess: Option<usize>,
    /// The merged index of each of the round's own nodes.
    nodes: Vec<usize>,
}

impl StackedRounds {
    pub fn new(first: DraftTree) -> Self {
        let nodes = (0..first.len()).collect();
        Self { tree: first, parts: vec![Part { guess: None, nodes }] }
    }

    /// The merged tree, within the first round's limits.
    pub fn tree(&self) -> &DraftTree {
        &self.tree
    }

    /// How many rounds the tree holds.
    pub fn rounds(&self) -> usize {
        self.parts.len()
    }

    /// Hangs `next` below the last round, on its bet that the last round
    /// commits `assumed`. Returns false, and leaves the stack as it was,
    /// where that bet cannot win on this tree (`assumed` does not follow a
    /// path of the last round and then leave it, as a bonus token must) or
    /// where the merged tree would pass its limits.
    pub fn push(&mut self, assumed: &[u32], next: &DraftTree) -> bool {
        let Some((&guess, path)) = assumed.split_last() else { return false };
        let last = self.parts.last().expect("a stack holds its first round");
        // Greedy verification takes the first child by index carrying the
        // target's token, so the path is found the same way.
        let mut at = last.guess;
        for &t in path {
            match self.tree.children(at).find(|&c| self.tree.token(c) == t) {
                Some(c) => at = Some(c),
                None => return false,
            }
        }
        // Where the last round already holds the guessed token, a target
        // that agrees with the guess walks on into that node, so the round
        // commits more than `assumed`: the bet cannot win.
        if self.tree.children(at).any(|c| self.tree.token(c) == guess) {
            return false;
        }
        let mut tree = self.tree.clone();
        let Ok(g) = tree.push(guess, at) else { return false };
        let mut nodes = Vec::with_capacity(next.len());
        for i in 0..next.len() {
            let parent = next.parent(i).map_or(g, |p| nodes[p]);
            match tree.push(next.token(i), Some(parent)) {
                Ok(n) => nodes.push(n),
                Err(_) => return false,
            }
        }
        self.tree = tree;
        self.parts.push(Part { guess: Some(g), nodes });
        true
    }

    /// One verdict per round from the verdict on the merged tree: what each
    /// round's own verification would have said, and `None` for the rounds
    /// whose bet lost (they are answered stale).
    pub fn split(&self, merged: &Verdict) -> Vec<Option<Verdict>> {
        let mut out = Vec::with_capacity(self.parts.len());
        let mut reached = true;
        for (i, part) in self.parts.iter().enumerate() {
            if !reached {
                out.push(None);
                continue;
            }
            let local = |n: usize| part.nodes.iter().position(|&m| m == n);
            let accepted: Vec<usize> = merged.accepted.iter().filter_map(|&n| local(n)).collect();
            let guess = self.parts.get(i + 1).and_then(|p| p.guess);
            let won = guess.is_some_and(|g| merged.accepted.contains(&g));
            let next_token = match guess {
                Some(g) if won => self.tree.token(g),
                _ => merged.next_token,
            };
            let root_row = part.guess.map_or(0, |g| g + 1);
            let mut target_argmax = Vec::with_capacity(part.nodes.len() + 1);
            target_argmax.push(merged.target_argmax[root_row]);
            target_argmax.extend(part.nodes.iter().map(|&n| merged.target_argmax[n + 1]));
            out.push(Some(Verdict { accepted, next_token, target_argmax }));
            reached = won;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{argmax, SamplerRng};
    use crate::tree::TreeLimits;
    use crate::verify::synthetic::GreedyTarget;
    use crate::verify::verify_greedy;
    use proptest::prelude::*;
    use rand::RngCore;

    /// The target's greedy verdict on `tree` drafted at `ctx`.
    fn verify(target: &GreedyTarget, ctx: &[u32], tree: &DraftTree) -> Verdict {
        let mut rows = vec![target.logits(ctx)];
        for i in 0..tree.len() {
            let mut path = ctx.to_vec();
            path.extend(tree.path_to(i).iter().map(|&n| tree.token(n)));
            rows.push(target.logits(&path));
        }
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        verify_greedy(tree, &refs).unwrap()
    }

    /// A random tree at `ctx` whose nodes often follow the target, so trunks
    /// are accepted often enough for bets to win.
    fn draft(target: &GreedyTarget, ctx: &[u32], rng: &mut SamplerRng, limits: &TreeLimits) -> DraftTree {
        let mut tree = DraftTree::empty(limits, target.vocab);
        let nodes = (rng.next_f64() * 7.0) as usize;
        for i in 0..nodes {
            let parent = if i == 0 || rng.next_f64() < 0.2 { None } else { Some(rng.next_u64() as usize % i) };
            let mut path = ctx.to_vec();
            if let Some(p) = parent {
                path.extend(tree.path_to(p).iter().map(|&n| tree.token(n)));
            }
            let token = if rng.next_f64() < 0.75 {
                argmax(&target.logits(&path))
            } else {
                rng.next_u64() as u32 % target.vocab as u32
            };
            if tree.push(token, parent).is_err() {
                break;
            }
        }
        tree
    }

    /// The edge's bet on `tree`: its first-child chain, cut at random, then
    /// the target's token there or (sometimes) a wrong guess.
    fn bet(target: &GreedyTarget, ctx: &[u32], tree: &DraftTree, rng: &mut SamplerRng) -> Vec<u32> {
        let mut assumed = Vec::new();
        let mut at = None;
        while let Some(c) = tree.children(at).next() {
            if rng.next_f64() < 0.25 {
                break;
            }
            assumed.push(tree.token(c));
            at = Some(c);
        }
        let mut path = ctx.to_vec();
        path.extend_from_slice(&assumed);
        let right = argmax(&target.logits(&path));
        assumed.push(if rng.next_f64() < 0.8 { right } else { (right + 1) % target.vocab as u32 });
        assumed
    }

    proptest! {
        /// Merged and split, verdicts are what verifying the rounds one at a
        /// time gives, with a round whose bet lost answered stale.
        #[test]
        fn a_stack_verifies_as_its_rounds_would_in_turn(salt in any::<u64>(), seed in any::<u64>(), depth in 1usize..5) {
            let target = GreedyTarget { vocab: 5, salt };
            let limits = TreeLimits { max_nodes: 24, max_depth: 12 };
            let mut rng = SamplerRng::new(seed);
            let ctx = vec![1];
            // Rounds as an edge sends them: each drafted on the text its bet
            // assumes.
            let mut rounds = vec![(Vec::new(), draft(&target, &ctx, &mut rng, &limits))];
            let mut text = ctx.clone();
            for _ in 1..depth {
                let assumed = bet(&target, &text, &rounds.last().unwrap().1, &mut rng);
                text.extend_from_slice(&assumed);
                rounds.push((assumed, draft(&target, &text, &mut rng, &limits)));
            }
            let mut stack = StackedRounds::new(rounds[0].1.clone());
            let mut stacked = 1;
            while stacked < rounds.len() && stack.push(&rounds[stacked].0, &rounds[stacked].1) {
                stacked += 1;
            }
            prop_assert_eq!(stack.rounds(), stacked);
            let split = stack.split(&verify(&target, &ctx, stack.tree()));
            prop_assert_eq!(split.len(), stacked);
            // One at a time, as the verifier would without stacking.
            let mut text = ctx.clone();
            let mut live = true;
            for (i, got) in split.iter().enumerate() {
                let (assumed, tree) = &rounds[i];
                if i > 0 {
                    live = live && text.ends_with(assumed);
                }
                if !live {
                    prop_assert!(got.is_none(), "round {} should be stale", i);
                    continue;
                }
                let want = verify(&target, &text, tree);
                prop_assert_eq!(got.as_ref(), Some(&want), "round {}", i);
                let before = text.len();
                text.extend(want.emitted_tokens(tree));
                if let Some((next, _)) = rounds.get(i + 1) {
                    live = text[before..] == next[..];
                }
            }
        }
    }

    #[test]
    fn a_bet_the_tree_cannot_win_is_not_stacked() {
        let limits = TreeLimits { max_nodes: 8, max_depth: 4 };
        // Root children 3 and 4; 3 <- 5.
        let first = DraftTree::new(vec![3, 4, 5], vec![-1, -1, 0], &limits, 8).unwrap();
        let next = DraftTree::chain(&[6]);
        let mut stack = StackedRounds::new(first.clone());
        // Not a path of the round.
        assert!(!stack.push(&[7, 1], &next));
        // The round already holds the guessed token after its path.
        assert!(!stack.push(&[3, 5], &next));
        assert!(!stack.push(&[], &next));
        assert_eq!((stack.rounds(), stack.tree().len()), (1, 3));
        // Past the limits.
        assert!(!stack.push(&[3, 5, 1], &DraftTree::chain(&[1, 2, 3, 4, 5])));
        assert_eq!(stack.tree().len(), 3);
        // A bet that can win hangs below its guessed token.
        assert!(stack.push(&[3, 5, 1], &next));
        assert_eq!(stack.tree().tokens(), &[3, 4, 5, 1, 6]);
        assert_eq!(stack.tree().parents(), &[-1, -1, 0, 2, 3]);
    }
}
