//! What a model is: its architecture and shape, independent of file format.

use serde::{Deserialize, Serialize};

/// The supported decoder architectures. All three are the Llama block
/// (RMSNorm, rotary attention with grouped KV heads, SwiGLU MLP); they differ
/// in biases and scalings only, so one transformer implementation serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    /// Llama with biases on the q/k/v projections.
    Qwen2,
    /// Llama with three scalings (see [`MiniCpmScales`]).
    MiniCpm,
}

impl Arch {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "minicpm" => Some(Self::MiniCpm),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::MiniCpm => "minicpm",
        }
    }
}

/// MiniCPM's departures from Llama, stored as the factors the forward pass
/// applies (llama.cpp's GGUF convention), not as the config.json inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MiniCpmScales {
    /// Embeddings are multiplied by this (`scale_emb`).
    pub embedding_scale: f32,
    /// Each residual branch (attention and MLP outputs) is multiplied by this
    /// (`scale_depth / sqrt(num_hidden_layers)`).
    pub residual_scale: f32,
    /// The final normed hidden state is divided by this before the lm_head
    /// (`hidden_size / dim_model_base`).
    pub logit_scale: f32,
}

impl MiniCpmScales {
    /// From the Hugging Face config.json fields.
    pub fn from_hf(scale_emb: f32, scale_depth: f32, dim_model_base: f32, hidden: usize, layers: usize) -> Self {
        Self {
            embedding_scale: scale_emb,
            residual_scale: scale_depth / (layers as f32).sqrt(),
            logit_scale: hidden as f32 / dim_model_base,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rms_norm_eps: f32,
    pub max_context: usize,
    /// GGUF files of llama-family models store q/k permuted for rotation of
    /// adjacent pairs; Hugging Face checkpoints and Qwen2 rotate halves.
    pub rope_interleaved: bool,
    pub minicpm: Option<MiniCpmScales>,
}

impl ModelConfig {
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Bytes of KV cache a token takes: f32 keys and values in every layer.
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.num_layers * self.kv_dim() * 4
    }

    /// An upper estimate of a forward pass's working memory over `rows` new
    /// tokens attending to `context` tokens, `logit_rows` of which need
    /// logits: the residual stream and its norms, q/k/v and attention output,
    /// gate/up/SwiGLU, one head's attention scores per row, and the logits.
    /// Budgets use it to count work in flight; it is not an allocator.
    pub fn activation_bytes(&self, rows: usize, logit_rows: usize, context: usize) -> usize {
        let per_row =
            4 * self.hidden_size + self.q_dim() * 2 + 2 * self.kv_dim() + 3 * self.intermediate_size + context;
        4 * (rows * per_row + logit_rows * self.vocab_size)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_context", self.max_context),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(format!("{name} is zero"));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(format!(
                "{} attention heads are not a multiple of {} KV heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} is odd", self.head_dim));
        }
        // File-given sizes: `q_dim` (and so `kv_dim`, no larger) must not wrap.
        if self.num_heads.checked_mul(self.head_dim).is_none() {
            return Err(format!("{} heads of {} dimensions overflow", self.num_heads, self.head_dim));
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 || self.rms_norm_eps.is_nan() || self.rms_norm_eps < 0.0 {
            return Err("rope_theta and rms_norm_eps must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig {
            arch: Arch::Llama,
            vocab_size: 8,
            hidden_size: 4,
            intermediate_size: 8,
            num_layers: 1,
            num_heads: 4,
            num_kv_heads: 4,
            head_dim: 2,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            max_context: 16,
            rope_interleaved: true,
            minicpm: None,
        }
    }

    /// A head size whose product with the head count wraps made `q_dim`
    /// match a small tensor (a panic with overflow checks, as in the `gguf`
    /// fuzz target, whose `head-dim-overflow` seed reproduces it), and the
    /// rotary table was then sized by the huge head size.
    #[test]
    fn head_sizes_that_overflow_are_refused() {
        assert_eq!(tiny().validate(), Ok(()));
        let wrapping = ModelConfig { head_dim: (1 << 62) + 2, ..tiny() };
        let err = wrapping.validate().unwrap_err();
        assert!(err.contains("overflow"), "{err}");
    }
}
