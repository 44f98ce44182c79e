//! Weights repacked once at load into column tiles made for the kernels.
//!
//! A matrix `[n, k]` (n output columns) becomes `ceil(n / 16)` tiles; the last
//! is padded with zero weights. Each tile is a run of blocks (superblocks of
//! 256 values for the K-quants, 32 for Q8_0) in increasing k, and each block
//! has two parts kept in two arrays: the quantized values ("quants", 64-byte
//! aligned vectors, streamed) and the scales ("meta").
//!
//! Quants: vector `v` of a block holds, at byte `4·c + i`, column `c`'s
//! value(s) for four consecutive k. The formats differ in what a byte holds:
//! - Q4_K: vector `v = 4·j + g` (sub-block `j` of 32, group `g` of 8 values):
//!   low nibble value `32j + 8g + i`, high nibble value `32j + 8g + 4 + i`.
//! - Q6_K: per sub-block `h` of 16 values, three vectors in the order they
//!   are used (one sequential stream): two of low nibbles as Q4_K (values
//!   `16h + 8s + i` and `16h + 8s + 4 + i` in vector `3h + s`), then one of
//!   high bit pairs (vector `3h + 2` holds, in bits `2t..2t+2`, the high bits
//!   of value `16h + 4t + i`).
//! - Q8_0: vector `g` holds value `4g + i` as int8.
//! - Q5_0: vectors 0..4 hold low nibbles as Q4_K's (value `8g + i` low,
//!   `8g + 4 + i` high, in vector `g`); vector 4 holds the fifth bits, value
//!   `4t + i` in bit `t`.
//!
//! Meta, per block, column-contiguous so one load serves 16 lanes:
//! - Q4_K: `sc[8][16]` u8, `m[8][16]` u8, `d[16]` f16, `dmin[16]` f16;
//! - Q6_K: `sc[16][16]` i8, `d[16]` f16;
//! - Q8_0, Q5_0: `d[16]` f16.
//!
//! Memory per column per 256 values: Q4_K 148 bytes (the file's 144 plus
//! unpacked 6-bit scales), Q6_K 210 (as the file), Q8_0 272 (as the file), Q5_0 176 (as the file).

pub use crate::format::Format;
use crate::reference::{decode_q4k, decode_q5_0, decode_q6k, decode_q8_0, f16};
use crate::{KernelError, TILE};

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A `[n, k]` weight matrix in tiles (see the module docs).
pub struct PackedMatrix {
    format: Format,
    n: usize,
    k: usize,
    quants: Vec<Line>,
    meta: Vec<u8>,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({:?}, {}x{})", self.format, self.n, self.k)
    }
}

impl PackedMatrix {
    /// Repacks `n` rows of `k` values in the file's block layout. Only the
    /// packed copy is kept: the caller's bytes can be dropped afterwards.
    pub fn from_ggml(format: Format, bytes: &[u8], n: usize, k: usize) -> Result<Self, KernelError> {
        let row = Self::row_bytes(format, k)?;
        if n == 0 || bytes.len() != n * row {
            return Err(KernelError::Shape { format, bytes: bytes.len(), n, k, block: format.block() });
        }
        Self::from_rows(format, n, k, |first, buf| {
            buf.copy_from_slice(&bytes[first * row..first * row + buf.len()]);
            Ok(())
        })
    }

    /// Bytes of one row of `k` values in the file's layout.
    pub fn row_bytes(format: Format, k: usize) -> Result<usize, KernelError> {
        let block = format.block();
        if k == 0 || !k.is_multiple_of(block) {
            return Err(KernelError::Shape { format, bytes: 0, n: 0, k, block });
        }
        Ok(k / block * format.block_bytes())
    }

