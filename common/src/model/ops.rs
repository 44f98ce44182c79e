//! Row-wise kernels of the forward pass.
//!
//! Each function computes every row independently and in a fixed summation
//! order. That is the point: the logits of a token must not depend on how many
//! other tokens share its forward pass, or a k-token verification would drift
//! from k single decode steps and greedy speculation would stop being
//! byte-identical to plain decoding (llama.cpp's chunked evaluation fails this).

/// Dot product with eight fixed accumulator lanes, combined in a fixed order
/// (the order `ouro_kernels::lanes` documents and follows four at a time).
/// The lanes let the compiler vectorise without changing the result between
/// calls of different batch shapes.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..a.len() {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// RMSNorm of each `dim`-wide row of `x`, scaled by `weight`.
pub(crate) fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    for (row, o) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let ss = dot(row, row) / dim as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        for ((o, &v), &w) in o.iter_mut().zip(row).zip(weight) {
            *o = v * inv * w;
        }
    }
}

/// Precomputed rotary tables: `cos[p * half + i]`, `sin[...]` for position p.
pub(crate) struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
    interleaved: bool,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f32, max_pos: usize, interleaved: bool) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for i in 0..half {
                // f64 so the table does not lose precision at large positions.
                let inv_freq = 1.0 / (theta as f64).powf(2.0 * i as f64 / head_dim as f64);
                let a = p as f64 * inv_freq;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Self { cos, sin, half, interleaved }
    }

    /// Rotates each `head_dim`-wide head of one token's row in place.
    pub fn apply(&self, row: &mut [f32], pos: usize) {
        let half = self.half;
        let cos = &self.cos[pos * half..(pos + 1) * half];
        let sin = &self.sin[pos * half..(pos + 1) * half];
        for head in row.chunks_exact_mut(2 * half) {
            if self.interleaved {
                for i in 0..half {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = a * cos[i] - b * sin[i];
                    head[2 * i + 1] = a * sin[i] + b * cos[i];
                }
            } else {
                for i in 0..half {
                    let (a, b) = (head[i], head[i + half]);
                    head[i] = a * cos[i] - b * sin[i];
                    head[i + half] = a * sin[i] + b * cos[i];
                }
            }
        }
    }
}

/// `gate = silu(gate) * up`, row-wise and in place.
/// Elementwise, so a long pass splits it over the threads.
pub(crate) fn swiglu(gate: &mut [f32], up: &[f32]) {
    if gate.len() <= 1 << 14 {
        return swiglu_serial(gate, up);
    }
    ouro_kernels::pool::for_pieces(gate, 1, &|first, g| swiglu_serial(g, &up[first..first + g.len()]));
}

fn swiglu_serial(gate: &mut [f32], up: &[f32]) {
    ouro_kernels::exp::silu_mul(gate, up);
}

/// `s = e^(s - max)` for each score, returning their sum taken in order.
/// The exponential is the kernels' own (the same bits on every path and
/// machine, eight at a time); the sum stays sequential, so it does not
/// depend on how the scores were computed. (The one-query reference's;
/// [`sums_in_order`] takes the same sums for many queries at once.)
#[cfg(test)]
fn softmax_weights(scores: &mut [f32], max: f32) -> f32 {
    scores.iter_mut().for_each(|s| *s -= max);
    ouro_kernels::exp::exp_in_place(scores);
    scores.iter().fold(0.0, |sum, &w| sum + w)
}

