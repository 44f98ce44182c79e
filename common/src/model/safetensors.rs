//! Loading llama, qwen2 and minicpm models from Hugging Face checkpoints:
//! a directory with `config.json` and one or several `*.safetensors` files.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::config::{Arch, MiniCpmScales, ModelConfig};
use super::gguf::LoadOptions;
use super::linear::Linear;
use super::transformer::{Block, Transformer};
use super::{ModelError, Result};

/// The `config.json` fields the runtime uses.
#[derive(Debug, Deserialize)]
pub struct HfConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f32,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    #[serde(default = "default_ctx")]
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: Option<bool>,
    pub rope_scaling: Option<serde_json::Value>,
    pub scale_emb: Option<f32>,
    pub scale_depth: Option<f32>,
    pub dim_model_base: Option<f32>,
}

fn default_eps() -> f32 {
    1e-6
}
fn default_theta() -> f32 {
    10000.0
}
fn default_ctx() -> usize {
    4096
}

fn bad(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::BadFile { path: path.display().to_string(), reason: reason.into() }
}

impl HfConfig {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
        serde_json::from_str(&text).map_err(|e| bad(&path, e.to_string()))
    }

    pub fn to_config(&self, opts: &LoadOptions) -> Result<ModelConfig> {
        let arch = Arch::parse(&self.model_type)
            .ok_or_else(|| ModelError::UnsupportedArchitecture(self.model_type.clone()))?;
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ModelError::InvalidInput(format!("rope_scaling {:?} is not supported", self.rope_scaling)));
        }
        let minicpm = if arch == Arch::MiniCpm {
            let need = |v: Option<f32>, name: &str| v.ok_or_else(|| ModelError::Missing(format!("config.json {name}")));
            Some(MiniCpmScales::from_hf(
                need(self.scale_emb, "scale_emb")?,
                need(self.scale_depth, "scale_depth")?,
                need(self.dim_model_base, "dim_model_base")?,
                self.hidden_size,
                self.num_hidden_layers,
            ))
        } else {
            None
        };
        Ok(ModelConfig {
            arch,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
            rope_theta: self.rope_theta,
            rms_norm_eps: self.rms_norm_eps,
            max_context: opts.max_context.map_or(self.max_position_embeddings, |m| m.min(self.max_position_embeddings)),
            // Hugging Face checkpoints rotate halves (rotate_half).
            rope_interleaved: false,
            minicpm,
        })
    }
}

struct Weights {
    tensors: HashMap<String, Tensor>,
    isa: super::Isa,
}

impl Weights {
    fn take(&mut self, name: &str) -> Result<Tensor> {
        self.tensors.remove(name).ok_or_else(|| ModelError::Missing(format!("tensor {name}")))
    }

    /// Weights are kept as f32 QTensors (see `Linear` for why).
    fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        let t = self.take(name)?;
        match t.dtype() {
            DType::F32 | DType::F16 | DType::BF16 => {}
            d => return Err(ModelError::UnsupportedDType { tensor: name.into(), dtype: format!("{d:?}") }),
        }
        Ok(QTensor::quantize(&t.to_dtype(DType::F32)?, GgmlDType::F32)?)
    }

    fn vector(&mut self, name: &str) -> Result<Vec<f32>> {
        Ok(self.take(name)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    fn linear(&mut self, name: &str) -> Result<Linear> {
        let w = self.qtensor(&format!("{name}.weight"))?;
        let bias_name = format!("{name}.bias");
        let bias = if self.tensors.contains_key(&bias_name) { Some(self.vector(&bias_name)?) } else { None };
        Linear::new(&w, bias, name, self.isa)
    }
}

/// Loads a model from a Hugging Face directory.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Transformer> {
    let hf = HfConfig::read(dir)?;
    let cfg = hf.to_config(opts)?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| ModelError::Io { path: dir.display().to_string(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad(dir, "no *.safetensors files"));
    }
    let mut tensors = HashMap::new();
    for f in &files {
        let part = candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| bad(f, e.to_string()))?;
        tensors.extend(part);
    }
    let mut w = Weights { tensors, isa: opts.isa()? };
    let embed = w.linear("model.embed_tokens")?;
    let mut blocks = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("model.layers.{i}");
        blocks.push(Block {
            attn_norm: w.vector(&format!("{p}.input_layernorm.weight"))?,
            q: w.linear(&format!("{p}.self_attn.q_proj"))?,
            k: w.linear(&format!("{p}.self_attn.k_proj"))?,
            v: w.linear(&format!("{p}.self_attn.v_proj"))?,
            o: w.linear(&format!("{p}.self_attn.o_proj"))?,
            ffn_norm: w.vector(&format!("{p}.post_attention_layernorm.weight"))?,
            gate: w.linear(&format!("{p}.mlp.gate_proj"))?,
            up: w.linear(&format!("{p}.mlp.up_proj"))?,
            down: w.linear(&format!("{p}.mlp.down_proj"))?,
        });
    }
    let norm = w.vector("model.norm.weight")?;
    let tied = hf.tie_word_embeddings.unwrap_or(!w.tensors.contains_key("lm_head.weight"));
    let lm_head = if tied {
        Linear::from_weight(embed.weight().clone(), (embed.out_dim(), embed.in_dim()), None, "model.embed_tokens")?
    } else {
        w.linear("lm_head")?
    };
    Transformer::new(cfg, embed, blocks, norm, lm_head)
}
