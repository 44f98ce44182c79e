//! The seedable random source behind every sampling decision.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::argmax;

/// A deterministic generator: the same seed and the same sequence of calls give
/// the same numbers on every machine and every build.
///
/// ChaCha20 is specified bit-for-bit, and the key is built from the seed here
/// rather than through `SeedableRng::seed_from_u64`, whose expansion is an
/// implementation detail of `rand_core`.
#[derive(Debug, Clone)]
pub struct SamplerRng(ChaCha20Rng);

/// Fills the key bytes the seed does not, so ouro's streams differ from any
/// other ChaCha user's with the same small seed.
const KEY_TAG: &[u8; 24] = b"ouro/sampling/chacha20/1";

impl SamplerRng {
    pub fn new(seed: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..].copy_from_slice(KEY_TAG);
        Self(ChaCha20Rng::from_seed(key))
    }

    /// An independent stream under the same seed, e.g. one per request or per
    /// component, so adding draws to one cannot shift another's.
    pub fn with_stream(seed: u64, stream: u64) -> Self {
        let mut rng = Self::new(seed);
        rng.0.set_stream(stream);
        rng
    }

    /// Uniform in `[0, 1)` with 53 random bits, defined here so the mapping
    /// from bits to floats cannot change under us.
    pub fn next_f64(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl RngCore for SamplerRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

/// Draws a token id from dense probabilities (see [`sample_dense_f64`]).
pub fn sample_dense(probs: &[f32], rng: &mut SamplerRng) -> u32 {
    sample_by_cdf(probs.len(), |i| probs[i] as f64, rng)
}

/// Draws a token id from dense probabilities, which need not sum to 1: the
/// draw is scaled by their total, so callers can pass an unnormalised
/// residual.
///
/// Negative and non-finite entries count as zero. With no positive mass at all
/// the draw falls back to the largest entry, so a broken row still yields a
/// token instead of a panic. Exactly one number is drawn either way, keeping
/// later draws aligned.
pub fn sample_dense_f64(probs: &[f64], rng: &mut SamplerRng) -> u32 {
    sample_by_cdf(probs.len(), |i| probs[i], rng)
}

fn sample_by_cdf(n: usize, prob: impl Fn(usize) -> f64, rng: &mut SamplerRng) -> u32 {
    let mass = |i: usize| {
        let p = prob(i);
        if p.is_finite() && p > 0.0 {
            p
        } else {
            0.0
        }
    };
    let u = rng.next_f64();
    let total: f64 = (0..n).map(mass).sum();
    if total <= 0.0 {
        let as_f32: Vec<f32> = (0..n).map(|i| prob(i) as f32).collect();
        return argmax(&as_f32);
    }
    let threshold = u * total;
    let mut cum = 0.0;
    let mut last = 0;
    for i in 0..n {
        let p = mass(i);
        if p > 0.0 {
            cum += p;
            last = i;
            if threshold < cum {
                return i as u32;
            }
        }
    }
    // Rounding can leave `threshold` a hair above the final sum; the last
    // possible token is the one that interval belongs to.
    last as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = SamplerRng::new(42);
        let mut b = SamplerRng::new(42);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SamplerRng::new(43).next_u64(), xs[0]);
        assert_ne!(SamplerRng::with_stream(42, 1).next_u64(), xs[0]);
    }

    #[test]
    fn stream_is_pinned() {
        // Guards against an accidental change of key derivation or algorithm:
        // recorded outputs must be reproducible forever.
        let mut r = SamplerRng::new(7);
        let first = r.next_u64();
        let mut again = SamplerRng::new(7);
        assert_eq!(again.next_u64(), first);
        let u = SamplerRng::new(7).next_f64();
        assert_eq!(u, (first >> 11) as f64 / (1u64 << 53) as f64);
        assert_eq!(first, PINNED_SEED7_FIRST);
    }

    // The first 64 bits of the RFC 8439 ChaCha20 keystream (counter 0, nonce 0)
    // under the key seed 7 || KEY_TAG, checked against an independent
    // implementation of the block function.
    const PINNED_SEED7_FIRST: u64 = 6_600_878_143_410_327_426;

    #[test]
    fn unit_floats_are_in_range() {
        let mut r = SamplerRng::new(1);
        for _ in 0..10_000 {
            let u = r.next_f64();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn sample_follows_probabilities() {
        let mut r = SamplerRng::new(9);
        let p = [0.1f32, 0.0, 0.6, 0.3];
        let mut counts = [0usize; 4];
        let n = 100_000;
        for _ in 0..n {
            counts[sample_dense(&p, &mut r) as usize] += 1;
        }
        assert_eq!(counts[1], 0);
        for (c, q) in counts.iter().zip(p) {
            assert!((*c as f64 / n as f64 - q as f64).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn unnormalised_and_broken_rows() {
        let mut r = SamplerRng::new(3);
        assert_eq!(sample_dense_f64(&[0.0, 5.0, 0.0], &mut r), 1);
        assert_eq!(sample_dense_f64(&[f64::NAN, -1.0, 2.0], &mut r), 2);
        assert_eq!(sample_dense_f64(&[0.0, 0.0], &mut r), 0);
        assert_eq!(sample_dense(&[], &mut r), 0);
        assert_eq!(sample_dense(&[-1.0, f32::NAN], &mut r), 0);
    }

    #[test]
    fn sampling_is_reproducible() {
        let p = [0.25f32; 4];
        let run = |seed| {
            let mut r = SamplerRng::new(seed);
            (0..64).map(|_| sample_dense(&p, &mut r)).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}
