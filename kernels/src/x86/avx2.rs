//! AVX2: a tile as two halves of 8 columns (one 256-bit register each).
//! Without VNNI, `vpmaddubsw` forms 16-bit pair sums (no input the formats
//! encode can saturate them) and `vpmaddwd` widens them to 32 bits.

use std::arch::x86_64::*;

use crate::act::Q8Blocks;
use crate::packed::{Format, PackedMatrix};
use crate::{TileOut, TILE};

use super::{pf_dist, prefetch};

#[inline(always)]
unsafe fn bcast(p: *const i8) -> __m256i {
    _mm256_set1_epi32((p as *const i32).read_unaligned())
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_load_si256(p as *const __m256i)
}

#[inline(always)]
unsafe fn f16x8(p: *const u8) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

#[inline(always)]
unsafe fn u8x8(p: *const u8) -> __m256i {
    _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i))
}

#[inline(always)]
unsafe fn widen(p16: __m256i) -> __m256i {
    _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
}

#[inline(always)]
unsafe fn step(acc: __m256, d: __m256, dx: f32, isum: __m256i) -> __m256 {
    _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(d, _mm256_set1_ps(dx)), _mm256_cvtepi32_ps(isum)))
}

#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn tile(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, rows: usize, out: &mut TileOut) {
    // Four rows at a time keep a row group's accumulators in the 16 registers.
    macro_rules! dispatch {
        ($f:ident, $half:expr, $r:expr, $out:expr) => {
            match rows - $r {
                1 => $f::<1>(w, t, $half, a, r0 + $r, $out),
                2 => $f::<2>(w, t, $half, a, r0 + $r, $out),
                3 => $f::<3>(w, t, $half, a, r0 + $r, $out),
                _ => $f::<4>(w, t, $half, a, r0 + $r, $out),
            }
        };
    }
    for r in (0..rows).step_by(4) {
        let out = &mut out[r..];
        for half in 0..2 {
            match w.format() {
                Format::Q4K => dispatch!(q4k, half, r, out),
                Format::Q6K => dispatch!(q6k, half, r, out),
                Format::Q8_0 => dispatch!(q8_0, half, r, out),
                Format::Q5_0 => dispatch!(q5_0, half, r, out),
            }
        }
    }
}

#[inline(always)]
unsafe fn rows_of<const R: usize>(a: &Q8Blocks, r0: usize) -> [*const i8; R] {
    std::array::from_fn(|r| a.qs.as_ptr().add((r0 + r) * a.k))
}

