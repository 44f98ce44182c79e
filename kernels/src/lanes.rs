//! f32 dot products with eight fixed lanes, several at a time, for attention.
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

/// The eight dot products of `a[0..2]` with `b[0..4]` (`[i][j]` is
/// `a[i]·b[j]`), each exactly as [`dot`]. Two queries share every load of the
/// four keys, which is where [`dot4`] spends its time.
pub fn dot2x4(a: [&[f32]; 2], b: [&[f32]; 4]) -> [[f32; 4]; 2] {
    let n = a[0].len();
    let a = [a[0], &a[1][..n]];
    let b = [&b[0][..n], &b[1][..n], &b[2][..n], &b[3][..n]];
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::Avx2.available() {
        // SAFETY: AVX2 was detected; every slice holds `n` values.
        return unsafe { dot2x4_avx2(a, b) };
    }
    a.map(|a| std::array::from_fn(|j| dot(a, b[j])))
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot2x4_avx2(a: [&[f32]; 2], b: [&[f32]; 4]) -> [[f32; 4]; 2] {
    use std::arch::x86_64::*;
    let chunks = a[0].len() / 8;
    let mut s = [[_mm256_setzero_ps(); 4]; 2];
    for c in 0..chunks {
        let x = [_mm256_loadu_ps(a[0].as_ptr().add(c * 8)), _mm256_loadu_ps(a[1].as_ptr().add(c * 8))];
        for (j, y) in b.iter().enumerate() {
            let y = _mm256_loadu_ps(y.as_ptr().add(c * 8));
            for i in 0..2 {
                // A multiply, then an add, lane by lane (never fused).
                s[i][j] = _mm256_add_ps(s[i][j], _mm256_mul_ps(x[i], y));
            }
        }
    }
    // Spilled once after the loop, not through a closure: a closure's
    // reference to `s` keeps the accumulators in memory, stored every chunk.
    let mut lanes = [[[0f32; 8]; 4]; 2];
    for i in 0..2 {
        for j in 0..4 {
            _mm256_storeu_ps(lanes[i][j].as_mut_ptr(), s[i][j]);
        }
    }
    let mut out = [[0f32; 4]; 2];
    for i in 0..2 {
        for j in 0..4 {
            out[i][j] = finish(&lanes[i][j], a[i], b[j], chunks * 8);
        }
    }
    out
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

    #[test]
    fn two_by_four_is_one_at_a_time_bit_for_bit() {
        for n in [0, 5, 8, 37, 64, 128] {
            let a: Vec<Vec<f32>> =
                (0..2).map(|i| (0..n).map(|t| ((t + 3 * i) as f32 * 0.37).sin() * 3.0).collect()).collect();
            let b: Vec<Vec<f32>> =
                (0..4).map(|j| (0..n).map(|t| ((t * (j + 2)) as f32 * 0.11).cos() * 7.0).collect()).collect();
            let got = dot2x4([&a[0], &a[1]], [&b[0], &b[1], &b[2], &b[3]]);
            for i in 0..2 {
                for j in 0..4 {
                    assert_eq!(got[i][j].to_bits(), dot(&a[i], &b[j]).to_bits(), "n {n}, query {i}, key {j}");
                }
            }
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
