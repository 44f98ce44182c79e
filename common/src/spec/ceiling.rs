//! How much speculation could gain at most with a given drafter on a given
//! machine, from traces of what the verifier wrote.
//!
//! A speedup target means little until it is set against what the drafter
//! can know. A [`Trace`] records, for every token the verifier wrote under
//! greedy decoding, where the drafter ranked it (reading the true text before
//! it) and how far the best phrase the pool or a copy of earlier text offered
//! there ran. Two things follow from traces and the measured costs:
//!
//! - [`fixed_trees`]: the best tree of each size that is the same every
//!   round. A node is a path of drafter ranks (first choice, then its second
//!   choice, …); its chance of acceptance is how often the verifier's tokens
//!   followed that path, so the best tree of `n` nodes is the `n` most
//!   frequent paths, and its expected acceptance their frequencies summed. A
//!   controller could build it; one that adapts per round can do better.
//! - [`oracle`]: a ceiling no strategy drawing its nodes from the drafter's
//!   top `siblings` choices and the pool's phrases can pass, whatever it
//!   knows: each round sends exactly the verifier's next tokens as far as
//!   those sources hold them, and no wrong node.
//! - [`confidence_chain`]: a controller that can be built, in the way
//!   EAGLE-2 grows its trees: the drafter's first choices, for as long as
//!   the product of its confidences stays above a threshold; and
//!   [`PhraseFirst`], the same with the pool's phrase sent instead where it
//!   was found on a long enough match (the hybrid strategy's rule).

use std::collections::HashMap;

use crate::controller::CostCurve;

/// What the drafter and the pool knew at each token the verifier wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// The drafter's rank of each token (0: its first choice), reading the
    /// verifier's text before it; `None` where the token was not among the
    /// ids the drafter computes.
    pub ranks: Vec<Option<u32>>,
    /// How many tokens from each position on the best phrase the pool or a
    /// copy of earlier text offered there got right.
    pub pool_run: Vec<usize>,
    /// The drafter's probability of its own first choice at each position,
    /// reading the verifier's text before it (what a confidence-driven
    /// controller sees).
    pub confidence: Vec<f32>,
    /// The phrase a round that sends the pool's phrase first would send at
    /// each position (a copy of earlier text where one matched, else the
    /// pool's best continuation): the tokens it was found on, and how many it
    /// got right. `(0, 0)` where there was none.
    pub first_phrase: Vec<(usize, usize)>,
}

impl Trace {
    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }
}

/// Costs in decoding steps of the verifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Costs {
    /// `verify[k - 1]`: a verify pass of `k` rows, relative to one row.
    pub verify: Vec<f64>,
    /// One drafter step, relative to one verifier step.
    pub draft_step: f64,
}

impl Costs {
    /// c(k), held at its last measured value's slope past the table.
    pub fn verify(&self, k: usize) -> f64 {
        let n = self.verify.len();
        match k {
            0 => 0.0,
            k if k <= n => self.verify[k - 1],
            k => {
                let slope = if n >= 2 { self.verify[n - 1] - self.verify[n - 2] } else { self.verify[0] };
                self.verify[n - 1] + slope * (k - n) as f64
            }
        }
    }

    /// c(k) for every k up to `max`, through the measured `(k, c)` points
    /// (which must include k = 1) as the controller's [`CostCurve`] draws it.
    pub fn interpolate(points: &[(usize, f64)], max: usize, draft_step: f64) -> Option<Self> {
        if points.iter().map(|p| p.0).min()? != 1 {
            return None;
        }
        let curve = CostCurve::from_points(points.iter().copied()).ok()?;
        Some(Self { verify: (1..=max.max(1)).map(|k| curve.cost(k)).collect(), draft_step })
    }

