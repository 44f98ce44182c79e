//! The x86-64 paths, chosen at run time by [`crate::Isa`].

pub(crate) mod avx2;
pub(crate) mod avx512;

/// How far ahead of the quant stream the kernels ask for lines, in bytes.
///
/// One core keeps too few misses in flight on its own to stream the weights
/// while `vpdpbusd` saturates it: with k ≥ 2 rows the memory stream and the
/// arithmetic ran one after the other (on the 151936 × 1536 LM head, the time
/// of 8 rows was the time of one plus the arithmetic). Asking ~2 KiB ahead
/// (a Q4_K superblock of a tile) overlaps them: 8 rows of Q6_K went from
/// 2.9x to 2.0x the time of one, Q4_K from 2.8x to 2.4x (AMD EPYC Zen 4,
/// `cargo run --release -p ouro-kernels --example matmul 151936 1536`).
const PREFETCH_AHEAD: usize = 2048;

/// The prefetch distance; `OURO_PREFETCH` (bytes, 0 = off) overrides it so
/// the distance can be tuned on another CPU without a rebuild.
#[inline(always)]
pub(crate) fn pf_dist() -> usize {
    static D: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *D.get_or_init(|| std::env::var("OURO_PREFETCH").ok().and_then(|v| v.parse().ok()).unwrap_or(PREFETCH_AHEAD))
}

/// Asks for the line `dist` bytes past `p`. A prefetch never faults, so a
/// hint past the end of the matrix is harmless (hence `wrapping_add`).
#[inline(always)]
pub(crate) unsafe fn prefetch(p: *const u8, dist: usize) {
    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_add(dist) as *const i8);
}
