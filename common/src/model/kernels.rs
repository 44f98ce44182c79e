//! ouro's own Q8_0 matmul kernel.
//!
//! candle's x86 Q8_0 dot product converts both block scales through a
//! non-inlined f16 call per 32 values, which spills the accumulator to the
//! stack every block and leaves it latency-bound (~4 GMAC/s per core here).
//! This kernel keeps weights as int8 rows with f32 block scales (converted
//! once at load), and computes several dot products per pass so that a
//! weight block loaded once serves up to four activation rows: a k-token
//! verification then costs far less than k decode steps.
//!
//! Batch invariance is kept by construction: every (row, column) result is
//! accumulated in its own register, block by block in the same order, and
//! reduced the same way, whichever micro-kernel (1x4, 4x1 or 4x2) computed it.

use rayon::prelude::*;

pub const QK: usize = 32;

/// A `[n, k]` weight matrix as int8 with one f32 scale per 32 values.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    pub n: usize,
    pub k: usize,
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
}

/// Activations quantized per 32-value block (ggml's Q8_0 rounding).
pub struct Q8Rows {
    pub m: usize,
    pub k: usize,
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
}

impl Q8Rows {
    pub fn quantize(x: &[f32], m: usize, k: usize) -> Self {
        debug_assert_eq!(x.len(), m * k);
        let mut qs = vec![0i8; m * k];
        let mut d = vec![0f32; m * k / QK];
        for (b, (xb, qb)) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).enumerate() {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            for (q, v) in qb.iter_mut().zip(xb) {
                *q = (v * inv).round() as i8;
            }
            d[b] = scale;
        }
        Self { m, k, qs, d }
    }
}

impl Q8Matrix {
    /// From ggml Q8_0 blocks: an f16 scale followed by 32 int8 values.
    pub fn from_q8_0_bytes(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        const BLOCK: usize = 2 + QK;
        if !k.is_multiple_of(QK) || bytes.len() != n * k / QK * BLOCK {
            return None;
        }
        let blocks = n * k / QK;
        let mut qs = Vec::with_capacity(n * k);
        let mut d = Vec::with_capacity(blocks);
        for b in bytes.chunks_exact(BLOCK) {
            d.push(half::f16::from_le_bytes([b[0], b[1]]).to_f32());
            qs.extend(b[2..].iter().map(|&v| v as i8));
        }
        Some(Self { n, k, qs, d })
    }

    pub fn size_bytes(&self) -> usize {
        self.qs.len() + self.d.len() * 4
    }

    /// Dequantizes row `r` into `out`.
    pub fn row(&self, r: usize, out: &mut [f32]) {
        let kb = self.k / QK;
        for b in 0..kb {
            let d = self.d[r * kb + b];
            for j in 0..QK {
                out[b * QK + j] = self.qs[r * self.k + b * QK + j] as f32 * d;
            }
        }
    }

