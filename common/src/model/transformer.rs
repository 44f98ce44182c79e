//! The Llama-family decoder (llama, qwen2, minicpm) over a batch of sequences.

use super::config::ModelConfig;
use super::kv_cache::KvCache;
use super::linear::Linear;
use super::ops::{self, Rope};
use super::vocab::VocabSubset;
use super::{CausalLm, Head, Logits, LogitsRows, ModelError, Result, SeqInput};

pub struct Block {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) o: Linear,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) gate: Linear,
    pub(crate) up: Linear,
    pub(crate) down: Linear,
}

/// A drafter's restricted LM head (FR-Spec): the rows of the LM head for
/// the ids of a [`VocabSubset`], packed as a matrix of their own, so a
/// drafter's step reads `subset` rows instead of the whole vocabulary's.
///
/// It is built from the model file's own rows ([`super::gguf::load_draft_head`])
/// in the full head's format, and every column is computed by the same kernel
/// and dot product as in the full head, so its logits equal the full head's
/// at those ids bit for bit. Memory: `subset / vocab` of the full head on top
/// of it (32,768 of Qwen2.5-0.5B's 151,936 rows of Q8_0: 31.2 MB beside
/// 144.6 MB).
pub struct DraftHead {
    pub(crate) subset: VocabSubset,
    pub(crate) head: Linear,
}

impl DraftHead {
    pub fn subset(&self) -> &VocabSubset {
        &self.subset
    }

    pub fn size_bytes(&self) -> usize {
        self.head.weight().size_bytes()
    }
}

pub struct Transformer {
    cfg: ModelConfig,
    /// `[vocab, hidden]`; its rows are the embeddings.
    embed: Linear,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    lm_head: Linear,
    /// Only on a drafter, and only used when a pass asks for [`Head::Draft`].
    draft_head: Option<DraftHead>,
    rope: Rope,
}

/// Where one sequence's rows sit in the concatenated batch.
struct Span {
    start: usize,
    n: usize,
    cached: usize,
}

impl Transformer {
    pub(crate) fn new(
        cfg: ModelConfig,
        embed: Linear,
        blocks: Vec<Block>,
        norm: Vec<f32>,
        lm_head: Linear,
    ) -> Result<Self> {
        cfg.validate().map_err(|reason| ModelError::BadFile { path: "config".into(), reason })?;
        let shape_err = |what: &str, got: String| ModelError::BadFile {
            path: what.to_string(),
            reason: format!("unexpected shape {got} for the configured model"),
        };
        let (rows, cols) = (embed.out_dim(), embed.in_dim());
        if rows != cfg.vocab_size || cols != cfg.hidden_size {
            return Err(shape_err("token embeddings", format!("{rows}x{cols}")));
        }
        if norm.len() != cfg.hidden_size {
            return Err(shape_err("output norm", norm.len().to_string()));
        }
        if lm_head.out_dim() != cfg.vocab_size || lm_head.in_dim() != cfg.hidden_size {
            return Err(shape_err("lm_head", format!("{}x{}", lm_head.out_dim(), lm_head.in_dim())));
        }
        if blocks.len() != cfg.num_layers {
            return Err(shape_err("layers", blocks.len().to_string()));
        }
        let (h, q, kv, ff) = (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size);
        for (i, b) in blocks.iter().enumerate() {
            let dims = [
                (&b.q, h, q),
                (&b.k, h, kv),
                (&b.v, h, kv),
                (&b.o, q, h),
                (&b.gate, h, ff),
                (&b.up, h, ff),
                (&b.down, ff, h),
            ];
            for (lin, i_dim, o_dim) in dims {
                if lin.in_dim() != i_dim || lin.out_dim() != o_dim {
                    return Err(shape_err(
                        &format!("layer {i}"),
                        format!("{}x{} (expected {o_dim}x{i_dim})", lin.out_dim(), lin.in_dim()),
                    ));
                }
            }
            if b.attn_norm.len() != h || b.ffn_norm.len() != h {
                return Err(shape_err(&format!("layer {i} norms"), b.attn_norm.len().to_string()));
            }
        }
        let rope = Rope::new(cfg.head_dim, cfg.rope_theta, cfg.max_context, cfg.rope_interleaved);
        Ok(Self { cfg, embed, blocks, norm, lm_head, draft_head: None, rope })
    }

