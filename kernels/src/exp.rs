//! The exponential of softmax and SiLU, with the same bits on every path.
//!
//! libm's `expf` is a function call per value (about 3% of a 16-token verify
//! pass, plus the spills around each call in the softmax loop), and its bits
//! are the C library's business: glibc picks an FMA or a plain variant by
//! CPU. This one is a fixed sequence of IEEE operations (Cephes' `expf`:
//! round to a power of two, a degree-5 polynomial on the remainder, separate
//! multiplies and adds, never fused), so the scalar code and the 8-lane AVX2
//! code give the same bits for every input, on every machine. Relative error
//! is within 2 ulp of the true value over the range softmax and SiLU use.

/// Inputs are clamped to `[LO, HI]`: below, `exp` returns its smallest normal
/// result (~1.2e-38, a softmax weight that adds nothing); above, it saturates
/// at e^88 (~1.7e38) instead of overflowing (`silu` divides by `1 + e^-x`, so
/// that is a value below 1e-36 in magnitude either way).
const LO: f32 = -87.336_55;
const HI: f32 = 88.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so `x - n·ln2` loses nothing for |n| ≤ 128.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];

/// `e^x`. Rust never contracts a multiply and an add, so this is the exact
/// operation sequence the vector paths spell out.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Not `clamp`: it keeps a NaN, where `minps`/`maxps` (and so the vector
    // path) return the bound; min then max gives the vector path's bits.
    #[allow(clippy::manual_clamp)]
    let x = x.min(HI).max(LO);
    let n = (x * LOG2E + 0.5).floor();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let z = r * r;
    let mut y = P[0];
    for p in &P[1..] {
        y = y * r + p;
    }
    let y = (y * z + r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `x = e^x` for each value.
pub fn exp_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::Avx2.available() {
        // SAFETY: AVX2 was detected.
        return unsafe { x86::exp_in_place(xs) };
    }
    xs.iter_mut().for_each(|x| *x = exp(*x));
}

/// `gate = silu(gate) · up`, that is `gate / (1 + e^-gate) · up`, elementwise.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let up = &up[..gate.len()];
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::Avx2.available() {
        // SAFETY: AVX2 was detected; `up` is as long as `gate`.
        return unsafe { x86::silu_mul(gate, up) };
    }
    gate.iter_mut().zip(up).for_each(|(g, &u)| *g = silu_mul_one(*g, u));
}

#[inline(always)]
fn silu_mul_one(g: f32, u: f32) -> f32 {
    g / (1.0 + exp(-g)) * u
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(HI)), _mm256_set1_ps(LO));
        let n = _mm256_floor_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _mm256_set1_ps(0.5)));
        let r = _mm256_sub_ps(
            _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(LN2_HI))),
            _mm256_mul_ps(n, _mm256_set1_ps(LN2_LO)),
        );
        let z = _mm256_mul_ps(r, r);
        let mut y = _mm256_set1_ps(P[0]);
        for p in &P[1..] {
            y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(*p));
        }
        let y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(y, z), r), _mm256_set1_ps(1.0));
        let pow2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
        _mm256_mul_ps(y, _mm256_castsi256_ps(pow2))
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn exp_in_place(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(8);
        for c in chunks.by_ref() {
            _mm256_storeu_ps(c.as_mut_ptr(), exp8(_mm256_loadu_ps(c.as_ptr())));
        }
        chunks.into_remainder().iter_mut().for_each(|x| *x = exp(*x));
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
        let whole = gate.len() / 8 * 8;
        for i in (0..whole).step_by(8) {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
            let s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), e));
            _mm256_storeu_ps(gate.as_mut_ptr().add(i), _mm256_mul_ps(s, _mm256_loadu_ps(up.as_ptr().add(i))));
        }
        for i in whole..gate.len() {
            gate[i] = silu_mul_one(gate[i], up[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs across the range, the clamps, the integer steps of the
    /// rounding and a few hundred pseudo-random points.
    fn inputs() -> Vec<f32> {
        let mut v = vec![0.0, -0.0, 1.0, -1.0, 0.5, -0.5, LO, HI, LO - 1.0, HI + 1.0, -200.0, 200.0, 1e-8, -1e-8];
        v.extend((-88..=88).map(|i| i as f32));
        v.extend((-88..=88).map(|i| i as f32 + 0.5));
        let mut s = 12345u32;
        for _ in 0..2000 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            v.push((s >> 8) as f32 / (1u32 << 24) as f32 * 60.0 - 40.0);
        }
        v
    }

    #[test]
    fn close_to_the_true_exponential() {
        for x in inputs() {
            let got = exp(x) as f64;
            let want = (x.clamp(LO, HI) as f64).exp();
            if want < f32::MIN_POSITIVE as f64 * 2.0 {
                assert!(got <= f32::MIN_POSITIVE as f64 * 2.0, "exp({x}) = {got}, want ~0");
                continue;
            }
            let rel = ((got - want) / want).abs();
            assert!(rel < 2.5 * f32::EPSILON as f64, "exp({x}) = {got}, want {want} (rel {rel:e})");
        }
    }

    #[test]
    fn vector_and_scalar_give_the_same_bits() {
        let mut xs = inputs();
        xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        let mut v = xs.clone();
        exp_in_place(&mut v);
        for (x, y) in xs.iter().zip(&v) {
            assert_eq!(y.to_bits(), exp(*x).to_bits(), "exp({x})");
        }
        let up: Vec<f32> = xs.iter().map(|x| 1.0 - x * 0.01).collect();
        let mut g = xs.clone();
        silu_mul(&mut g, &up);
        for ((x, u), y) in xs.iter().zip(&up).zip(&g) {
            assert_eq!(y.to_bits(), silu_mul_one(*x, *u).to_bits(), "silu({x}) * {u}");
        }
    }

    #[test]
    fn silu_saturates_instead_of_overflowing() {
        let mut g = [-200.0f32, 200.0, 0.0];
        silu_mul(&mut g, &[1.0, 1.0, 1.0]);
        assert!(g[0] <= 0.0 && g[0] > -1e-30, "{}", g[0]);
        assert_eq!(g[1], 200.0);
        assert_eq!(g[2], 0.0);
    }
}