    /// `y[m, n] = x[m, k] W^T`.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let a = Q8Rows::quantize(x, m, self.k);
        let n = self.n;
        // Columns are split into chunks computed in parallel into a
        // column-major scratch, then transposed: each chunk owns its output.
        const CHUNK: usize = 64;
        let mut yt = vec![0f32; n * m];
        let work = |(ci, out): (usize, &mut [f32])| {
            let cols = out.len() / m;
            self.block(&a, ci * CHUNK, cols, out);
        };
        // Waking pool threads costs more than it saves on one core.
        if rayon::current_num_threads() == 1 {
            yt.chunks_mut(CHUNK * m).enumerate().for_each(work);
        } else {
            yt.par_chunks_mut(CHUNK * m).enumerate().for_each(work);
        }
        for c in 0..n {
            for r in 0..m {
                y[r * n + c] = yt[c * m + r];
            }
        }
    }

    /// Columns `c0..c0+cols` for every row, into `out[col][row]`.
    fn block(&self, a: &Q8Rows, c0: usize, cols: usize, out: &mut [f32]) {
        let m = a.m;
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: AVX2 and FMA were detected at run time.
            unsafe { avx::block(self, a, c0, cols, out) };
            return;
        }
        for c in 0..cols {
            for r in 0..m {
                out[c * m + r] = scalar_dot(self, c0 + c, a, r);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Portable fallback; not bit-identical to the AVX2 path (different
/// summation order), which only matters between machines, never within one.
fn scalar_dot(w: &Q8Matrix, c: usize, a: &Q8Rows, r: usize) -> f32 {
    let kb = w.k / QK;
    let mut acc = 0f32;
    for b in 0..kb {
        let wq = &w.qs[c * w.k + b * QK..c * w.k + (b + 1) * QK];
        let xq = &a.qs[r * a.k + b * QK..r * a.k + (b + 1) * QK];
        let s: i32 = wq.iter().zip(xq).map(|(&p, &q)| p as i32 * q as i32).sum();
        acc += s as f32 * (w.d[c * kb + b] * a.d[r * kb + b]);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{Q8Matrix, Q8Rows, QK};
    use std::arch::x86_64::*;

    /// One block's integer dot product of `w` and `x` as 8 f32 lanes.
    #[inline(always)]
    unsafe fn block_dot(aw: __m256i, w: __m256i, x: __m256i) -> __m256 {
        let sx = _mm256_sign_epi8(x, w);
        let p16 = _mm256_maddubs_epi16(aw, sx);
        let p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
        _mm256_cvtepi32_ps(p32)
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(hi, _mm256_castps256_ps128(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[inline(always)]
    unsafe fn load(p: *const i8) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }

    /// `C` columns of one activation row (decode): the row's block is
    /// loaded once per `C` weight blocks.
    #[inline(always)]
    unsafe fn cols<const C: usize>(w: &Q8Matrix, a: &Q8Rows, col: usize, r: usize) -> [f32; C] {
        let (k, kb) = (w.k, w.k / QK);
        let mut wq = [std::ptr::null::<i8>(); C];
        let mut wd = [std::ptr::null::<f32>(); C];
        for j in 0..C {
            wq[j] = w.qs.as_ptr().add((col + j) * k);
            wd[j] = w.d.as_ptr().add((col + j) * kb);
        }
        let (mut xq, mut xd) = (a.qs.as_ptr().add(r * k), a.d.as_ptr().add(r * kb));
        let mut acc = [_mm256_setzero_ps(); C];
        for _ in 0..kb {
            let x = load(xq);
            let dx = *xd;
            for j in 0..C {
                let wv = load(wq[j]);
                let p = block_dot(_mm256_sign_epi8(wv, wv), wv, x);
                acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(*wd[j] * dx), p, acc[j]);
                wq[j] = wq[j].add(QK);
                wd[j] = wd[j].add(1);
            }
            xq = xq.add(QK);
            xd = xd.add(1);
        }
        let mut out = [0f32; C];
        for j in 0..C {
            out[j] = hsum(acc[j]);
        }
        out
    }

    /// `R` activation rows of one column: the weight block is loaded and
    /// sign-folded once for all of them.
    #[inline(always)]
    unsafe fn rows<const R: usize>(w: &Q8Matrix, a: &Q8Rows, col: usize, r: usize) -> [f32; R] {
        let (k, kb) = (w.k, w.k / QK);
        let (mut wq, mut wd) = (w.qs.as_ptr().add(col * k), w.d.as_ptr().add(col * kb));
        let mut xq = [std::ptr::null::<i8>(); R];
        let mut xd = [std::ptr::null::<f32>(); R];
        for i in 0..R {
            xq[i] = a.qs.as_ptr().add((r + i) * k);
            xd[i] = a.d.as_ptr().add((r + i) * kb);
        }
        let mut acc = [_mm256_setzero_ps(); R];
        for _ in 0..kb {
            let wv = load(wq);
            let aw = _mm256_sign_epi8(wv, wv);
            let dw = *wd;
            for i in 0..R {
                let p = block_dot(aw, wv, load(xq[i]));
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * *xd[i]), p, acc[i]);
                xq[i] = xq[i].add(QK);
                xd[i] = xd[i].add(1);
            }
            wq = wq.add(QK);
            wd = wd.add(1);
        }
        let mut out = [0f32; R];
        for i in 0..R {
            out[i] = hsum(acc[i]);
        }
        out
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block(w: &Q8Matrix, a: &Q8Rows, c0: usize, cols_n: usize, out: &mut [f32]) {
        let m = a.m;
        let mut c = 0;
        if m == 1 {
            while c + 4 <= cols_n {
                out[c..c + 4].copy_from_slice(&cols::<4>(w, a, c0 + c, 0));
                c += 4;
            }
        }
        while c < cols_n {
            let col = c0 + c;
            let o = &mut out[c * m..(c + 1) * m];
            let mut r = 0;
            while r + 4 <= m {
                o[r..r + 4].copy_from_slice(&rows::<4>(w, a, col, r));
                r += 4;
            }
            match m - r {
                3 => o[r..].copy_from_slice(&rows::<3>(w, a, col, r)),
                2 => o[r..].copy_from_slice(&rows::<2>(w, a, col, r)),
                1 => o[r..].copy_from_slice(&rows::<1>(w, a, col, r)),
                _ => {}
            }
            c += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(n: usize, k: usize, seed: u32) -> Q8Matrix {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 24) as i8
        };
        let qs: Vec<i8> = (0..n * k).map(|_| next()).collect();
        let d: Vec<f32> = (0..n * k / QK).map(|i| 0.01 + (i % 7) as f32 * 0.003).collect();
        Q8Matrix { n, k, qs, d }
    }

    #[test]
    fn matches_dequantized_reference() {
        let (n, k, m) = (37, 96, 5);
        let w = matrix(n, k, 1);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 - 48.0) / 13.0).collect();
        let mut y = vec![0f32; m * n];
        w.matmul(&x, m, &mut y);
        let a = Q8Rows::quantize(&x, m, k);
        let mut wrow = vec![0f32; k];
        for c in 0..n {
            w.row(c, &mut wrow);
            for r in 0..m {
                let xr: Vec<f32> = (0..k).map(|j| a.qs[r * k + j] as f32 * a.d[r * k / QK + j / QK]).collect();
                let exact: f32 = wrow.iter().zip(&xr).map(|(p, q)| p * q).sum();
                assert!((y[r * n + c] - exact).abs() < 1e-3 * (1.0 + exact.abs()), "({r},{c})");
            }
        }
    }

    #[test]
    fn every_row_count_gives_bitwise_the_same_rows() {
        let (n, k) = (70, 128);
        let w = matrix(n, k, 7);
        let x: Vec<f32> = (0..9 * k).map(|i| ((i * 17 % 101) as f32 - 50.0) / 7.0).collect();
        let mut all = vec![0f32; 9 * n];
        w.matmul(&x, 9, &mut all);
        for m in 1..=9 {
            let mut y = vec![0f32; m * n];
            w.matmul(&x[..m * k], m, &mut y);
            assert!(y[..] == all[..m * n], "m = {m}");
        }
    }
}