    /// Gives the model a restricted drafter head, which passes asking for
    /// [`Head::Draft`] then use (replacing any earlier one).
    pub fn set_draft_head(&mut self, head: DraftHead) -> Result<()> {
        let (vocab, hidden) = (self.cfg.vocab_size, self.cfg.hidden_size);
        let (rows, cols, n) = (head.head.out_dim(), head.head.in_dim(), head.subset.len());
        if rows != n || cols != hidden {
            return Err(ModelError::InvalidInput(format!(
                "a restricted head of {rows}x{cols} for {n} ids of a model of width {hidden}"
            )));
        }
        if let Some(&id) = head.subset.ids().last().filter(|&&id| id as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { token: id, vocab });
        }
        self.draft_head = Some(head);
        Ok(())
    }

    /// Drops the restricted drafter head, if any.
    pub fn take_draft_head(&mut self) -> Option<DraftHead> {
        self.draft_head.take()
    }

    pub fn draft_head(&self) -> Option<&DraftHead> {
        self.draft_head.as_ref()
    }

    /// Bytes held by the weight matrices (shared tied weights counted once,
    /// a restricted drafter head included).
    pub fn weight_bytes(&self) -> usize {
        let mut total = self.embed.weight().size_bytes();
        if !std::sync::Arc::ptr_eq(self.embed.weight(), self.lm_head.weight()) {
            total += self.lm_head.weight().size_bytes();
        }
        total += self.draft_head.as_ref().map_or(0, DraftHead::size_bytes);
        for b in &self.blocks {
            for l in [&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down] {
                total += l.weight().size_bytes();
            }
        }
        total
    }

    fn validate(&self, seq: &SeqInput<'_>) -> Result<()> {
        let n = seq.tokens.len();
        if n == 0 {
            return Err(ModelError::InvalidInput("no tokens to evaluate".into()));
        }
        if seq.positions.len() != n {
            return Err(ModelError::InvalidInput(format!("{n} tokens but {} positions", seq.positions.len())));
        }
        if seq.mask.len() != n {
            return Err(ModelError::InvalidMask(format!("mask is for {} tokens, got {n}", seq.mask.len())));
        }
        if let Some(&token) = seq.tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(ModelError::TokenOutOfRange { token, vocab: self.cfg.vocab_size });
        }
        if let Some(&position) = seq.positions.iter().find(|&&p| p >= self.cfg.max_context) {
            return Err(ModelError::PositionOutOfRange { position, max: self.cfg.max_context });
        }
        let c = &seq.cache;
        if c.layers.len() != self.cfg.num_layers || c.heads != self.cfg.num_kv_heads || c.head_dim != self.cfg.head_dim
        {
            return Err(ModelError::InvalidInput("the KV cache belongs to a different model".into()));
        }
        if seq.cache.len() + n > seq.cache.max_len() {
            return Err(ModelError::PositionOutOfRange { position: seq.cache.len() + n - 1, max: seq.cache.max_len() });
        }
        if seq.head == Head::Draft && self.draft_head.is_none() {
            return Err(ModelError::InvalidInput("restricted-vocabulary logits from a model without that head".into()));
        }
        Ok(())
    }

    fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut x = self.embed.rows(tokens);
        if let Some(s) = self.cfg.minicpm {
            x.iter_mut().for_each(|v| *v *= s.embedding_scale);
        }
        Ok(x)
    }

    fn residual_scale(&self) -> Option<f32> {
        self.cfg.minicpm.map(|s| s.residual_scale)
    }

    /// Attention for every row of the batch, reading keys and values from
    /// the caches (where this layer's new rows were already written).
    ///
    /// Work is split into units of (sequence, key/value head, up to
    /// [`ROWS_PER_UNIT`] rows): the query heads of a unit share their keys
    /// and values, which [`ops::attend_shared`] then reads once for all of
    /// them. Each query's arithmetic is independent of the split.
    fn attention(&self, layer: usize, q: &[f32], seqs: &[SeqInput<'_>], spans: &[Span]) -> Vec<f32> {
        let cfg = &self.cfg;
        let (hd, qd) = (cfg.head_dim, cfg.q_dim());
        let group = cfg.num_heads / cfg.num_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let total: usize = spans.iter().map(|s| s.n).sum();
        let mut units = Vec::new();
        for (s, span) in spans.iter().enumerate() {
            for kv_head in 0..cfg.num_kv_heads {
                for first in (0..span.n).step_by(ROWS_PER_UNIT) {
                    units.push((s, kv_head, first..(first + ROWS_PER_UNIT).min(span.n)));
                }
            }
        }
        let done = std::sync::Mutex::new(Vec::with_capacity(units.len()));
        let parts = ouro_kernels::pool::threads().clamp(1, units.len().max(1));
        ouro_kernels::pool::run(parts, &|p| {
            let mut scores = Vec::new();
            let mine = (units.len() * p / parts)..(units.len() * (p + 1) / parts);
            for (u, (s, kv_head, rows)) in units.iter().enumerate().take(mine.end).skip(mine.start) {
                let (s, kv_head) = (*s, *kv_head);
                let (span, seq) = (&spans[s], &seqs[s]);
                let slots: Vec<Vec<usize>> = rows
                    .clone()
                    .map(|i| (0..span.cached).chain(seq.mask.row(i).map(|j| span.cached + j)).collect())
                    .collect();
                // The slots every row of the unit sees first, in the same order.
                let first = &slots[0];
                let shared = slots
                    .iter()
                    .skip(1)
                    .fold(first.len(), |n, other| n.min(first.iter().zip(other).take_while(|(a, b)| a == b).count()));
                let rest: Vec<&[usize]> = slots.iter().map(|l| &l[shared..]).collect();
                let heads = kv_head * group..(kv_head + 1) * group;
                let queries: Vec<&[f32]> = rows
                    .clone()
                    .flat_map(|i| {
                        let row = span.start + i;
                        heads.clone().map(move |h| &q[row * qd + h * hd..row * qd + (h + 1) * hd])
                    })
                    .collect();
                let shared_queries =
                    ops::SharedQueries { queries: &queries, heads: group, common: &first[..shared], rest: &rest };
                let kv = &seq.cache.layers[layer];
                let head_kv = ops::KvHead { keys: &kv.k[kv_head], values: &kv.v[kv_head], stride: hd, offset: 0 };
                let mut out = vec![0f32; queries.len() * hd];
                ops::attend_shared(&shared_queries, &head_kv, scale, &mut scores, &mut out);
                done.lock().unwrap_or_else(|e| e.into_inner()).push((u, out));
            }
        });
        let mut out = vec![0f32; total * qd];
        for (u, values) in done.into_inner().unwrap_or_else(|e| e.into_inner()) {
            let (s, kv_head, ref rows) = units[u];
            let start = spans[s].start;
            for (r, i) in rows.clone().enumerate() {
                let dst = (start + i) * qd + kv_head * group * hd;
                out[dst..dst + group * hd].copy_from_slice(&values[r * group * hd..(r + 1) * group * hd]);
            }
        }
        out
    }
}

