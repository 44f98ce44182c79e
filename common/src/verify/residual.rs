//! The target distribution at one row as siblings get rejected.

use crate::sampling::{sample_dense_f64, SamplerRng, SparseDist};

/// Below this total the residual is rounding noise, not a distribution.
const RESIDUAL_FLOOR: f64 = 1e-12;

/// `p` at one row, normalised, shrinking by `max(0, p - q)` per rejection.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Residual {
    p: Vec<f64>,
}

impl Residual {
    pub fn new(p: Vec<f64>) -> Self {
        Self { p }
    }

    /// 0 for tokens outside the row (a padded or mismatched vocabulary).
    pub fn prob(&self, token: u32) -> f64 {
        self.p.get(token as usize).copied().unwrap_or(0.0)
    }

    /// `p ← norm(max(0, p − q))` after a child drawn from `q` was rejected.
    ///
    /// Mathematically the residual is empty only when `p == q`, and then no
    /// child drawn from `q` can be rejected; so an empty residual means the
    /// rejection came from rounding (f32 `q` against f64 `p`). Then `p` is
    /// kept as it was, which is the best estimate of the target available,
    /// and `false` is returned.
    pub fn subtract(&mut self, q: &SparseDist) -> bool {
        let saved = self.subtract_raw(q);
        let total: f64 = self.p.iter().sum();
        if total.is_nan() || total <= RESIDUAL_FLOOR {
            for (i, old) in saved {
                self.p[i] = old;
            }
            return false;
        }
        for x in &mut self.p {
            *x /= total;
        }
        true
    }

    /// Subtracts `q` without renormalising; returns the overwritten entries.
    fn subtract_raw(&mut self, q: &SparseDist) -> Vec<(usize, f64)> {
        let mut saved = Vec::with_capacity(q.len());
        for &(id, _) in q.pairs() {
            if let Some(x) = self.p.get_mut(id as usize) {
                saved.push((id as usize, *x));
                *x = (*x - q.prob_f64(id)).max(0.0);
            }
        }
        saved
    }

    /// A deliberately wrong update for the statistical tests: the residual is
    /// not renormalised, so later acceptance ratios come out too small.
    #[cfg(test)]
    pub fn subtract_unnormalised(&mut self, q: &SparseDist) {
        self.subtract_raw(q);
    }

    /// Draws the correction (or bonus) token from what is left.
    pub fn sample(&self, rng: &mut SamplerRng) -> u32 {
        sample_dense_f64(&self.p, rng)
    }

    #[cfg(test)]
    pub fn as_slice(&self) -> &[f64] {
        &self.p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-7)
    }

    #[test]
    fn subtract_removes_q_and_renormalises() {
        let mut r = Residual::new(vec![0.5, 0.3, 0.2]);
        assert!(r.subtract(&SparseDist::point(0)));
        assert!(close(r.as_slice(), &[0.0, 0.6, 0.4]), "{:?}", r.as_slice());
        let mut r = Residual::new(vec![0.5, 0.3, 0.2]);
        assert!(r.subtract(&SparseDist::from_pairs(&[(0, 0.25), (1, 0.75)]).unwrap()));
        // max(0, .) leaves 0.25, 0, 0.2, then renormalised by 0.45.
        assert!(close(r.as_slice(), &[0.25 / 0.45, 0.0, 0.2 / 0.45]), "{:?}", r.as_slice());
    }

    #[test]
    fn empty_residual_keeps_p() {
        let p = vec![0.25, 0.75];
        let mut r = Residual::new(p.clone());
        let q = SparseDist::from_pairs(&[(0, 0.25), (1, 0.75)]).unwrap();
        assert!(!r.subtract(&q));
        assert_eq!(r.as_slice(), &p[..]);
    }

    #[test]
    fn ids_outside_the_row_are_ignored() {
        let mut r = Residual::new(vec![0.5, 0.5]);
        assert!(r.subtract(&SparseDist::from_pairs(&[(1, 0.25), (9, 0.75)]).unwrap()));
        assert!(close(r.as_slice(), &[2.0 / 3.0, 1.0 / 3.0]));
        assert_eq!(r.prob(9), 0.0);
    }

    #[test]
    fn unnormalised_variant_leaves_mass_missing() {
        let mut r = Residual::new(vec![0.5, 0.5]);
        r.subtract_unnormalised(&SparseDist::point(0));
        assert_eq!(r.as_slice(), &[0.0, 0.5]);
    }
}
