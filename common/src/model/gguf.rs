//! Loading llama, qwen2 and minicpm models from GGUF files.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

use super::config::{Arch, MiniCpmScales, ModelConfig};
use super::linear::{Linear, QWeight};
use super::transformer::{Block, Transformer};
use super::{Isa, ModelError, Result};
use ouro_kernels::{Format, PackedMatrix};

/// How to load a model file.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Re-encode Q4_0/Q4_1/Q5_0/Q5_1 tensors as Q8_0 at load time, so they
    /// run on ouro's Q8_0 kernel (candle's for those formats are scalar):
    /// about 1.5x their bytes, far faster (see docs/BENCHMARKS.md).
    pub requantize_legacy: bool,
    /// Re-encode the k-quants (Q2_K–Q6_K) as Q8_0 too: Q8_0's precision for
    /// about twice the bytes. Q4_K and Q6_K have kernels of their own, so this
    /// only helps Q2_K, Q3_K and Q5_K (which otherwise run on candle's generic
    /// kernel).
    pub requantize_kquants: bool,
    /// Dequantize every weight to f32 (a high-precision copy of a quantized
    /// file: slower, but numerically distinct from the file's own kernels).
    pub dequantize: bool,
    /// Caps the context length (the file's own value otherwise), which bounds
    /// the rotary tables and the largest KV cache.
    pub max_context: Option<usize>,
    /// The matmul kernels' instruction set; `None` takes `OURO_KERNEL`, or
    /// the best this CPU runs. Every path gives the same bits.
    pub kernel: Option<Isa>,
}

impl LoadOptions {
    /// The kernel path these options ask for, checked against the CPU.
    pub fn isa(&self) -> Result<Isa> {
        match self.kernel {
            Some(isa) if isa.available() => Ok(isa),
            Some(isa) => Err(ouro_kernels::KernelError::Unavailable(isa.name(), "a feature it needs").into()),
            None => Ok(Isa::from_env()?),
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            requantize_legacy: true,
            requantize_kquants: false,
            dequantize: false,
            max_context: Some(8192),
            kernel: None,
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::BadFile { path: path.display().to_string(), reason: reason.into() }
}

/// Reads a GGUF header, checking that every tensor lies inside the file so a
/// truncated download is reported as such rather than failing mid-load.
pub fn read_content(path: &Path) -> Result<gguf_file::Content> {
    let file = File::open(path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
    let file_len = file.metadata().map_err(|source| ModelError::Io { path: path.display().to_string(), source })?.len();
    let mut reader = BufReader::new(file);
    let ct = gguf_file::Content::read(&mut reader).map_err(|e| bad(path, format!("not a readable GGUF file: {e}")))?;
    for (name, info) in &ct.tensor_infos {
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        if elems % block != 0 {
            return Err(bad(path, format!("tensor `{name}` has {elems} elements, not a multiple of its block size")));
        }
        let bytes = (elems / block * info.ggml_dtype.type_size()) as u64;
        let end = ct.tensor_data_offset + info.offset + bytes;
        if end > file_len {
            return Err(bad(
                path,
                format!("truncated: tensor `{name}` ends at byte {end} but the file has {file_len}"),
            ));
        }
    }
    Ok(ct)
}

struct Reader<'a> {
    path: &'a Path,
    ct: &'a gguf_file::Content,
    file: BufReader<File>,
    opts: &'a LoadOptions,
    isa: Isa,
}

impl Reader<'_> {
    fn has(&self, name: &str) -> bool {
        self.ct.tensor_infos.contains_key(name)
    }

    fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.has(name) {
            return Err(ModelError::Missing(format!("tensor {name}")));
        }
        let t = self
            .ct
            .tensor(&mut self.file, name, &Device::Cpu)
            .map_err(|e| bad(self.path, format!("cannot read tensor `{name}`: {e}")))?;
        if self.opts.dequantize && t.dtype() != GgmlDType::F32 {
            let dense = t.dequantize(&Device::Cpu)?;
            return Ok(QTensor::quantize(&dense, GgmlDType::F32)?);
        }
        let legacy = matches!(t.dtype(), GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1);
        let kquant =
            matches!(t.dtype(), GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K);
        if (legacy && self.opts.requantize_legacy) || (kquant && self.opts.requantize_kquants) {
            let dense = t.dequantize(&Device::Cpu)?;
            return Ok(QTensor::quantize(&dense, GgmlDType::Q8_0)?);
        }
        match t.dtype() {
            GgmlDType::F32
            | GgmlDType::F16
            | GgmlDType::BF16
            | GgmlDType::Q4_0
            | GgmlDType::Q4_1
            | GgmlDType::Q5_0
            | GgmlDType::Q5_1
            | GgmlDType::Q8_0
            | GgmlDType::Q2K
            | GgmlDType::Q3K
            | GgmlDType::Q4K
            | GgmlDType::Q5K
            | GgmlDType::Q6K => {}
            other => return Err(ModelError::UnsupportedDType { tensor: name.into(), dtype: format!("{other:?}") }),
        }
        // f16 weights would make candle quantize activations to f16 too; f32
        // keeps full precision on the batch-invariant kernel.
        if matches!(t.dtype(), GgmlDType::F16 | GgmlDType::BF16) {
            let dense = t.dequantize(&Device::Cpu)?;
            return Ok(QTensor::quantize(&dense, GgmlDType::F32)?);
        }
        Ok(t)
    }

