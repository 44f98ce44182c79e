//! ouro's quantized matmul kernels.
//!
//! `y[m, n] = x[m, k] · Wᵀ` for the GGUF weight formats the pinned models
//! hold (Q4_K, Q6_K, Q8_0, Q5_0), with weights repacked once at load and
//! activations quantized once per matmul.
//!
//! # Why a crate of its own
//! This is the only `unsafe`, ISA-specific code in ouro. Keeping it apart
//! from the model and the speculative logic means it builds and tests on its
//! own (`cargo test -p ouro-kernels`), and nothing above it can depend on how
//! a tile is laid out.
//!
//! # Layout ([`packed`])
//! Output columns are grouped in tiles of [`TILE`] = 16. Within a tile the
//! quantized weights are interleaved so that one 64-byte vector holds four
//! consecutive k-values of each of the 16 columns: a single `vpdpbusd` (or
//! `vpmaddubsw` + `vpmaddwd` on AVX2) then yields 16 column partial sums at
//! once, one per 32-bit lane, against a broadcast of four activation bytes.
//! The weights of a tile are loaded once and applied to up to [`ROW_TILE`]
//! activation rows, so a verify pass of k ≤ 16 rows streams the weights from
//! memory once; larger k loops over row tiles while the tile sits in cache.
//!
//! # Bit-exact by construction
//! Every (row, column) result is defined by one scalar recipe, the same in
//! every tile shape, row count, thread count and ISA path:
//!
//! 1. Integer dot products inside a block are exact (i32, no overflow for any
//!    input the formats can encode), so it does not matter in which order or
//!    with which instructions they are formed.
//! 2. The float side runs block by block in increasing k, one lane per
//!    column, with separate multiplies and adds (never a fused multiply-add,
//!    which a portable path cannot reproduce cheaply):
//!    - Q4_K: `acc = acc + (d·dx)·isum; acc = acc - (dmin·dx)·imin`
//!    - Q6_K: `acc = acc + (d·dx)·isum`
//!    - Q8_0, Q5_0: `acc = acc + (d·dx)·isum` (per 32-value block)
//!
//!    where `d`, `dmin` are the weight block's f32 scales (exactly converted
//!    from the file's f16), `dx` the activation block's scale, `isum` and
//!    `imin` the block's exact integer sums (converted to f32 with
//!    round-to-nearest, the same in every path).
//!
//! Threads split output columns (whole tiles), never the k dimension, so the
//! thread count cannot change a result either. [`reference`](mod@reference) restates the
//! recipe directly over the file's blocks, and the tests hold every path to
//! it bit for bit.

mod act;
pub mod exp;
pub mod format;
mod isa;
pub mod lanes;
mod matmul;
pub mod packed;
pub mod pool;
pub mod reference;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use act::{Activations, Q8Blocks};
pub use isa::Isa;
pub use packed::{Format, PackedMatrix};

/// Output columns per tile (one 32-bit lane each in a 512-bit vector).
pub const TILE: usize = 16;
/// Activation rows that share one pass over a weight tile.
pub const ROW_TILE: usize = 16;

/// `out[row][lane]` of one tile for up to [`ROW_TILE`] rows.
pub(crate) type TileOut = [[f32; TILE]; ROW_TILE];
/// Values per K-quant superblock.
pub const QK_K: usize = 256;
/// Values per Q8_0 block.
pub const QK8_0: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{format:?} weights of {bytes} bytes are not a {n}x{k} matrix (k must be a multiple of {block})")]
    Shape { format: Format, bytes: usize, n: usize, k: usize, block: usize },
    #[error("OURO_KERNEL={0} is not one of auto, portable, avx2, avx512")]
    UnknownIsa(String),
    #[error("the {0} kernels were asked for, but this CPU lacks {1}")]
    Unavailable(&'static str, &'static str),
    #[error("matmul operands disagree: {0}")]
    Operands(String),
}

#[cfg(test)]
mod tests;
