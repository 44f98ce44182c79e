//! The file formats' blocks decoded to integers, and the kernels' defined
//! order restated over them: the scalar reference every path must equal bit
//! for bit (see the crate docs).

use crate::act::Activations;
use crate::packed::Format;
use crate::{QK8_0, QK_K};

pub(crate) fn f16(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// A Q4_K superblock: `w = d·sc[j]·q − dmin·m[j]` for value `i` of
/// sub-block `j = i / 32`.
pub struct Q4kBlock {
    pub d: u16,
    pub dmin: u16,
    pub sc: [u8; 8],
    pub m: [u8; 8],
    pub q: [u8; QK_K],
}

/// A Q6_K superblock: `w = d·sc[i / 16]·(q − 32)`.
pub struct Q6kBlock {
    pub d: u16,
    pub sc: [i8; 16],
    pub q: [u8; QK_K],
}

/// A Q8_0 block: `w = d·q`.
pub struct Q80Block {
    pub d: u16,
    pub q: [i8; QK8_0],
}

/// A Q5_0 block: `w = d·(q − 16)`, q in 0..32.
pub struct Q50Block {
    pub d: u16,
    pub q: [u8; QK8_0],
}

/// ggml's `block_q4_K`: f16 d, f16 dmin, 12 bytes of 6-bit scales and
/// minimums, 128 bytes of nibbles (each 64 values: low nibbles first).
pub fn decode_q4k(b: &[u8]) -> Q4kBlock {
    let s = &b[4..16];
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            m[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    let qs = &b[16..144];
    let mut q = [0u8; QK_K];
    for c in 0..4 {
        for l in 0..32 {
            q[64 * c + l] = qs[32 * c + l] & 0xF;
            q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
        }
    }
    Q4kBlock { d: le16(b, 0), dmin: le16(b, 2), sc, m, q }
}

/// ggml's `block_q6_K`: 128 bytes of low nibbles, 64 of high bit pairs,
/// 16 int8 scales, f16 d.
pub fn decode_q6k(b: &[u8]) -> Q6kBlock {
    let (ql, qh) = (&b[0..128], &b[128..192]);
    let mut sc = [0i8; 16];
    for (s, &v) in sc.iter_mut().zip(&b[192..208]) {
        *s = v as i8;
    }
    let mut q = [0u8; QK_K];
    for h in 0..2 {
        let (ql, qh) = (&ql[64 * h..], &qh[32 * h..]);
        for l in 0..32 {
            let o = 128 * h + l;
            q[o] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            q[o + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            q[o + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[o + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    Q6kBlock { d: le16(b, 208), sc, q }
}

/// ggml's `block_q8_0`: f16 d, 32 int8 values.
pub fn decode_q8_0(b: &[u8]) -> Q80Block {
    let mut q = [0i8; QK8_0];
    for (q, &v) in q.iter_mut().zip(&b[2..34]) {
        *q = v as i8;
    }
    Q80Block { d: le16(b, 0), q }
}

/// ggml's `block_q5_0`: f16 d, 32 high bits, 16 bytes of low nibbles (value
/// j in the low nibble of byte j, value j + 16 in its high nibble).
pub fn decode_q5_0(b: &[u8]) -> Q50Block {
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let mut q = [0u8; QK8_0];
    for j in 0..16 {
        q[j] = (b[6 + j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
        q[j + 16] = (b[6 + j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    Q50Block { d: le16(b, 0), q }
}

/// Row `r` of a `[n, k]` matrix in the file's layout, as floats, with
/// ggml's dequantization formulas (so an embedding lookup gives the values
/// llama.cpp gives).
pub fn dequantize_row(format: Format, bytes: &[u8], k: usize, r: usize, out: &mut [f32]) {
    let (block, size) = (format.block(), format.block_bytes());
    let per_row = k / block;
    for b in 0..per_row {
        let src = &bytes[(r * per_row + b) * size..][..size];
        let o = &mut out[b * block..(b + 1) * block];
        match format {
            Format::Q4K => {
                let blk = decode_q4k(src);
                let (d, dmin) = (f16(blk.d), f16(blk.dmin));
                for (i, o) in o.iter_mut().enumerate() {
                    let j = i / 32;
                    *o = (d * blk.sc[j] as f32) * blk.q[i] as f32 - dmin * blk.m[j] as f32;
                }
            }
            Format::Q6K => {
                let blk = decode_q6k(src);
                let d = f16(blk.d);
                for (i, o) in o.iter_mut().enumerate() {
                    *o = (d * blk.sc[i / 16] as f32) * (blk.q[i] as i32 - 32) as f32;
                }
            }
            Format::Q8_0 => {
                let blk = decode_q8_0(src);
                let d = f16(blk.d);
                for (o, &q) in o.iter_mut().zip(&blk.q) {
                    *o = q as f32 * d;
                }
            }
            Format::Q5_0 => {
                let blk = decode_q5_0(src);
                let d = f16(blk.d);
                for (o, &q) in o.iter_mut().zip(&blk.q) {
                    *o = (q as i32 - 16) as f32 * d;
                }
            }
        }
    }
}

/// `y[m, n] = x · Wᵀ` by the defined order, straight from the file's blocks.
pub fn matmul(format: Format, bytes: &[u8], n: usize, k: usize, x: &Activations<'_>, y: &mut [f32]) {
    let (block, size) = (format.block(), format.block_bytes());
    let per_row = k / block;
    let a = match format {
        Format::Q8_0 | Format::Q5_0 => x.q80(),
        _ => x.q8k(),
    };
    for r in 0..x.rows() {
        let xq = a.row(r);
        for c in 0..n {
            let mut acc = 0f32;
            for b in 0..per_row {
                let src = &bytes[(c * per_row + b) * size..][..size];
                let xb = &xq[b * block..(b + 1) * block];
                let dx = a.d[r * per_row + b];
                let dot = |q: &[u8], off: i32, lo: usize, len: usize| -> i32 {
                    (lo..lo + len).map(|i| (q[i] as i32 - off) * xb[i] as i32).sum()
                };
                match format {
                    Format::Q4K => {
                        let w = decode_q4k(src);
                        let isum: i32 = (0..8).map(|j| w.sc[j] as i32 * dot(&w.q, 0, 32 * j, 32)).sum();
                        let imin: i32 = (0..8).map(|j| w.m[j] as i32 * a.bsum32[(r * per_row + b) * 8 + j]).sum();
                        acc += (f16(w.d) * dx) * isum as f32;
                        acc -= (f16(w.dmin) * dx) * imin as f32;
                    }
                    Format::Q6K => {
                        let w = decode_q6k(src);
                        let isum: i32 = (0..16).map(|h| w.sc[h] as i32 * dot(&w.q, 32, 16 * h, 16)).sum();
                        acc += (f16(w.d) * dx) * isum as f32;
                    }
                    Format::Q8_0 => {
                        let w = decode_q8_0(src);
                        let isum: i32 = w.q.iter().zip(xb).map(|(&p, &q)| p as i32 * q as i32).sum();
                        acc += (f16(w.d) * dx) * isum as f32;
                    }
                    Format::Q5_0 => {
                        let w = decode_q5_0(src);
                        acc += (f16(w.d) * dx) * dot(&w.q, 16, 0, 32) as f32;
                    }
                }
            }
            y[r * n + c] = acc;
        }
    }
}
