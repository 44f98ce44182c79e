//! Rounds sent ahead of the verdict they bet on, stacked bets on bets,
//! through the round driver with a verifier that takes them (as the cloud
//! does): greedy text must stay byte-identical to target-only whichever
//! bets win.
//!
//! Sampled, a seed must give the same text however far off the verifier
//! looks: one bet at a time, whatever the clock says.
//!
//! The verifier here is the target model in process, posing as a distant
//! one: it reports each round as slow, so the driver believes a verdict is
//! far off and has time to stack bets. It keeps the cloud's rule: a round
//! whose bet lost is never verified (the driver never asks).

use std::ops::ControlFlow;

use ouro_common::controller::DraftPlan;
use ouro_common::draft::PhrasePool;
use ouro_common::engine::{Draft, Drafter, DrafterConfig, EngineError, VerifierSession};
use ouro_common::generate::GenerateConfig;
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{CausalLm, Transformer};
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::{block_on_ready, drive, strategy, Opening, Reply, Rounds, SpecStats, Verifier};
use ouro_common::tree::TreeLimits;
use ouro_common::verify::Verdict;
use ouro_tests::{model_path, reference_prompts, smollm2, target_only};

struct Distant<'m> {
    session: VerifierSession<'m>,
    sent_ahead: Vec<Vec<u32>>,
    /// What each verdict reports as its compute time.
    compute_ms: f64,
}

impl Verifier for Distant<'_> {
    type Error = EngineError;

    fn remote(&self) -> bool {
        true
    }

    async fn send(&mut self, _draft: &Draft, _run_on: usize) -> Result<(), EngineError> {
        Ok(())
    }

    async fn verdict(&mut self, draft: &Draft, _: &mut (dyn FnMut(&[u32]) + Send)) -> Result<Reply, EngineError> {
        let verdict = self.session.verify(&draft.tree, &draft.dists)?;
        Ok(Reply::local(verdict, self.compute_ms))
    }

    fn sends_ahead(&self) -> bool {
        true
    }

    async fn send_ahead(&mut self, _draft: &Draft, assumed: &[u32], _run_on: usize) -> Result<(), EngineError> {
        self.sent_ahead.push(assumed.to_vec());
        Ok(())
    }
}

fn target() -> Transformer {
    let opts = LoadOptions { dequantize: true, ..LoadOptions::default() };
    gguf::load(&model_path("smollm2-135m"), &opts).unwrap().0
}

/// One Ouroboros generation through the driver against [`Distant`]; the
/// text, its stats, and how many rounds were sent ahead.
fn generate(
    drafter: &dyn CausalLm,
    target: &Transformer,
    prompt: &[u32],
    cfg: &GenerateConfig,
    compute_ms: f64,
) -> (Vec<u32>, SpecStats, usize) {
    let limits = TreeLimits { max_nodes: 64, max_depth: 32 };
    let mode = strategy::parse("ouroboros").unwrap();
    let mut pool = PhrasePool::default();
    let sampled = !cfg.sampling.is_greedy();
    let mut source = mode
        .open(Opening {
            drafter: Some(drafter),
            prompt,
            sampling: cfg.sampling,
            stop_ids: &cfg.stop_ids,
            pool: &mut pool,
            draft_window: 0,
        })
        .unwrap();
    let mut policy = mode.warm_policy(None, None, sampled);
    let session = VerifierSession::open(target, prompt, cfg.sampling, limits).unwrap();
    let mut verifier = Distant { session, sent_ahead: Vec::new(), compute_ms };
    let rounds = Rounds {
        prompt_len: prompt.len(),
        max_new: cfg.max_new_tokens,
        stop_ids: &cfg.stop_ids,
        sampled,
        pipeline: true,
        limits,
        vocab: target.config().vocab_size,
        max_context: target.config().max_context,
        run_on: false,
    };
    let mut stats = SpecStats::default();
    let mut got = Vec::new();
    block_on_ready(drive(&mut verifier, &mut *source, &mut *policy, &rounds, &mut stats, |ts| {
        got.extend_from_slice(ts);
        ControlFlow::Continue(())
    }))
    .unwrap();
    (got, stats, verifier.sent_ahead.len())
}

#[test]
fn bets_stacked_on_bets_keep_the_targets_text() {
    let drafter = smollm2();
    let target = target();
    let cfg = GenerateConfig { max_new_tokens: 48, sampling: SamplingParams::greedy(), stop_ids: vec![0, 2] };
    let (mut sent, mut deepest, mut used, mut stale) = (0, 0, 0, 0);
    for (category, prompt, _) in reference_prompts("smollm2-135m") {
        let expect = target_only(&target, &prompt, &cfg);
        let (got, stats, sent_ahead) = generate(&*drafter, &target, &prompt, &cfg, 400.0);
        assert_eq!(got, expect, "{category}: a bet sent ahead changed the text");
        assert_eq!(sent_ahead, stats.ahead_sent);
        // Every round sent ahead was either used or answered stale.
        assert_eq!(stats.ahead_sent, stats.ahead_used + stats.ahead_stale, "{category}: {stats:?}");
        sent += stats.ahead_sent;
        deepest = deepest.max(stats.ahead_deepest);
        used += stats.ahead_used;
        stale += stats.ahead_stale;
    }
    println!("sent ahead {sent} (up to {deepest} at once), used {used}, stale {stale}");
    // The verdict looked far off, so bets stacked; some won, some lost.
    assert!(deepest >= 2, "bets never stacked: {deepest}");
    assert!(used > 0 && stale > 0, "{used} used, {stale} stale");
}