    fn vector(&mut self, name: &str) -> Result<Vec<f32>> {
        let t = self.qtensor(name)?;
        Ok(t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
    }

    fn linear(&mut self, name: &str) -> Result<Linear> {
        let bias_name = format!("{name}.bias");
        let bias = if self.has(&bias_name) { Some(self.vector(&bias_name)?) } else { None };
        let weight = format!("{name}.weight");
        if let Some((w, dims)) = self.packed(&weight)? {
            return Linear::from_weight(Arc::new(QWeight::Packed(w, self.isa)), dims, bias, name);
        }
        let w = self.qtensor(&weight)?;
        Linear::new(&w, bias, name, self.isa)
    }

    /// A tensor in a format with a kernel of its own, repacked straight from
    /// the file a tile at a time (never a whole second copy in memory); `None`
    /// when it needs candle's loader (other formats, or re-encoding).
    fn packed(&mut self, name: &str) -> Result<Option<(PackedMatrix, (usize, usize))>> {
        let Some(info) = self.ct.tensor_infos.get(name) else {
            return Err(ModelError::Missing(format!("tensor {name}")));
        };
        let format = match info.ggml_dtype {
            GgmlDType::Q4K if !self.opts.requantize_kquants => Format::Q4K,
            GgmlDType::Q6K if !self.opts.requantize_kquants => Format::Q6K,
            GgmlDType::Q8_0 => Format::Q8_0,
            _ => return Ok(None),
        };
        if self.opts.dequantize {
            return Ok(None);
        }
        let (n, k) = info.shape.dims2()?;
        let start = self.ct.tensor_data_offset + info.offset;
        let path = self.path.display().to_string();
        let file = &mut self.file;
        let io = |source| ModelError::Io { path: path.clone(), source };
        let w = PackedMatrix::from_rows(format, n, k, |first, buf| {
            if first == 0 {
                file.seek(SeekFrom::Start(start)).map_err(io)?;
            }
            file.read_exact(buf).map_err(io)
        })?;
        Ok(Some((w, (n, k))))
    }
}

fn meta<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    ct.metadata.get(key).ok_or_else(|| ModelError::Missing(format!("metadata {key}")))
}

fn meta_usize(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    let v = meta(ct, key)?;
    v.to_u64()
        .map(|v| v as usize)
        .or_else(|_| v.to_u32().map(|v| v as usize))
        .or_else(|_| v.to_i32().map(|v| v as usize))
        .map_err(|_| ModelError::BadFile { path: key.into(), reason: format!("expected an integer, got {v:?}") })
}

fn meta_f32(ct: &gguf_file::Content, key: &str) -> Result<f32> {
    let v = meta(ct, key)?;
    v.to_f32()
        .or_else(|_| v.to_f64().map(|v| v as f32))
        .map_err(|_| ModelError::BadFile { path: key.into(), reason: format!("expected a float, got {v:?}") })
}

