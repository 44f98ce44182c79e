//! Activations quantized to int8 blocks, once per matmul input.
//!
//! K-quant weights take 256-value blocks (Q8_K-style), Q8_0 weights 32-value
//! ones. Each block keeps the sums of its quantized values over 16 and over
//! 32 entries: they turn the weight formats' offsets (Q4_K minimums, Q6_K's
//! −32 and the unsigned form of Q8_0 that `vpdpbusd` needs) into one exact
//! integer correction per block instead of per value.

use std::sync::OnceLock;

use crate::{QK8_0, QK_K};

/// `m` rows of `k` values as int8 with one f32 scale per `block` values.
#[derive(Debug, Clone)]
pub struct Q8Blocks {
    pub m: usize,
    pub k: usize,
    pub block: usize,
    pub qs: Vec<i8>,
    /// One scale per block, row-major.
    pub d: Vec<f32>,
    /// Sum of each 16 consecutive quantized values.
    pub bsum16: Vec<i32>,
    /// Sum of each 32 consecutive quantized values.
    pub bsum32: Vec<i32>,
    /// Pairs of consecutive `bsum16` as two i16 in one i32 (low first), for
    /// `vpdpwssd`/`vpmaddwd` against per-sub-block weight scales.
    pub bsum16_pairs: Vec<i32>,
    /// Pairs of consecutive `bsum32`, likewise.
    pub bsum32_pairs: Vec<i32>,
}

/// Two sums as the i16 halves of one i32. A sum of 32 values of at most 127
/// in magnitude fits in an i16.
fn pairs(sums: &[i32]) -> Vec<i32> {
    sums.chunks_exact(2).map(|p| (p[0] as i16 as u16 as u32 | ((p[1] as i16 as u16 as u32) << 16)) as i32).collect()
}

/// Round to nearest, ties to even, for |v| < 2^22: adding and subtracting
/// 1.5·2^23 leaves the integer part in the mantissa. Vectorises, unlike
/// `f32::round`, and is exact IEEE arithmetic on every target.
#[cfg(test)]
fn nearest(v: f32) -> i32 {
    ((v + 12_582_912.0) - 12_582_912.0) as i32
}

/// [`nearest`] as a float, for the vector loop below.
#[inline(always)]
fn rounded(v: f32) -> f32 {
    (v + 12_582_912.0) - 12_582_912.0
}

/// An integral float to int8 as `nearest(v).clamp(-127, 127)` gives it (a
/// NaN, from a NaN input among finite ones, becomes 0), clamped as a float
/// so the loop vectorises: the saturating `as i32` and an integer `clamp`
/// after it kept the loop scalar, three quarters of a quantization's time.
#[inline(always)]
fn to_i8(r: f32) -> i8 {
    let r = if r.is_nan() { 0.0 } else { r.clamp(-127.0, 127.0) };
    // SAFETY: `r` is integral (from `rounded`), finite and within ±127.
    unsafe { r.to_int_unchecked::<i32>() as i8 }
}