/// The largest of `x` (not NaN): in eight lanes, as the largest value is
/// the same in any order.
fn max_of(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    tail.iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// The sum of each row `i` of `rows` (`lens[i]` values at `i * width`),
/// taken in order as [`softmax_weights`] does, the rows' sums side by side:
/// one sum in order is a chain of dependent adds, and eight chains run in
/// the time of one (Qwen2.5's six heads a row: six at once). Every row's
/// first `common` values are summed together.
fn sums_in_order(rows: &[f32], width: usize, common: usize, lens: &[usize]) -> Vec<f32> {
    let mut sums = vec![0f32; lens.len()];
    for (g, sums) in sums.chunks_mut(8).enumerate() {
        let first = g * 8;
        let row = |j: usize| &rows[(first + j) * width..(first + j) * width + lens[first + j]];
        let r: Vec<&[f32]> = (0..sums.len()).map(|j| &row(j)[..common]).collect();
        // One index into up to eight rows: the adds of a slot side by side.
        #[allow(clippy::needless_range_loop)]
        for s in 0..common {
            for (sum, r) in sums.iter_mut().zip(&r) {
                *sum += r[s];
            }
        }
        for (j, sum) in sums.iter_mut().enumerate() {
            *sum = row(j)[common..].iter().fold(*sum, |a, &w| a + w);
        }
    }
    sums
}

/// Attention of one query head over a set of key/value rows.
///
/// `slots` lists the cache rows the query may see, in increasing order; the
/// order is what keeps the sums identical between a tree pass and a
/// sequential one. `scores` is scratch space of at least `slots.len()`.
/// One key/value head of a cache: rows of `stride` floats, the head's
/// `q.len()` values starting at `offset` in each row.
pub(crate) struct KvHead<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub stride: usize,
    pub offset: usize,
}

/// One query at a time: the reference [`attend_shared`] must match bit for bit.
#[cfg(test)]
pub(crate) fn attend(q: &[f32], kv: &KvHead<'_>, slots: &[usize], scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    // The same code compiled for wider registers: every sum keeps its lanes
    // and its order (Rust never fuses a multiply and an add on its own), so
    // both builds give the same bits and only the speed differs.
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX2 was detected at run time.
        return unsafe { attend_avx2(q, kv, slots, scale, scores, out) };
    }
    attend_any(q, kv, slots, scale, scores, out)
}

#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

#[cfg(all(test, target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn attend_avx2(q: &[f32], kv: &KvHead<'_>, slots: &[usize], scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    attend_any(q, kv, slots, scale, scores, out)
}

#[cfg(test)]
#[inline(always)]
fn attend_any(q: &[f32], kv: &KvHead<'_>, slots: &[usize], scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    let (keys, values, kv_stride, kv_offset) = (kv.keys, kv.values, kv.stride, kv.offset);
    let d = q.len();
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for &s in slots {
        let k = &keys[s * kv_stride + kv_offset..s * kv_stride + kv_offset + d];
        let v = dot(q, k) * scale;
        max = max.max(v);
        scores.push(v);
    }
    let inv = 1.0 / softmax_weights(scores, max);
    out.fill(0.0);
    for (&s, &w) in slots.iter().zip(scores.iter()) {
        let v = &values[s * kv_stride + kv_offset..s * kv_stride + kv_offset + d];
        ouro_kernels::lanes::axpy(out, w * inv, v);
    }
}

/// Query heads that read one key/value head: `rows` rows of `heads` heads
/// each, query `r * heads + h` at `queries[r * heads + h]`. Every row sees the
/// cache rows `common` and then its own `rest[r]`, both in increasing order.
pub(crate) struct SharedQueries<'a> {
    pub queries: &'a [&'a [f32]],
    pub heads: usize,
    pub common: &'a [usize],
    pub rest: &'a [&'a [usize]],
}

/// Keys (and values) per block of the loops over `common`: 32 rows of 128
/// floats stay in L1 while every query of the group passes over them.
const SLOT_BLOCK: usize = 32;