    /// The most a batch of `sessions` speculating sessions can gain over
    /// batched decoding (`sessions` tokens a pass of as many rows), in
    /// verified tokens per verifier step: with every node accepted a row
    /// makes a token, so R rows make R / c(R). The best R in the table and
    /// that gain.
    pub fn batch_bound(&self, sessions: usize) -> (usize, f64) {
        let batched = sessions as f64 / self.verify(sessions);
        (sessions..=self.verify.len().max(sessions))
            .map(|r| (r, r as f64 / self.verify(r) / batched))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((sessions, 1.0))
    }
}

/// The best fixed tree of one size.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedTree {
    pub nodes: usize,
    /// Expected drafted tokens accepted per round.
    pub accepted: f64,
    /// Drafter passes to build it (its depth).
    pub depth: usize,
    /// How often the drafter's guess of the whole verdict was right: its
    /// first choices accepted to the tree's depth and the verifier's own
    /// token its next first choice. A round drafted ahead on that guess,
    /// while the verdict was on its way, stands.
    pub ahead_hit: f64,
}

impl FixedTree {
    /// Tokens a round commits: the accepted ones and the verifier's own.
    pub fn tokens(&self) -> f64 {
        self.accepted + 1.0
    }

    /// Verifier steps per token (its compute: plain decoding costs 1).
    pub fn verify_per_token(&self, costs: &Costs) -> f64 {
        costs.verify(self.nodes + 1) / self.tokens()
    }

    /// Speed over plain decoding in one process: drafting and verifying in turn.
    pub fn one_process(&self, costs: &Costs) -> f64 {
        self.tokens() / (costs.verify(self.nodes + 1) + self.depth as f64 * costs.draft_step)
    }

    /// Speed over plain decoding with the drafter and the verifier on
    /// separate cores and no round trip, the drafter drafting each round
    /// ahead on its guess of the verdict: a right guess hides the drafting
    /// behind the verification (as far as the verification lasts), a wrong
    /// one leaves it to be paid after.
    pub fn drafting_ahead(&self, costs: &Costs) -> f64 {
        let (verify, draft) = (costs.verify(self.nodes + 1), self.depth as f64 * costs.draft_step);
        self.tokens() / (verify + draft - self.ahead_hit * draft.min(verify))
    }
}

/// The best fixed tree of every size up to `max_nodes`, over the drafter's
/// first `max_rank` choices per node and paths up to `max_depth` long,
/// averaged over every position of every trace as a round's start.
///
/// A path's frequency never exceeds its parent's, so taking the most
/// frequent paths (parents first among equals) always gives a tree.
pub fn fixed_trees(traces: &[Trace], max_nodes: usize, max_rank: u32, max_depth: usize) -> Vec<FixedTree> {
    let mut counts: HashMap<Vec<u32>, u64> = HashMap::new();
    let mut starts = 0u64;
    // runs[d]: starts followed by at least d first choices.
    let mut runs = vec![0u64; max_depth + 2];
    for t in traces {
        for p in 0..t.len() {
            starts += 1;
            let run = t.ranks[p..].iter().take(max_depth + 1).take_while(|r| **r == Some(0)).count();
            for r in &mut runs[..=run] {
                *r += 1;
            }
            let mut path = Vec::new();
            for r in t.ranks[p..].iter().take(max_depth) {
                match r {
                    Some(r) if *r < max_rank => path.push(*r),
                    _ => break,
                }
                *counts.entry(path.clone()).or_default() += 1;
            }
        }
    }
    let mut paths: Vec<(Vec<u32>, u64)> = counts.into_iter().collect();
    paths.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.len().cmp(&b.0.len())).then(a.0.cmp(&b.0)));
    let starts = starts.max(1) as f64;
    let hit = |depth: usize| runs[depth + 1] as f64 / starts;
    let (mut sum, mut depth) = (0u64, 0usize);
    let mut out = vec![FixedTree { nodes: 0, accepted: 0.0, depth: 0, ahead_hit: hit(0) }];
    for (n, (path, count)) in paths.into_iter().take(max_nodes).enumerate() {
        sum += count;
        depth = depth.max(path.len());
        out.push(FixedTree { nodes: n + 1, accepted: sum as f64 / starts, depth, ahead_hit: hit(depth) });
    }
    out
}

