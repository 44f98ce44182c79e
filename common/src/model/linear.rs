//! Linear layers: ouro's own kernels for the pinned files' formats, candle's
//! generic ones for the rest.

use std::sync::Arc;

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::{GgmlDType, QTensor};
use ouro_kernels::{Activations, Format, Isa, PackedMatrix};

use super::{ModelError, Result};

/// A weight matrix `[out, in]`.
///
/// Q4_K, Q6_K and Q8_0 (everything the pinned files hold, legacy formats
/// being re-encoded as Q8_0 at load) are repacked for `ouro-kernels`, which
/// are batch-invariant by construction. The other formats go through candle's
/// generic `k_quants::matmul`, on purpose: it computes each (row, column)
/// with the same dot product whatever the number of rows. candle's `QMatMul`
/// may instead route Q4_K/Q6_K through repacked x86 kernels chosen by the row
/// count, whose results differ between one row and several (by up to 0.37 in
/// the logits of Qwen2.5-1.5B), which would break byte-identical greedy
/// speculation.
pub enum QWeight {
    /// Repacked for `ouro-kernels`, run on the path chosen at load.
    Packed(PackedMatrix, Isa),
    F32(Vec<f32>),
    Q4_0(Vec<k_quants::BlockQ4_0>),
    Q4_1(Vec<k_quants::BlockQ4_1>),
    Q5_0(Vec<k_quants::BlockQ5_0>),
    Q5_1(Vec<k_quants::BlockQ5_1>),
    Q2K(Vec<k_quants::BlockQ2K>),
    Q3K(Vec<k_quants::BlockQ3K>),
    Q5K(Vec<k_quants::BlockQ5K>),
}

/// Copies raw block bytes into a typed vector.
fn blocks<T: GgmlType>(bytes: &[u8]) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return Err(ModelError::InvalidInput(format!("{} bytes are not whole {size}-byte blocks", bytes.len())));
    }
    let n = bytes.len() / size;
    let mut out: Vec<T> = (0..n).map(|_| T::zeros()).collect();
    // SAFETY: the block types are plain `repr(C)` data (integers and f16s),
    // every bit pattern is a valid value, and the lengths match exactly.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr() as *mut u8, n * size) };
    Ok(out)
}

macro_rules! each_format {
    ($self:expr, $v:ident => $body:expr) => {
        match $self {
            QWeight::Packed(..) => unreachable!("handled by the caller"),
            QWeight::F32($v) => $body,
            QWeight::Q4_0($v) => $body,
            QWeight::Q4_1($v) => $body,
            QWeight::Q5_0($v) => $body,
            QWeight::Q5_1($v) => $body,
            QWeight::Q2K($v) => $body,
            QWeight::Q3K($v) => $body,
            QWeight::Q5K($v) => $body,
        }
    };
}

impl QWeight {
    pub fn from_qtensor(t: &QTensor, isa: Isa) -> Result<Self> {
        let data = t.data()?;
        let packed = match t.dtype() {
            GgmlDType::Q4K => Some(Format::Q4K),
            GgmlDType::Q6K => Some(Format::Q6K),
            GgmlDType::Q8_0 => Some(Format::Q8_0),
            GgmlDType::Q5_0 => Some(Format::Q5_0),
            _ => None,
        };
        if let Some(format) = packed {
            let (n, k) = t.shape().dims2()?;
            let m =
                PackedMatrix::from_ggml(format, &data, n, k).map_err(|e| ModelError::InvalidInput(e.to_string()))?;
            return Ok(Self::Packed(m, isa));
        }
        Ok(match t.dtype() {
            GgmlDType::F32 => Self::F32(blocks(&data)?),
            GgmlDType::Q4_0 => Self::Q4_0(blocks(&data)?),
            GgmlDType::Q4_1 => Self::Q4_1(blocks(&data)?),
            GgmlDType::Q5_0 => Self::Q5_0(blocks(&data)?),
            GgmlDType::Q5_1 => Self::Q5_1(blocks(&data)?),
            GgmlDType::Q2K => Self::Q2K(blocks(&data)?),
            GgmlDType::Q3K => Self::Q3K(blocks(&data)?),
            GgmlDType::Q5K => Self::Q5K(blocks(&data)?),
            other => return Err(ModelError::UnsupportedDType { tensor: "weight".into(), dtype: format!("{other:?}") }),
        })
    }

    fn block_size(&self) -> usize {
        fn bs<T: GgmlType>(_: &[T]) -> usize {
            T::BLCK_SIZE
        }
        if let Self::Packed(m, _) = self {
            return m.format().block();
        }
        each_format!(self, v => bs(v))
    }

