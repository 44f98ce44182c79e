//! Loading llama, qwen2 and minicpm models from GGUF files.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

use super::config::{Arch, MiniCpmScales, ModelConfig};
use super::linear::{Linear, QWeight};
use super::transformer::{Block, DraftHead, Transformer};
use super::vocab::VocabSubset;
use super::{Isa, ModelError, Result};
use ouro_kernels::{Format, PackedMatrix};

/// A GGUF file's header (metadata and tensor directory), as [`load`] returns it.
pub use candle_core::quantized::gguf_file::Content;

/// How to load a model file.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Re-encode Q4_0/Q4_1/Q5_1 tensors as Q8_0 at load time, so they run
    /// on ouro's Q8_0 kernel (candle's for those formats are scalar): about
    /// 1.5x their bytes, far faster (see docs/BENCHMARKS.md). Q5_0 (most of
    /// the Qwen2.5 0.5B) has a kernel of its own and is never re-encoded.
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
    // candle divides by the declared alignment unchecked: refuse 0 first.
    if declared_alignment(&mut reader) == Some(0) {
        return Err(bad(path, "general.alignment is 0"));
    }
    reader.rewind().map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
    let ct = gguf_file::Content::read(&mut reader).map_err(|e| bad(path, format!("not a readable GGUF file: {e}")))?;
    for (name, info) in &ct.tensor_infos {
        // Shapes and offsets are the file's claims: checked arithmetic, since
        // a wrapped product or sum would pass the length check below.
        let too_large =
            || bad(path, format!("tensor `{name}` of shape {:?} cannot fit in any file", info.shape.dims()));
        let elems = info.shape.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(too_large)?;
        let block = info.ggml_dtype.block_size();
        if elems % block != 0 {
            return Err(bad(path, format!("tensor `{name}` has {elems} elements, not a multiple of its block size")));
        }
        let end = (elems / block)
            .checked_mul(info.ggml_dtype.type_size())
            .and_then(|bytes| ct.tensor_data_offset.checked_add(info.offset)?.checked_add(bytes as u64))
            .ok_or_else(too_large)?;
        if end > file_len {
            return Err(bad(
                path,
                format!("truncated: tensor `{name}` ends at byte {end} but the file has {file_len}"),
            ));
        }
    }
    Ok(ct)
}

