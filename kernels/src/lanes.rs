//! f32 dot products with eight fixed lanes, several at a time, and weighted
//! sums of rows, for attention.
//!
//! The order is the runtime's `dot`: lane `l` sums `a[8c + l]·b[8c + l]` over
//! the chunks `c` in order (a multiply, then an add), the lanes combine as
//! `((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7))`, and the tail past the
//! last whole chunk is summed in order and added last. Every path gives the
//! same bits; only the speed differs. (It lives here, not in the runtime,
//! because the runtime's crate keeps debug assertions in its optimised dev
//! builds, and they put a check around every unaligned vector load.)

/// The four dot products of `a` with `b[0..4]`, each exactly as [`dot`].
pub fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    let n = a.len();
    let b = [&b[0][..n], &b[1][..n], &b[2][..n], &b[3][..n]];
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::Avx2.available() {
        // SAFETY: AVX2 was detected; every `b[j]` holds `n` values.
        return unsafe { dot4_avx2(a, b) };
    }
    std::array::from_fn(|j| dot(a, b[j]))
}

/// Every query against every key, scaled: `out[i * stride + j] =
/// dot(q[i], k[j]) * scale`, each dot exactly as [`dot`] and then one
/// multiply. Attention's scores for a block of keys: the keys are read from
/// memory once for all the queries, four at a time, and on x86 the lanes
/// combine in registers.
///
/// `next` are rows the caller reads next (the following block of keys):
/// their lines are asked for while these are summed, spread over the work,
/// since a long context's keys come from memory and the hardware sees too
/// short a stream per row to fetch them in time.
pub fn dots_scaled(q: &[&[f32]], k: &[&[f32]], scale: f32, out: &mut [f32], stride: usize, next: &[&[f32]]) {
    let Some(n) = q.first().map(|q| q.len()) else { return };
    if k.is_empty() {
        return;
    }
    assert!(q.iter().chain(k).all(|r| r.len() == n), "rows of different lengths");
    assert!(k.len() <= stride && out.len() >= (q.len() - 1) * stride + k.len(), "scores out of bounds");
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::Avx2.available() && n.is_multiple_of(8) {
        // SAFETY: AVX2 was detected; the lengths were checked above.
        return unsafe { dots_scaled_avx2(q, k, scale, out, stride, next) };
    }
    for (i, q) in q.iter().enumerate() {
        for (j, k) in k.iter().enumerate() {
            out[i * stride + j] = dot(q, k) * scale;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dots_scaled_avx2(q: &[&[f32]], k: &[&[f32]], scale: f32, out: &mut [f32], stride: usize, next: &[&[f32]]) {
    use std::arch::x86_64::*;
    let chunks = q[0].len() / 8;
    let quads = k.len() / 4;
    let scale8 = _mm256_set1_ps(scale);
    let per_quad = next.len().div_ceil(quads.max(1));
    for jq in 0..quads {
        for row in next.iter().skip(jq * per_quad).take(per_quad) {
            prefetch_row(row);
        }
        let kp = [0, 1, 2, 3].map(|t| k[4 * jq + t].as_ptr());
        let mut i = 0;
        while i + 2 <= q.len() {
            let qp = [q[i].as_ptr(), q[i + 1].as_ptr()];
            let mut s = [_mm256_setzero_ps(); 8];
            for c in 0..chunks {
                let x = [_mm256_loadu_ps(qp[0].add(c * 8)), _mm256_loadu_ps(qp[1].add(c * 8))];
                for (t, kp) in kp.iter().enumerate() {
                    let y = _mm256_loadu_ps(kp.add(c * 8));
                    // A multiply, then an add, lane by lane (never fused).
                    s[t] = _mm256_add_ps(s[t], _mm256_mul_ps(x[0], y));
                    s[4 + t] = _mm256_add_ps(s[4 + t], _mm256_mul_ps(x[1], y));
                }
            }
            let r = _mm256_mul_ps(combine8(s), scale8);
            let o = out.as_mut_ptr();
            _mm_storeu_ps(o.add(i * stride + 4 * jq), _mm256_castps256_ps128(r));
            _mm_storeu_ps(o.add((i + 1) * stride + 4 * jq), _mm256_extractf128_ps::<1>(r));
            i += 2;
        }
        if i < q.len() {
            let d = dot4_avx2(q[i], [k[4 * jq], k[4 * jq + 1], k[4 * jq + 2], k[4 * jq + 3]]);
            for t in 0..4 {
                out[i * stride + 4 * jq + t] = d[t] * scale;
            }
        }
    }
    for j in 4 * quads..k.len() {
        for (i, q) in q.iter().enumerate() {
            out[i * stride + j] = dot(q, k[j]) * scale;
        }
    }
}

/// `out[i] += w[i][j] · v[j]` for every query `i` (`d` floats at `i * d`)
/// and value row `j` in order: per element the adds of [`axpy`](fn@axpy)
/// one value at a time (a multiply, then an add), so the bits are those of
/// `for j { for i { axpy(out[i], w[i][j], v[j]) } }`. Attention's weighted
/// sum for a block of values: on x86 two queries' 32-float stretches stay
/// in registers across the block, and each value is loaded once for both.
/// `next` are rows read next, fetched meanwhile (see [`dots_scaled`]).
pub fn axpy_rows(out: &mut [f32], d: usize, w: &[&[f32]], v: &[&[f32]], next: &[&[f32]]) {
    if v.is_empty() || d == 0 {
        return;
    }
    assert!(out.len() == w.len() * d, "one output of {d} floats per query");
    assert!(w.iter().all(|w| w.len() >= v.len()) && v.iter().all(|v| v.len() == d), "rows out of bounds");
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::Avx2.available() && d.is_multiple_of(32) {
        // SAFETY: AVX2 was detected; the lengths were checked above.
        return unsafe { axpy_rows_avx2(out, d, w, v, next) };
    }
    for (j, v) in v.iter().enumerate() {
        for (o, w) in out.chunks_exact_mut(d).zip(w) {
            axpy(o, w[j], v);
        }
    }
}

/// `y += a * x`, element by element (the portable path and the reference).
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_rows_avx2(out: &mut [f32], d: usize, w: &[&[f32]], v: &[&[f32]], next: &[&[f32]]) {
    use std::arch::x86_64::*;
    let o = out.as_mut_ptr();
    let mut i = 0;
    while i < w.len() {
        let two = i + 1 < w.len();
        for g in (0..d).step_by(32) {
            if i == 0 {
                // The next rows' lines spread over the stretches (d = 128:
                // 2 of each row's 8 lines per stretch).
                let per = lines(d).div_ceil(d / 32);
                for row in next {
                    prefetch_lines(row, (g / 32) * per..((g / 32 + 1) * per).min(lines(d)));
                }
            }
            let (y0, y1) = (o.add(i * d + g), o.add((i + 1) * d + g));
            let mut a = [0, 8, 16, 24].map(|e| _mm256_loadu_ps(y0.add(e)));
            let mut b = if two { [0, 8, 16, 24].map(|e| _mm256_loadu_ps(y1.add(e))) } else { a };
            for (j, v) in v.iter().enumerate() {
                let vp = v.as_ptr().add(g);
                let x = [0, 8, 16, 24].map(|e| _mm256_loadu_ps(vp.add(e)));
                let wa = _mm256_set1_ps(*w[i].get_unchecked(j));
                for t in 0..4 {
                    a[t] = _mm256_add_ps(a[t], _mm256_mul_ps(wa, x[t]));
                }
                if two {
                    let wb = _mm256_set1_ps(*w[i + 1].get_unchecked(j));
                    for t in 0..4 {
                        b[t] = _mm256_add_ps(b[t], _mm256_mul_ps(wb, x[t]));
                    }
                }
            }
            for t in 0..4 {
                _mm256_storeu_ps(y0.add(8 * t), a[t]);
                if two {
                    _mm256_storeu_ps(y1.add(8 * t), b[t]);
                }
            }
        }
        i += 2;
    }
}

/// Asks for every line of `row` (a hint: it never faults), into L2: the
/// hundreds of lines a block of rows spans overflow L1's few outstanding
/// misses, and prefetches into L1 were measured to gain nothing where
/// these halved a long context's attention (Zen 4).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_row(row: &[f32]) {
    prefetch_lines(row, 0..lines(row.len()));
}

/// Lines `range` of the 64-byte lines `row` spans, as [`prefetch_row`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_lines(row: &[f32], range: std::ops::Range<usize>) {
    use std::arch::x86_64::*;
    let p = row.as_ptr() as *const i8;
    for l in range {
        // SAFETY: a prefetch reads nothing architecturally and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(64 * l)) };
    }
}

/// 64-byte lines that `n` floats span.
#[cfg(target_arch = "x86_64")]
fn lines(n: usize) -> usize {
    (n * 4).div_ceil(64)
}

/// One dot product in the fixed order (the portable path and the reference).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    finish(&acc, &a[..n], &b[..n], chunks * 8)
}

