//! Truncated draft distributions described exactly by their support.

use super::{SamplerRng, SamplingError};

/// A distribution over a few token ids: `(id, prob)` pairs sorted by id, with
/// positive probabilities summing to 1.
///
/// The drafter draws a node from one of these and the verifier reads back the
/// very same numbers, so acceptance ratios use the distribution that was
/// actually sampled, not a dense approximation of it.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseDist {
    pairs: Vec<(u32, f32)>,
}

impl SparseDist {
    /// All mass on one token: a deterministic draft (pool phrase, greedy trunk).
    pub fn point(id: u32) -> Self {
        Self { pairs: vec![(id, 1.0)] }
    }

    /// The `k` most likely tokens of `dense`, renormalised. Ties go to the
    /// lower id; zero-probability tokens are never kept, so fewer than `k`
    /// pairs may remain.
    pub fn from_probs_top_k(dense: &[f32], k: usize) -> Result<Self, SamplingError> {
        if k == 0 {
            return Err(SamplingError::ZeroK);
        }
        let mut ids: Vec<u32> = (0..dense.len() as u32)
            .filter(|&i| {
                let p = dense[i as usize];
                p.is_finite() && p > 0.0
            })
            .collect();
        if ids.is_empty() {
            return Err(SamplingError::EmptyDistribution);
        }
        if k < ids.len() {
            let rank = |a: &u32, b: &u32| dense[*b as usize].total_cmp(&dense[*a as usize]).then(a.cmp(b));
            ids.select_nth_unstable_by(k - 1, rank);
            ids.truncate(k);
        }
        ids.sort_unstable();
        Self::normalised(ids.into_iter().map(|i| (i, dense[i as usize] as f64)).collect())
    }

