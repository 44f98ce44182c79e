//! Sampling verification by recursive rejection (SpecInfer, Sequoia).

use super::greedy::verify_greedy;
use super::residual::Residual;
use super::rows::{check_rows, row_argmaxes};
use super::{Verdict, VerifyError};
use crate::sampling::{probs_f64, SamplerRng, SamplingParams, SparseDist};
use crate::tree::DraftTree;

/// Which update follows a rejection. Only the lossless rule exists outside
/// tests; the broken ones let the statistical tests prove they can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    Lossless,
    /// Skips `p ← norm(max(0, p − q))`: rejected tokens keep their mass.
    #[cfg(test)]
    NoResidual,
    /// Subtracts but never renormalises.
    #[cfg(test)]
    Unnormalised,
}

/// Verifies `tree` so that the emitted tokens follow the target distribution
/// `probs(logits, params)` exactly, whatever the drafter proposed.
///
/// `draft_dists[i]` is the distribution node `i` was drawn from (a point mass
/// for deterministic drafts). At each row, children are tried in index order:
/// child `x` is accepted with probability `min(1, p(x) / q_x(x))`; on
/// rejection `p ← norm(max(0, p − q_x))` and the next sibling is tried. If all
/// are rejected the correction is drawn from what remains of `p`; after an
/// accepted leaf the bonus token is drawn from the leaf's `p`.
///
/// Siblings must have been drawn one after another, each from its own
/// `q_x` given the earlier ones: i.i.d. siblings all carry the same `q`,
/// without-replacement siblings the renormalised remainder.
///
/// A child whose own `q_x(x)` is 0 cannot have been drawn from `q_x`; it is
/// skipped without touching `p`, which keeps the remaining siblings lossless
/// instead of crashing on a malformed draft.
///
/// Greedy `params` (temperature 0) delegate to [`verify_greedy`], draw no
/// random numbers and ignore `draft_dists`. Every random number comes from
/// `rng`, so a seeded run is reproducible.
pub fn verify_sampling(
    tree: &DraftTree,
    logits: &[&[f32]],
    draft_dists: &[SparseDist],
    params: &SamplingParams,
    rng: &mut SamplerRng,
) -> Result<Verdict, VerifyError> {
    verify_with_rule(tree, logits, draft_dists, params, rng, Rule::Lossless)
}

