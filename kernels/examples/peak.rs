//! The CPU's int8 multiply-add rate on one core, the ceiling of every kernel
//! path: `cargo run --release -p ouro-kernels --example peak`.
//!
//! Twelve independent accumulators keep the instruction at its throughput,
//! not its latency. AVX-512 VNNI runs `vpdpbusd` (64 MACs per instruction);
//! AVX2 runs `vpmaddubsw` + `vpmaddwd` + `vpaddd` (32 MACs per three), as the
//! AVX2 kernels do. docs/BENCHMARKS.md compares c(k) against these rates.

use std::time::Instant;

const ITERS: u64 = 100_000_000;
const CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CHAINS, ITERS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn vnni512() -> i32 {
        let (a, b) = (_mm512_set1_epi8(3), _mm512_set1_epi8(5));
        let mut acc = [_mm512_setzero_si512(); CHAINS];
        for _ in 0..ITERS {
            for c in acc.iter_mut() {
                *c = _mm512_dpbusd_epi32(*c, a, b);
            }
        }
        acc.iter().fold(0, |s, c| s.wrapping_add(_mm512_reduce_add_epi32(*c)))
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2() -> i32 {
        // Weights change every iteration (as in a kernel), so nothing is
        // loop-invariant for the compiler to hoist.
        let data: Vec<u8> = (0..64 * 32).map(|i| (i * 7 % 16) as u8).collect();
        let one = _mm256_set1_epi16(1);
        let x: [__m256i; CHAINS] = std::array::from_fn(|c| _mm256_set1_epi8(c as i8 + 1));
        let mut acc = [_mm256_setzero_si256(); CHAINS];
        for i in 0..ITERS as usize {
            let w = _mm256_loadu_si256(data.as_ptr().add((i & 63) * 32) as *const __m256i);
            for (c, x) in acc.iter_mut().zip(&x) {
                *c = _mm256_add_epi32(*c, _mm256_madd_epi16(_mm256_maddubs_epi16(w, *x), one));
            }
        }
        let mut out = [0i32; 8];
        let s = acc.iter().fold(_mm256_setzero_si256(), |s, c| _mm256_add_epi32(s, *c));
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, s);
        out.iter().fold(0, |s, v| s.wrapping_add(*v))
    }
}

fn report(name: &str, macs_per_op: f64, f: impl FnOnce() -> i32) {
    let t = Instant::now();
    let check = f();
    let s = t.elapsed().as_secs_f64();
    let ops = (ITERS * CHAINS as u64) as f64;
    println!(
        "{name}: {:.1} GMAC/s on one core ({:.2} G instructions/s; checksum {check})",
        ops * macs_per_op / s / 1e9,
        ops / s / 1e9
    );
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the features were detected above.
            report("avx512 vpdpbusd", 64.0, || unsafe { x86::vnni512() });
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            report("avx2 vpmaddubsw+vpmaddwd", 32.0, || unsafe { x86::avx2() });
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("no int8 peak measurement for this architecture yet");
}
