//! Each strategy against an oracle verifier that knows the target's text.

use std::ops::ControlFlow;

use super::replay::Replay;
use super::*;
use crate::controller::{Objective, RoundFeedback};
use crate::engine::Draft;
use crate::generate::FinishReason;
use crate::spec::{block_on_ready, drive, Reply, Rounds, SpecStats, Verifier};
use crate::tree::DraftTree;

/// Greedy verification against a known continuation: a node is accepted
/// when it says what the text says at its depth.
pub(crate) struct Oracle {
    pub text: Vec<u32>,
    pub pos: usize,
}

impl Verifier for Oracle {
    type Error = EngineError;

    fn remote(&self) -> bool {
        false
    }

    async fn send(&mut self, _draft: &Draft, _run_on: usize) -> Result<(), EngineError> {
        Ok(())
    }

    async fn verdict(&mut self, draft: &Draft, _: &mut (dyn FnMut(&[u32]) + Send)) -> Result<Reply, EngineError> {
        let verdict = greedy_along(&self.text[self.pos..], &draft.tree);
        self.pos += verdict.accepted.len() + 1;
        Ok(Reply::local(verdict, 1.0))
    }
}

/// Greedy verification of `tree` by a target whose text goes on with `text`.
pub(crate) fn greedy_along(text: &[u32], tree: &DraftTree) -> Verdict {
    let want = |depth: usize| text[depth];
    let mut accepted: Vec<usize> = Vec::new();
    while let Some(n) =
        (0..tree.len()).find(|&n| tree.parent(n) == accepted.last().copied() && tree.token(n) == want(accepted.len()))
    {
        accepted.push(n);
    }
    let target_argmax = std::iter::once(want(0)).chain((0..tree.len()).map(|n| want(tree.depth(n)))).collect();
    Verdict { next_token: want(accepted.len()), accepted, target_argmax }
}

pub(crate) fn rounds(prompt_len: usize, max_new: usize, stop_ids: &[u32]) -> Rounds<'_> {
    Rounds {
        prompt_len,
        max_new,
        stop_ids,
        sampled: false,
        pipeline: false,
        limits: TreeLimits { max_nodes: 64, max_depth: 32 },
        vocab: 100,
        max_context: usize::MAX,
        run_on: false,
    }
}

/// Runs `strategy` after `prompt` against an oracle continuing with `text`.
pub(crate) fn run(strategy: &dyn DraftStrategy, prompt: &[u32], text: &[u32], max_new: usize) -> SpecStats {
    let mut pool = PhrasePool::default();
    let mut source = strategy
        .open(Opening {
            drafter: None,
            prompt,
            sampling: SamplingParams::greedy(),
            stop_ids: &[],
            pool: &mut pool,
            draft_window: 0,
        })
        .unwrap();
    let mut policy = strategy.policy(None);
    let mut oracle = Oracle { text: text.to_vec(), pos: 0 };
    let mut stats = SpecStats::default();
    let r = rounds(prompt.len(), max_new, &[]);
    block_on_ready(drive(&mut oracle, &mut *source, &mut *policy, &r, &mut stats, |_| ControlFlow::Continue(())))
        .unwrap();
    stats
}

fn full_accept(depth: usize) -> RoundFeedback {
    RoundFeedback { offered_depth: depth, accepted_len: depth, ..RoundFeedback::default() }
}

#[test]
fn every_table_name_parses_back_to_itself() {
    for e in TABLE {
        let given = if e.usage.ends_with('N') { format!("{}7", e.name) } else { e.name.to_string() };
        assert_eq!(parse(&given).unwrap().name(), given);
    }
    for bad in ["", "chain", "chain0", "chainx", "ouroboros2", "ouroboros-", "pool-only", "Heuristic", "replay4"] {
        let err = parse(bad).expect_err(bad).to_string();
        assert!(err.contains("chainN, heuristic, ouroboros"), "{bad}: {err}");
    }
}

#[test]
fn chain_plans_gamma_whatever_the_feedback() {
    let s = parse("chain3").unwrap();
    let mut p = s.policy(None);
    assert_eq!(p.plan().trunk_len, 3);
    p.observe(&full_accept(3));
    assert_eq!(p.plan().trunk_len, 3);
    assert_eq!(p.plan().branches, 0);
}

#[test]
fn heuristic_grows_after_a_full_accept_and_shrinks_after_a_miss() {
    let s = parse("heuristic").unwrap();
    let mut p = s.policy(None);
    let start = p.plan().trunk_len;
    p.observe(&full_accept(start));
    assert_eq!(p.plan().trunk_len, start + 2);
    p.observe(&RoundFeedback { offered_depth: start + 2, accepted_len: 1, ..RoundFeedback::default() });
    assert_eq!(p.plan().trunk_len, start + 1);
}

#[test]
fn ouroboros_names_its_objective() {
    assert_eq!(
        format!("{:?}", parse("ouroboros").unwrap()),
        format!("{:?}", ouroboros::Ouroboros { objective: Objective::Latency, copies: true })
    );
    assert_eq!(
        format!("{:?}", parse("ouroboros-compute").unwrap()),
        format!("{:?}", ouroboros::Ouroboros { objective: Objective::VerifierCompute, copies: true })
    );
}

