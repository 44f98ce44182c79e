//! The weight formats the kernels run on directly.

use crate::{QK8_0, QK_K};

/// A weight format with a kernel of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Q4K,
    Q6K,
    Q8_0,
    /// ggml's legacy 5-bit format (the Qwen2.5 0.5B's 896-wide matrices,
    /// whose rows are not whole K-quant superblocks).
    Q5_0,
}

impl Format {
    /// Values per block.
    pub const fn block(self) -> usize {
        match self {
            Format::Q4K | Format::Q6K => QK_K,
            Format::Q8_0 | Format::Q5_0 => QK8_0,
        }
    }

    /// Bytes per block in the GGUF file.
    pub const fn block_bytes(self) -> usize {
        match self {
            Format::Q4K => 144,
            Format::Q6K => 210,
            Format::Q8_0 => 34,
            Format::Q5_0 => 22,
        }
    }

    /// Quant bytes per tile block.
    pub(crate) const fn quant_bytes(self) -> usize {
        match self {
            Format::Q4K => 2048,
            Format::Q6K => 3072,
            Format::Q8_0 => 512,
            Format::Q5_0 => 320,
        }
    }

    /// Meta bytes per tile block.
    pub(crate) const fn meta_bytes(self) -> usize {
        match self {
            Format::Q4K => 320,
            Format::Q6K => 288,
            Format::Q8_0 | Format::Q5_0 => 32,
        }
    }
}