/// Reads the model configuration from GGUF metadata.
pub fn config_from_gguf(ct: &gguf_file::Content, opts: &LoadOptions) -> Result<ModelConfig> {
    let arch_name = meta(ct, "general.architecture")?
        .to_string()
        .map_err(|_| ModelError::Missing("general.architecture as a string".into()))?
        .clone();
    let arch = Arch::parse(&arch_name).ok_or(ModelError::UnsupportedArchitecture(arch_name.clone()))?;
    let a = arch_name.as_str();
    let hidden = meta_usize(ct, &format!("{a}.embedding_length"))?;
    let heads = meta_usize(ct, &format!("{a}.attention.head_count"))?;
    let kv_heads = meta_usize(ct, &format!("{a}.attention.head_count_kv")).unwrap_or(heads);
    let head_dim = meta_usize(ct, &format!("{a}.rope.dimension_count")).unwrap_or(hidden / heads.max(1));
    let layers = meta_usize(ct, &format!("{a}.block_count"))?;
    let vocab = match ct.tensor_infos.get("token_embd.weight") {
        Some(info) => info.shape.dims().first().copied().unwrap_or(0),
        None => return Err(ModelError::Missing("tensor token_embd.weight".into())),
    };
    let file_ctx = meta_usize(ct, &format!("{a}.context_length")).unwrap_or(4096);
    let minicpm = if arch == Arch::MiniCpm {
        Some(MiniCpmScales {
            embedding_scale: meta_f32(ct, "minicpm.embedding_scale")?,
            residual_scale: meta_f32(ct, "minicpm.residual_scale")?,
            logit_scale: meta_f32(ct, "minicpm.logit_scale")?,
        })
    } else {
        None
    };
    Ok(ModelConfig {
        arch,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: meta_usize(ct, &format!("{a}.feed_forward_length"))?,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rope_theta: meta_f32(ct, &format!("{a}.rope.freq_base")).unwrap_or(10000.0),
        rms_norm_eps: meta_f32(ct, &format!("{a}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        max_context: opts.max_context.map_or(file_ctx, |m| m.min(file_ctx)),
        // llama.cpp permutes llama-family q/k for adjacent-pair rotation; qwen2 keeps halves.
        rope_interleaved: arch != Arch::Qwen2,
        minicpm,
    })
}

/// Loads a model from a GGUF file. Returns the header too: the tokenizer and
/// chat template live in its metadata.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<(Transformer, gguf_file::Content)> {
    let ct = read_content(path)?;
    let cfg = config_from_gguf(&ct, opts)?;
    let file = File::open(path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
    let isa = opts.isa()?;
    let mut r = Reader { path, ct: &ct, file: BufReader::new(file), opts, isa };
    let embed = r.linear("token_embd")?;
    let mut blocks = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("blk.{i}");
        blocks.push(Block {
            attn_norm: r.vector(&format!("{p}.attn_norm.weight"))?,
            q: r.linear(&format!("{p}.attn_q"))?,
            k: r.linear(&format!("{p}.attn_k"))?,
            v: r.linear(&format!("{p}.attn_v"))?,
            o: r.linear(&format!("{p}.attn_output"))?,
            ffn_norm: r.vector(&format!("{p}.ffn_norm.weight"))?,
            gate: r.linear(&format!("{p}.ffn_gate"))?,
            up: r.linear(&format!("{p}.ffn_up"))?,
            down: r.linear(&format!("{p}.ffn_down"))?,
        });
    }
    let norm = r.vector("output_norm.weight")?;
    // Tied embeddings (SmolLM2, MiniCPM) have no output tensor of their own.
    let lm_head = if r.has("output.weight") {
        r.linear("output")?
    } else {
        Linear::from_weight(embed.weight().clone(), (embed.out_dim(), embed.in_dim()), None, "token_embd")?
    };
    let model = Transformer::new(cfg, embed, blocks, norm, lm_head)?;
    Ok((model, ct))
}