    /// Explicit pairs in any order; they are checked, sorted and renormalised.
    /// Zero-probability pairs are dropped.
    pub fn from_pairs(pairs: &[(u32, f32)]) -> Result<Self, SamplingError> {
        let mut v: Vec<(u32, f64)> = Vec::with_capacity(pairs.len());
        for &(id, prob) in pairs {
            if !(prob.is_finite() && prob >= 0.0) {
                return Err(SamplingError::InvalidProbability { id, prob });
            }
            if prob > 0.0 {
                v.push((id, prob as f64));
            }
        }
        v.sort_unstable_by_key(|&(id, _)| id);
        if let Some(w) = v.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(SamplingError::DuplicateId(w[0].0));
        }
        if v.is_empty() {
            return Err(SamplingError::EmptyDistribution);
        }
        Self::normalised(v)
    }

    /// The same probabilities under other ids: `ids[i]` for `i`. A
    /// distribution over the columns of a restricted vocabulary becomes one
    /// over token ids this way, its stored values untouched (verification
    /// reads exactly what was sampled).
    pub fn map_ids(&self, ids: &[u32]) -> Result<Self, SamplingError> {
        let mut pairs = Vec::with_capacity(self.pairs.len());
        for &(i, p) in &self.pairs {
            let id = *ids.get(i as usize).ok_or(SamplingError::IdOutOfRange { id: i, len: ids.len() })?;
            pairs.push((id, p));
        }
        pairs.sort_unstable_by_key(|&(id, _)| id);
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(SamplingError::DuplicateId(w[0].0));
        }
        Ok(Self { pairs })
    }

    fn normalised(v: Vec<(u32, f64)>) -> Result<Self, SamplingError> {
        let total: f64 = v.iter().map(|&(_, p)| p).sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err(SamplingError::EmptyDistribution);
        }
        let pairs: Vec<(u32, f32)> =
            v.into_iter().map(|(i, p)| (i, (p / total) as f32)).filter(|&(_, p)| p > 0.0).collect();
        if pairs.is_empty() {
            return Err(SamplingError::EmptyDistribution);
        }
        Ok(Self { pairs })
    }

    /// Probability of `id`; 0 outside the support.
    pub fn prob(&self, id: u32) -> f32 {
        self.pairs.binary_search_by_key(&id, |&(i, _)| i).map_or(0.0, |k| self.pairs[k].1)
    }

    /// The probability with which [`SparseDist::sample`] draws `id`: the stored
    /// value over the f64 sum of all stored values. Verification uses this so
    /// its acceptance ratios refer to exactly the distribution that was drawn.
    pub fn prob_f64(&self, id: u32) -> f64 {
        self.prob(id) as f64 / self.total()
    }

    fn total(&self) -> f64 {
        self.pairs.iter().map(|&(_, p)| p as f64).sum()
    }

    /// The `(id, prob)` pairs, sorted by id.
    pub fn pairs(&self) -> &[(u32, f32)] {
        &self.pairs
    }

    /// Number of tokens in the support (never 0).
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Always false: every constructor guarantees a non-empty support.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Draws one id. The draw is scaled by the f32 total, so the sampled
    /// distribution is exactly the stored pairs even where they sum to
    /// `1 ± ulp`.
    pub fn sample(&self, rng: &mut SamplerRng) -> u32 {
        let threshold = rng.next_f64() * self.total();
        let mut cum = 0.0;
        for &(id, p) in &self.pairs {
            cum += p as f64;
            if threshold < cum {
                return id;
            }
        }
        // Only reachable through rounding: the last interval absorbs it.
        self.pairs.last().map_or(0, |&(id, _)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_mass() {
        let d = SparseDist::point(7);
        assert_eq!(d.prob(7), 1.0);
        assert_eq!(d.prob(6), 0.0);
        let mut r = SamplerRng::new(0);
        assert!((0..100).all(|_| d.sample(&mut r) == 7));
    }

    #[test]
    fn top_k_truncates_and_renormalises() {
        let d = SparseDist::from_probs_top_k(&[0.1, 0.4, 0.2, 0.3], 2).unwrap();
        assert_eq!(d.pairs().iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!((d.prob(1) - 4.0 / 7.0).abs() < 1e-6);
        assert!((d.prob(3) - 3.0 / 7.0).abs() < 1e-6);
        assert!((d.prob_f64(1) + d.prob_f64(3) - 1.0).abs() < 1e-15);
        assert_eq!(d.prob(0), 0.0);
    }

    #[test]
    fn top_k_ties_go_to_lower_id_and_zeros_are_dropped() {
        let d = SparseDist::from_probs_top_k(&[0.25, 0.25, 0.25, 0.25], 2).unwrap();
        assert_eq!(d.pairs(), &[(0, 0.5), (1, 0.5)]);
        let d = SparseDist::from_probs_top_k(&[0.0, 1.0, 0.0], 3).unwrap();
        assert_eq!(d.pairs(), &[(1, 1.0)]);
    }

    #[test]
    fn top_k_rejects_nothing_to_keep() {
        assert_eq!(SparseDist::from_probs_top_k(&[0.5, 0.5], 0), Err(SamplingError::ZeroK));
        assert_eq!(SparseDist::from_probs_top_k(&[0.0, f32::NAN], 1), Err(SamplingError::EmptyDistribution));
    }

    #[test]
    fn pairs_are_checked() {
        let d = SparseDist::from_pairs(&[(5, 2.0), (1, 2.0), (9, 0.0)]).unwrap();
        assert_eq!(d.pairs(), &[(1, 0.5), (5, 0.5)]);
        assert_eq!(SparseDist::from_pairs(&[(1, 0.5), (1, 0.5)]), Err(SamplingError::DuplicateId(1)));
        assert!(matches!(SparseDist::from_pairs(&[(3, -0.1)]), Err(SamplingError::InvalidProbability { id: 3, .. })));
        assert_eq!(SparseDist::from_pairs(&[]), Err(SamplingError::EmptyDistribution));
    }

    #[test]
    fn ids_are_mapped_with_the_same_values() {
        let d = SparseDist::from_probs_top_k(&[0.1, 0.6, 0.3], 2).unwrap();
        let m = d.map_ids(&[40, 7, 90]).unwrap();
        assert_eq!(m.pairs(), &[(7, d.prob(1)), (90, d.prob(2))]);
        // The same draws, under the new names.
        let (mut a, mut b) = (SamplerRng::new(3), SamplerRng::new(3));
        let ids = [40, 7, 90];
        assert!((0..1000).all(|_| ids[d.sample(&mut a) as usize] == m.sample(&mut b)));
        assert_eq!(d.map_ids(&[1, 2]), Err(SamplingError::IdOutOfRange { id: 2, len: 2 }));
        assert_eq!(d.map_ids(&[1, 5, 5]), Err(SamplingError::DuplicateId(5)));
    }

    #[test]
    fn sample_matches_pairs() {
        let d = SparseDist::from_pairs(&[(2, 0.2), (4, 0.8)]).unwrap();
        let mut r = SamplerRng::new(11);
        let n = 50_000;
        let fours = (0..n).filter(|_| d.sample(&mut r) == 4).count();
        assert!((fours as f64 / n as f64 - 0.8).abs() < 0.01);
    }
}