/// `attend` (the one-query reference in the tests) for every query of `g`, into `out` (query-major, `head_dim`
/// each). Each query's scores, softmax and weighted sum follow exactly the
/// order `attend` takes over `common` then `rest`, so the bits are the
/// same; only the loops are turned so a block of keys or values is read
/// once for all the queries (6 heads × k rows for Qwen2.5's grouped
/// attention) instead of once per query.
pub(crate) fn attend_shared(
    g: &SharedQueries<'_>,
    kv: &KvHead<'_>,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX2 was detected at run time.
        return unsafe { attend_shared_avx2(g, kv, scale, scores, out) };
    }
    attend_shared_any(g, kv, scale, scores, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn attend_shared_avx2(
    g: &SharedQueries<'_>,
    kv: &KvHead<'_>,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    attend_shared_any(g, kv, scale, scores, out)
}

#[inline(always)]
fn attend_shared_any(g: &SharedQueries<'_>, kv: &KvHead<'_>, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    use ouro_kernels::lanes;
    let (keys, values, stride, offset) = (kv.keys, kv.values, kv.stride, kv.offset);
    let nq = g.queries.len();
    let Some(d) = g.queries.first().map(|q| q.len()) else { return };
    let nc = g.common.len();
    let row_of = |i: usize| i / g.heads;
    // Query i's scores: `common` at base(i)..base(i)+nc, then its `rest`.
    let width = nc + g.rest.iter().map(|r| r.len()).max().unwrap_or(0);
    scores.clear();
    scores.resize(nq * width, 0.0);
    let key = |s: usize| &keys[s * stride + offset..s * stride + offset + d];
    let value = |s: usize| &values[s * stride + offset..s * stride + offset + d];
    let blocks: Vec<&[usize]> = g.common.chunks(SLOT_BLOCK).collect();
    let (mut rows, mut next): (Vec<&[f32]>, Vec<&[f32]>) = (Vec::new(), Vec::new());
    for (b, block) in blocks.iter().enumerate() {
        rows.clear();
        rows.extend(block.iter().map(|&s| key(s)));
        // While these keys are summed: the next ones, after the last the first values.
        next.clear();
        match blocks.get(b + 1) {
            Some(n) => next.extend(n.iter().map(|&s| key(s))),
            None => next.extend(blocks[0].iter().map(|&s| value(s))),
        }
        lanes::dots_scaled(g.queries, &rows, scale, &mut scores[b * SLOT_BLOCK..], width, &next);
    }
    let lens: Vec<usize> = (0..nq).map(|i| nc + g.rest[row_of(i)].len()).collect();
    for (i, q) in g.queries.iter().enumerate() {
        let sc = &mut scores[i * width..i * width + lens[i]];
        for (o, &s) in sc[nc..].iter_mut().zip(g.rest[row_of(i)]) {
            *o = dot(q, key(s)) * scale;
        }
        let max = max_of(sc);
        sc.iter_mut().for_each(|s| *s -= max);
        ouro_kernels::exp::exp_in_place(sc);
    }
    for (i, sum) in sums_in_order(scores, width, nc, &lens).into_iter().enumerate() {
        // Each weight is its score times the inverse sum, as it is used.
        let inv = 1.0 / sum;
        scores[i * width..i * width + lens[i]].iter_mut().for_each(|w| *w *= inv);
    }
    out.fill(0.0);
    let mut weights: Vec<&[f32]> = Vec::with_capacity(nq);
    for (b, block) in blocks.iter().enumerate() {
        let at = b * SLOT_BLOCK;
        rows.clear();
        rows.extend(block.iter().map(|&s| value(s)));
        next.clear();
        next.extend(blocks.get(b + 1).into_iter().flat_map(|n| n.iter().map(|&s| value(s))));
        weights.clear();
        weights.extend((0..nq).map(|i| &scores[i * width + at..i * width + at + block.len()]));
        lanes::axpy_rows(out, d, &weights, &rows, &next);
    }
    for (i, o) in out.chunks_exact_mut(d).enumerate() {
        let rest = g.rest[row_of(i)];
        let w = &scores[i * width + nc..i * width + nc + rest.len()];
        for (&w, &s) in w.iter().zip(rest) {
            lanes::axpy(o, w, value(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64) * (*y as f64)).sum();
        assert!((dot(&a, &b) as f64 - naive).abs() < 1e-3);
    }

    #[test]
    fn rope_preserves_norm_and_is_identity_at_zero() {
        for interleaved in [false, true] {
            let rope = Rope::new(8, 10000.0, 16, interleaved);
            let orig: Vec<f32> = (0..16).map(|i| i as f32 - 3.0).collect();
            let mut r = orig.clone();
            rope.apply(&mut r, 0);
            assert_eq!(r, orig);
            rope.apply(&mut r, 7);
            assert!((dot(&r, &r) - dot(&orig, &orig)).abs() < 1e-2);
            assert_ne!(r, orig);
        }
    }

    /// Grouped queries over a shared slot prefix give, per query, the bits of
    /// the one-query reference, for prefixes shorter and longer than a block.
    #[test]
    fn shared_attention_equals_one_query_at_a_time() {
        // Qwen2.5's heads (128 floats, two key/value heads a row) take the
        // kernels' vector paths; 16 floats their narrower ones.
        for (d, heads, stride, offset) in [(16, 3, 40, 8), (128, 6, 256, 128)] {
            shared_attention_case(d, heads, stride, offset);
        }
    }

    fn shared_attention_case(d: usize, heads: usize, stride: usize, offset: usize) {
        let mut seed = 7u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        };
        let slots_total = 80;
        let keys: Vec<f32> = (0..slots_total * stride).map(|_| rnd()).collect();
        let values: Vec<f32> = (0..slots_total * stride).map(|_| rnd()).collect();
        let kv = KvHead { keys: &keys, values: &values, stride, offset };
        for common_len in [0, 5, 32, 33, 70] {
            let common: Vec<usize> = (0..common_len).collect();
            let rest_rows: Vec<Vec<usize>> =
                vec![vec![], vec![common_len], vec![common_len + 2, common_len + 5, common_len + 9]];
            let rest: Vec<&[usize]> = rest_rows.iter().map(|r| r.as_slice()).collect();
            let qs: Vec<Vec<f32>> = (0..rest.len() * heads).map(|_| (0..d).map(|_| rnd()).collect()).collect();
            let queries: Vec<&[f32]> = qs.iter().map(|q| q.as_slice()).collect();
            if common_len == 0 && rest_rows[0].is_empty() {
                continue; // a row that sees nothing is not a query the model makes
            }
            let g = SharedQueries { queries: &queries, heads, common: &common, rest: &rest };
            let mut out = vec![0f32; queries.len() * d];
            attend_shared(&g, &kv, 0.25, &mut Vec::new(), &mut out);
            for (i, q) in queries.iter().enumerate() {
                let slots: Vec<usize> = common.iter().chain(rest[i / heads]).copied().collect();
                let mut want = vec![0f32; d];
                attend(q, &kv, &slots, 0.25, &mut Vec::new(), &mut want);
                let got = &out[i * d..(i + 1) * d];
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "query {i}, {common_len} shared slots"
                );
            }
        }
    }

    #[test]
    fn attention_is_a_convex_combination() {
        let q = [1.0, 0.0];
        let keys = [1.0, 0.0, 0.0, 1.0, 5.0, 5.0];
        let values = [1.0, 1.0, 3.0, 3.0, 100.0, 100.0];
        let mut out = [0.0; 2];
        let mut scratch = Vec::new();
        attend(
            &q,
            &KvHead { keys: &keys, values: &values, stride: 2, offset: 0 },
            &[0, 1],
            1.0,
            &mut scratch,
            &mut out,
        );
        // Scores 1 and 0 (slot 2, with its large value, is not attended):
        // softmax weights w = 1 / (1 + e^-1) and 1 - w.
        let w = 1.0 / (1.0 + (-1.0f32).exp());
        let want = w * 1.0 + (1.0 - w) * 3.0;
        for (i, o) in out.iter().enumerate() {
            assert!((o - want).abs() < 1e-5, "component {i}: {o} != {want}");
        }
    }
}
