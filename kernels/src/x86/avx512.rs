//! AVX-512 VNNI: one 512-bit register per tile row, `vpdpbusd` for the
//! integer dot products (unsigned weights × signed activations).
//!
//! A weight vector is loaded and decoded once and applied to a group of up to
//! eight rows, each with its own accumulator (independent dependency chains
//! keep `vpdpbusd` at its throughput, not its latency). Q4_K's minimums are
//! applied once per superblock with `vpdpwssd` against the activations'
//! block sums; Q6_K's −32, Q8_0's +128 and Q5_0's −16 start each
//! sub-block's sum.

use std::arch::x86_64::*;

use crate::act::Q8Blocks;
use crate::packed::{Format, PackedMatrix};
use crate::{TileOut, TILE};

use super::{pf_dist, prefetch};

/// Rows that share one decode of a weight tile: each has its own
/// accumulator chain, and 8 of them still fit the 32 vector registers.
const GROUP: usize = 8;

/// Four activation bytes (or two i16) broadcast to every 32-bit lane.
#[inline(always)]
unsafe fn bcast(p: *const i8) -> __m512i {
    _mm512_set1_epi32((p as *const i32).read_unaligned())
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m512i {
    _mm512_load_si512(p as *const __m512i)
}

#[inline(always)]
unsafe fn f16x16(p: *const u8) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
}

#[inline(always)]
unsafe fn u8x16(p: *const u8) -> __m512i {
    _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i))
}

#[inline(always)]
unsafe fn i8x16(p: *const u8) -> __m512i {
    _mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i))
}

/// Two 32-bit lanes' low halves as the i16 pair (a, b) in each lane.
#[inline(always)]
unsafe fn pair16(a: __m512i, b: __m512i) -> __m512i {
    _mm512_or_si512(_mm512_and_si512(a, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(b, 16))
}

/// `acc + (d·dx)·isum`, lane by lane as the reference writes it.
#[inline(always)]
unsafe fn step(acc: __m512, d: __m512, dx: f32, isum: __m512i) -> __m512 {
    _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(d, _mm512_set1_ps(dx)), _mm512_cvtepi32_ps(isum)))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(crate) unsafe fn tile(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, rows: usize, out: &mut TileOut) {
    macro_rules! group {
        ($f:ident, $n:expr, $r:expr) => {
            match $n {
                1 => $f::<1>(w, t, a, r0 + $r, &mut out[$r..]),
                2 => $f::<2>(w, t, a, r0 + $r, &mut out[$r..]),
                3 => $f::<3>(w, t, a, r0 + $r, &mut out[$r..]),
                4 => $f::<4>(w, t, a, r0 + $r, &mut out[$r..]),
                5 => $f::<5>(w, t, a, r0 + $r, &mut out[$r..]),
                6 => $f::<6>(w, t, a, r0 + $r, &mut out[$r..]),
                7 => $f::<7>(w, t, a, r0 + $r, &mut out[$r..]),
                _ => $f::<8>(w, t, a, r0 + $r, &mut out[$r..]),
            }
        };
    }
    let mut r = 0;
    while r < rows {
        let n = (rows - r).min(GROUP);
        match w.format() {
            Format::Q4K => group!(q4k, n, r),
            Format::Q6K => group!(q6k, n, r),
            Format::Q8_0 => group!(q8_0, n, r),
            Format::Q5_0 => group!(q5_0, n, r),
        }
        r += n;
    }
}

