//! Linear layers over candle's quantized block formats.

use std::sync::Arc;

use candle_core::quantized::k_quants::{self, GgmlType};
use candle_core::quantized::{GgmlDType, QTensor};

use super::{ModelError, Result};

/// A weight matrix `[out, in]` in its file's block format.
///
/// The matmul goes through candle's generic `k_quants::matmul`, on purpose:
/// it computes each (row, column) with the same dot product whatever the
/// number of rows, so the forward pass is batch-invariant. candle's
/// `QMatMul` may instead route Q4_K/Q6_K through repacked x86 kernels chosen
/// by the row count, whose results differ between one row and several (by
/// up to 0.37 in the logits of Qwen2.5-1.5B), which would break byte-identical
/// greedy speculation.
pub enum QWeight {
    /// Q8_0, repacked for ouro's own kernel (see `kernels`).
    Q8(super::kernels::Q8Matrix),
    F32(Vec<f32>),
    Q4_0(Vec<k_quants::BlockQ4_0>),
    Q4_1(Vec<k_quants::BlockQ4_1>),
    Q5_0(Vec<k_quants::BlockQ5_0>),
    Q5_1(Vec<k_quants::BlockQ5_1>),
    Q8_0(Vec<k_quants::BlockQ8_0>),
    Q2K(Vec<k_quants::BlockQ2K>),
    Q3K(Vec<k_quants::BlockQ3K>),
    Q4K(Vec<k_quants::BlockQ4K>),
    Q5K(Vec<k_quants::BlockQ5K>),
    Q6K(Vec<k_quants::BlockQ6K>),
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
            QWeight::Q8(_) => unreachable!("handled by the caller"),
            QWeight::F32($v) => $body,
            QWeight::Q4_0($v) => $body,
            QWeight::Q4_1($v) => $body,
            QWeight::Q5_0($v) => $body,
            QWeight::Q5_1($v) => $body,
            QWeight::Q8_0($v) => $body,
            QWeight::Q2K($v) => $body,
            QWeight::Q3K($v) => $body,
            QWeight::Q4K($v) => $body,
            QWeight::Q5K($v) => $body,
            QWeight::Q6K($v) => $body,
        }
    };
}

impl QWeight {
    pub fn from_qtensor(t: &QTensor) -> Result<Self> {
        let data = t.data()?;
        if t.dtype() == GgmlDType::Q8_0 {
            let (n, k) = t.shape().dims2()?;
            return super::kernels::Q8Matrix::from_q8_0_bytes(&data, n, k).map(Self::Q8).ok_or_else(|| {
                ModelError::InvalidInput(format!("Q8_0 tensor of {} bytes is not {n}x{k}", data.len()))
            });
        }
        Ok(match t.dtype() {
            GgmlDType::F32 => Self::F32(blocks(&data)?),
            GgmlDType::Q4_0 => Self::Q4_0(blocks(&data)?),
            GgmlDType::Q4_1 => Self::Q4_1(blocks(&data)?),
            GgmlDType::Q5_0 => Self::Q5_0(blocks(&data)?),
            GgmlDType::Q5_1 => Self::Q5_1(blocks(&data)?),
            GgmlDType::Q8_0 => Self::Q8_0(blocks(&data)?),
            GgmlDType::Q2K => Self::Q2K(blocks(&data)?),
            GgmlDType::Q3K => Self::Q3K(blocks(&data)?),
            GgmlDType::Q4K => Self::Q4K(blocks(&data)?),
            GgmlDType::Q5K => Self::Q5K(blocks(&data)?),
            GgmlDType::Q6K => Self::Q6K(blocks(&data)?),
            other => return Err(ModelError::UnsupportedDType { tensor: "weight".into(), dtype: format!("{other:?}") }),
        })
    }

    fn block_size(&self) -> usize {
        fn bs<T: GgmlType>(_: &[T]) -> usize {
            T::BLCK_SIZE
        }
        if let Self::Q8(_) = self {
            return super::kernels::QK;
        }
        each_format!(self, v => bs(v))
    }

    fn matmul(&self, mkn: (usize, usize, usize), x: &[f32], y: &mut [f32]) -> Result<()> {
        if let Self::Q8(w) = self {
            w.matmul(x, mkn.0, y);
            return Ok(());
        }
        each_format!(self, v => k_quants::matmul(mkn, x, v, y))?;
        Ok(())
    }

    /// Dequantizes row `r` of a `[rows, cols]` matrix into `out`.
    fn row(&self, r: usize, cols: usize, out: &mut [f32]) {
        fn deq<T: GgmlType>(v: &[T], r: usize, cols: usize, out: &mut [f32]) {
            let per_row = cols / T::BLCK_SIZE;
            T::to_float(&v[r * per_row..(r + 1) * per_row], out);
        }
        if let Self::Q8(w) = self {
            return w.row(r, out);
        }
        each_format!(self, v => deq(v, r, cols, out))
    }

    pub fn size_bytes(&self) -> usize {
        fn sz<T>(v: &[T]) -> usize {
            std::mem::size_of_val(v)
        }
        if let Self::Q8(w) = self {
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
    pub fn new(weight: &QTensor, bias: Option<Vec<f32>>, name: &str) -> Result<Self> {
        let (out_dim, in_dim) = weight.shape().dims2().map_err(|_| ModelError::BadFile {
            path: name.to_string(),
            reason: format!("weight has shape {:?}, expected 2 dims", weight.shape()),
        })?;
        Self::from_weight(Arc::new(QWeight::from_qtensor(weight)?), (out_dim, in_dim), bias, name)
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
        if x.len() != rows * self.in_dim {
            return Err(ModelError::InvalidInput(format!(
                "linear input has {} floats, expected {rows}x{}",
                x.len(),
                self.in_dim
            )));
        }
        let mut y = vec![0f32; rows * self.out_dim];
        self.weight.matmul((rows, self.in_dim, self.out_dim), x, &mut y)?;
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(self.out_dim) {
                for (y, b) in row.iter_mut().zip(b) {
                    *y += b;
                }
            }
        }
        Ok(y)
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
