//! Exponential moving average that starts out as a running mean.

/// An EMA whose first samples are averaged with a prior instead of being
/// swamped by it.
///
/// Sample n gets weight `max(alpha, 1 / (n + prior_weight))`: while few
/// samples exist this is the mean of the prior (counted as `prior_weight`
/// samples) and the data, so the estimate neither sits on the prior for
/// 1/alpha rounds nor jumps to 0 or 1 on one acceptance. Later it is a plain
/// EMA with weight `alpha` and tracks drift (a topic change, a busier cloud).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ema {
    value: f64,
    samples: u64,
    alpha: f64,
    prior_weight: f64,
}

impl Ema {
    /// `alpha` is clamped to (0, 1] and `prior_weight` to >= 0; non-finite
    /// arguments fall back to safe values so construction never fails.
    pub fn new(prior: f64, alpha: f64, prior_weight: f64) -> Self {
        let alpha = if alpha.is_finite() { alpha.clamp(1e-6, 1.0) } else { 0.1 };
        let prior_weight = if prior_weight.is_finite() { prior_weight.max(0.0) } else { 0.0 };
        Self { value: if prior.is_finite() { prior } else { 0.0 }, samples: 0, alpha, prior_weight }
    }

    /// Adds one sample; non-finite samples are ignored.
    pub fn update(&mut self, sample: f64) {
        if !sample.is_finite() {
            return;
        }
        self.samples += 1;
        let weight = (1.0 / (self.samples as f64 + self.prior_weight)).max(self.alpha);
        self.value += weight.min(1.0) * (sample - self.value);
    }

    /// Moves the estimate a share `weight` of the way to `target` without
    /// counting a sample: what an estimate nobody measures lately drifts to.
    pub fn relax(&mut self, target: f64, weight: f64) {
        if target.is_finite() && weight.is_finite() {
            self.value += weight.clamp(0.0, 1.0) * (target - self.value);
        }
    }

    pub fn value(&self) -> f64 {
        self.value
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_samples_are_a_mean_with_the_prior() {
        let mut e = Ema::new(0.5, 0.1, 2.0);
        e.update(1.0);
        assert!((e.value() - (0.5 * 2.0 + 1.0) / 3.0).abs() < 1e-12);
        let mut cold = Ema::new(100.0, 0.1, 0.0);
        cold.update(7.0);
        assert_eq!(cold.value(), 7.0);
    }

    #[test]
    fn tracks_a_shift_and_ignores_nan() {
        let mut e = Ema::new(0.0, 0.2, 0.0);
        for _ in 0..100 {
            e.update(1.0);
        }
        e.update(f64::NAN);
        assert_eq!(e.samples(), 100);
        for _ in 0..60 {
            e.update(3.0);
        }
        assert!((e.value() - 3.0).abs() < 1e-3);
        let odd = Ema::new(f64::NAN, f64::INFINITY, -1.0);
        assert_eq!(odd.value(), 0.0);
    }
}