#[test]
fn every_strategy_that_copies_names_its_variant_that_does_not() {
    for base in ["pool", "hybrid", "ouroboros", "ouroboros-compute"] {
        assert_eq!(parse(base).unwrap().name(), base);
        let off = format!("{base}-nocopy");
        assert_eq!(parse(&off).unwrap().name(), off);
    }
    assert!(parse("pool-nocopies").is_err());
    assert!(parse("chain4-nocopy").is_err());
}

#[test]
fn pool_only_copies_a_long_repeat_in_rounds_longer_than_its_phrases() {
    // A 30-token passage quoted in the prompt and then again in the text:
    // the pool's phrases (at most 8 tokens) draft it a few tokens a round,
    // copies once the match is long enough far more.
    let passage: Vec<u32> = (40..70).collect();
    let mut prompt: Vec<u32> = vec![1, 2, 3];
    prompt.extend(&passage);
    prompt.extend([4, 5]);
    prompt.extend(&passage[..4]);
    let text: Vec<u32> = passage[4..].iter().chain(&[7, 8, 9, 10, 11, 12]).copied().collect();
    let copying = run(&pool_only::PoolOnly { copies: true }, &prompt, &text, text.len());
    let phrases = run(&pool_only::PoolOnly { copies: false }, &prompt, &text, text.len());
    assert_eq!(copying.tokens, text);
    assert_eq!(phrases.tokens, text);
    assert!(copying.rounds < phrases.rounds, "copies {} rounds, phrases {}", copying.rounds, phrases.rounds);
    assert!(copying.accepted >= 20, "{} accepted", copying.accepted);
}

#[test]
fn model_strategies_without_a_drafter_are_a_clear_error() {
    for name in ["chain4", "heuristic", "ouroboros", "hybrid"] {
        let mut pool = PhrasePool::default();
        let at = Opening {
            drafter: None,
            prompt: &[1, 2],
            sampling: SamplingParams::greedy(),
            stop_ids: &[],
            pool: &mut pool,
            draft_window: 0,
        };
        let err = parse(name).unwrap().open(at).err().expect(name);
        assert!(matches!(err, EngineError::NoDrafter(ref n) if n == name), "{name}: {err}");
    }
}

#[test]
fn pool_only_drafts_a_repeated_text_from_the_prompt() {
    let phrase: Vec<u32> = (10..20).collect();
    let prompt: Vec<u32> = phrase.iter().chain(&phrase).copied().collect();
    let text: Vec<u32> = phrase.iter().cycle().take(60).copied().collect();
    let stats = run(&pool_only::PoolOnly { copies: false }, &prompt, &text, 40);
    assert_eq!(stats.tokens, text[..40]);
    // Without drafts every round commits one token.
    assert!(stats.rounds * 2 <= 40, "{} rounds: the pool drafted little", stats.rounds);
    assert!(stats.accepted >= 20, "{} accepted", stats.accepted);
}

#[test]
fn pool_only_learns_what_the_verifier_said_where_it_was_wrong() {
    let mut pool = PhrasePool::default();
    let prompt = [5, 10, 11, 12, 13, 14, 5, 10];
    let at = Opening {
        drafter: None,
        prompt: &prompt,
        sampling: SamplingParams::greedy(),
        stop_ids: &[],
        pool: &mut pool,
        draft_window: 0,
    };
    let mut source = pool_only::PoolOnly { copies: false }.open(at).unwrap();
    let limits = TreeLimits { max_nodes: 64, max_depth: 32 };
    let draft = source.draft(&DraftPlan::chain(5), &limits, 100).unwrap();
    assert_eq!((0..draft.tree.len()).map(|n| draft.tree.token(n)).collect::<Vec<_>>(), [11, 12, 13, 14, 5]);
    // The text goes on 11, 30, 31, 32, 33: the second node is wrong.
    let mut oracle = Oracle { text: vec![11, 30, 31, 32, 33, 34, 35], pos: 0 };
    let reply = block_on_ready(oracle.verdict(&draft, &mut |_| {})).unwrap();
    source.commit(&draft, &reply.verdict);
    drop(source);
    // After each rejected node the verifier's argmax: 31, 32, 33, 34.
    assert!(pool.continuations(&[31], 4).contains(&&[32, 33, 34][..]), "{:?}", pool.continuations(&[31], 4));
}

#[test]
fn pool_only_with_nothing_to_offer_falls_back_to_one_token_a_round() {
    let text: Vec<u32> = (30..60).collect();
    let stats = run(&pool_only::PoolOnly { copies: false }, &[1, 2, 3], &text, 10);
    assert_eq!(stats.tokens, text[..10]);
    assert_eq!((stats.rounds, stats.accepted), (10, 0));
}

#[test]
fn replay_commits_the_reference_at_any_acceptance() {
    let reference: Vec<u32> = (1..=30).collect();
    let replay = |accept| Replay { reference: reference.clone(), gamma: 4, accept, seed: 3 };
    let all = run(&replay(1.0), &[0], &reference, reference.len());
    assert_eq!(all.tokens, reference);
    // Four accepted and the verifier's own token a round.
    assert_eq!(all.rounds, 6);
    assert_eq!(all.accepted, 24);
    let none = run(&replay(0.0), &[0], &reference, reference.len());
    assert_eq!(none.tokens, reference);
    assert_eq!((none.rounds, none.accepted), (30, 0));
    let half = run(&replay(0.5), &[0], &reference, reference.len());
    assert_eq!(half.tokens, reference);
    assert!(half.accepted > 0 && half.accepted < 24, "{}", half.accepted);
    assert_eq!(half.finish, Some(FinishReason::Length));
}