/// Rows of one sequence whose query heads share a pass over the keys: with
/// Qwen2.5's 6 heads per key/value head, 8 rows are 48 queries (24 KiB).
const ROWS_PER_UNIT: usize = 8;

impl CausalLm for Transformer {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.num_layers, self.cfg.num_kv_heads, self.cfg.head_dim, self.cfg.max_context)
    }

    fn draft_vocab(&self) -> Option<&VocabSubset> {
        self.draft_head.as_ref().map(|h| &h.subset)
    }

    fn forward(&self, seqs: &mut [SeqInput<'_>]) -> Result<Vec<Logits>> {
        for s in seqs.iter() {
            self.validate(s)?;
        }
        let cfg = &self.cfg;
        let (h, qd, kvd) = (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim());
        let mut spans = Vec::with_capacity(seqs.len());
        let mut tokens = Vec::new();
        let mut positions = Vec::new();
        for s in seqs.iter_mut() {
            s.cache.reserve(s.tokens.len())?;
            spans.push(Span { start: tokens.len(), n: s.tokens.len(), cached: s.cache.len() });
            tokens.extend_from_slice(s.tokens);
            positions.extend_from_slice(s.positions);
        }
        let m = tokens.len();
        let mut x = self.embed(&tokens)?;
        let mut normed = vec![0f32; m * h];
        let rs = self.residual_scale();

        for (li, b) in self.blocks.iter().enumerate() {
            ops::rms_norm(&x, &b.attn_norm, cfg.rms_norm_eps, &mut normed);
            let [mut q, mut k, v]: [Vec<f32>; 3] =
                Linear::forward_shared(&[&b.q, &b.k, &b.v], &normed, m)?.try_into().expect("three outputs");
            for (r, &p) in positions.iter().enumerate() {
                self.rope.apply(&mut q[r * qd..(r + 1) * qd], p);
                self.rope.apply(&mut k[r * kvd..(r + 1) * kvd], p);
            }
            for (s, span) in seqs.iter_mut().zip(&spans) {
                for r in 0..span.n {
                    let row = (span.start + r) * kvd..(span.start + r + 1) * kvd;
                    s.cache.write(li, span.cached + r, &k[row.clone()], &v[row]);
                }
            }
            let attn = self.attention(li, &q, seqs, &spans);
            let o = b.o.forward(&attn, m)?;
            add_scaled(&mut x, &o, rs);

            ops::rms_norm(&x, &b.ffn_norm, cfg.rms_norm_eps, &mut normed);
            let [mut gate, up]: [Vec<f32>; 2] =
                Linear::forward_shared(&[&b.gate, &b.up], &normed, m)?.try_into().expect("two outputs");
            ops::swiglu(&mut gate, &up);
            let down = b.down.forward(&gate, m)?;
            add_scaled(&mut x, &down, rs);
        }

        // Only the rows that need logits pay for the (vocabulary-wide) lm_head,
        // and a drafter's rows only for its restricted one.
        let draft = self.draft_head.as_ref();
        let mut owners = Vec::with_capacity(seqs.len());
        let mut rows: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        for (s, span) in seqs.iter().zip(&spans) {
            let want: Vec<usize> = match s.logits {
                LogitsRows::All => (0..span.n).collect(),
                LogitsRows::Last => vec![span.n - 1],
                LogitsRows::None => vec![],
            };
            rows[s.head as usize].extend(want.iter().map(|&i| span.start + i));
            owners.push((want, s.head));
        }
        let head_of = |head: Head| match (head, draft) {
            (Head::Draft, Some(d)) => (&d.head, Some(&d.subset)),
            _ => (&self.lm_head, None),
        };
        let mut all = [Vec::new(), Vec::new()];
        for (head, rows) in [Head::Full, Head::Draft].into_iter().zip(&rows) {
            if rows.is_empty() {
                continue;
            }
            let mut hsel = Vec::with_capacity(rows.len() * h);
            for &r in rows {
                hsel.extend_from_slice(&x[r * h..(r + 1) * h]);
            }
            let mut normed = vec![0f32; rows.len() * h];
            ops::rms_norm(&hsel, &self.norm, cfg.rms_norm_eps, &mut normed);
            if let Some(s) = cfg.minicpm {
                normed.iter_mut().for_each(|v| *v /= s.logit_scale);
            }
            all[head as usize] = head_of(head).0.forward(&normed, rows.len())?;
        }
        let mut logits = Vec::with_capacity(seqs.len());
        if owners.len() == 1 {
            // One sequence (every edge pass): its rows are the whole buffer,
            // so hand it over instead of copying up to k × vocab floats.
            let (rows, head) = owners.pop().expect("one owner");
            let (lin, subset) = head_of(head);
            let data = std::mem::take(&mut all[head as usize]);
            logits.push(Logits { rows, vocab: lin.out_dim(), data, subset: subset.cloned() });
        } else {
            let mut at = [0, 0];
            for (want, head) in owners {
                let (lin, subset) = head_of(head);
                let (width, at) = (lin.out_dim(), &mut at[head as usize]);
                let data = all[head as usize][*at * width..(*at + want.len()) * width].to_vec();
                *at += want.len();
                logits.push(Logits { rows: want, vocab: width, data, subset: subset.cloned() });
            }
        }
        for (s, span) in seqs.iter_mut().zip(&spans) {
            s.cache.commit(span.n);
        }
        Ok(logits)
    }
}

fn add_scaled(x: &mut [f32], y: &[f32], scale: Option<f32>) {
    match scale {
        Some(s) => x.iter_mut().zip(y).for_each(|(x, y)| *x += y * s),
        None => x.iter_mut().zip(y).for_each(|(x, y)| *x += y),
    }
}