#[inline(always)]
fn finish(acc: &[f32; 8], a: &[f32], b: &[f32], from: usize) -> f32 {
    let mut tail = 0f32;
    for i in from..a.len() {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot4_avx2(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let chunks = a.len() / 8;
    let mut s = [_mm256_setzero_ps(); 4];
    for c in 0..chunks {
        let x = _mm256_loadu_ps(a.as_ptr().add(c * 8));
        for (s, y) in s.iter_mut().zip(&b) {
            // A multiply, then an add, lane by lane (never fused).
            *s = _mm256_add_ps(*s, _mm256_mul_ps(x, _mm256_loadu_ps(y.as_ptr().add(c * 8))));
        }
    }
    let mut lanes = [[0f32; 8]; 4];
    for j in 0..4 {
        _mm256_storeu_ps(lanes[j].as_mut_ptr(), s[j]);
    }
    let mut out = [0f32; 4];
    for j in 0..4 {
        out[j] = finish(&lanes[j], a, b[j], chunks * 8);
    }
    out
}

/// The lane combine of [`finish`] (with no tail) for eight accumulators at
/// once: lane `j` of the result is `((l0 + l4) + (l1 + l5)) + ((l2 + l6) +
/// (l3 + l7))` of `s[j]`, every add between the same two values as there
/// (addition commutes exactly), so the bits are the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn combine8(s: [std::arch::x86_64::__m256; 8]) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // (l0 + l4, l1 + l5, l2 + l6, l3 + l7) of two accumulators, side by side.
    let halves = |a: __m256, b: __m256| {
        _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(a, b), _mm256_permute2f128_ps::<0x31>(a, b))
    };
    let (h01, h23, h45, h67) = (halves(s[0], s[1]), halves(s[2], s[3]), halves(s[4], s[5]), halves(s[6], s[7]));
    // hadd pairs neighbours: [0: x, 2: x, 0: y, 2: y | 1: x, 3: x, 1: y, 3: y],
    // x = (l0 + l4) + (l1 + l5), y = (l2 + l6) + (l3 + l7).
    let (q0123, q4567) = (_mm256_hadd_ps(h01, h23), _mm256_hadd_ps(h45, h67));
    // Then x + y: [0, 2, 4, 6 | 1, 3, 5, 7].
    let r = _mm256_hadd_ps(q0123, q4567);
    _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_at_a_time_is_one_at_a_time_bit_for_bit() {
        for n in [0, 3, 8, 37, 64, 128] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let b: Vec<Vec<f32>> =
                (0..4).map(|j| (0..n).map(|i| ((i * (j + 2)) as f32 * 0.11).cos() * 7.0).collect()).collect();
            let four = dot4(&a, [&b[0], &b[1], &b[2], &b[3]]);
            for j in 0..4 {
                assert_eq!(four[j].to_bits(), dot(&a, &b[j]).to_bits(), "n {n}, vector {j}");
            }
        }
    }

    fn rows(n: usize, len: usize, seed: usize) -> Vec<Vec<f32>> {
        (0..n).map(|r| (0..len).map(|t| (((t + 1) * (r + seed)) as f32 * 0.37).sin() * 3.0).collect()).collect()
    }

    #[test]
    fn block_scores_are_each_dot_bit_for_bit() {
        for (n, nq, nk) in [(128, 6, 32), (128, 5, 7), (64, 1, 4), (16, 3, 9), (37, 2, 5), (8, 4, 3)] {
            let (q, k) = (rows(nq, n, 1), rows(nk, n, 7));
            let (qr, kr): (Vec<&[f32]>, Vec<&[f32]>) =
                (q.iter().map(|r| r.as_slice()).collect(), k.iter().map(|r| r.as_slice()).collect());
            let stride = nk + 3;
            let mut out = vec![f32::NAN; nq * stride];
            dots_scaled(&qr, &kr, 0.125, &mut out, stride, &[]);
            for i in 0..nq {
                for j in 0..nk {
                    let want = dot(&q[i], &k[j]) * 0.125;
                    assert_eq!(out[i * stride + j].to_bits(), want.to_bits(), "n {n}, query {i}, key {j}");
                }
                assert!(out[i * stride + nk].is_nan(), "wrote past the block");
            }
        }
    }

    #[test]
    fn block_weighted_sums_are_axpys_in_order_bit_for_bit() {
        for (d, nq, nv) in [(128, 6, 32), (128, 3, 5), (64, 1, 9), (24, 2, 3), (32, 4, 1)] {
            let (w, v) = (rows(nq, nv, 3), rows(nv, d, 5));
            let (wr, vr): (Vec<&[f32]>, Vec<&[f32]>) =
                (w.iter().map(|r| r.as_slice()).collect(), v.iter().map(|r| r.as_slice()).collect());
            let start: Vec<f32> = (0..nq * d).map(|t| (t as f32 * 0.01).cos()).collect();
            let mut got = start.clone();
            axpy_rows(&mut got, d, &wr, &vr, &vr);
            let mut want = start;
            for j in 0..nv {
                for i in 0..nq {
                    axpy(&mut want[i * d..(i + 1) * d], w[i][j], &v[j]);
                }
            }
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "d {d}, {nq} queries, {nv} values");
        }
    }

    #[test]
    fn the_lanes_combine_in_the_documented_order() {
        // Lane sums 1e8, 1, -1e8, 1 ... in lanes 0, 1, 4, 5: pairing lane 0
        // with lane 4 first cancels exactly; another order would lose the 1s.
        let mut a = vec![0f32; 8];
        let b = vec![1f32; 8];
        (a[0], a[4], a[1], a[5]) = (1e8, -1e8, 1.0, 1.0);
        assert_eq!(dot(&a, &b), 2.0);
        assert_eq!(dot4(&a, [&b, &b, &b, &b]), [2.0; 4]);
    }
}