#[inline(always)]
unsafe fn store<const R: usize>(acc: [__m256; R], half: usize, out: &mut [[f32; TILE]]) {
    for r in 0..R {
        _mm256_storeu_ps(out[r].as_mut_ptr().add(8 * half), acc[r]);
    }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn q4k<const R: usize>(
    w: &PackedMatrix,
    t: usize,
    half: usize,
    a: &Q8Blocks,
    r0: usize,
    out: &mut [[f32; TILE]],
) {
    let nb = w.blocks();
    let (qp, mp) = w.tile(t);
    // Quants and u8 meta advance by 8 lanes of bytes, f16 meta by 8 of two.
    let (mut qp, mut mp, h16) = (qp.add(32 * half), mp.add(8 * half), 8 * half);
    let x = rows_of::<R>(a, r0);
    let nib = _mm256_set1_epi8(0x0F);
    let pf = if half == 0 { pf_dist() } else { 0 };
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        if pf > 0 {
            for l in 0..5 {
                prefetch(mp.add(64 * l), pf / 6);
            }
        }
        let mut isum = [_mm256_setzero_si256(); R];
        for j in 0..8 {
            // The scale in both 16-bit halves of a lane: vpmaddwd then
            // multiplies and widens the pair sums in one go.
            let sc = u8x8(mp.add(16 * j));
            let sc = _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16));
            // Eight products of at most 15·127·2 each fit in 16 bits.
            let mut p = [_mm256_setzero_si256(); R];
            for g in 0..4 {
                if pf > 0 {
                    prefetch(qp.add((4 * j + g) * 64), pf);
                }
                let v = load(qp.add((4 * j + g) * 64));
                let lo = _mm256_and_si256(v, nib);
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
                for r in 0..R {
                    let xp = x[r].add(b * 256 + 32 * j + 8 * g);
                    p[r] = _mm256_add_epi16(p[r], _mm256_maddubs_epi16(lo, bcast(xp)));
                    p[r] = _mm256_add_epi16(p[r], _mm256_maddubs_epi16(hi, bcast(xp.add(4))));
                }
            }
            for r in 0..R {
                isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(p[r], sc));
            }
        }
        // Minimums: pairs of sub-block minimums against pairs of block sums.
        let mut imin = [_mm256_setzero_si256(); R];
        for q in 0..4 {
            let m = u8x8(mp.add(128 + 32 * q));
            let m = _mm256_or_si256(m, _mm256_slli_epi32(u8x8(mp.add(144 + 32 * q)), 16));
            for (r, imin) in imin.iter_mut().enumerate() {
                let pair = *a.bsum32_pairs.get_unchecked(((r0 + r) * nb + b) * 4 + q);
                *imin = _mm256_add_epi32(*imin, _mm256_madd_epi16(m, _mm256_set1_epi32(pair)));
            }
        }
        let (d, dmin) = (f16x8(mp.add(256 + h16)), f16x8(mp.add(288 + h16)));
        for r in 0..R {
            let dx = *a.d.get_unchecked((r0 + r) * nb + b);
            acc[r] = step(acc[r], d, dx, isum[r]);
            let m = _mm256_mul_ps(_mm256_mul_ps(dmin, _mm256_set1_ps(dx)), _mm256_cvtepi32_ps(imin[r]));
            acc[r] = _mm256_sub_ps(acc[r], m);
        }
        qp = qp.add(2048);
        mp = mp.add(320);
    }
    store(acc, half, out);
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn q6k<const R: usize>(
    w: &PackedMatrix,
    t: usize,
    half: usize,
    a: &Q8Blocks,
    r0: usize,
    out: &mut [[f32; TILE]],
) {
    let nb = w.blocks();
    let (qp, mp) = w.tile(t);
    let (mut qp, mut mp, h16) = (qp.add(32 * half), mp.add(8 * half), 8 * half);
    let x = rows_of::<R>(a, r0);
    let (m0f, m30) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
    let pf = if half == 0 { pf_dist() } else { 0 };
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        if pf > 0 {
            for l in 0..5 {
                prefetch(mp.add(64 * l), pf / 10);
            }
        }
        let mut isum = [_mm256_setzero_si256(); R];
        for h in 0..16 {
            let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(mp.add(16 * h) as *const __m128i));
            if pf > 0 {
                for l in 0..3 {
                    prefetch(qp.add(192 * h + 64 * l), pf);
                }
            }
            let (l0, l1, qh) = (load(qp.add(192 * h)), load(qp.add(192 * h + 64)), load(qp.add(192 * h + 128)));
            let o = [
                _mm256_or_si256(_mm256_and_si256(l0, m0f), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(l0, 4), m0f),
                    _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30),
                ),
                _mm256_or_si256(_mm256_and_si256(l1, m0f), _mm256_and_si256(qh, m30)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(l1, 4), m0f),
                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                ),
            ];
            for r in 0..R {
                let xp = x[r].add(b * 256 + 16 * h);
                let bs = *a.bsum16.get_unchecked(((r0 + r) * nb + b) * 16 + h);
                // Two products of at most 63·127·2 each fit in 16 bits.
                let p0 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(o[0], bcast(xp)),
                    _mm256_maddubs_epi16(o[1], bcast(xp.add(4))),
                );
                let p1 = _mm256_add_epi16(
                    _mm256_maddubs_epi16(o[2], bcast(xp.add(8))),
                    _mm256_maddubs_epi16(o[3], bcast(xp.add(12))),
                );
                let s = _mm256_add_epi32(_mm256_set1_epi32(-32 * bs), _mm256_add_epi32(widen(p0), widen(p1)));
                isum[r] = _mm256_add_epi32(isum[r], _mm256_mullo_epi32(s, sc));
            }
        }
        let d = f16x8(mp.add(256 + h16));
        for r in 0..R {
            acc[r] = step(acc[r], d, *a.d.get_unchecked((r0 + r) * nb + b), isum[r]);
        }
        qp = qp.add(3072);
        mp = mp.add(288);
    }
    store(acc, half, out);
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn q8_0<const R: usize>(
    w: &PackedMatrix,
    t: usize,
    half: usize,
    a: &Q8Blocks,
    r0: usize,
    out: &mut [[f32; TILE]],
) {
    let nb = w.blocks();
    let (qp, mp) = w.tile(t);
    let (mut qp, mut mp) = (qp.add(32 * half), mp.add(16 * half));
    let x = rows_of::<R>(a, r0);
    let pf = if half == 0 { pf_dist() } else { 0 };
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        if pf > 0 {
            for l in 0..8 {
                prefetch(qp.add(64 * l), pf);
            }
            prefetch(mp, pf / 16);
        }
        let mut wv = [_mm256_setzero_si256(); 8];
        let mut aw = [_mm256_setzero_si256(); 8];
        for g in 0..8 {
            wv[g] = load(qp.add(g * 64));
            aw[g] = _mm256_sign_epi8(wv[g], wv[g]);
        }
        let d = f16x8(mp);
        for r in 0..R {
            let xp = x[r].add(b * 32);
            // |w|·(x·sign w): products of at most 128·127·2 fit in 16 bits.
            let mut s = _mm256_setzero_si256();
            for g in 0..8 {
                let sx = _mm256_sign_epi8(bcast(xp.add(4 * g)), wv[g]);
                s = _mm256_add_epi32(s, widen(_mm256_maddubs_epi16(aw[g], sx)));
            }
            acc[r] = step(acc[r], d, *a.d.get_unchecked((r0 + r) * nb + b), s);
        }
        qp = qp.add(512);
        mp = mp.add(32);
    }
    store(acc, half, out);
}