/// Which sources the [`oracle`] may take a round's nodes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    /// The drafter's first `siblings` choices at a node (0: no drafter).
    pub siblings: u32,
    /// The pool's phrases and copies of earlier text.
    pub pool: bool,
    /// Nodes a round may send.
    pub max_nodes: usize,
}

/// What the [`oracle`] did over a set of traces.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OracleRun {
    pub tokens: usize,
    pub rounds: usize,
    /// Verifier steps over all rounds.
    pub verify: f64,
    /// Drafter passes over all rounds (tokens the pool covered are free).
    pub drafter_passes: usize,
}

impl OracleRun {
    /// Counts a round that sent `sent` nodes, `accepted` of them accepted,
    /// after `drafted` drafter passes; returns the tokens it committed.
    fn round(&mut self, sent: usize, accepted: usize, drafted: usize, costs: &Costs) -> usize {
        self.rounds += 1;
        self.tokens += accepted + 1;
        self.verify += costs.verify(sent + 1);
        self.drafter_passes += drafted;
        accepted + 1
    }

    pub fn passes_per_token(&self) -> f64 {
        self.rounds as f64 / self.tokens.max(1) as f64
    }

    /// Verifier steps per token (plain decoding costs 1).
    pub fn verify_per_token(&self) -> f64 {
        self.verify / self.tokens.max(1) as f64
    }

    /// Speed over plain decoding in one process: drafting and verifying in turn.
    pub fn one_process(&self, costs: &Costs) -> f64 {
        self.tokens as f64 / (self.verify + self.drafter_passes as f64 * costs.draft_step)
    }
}

/// Rounds that send exactly the verifier's next tokens, as many as the
/// sources hold in a row (up to `max_nodes`), each round committing those
/// and the verifier's own token after them.
pub fn oracle(traces: &[Trace], sources: Sources, costs: &Costs) -> OracleRun {
    let mut run = OracleRun::default();
    for t in traces {
        let steps = cover(t, sources);
        let mut p = 0;
        while p < t.len() {
            // The verifier's own token ends the round, so it must exist.
            let room = sources.max_nodes.min(t.len() - p - 1);
            let (mut sent, mut drafted, mut at) = (0, 0, p);
            while sent < room {
                match steps[at] {
                    Step::Drafter => {
                        drafted += 1;
                        sent += 1;
                        at += 1;
                    }
                    Step::Pool(len) => {
                        let take = len.min(room - sent);
                        sent += take;
                        at += take;
                    }
                    Step::None => break,
                }
            }
            p += run.round(sent, sent, drafted, costs);
        }
    }
    run
}

/// Chains of the drafter's first choices that go on while the product of its
/// confidences is at least `threshold` (none when the first is below it),
/// up to `max_nodes`. A chain's confidences past its first wrong token are
/// the drafter's on another text; those on the verifier's text stand in for
/// them.
pub fn confidence_chain(traces: &[Trace], threshold: f64, max_nodes: usize, costs: &Costs) -> OracleRun {
    phrase_first(traces, threshold, None, max_nodes, costs)
}

/// A round sends the pool's phrase where it was found on at least
/// `min_match` tokens, `len` of its tokens (`copy_len` of a copy, found on a
/// match longer than the pool's), and a confidence chain elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhraseFirst {
    pub min_match: usize,
    pub len: usize,
    pub copy_len: usize,
}

