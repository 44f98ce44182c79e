//! Statistical proof that sampling verification is lossless.
//!
//! A hash-defined target over 8 tokens meets adversarial drafters (overly
//! sharp q, q disjoint from p, point masses, without-replacement siblings, a
//! greedy trunk with sampled siblings, a drafter restricted to half the
//! vocabulary as FR-Spec's is) on trees of depth up to 3 with 1 to 3
//! children per node. Whole generation rounds are simulated until two tokens
//! are emitted, and the first token and the first two tokens are compared with
//! the exact target distribution by a chi-square test; with rounds drafted
//! ahead on a bet about the verdict before (as the edge drafts while a
//! verdict is in flight), the first three. The same harness must
//! also catch deliberately broken rules, or passing would prove nothing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::chi_square::chi_square_p_value;
use super::sampling::{verify_with_rule, Rule};
use super::synthetic::{hash_ctx, unit};
use crate::engine::draft_choice;
use crate::model::VocabSubset;
use crate::sampling::{argmax, probs_f64, SamplerRng, SamplingParams, SparseDist};
use crate::tree::{DraftTree, TreeLimits};

const V: usize = 8;
const SALT: u64 = 0x005e_ed0f_0a11;
const ROOT: u32 = 3;
const ALPHA: f64 = 0.001;
const SAMPLES: usize = 200_000;

