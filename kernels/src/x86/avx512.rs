//! AVX-512 VNNI: one 512-bit lane group per tile, `vpdpbusd` for the
//! integer dot products (unsigned weights × signed activations).

use std::arch::x86_64::*;

use crate::act::Q8Blocks;
use crate::matmul::TileOut;
use crate::packed::{Format, PackedMatrix};

/// Four activation bytes broadcast to every 32-bit lane.
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

/// `acc + (d·dx)·isum`, lane by lane as the reference writes it.
#[inline(always)]
unsafe fn step(acc: __m512, d: __m512, dx: f32, isum: __m512i) -> __m512 {
    _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(d, _mm512_set1_ps(dx)), _mm512_cvtepi32_ps(isum)))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(crate) unsafe fn tile(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, rows: usize, out: &mut TileOut) {
    macro_rules! dispatch {
        ($f:ident) => {
            match rows {
                1 => $f::<1>(w, t, a, r0, out),
                2 => $f::<2>(w, t, a, r0, out),
                3 => $f::<3>(w, t, a, r0, out),
                _ => $f::<4>(w, t, a, r0, out),
            }
        };
    }
    match w.format() {
        Format::Q4K => dispatch!(q4k),
        Format::Q6K => dispatch!(q6k),
        Format::Q8_0 => dispatch!(q8_0),
    }
}

#[inline(always)]
unsafe fn rows_of<const R: usize>(a: &Q8Blocks, r0: usize) -> [*const i8; R] {
    std::array::from_fn(|r| a.qs.as_ptr().add((r0 + r) * a.k))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q4k<const R: usize>(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, out: &mut TileOut) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let x = rows_of::<R>(a, r0);
    let nib = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let mut isum = [_mm512_setzero_si512(); R];
        let mut imin = [_mm512_setzero_si512(); R];
        for j in 0..8 {
            let sc = u8x16(mp.add(16 * j));
            let mn = u8x16(mp.add(128 + 16 * j));
            let mut lo = [_mm512_setzero_si512(); 4];
            let mut hi = [_mm512_setzero_si512(); 4];
            for g in 0..4 {
                let v = load(qp.add((4 * j + g) * 64));
                lo[g] = _mm512_and_si512(v, nib);
                hi[g] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
            }
            for r in 0..R {
                let xp = x[r].add(b * 256 + 32 * j);
                let mut s = _mm512_setzero_si512();
                for g in 0..4 {
                    s = _mm512_dpbusd_epi32(s, lo[g], bcast(xp.add(8 * g)));
                    s = _mm512_dpbusd_epi32(s, hi[g], bcast(xp.add(8 * g + 4)));
                }
                isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(s, sc));
                let bs = *a.bsum32.get_unchecked(((r0 + r) * nb + b) * 8 + j);
                imin[r] = _mm512_add_epi32(imin[r], _mm512_mullo_epi32(mn, _mm512_set1_epi32(bs)));
            }
        }
        let (d, dmin) = (f16x16(mp.add(256)), f16x16(mp.add(288)));
        for r in 0..R {
            let dx = *a.d.get_unchecked((r0 + r) * nb + b);
            acc[r] = step(acc[r], d, dx, isum[r]);
            let m = _mm512_mul_ps(_mm512_mul_ps(dmin, _mm512_set1_ps(dx)), _mm512_cvtepi32_ps(imin[r]));
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
unsafe fn q6k<const R: usize>(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, out: &mut TileOut) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let x = rows_of::<R>(a, r0);
    let (m0f, m30) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let mut isum = [_mm512_setzero_si512(); R];
        for h in 0..16 {
            let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(mp.add(16 * h) as *const __m128i));
            let (l0, l1, qh) = (load(qp.add(2 * h * 64)), load(qp.add((2 * h + 1) * 64)), load(qp.add(2048 + h * 64)));
            let o = [
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
            for r in 0..R {
                let xp = x[r].add(b * 256 + 16 * h);
                let bs = *a.bsum16.get_unchecked(((r0 + r) * nb + b) * 16 + h);
                let mut s = _mm512_set1_epi32(-32 * bs);
                for (i, o) in o.iter().enumerate() {
                    s = _mm512_dpbusd_epi32(s, *o, bcast(xp.add(4 * i)));
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
unsafe fn q8_0<const R: usize>(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, out: &mut TileOut) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let x = rows_of::<R>(a, r0);
    // vpdpbusd wants unsigned weights: w + 128, paid back as 128·Σx.
    let flip = _mm512_set1_epi8(-128);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let mut wv = [_mm512_setzero_si512(); 8];
        for (g, v) in wv.iter_mut().enumerate() {
            *v = _mm512_xor_si512(load(qp.add(g * 64)), flip);
        }
        let d = f16x16(mp);
        for r in 0..R {
            let xp = x[r].add(b * 32);
            let bs = *a.bsum32.get_unchecked((r0 + r) * nb + b);
            let mut s = _mm512_set1_epi32(-128 * bs);
            for (g, v) in wv.iter().enumerate() {
                s = _mm512_dpbusd_epi32(s, *v, bcast(xp.add(4 * g)));
            }
            acc[r] = step(acc[r], d, *a.d.get_unchecked((r0 + r) * nb + b), s);
        }
        qp = qp.add(512);
        mp = mp.add(32);
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}