/// Sampled, bets go out one at a time, every round, so a seed gives the
/// same text whether the verifier looks near (no time to stack) or far.
#[test]
fn sampled_bets_keep_the_seeds_text_whatever_the_clock_says() {
    let drafter = smollm2();
    let target = target();
    let (mut sent, mut used, mut stale) = (0, 0, 0);
    for (category, prompt, _) in reference_prompts("smollm2-135m").into_iter().take(3) {
        let sampling = SamplingParams { temperature: 0.8, top_k: Some(40), top_p: Some(0.95), seed: 5 };
        let cfg = GenerateConfig { max_new_tokens: 40, sampling, stop_ids: vec![0, 2] };
        let (far, stats, sent_ahead) = generate(&*drafter, &target, &prompt, &cfg, 400.0);
        let (near, _, _) = generate(&*drafter, &target, &prompt, &cfg, 0.0);
        assert_eq!(far, near, "{category}: the seed's text depended on how far off the verifier looked");
        assert_eq!(sent_ahead, stats.ahead_sent);
        assert_eq!(stats.ahead_sent, stats.ahead_used + stats.ahead_stale, "{category}: {stats:?}");
        assert!(stats.ahead_deepest <= 1, "{category}: sampled bets stacked {} deep", stats.ahead_deepest);
        sent += stats.ahead_sent;
        used += stats.ahead_used;
        stale += stats.ahead_stale;
    }
    println!("sampled: sent ahead {sent}, used {used}, stale {stale}");
    assert!(used > 0 && stale > 0, "{used} used, {stale} stale");
}

/// After a bet wins, the drafter must go on exactly as a drafter that
/// never bet, opened on the text committed so far: its cache holds the
/// right rows (the runtime is batch-invariant, so equal rows give equal
/// drafts) and the rounds it drafted ahead are the ones it would draft now.
#[test]
fn after_stacked_bets_the_drafter_drafts_as_if_it_had_never_bet() {
    let model = smollm2();
    let limits = TreeLimits { max_nodes: 64, max_depth: 32 };
    let vocab = model.config().vocab_size;
    let plan = DraftPlan::chain(3);
    let cfg = DrafterConfig { use_pool: false, ..DrafterConfig::default() };
    let (_, prompt, _) = reference_prompts("smollm2-135m").remove(0);
    // A drafter that never bet, on `text`: its draft, and the round it
    // drafts ahead of that draft.
    let fresh = |text: &[u32]| {
        let mut pool = PhrasePool::default();
        let mut d = Drafter::open(&*model, text, SamplingParams::greedy(), &mut pool, cfg.clone(), vec![]).unwrap();
        let draft = d.draft(&plan, &limits, vocab).unwrap();
        let ahead = d.draft_ahead(&draft, &plan, &limits, vocab).unwrap().expect("a bet");
        (draft.tree.tokens().to_vec(), ahead.assumed, ahead.draft.tree.tokens().to_vec())
    };
    // The verdict that accepts a trunk whole and then says `next`, or that
    // rejects it at its first token.
    let verdict = |draft: &Draft, accept: bool, next: u32| {
        let accepted: Vec<usize> = if accept { (0..draft.trunk_len).collect() } else { vec![] };
        let mut target_argmax = vec![0; draft.tree.len() + 1];
        target_argmax[0] = accepted.first().map_or(next, |&n| draft.tree.token(n));
        Verdict { accepted, next_token: next, target_argmax }
    };
    for won in [true, false] {
        let mut pool = PhrasePool::default();
        let mut d = Drafter::open(&*model, &prompt, SamplingParams::greedy(), &mut pool, cfg.clone(), vec![]).unwrap();
        let current = d.draft(&plan, &limits, vocab).unwrap();
        let first = d.draft_ahead(&current, &plan, &limits, vocab).unwrap().expect("a bet");
        let second = d.draft_ahead(&first.draft, &plan, &limits, vocab).unwrap().expect("a bet on the bet");
        assert!(d.draft_ahead(&current, &plan, &limits, vocab).unwrap().is_none(), "only the last round is bet on");
        let trunk = &current.tree.tokens()[..current.trunk_len];
        assert_eq!(&first.assumed[..trunk.len()], trunk);
        let next = if won { *first.assumed.last().unwrap() } else { trunk[0].wrapping_add(1) % vocab as u32 };
        let v = verdict(&current, won, next);
        let mut text = prompt.clone();
        text.extend_from_slice(&v.emitted_tokens(&current.tree));
        d.commit(&current, &v);
        assert_eq!(d.committed(), &text[..]);
        let (want_draft, want_assumed, want_ahead) = fresh(&text);
        if !won {
            let next = d.draft(&plan, &limits, vocab).unwrap();
            assert_eq!(next.tree.tokens(), want_draft, "after a lost bet");
            continue;
        }
        // The first bet's round is what the drafter would draft now, and
        // the bet stacked on it is what it would draft ahead of that.
        assert_eq!(first.draft.tree.tokens(), want_draft);
        assert_eq!((second.assumed.clone(), second.draft.tree.tokens().to_vec()), (want_assumed, want_ahead));
        // The stacked bet wins too; a third stacks on it as a fresh drafter
        // would draft it.
        let v = verdict(&first.draft, true, *second.assumed.last().unwrap());
        text.extend_from_slice(&v.emitted_tokens(&first.draft.tree));
        d.commit(&first.draft, &v);
        assert_eq!(d.committed(), &text[..]);
        let (want_draft, want_assumed, want_ahead) = fresh(&text);
        assert_eq!(second.draft.tree.tokens(), want_draft);
        let third = d.draft_ahead(&second.draft, &plan, &limits, vocab).unwrap().expect("a bet after two won");
        assert_eq!((third.assumed, third.draft.tree.tokens().to_vec()), (want_assumed, want_ahead));
    }
}
