//! Every path against the reference, bit for bit, over ragged shapes.

use crate::packed::{Format, PackedMatrix};
use crate::{reference, Activations, Isa};

/// A small deterministic generator (tests must not depend on a crate's RNG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    /// A positive f16 scale in [2^-12, 2^-6), as real files hold.
    fn scale(&mut self) -> [u8; 2] {
        half::f16::from_f32((1 + self.next() % 64) as f32 / 4096.0).to_le_bytes()
    }
    fn f32(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 10000.0 - 1.0
    }
}

/// `n` rows of `k` values in the file's layout, every byte random but the scales.
fn ggml_matrix(format: Format, n: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut rng = Lcg(seed);
    let blocks = n * k / format.block();
    let mut out = Vec::with_capacity(blocks * format.block_bytes());
    for _ in 0..blocks {
        let mut b: Vec<u8> = (0..format.block_bytes()).map(|_| rng.byte()).collect();
        match format {
            Format::Q4K => {
                b[0..2].copy_from_slice(&rng.scale());
                b[2..4].copy_from_slice(&rng.scale());
            }
            Format::Q6K => b[208..210].copy_from_slice(&rng.scale()),
            Format::Q8_0 | Format::Q5_0 => b[0..2].copy_from_slice(&rng.scale()),
        }
        out.extend_from_slice(&b);
    }
    out
}

fn activations(m: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut rng = Lcg(seed);
    // Rows of very different magnitudes, and an all-zero row.
    (0..m * k).map(|i| if i / k == 2 { 0.0 } else { rng.f32() * (1 + i / k) as f32 }).collect()
}

fn ks(format: Format) -> &'static [usize] {
    match format {
        Format::Q8_0 | Format::Q5_0 => &[32, 96, 576],
        _ => &[256, 768],
    }
}

const FORMATS: [Format; 4] = [Format::Q4K, Format::Q6K, Format::Q8_0, Format::Q5_0];

#[test]
fn every_path_equals_the_reference_bit_for_bit() {
    for format in FORMATS {
        for &k in ks(format) {
            for n in [1, 15, 16, 17, 40] {
                let bytes = ggml_matrix(format, n, k, (n * k) as u64);
                let w = PackedMatrix::from_ggml(format, &bytes, n, k).unwrap();
                for m in [1, 2, 3, 4, 5, 8, 9, 13, 17] {
                    let x = activations(m, k, m as u64);
                    let acts = Activations::new(&x, m, k);
                    let mut want = vec![0f32; m * n];
                    reference::matmul(format, &bytes, n, k, &acts, &mut want);
                    for isa in Isa::available_all() {
                        let mut got = vec![f32::NAN; m * n];
                        w.matmul(isa, &acts, &mut got).unwrap();
                        let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{format:?} {isa} n={n} k={k} m={m}: {:?} vs {:?}",
                            &got[..4.min(n)],
                            &want[..4.min(n)]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_row_gets_the_same_bits_whatever_shares_its_pass_and_however_many_threads() {
    let (n, k) = (70, 512);
    for format in FORMATS {
        let bytes = ggml_matrix(format, n, k, 9);
        let w = PackedMatrix::from_ggml(format, &bytes, n, k).unwrap();
        let x = activations(33, k, 3);
        for isa in Isa::available_all() {
            let full = Activations::new(&x, 33, k);
            let mut all = vec![0f32; 33 * n];
            w.matmul(isa, &full, &mut all).unwrap();
            for (m, threads) in [(1, 1), (2, 2), (5, 3), (16, 2), (33, 1)] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                // The last m rows alone: each sits at another position in the pass.
                let rows = &x[(33 - m) * k..];
                let acts = Activations::new(rows, m, k);
                let mut y = vec![0f32; m * n];
                pool.install(|| w.matmul(isa, &acts, &mut y)).unwrap();
                assert!(y == all[(33 - m) * n..], "{format:?} {isa} m={m} threads={threads}");
            }
        }
    }
}

#[test]
fn repacked_rows_dequantize_like_the_file() {
    for format in FORMATS {
        let (n, k) = (19, ks(format)[1]);
        let bytes = ggml_matrix(format, n, k, 5);
        let w = PackedMatrix::from_ggml(format, &bytes, n, k).unwrap();
        let (mut a, mut b) = (vec![0f32; k], vec![0f32; k]);
        for r in 0..n {
            w.dequantize_row(r, &mut a);
            reference::dequantize_row(format, &bytes, k, r, &mut b);
            assert!(a == b, "{format:?} row {r}");
        }
    }
}

#[test]
fn the_integer_recipe_is_the_dot_product_of_the_dequantized_values() {
    // Guards the decoding itself: the reference could agree with the
    // kernels and still be wrong about what the blocks mean.
    for format in FORMATS {
        let (n, k, m) = (9, ks(format)[1], 3);
        let bytes = ggml_matrix(format, n, k, 11);
        let x = activations(m, k, 4);
        let acts = Activations::new(&x, m, k);
        let mut y = vec![0f32; m * n];
        reference::matmul(format, &bytes, n, k, &acts, &mut y);
        let a = if matches!(format, Format::Q8_0 | Format::Q5_0) { acts.q80() } else { acts.q8k() };
        let mut wr = vec![0f32; k];
        for c in 0..n {
            reference::dequantize_row(format, &bytes, k, c, &mut wr);
            for r in 0..m {
                let exact: f64 =
                    (0..k).map(|i| wr[i] as f64 * a.qs[r * k + i] as f64 * a.d[(r * k + i) / a.block] as f64).sum();
                let scale: f64 = (0..k).map(|i| (wr[i] as f64 * x[r * k + i] as f64).abs()).sum::<f64>() + 1e-6;
                let err = (y[r * n + c] as f64 - exact).abs();
                assert!(err <= 1e-4 * scale, "{format:?} ({r},{c}): {} vs {exact}", y[r * n + c]);
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let bytes = ggml_matrix(Format::Q4K, 2, 256, 1);
    assert!(PackedMatrix::from_ggml(Format::Q4K, &bytes, 3, 256).is_err());
    assert!(PackedMatrix::from_ggml(Format::Q4K, &bytes[..100], 2, 256).is_err());
    assert!(PackedMatrix::from_ggml(Format::Q8_0, &bytes, 2, 100).is_err());
    let w = PackedMatrix::from_ggml(Format::Q4K, &bytes, 2, 256).unwrap();
    let x = vec![0f32; 512];
    let acts = Activations::new(&x, 2, 256);
    assert!(w.matmul(Isa::Portable, &acts, &mut [0f32; 3]).is_err());
    let acts = Activations::new(&x, 1, 512);
    assert!(w.matmul(Isa::Portable, &acts, &mut [0f32; 2]).is_err());
}