/// Quantizes whole blocks of `x` into `qs` and `d`, with their block sums.
/// The same code compiled for wider registers where the CPU has them: every
/// operation is exact IEEE arithmetic, so each build gives the same bytes.
fn quantize_rows(x: &[f32], block: usize, qs: &mut [i8], d: &mut [f32], bsum16: &mut [i32], bsum32: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::Avx512.available() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { quantize_rows_avx512(x, block, qs, d, bsum16, bsum32) };
    } else if crate::Isa::Avx2.available() {
        // SAFETY: as above.
        return unsafe { quantize_rows_avx2(x, block, qs, d, bsum16, bsum32) };
    }
    quantize_rows_any(x, block, qs, d, bsum16, bsum32)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantize_rows_avx512(
    x: &[f32],
    block: usize,
    qs: &mut [i8],
    d: &mut [f32],
    b16: &mut [i32],
    b32: &mut [i32],
) {
    quantize_rows_any(x, block, qs, d, b16, b32)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_rows_avx2(x: &[f32], block: usize, qs: &mut [i8], d: &mut [f32], b16: &mut [i32], b32: &mut [i32]) {
    quantize_rows_any(x, block, qs, d, b16, b32)
}

#[inline(always)]
fn quantize_rows_any(x: &[f32], block: usize, qs: &mut [i8], d: &mut [f32], bsum16: &mut [i32], bsum32: &mut [i32]) {
    for ((xb, qb), d) in x.chunks_exact(block).zip(qs.chunks_exact_mut(block)).zip(d.iter_mut()) {
        let amax = abs_max(xb);
        if amax > 0.0 && amax.is_finite() {
            let id = 127.0 / amax;
            for (q, &v) in qb.iter_mut().zip(xb) {
                *q = to_i8(rounded(v * id));
            }
            *d = amax / 127.0;
        }
    }
    for (s, c) in bsum16.iter_mut().zip(qs.chunks_exact(16)) {
        *s = c.iter().map(|&q| q as i32).sum();
    }
    for (s, c) in bsum32.iter_mut().zip(bsum16.chunks_exact(2)) {
        *s = c[0] + c[1];
    }
}

/// The largest |v| of a block (NaNs skipped, as `f32::max` does). Taken in
/// 16 lanes: max is exact, so any grouping gives the same value, and one
/// running maximum would be a chain of 256 dependent instructions per block.
#[inline(always)]
fn abs_max(xb: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = xb.chunks_exact(16);
    for c in chunks.by_ref() {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = m.max(v.abs());
        }
    }
    let tail = chunks.remainder().iter().fold(0f32, |a, v| a.max(v.abs()));
    lanes.iter().fold(tail, |a, &m| a.max(m))
}

impl Q8Blocks {
    /// Quantizes `x` (`m` rows of `k`) with a scale per `block` values:
    /// `d = amax / 127`, `q = nearest(x · 127 / amax)`.
    pub fn quantize(x: &[f32], m: usize, k: usize, block: usize) -> Self {
        assert!(block.is_multiple_of(32) && k.is_multiple_of(block) && x.len() == m * k, "caller checks shapes");
        let mut qs = vec![0i8; m * k];
        let mut d = vec![0f32; m * k / block];
        let mut bsum16 = vec![0i32; m * k / 16];
        let mut bsum32 = vec![0i32; m * k / 32];
        // Rows are independent: a long pass splits them over the threads.
        let parts = if m * k >= 1 << 15 { crate::pool::threads().clamp(1, m) } else { 1 };
        let mut pieces = Vec::with_capacity(parts);
        let (mut q, mut dd, mut s16, mut s32) = (&mut qs[..], &mut d[..], &mut bsum16[..], &mut bsum32[..]);
        for p in 0..parts {
            let rows = m * (p + 1) / parts - m * p / parts;
            let (q0, q1) = q.split_at_mut(rows * k);
            let (d0, d1) = dd.split_at_mut(rows * k / block);
            let (a0, a1) = s16.split_at_mut(rows * k / 16);
            let (b0, b1) = s32.split_at_mut(rows * k / 32);
            let x0 = &x[m * p / parts * k..][..rows * k];
            pieces.push(std::sync::Mutex::new((x0, q0, d0, a0, b0)));
            (q, dd, s16, s32) = (q1, d1, a1, b1);
        }
        crate::pool::run(parts, &|p| {
            let mut piece = pieces[p].lock().expect("one part per piece");
            let (x, ref mut q, ref mut d, ref mut s16, ref mut s32) = *piece;
            quantize_rows(x, block, q, d, s16, s32);
        });
        drop(pieces);
        let (bsum16_pairs, bsum32_pairs) = (pairs(&bsum16), pairs(&bsum32));
        Self { m, k, block, qs, d, bsum16, bsum32, bsum16_pairs, bsum32_pairs }
    }

    /// Row `r`'s quantized values.
    #[inline]
    pub fn row(&self, r: usize) -> &[i8] {
        &self.qs[r * self.k..(r + 1) * self.k]
    }

    #[inline]
    pub fn blocks_per_row(&self) -> usize {
        self.k / self.block
    }
}

/// One matmul input, quantized lazily for each weight format that reads it:
/// q, k and v (or gate and up) share one quantization.
pub struct Activations<'a> {
    x: &'a [f32],
    m: usize,
    k: usize,
    q8k: OnceLock<Q8Blocks>,
    q80: OnceLock<Q8Blocks>,
}