    /// Repacks a matrix read a tile at a time: `read(first_row, buf)` fills
    /// `buf` with whole rows in the file's layout. Loading this way never
    /// holds more than one tile of the file's bytes beside the packed copy,
    /// so the peak memory of a load is the model's size, not its size plus
    /// its largest tensor.
    pub fn from_rows<E>(
        format: Format,
        n: usize,
        k: usize,
        mut read: impl FnMut(usize, &mut [u8]) -> Result<(), E>,
    ) -> Result<Self, E>
    where
        E: From<KernelError>,
    {
        let row = Self::row_bytes(format, k)?;
        if n == 0 {
            return Err(KernelError::Shape { format, bytes: 0, n, k, block: format.block() }.into());
        }
        let nb = k / format.block();
        let tiles = n.div_ceil(TILE);
        let (qb, mb) = (format.quant_bytes(), format.meta_bytes());
        let mut quants = vec![Line([0; 64]); tiles * nb * qb / 64];
        let mut meta = vec![0u8; tiles * nb * mb];
        // SAFETY: `Line` is 64 plain bytes, so the vector is a byte array.
        let qbytes = unsafe { std::slice::from_raw_parts_mut(quants.as_mut_ptr() as *mut u8, quants.len() * 64) };
        let mut buf = vec![0u8; TILE * row];
        for t in 0..tiles {
            let cols = TILE.min(n - t * TILE);
            read(t * TILE, &mut buf[..cols * row])?;
            for c in 0..cols {
                for b in 0..nb {
                    let src = &buf[c * row + b * format.block_bytes()..][..format.block_bytes()];
                    let q = &mut qbytes[(t * nb + b) * qb..][..qb];
                    let mt = &mut meta[(t * nb + b) * mb..][..mb];
                    match format {
                        Format::Q4K => pack_q4k(src, c, q, mt),
                        Format::Q6K => pack_q6k(src, c, q, mt),
                        Format::Q8_0 => pack_q8_0(src, c, q, mt),
                        Format::Q5_0 => pack_q5_0(src, c, q, mt),
                    }
                }
            }
        }
        Ok(Self { format, n, k, quants, meta })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input values per column.
    pub fn k(&self) -> usize {
        self.k
    }

    pub(crate) fn blocks(&self) -> usize {
        self.k / self.format.block()
    }

    pub(crate) fn tiles(&self) -> usize {
        self.n.div_ceil(TILE)
    }

    pub fn size_bytes(&self) -> usize {
        self.quants.len() * 64 + self.meta.len()
    }

    /// The quants and meta of tile `t`, all its blocks.
    #[inline]
    pub(crate) fn tile(&self, t: usize) -> (*const u8, *const u8) {
        let nb = self.blocks();
        let q = self.quants.as_ptr() as *const u8;
        // SAFETY (for callers): offsets stay inside the arrays for t < tiles().
        unsafe {
            (q.add(t * nb * self.format.quant_bytes()), self.meta.as_ptr().add(t * nb * self.format.meta_bytes()))
        }
    }

    fn quant_bytes(&self) -> &[u8] {
        // SAFETY: `Line` is 64 plain bytes.
        unsafe { std::slice::from_raw_parts(self.quants.as_ptr() as *const u8, self.quants.len() * 64) }
    }

    /// Column `col` as floats, with ggml's dequantization formulas (the same
    /// values as [`crate::reference::dequantize_row`] on the file's bytes).
    pub fn dequantize_row(&self, col: usize, out: &mut [f32]) {
        assert!(col < self.n && out.len() == self.k, "row {col} of {}x{}", self.n, self.k);
        let (t, c, nb) = (col / TILE, col % TILE, self.blocks());
        let (qb, mb) = (self.format.quant_bytes(), self.format.meta_bytes());
        let qs = self.quant_bytes();
        for b in 0..nb {
            let q = &qs[(t * nb + b) * qb..][..qb];
            let mt = &self.meta[(t * nb + b) * mb..][..mb];
            let o = &mut out[b * self.format.block()..][..self.format.block()];
            let h16 = |at: usize| f16(u16::from_le_bytes([mt[at + 2 * c], mt[at + 2 * c + 1]]));
            match self.format {
                Format::Q4K => {
                    let (d, dmin) = (h16(256), h16(288));
                    for (i, o) in o.iter_mut().enumerate() {
                        let j = i / 32;
                        let (sc, m) = (mt[j * 16 + c] as f32, mt[128 + j * 16 + c] as f32);
                        *o = (d * sc) * q4k_value(q, c, i) as f32 - dmin * m;
                    }
                }
                Format::Q6K => {
                    let d = h16(256);
                    for (i, o) in o.iter_mut().enumerate() {
                        let sc = mt[(i / 16) * 16 + c] as i8 as f32;
                        *o = (d * sc) * (q6k_value(q, c, i) as i32 - 32) as f32;
                    }
                }
                Format::Q8_0 => {
                    let d = h16(0);
                    for (i, o) in o.iter_mut().enumerate() {
                        *o = (q[(i / 4) * 64 + 4 * c + i % 4] as i8) as f32 * d;
                    }
                }
                Format::Q5_0 => {
                    let d = h16(0);
                    for (i, o) in o.iter_mut().enumerate() {
                        *o = (q5_0_value(q, c, i) as i32 - 16) as f32 * d;
                    }
                }
            }
        }
    }
}

/// Byte offset of column `c`'s value `i` (4 per vector) in vector `v`.
#[inline]
fn at(v: usize, c: usize, i: usize) -> usize {
    v * 64 + 4 * c + i
}

/// Q4_K value `i` of column `c` from a tile block's quants.
#[inline]
pub(crate) fn q4k_value(q: &[u8], c: usize, i: usize) -> u8 {
    let (j, g, rest) = (i / 32, (i % 32) / 8, i % 8);
    let byte = q[at(4 * j + g, c, rest % 4)];
    if rest < 4 {
        byte & 0xF
    } else {
        byte >> 4
    }
}

/// Q6_K value `i` (0..64, unsigned) of column `c`.
#[inline]
pub(crate) fn q6k_value(q: &[u8], c: usize, i: usize) -> u8 {
    let (h, s, rest) = (i / 16, (i % 16) / 8, i % 8);
    let lo = q[at(3 * h + s, c, rest % 4)];
    let lo = if rest < 4 { lo & 0xF } else { lo >> 4 };
    let t = (i % 16) / 4;
    let hi = (q[at(3 * h + 2, c, i % 4)] >> (2 * t)) & 3;
    lo | (hi << 4)
}

/// Q5_0 value `i` (0..32, unsigned) of column `c`.
#[inline]
pub(crate) fn q5_0_value(q: &[u8], c: usize, i: usize) -> u8 {
    let (g, rest) = (i / 8, i % 8);
    let byte = q[at(g, c, rest % 4)];
    let lo = if rest < 4 { byte & 0xF } else { byte >> 4 };
    lo | (((q[at(4, c, i % 4)] >> (i / 4)) & 1) << 4)
}

fn put16(meta: &mut [u8], at: usize, c: usize, v: u16) {
    meta[at + 2 * c..at + 2 * c + 2].copy_from_slice(&v.to_le_bytes());
}

fn pack_q4k(src: &[u8], c: usize, q: &mut [u8], meta: &mut [u8]) {
    let blk = decode_q4k(src);
    for j in 0..8 {
        for g in 0..4 {
            for i in 0..4 {
                let (lo, hi) = (blk.q[32 * j + 8 * g + i], blk.q[32 * j + 8 * g + 4 + i]);
                q[at(4 * j + g, c, i)] = lo | (hi << 4);
            }
        }
        meta[j * 16 + c] = blk.sc[j];
        meta[128 + j * 16 + c] = blk.m[j];
    }
    put16(meta, 256, c, blk.d);
    put16(meta, 288, c, blk.dmin);
}

fn pack_q6k(src: &[u8], c: usize, q: &mut [u8], meta: &mut [u8]) {
    let blk = decode_q6k(src);
    for g in 0..32 {
        for i in 0..4 {
            q[at(3 * (g / 2) + g % 2, c, i)] = (blk.q[8 * g + i] & 0xF) | ((blk.q[8 * g + 4 + i] & 0xF) << 4);
        }
    }
    for h in 0..16 {
        for i in 0..4 {
            let mut byte = 0u8;
            for t in 0..4 {
                byte |= (blk.q[16 * h + 4 * t + i] >> 4) << (2 * t);
            }
            q[at(3 * h + 2, c, i)] = byte;
        }
        meta[h * 16 + c] = blk.sc[h] as u8;
    }
    put16(meta, 256, c, blk.d);
}

fn pack_q8_0(src: &[u8], c: usize, q: &mut [u8], meta: &mut [u8]) {
    let blk = decode_q8_0(src);
    for g in 0..8 {
        for i in 0..4 {
            q[at(g, c, i)] = blk.q[4 * g + i] as u8;
        }
    }
    put16(meta, 0, c, blk.d);
}

fn pack_q5_0(src: &[u8], c: usize, q: &mut [u8], meta: &mut [u8]) {
    let blk = decode_q5_0(src);
    for g in 0..4 {
        for i in 0..4 {
            q[at(g, c, i)] = (blk.q[8 * g + i] & 0xF) | ((blk.q[8 * g + 4 + i] & 0xF) << 4);
        }
    }
    for i in 0..4 {
        let mut byte = 0u8;
        for t in 0..8 {
            byte |= (blk.q[4 * t + i] >> 4) << t;
        }
        q[at(4, c, i)] = byte;
    }
    put16(meta, 0, c, blk.d);
}