pub(super) fn verify_with_rule(
    tree: &DraftTree,
    logits: &[&[f32]],
    draft_dists: &[SparseDist],
    params: &SamplingParams,
    rng: &mut SamplerRng,
    rule: Rule,
) -> Result<Verdict, VerifyError> {
    params.validate()?;
    if params.is_greedy() {
        return verify_greedy(tree, logits);
    }
    check_rows(tree, logits)?;
    if draft_dists.len() != tree.len() {
        return Err(VerifyError::DraftDistCount { expected: tree.len(), got: draft_dists.len() });
    }
    let target_argmax = row_argmaxes(logits);
    let mut accepted = Vec::new();
    let mut node = None;
    let next_token = loop {
        let row = node.map_or(0, |n| n + 1);
        let mut p = Residual::new(probs_f64(logits[row], params));
        let mut chosen = None;
        for child in tree.children(node) {
            let token = tree.token(child);
            let q = &draft_dists[child];
            let qx = q.prob_f64(token);
            if qx.is_nan() || qx <= 0.0 {
                continue;
            }
            // `u < p/q` without dividing; always true when p >= q.
            if rng.next_f64() * qx < p.prob(token) {
                chosen = Some(child);
                break;
            }
            match rule {
                Rule::Lossless => {
                    p.subtract(q);
                }
                #[cfg(test)]
                Rule::NoResidual => {}
                #[cfg(test)]
                Rule::Unnormalised => p.subtract_unnormalised(q),
            }
        }
        match chosen {
            Some(c) => {
                accepted.push(c);
                node = Some(c);
            }
            None => break p.sample(rng),
        }
    };
    Ok(Verdict { accepted, next_token, target_argmax })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::TreeLimits;

    fn rows(v: &[Vec<f32>]) -> Vec<&[f32]> {
        v.iter().map(|r| r.as_slice()).collect()
    }

    fn params() -> SamplingParams {
        SamplingParams::with_temperature(1.0, 0)
    }

    #[test]
    fn certain_target_accepts_its_token() {
        let ninf = f32::NEG_INFINITY;
        let tree = DraftTree::chain(&[2, 1]);
        let l = vec![vec![ninf, ninf, 0.0], vec![ninf, 0.0, ninf], vec![0.0, ninf, ninf]];
        let dists = vec![SparseDist::point(2), SparseDist::point(1)];
        let mut rng = SamplerRng::new(1);
        for _ in 0..20 {
            let v = verify_sampling(&tree, &rows(&l), &dists, &params(), &mut rng).unwrap();
            assert_eq!(v.accepted, vec![0, 1]);
            assert_eq!(v.next_token, 0);
        }
    }

    #[test]
    fn zero_target_probability_is_never_accepted() {
        let ninf = f32::NEG_INFINITY;
        let tree = DraftTree::chain(&[0]);
        let l = vec![vec![ninf, 0.0, 0.0], vec![0.0; 3]];
        let dists = vec![SparseDist::point(0)];
        let mut rng = SamplerRng::new(2);
        for _ in 0..50 {
            let v = verify_sampling(&tree, &rows(&l), &dists, &params(), &mut rng).unwrap();
            assert!(v.accepted.is_empty());
            assert_ne!(v.next_token, 0);
        }
    }

    #[test]
    fn malformed_q_is_skipped_not_fatal() {
        // Node 0 claims to come from a q that cannot produce it; node 1 is fine.
        let lim = TreeLimits::UNBOUNDED;
        let tree = DraftTree::new(vec![0, 1], vec![-1, -1], &lim, 2).unwrap();
        let ninf = f32::NEG_INFINITY;
        let l = vec![vec![0.0, ninf], vec![0.0, 0.0], vec![0.0, 0.0]];
        let l2 = vec![vec![ninf, 0.0], vec![0.0, 0.0], vec![0.0, 0.0]];
        let dists = vec![SparseDist::point(1), SparseDist::point(1)];
        let mut rng = SamplerRng::new(3);
        let v = verify_sampling(&tree, &rows(&l), &dists, &params(), &mut rng).unwrap();
        assert!(v.accepted.is_empty());
        assert_eq!(v.next_token, 0);
        let v = verify_sampling(&tree, &rows(&l2), &dists, &params(), &mut rng).unwrap();
        assert_eq!(v.accepted, vec![1]);
    }

    #[test]
    fn disjoint_support_always_corrects_from_p() {
        let ninf = f32::NEG_INFINITY;
        let lim = TreeLimits::UNBOUNDED;
        let tree = DraftTree::new(vec![2, 3], vec![-1, -1], &lim, 4).unwrap();
        let l = vec![vec![0.0, 0.0, ninf, ninf], vec![0.0; 4], vec![0.0; 4]];
        let q = SparseDist::from_pairs(&[(2, 0.5), (3, 0.5)]).unwrap();
        let dists = vec![q.clone(), q];
        let mut rng = SamplerRng::new(4);
        for _ in 0..50 {
            let v = verify_sampling(&tree, &rows(&l), &dists, &params(), &mut rng).unwrap();
            assert!(v.accepted.is_empty());
            assert!(v.next_token < 2);
        }
    }

    #[test]
    fn greedy_params_delegate_to_greedy() {
        let tree = DraftTree::chain(&[1]);
        let l = vec![vec![0.0, 2.0], vec![3.0, 0.0]];
        let mut rng = SamplerRng::new(5);
        let v = verify_sampling(&tree, &rows(&l), &[], &SamplingParams::greedy(), &mut rng).unwrap();
        assert_eq!(v, verify_greedy(&tree, &rows(&l)).unwrap());
        // No randomness was consumed.
        assert_eq!(rng.next_f64(), SamplerRng::new(5).next_f64());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let tree = DraftTree::chain(&[1]);
        let l = vec![vec![0.0, 0.0], vec![0.0, 0.0]];
        let mut rng = SamplerRng::new(6);
        assert_eq!(
            verify_sampling(&tree, &rows(&l), &[], &params(), &mut rng),
            Err(VerifyError::DraftDistCount { expected: 1, got: 0 })
        );
        let bad = SamplingParams { top_p: Some(2.0), ..params() };
        assert!(matches!(
            verify_sampling(&tree, &rows(&l), &[SparseDist::point(1)], &bad, &mut rng),
            Err(VerifyError::Params(_))
        ));
    }

    #[test]
    fn seeded_runs_are_reproducible() {
        let lim = TreeLimits::UNBOUNDED;
        let tree = DraftTree::new(vec![0, 1, 2, 3], vec![-1, -1, 0, 0], &lim, 4).unwrap();
        let l = vec![vec![0.1, 0.2, 0.3, 0.4]; 5];
        let q = SparseDist::from_pairs(&[(0, 0.5), (1, 0.5)]).unwrap();
        let q2 = SparseDist::from_pairs(&[(2, 0.5), (3, 0.5)]).unwrap();
        let dists = vec![q.clone(), q, q2.clone(), q2];
        let run = |seed| {
            let mut rng = SamplerRng::new(seed);
            (0..200)
                .map(|_| verify_sampling(&tree, &rows(&l), &dists, &params(), &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
