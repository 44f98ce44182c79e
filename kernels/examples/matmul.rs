//! Times one matmul per format and row count on every path this CPU runs:
//! `cargo run --release -p ouro-kernels --example matmul [n k]`.
//! Prints ms per call, the cost of m rows relative to one and the int8 rate; `OURO_KERNEL`
//! names one path to time instead of all, `OURO_FORMATS` (e.g. `Q6K,Q4K`) the formats.
//! With `RAYON_NUM_THREADS=1` the times are the calling thread's CPU time, so
//! other work on a shared machine moves them far less than wall time.

use std::time::Instant;

use ouro_kernels::{Activations, Format, Isa, PackedMatrix};

fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out-pointer and a clock Linux defines.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let one_thread = ouro_kernels::pool::threads() == 1;
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (n, k) = (args.first().copied().unwrap_or(8960), args.get(1).copied().unwrap_or(1536));
    let mut seed = 1u64;
    let mut byte = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as u8
    };
    let formats = std::env::var("OURO_FORMATS").unwrap_or_default();
    for format in [Format::Q4K, Format::Q6K, Format::Q8_0, Format::Q5_0] {
        if !formats.is_empty() && !formats.split(',').any(|f| f == format!("{format:?}")) {
            continue;
        }
        let blocks = n * k / format.block();
        let mut bytes: Vec<u8> = (0..blocks * format.block_bytes()).map(|_| byte()).collect();
        // Tame the f16 scales so no value is inf or NaN.
        for b in bytes.chunks_exact_mut(format.block_bytes()) {
            let at = if format == Format::Q6K { 208 } else { 0 };
            b[at..at + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
            if format == Format::Q4K {
                b[2..4].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
            }
        }
        let w = PackedMatrix::from_ggml(format, &bytes, n, k).expect("shape");
        drop(bytes);
        let only = std::env::var("OURO_KERNEL").ok();
        for isa in Isa::available_all().into_iter().filter(|i| only.as_deref().is_none_or(|o| o == i.name())) {
            let mut base = 0.0;
            let mut line = format!("{format:?} {n}x{k} {isa:>8}:");
            for m in [1, 2, 4, 8, 16, 32] {
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
                let mut y = vec![0f32; m * n];
                let reps = 20;
                let mut best = f64::MAX;
                for _ in 0..reps {
                    let acts = Activations::new(&x, m, k);
                    let (t, c) = (Instant::now(), thread_cpu_secs());
                    w.matmul(isa, &acts, &mut y).expect("matmul");
                    let ms = if one_thread { (thread_cpu_secs() - c) * 1e3 } else { t.elapsed().as_secs_f64() * 1e3 };
                    best = best.min(ms);
                }
                if m == 1 {
                    base = best;
                    line += &format!(" m=1 {best:.3} ms ({:.1} GB/s)", w.size_bytes() as f64 / best / 1e6);
                } else {
                    let gmacs = (m * n * k) as f64 / best / 1e6;
                    line += &format!(" | {m}: {best:.2} ms {:.2}x {gmacs:.0} GMAC/s", best / base);
                }
            }
            println!("{line}");
        }
    }
}
