//! The driver: tiles over threads, row tiles over a tile, one path's micro-kernel.

use crate::act::{Activations, Q8Blocks};
use crate::isa::Isa;
use crate::packed::{Format, PackedMatrix};
use crate::{KernelError, TileOut, ROW_TILE, TILE};

/// Rows whose activations stay cache-resident while every tile of a thread's
/// share passes over them; a long prefill re-reads weights once per chunk.
const ROW_CHUNK: usize = 64;

// Here rather than in `packed`: the driver reads the packed layout, so the
// layout calling the driver would have the two modules use each other.
impl PackedMatrix {
    /// `y[m, n] = x · Wᵀ` on the given path, columns split over rayon's threads.
    pub fn matmul(&self, isa: Isa, x: &Activations<'_>, y: &mut [f32]) -> Result<(), KernelError> {
        run(self, isa, x, y)
    }
}

struct Out(*mut f32);
// SAFETY: every task writes a disjoint set of columns of `y`.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

pub(crate) fn run(w: &PackedMatrix, isa: Isa, x: &Activations<'_>, y: &mut [f32]) -> Result<(), KernelError> {
    let (m, n) = (x.rows(), w.n());
    if x.cols() != w.k() || y.len() != m * n {
        return Err(KernelError::Operands(format!(
            "{m}x{} activations, {}x{} weights, {} outputs",
            x.cols(),
            n,
            w.k(),
            y.len()
        )));
    }
    if !isa.available() {
        return Err(KernelError::Unavailable(isa.name(), "a feature it needs"));
    }
    if m == 0 {
        return Ok(());
    }
    let a = match w.format() {
        Format::Q8_0 | Format::Q5_0 => x.q80(),
        Format::Q4K | Format::Q6K => x.q8k(),
    };
    let tiles = w.tiles();
    let parts = crate::pool::threads().clamp(1, tiles);
    let out = Out(y.as_mut_ptr());
    let share = |p: usize| {
        let range = (tiles * p / parts)..(tiles * (p + 1) / parts);
        // SAFETY: the ranges of the parts are disjoint and inside `y`.
        unsafe { columns(w, isa, a, range, &out, n) }
    };
    crate::pool::run(parts, &share);
    Ok(())
}

/// Tiles `tiles` for every row, into `y` (`m x n`, row-major).
unsafe fn columns(w: &PackedMatrix, isa: Isa, a: &Q8Blocks, tiles: std::ops::Range<usize>, y: &Out, n: usize) {
    let m = a.m;
    let mut tile_out: TileOut = [[0.0; TILE]; ROW_TILE];
    for chunk in (0..m).step_by(ROW_CHUNK) {
        let chunk_end = (chunk + ROW_CHUNK).min(m);
        for t in tiles.clone() {
            let lanes = TILE.min(n - t * TILE);
            for r0 in (chunk..chunk_end).step_by(ROW_TILE) {
                let rows = ROW_TILE.min(chunk_end - r0);
                kernel(w, isa, t, a, r0, rows, &mut tile_out);
                for (i, row) in tile_out.iter().enumerate().take(rows) {
                    let dst = y.0.add((r0 + i) * n + t * TILE);
                    // A whole tile is a fixed-size copy (two vector moves);
                    // only the last, ragged tile pays a memcpy call.
                    if lanes == TILE {
                        (dst as *mut [f32; TILE]).write_unaligned(*row);
                    } else {
                        std::ptr::copy_nonoverlapping(row.as_ptr(), dst, lanes);
                    }
                }
            }
        }
    }
}

#[inline]
fn kernel(w: &PackedMatrix, isa: Isa, t: usize, a: &Q8Blocks, r0: usize, rows: usize, out: &mut TileOut) {
    match isa {
        Isa::Portable => crate::scalar::tile(w, t, a, r0, rows, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `run` checked that the CPU has the path's features.
        Isa::Avx2 => unsafe { crate::x86::avx2::tile(w, t, a, r0, rows, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx512 => unsafe { crate::x86::avx512::tile(w, t, a, r0, rows, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the portable path is available off x86-64"),
    }
}