/// The integer `general.alignment` that candle's reader would use (the last
/// one, as its map keeps), found by skimming the metadata without
/// allocating; `None` if there is none or the header is malformed, which the
/// reader itself then reports.
fn declared_alignment(r: &mut BufReader<File>) -> Option<u64> {
    const KEY: &[u8] = b"general.alignment";
    fn u32_of(r: &mut impl Read) -> Option<u32> {
        let mut b = [0; 4];
        r.read_exact(&mut b).ok()?;
        Some(u32::from_le_bytes(b))
    }
    fn u64_of(r: &mut impl Read) -> Option<u64> {
        let mut b = [0; 8];
        r.read_exact(&mut b).ok()?;
        Some(u64::from_le_bytes(b))
    }
    // GGUF v1 prefixes strings and arrays with u32 lengths, v2 and v3 with u64.
    fn len_of(r: &mut impl Read, v1: bool) -> Option<u64> {
        if v1 {
            u32_of(r).map(u64::from)
        } else {
            u64_of(r)
        }
    }
    fn skip(r: &mut BufReader<File>, bytes: u64) -> Option<()> {
        r.seek_relative(i64::try_from(bytes).ok()?).ok()
    }
    fn fixed_size(value_type: u32) -> Option<u64> {
        match value_type {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        }
    }
    fn skip_value(r: &mut BufReader<File>, value_type: u32, v1: bool, depth: usize) -> Option<()> {
        if let Some(size) = fixed_size(value_type) {
            return skip(r, size);
        }
        match value_type {
            8 => {
                let len = len_of(r, v1)?;
                skip(r, len)
            }
            9 if depth < 64 => {
                let item_type = u32_of(r)?;
                let count = len_of(r, v1)?;
                if let Some(size) = fixed_size(item_type) {
                    return skip(r, count.checked_mul(size)?);
                }
                // Every item reads at least a length, so a count beyond the
                // file's end stops at its end.
                (0..count).try_for_each(|_| skip_value(r, item_type, v1, depth + 1))
            }
            _ => None,
        }
    }

    let mut magic = [0; 4];
    r.read_exact(&mut magic).ok()?;
    let v1 = match (&magic, u32_of(r)?) {
        (b"GGUF" | b"FUGG", 1) => true,
        (b"GGUF" | b"FUGG", 2 | 3) => false,
        _ => return None,
    };
    let _tensors = len_of(r, v1)?;
    let entries = len_of(r, v1)?;
    let mut alignment = None;
    for _ in 0..entries {
        let key_len = len_of(r, v1)?;
        let is_alignment = if key_len >= KEY.len() as u64 {
            // candle strips trailing NULs from keys.
            let mut key = [0; KEY.len()];
            r.read_exact(&mut key).ok()?;
            let mut rest = r.by_ref().take(key_len - KEY.len() as u64);
            let mut nuls = true;
            let mut buf = [0; 64];
            loop {
                match rest.read(&mut buf).ok()? {
                    0 => break,
                    n => nuls &= buf[..n].iter().all(|&b| b == 0),
                }
            }
            if rest.limit() > 0 {
                return None;
            }
            key == KEY && nuls
        } else {
            skip(r, key_len)?;
            false
        };
        let value_type = u32_of(r)?;
        let value = match (is_alignment, value_type) {
            (true, 0..=5) => {
                let mut b = [0; 4];
                let size = fixed_size(value_type)? as usize;
                r.read_exact(&mut b[..size]).ok()?;
                // candle falls back to its default for negative values.
                let negative = value_type % 2 == 1 && b[size - 1] & 0x80 != 0;
                Some((!negative).then_some(u32::from_le_bytes(b) as u64))
            }
            _ => {
                skip_value(r, value_type, v1, 0)?;
                None
            }
        };
        if is_alignment {
            alignment = value.flatten();
        }
    }
    alignment
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
        let Some(info) = self.ct.tensor_infos.get(name) else {
            return Err(ModelError::Missing(format!("tensor {name}")));
        };
        // candle would view the empty buffer of a zero-sized tensor as a
        // misaligned slice of blocks (undefined behaviour); no model has one.
        if info.shape.elem_count() == 0 {
            return Err(bad(self.path, format!("tensor `{name}` of shape {:?} is empty", info.shape.dims())));
        }
        let t = self
            .ct
            .tensor(&mut self.file, name, &Device::Cpu)
            .map_err(|e| bad(self.path, format!("cannot read tensor `{name}`: {e}")))?;
        self.convert(name, t)
    }

    /// What a tensor becomes at load (see [`LoadOptions`]). Every conversion
    /// works block by block within a row, so a tensor of some of a matrix's
    /// rows converts to those rows of the converted matrix.
    fn convert(&self, name: &str, t: QTensor) -> Result<QTensor> {
        if self.opts.dequantize && t.dtype() != GgmlDType::F32 {
            let dense = t.dequantize(&Device::Cpu)?;
            return Ok(QTensor::quantize(&dense, GgmlDType::F32)?);
        }
        let legacy = matches!(t.dtype(), GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_1);
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
            GgmlDType::Q5_0 => Format::Q5_0,
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

    /// The rows `ids` (increasing) of the `[n, k]` matrix `name`, as a linear
    /// layer of `ids.len()` outputs converted exactly as the whole matrix is
    /// by [`Reader::linear`]. Only the selected rows are read.
    fn linear_rows(&mut self, name: &str, ids: &[u32]) -> Result<Linear> {
        let weight = format!("{name}.weight");
        let Some(info) = self.ct.tensor_infos.get(&weight) else {
            return Err(ModelError::Missing(format!("tensor {weight}")));
        };
        let (n, k) = info.shape.dims2()?;
        let dtype = info.ggml_dtype;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= n) {
            return Err(ModelError::TokenOutOfRange { token: id, vocab: n });
        }
        if n == 0 || k == 0 || !k.is_multiple_of(dtype.block_size()) {
            return Err(bad(self.path, format!("`{weight}` of {n} rows of {k} values is not rows of whole blocks")));
        }
        let row = k / dtype.block_size() * dtype.type_size();
        let start = self.ct.tensor_data_offset + info.offset;
        let bias_name = format!("{name}.bias");
        let bias = if self.has(&bias_name) {
            let full = self.vector(&bias_name)?;
            if full.len() != n {
                return Err(bad(self.path, format!("`{bias_name}` has {} entries for {n} rows", full.len())));
            }
            Some(ids.iter().map(|&id| full[id as usize]).collect())
        } else {
            None
        };
        let path = self.path.display().to_string();
        let io = |source| ModelError::Io { path: path.clone(), source };
        // Ids increase, so most rows lie a little ahead of the last one:
        // relative seeks keep the reader's buffer where an absolute one
        // would drop it on every row.
        let mut at: Option<u64> = None;
        let mut read_row = |file: &mut BufReader<File>, id: u32, buf: &mut [u8]| -> Result<()> {
            let target = start + id as u64 * row as u64;
            match at {
                Some(p) if target >= p => file.seek_relative((target - p) as i64).map_err(io)?,
                _ => {
                    file.seek(SeekFrom::Start(target)).map_err(io)?;
                }
            }
            file.read_exact(buf).map_err(io)?;
            at = Some(target + buf.len() as u64);
            Ok(())
        };
        let packed = match dtype {
            GgmlDType::Q4K if !self.opts.requantize_kquants => Some(Format::Q4K),
            GgmlDType::Q6K if !self.opts.requantize_kquants => Some(Format::Q6K),
            GgmlDType::Q8_0 => Some(Format::Q8_0),
            GgmlDType::Q5_0 => Some(Format::Q5_0),
            _ => None,
        };
        let dims = (ids.len(), k);
        if let (Some(format), false) = (packed, self.opts.dequantize) {
            let file = &mut self.file;
            let w = PackedMatrix::from_rows(format, ids.len(), k, |first, buf| {
                for (j, chunk) in buf.chunks_exact_mut(row).enumerate() {
                    read_row(file, ids[first + j], chunk)?;
                }
                Ok::<_, ModelError>(())
            })?;
            return Linear::from_weight(Arc::new(QWeight::Packed(w, self.isa)), dims, bias, name);
        }
        // Other formats go through candle's tensor type, as whole matrices
        // do, with only the selected rows' bytes.
        let mut bytes = vec![0u8; ids.len() * row];
        for (&id, chunk) in ids.iter().zip(bytes.chunks_exact_mut(row)) {
            read_row(&mut self.file, id, chunk)?;
        }
        let t = candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &bytes, vec![ids.len(), k], &Device::Cpu)
            .map_err(|e| bad(self.path, format!("cannot read rows of `{weight}`: {e}")))?;
        let t = self.convert(&weight, t)?;
        Linear::new(&t, bias, name, self.isa)
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
    // `block_count` is the file's claim: a missing layer is reported below,
    // but the file's tensors bound what is worth reserving.
    let mut blocks = Vec::with_capacity(cfg.num_layers.min(ct.tensor_infos.len()));
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

