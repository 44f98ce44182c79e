//! AVX-512 VNNI: one 512-bit register per tile row, `vpdpbusd` for the
//! integer dot products (unsigned weights × signed activations).
//!
//! A K-quant superblock of a tile is unpacked once into 64 vectors of bytes
//! in an L1-resident buffer (vector `u` pairs with activation bytes
//! `4u..4u+4`), its scales expanded beside it; then every row of the row tile
//! runs over the buffer with nothing but loads, `vpdpbusd` and one scale
//! multiply per sub-block. The sub-blocks' offsets (Q4_K minimums, Q6_K's −32)
//! are applied once per superblock with `vpdpwssd` against the activations'
//! block sums.

use std::arch::x86_64::*;

use crate::act::Q8Blocks;
use crate::matmul::TileOut;
use crate::packed::{Format, PackedMatrix};
use crate::ROW_TILE;

#[repr(C, align(64))]
struct Buf<const N: usize>([__m512i; N]);

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

/// Σ over the superblock's 64 vectors of `buf[u] · x[4u..4u+4]`, one
/// sub-block of `per` vectors at a time, each scaled by `sc[sub]`.
#[inline(always)]
unsafe fn scaled_dots<const SUBS: usize>(buf: &Buf<64>, sc: &Buf<SUBS>, xp: *const i8) -> __m512i {
    let per = 64 / SUBS;
    let mut isum = _mm512_setzero_si512();
    for j in 0..SUBS {
        let mut s = _mm512_setzero_si512();
        for i in 0..per {
            let u = j * per + i;
            s = _mm512_dpbusd_epi32(s, buf.0[u], bcast(xp.add(4 * u)));
        }
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(s, sc.0[j]));
    }
    isum
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
pub(crate) unsafe fn tile(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, rows: usize, out: &mut TileOut) {
    match w.format() {
        // Decoding a single row: nothing to amortise an unpack buffer over.
        Format::Q4K if rows == 1 => q4k_row(w, t, a, r0, out),
        Format::Q6K if rows == 1 => q6k_row(w, t, a, r0, out),
        Format::Q4K => q4k(w, t, a, r0, rows, out),
        Format::Q6K => q6k(w, t, a, r0, rows, out),
        Format::Q8_0 => q8_0(w, t, a, r0, rows, out),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q4k_row(w: &PackedMatrix, t: usize, a: &Q8Blocks, row: usize, out: &mut TileOut) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let nib = _mm512_set1_epi8(0x0F);
    let mut acc = _mm512_setzero_ps();
    for b in 0..nb {
        let xp = a.qs.as_ptr().add(row * a.k + b * 256);
        let bsum = a.bsum32.as_ptr().add((row * nb + b) * 8);
        let (mut isum, mut imin) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        for j in 0..8 {
            let mut s = _mm512_setzero_si512();
            for g in 0..4 {
                let raw = load(qp.add((4 * j + g) * 64));
                let x = xp.add(32 * j + 8 * g);
                s = _mm512_dpbusd_epi32(s, _mm512_and_si512(raw, nib), bcast(x));
                s = _mm512_dpbusd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(raw, 4), nib), bcast(x.add(4)));
            }
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(s, u8x16(mp.add(16 * j))));
            imin = _mm512_add_epi32(
                imin,
                _mm512_mullo_epi32(u8x16(mp.add(128 + 16 * j)), _mm512_set1_epi32(*bsum.add(j))),
            );
        }
        let dx = *a.d.get_unchecked(row * nb + b);
        acc = step(acc, f16x16(mp.add(256)), dx, isum);
        acc = _mm512_sub_ps(
            acc,
            _mm512_mul_ps(_mm512_mul_ps(f16x16(mp.add(288)), _mm512_set1_ps(dx)), _mm512_cvtepi32_ps(imin)),
        );
        qp = qp.add(2048);
        mp = mp.add(320);
    }
    _mm512_storeu_ps(out[0].as_mut_ptr(), acc);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q6k_row(w: &PackedMatrix, t: usize, a: &Q8Blocks, row: usize, out: &mut TileOut) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let (m0f, m30) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
    let mut acc = _mm512_setzero_ps();
    for b in 0..nb {
        let xp = a.qs.as_ptr().add(row * a.k + b * 256);
        let bsum = a.bsum16.as_ptr().add((row * nb + b) * 16);
        let mut isum = _mm512_setzero_si512();
        for h in 0..16 {
            let (l0, l1, qh) = (load(qp.add(2 * h * 64)), load(qp.add((2 * h + 1) * 64)), load(qp.add(2048 + h * 64)));
            let x = xp.add(16 * h);
            let mut s = _mm512_set1_epi32(-32 * *bsum.add(h));
            let v0 = _mm512_or_si512(_mm512_and_si512(l0, m0f), _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30));
            s = _mm512_dpbusd_epi32(s, v0, bcast(x));
            let v1 = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(l0, 4), m0f),
                _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30),
            );
            s = _mm512_dpbusd_epi32(s, v1, bcast(x.add(4)));
            let v2 = _mm512_or_si512(_mm512_and_si512(l1, m0f), _mm512_and_si512(qh, m30));
            s = _mm512_dpbusd_epi32(s, v2, bcast(x.add(8)));
            let v3 = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(l1, 4), m0f),
                _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30),
            );
            s = _mm512_dpbusd_epi32(s, v3, bcast(x.add(12)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(s, i8x16(mp.add(16 * h))));
        }
        acc = step(acc, f16x16(mp.add(256)), *a.d.get_unchecked(row * nb + b), isum);
        qp = qp.add(3072);
        mp = mp.add(288);
    }
    _mm512_storeu_ps(out[0].as_mut_ptr(), acc);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q4k(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, rows: usize, out: &mut TileOut) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let nib = _mm512_set1_epi8(0x0F);
    let mut buf = Buf([_mm512_setzero_si512(); 64]);
    let mut sc = Buf([_mm512_setzero_si512(); 8]);
    let mut acc = [_mm512_setzero_ps(); ROW_TILE];
    for b in 0..nb {
        for v in 0..32 {
            let raw = load(qp.add(v * 64));
            buf.0[2 * v] = _mm512_and_si512(raw, nib);
            buf.0[2 * v + 1] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), nib);
        }
        for j in 0..8 {
            sc.0[j] = u8x16(mp.add(16 * j));
        }
        let mut mins = [_mm512_setzero_si512(); 4];
        for (p, m) in mins.iter_mut().enumerate() {
            *m = pair16(u8x16(mp.add(128 + 32 * p)), u8x16(mp.add(144 + 32 * p)));
        }
        let (d, dmin) = (f16x16(mp.add(256)), f16x16(mp.add(288)));
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            let row = r0 + r;
            let isum = scaled_dots(&buf, &sc, a.qs.as_ptr().add(row * a.k + b * 256));
            let pairs = a.bsum32_pairs.as_ptr().add((row * nb + b) * 4);
            let mut imin = _mm512_setzero_si512();
            for (p, m) in mins.iter().enumerate() {
                imin = _mm512_dpwssd_epi32(imin, *m, _mm512_set1_epi32(*pairs.add(p)));
            }
            let dx = *a.d.get_unchecked(row * nb + b);
            *acc = step(*acc, d, dx, isum);
            *acc =
                _mm512_sub_ps(*acc, _mm512_mul_ps(_mm512_mul_ps(dmin, _mm512_set1_ps(dx)), _mm512_cvtepi32_ps(imin)));
        }
        qp = qp.add(2048);
        mp = mp.add(320);
    }
    for r in 0..rows {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q6k(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, rows: usize, out: &mut TileOut) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    let (m0f, m30) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
    let mut buf = Buf([_mm512_setzero_si512(); 64]);
    let mut sc = Buf([_mm512_setzero_si512(); 16]);
    let mut acc = [_mm512_setzero_ps(); ROW_TILE];
    for b in 0..nb {
        for h in 0..16 {
            let (l0, l1, qh) = (load(qp.add(2 * h * 64)), load(qp.add((2 * h + 1) * 64)), load(qp.add(2048 + h * 64)));
            buf.0[4 * h] = _mm512_or_si512(_mm512_and_si512(l0, m0f), _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30));
            buf.0[4 * h + 1] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(l0, 4), m0f),
                _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30),
            );
            buf.0[4 * h + 2] = _mm512_or_si512(_mm512_and_si512(l1, m0f), _mm512_and_si512(qh, m30));
            buf.0[4 * h + 3] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16(l1, 4), m0f),
                _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30),
            );
            sc.0[h] = i8x16(mp.add(16 * h));
        }
        // The −32 offset: Σ_h sc[h]·bsum16[h], eight scale pairs at a time.
        let mut sc_pairs = [_mm512_setzero_si512(); 8];
        for (p, s) in sc_pairs.iter_mut().enumerate() {
            *s = pair16(sc.0[2 * p], sc.0[2 * p + 1]);
        }
        let d = f16x16(mp.add(256));
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            let row = r0 + r;
            let isum = scaled_dots(&buf, &sc, a.qs.as_ptr().add(row * a.k + b * 256));
            let pairs = a.bsum16_pairs.as_ptr().add((row * nb + b) * 8);
            let mut off = _mm512_setzero_si512();
            for (p, s) in sc_pairs.iter().enumerate() {
                off = _mm512_dpwssd_epi32(off, *s, _mm512_set1_epi32(*pairs.add(p)));
            }
            let isum = _mm512_sub_epi32(isum, _mm512_slli_epi32(off, 5));
            *acc = step(*acc, d, *a.d.get_unchecked(row * nb + b), isum);
        }
        qp = qp.add(3072);
        mp = mp.add(288);
    }
    for r in 0..rows {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn q8_0(w: &PackedMatrix, t: usize, a: &Q8Blocks, r0: usize, rows: usize, out: &mut TileOut) {
    let nb = w.blocks();
    let (mut qp, mut mp) = w.tile(t);
    // vpdpbusd wants unsigned weights: w + 128, paid back as 128·Σx.
    let flip = _mm512_set1_epi8(-128);
    let mut acc = [_mm512_setzero_ps(); ROW_TILE];
    for b in 0..nb {
        let mut wv = [_mm512_setzero_si512(); 8];
        for (g, v) in wv.iter_mut().enumerate() {
            *v = _mm512_xor_si512(load(qp.add(g * 64)), flip);
        }
        let d = f16x16(mp);
        for (r, acc) in acc.iter_mut().enumerate().take(rows) {
            let row = r0 + r;
            let xp = a.qs.as_ptr().add(row * a.k + b * 32);
            let mut s = _mm512_set1_epi32(-128 * *a.bsum32.get_unchecked(row * nb + b));
            for (g, v) in wv.iter().enumerate() {
                s = _mm512_dpbusd_epi32(s, *v, bcast(xp.add(4 * g)));
            }
            *acc = step(*acc, d, *a.d.get_unchecked(row * nb + b), s);
        }
        qp = qp.add(512);
        mp = mp.add(32);
    }
    for r in 0..rows {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}