/// Bit `t` of each byte of `qh` moved to bit 4 (word shifts: what spills
/// across a byte boundary lands outside the mask).
#[inline(always)]
unsafe fn fifth_bit(qh: __m256i, t: usize) -> __m256i {
    let v = match t {
        0 => _mm256_slli_epi16::<4>(qh),
        1 => _mm256_slli_epi16::<3>(qh),
        2 => _mm256_slli_epi16::<2>(qh),
        3 => _mm256_slli_epi16::<1>(qh),
        4 => qh,
        5 => _mm256_srli_epi16::<1>(qh),
        6 => _mm256_srli_epi16::<2>(qh),
        _ => _mm256_srli_epi16::<3>(qh),
    };
    _mm256_and_si256(v, _mm256_set1_epi8(0x10))
}

/// Q5_0 as unsigned 5-bit weights (q + 16), the offset paid back as
/// 16·Σx per block.
#[target_feature(enable = "avx2,f16c")]
unsafe fn q5_0<const R: usize>(
    w: &PackedMatrix,
    t: usize,
    half: usize,
    a: &Q8Blocks,
    r0: usize,
    out: &mut [[f32; TILE]],
) {
    let nb = w.blocks();
    let (qp, mp) = w.tile(t);
    let (mut qp, mut mp) = (qp.add(32 * half), mp.add(16 * half));
    let x = rows_of::<R>(a, r0);
    let nib = _mm256_set1_epi8(0x0F);
    let pf = if half == 0 { pf_dist() } else { 0 };
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        if pf > 0 {
            for l in 0..5 {
                prefetch(qp.add(64 * l), pf);
            }
            prefetch(mp, pf / 10);
        }
        let qh = load(qp.add(256));
        let mut u = [_mm256_setzero_si256(); 8];
        for g in 0..4 {
            let v = load(qp.add(64 * g));
            u[2 * g] = _mm256_or_si256(_mm256_and_si256(v, nib), fifth_bit(qh, 2 * g));
            u[2 * g + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), nib), fifth_bit(qh, 2 * g + 1));
        }
        let d = f16x8(mp);
        for r in 0..R {
            let xp = x[r].add(b * 32);
            let mut s = _mm256_set1_epi32(-16 * *a.bsum32.get_unchecked((r0 + r) * nb + b));
            // Four pair sums of at most 31·127·2 each fit in 16 bits.
            for q in 0..2 {
                let mut p = _mm256_setzero_si256();
                for (i, u) in u[4 * q..4 * q + 4].iter().enumerate() {
                    p = _mm256_add_epi16(p, _mm256_maddubs_epi16(*u, bcast(xp.add(16 * q + 4 * i))));
                }
                s = _mm256_add_epi32(s, widen(p));
            }
            acc[r] = step(acc[r], d, *a.d.get_unchecked((r0 + r) * nb + b), s);
        }
        qp = qp.add(320);
        mp = mp.add(32);
    }
    store(acc, half, out);
}