/// [`confidence_chain`] with the pool's phrase first where `phrases` says.
pub fn phrase_first(
    traces: &[Trace],
    threshold: f64,
    phrases: Option<PhraseFirst>,
    max_nodes: usize,
    costs: &Costs,
) -> OracleRun {
    let mut run = OracleRun::default();
    for t in traces {
        let mut p = 0;
        while p < t.len() {
            let room = max_nodes.min(t.len() - p - 1);
            let (matched, right) = t.first_phrase.get(p).copied().unwrap_or((0, 0));
            if let Some(rule) = phrases.filter(|r| room > 0 && matched >= r.min_match.max(1)) {
                let len = if matched > crate::draft::MAX_SUFFIX_MATCH { rule.copy_len } else { rule.len }.min(room);
                p += run.round(len, right.min(len), 0, costs);
                continue;
            }
            let (mut sent, mut reach) = (0, 1.0f64);
            while sent < room {
                reach *= f64::from(t.confidence[p + sent]);
                if reach < threshold {
                    break;
                }
                sent += 1;
            }
            let accepted = t.ranks[p..p + sent].iter().take_while(|r| **r == Some(0)).count();
            p += run.round(sent, accepted, sent, costs);
        }
    }
    run
}

/// How the oracle covers a position: the drafter's choice, a pool phrase
/// of that many tokens, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Drafter,
    Pool(usize),
    None,
}