impl<'a> Activations<'a> {
    /// `x` holds `m` rows of `k` floats.
    pub fn new(x: &'a [f32], m: usize, k: usize) -> Self {
        assert_eq!(x.len(), m * k, "activations must be m x k");
        Self { x, m, k, q8k: OnceLock::new(), q80: OnceLock::new() }
    }

    pub fn rows(&self) -> usize {
        self.m
    }

    pub fn cols(&self) -> usize {
        self.k
    }

    pub fn f32(&self) -> &[f32] {
        self.x
    }

    /// 256-value blocks, for K-quant weights.
    pub fn q8k(&self) -> &Q8Blocks {
        self.q8k.get_or_init(|| Q8Blocks::quantize(self.x, self.m, self.k, QK_K))
    }

    /// 32-value blocks, for Q8_0 weights.
    pub fn q80(&self) -> &Q8Blocks {
        self.q80.get_or_init(|| Q8Blocks::quantize(self.x, self.m, self.k, QK8_0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abs_max_is_the_running_maximum() {
        let mut x: Vec<f32> = (0..300).map(|i| ((i * 7919 % 2003) as f32 - 1000.0) / 7.0).collect();
        x[17] = f32::NAN;
        x[250] = -1e6;
        for len in [0, 1, 15, 16, 33, 256, 300] {
            let want = x[..len].iter().fold(0f32, |a, v| a.max(v.abs()));
            assert_eq!(abs_max(&x[..len]).to_bits(), want.to_bits(), "{len} values");
        }
    }

    #[test]
    fn to_i8_is_nearest_then_clamp() {
        for v in [0.0, -0.0, 0.5, 1.5, -2.5, 126.6, -126.6, 127.4, 127.6, -127.6, 300.0, -1e9, f32::NAN] {
            let want = if v.is_nan() { 0 } else { nearest(v).clamp(-127, 127) as i8 };
            assert_eq!(to_i8(rounded(v)), want, "{v}");
        }
    }

    #[test]
    fn nearest_rounds_ties_to_even() {
        assert_eq!([0.5, 1.5, 2.5, -0.5, -1.5, 126.6, -126.6].map(nearest), [0, 2, 2, 0, -2, 127, -127]);
    }

    #[test]
    fn quantizes_within_half_a_step_and_sums_blocks() {
        let x: Vec<f32> = (0..512).map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0).collect();
        let q = Q8Blocks::quantize(&x, 2, 256, 256);
        for (i, &v) in x.iter().enumerate() {
            let d = q.d[i / 256];
            assert!((q.qs[i] as f32 * d - v).abs() <= d * 0.5 + 1e-6);
        }
        assert_eq!(q.bsum16.len(), 32);
        assert_eq!(q.bsum32[3], q.qs[96..128].iter().map(|&v| v as i32).sum::<i32>());
        assert_eq!(q.bsum32[3], q.bsum16[6] + q.bsum16[7]);
        let p = q.bsum32_pairs[1] as u32;
        assert_eq!(((p & 0xFFFF) as i16 as i32, (p >> 16) as i16 as i32), (q.bsum32[2], q.bsum32[3]));
    }

    #[test]
    fn a_split_over_threads_quantizes_the_same() {
        let (m, k) = (37, 2048);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 2003) as f32 - 1000.0) / 77.0).collect();
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        for block in [32, 256] {
            let a = one.install(|| Q8Blocks::quantize(&x, m, k, block));
            let b = three.install(|| Q8Blocks::quantize(&x, m, k, block));
            assert_eq!((a.qs, a.bsum16, a.bsum32_pairs), (b.qs, b.bsum16, b.bsum32_pairs));
            assert!(a.d == b.d);
        }
    }

    #[test]
    fn zero_and_non_finite_blocks_quantize_to_zero_without_panicking() {
        let mut x = vec![0f32; 64];
        x[40] = f32::NAN;
        x[41] = f32::INFINITY;
        let q = Q8Blocks::quantize(&x, 1, 64, 32);
        assert!(q.qs.iter().all(|&v| v == 0));
        assert_eq!(q.d[0], 0.0);
    }
}