/// Target logits: a hash of the context, with about a third of the tokens
/// impossible so q can put mass where p has none.
fn target_logits(ctx: &[u32]) -> Vec<f32> {
    let h = hash_ctx(SALT, ctx);
    let keep = (h % V as u64) as usize;
    (0..V)
        .map(|i| {
            if i != keep && unit(h, 100 + i as u64) < 0.3 {
                f32::NEG_INFINITY
            } else {
                (unit(h, i as u64) * 5.0 - 2.5) as f32
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drafter {
    /// i.i.d. siblings from a top-3 q far sharper than p.
    Sharp,
    /// i.i.d. siblings from a q living where p is zero (or least likely).
    Disjoint,
    /// Deterministic, distinct siblings, each a point mass.
    Points,
    /// Siblings drawn without replacement from a flat, wrong q.
    WithoutReplacement,
    /// A point mass on p's argmax, then i.i.d. siblings from the sharp q.
    TrunkThenSharp,
    /// Each node picks one of the above by its context's hash.
    Mixed,
    /// i.i.d. siblings from the drafter's own code path over a restricted
    /// vocabulary ([`RESTRICTED`]): q is its distribution renormalised over
    /// the subset and cut to the top 3, so half the ids, most of them
    /// possible under p, are never drafted.
    Restricted,
}

/// The ids a [`Drafter::Restricted`] drafter computes logits for.
const RESTRICTED: [u32; 4] = [1, 2, 4, 6];

const PURE: [Drafter; 5] =
    [Drafter::Sharp, Drafter::Disjoint, Drafter::Points, Drafter::WithoutReplacement, Drafter::TrunkThenSharp];

struct Harness {
    drafter: Drafter,
    params: SamplingParams,
    max_depth: usize,
    /// Everything about a context that does not involve randomness; contexts
    /// repeat constantly, and recomputing them dominated the run time.
    memo: RefCell<HashMap<Vec<u32>, Rc<Node>>>,
}

/// The fixed facts of one context: the target's logits there and how the
/// drafter expands it.
struct Node {
    logits: Vec<f32>,
    kind: Drafter,
    /// Number of children; it must not depend on the siblings' own draws.
    k: usize,
    /// The q siblings are drawn from (the first one, for without-replacement).
    q: SparseDist,
    /// First deterministic token (Points, TrunkThenSharp).
    fixed: u32,
    /// The drafter's logits over [`RESTRICTED`] (Restricted).
    restricted: Vec<f32>,
}

impl Harness {
    fn new(drafter: Drafter, params: SamplingParams, max_depth: usize) -> Self {
        Self { drafter, params, max_depth, memo: RefCell::default() }
    }

    fn p(&self, ctx: &[u32]) -> Vec<f64> {
        probs_f64(&target_logits(ctx), &self.params)
    }

    fn node(&self, ctx: &[u32]) -> Rc<Node> {
        if let Some(n) = self.memo.borrow().get(ctx) {
            return n.clone();
        }
        let n = Rc::new(self.make_node(ctx));
        self.memo.borrow_mut().insert(ctx.to_vec(), n.clone());
        n
    }

    fn make_node(&self, ctx: &[u32]) -> Node {
        let logits = target_logits(ctx);
        let h = hash_ctx(SALT ^ 0xd4af7, ctx);
        let k = 1 + (unit(h, 1) * 3.0) as usize;
        let kind = match self.drafter {
            Drafter::Mixed => PURE[(h % PURE.len() as u64) as usize],
            d => d,
        };
        let sharp = || {
            let w: Vec<f32> = (0..V)
                .map(|i| {
                    let base = if logits[i].is_finite() { logits[i] as f64 } else { -1.0 };
                    (4.0 * (base + unit(h, 200 + i as u64) - 0.5)).exp() as f32
                })
                .collect();
            SparseDist::from_probs_top_k(&w, 3).unwrap()
        };
        let restricted = match kind {
            // Near p where p is possible, with noise, as a smaller model's.
            Drafter::Restricted => RESTRICTED
                .iter()
                .map(|&i| {
                    let i = i as usize;
                    let base = if logits[i].is_finite() { logits[i] as f64 } else { -1.0 };
                    (2.0 * (base + unit(h, 500 + i as u64) - 0.5)) as f32
                })
                .collect(),
            _ => Vec::new(),
        };
        let (q, fixed) = match kind {
            // Drawn fresh per child by the drafter's own code.
            Drafter::Restricted => (SparseDist::point(RESTRICTED[0]), 0),
            Drafter::Sharp => (sharp(), 0),
            Drafter::Disjoint => {
                let p = self.p(ctx);
                let mut support: Vec<usize> = (0..V).filter(|&i| p[i] == 0.0).collect();
                if support.is_empty() {
                    let mut by_p: Vec<usize> = (0..V).collect();
                    by_p.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
                    support = by_p[..2].to_vec();
                }
                let pairs: Vec<(u32, f32)> =
                    support.iter().map(|&i| (i as u32, (0.2 + unit(h, 300 + i as u64)) as f32)).collect();
                (SparseDist::from_pairs(&pairs).unwrap(), 0)
            }
            Drafter::Points => (SparseDist::point(0), (h % V as u64) as u32),
            Drafter::WithoutReplacement => {
                let w: Vec<f32> = (0..V).map(|i| (0.05 + unit(h, 400 + i as u64)) as f32).collect();
                (SparseDist::from_probs_top_k(&w, 4).unwrap(), 0)
            }
            Drafter::TrunkThenSharp => (sharp(), argmax(&logits)),
            Drafter::Mixed => unreachable!("resolved above"),
        };
        Node { logits, kind, k, q, fixed, restricted }
    }

    /// Fresh children of `node`: `(token, q it was drawn from)`.
    fn children(&self, node: &Node, rng: &mut SamplerRng) -> Vec<(u32, SparseDist)> {
        let (k, q) = (node.k, &node.q);
        match node.kind {
            Drafter::Sharp | Drafter::Disjoint => (0..k).map(|_| (q.sample(rng), q.clone())).collect(),
            Drafter::Points => (0..k as u32)
                .map(|j| {
                    let t = (node.fixed + 3 * j) % V as u32;
                    (t, SparseDist::point(t))
                })
                .collect(),
            Drafter::WithoutReplacement => {
                let mut q = q.clone();
                let mut out = Vec::new();
                for _ in 0..k {
                    let t = q.sample(rng);
                    out.push((t, q.clone()));
                    let rest: Vec<(u32, f32)> = q.pairs().iter().copied().filter(|&(id, _)| id != t).collect();
                    match SparseDist::from_pairs(&rest) {
                        Ok(next) => q = next,
                        Err(_) => break,
                    }
                }
                out
            }
            Drafter::TrunkThenSharp => {
                let mut out = vec![(node.fixed, SparseDist::point(node.fixed))];
                out.extend((1..k).map(|_| (q.sample(rng), q.clone())));
                out
            }
            Drafter::Restricted => {
                let subset = VocabSubset::new(RESTRICTED.to_vec(), V).unwrap();
                (0..k).map(|_| draft_choice(&node.restricted, Some(&subset), &self.params, 3, rng).unwrap()).collect()
            }
            Drafter::Mixed => unreachable!("resolved when the node was made"),
        }
    }

    /// Drafts a tree at `ctx` and returns it with its draft distributions and
    /// the nodes whose logits form the target's rows.
    fn round(&self, ctx: &[u32], rng: &mut SamplerRng) -> (DraftTree, Vec<SparseDist>, Vec<Rc<Node>>) {
        let mut tree = DraftTree::empty(&TreeLimits::UNBOUNDED, V);
        let mut dists = Vec::new();
        let root = self.node(ctx);
        let mut rows = vec![root.clone()];
        // Breadth-first, so parents always precede children.
        let mut frontier: Vec<(Option<usize>, Vec<u32>, Rc<Node>)> = vec![(None, ctx.to_vec(), root)];
        for _ in 0..self.max_depth {
            let mut next = Vec::new();
            for (parent, pctx, pnode) in frontier {
                for (token, q) in self.children(&pnode, rng) {
                    let i = tree.push(token, parent).unwrap();
                    dists.push(q);
                    let mut cctx = pctx.clone();
                    cctx.push(token);
                    let cnode = self.node(&cctx);
                    rows.push(cnode.clone());
                    next.push((Some(i), cctx, cnode));
                }
            }
            frontier = next;
        }
        (tree, dists, rows)
    }

    /// Counts of the first emitted token and of the first two.
    fn run(&self, rule: Rule, samples: usize, seed: u64) -> (Vec<u64>, Vec<u64>) {
        let mut draft_rng = SamplerRng::with_stream(seed, 1);
        let mut verify_rng = SamplerRng::with_stream(seed, 2);
        let mut first = vec![0u64; V];
        let mut pairs = vec![0u64; V * V];
        for _ in 0..samples {
            let mut ctx = vec![ROOT];
            while ctx.len() < 3 {
                let (tree, dists, rows) = self.round(&ctx, &mut draft_rng);
                let refs: Vec<&[f32]> = rows.iter().map(|n| n.logits.as_slice()).collect();
                let v = verify_with_rule(&tree, &refs, &dists, &self.params, &mut verify_rng, rule).unwrap();
                ctx.extend(v.emitted_tokens(&tree));
            }
            first[ctx[1] as usize] += 1;
            pairs[ctx[1] as usize * V + ctx[2] as usize] += 1;
        }
        (first, pairs)
    }

    /// The bet a round drafted ahead makes on `round` at `ctx`, as the edge
    /// makes it: its first node accepted and then the most likely token, or
    /// (by the context's hash) nothing accepted and the most likely token.
    /// Any rule that does not look at the verifier's draws will do.
    fn bet(&self, ctx: &[u32], tree: &DraftTree) -> Vec<u32> {
        let mut assumed = Vec::new();
        if !tree.is_empty() && !hash_ctx(SALT ^ 0xbe7, ctx).is_multiple_of(3) {
            assumed.push(tree.token(0));
        }
        let mut at = ctx.to_vec();
        at.extend_from_slice(&assumed);
        assumed.push(argmax(&target_logits(&at)));
        assumed
    }

    /// Counts of the first three emitted tokens when every round is drafted
    /// ahead on a bet ([`Harness::bet`]) before the round it bets on is
    /// verified, as the edge drafts while a verdict is in flight; and how
    /// many rounds came from a won bet. With `checked`, a round drafted
    /// ahead is verified only if its bet won, as the cloud does (a lost bet
    /// is answered stale and the round drafted again); without, it is
    /// verified against the text it assumed whatever the verdict said.
    fn run_with_bets(&self, samples: usize, seed: u64, checked: bool) -> (Vec<u64>, usize) {
        let mut draft_rng = SamplerRng::with_stream(seed, 1);
        let mut verify_rng = SamplerRng::with_stream(seed, 2);
        let mut triples = vec![0u64; V * V * V];
        let mut won = 0;
        for _ in 0..samples {
            let mut ctx = vec![ROOT];
            let mut current = self.round(&ctx, &mut draft_rng);
            while ctx.len() < 4 {
                let assumed = self.bet(&ctx, &current.0);
                let mut at = ctx.clone();
                at.extend_from_slice(&assumed);
                let ahead = self.round(&at, &mut draft_rng);
                let (tree, dists, rows) = &current;
                let refs: Vec<&[f32]> = rows.iter().map(|n| n.logits.as_slice()).collect();
                let v = verify_with_rule(tree, &refs, dists, &self.params, &mut verify_rng, Rule::Lossless).unwrap();
                let emitted = v.emitted_tokens(tree);
                if emitted == assumed || !checked {
                    won += usize::from(emitted == assumed);
                    ctx = at;
                    current = ahead;
                } else {
                    ctx.extend(emitted);
                    current = self.round(&ctx, &mut draft_rng);
                }
            }
            triples[(ctx[1] as usize * V + ctx[2] as usize) * V + ctx[3] as usize] += 1;
        }
        (triples, won)
    }

    /// Exact target probabilities of the first three tokens.
    fn exact_triples(&self) -> Vec<f64> {
        let mut p3 = vec![0.0; V * V * V];
        let p1 = self.p(&[ROOT]);
        for a in 0..V {
            let pa = self.p(&[ROOT, a as u32]);
            for b in 0..V {
                let pb = self.p(&[ROOT, a as u32, b as u32]);
                for c in 0..V {
                    p3[(a * V + b) * V + c] = p1[a] * pa[b] * pb[c];
                }
            }
        }
        p3
    }

    /// Exact target probabilities of the first token and of the first two.
    fn exact(&self) -> (Vec<f64>, Vec<f64>) {
        let p1 = self.p(&[ROOT]);
        let mut p2 = vec![0.0; V * V];
        for a in 0..V {
            let pa = self.p(&[ROOT, a as u32]);
            for b in 0..V {
                p2[a * V + b] = p1[a] * pa[b];
            }
        }
        (p1, p2)
    }

    /// p-values of the first-token and first-two-token tests.
    fn p_values(&self, rule: Rule, samples: usize, seed: u64) -> (f64, f64) {
        let (first, pairs) = self.run(rule, samples, seed);
        let (p1, p2) = self.exact();
        (chi_square_p_value(&first, &p1), chi_square_p_value(&pairs, &p2))
    }
}

fn plain() -> SamplingParams {
    SamplingParams::with_temperature(1.0, 0)
}

fn filtered() -> SamplingParams {
    SamplingParams { temperature: 0.7, top_k: Some(5), top_p: Some(0.9), seed: 0 }
}

fn assert_lossless(drafter: Drafter, params: SamplingParams, max_depth: usize, seed: u64) {
    let h = Harness::new(drafter, params, max_depth);
    let (a, b) = h.p_values(Rule::Lossless, SAMPLES, seed);
    eprintln!("{drafter:?} depth {max_depth}: p-values {a:.3e} {b:.3e}");
    assert!(a >= ALPHA && b >= ALPHA, "{drafter:?} {params:?}: p-values {a:.3e} {b:.3e}");
}

#[test]
fn lossless_with_mixed_drafters() {
    assert_lossless(Drafter::Mixed, plain(), 3, 1);
}

#[test]
fn lossless_with_filtered_target() {
    assert_lossless(Drafter::Mixed, filtered(), 2, 2);
}

#[test]
fn lossless_with_each_adversarial_drafter() {
    for (i, d) in PURE.into_iter().enumerate() {
        assert_lossless(d, plain(), 2, 10 + i as u64);
    }
}

/// FR-Spec: a drafter that cannot propose half the ids. The ids outside its
/// subset come only from the residual distribution, and must still appear
/// with exactly the target's probability.
#[test]
fn lossless_with_a_restricted_vocabulary_drafter() {
    for (params, depth, seed) in [(plain(), 3, 20), (filtered(), 2, 21)] {
        assert_lossless(Drafter::Restricted, params, depth, seed);
        let h = Harness::new(Drafter::Restricted, params, depth);
        // The test has teeth here: outside ids are possible and do come out.
        let (first, _) = h.run(Rule::Lossless, 20_000, seed);
        let p1 = h.p(&[ROOT]);
        let outside: Vec<usize> = (0..V).filter(|i| !RESTRICTED.contains(&(*i as u32)) && p1[*i] > 0.01).collect();
        assert!(!outside.is_empty(), "{params:?}: p puts no mass outside the subset");
        assert!(outside.iter().all(|&i| first[i] > 0), "{params:?}: {first:?} against p {p1:?}");
        // And the drafter itself never proposes them.
        let mut rng = SamplerRng::new(seed);
        let (tree, _, _) = h.round(&[ROOT], &mut rng);
        assert!((0..tree.len()).all(|n| RESTRICTED.contains(&tree.token(n))));
    }
}

/// Rounds drafted ahead on a bet, verified only when the bet won: the
/// drafter drew them before the verifier's draws for the round they bet on,
/// so conditioning on a won bet leaves their distribution alone. A harness
/// that verified them against the text they assumed after a lost bet must
/// see the damage, or passing would prove nothing.
#[test]
fn lossless_with_rounds_drafted_ahead_on_bets() {
    for (drafter, params, seed) in [(Drafter::Mixed, plain(), 30), (Drafter::Restricted, filtered(), 31)] {
        let h = Harness::new(drafter, params, 2);
        let (triples, won) = h.run_with_bets(SAMPLES, seed, true);
        let p = chi_square_p_value(&triples, &h.exact_triples());
        eprintln!("{drafter:?} with bets: p-value {p:.3e}, {won} rounds from won bets");
        assert!(p >= ALPHA, "{drafter:?} {params:?}: p-value {p:.3e}");
        // Both outcomes are common, so both paths are under test.
        assert!(won > SAMPLES / 10 && won < SAMPLES * 2, "{won} won bets in {SAMPLES} runs");
    }
    let h = Harness::new(Drafter::Mixed, plain(), 2);
    let (triples, _) = h.run_with_bets(SAMPLES, 32, false);
    let p = chi_square_p_value(&triples, &h.exact_triples());
    eprintln!("unchecked bets: p-value {p:.3e}");
    assert!(p < ALPHA, "rounds verified on lost bets went unnoticed: p-value {p:.3e}");
}

#[test]
fn harness_catches_broken_rules() {
    // Distinct point-mass siblings make every rejection count, so both tests
    // must see the damage. (Accepting with `p/q` instead of `min(1, p/q)` is not
    // a variant: against a uniform draw below 1 the two are the same rule.)
    for rule in [Rule::NoResidual, Rule::Unnormalised] {
        let h = Harness::new(Drafter::Points, plain(), 2);
        let (a, b) = h.p_values(rule, SAMPLES, 7);
        eprintln!("{rule:?}: p-values {a:.3e} {b:.3e}");
        assert!(a < ALPHA && b < ALPHA, "{rule:?} went unnoticed: p-values {a:.3e} {b:.3e}");
    }
    // With a restricted drafter too: keeping the mass of rejected ids
    // over-weights the subset.
    let h = Harness::new(Drafter::Restricted, plain(), 2);
    let (a, b) = h.p_values(Rule::NoResidual, SAMPLES, 8);
    eprintln!("restricted, NoResidual: p-values {a:.3e} {b:.3e}");
    assert!(a < ALPHA && b < ALPHA, "NoResidual went unnoticed with a restricted drafter: p-values {a:.3e} {b:.3e}");
}

#[test]
fn harness_runs_are_reproducible() {
    let h = Harness::new(Drafter::Mixed, plain(), 2);
    assert_eq!(h.run(Rule::Lossless, 2_000, 5), h.run(Rule::Lossless, 2_000, 5));
    assert_ne!(h.run(Rule::Lossless, 2_000, 5), h.run(Rule::Lossless, 2_000, 6));
}