/// `R` rows straight from the packed quants, decoded in registers once for
/// all of them. (An L1 unpack buffer shared by more rows measured slower:
/// the decode runs on ports the dot products leave idle.)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q4k<const R: usize>(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, out: &mut [[f32; TILE]]) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let nib = _mm512_set1_epi8(0x0F);
    let pf = pf_dist();
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        if pf > 0 {
            for l in 0..5 {
                prefetch(mp.add(64 * l), pf / 6);
            }
        }
        let x: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((r0 + r) * a.k + b * 256));
        let mut isum = [_mm512_setzero_si512(); R];
        for j in 0..8 {
            let mut s = [_mm512_setzero_si512(); R];
            for g in 0..4 {
                if pf > 0 {
                    prefetch(qp.add((4 * j + g) * 64), pf);
                }
                let raw = load(qp.add((4 * j + g) * 64));
                let (lo, hi) = (_mm512_and_si512(raw, nib), _mm512_and_si512(_mm512_srli_epi16(raw, 4), nib));
                let u = 8 * j + 2 * g;
                for r in 0..R {
                    s[r] = _mm512_dpbusd_epi32(s[r], lo, bcast(x[r].add(4 * u)));
                    s[r] = _mm512_dpbusd_epi32(s[r], hi, bcast(x[r].add(4 * u + 4)));
                }
            }
            let sc = u8x16(mp.add(16 * j));
            for r in 0..R {
                isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(s[r], sc));
            }
        }
        let mut mins = [_mm512_setzero_si512(); 4];
        for (p, m) in mins.iter_mut().enumerate() {
            *m = pair16(u8x16(mp.add(128 + 32 * p)), u8x16(mp.add(144 + 32 * p)));
        }
        let (d, dmin) = (f16x16(mp.add(256)), f16x16(mp.add(288)));
        for r in 0..R {
            let pairs = a.bsum32_pairs.as_ptr().add(((r0 + r) * nb + b) * 4);
            let mut imin = _mm512_setzero_si512();
            for (p, m) in mins.iter().enumerate() {
                imin = _mm512_dpwssd_epi32(imin, *m, _mm512_set1_epi32(*pairs.add(p)));
            }
            let dx = *a.d.get_unchecked((r0 + r) * nb + b);
            acc[r] = step(acc[r], d, dx, isum[r]);
            let m = _mm512_mul_ps(_mm512_mul_ps(dmin, _mm512_set1_ps(dx)), _mm512_cvtepi32_ps(imin));
            acc[r] = _mm512_sub_ps(acc[r], m);
        }
        qp = qp.add(2048);
        mp = mp.add(320);
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q6k<const R: usize>(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, out: &mut [[f32; TILE]]) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let (m0f, m30) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
    let pf = pf_dist();
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        if pf > 0 {
            for l in 0..5 {
                prefetch(mp.add(64 * l), pf / 10);
            }
        }
        let x: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((r0 + r) * a.k + b * 256));
        let bsum: [*const i32; R] = std::array::from_fn(|r| a.bsum16.as_ptr().add(((r0 + r) * nb + b) * 16));
        let mut isum = [_mm512_setzero_si512(); R];
        for h in 0..16 {
            if pf > 0 {
                for l in 0..3 {
                    prefetch(qp.add(192 * h + 64 * l), pf);
                }
            }
            let (l0, l1, qh) = (load(qp.add(192 * h)), load(qp.add(192 * h + 64)), load(qp.add(192 * h + 128)));
            let v = [
                _mm512_or_si512(_mm512_and_si512(l0, m0f), _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30)),
                _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16(l0, 4), m0f),
                    _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30),
                ),
                _mm512_or_si512(_mm512_and_si512(l1, m0f), _mm512_and_si512(qh, m30)),
                _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16(l1, 4), m0f),
                    _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30),
                ),
            ];
            let sc = i8x16(mp.add(16 * h));
            for r in 0..R {
                let mut s = _mm512_set1_epi32(-32 * *bsum[r].add(h));
                for (i, v) in v.iter().enumerate() {
                    s = _mm512_dpbusd_epi32(s, *v, bcast(x[r].add(16 * h + 4 * i)));
                }
                isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(s, sc));
            }
        }
        let d = f16x16(mp.add(256));
        for r in 0..R {
            acc[r] = step(acc[r], d, *a.d.get_unchecked((r0 + r) * nb + b), isum[r]);
        }
        qp = qp.add(3072);
        mp = mp.add(288);
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q8_0<const R: usize>(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, out: &mut [[f32; TILE]]) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    // vpdpbusd wants unsigned weights: w + 128, paid back as 128·Σx.
    let flip = _mm512_set1_epi8(-128);
    let pf = pf_dist();
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        if pf > 0 {
            for l in 0..8 {
                prefetch(qp.add(64 * l), pf);
            }
            prefetch(mp, pf / 16);
        }
        let x: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((r0 + r) * a.k + b * 32));
        let mut s: [__m512i; R] =
            std::array::from_fn(|r| _mm512_set1_epi32(-128 * *a.bsum32.get_unchecked((r0 + r) * nb + b)));
        for g in 0..8 {
            let v = _mm512_xor_si512(load(qp.add(g * 64)), flip);
            for r in 0..R {
                s[r] = _mm512_dpbusd_epi32(s[r], v, bcast(x[r].add(4 * g)));
            }
        }
        let d = f16x16(mp);
        for r in 0..R {
            acc[r] = step(acc[r], d, *a.d.get_unchecked((r0 + r) * nb + b), s[r]);
        }
        qp = qp.add(512);
        mp = mp.add(32);
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

/// Bit `t` of each byte of `qh` moved to bit 4 (word shifts: what spills
/// across a byte boundary lands outside the mask).
#[inline(always)]
unsafe fn fifth_bit(qh: __m512i, t: usize) -> __m512i {
    let v = match t {
        0 => _mm512_slli_epi16::<4>(qh),
        1 => _mm512_slli_epi16::<3>(qh),
        2 => _mm512_slli_epi16::<2>(qh),
        3 => _mm512_slli_epi16::<1>(qh),
        4 => qh,
        5 => _mm512_srli_epi16::<1>(qh),
        6 => _mm512_srli_epi16::<2>(qh),
        _ => _mm512_srli_epi16::<3>(qh),
    };
    _mm512_and_si512(v, _mm512_set1_epi8(0x10))
}

/// Q5_0 as unsigned 5-bit weights (q + 16) for `vpdpbusd`, the offset paid
/// back as 16·Σx per block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q5_0<const R: usize>(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, out: &mut [[f32; TILE]]) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let nib = _mm512_set1_epi8(0x0F);
    let pf = pf_dist();
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        if pf > 0 {
            for l in 0..5 {
                prefetch(qp.add(64 * l), pf);
            }
            prefetch(mp, pf / 10);
        }
        let qh = load(qp.add(256));
        let mut u = [_mm512_setzero_si512(); 8];
        for g in 0..4 {
            let v = load(qp.add(64 * g));
            u[2 * g] = _mm512_or_si512(_mm512_and_si512(v, nib), fifth_bit(qh, 2 * g));
            u[2 * g + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), nib), fifth_bit(qh, 2 * g + 1));
        }
        let x: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((r0 + r) * a.k + b * 32));
        let mut s: [__m512i; R] =
            std::array::from_fn(|r| _mm512_set1_epi32(-16 * *a.bsum32.get_unchecked((r0 + r) * nb + b)));
        for (i, u) in u.iter().enumerate() {
            for r in 0..R {
                s[r] = _mm512_dpbusd_epi32(s[r], *u, bcast(x[r].add(4 * i)));
            }
        }
        let d = f16x16(mp);
        for r in 0..R {
            acc[r] = step(acc[r], d, *a.d.get_unchecked((r0 + r) * nb + b), s[r]);
        }
        qp = qp.add(320);
        mp = mp.add(32);
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}