/// The longest covered run from each position (by dynamic programming from
/// the end), and among equally long ones the one with the fewest drafter
/// passes: the pool's tokens cost none.
fn cover(t: &Trace, sources: Sources) -> Vec<Step> {
    let n = t.len();
    // (covered, drafter passes) from each position on.
    let mut best = vec![(0usize, 0usize); n + 1];
    let mut steps = vec![Step::None; n + 1];
    let better = |a: (usize, usize), b: (usize, usize)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
    for p in (0..n).rev() {
        if sources.pool {
            for l in 1..=t.pool_run[p].min(n - p) {
                let via = (l + best[p + l].0, best[p + l].1);
                if better(via, best[p]) {
                    best[p] = via;
                    steps[p] = Step::Pool(l);
                }
            }
        }
        let via = (1 + best[p + 1].0, 1 + best[p + 1].1);
        if t.ranks[p].is_some_and(|r| r < sources.siblings) && better(via, best[p]) {
            best[p] = via;
            steps[p] = Step::Drafter;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(ranks: &[Option<u32>], pool_run: &[usize]) -> Trace {
        let n = ranks.len();
        Trace {
            ranks: ranks.to_vec(),
            pool_run: pool_run.to_vec(),
            confidence: vec![1.0; n],
            first_phrase: vec![(0, 0); n],
        }
    }

    fn flat() -> Costs {
        Costs { verify: vec![1.0; 64], draft_step: 0.5 }
    }

    #[test]
    fn costs_interpolate_between_and_past_the_measured_points() {
        let c = Costs::interpolate(&[(1, 1.0), (2, 1.1), (4, 1.5), (8, 2.5)], 10, 0.3).unwrap();
        assert_eq!(c.verify.len(), 10);
        assert!((c.verify(3) - 1.3).abs() < 1e-12);
        assert!((c.verify(6) - 2.0).abs() < 1e-12);
        // Past the table at the last segment's slope.
        assert!((c.verify(10) - 3.0).abs() < 1e-12);
        assert!((c.verify(12) - 3.5).abs() < 1e-12);
        assert!(Costs::interpolate(&[(2, 1.0)], 4, 0.3).is_none());
    }

    #[test]
    fn a_batch_gains_only_where_rows_get_cheaper() {
        // Rows past 8 cost in proportion: a bigger batch makes no more per step.
        let linear = Costs { verify: (1..=32).map(|k| 0.25 * k as f64 + 0.75).collect(), draft_step: 0.4 };
        let (rows, gain) = linear.batch_bound(8);
        assert!(gain < 1.3 && gain > 1.0, "{rows} {gain}");
        // Flat up to 32 rows: four times the tokens for the same pass.
        let flat = Costs { verify: vec![1.0; 32], draft_step: 0.4 };
        assert_eq!(flat.batch_bound(8), (32, 4.0));
    }

    #[test]
    fn the_best_fixed_tree_takes_the_most_frequent_rank_paths() {
        // First choices accepted 3 times in a row, then a second choice, then a miss.
        let t = trace(&[Some(0), Some(0), Some(0), Some(1), None], &[0; 5]);
        let trees = fixed_trees(&[t], 4, 2, 8);
        // Starts: 5. Path [0] occurs at positions 0,1,2 → 3/5; [0,0] at 0,1 → 2/5;
        // [1] at 3 → 1/5; [0,0,0] at 0 and [0,0,1] at 1 and [0,1] at 2 → 1/5 each.
        assert_eq!(trees[0].accepted, 0.0);
        assert!((trees[1].accepted - 0.6).abs() < 1e-12);
        assert!((trees[2].accepted - 1.0).abs() < 1e-12);
        assert_eq!(trees[2].depth, 2);
        // Among the paths seen once, the shorter one comes first.
        assert!((trees[3].accepted - 1.2).abs() < 1e-12);
        assert_eq!(trees[3].depth, 2);
        // Guesses of a depth-1 verdict (two first choices) held at starts 0 and 1;
        // of a depth-2 one (three) at start 0.
        assert!((trees[1].ahead_hit - 0.4).abs() < 1e-12);
        assert!((trees[2].ahead_hit - 0.2).abs() < 1e-12);
        // Drafting ahead hides a right guess's drafting: never slower than in turn.
        let costs = Costs { verify: vec![1.0, 1.1, 1.2, 1.3, 1.4], draft_step: 0.4 };
        let t = &trees[2];
        assert!((t.one_process(&costs) - 2.0 / 2.0).abs() < 1e-12);
        assert!((t.drafting_ahead(&costs) - 2.0 / (2.0 - 0.2 * 0.8)).abs() < 1e-12);
        assert_eq!(trees.len(), 5);
        // A rank past the limit ends a path.
        let only_first = fixed_trees(&[trace(&[Some(1), Some(0)], &[0; 2])], 4, 1, 8);
        assert_eq!(only_first.len(), 2);
        assert!((only_first[1].accepted - 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_oracle_sends_only_what_its_sources_hold() {
        let t = trace(&[Some(0), Some(0), Some(2), Some(0), Some(0), Some(0)], &[0; 6]);
        let chain = Sources { siblings: 1, pool: false, max_nodes: 8 };
        let r = oracle(std::slice::from_ref(&t), chain, &flat());
        // Round 1 sends tokens 0,1 and the verifier writes token 2;
        // round 2 sends 3,4 and the verifier writes 5 (the last).
        assert_eq!((r.tokens, r.rounds, r.drafter_passes), (6, 2, 4));
        // With third choices the whole run is one round, but the last token is the verifier's.
        let tree = Sources { siblings: 3, ..chain };
        let r = oracle(std::slice::from_ref(&t), tree, &flat());
        assert_eq!((r.tokens, r.rounds, r.drafter_passes), (6, 1, 5));
        // A cap on nodes splits it.
        let r = oracle(std::slice::from_ref(&t), Sources { max_nodes: 2, ..tree }, &flat());
        assert_eq!((r.tokens, r.rounds), (6, 2));
        assert!((r.passes_per_token() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn pool_phrases_bridge_the_drafters_misses_at_no_drafter_cost() {
        // The drafter misses tokens 1 and 2; a phrase at 1 covers 1..4.
        let t = trace(&[Some(0), None, None, Some(0), None, Some(0)], &[0, 3, 0, 0, 0, 0]);
        let both = Sources { siblings: 1, pool: true, max_nodes: 8 };
        let costs = Costs { verify: (1..=16).map(|k| 1.0 + 0.1 * (k - 1) as f64).collect(), draft_step: 0.5 };
        let r = oracle(std::slice::from_ref(&t), both, &costs);
        // Round 1: drafter 0, pool 1..=3, verifier 4; round 2: the verifier's 5.
        assert_eq!((r.tokens, r.rounds, r.drafter_passes), (6, 2, 1));
        assert!((r.verify - (costs.verify(5) + costs.verify(1))).abs() < 1e-12);
        assert!((r.verify_per_token() - 2.4 / 6.0).abs() < 1e-12);
        assert!((r.one_process(&costs) - 6.0 / 2.9).abs() < 1e-12);
        // Without the pool the same text takes four rounds.
        let r = oracle(&[t], Sources { pool: false, ..both }, &costs);
        assert_eq!(r.rounds, 4);
    }

    #[test]
    fn plain_decoding_is_the_oracle_with_no_sources() {
        let t = trace(&[Some(0); 10], &[5; 10]);
        let none = Sources { siblings: 0, pool: false, max_nodes: 8 };
        let r = oracle(&[t], none, &flat());
        assert_eq!((r.tokens, r.rounds, r.drafter_passes), (10, 10, 0));
        assert!((r.verify_per_token() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_confidence_chain_stops_where_the_drafter_doubts_and_pays_for_wrong_nodes() {
        let mut t = trace(&[Some(0), Some(0), Some(1), Some(0), Some(0), Some(0), Some(0)], &[0; 7]);
        t.confidence = vec![0.9, 0.9, 0.9, 0.3, 0.9, 0.9, 0.9];
        let costs = Costs { verify: (1..=16).map(|k| 1.0 + 0.1 * (k - 1) as f64).collect(), draft_step: 0.5 };
        // At 0.5: round 1 sends 0,1,2 (0.9³ = 0.73), token 2 is wrong, so 2 accepted
        // and the verifier writes token 2; round 2 at 3 sends nothing (0.3) and the
        // verifier writes 3; round 3 sends 4,5 (room ends before the last token) and
        // the verifier writes 6.
        let r = confidence_chain(std::slice::from_ref(&t), 0.5, 8, &costs);
        assert_eq!((r.tokens, r.rounds, r.drafter_passes), (7, 3, 5));
        assert!((r.verify - (costs.verify(4) + costs.verify(1) + costs.verify(3))).abs() < 1e-12);
        // A threshold above every confidence is plain decoding.
        let r = confidence_chain(std::slice::from_ref(&t), 0.95, 8, &costs);
        assert_eq!((r.tokens, r.rounds, r.drafter_passes), (7, 7, 0));
        // The cap holds.
        let r = confidence_chain(&[t], 0.0, 1, &costs);
        assert_eq!((r.tokens, r.rounds, r.drafter_passes), (7, 4, 4));
    }

    #[test]
    fn the_pools_phrase_goes_first_where_its_match_is_long_enough() {
        let mut t = trace(&[None, None, None, Some(0), Some(0), Some(0), Some(0), Some(0)], &[0; 8]);
        t.confidence = vec![0.9; 8];
        // At 0 a phrase on a 3-token match gets 3 right; at 4 one on a 1-token match.
        t.first_phrase = vec![(3, 3), (0, 0), (0, 0), (0, 0), (1, 2), (0, 0), (0, 0), (0, 0)];
        let costs = Costs { verify: (1..=16).map(|k| 1.0 + 0.1 * (k - 1) as f64).collect(), draft_step: 0.5 };
        let rule = PhraseFirst { min_match: 2, len: 4, copy_len: 8 };
        let r = phrase_first(std::slice::from_ref(&t), 0.5, Some(rule), 8, &costs);
        // Round 1: the phrase, 4 sent, 3 accepted, the verifier's token 3.
        // Round 2 at 4 (a weak match): a chain of 0.9^k ≥ 0.5, 3 tokens (room 3),
        // all right, and the verifier's 7.
        assert_eq!((r.tokens, r.rounds, r.drafter_passes), (8, 2, 3));
        assert!((r.verify - (costs.verify(5) + costs.verify(4))).abs() < 1e-12);
        // Without the rule the drafter misses the first three tokens one round each.
        let r = phrase_first(&[t], 0.5, None, 8, &costs);
        assert_eq!(r.rounds, 4);
    }
}
