//! Wire messages ⇄ core types. Everything that arrives from the network is
//! validated here before the core sees it.

use ouro_common::sampling::{SamplingError, SamplingParams, SparseDist};
use ouro_common::tree::{DraftTree, TreeError, TreeLimits};
use ouro_common::verify::Verdict;

use crate::v1;

/// A wire message that does not describe a valid core value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("invalid draft tree: {0}")]
    Tree(#[from] TreeError),
    #[error("invalid sampling: {0}")]
    Sampling(#[from] SamplingError),
    #[error("{dists} draft distributions for {nodes} nodes")]
    DistCount { nodes: usize, dists: usize },
    #[error("node {node}: {ids} ids but {probs} probabilities")]
    DistShape { node: usize, ids: usize, probs: usize },
    #[error("node {node}: {pairs} draft pairs exceed the limit of {max}")]
    DistTooLarge { node: usize, pairs: usize, max: usize },
    #[error("node {node}: draft token {token} is outside a vocabulary of {vocab}")]
    DistToken { node: usize, token: u32, vocab: usize },
    #[error("verdict: {0}")]
    Verdict(String),
}

impl From<&SamplingParams> for v1::Sampling {
    fn from(p: &SamplingParams) -> Self {
        Self {
            temperature: p.temperature,
            top_k: p.top_k.unwrap_or(0) as u32,
            top_p: p.top_p.unwrap_or(0.0),
            seed: p.seed,
        }
    }
}

impl v1::Sampling {
    /// The core's parameters; `top_k = 0` and `top_p` of 0 or 1 mean "off".
    pub fn to_params(&self) -> Result<SamplingParams, WireError> {
        let p = SamplingParams {
            temperature: self.temperature,
            top_k: (self.top_k > 0).then_some(self.top_k as usize),
            top_p: (self.top_p != 0.0 && self.top_p != 1.0).then_some(self.top_p),
            seed: self.seed,
        };
        p.validate()?;
        Ok(p)
    }
}

impl v1::DraftRound {
    /// Puts a draft on the wire. `dists` are sent only for sampled drafts:
    /// greedy verification never reads them.
    pub fn from_draft(round: u64, committed_len: usize, tree: &DraftTree, dists: Option<&[SparseDist]>) -> Self {
        let q = dists
            .map(|ds| {
                ds.iter()
                    .map(|d| v1::NodeDist {
                        ids: d.pairs().iter().map(|&(i, _)| i).collect(),
                        probs: d.pairs().iter().map(|&(_, p)| p).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            round,
            committed_len: committed_len as u32,
            tokens: tree.tokens().to_vec(),
            parents: tree.parents().to_vec(),
            q,
            assumed: Vec::new(),
            run_on: 0,
        }
    }

    /// The tree and its draft distributions, checked against the server's
    /// limits and vocabulary.
    pub fn to_draft(
        &self,
        limits: &TreeLimits,
        vocab: usize,
        max_top_k: usize,
    ) -> Result<(DraftTree, Vec<SparseDist>), WireError> {
        let tree = DraftTree::new(self.tokens.clone(), self.parents.clone(), limits, vocab)?;
        if !self.q.is_empty() && self.q.len() != tree.len() {
            return Err(WireError::DistCount { nodes: tree.len(), dists: self.q.len() });
        }
        let mut dists = Vec::with_capacity(self.q.len());
        for (node, d) in self.q.iter().enumerate() {
            if d.ids.len() != d.probs.len() {
                return Err(WireError::DistShape { node, ids: d.ids.len(), probs: d.probs.len() });
            }
            if d.ids.len() > max_top_k {
                return Err(WireError::DistTooLarge { node, pairs: d.ids.len(), max: max_top_k });
            }
            if let Some(&token) = d.ids.iter().find(|&&t| t as usize >= vocab) {
                return Err(WireError::DistToken { node, token, vocab });
            }
            let pairs: Vec<(u32, f32)> = d.ids.iter().copied().zip(d.probs.iter().copied()).collect();
            dists.push(SparseDist::from_pairs(&pairs)?);
        }
        Ok((tree, dists))
    }
}

impl v1::Verdict {
    /// Puts a verdict on the wire: only the argmax of rejected nodes travels,
    /// since the accepted ones are the accepted tokens themselves.
    pub fn from_verdict(round: u64, verdict: &Verdict, committed_len: usize, compute_us: u32, batch_size: u32) -> Self {
        let rejected_argmax = (0..verdict.target_argmax.len().saturating_sub(1))
            .filter(|n| !verdict.accepted.contains(n))
            .map(|n| verdict.target_argmax[n + 1])
            .collect();
        Self {
            round,
            accepted: verdict.accepted.iter().map(|&n| n as u32).collect(),
            next_token: verdict.next_token,
            committed_len: committed_len as u32,
            rejected_argmax,
            compute_us,
            batch_size,
            stale: false,
            pass_rounds: 1,
            ran_on: Vec::new(),
            walked: 0,
            server_us: 0,
        }
    }

    /// The answer to a round sent ahead whose bet lost.
    pub fn stale(round: u64, committed_len: usize) -> Self {
        Self { round, committed_len: committed_len as u32, stale: true, ..Default::default() }
    }

    /// The core verdict for `tree`. The argmax of accepted nodes is filled in
    /// with the token that followed each (what greedy verification saw); the
    /// drafter only reads rejected nodes' argmax.
    pub fn to_verdict(&self, tree: &DraftTree) -> Result<Verdict, WireError> {
        let accepted: Vec<usize> = self.accepted.iter().map(|&n| n as usize).collect();
        // The accepted nodes must form a path from the root.
        let mut parent = None;
        for &n in &accepted {
            if n >= tree.len() || tree.parent(n) != parent {
                return Err(WireError::Verdict(format!("accepted node {n} does not continue the path")));
            }
            parent = Some(n);
        }
        let rejected = tree.len() - accepted.len();
        if self.rejected_argmax.len() != rejected {
            return Err(WireError::Verdict(format!(
                "{} rejected-node argmax tokens for {rejected} rejected nodes",
                self.rejected_argmax.len()
            )));
        }
        let mut target_argmax = vec![0; tree.len() + 1];
        let mut rejected_iter = self.rejected_argmax.iter();
        for (n, slot) in target_argmax.iter_mut().skip(1).enumerate() {
            if let Some(i) = accepted.iter().position(|&a| a == n) {
                *slot = accepted.get(i + 1).map_or(self.next_token, |&next| tree.token(next));
            } else {
                *slot = *rejected_iter.next().expect("counted above");
            }
        }
        target_argmax[0] = accepted.first().map_or(self.next_token, |&n| tree.token(n));
        Ok(Verdict { accepted, next_token: self.next_token, target_argmax })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TreeLimits {
        TreeLimits { max_nodes: 16, max_depth: 8 }
    }

    #[test]
    fn draft_round_trips() {
        let tree = DraftTree::new(vec![5, 6, 7, 8], vec![-1, 0, -1, 2], &limits(), 100).unwrap();
        let dists = vec![SparseDist::point(5), SparseDist::from_pairs(&[(6, 0.75), (9, 0.25)]).unwrap()];
        let dists = [dists.clone(), dists].concat();
        let msg = v1::DraftRound::from_draft(3, 10, &tree, Some(&dists));
        let (back, back_dists) = msg.to_draft(&limits(), 100, 8).unwrap();
        assert_eq!(back, tree);
        assert_eq!(back_dists, dists);
        let greedy = v1::DraftRound::from_draft(3, 10, &tree, None);
        assert!(greedy.to_draft(&limits(), 100, 8).unwrap().1.is_empty());
    }

    #[test]
    fn bad_drafts_are_refused() {
        let mut msg = v1::DraftRound { tokens: vec![1, 2], parents: vec![-1, 0], ..Default::default() };
        msg.parents = vec![1, -1];
        assert!(matches!(msg.to_draft(&limits(), 100, 8), Err(WireError::Tree(_))));
        msg.parents = vec![-1, 0];
        msg.tokens = vec![1, 100];
        assert!(matches!(msg.to_draft(&limits(), 100, 8), Err(WireError::Tree(TreeError::TokenOutOfVocab { .. }))));
        msg.tokens = vec![1, 2];
        msg.q = vec![v1::NodeDist { ids: vec![1], probs: vec![1.0] }];
        assert!(matches!(msg.to_draft(&limits(), 100, 8), Err(WireError::DistCount { .. })));
        msg.q.push(v1::NodeDist { ids: vec![2, 3], probs: vec![1.0] });
        assert!(matches!(msg.to_draft(&limits(), 100, 8), Err(WireError::DistShape { node: 1, .. })));
        msg.q[1] = v1::NodeDist { ids: vec![2, 300], probs: vec![0.5, 0.5] };
        assert!(matches!(msg.to_draft(&limits(), 100, 8), Err(WireError::DistToken { node: 1, token: 300, .. })));
        msg.q[1] = v1::NodeDist { ids: vec![2, 3], probs: vec![f32::NAN, 0.5] };
        assert!(matches!(msg.to_draft(&limits(), 100, 8), Err(WireError::Sampling(_))));
        msg.q[1] = v1::NodeDist { ids: vec![2, 3, 4], probs: vec![0.2, 0.3, 0.5] };
        assert!(matches!(msg.to_draft(&limits(), 100, 2), Err(WireError::DistTooLarge { .. })));
    }

    #[test]
    fn verdict_round_trips_what_the_drafter_reads() {
        // Root → 0 → 1 is the trunk; 2 is a branch under 0.
        let tree = DraftTree::new(vec![5, 6, 7], vec![-1, 0, 0], &limits(), 100).unwrap();
        let v = Verdict { accepted: vec![0], next_token: 9, target_argmax: vec![5, 9, 11, 12] };
        let msg = v1::Verdict::from_verdict(4, &v, 20, 100, 2);
        assert_eq!(msg.rejected_argmax, vec![11, 12]);
        let back = msg.to_verdict(&tree).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn verdicts_that_do_not_fit_the_tree_are_refused() {
        let tree = DraftTree::chain(&[5, 6]);
        let msg = v1::Verdict { accepted: vec![1], rejected_argmax: vec![3], ..Default::default() };
        assert!(msg.to_verdict(&tree).is_err());
        let msg = v1::Verdict { accepted: vec![0], rejected_argmax: vec![], ..Default::default() };
        assert!(msg.to_verdict(&tree).is_err());
    }

    #[test]
    fn sampling_zero_means_off() {
        let p = v1::Sampling { temperature: 0.7, top_k: 0, top_p: 1.0, seed: 3 }.to_params().unwrap();
        assert_eq!((p.top_k, p.top_p), (None, None));
        assert!(v1::Sampling { temperature: -1.0, ..Default::default() }.to_params().is_err());
        let q = SamplingParams { temperature: 0.5, top_k: Some(4), top_p: Some(0.9), seed: 1 };
        assert_eq!(v1::Sampling::from(&q).to_params().unwrap(), q);
    }
}