    fn matmul(&self, x: &Activations<'_>, n: usize, y: &mut [f32]) -> Result<()> {
        if let Self::Packed(w, isa) = self {
            return w.matmul(*isa, x, y).map_err(|e| ModelError::InvalidInput(e.to_string()));
        }
        each_format!(self, v => k_quants::matmul((x.rows(), x.cols(), n), x.f32(), v, y))?;
        Ok(())
    }

    /// Dequantizes row `r` of a `[rows, cols]` matrix into `out`.
    fn row(&self, r: usize, cols: usize, out: &mut [f32]) {
        fn deq<T: GgmlType>(v: &[T], r: usize, cols: usize, out: &mut [f32]) {
            let per_row = cols / T::BLCK_SIZE;
            T::to_float(&v[r * per_row..(r + 1) * per_row], out);
        }
        if let Self::Packed(w, _) = self {
            return w.dequantize_row(r, out);
        }
        each_format!(self, v => deq(v, r, cols, out))
    }

    pub fn size_bytes(&self) -> usize {
        fn sz<T>(v: &[T]) -> usize {
            std::mem::size_of_val(v)
        }
        if let Self::Packed(w, _) = self {
            return w.size_bytes();
        }
        each_format!(self, v => sz(v))
    }
}

/// `y = x W^T (+ b)`.
pub struct Linear {
    weight: Arc<QWeight>,
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
}

impl Linear {
    pub fn new(weight: &QTensor, bias: Option<Vec<f32>>, name: &str, isa: Isa) -> Result<Self> {
        let (out_dim, in_dim) = weight.shape().dims2().map_err(|_| ModelError::BadFile {
            path: name.to_string(),
            reason: format!("weight has shape {:?}, expected 2 dims", weight.shape()),
        })?;
        Self::from_weight(Arc::new(QWeight::from_qtensor(weight, isa)?), (out_dim, in_dim), bias, name)
    }

    /// Shares an already converted weight (tied embeddings and lm_head).
    pub fn from_weight(
        weight: Arc<QWeight>,
        (out_dim, in_dim): (usize, usize),
        bias: Option<Vec<f32>>,
        name: &str,
    ) -> Result<Self> {
        let bad = |reason: String| ModelError::BadFile { path: name.to_string(), reason };
        if !in_dim.is_multiple_of(weight.block_size()) {
            return Err(bad(format!("{in_dim} inputs are not whole blocks of {}", weight.block_size())));
        }
        if let Some(b) = &bias {
            if b.len() != out_dim {
                return Err(bad(format!("bias has {} entries for {out_dim} outputs", b.len())));
            }
        }
        Ok(Self { weight, bias, in_dim, out_dim })
    }

    pub fn weight(&self) -> &Arc<QWeight> {
        &self.weight
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `x` holds `rows` rows of `in_dim` floats.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        Ok(Self::forward_shared(&[self], x, rows)?.remove(0))
    }

    /// Several layers over one input (q, k and v; gate and up): the input is
    /// quantized once per weight format, not once per layer.
    pub fn forward_shared(layers: &[&Linear], x: &[f32], rows: usize) -> Result<Vec<Vec<f32>>> {
        let in_dim = layers.first().map_or(0, |l| l.in_dim);
        if x.len() != rows * in_dim || layers.iter().any(|l| l.in_dim != in_dim) {
            return Err(ModelError::InvalidInput(format!(
                "linear input has {} floats, expected {rows}x{in_dim} for every layer",
                x.len()
            )));
        }
        let acts = Activations::new(x, rows, in_dim);
        layers
            .iter()
            .map(|l| {
                let mut y = vec![0f32; rows * l.out_dim];
                l.weight.matmul(&acts, l.out_dim, &mut y)?;
                if let Some(b) = &l.bias {
                    for row in y.chunks_exact_mut(l.out_dim) {
                        for (y, b) in row.iter_mut().zip(b) {
                            *y += b;
                        }
                    }
                }
                Ok(y)
            })
            .collect()
    }

    /// Row lookup, for an embedding table stored as `[vocab, hidden]`.
    pub fn rows(&self, ids: &[u32]) -> Vec<f32> {
        let mut out = vec![0f32; ids.len() * self.in_dim];
        for (o, &id) in out.chunks_exact_mut(self.in_dim).zip(ids) {
            self.weight.row(id as usize, self.in_dim, o);
        }
        out
    }
}