/// The restricted drafter head (FR-Spec) over `subset` for the model in
/// `path`, whose header [`load`] returned: the selected rows of its LM head
/// (the token embeddings, when they are tied), read from the file and
/// converted with the same `opts` as the model, so the head's logits equal
/// the full head's at those ids bit for bit. Give it to the model with
/// [`Transformer::set_draft_head`].
pub fn load_draft_head(
    path: &Path,
    ct: &gguf_file::Content,
    subset: VocabSubset,
    opts: &LoadOptions,
) -> Result<DraftHead> {
    let file = File::open(path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
    let isa = opts.isa()?;
    let mut r = Reader { path, ct, file: BufReader::new(file), opts, isa };
    // As in `load`: tied embeddings have no output tensor of their own.
    let name = if r.has("output.weight") { "output" } else { "token_embd" };
    let head = r.linear_rows(name, subset.ids())?;
    Ok(DraftHead { subset, head })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metadata entry: key, value type, value bytes.
    type Entry<'a> = (&'a [u8], u32, &'a [u8]);

    /// A GGUF v3 file with the metadata entries `meta` (key, value type,
    /// value bytes) and one f32 tensor of `dims` (GGUF order, innermost
    /// first) at `offset`, followed by 64 bytes of data.
    fn gguf_file(name: &str, meta: &[Entry<'_>], dims: &[u64], offset: u64) -> std::path::PathBuf {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes()); // tensors
        b.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        for (key, value_type, value) in meta {
            b.extend_from_slice(&(key.len() as u64).to_le_bytes());
            b.extend_from_slice(key);
            b.extend_from_slice(&value_type.to_le_bytes());
            b.extend_from_slice(value);
        }
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&0u32.to_le_bytes()); // F32
        b.extend_from_slice(&offset.to_le_bytes());
        b.resize(b.len().next_multiple_of(32) + 64, 0);
        let path = std::env::temp_dir().join(format!("ouro-gguf-test-{}-{name}.gguf", std::process::id()));
        std::fs::write(&path, b).unwrap();
        path
    }

    fn one_tensor_file(name: &str, dims: &[u64], offset: u64) -> std::path::PathBuf {
        gguf_file(name, &[], dims, offset)
    }

    fn read_and_remove(path: &Path) -> Result<gguf_file::Content> {
        let result = read_content(path);
        std::fs::remove_file(path).unwrap();
        result
    }

    #[test]
    fn tensor_sizes_that_overflow_are_refused() {
        // 2^32 × 2^32 elements wrap to 0, and an offset near u64::MAX wraps
        // the tensor's end back into the file: both once passed the check.
        for (name, dims, offset) in [("wrap", vec![1u64 << 32, 1 << 32], 0), ("far", vec![4], u64::MAX - 8)] {
            let path = one_tensor_file(name, &dims, offset);
            let result = read_content(&path);
            std::fs::remove_file(&path).unwrap();
            match result {
                Err(ModelError::BadFile { reason, .. }) => assert!(reason.contains("cannot fit"), "{name}: {reason}"),
                other => panic!("{name}: expected a bad file, got {other:?}"),
            }
        }
        let path = one_tensor_file("fits", &[4, 4], 0);
        let result = read_content(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(result.is_ok(), "{result:?}");
    }

    /// Found by the `gguf` fuzz target: an empty tensor reached candle's
    /// loader, which views its (unaligned, dangling) buffer as blocks.
    #[test]
    fn empty_tensors_are_refused() {
        let path = one_tensor_file("empty", &[4, 0], 0);
        let ct = read_content(&path).unwrap();
        let file = BufReader::new(File::open(&path).unwrap());
        let opts = LoadOptions::default();
        let mut r = Reader { path: &path, ct: &ct, file, opts: &opts, isa: Isa::Portable };
        let result = r.qtensor("empty");
        std::fs::remove_file(&path).unwrap();
        match result {
            Err(ModelError::BadFile { reason, .. }) => assert!(reason.contains("is empty"), "{reason}"),
            other => panic!("expected a bad file, got {other:?}"),
        }
    }

    /// candle's reader divides by `general.alignment` unchecked, so 0
    /// panicked (seen reading candle for the `gguf` fuzz target, whose
    /// `alignment-zero` seed reproduces it).
    #[test]
    fn a_zero_alignment_is_refused() {
        let key: &[u8] = b"general.alignment";
        let nul_key: &[u8] = b"general.alignment\0\0";
        let other = [(&b"general.name"[..], 8, &b"\x01\0\0\0\0\0\0\0x"[..])];
        let cases: [(&str, Vec<Entry<'_>>); 4] = [
            ("u32", vec![other[0], (key, 4, &[0, 0, 0, 0])]),
            ("i8", vec![(key, 1, &[0]), other[0]]),
            ("nul-key", vec![(nul_key, 2, &[0, 0])]),
            ("last-wins", vec![(key, 4, &[32, 0, 0, 0]), (key, 3, &[0, 0])]),
        ];
        for (name, meta) in cases {
            match read_and_remove(&gguf_file(name, &meta, &[4], 0)) {
                Err(ModelError::BadFile { reason, .. }) => {
                    assert!(reason.contains("alignment is 0"), "{name}: {reason}")
                }
                other => panic!("{name}: expected a bad file, got {other:?}"),
            }
        }
        // Other alignments, negative ones (candle's default) and a zero that
        // a later entry replaces still load.
        let cases: [(&str, Vec<Entry<'_>>); 3] = [
            ("a64", vec![(key, 4, &[64, 0, 0, 0])]),
            ("negative", vec![(key, 5, &[0xff, 0xff, 0xff, 0xff])]),
            ("replaced", vec![(key, 0, &[0]), (key, 10, &[0; 8])]),
        ];
        for (name, meta) in cases {
            let result = read_and_remove(&gguf_file(name, &meta, &[4], 0));
            assert!(result.is_ok(), "{name}: {result:?}");
        }
    }

    /// Found by the `gguf` fuzz target: the layer list was reserved at the
    /// header's `block_count`, so a huge count exhausted memory before the
    /// first missing layer was noticed.
    #[test]
    fn a_huge_block_count_is_a_missing_layer() {
        let u32_of = |v: u32| v.to_le_bytes();
        let (one, four) = (u32_of(1), u32_of(4));
        let layers = (1u64 << 62).to_le_bytes();
        let meta: [Entry<'_>; 5] = [
            (b"general.architecture", 8, b"\x05\0\0\0\0\0\0\0llama"),
            (b"llama.embedding_length", 4, &four),
            (b"llama.attention.head_count", 4, &one),
            (b"llama.feed_forward_length", 4, &four),
            (b"llama.block_count", 10, &layers),
        ];
        let path = gguf_file("token_embd.weight", &meta, &[4, 2], 0);
        let opts = LoadOptions { kernel: Some(Isa::Portable), ..LoadOptions::default() };
        let result = load(&path, &opts).map(|_| ());
        std::fs::remove_file(&path).unwrap();
        match result {
            Err(ModelError::Missing(what)) => assert_eq!(what, "tensor blk.0.attn_norm.weight"),
            other => panic!("expected a missing layer, got {other:?}"),
        }
    }

    /// A GGUF v3 file of `tensors` (name, candle dims `[rows, cols]`, GGML
    /// type id, raw bytes), no metadata.
    fn gguf_with(name: &str, tensors: &[(&str, Vec<usize>, u32, Vec<u8>)]) -> std::path::PathBuf {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        let mut offset = 0u64;
        for (tname, dims, dtype, bytes) in tensors {
            b.extend_from_slice(&(tname.len() as u64).to_le_bytes());
            b.extend_from_slice(tname.as_bytes());
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims.iter().rev() {
                b.extend_from_slice(&(*d as u64).to_le_bytes());
            }
            b.extend_from_slice(&dtype.to_le_bytes());
            b.extend_from_slice(&offset.to_le_bytes());
            offset += (bytes.len() as u64).next_multiple_of(32);
        }
        b.resize(b.len().next_multiple_of(32), 0);
        for (_, _, _, bytes) in tensors {
            b.extend_from_slice(bytes);
            b.resize(b.len().next_multiple_of(32), 0);
        }
        let path = std::env::temp_dir().join(format!("ouro-gguf-test-{}-{name}.gguf", std::process::id()));
        std::fs::write(&path, b).unwrap();
        path
    }

    /// The repacked formats hold the values ggml's own dequantization gives
    /// (candle reads the blocks as ggml does): the kernels' reference could
    /// agree with every path and still misread a block.
    #[test]
    fn repacked_matrices_hold_ggmls_values() {
        use candle_core::Tensor;
        let (n, k) = (19usize, 512usize);
        let weights: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 2003) as f32 / 1001.0 - 1.0) * 0.3).collect();
        let dense = Tensor::from_vec(weights, (n, k), &Device::Cpu).unwrap();
        for (dtype, format) in [
            (GgmlDType::Q4K, Format::Q4K),
            (GgmlDType::Q6K, Format::Q6K),
            (GgmlDType::Q8_0, Format::Q8_0),
            (GgmlDType::Q5_0, Format::Q5_0),
        ] {
            let q = QTensor::quantize(&dense, dtype).unwrap();
            let want = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let w = PackedMatrix::from_ggml(format, &q.data().unwrap(), n, k).unwrap();
            let mut row = vec![0f32; k];
            for r in 0..n {
                w.dequantize_row(r, &mut row);
                assert_eq!(row, want[r * k..(r + 1) * k], "{dtype:?} row {r}");
            }
        }
    }

    /// The restricted head's logits are the full head's at its ids, bit for
    /// bit, in every format and load option, on every kernel path: the
    /// columns are the file's own rows, converted and computed alike.
    #[test]
    fn restricted_rows_give_the_full_heads_logits_bit_for_bit() {
        use candle_core::Tensor;
        // 40 rows: two whole 16-column tiles and a padded one.
        let (n, k, m) = (40usize, 256usize, 3usize);
        let noise = |i: usize, salt: u64| {
            // splitmix64: spread values, reproducible without a RNG crate.
            let mut z = (i as u64).wrapping_add(salt << 32).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let weights: Vec<f32> = (0..n * k).map(|i| noise(i, 1)).collect();
        let dense = Tensor::from_vec(weights.clone(), (n, k), &Device::Cpu).unwrap();
        let bias: Vec<u8> = (0..n).flat_map(|i| noise(i, 2).to_le_bytes()).collect();
        let x: Vec<f32> = (0..m * k).map(|i| noise(i, 3)).collect();
        let ids = [0u32, 3, 15, 16, 17, 31, 32, 39];
        let formats = [
            (GgmlDType::F32, 0u32),
            (GgmlDType::F16, 1),
            (GgmlDType::Q4_1, 3),
            (GgmlDType::Q5_0, 6),
            (GgmlDType::Q8_0, 8),
            (GgmlDType::Q4K, 12),
            (GgmlDType::Q5K, 13),
            (GgmlDType::Q6K, 14),
        ];
        let options = [
            LoadOptions::default(),
            LoadOptions { requantize_legacy: false, ..LoadOptions::default() },
            LoadOptions { requantize_kquants: true, ..LoadOptions::default() },
            LoadOptions { dequantize: true, ..LoadOptions::default() },
        ];
        for (dtype, type_id) in formats {
            let bytes = match dtype {
                GgmlDType::F32 => weights.iter().flat_map(|v| v.to_le_bytes()).collect(),
                _ => QTensor::quantize(&dense, dtype).unwrap().data().unwrap().to_vec(),
            };
            let tensors = [("output.weight", vec![n, k], type_id, bytes), ("output.bias", vec![n], 0, bias.clone())];
            let path = gguf_with(&format!("rows-{type_id}"), &tensors);
            let ct = read_content(&path).unwrap();
            for opts in &options {
                for isa in Isa::available_all() {
                    let file = BufReader::new(File::open(&path).unwrap());
                    let mut r = Reader { path: &path, ct: &ct, file, opts, isa };
                    let full = r.linear("output").unwrap().forward(&x, m).unwrap();
                    let sub = r.linear_rows("output", &ids).unwrap().forward(&x, m).unwrap();
                    for row in 0..m {
                        for (j, &id) in ids.iter().enumerate() {
                            let (a, b) = (sub[row * ids.len() + j], full[row * n + id as usize]);
                            assert_eq!(a.to_bits(), b.to_bits(), "{dtype:?} {opts:?} {isa:?} row {row} id {id}");
                        }
                    }
                }
            }
            // Ids past the matrix are refused, never read past its end.
            let file = BufReader::new(File::open(&path).unwrap());
            let opts = LoadOptions::default();
            let mut r = Reader { path: &path, ct: &ct, file, opts: &opts, isa: Isa::Portable };
            match r.linear_rows("output", &[1, n as u32]) {
                Err(ModelError::TokenOutOfRange { token, vocab }) => assert_eq!((token, vocab), (n as u32, n)),
                other => panic!("{dtype:?}: expected an out-of-range id, got {:?}", other.map(|_| ())),
            }
            std::fs::remove_file(&path).unwrap();
        }
    }
}
