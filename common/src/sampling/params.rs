//! Per-request sampling settings.

use super::{SamplerRng, SamplingError};

/// How the target distribution is shaped before sampling.
///
/// Filters apply in a fixed order: temperature, then top-k, then top-p.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose mass reaches `p`.
    pub top_p: Option<f32>,
    /// Seeds the request's [`SamplerRng`].
    pub seed: u64,
}

impl SamplingParams {
    /// Greedy decoding: no randomness at all.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: None, seed: 0 }
    }

    /// Plain sampling at `temperature` with no truncation.
    pub fn with_temperature(temperature: f32, seed: u64) -> Self {
        Self { temperature, top_k: None, top_p: None, seed }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Rejects settings that have no sensible meaning instead of silently
    /// clamping them, so a bad request fails at the door.
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !self.temperature.is_finite() {
            return Err(SamplingError::NonFiniteTemperature(self.temperature));
        }
        if self.temperature < 0.0 {
            return Err(SamplingError::NegativeTemperature(self.temperature));
        }
        if self.top_k == Some(0) {
            return Err(SamplingError::TopKZero);
        }
        if let Some(p) = self.top_p {
            // Written so that NaN fails too.
            if !(p > 0.0 && p <= 1.0) {
                return Err(SamplingError::TopPOutOfRange(p));
            }
        }
        Ok(())
    }

    /// A fresh generator for this request's seed.
    pub fn rng(&self) -> SamplerRng {
        SamplerRng::new(self.seed)
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_zero_temperature() {
        assert!(SamplingParams::greedy().is_greedy());
        assert!(!SamplingParams::with_temperature(0.7, 1).is_greedy());
        assert_eq!(SamplingParams::default(), SamplingParams::greedy());
    }

    #[test]
    fn validation_accepts_sane_settings() {
        let p = SamplingParams { temperature: 0.8, top_k: Some(40), top_p: Some(1.0), seed: 3 };
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(SamplingParams::greedy().validate(), Ok(()));
    }

    #[test]
    fn validation_rejects_each_bad_field() {
        let base = SamplingParams::with_temperature(1.0, 0);
        let bad_t = SamplingParams { temperature: -0.1, ..base };
        assert_eq!(bad_t.validate(), Err(SamplingError::NegativeTemperature(-0.1)));
        let nan_t = SamplingParams { temperature: f32::NAN, ..base };
        assert!(matches!(nan_t.validate(), Err(SamplingError::NonFiniteTemperature(_))));
        let inf_t = SamplingParams { temperature: f32::INFINITY, ..base };
        assert!(matches!(inf_t.validate(), Err(SamplingError::NonFiniteTemperature(_))));
        let k0 = SamplingParams { top_k: Some(0), ..base };
        assert_eq!(k0.validate(), Err(SamplingError::TopKZero));
        for p in [0.0, -0.5, 1.01, f32::NAN] {
            let bad_p = SamplingParams { top_p: Some(p), ..base };
            assert!(matches!(bad_p.validate(), Err(SamplingError::TopPOutOfRange(_))), "{p}");
        }
    }

    #[test]
    fn error_messages_name_the_value() {
        let e = SamplingParams { top_p: Some(1.5), ..SamplingParams::greedy() }.validate();
        assert!(e.unwrap_err().to_string().contains("1.5"));
    }
}
