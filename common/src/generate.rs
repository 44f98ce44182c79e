//! Target-only autoregressive decoding: the baseline every speculative mode is
//! measured against, and the reference its output must equal.

use std::ops::ControlFlow;
use std::time::Instant;

use crate::model::{CausalLm, LogitsRows, ModelError};
use crate::sampling::{argmax, probs, sample_dense, SamplingError, SamplingParams};

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt ({prompt} tokens) leaves no room in a context of {max}")]
    PromptTooLong { prompt: usize, max: usize },
}

#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends after emitting any of these (the stop token is emitted).
    pub stop_ids: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was produced.
    Stop,
    /// `max_new_tokens` or the context length was reached.
    Length,
    /// The caller asked to stop.
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub generated: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Forward passes of the model, prefill included.
    pub forward_passes: usize,
    pub finish: FinishReason,
}

impl GenerateStats {
    /// Decode throughput, excluding prefill; the first token comes from the
    /// prefill pass, so it is not counted either.
    pub fn decode_tokens_per_sec(&self) -> f64 {
        if self.decode_secs > 0.0 {
            self.generated.saturating_sub(1) as f64 / self.decode_secs
        } else {
            0.0
        }
    }
}

/// Picks the next token from one row of logits.
pub fn pick(logits: &[f32], params: &SamplingParams, rng: &mut crate::sampling::SamplerRng) -> u32 {
    if params.is_greedy() {
        argmax(logits)
    } else {
        sample_dense(&probs(logits, params), rng)
    }
}

/// Generates up to `cfg.max_new_tokens` tokens after `prompt`, calling
/// `on_token` with each one as soon as it is chosen.
pub fn generate(
    model: &dyn CausalLm,
    prompt: &[u32],
    cfg: &GenerateConfig,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<GenerateStats, GenerateError> {
    cfg.sampling.validate()?;
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let max = model.config().max_context;
    if prompt.len() >= max {
        return Err(GenerateError::PromptTooLong { prompt: prompt.len(), max });
    }
    let mut rng = cfg.sampling.rng();
    let mut cache = model.new_cache();
    let t0 = Instant::now();
    let mut logits = model.forward_causal(&mut cache, prompt, LogitsRows::Last)?;
    let prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut stats = GenerateStats {
        prompt_tokens: prompt.len(),
        generated: 0,
        prefill_secs,
        decode_secs: 0.0,
        forward_passes: 1,
        finish: FinishReason::Length,
    };
    while stats.generated < cfg.max_new_tokens {
        let row = logits.last().ok_or_else(|| ModelError::InvalidInput("no logits returned".into()))?;
        let token = pick(row, &cfg.sampling, &mut rng);
        stats.generated += 1;
        if on_token(token).is_break() {
            stats.finish = FinishReason::Cancelled;
            break;
        }
        if cfg.stop_ids.contains(&token) {
            stats.finish = FinishReason::Stop;
            break;
        }
        if stats.generated == cfg.max_new_tokens || cache.len() + 1 >= max {
            break;
        }
        logits = model.forward_causal(&mut cache, &[token], LogitsRows::Last)?;
        stats.forward_passes += 1;
    }
    stats.decode_secs = t1.elapsed().as_secs_f64();
    Ok(stats)
}
