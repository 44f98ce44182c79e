//! The portable path: plain Rust over the packed tiles, on any target.

use crate::act::Q8Blocks;
use crate::packed::{Format, PackedMatrix};
use crate::reference::f16;
use crate::{ROW_TILE, TILE};

/// Rows `r0..r0+rows` of tile `t` into `out[row][lane]`.
pub(crate) fn tile(
    w: &PackedMatrix,
    t: usize,
    a: &Q8Blocks,
    r0: usize,
    rows: usize,
    out: &mut [[f32; TILE]; ROW_TILE],
) {
    let nb = w.blocks();
    let (qb, mb) = (w.format().quant_bytes(), w.format().meta_bytes());
    let (qp, mp) = w.tile(t);
    // SAFETY: a tile holds `nb` blocks of `qb` quant and `mb` meta bytes.
    let (quants, meta) = unsafe { (std::slice::from_raw_parts(qp, nb * qb), std::slice::from_raw_parts(mp, nb * mb)) };
    for (ri, out) in out.iter_mut().enumerate().take(rows) {
        let r = r0 + ri;
        let xq = a.row(r);
        for (c, acc) in out.iter_mut().enumerate() {
            let mut y = 0f32;
            for b in 0..nb {
                let (q, mt) = (&quants[b * qb..][..qb], &meta[b * mb..][..mb]);
                let h16 = |at: usize| f16(u16::from_le_bytes([mt[at + 2 * c], mt[at + 2 * c + 1]]));
                let dx = a.d[r * nb + b];
                let lane = |v: usize, i: usize| q[v * 64 + 4 * c + i];
                match w.format() {
                    Format::Q4K => {
                        let x = &xq[b * 256..][..256];
                        let (mut isum, mut imin) = (0i32, 0i32);
                        for j in 0..8 {
                            let mut s = 0i32;
                            for g in 0..4 {
                                for i in 0..4 {
                                    let byte = lane(4 * j + g, i);
                                    s += (byte & 0xF) as i32 * x[32 * j + 8 * g + i] as i32;
                                    s += (byte >> 4) as i32 * x[32 * j + 8 * g + 4 + i] as i32;
                                }
                            }
                            isum += mt[j * 16 + c] as i32 * s;
                            imin += mt[128 + j * 16 + c] as i32 * a.bsum32[(r * nb + b) * 8 + j];
                        }
                        y += (h16(256) * dx) * isum as f32;
                        y -= (h16(288) * dx) * imin as f32;
                    }
                    Format::Q6K => {
                        let x = &xq[b * 256..][..256];
                        let mut isum = 0i32;
                        for h in 0..16 {
                            let mut s = -32 * a.bsum16[(r * nb + b) * 16 + h];
                            for i in 0..4 {
                                let hi = lane(3 * h + 2, i);
                                let (l0, l1) = (lane(3 * h, i), lane(3 * h + 1, i));
                                let vals = [
                                    (l0 & 0xF) | ((hi & 3) << 4),
                                    (l0 >> 4) | (((hi >> 2) & 3) << 4),
                                    (l1 & 0xF) | (((hi >> 4) & 3) << 4),
                                    (l1 >> 4) | (((hi >> 6) & 3) << 4),
                                ];
                                for (t, v) in vals.into_iter().enumerate() {
                                    s += v as i32 * x[16 * h + 4 * t + i] as i32;
                                }
                            }
                            isum += mt[h * 16 + c] as i8 as i32 * s;
                        }
                        y += (h16(256) * dx) * isum as f32;
                    }
                    Format::Q8_0 => {
                        let x = &xq[b * 32..][..32];
                        let mut isum = 0i32;
                        for g in 0..8 {
                            for i in 0..4 {
                                isum += lane(g, i) as i8 as i32 * x[4 * g + i] as i32;
                            }
                        }
                        y += (h16(0) * dx) * isum as f32;
                    }
                    Format::Q5_0 => {
                        let x = &xq[b * 32..][..32];
                        let mut isum = 0i32;
                        for (i, &x) in x.iter().enumerate() {
                            isum += (crate::packed::q5_0_value(q, c, i) as i32 - 16) * x as i32;
                        }
                        y += (h16(0) * dx) * isum as f32;
                    }
                }
            }
            *acc = y;
        }
    }
}
