//! The verifier's cost curve c(k): milliseconds to verify k draft nodes.

use serde::{Deserialize, Serialize};

/// Most distinct node counts a curve keeps; measurements at new node counts
/// beyond this refine the nearest kept point instead.
const MAX_POINTS: usize = 256;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostCurveError {
    #[error("a cost curve needs at least one point")]
    Empty,
    #[error("cost at k = {k} is {ms} ms; costs must be finite and non-negative")]
    BadCost { k: usize, ms: f64 },
}

/// What a round costs as the policy currently sees it, for drafts sized
/// outside its plan (copies of the text, `draft::lookup`): the verify pass by
/// draft nodes, and what a round pays whatever its size (the round trip,
/// under the latency objective).
#[derive(Debug, Clone, PartialEq)]
pub struct RoundCosts {
    pub verify: CostCurve,
    pub fixed_ms: f64,
}

/// Piecewise-linear, non-decreasing c(k) through measured points.
///
/// Verifying more nodes never takes less work, so a dip between points is
/// measurement noise; points are kept non-decreasing (see
/// [`from_points`](Self::from_points) and [`record`](Self::record)) because a
/// dip would tell the controller that bigger drafts are cheaper.
///
/// Between points it interpolates; outside them it continues the nearest
/// segment's slope (down to 0 ms below the first point). Extrapolating the
/// slope rather than holding the end value flat matters for a curve learnt
/// from the controller's own rounds: a flat end would hide what smaller (or
/// larger) drafts save (or cost), so the controller would never go and
/// measure them. With a slope the error in either direction makes the plan
/// move there, and the next measurement corrects the curve.
///
/// A single point says nothing about slope: below it the curve is flat, above
/// it cost grows in proportion to k (as if there were no fixed cost), both
/// erring towards "more nodes cost more".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostCurve {
    /// Sorted by k, distinct k.
    points: Vec<(usize, f64)>,
}

impl Default for CostCurve {
    /// A guess for when nothing was measured or supplied: 25 ms per pass plus
    /// 1 ms per node, roughly a small model on a CPU or a big one on a busy
    /// GPU. Replaced by measurements after the first round.
    fn default() -> Self {
        Self::linear(25.0, 1.0)
    }
}

impl CostCurve {
    /// From measured `(k, ms)` points in any order; repeated k are averaged,
    /// then each point is raised to the largest cost at a smaller k.
    pub fn from_points(points: impl IntoIterator<Item = (usize, f64)>) -> Result<Self, CostCurveError> {
        let mut raw: Vec<(usize, f64)> = Vec::new();
        for (k, ms) in points {
            if !ms.is_finite() || ms < 0.0 {
                return Err(CostCurveError::BadCost { k, ms });
            }
            raw.push((k, ms));
        }
        if raw.is_empty() {
            return Err(CostCurveError::Empty);
        }
        raw.sort_by_key(|&(k, _)| k);
        let mut merged: Vec<(usize, f64, usize)> = Vec::new();
        for (k, ms) in raw {
            match merged.last_mut() {
                Some((last_k, sum, n)) if *last_k == k => {
                    *sum += ms;
                    *n += 1;
                }
                _ => merged.push((k, ms, 1)),
            }
        }
        let mut points: Vec<(usize, f64)> = merged.into_iter().map(|(k, sum, n)| (k, sum / n as f64)).collect();
        let mut floor = 0.0f64;
        for point in &mut points {
            floor = floor.max(point.1);
            point.1 = floor;
        }
        if points.len() > MAX_POINTS {
            // Keep an even spread including both ends.
            let n = points.len();
            points = (0..MAX_POINTS).map(|i| points[i * (n - 1) / (MAX_POINTS - 1)]).collect();
        }
        Ok(Self { points })
    }

    /// `c(k) = base_ms + per_node_ms * k`; negative or non-finite inputs are
    /// treated as 0.
    pub fn linear(base_ms: f64, per_node_ms: f64) -> Self {
        let clean = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
        let (base, slope) = (clean(base_ms), clean(per_node_ms));
        Self { points: vec![(0, base), (64, base + 64.0 * slope)] }
    }

    pub fn points(&self) -> &[(usize, f64)] {
        &self.points
    }

    /// Estimated milliseconds to verify `k` nodes.
    pub fn cost(&self, k: usize) -> f64 {
        let pts = &self.points;
        let Some(&(first_k, first_ms)) = pts.first() else {
            return 0.0;
        };
        if pts.len() == 1 {
            return if k <= first_k || first_k == 0 { first_ms } else { first_ms * k as f64 / first_k as f64 };
        }
        if k < first_k {
            let (k1, c1) = pts[1];
            let slope = ((c1 - first_ms) / (k1 - first_k) as f64).max(0.0);
            return (first_ms - slope * (first_k - k) as f64).max(0.0);
        }
        let i = pts.partition_point(|&(pk, _)| pk < k);
        let (k0, c0, k1, c1) = if i < pts.len() {
            let (k1, c1) = pts[i];
            if k1 == k {
                return c1;
            }
            let (k0, c0) = pts[i - 1];
            (k0, c0, k1, c1)
        } else {
            let (k0, c0) = pts[pts.len() - 2];
            let (k1, c1) = pts[pts.len() - 1];
            let slope = ((c1 - c0) / (k1 - k0) as f64).max(0.0);
            return c1 + slope * (k - k1) as f64;
        };
        c0 + (c1 - c0) * (k - k0) as f64 / (k1 - k0) as f64
    }

