//! Deterministic stand-in targets for tests: logits are a hash of the context,
//! so any path can be re-evaluated exactly, as a real model would.

/// Mixes a context into 64 well-spread bits (splitmix64 steps).
pub fn hash_ctx(salt: u64, ctx: &[u32]) -> u64 {
    let mut h = salt ^ 0x9e37_79b9_7f4a_7c15;
    for &t in ctx {
        h = mix(h ^ t as u64);
    }
    mix(h)
}

pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in `[0, 1)` from the `k`-th hash of a context.
pub fn unit(h: u64, k: u64) -> f64 {
    (mix(h ^ k.wrapping_mul(0xd6e8_feb8_6659_fd93)) >> 11) as f64 / (1u64 << 53) as f64
}

/// A target whose logits take only a few integer values, so argmax ties are
/// common and the tie rule is exercised.
pub struct GreedyTarget {
    pub vocab: usize,
    pub salt: u64,
}

impl GreedyTarget {
    pub fn logits(&self, ctx: &[u32]) -> Vec<f32> {
        let h = hash_ctx(self.salt, ctx);
        (0..self.vocab as u64).map(|i| (unit(h, i) * 4.0).floor() as f32).collect()
    }
}