    /// Multiplies every cost by `factor` (ignored unless finite and
    /// positive): keeps a guessed shape but matches a measured level.
    pub fn scale(&mut self, factor: f64) {
        if factor.is_finite() && factor > 0.0 {
            for point in &mut self.points {
                point.1 *= factor;
            }
        }
    }

    /// Moves the curve at `k` towards a measurement: an EMA with weight
    /// `alpha` at a known k, a new point otherwise. The updated point then
    /// wins over its neighbours where they would make the curve decrease, the
    /// newest measurement being the best information. Bad measurements are
    /// ignored.
    pub fn record(&mut self, k: usize, ms: f64, alpha: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        let alpha = if alpha.is_finite() { alpha.clamp(0.0, 1.0) } else { 0.0 };
        let i = match self.points.binary_search_by_key(&k, |&(pk, _)| pk) {
            Ok(i) => {
                self.points[i].1 += alpha * (ms - self.points[i].1);
                i
            }
            Err(i) if self.points.len() < MAX_POINTS => {
                self.points.insert(i, (k, ms));
                i
            }
            Err(i) => {
                let nearest = if i == 0 {
                    0
                } else if i == self.points.len() || k - self.points[i - 1].0 <= self.points[i].0 - k {
                    i - 1
                } else {
                    i
                };
                self.points[nearest].1 += alpha * (ms - self.points[nearest].1);
                nearest
            }
        };
        let level = self.points[i].1;
        for point in &mut self.points[..i] {
            point.1 = point.1.min(level);
        }
        for point in &mut self.points[i + 1..] {
            point.1 = point.1.max(level);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_and_extrapolates() {
        let c = CostCurve::from_points([(8, 30.0), (1, 20.0), (4, 20.0)]).unwrap();
        assert_eq!(c.points(), &[(1, 20.0), (4, 20.0), (8, 30.0)]);
        assert_eq!(c.cost(0), 20.0);
        let steep = CostCurve::from_points([(3, 22.0), (4, 26.0)]).unwrap();
        assert_eq!(steep.cost(1), 14.0);
        assert_eq!(steep.cost(0), 10.0);
        assert_eq!(CostCurve::from_points([(10, 5.0), (11, 10.0)]).unwrap().cost(0), 0.0);
        assert_eq!(c.cost(1), 20.0);
        assert_eq!(c.cost(3), 20.0);
        assert_eq!(c.cost(6), 25.0);
        assert_eq!(c.cost(8), 30.0);
        assert_eq!(c.cost(12), 40.0);

        // A dip is noise: the later point is raised.
        let falling = CostCurve::from_points([(1, 30.0), (2, 20.0), (3, 40.0)]).unwrap();
        assert_eq!(falling.points(), &[(1, 30.0), (2, 30.0), (3, 40.0)]);
        assert_eq!(falling.cost(4), 50.0);

        let single = CostCurve::from_points([(4, 40.0)]).unwrap();
        assert_eq!(single.cost(2), 40.0);
        assert_eq!(single.cost(8), 80.0);
        assert_eq!(CostCurve::from_points([(0, 5.0)]).unwrap().cost(9), 5.0);

        let linear = CostCurve::linear(10.0, 2.0);
        assert_eq!(linear.cost(0), 10.0);
        assert_eq!(linear.cost(5), 20.0);
        assert_eq!(linear.cost(100), 210.0);
    }

    #[test]
    fn duplicates_are_averaged_and_bad_points_rejected() {
        let c = CostCurve::from_points([(2, 10.0), (2, 20.0)]).unwrap();
        assert_eq!(c.points(), &[(2, 15.0)]);
        assert_eq!(CostCurve::from_points([]), Err(CostCurveError::Empty));
        assert!(matches!(CostCurve::from_points([(1, f64::NAN)]), Err(CostCurveError::BadCost { k: 1, .. })));
        assert!(CostCurve::from_points([(1, -1.0)]).is_err());
        let many = CostCurve::from_points((0..1000).map(|k| (k, k as f64))).unwrap();
        assert_eq!(many.points().len(), MAX_POINTS);
        assert_eq!(many.cost(999), 999.0);
        assert_eq!(many.cost(500), 500.0);
    }

    #[test]
    fn record_refines_and_stays_bounded() {
        let mut c = CostCurve::linear(10.0, 1.0);
        c.record(8, 30.0, 0.5);
        assert_eq!(c.cost(8), 30.0);
        c.record(8, 40.0, 0.5);
        assert_eq!(c.cost(8), 35.0);
        c.record(8, f64::NAN, 0.5);
        c.record(8, -3.0, 0.5);
        assert_eq!(c.cost(8), 35.0);
        // A measurement above a larger k's cost lifts it; below a smaller
        // k's cost lowers it.
        c.record(20, 100.0, 0.5);
        assert_eq!(c.cost(64), 100.0);
        c.record(2, 5.0, 0.5);
        assert_eq!(c.cost(0), 5.0);
        assert!(c.points().windows(2).all(|w| w[0].1 <= w[1].1));
        c.scale(2.0);
        assert_eq!(c.cost(2), 10.0);
        c.scale(f64::NAN);
        c.scale(-1.0);
        assert_eq!(c.cost(2), 10.0);
        for k in 0..10_000 {
            c.record(k, 1.0, 0.5);
        }
        assert_eq!(c.points().len(), MAX_POINTS);
    }
}
