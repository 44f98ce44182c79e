//! A draft policy stays warm across generations, as the edge daemon keeps it
//! across requests: each generation starts from the plan and estimates the
//! previous one ended with, and its text is still the target's own.

use std::ops::ControlFlow;

use ouro_common::draft::PhrasePool;
use ouro_common::generate::GenerateConfig;
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::{strategy, SpecEngine};
use ouro_tests::{reference_prompts, smollm2, smollm2_f32, target_only};

#[test]
fn each_generation_starts_where_the_last_one_ended() {
    // The f32 drafter differs from the file the target runs, so some drafts
    // fail and the controller has something to learn.
    let (drafter, target) = (smollm2_f32(), smollm2());
    let prompts = reference_prompts("smollm2-135m");
    let cfg = GenerateConfig { max_new_tokens: 40, sampling: SamplingParams::greedy(), stop_ids: vec![] };
    for name in ["ouroboros", "hybrid"] {
        let mut engine = SpecEngine::new(&*drafter, &*target, strategy::parse(name).unwrap()).unwrap();
        let mut pool = PhrasePool::default();
        for (i, (category, prompt, _)) in prompts.iter().take(3).enumerate() {
            let want = target_only(&*target, prompt, &cfg);
            let mut got = Vec::new();
            let (stats, back) = engine
                .generate(prompt, &cfg, pool, |ts| {
                    got.extend_from_slice(ts);
                    ControlFlow::Continue(())
                })
                .unwrap();
            pool = back;
            assert_eq!(got, want, "{name} {category}: a warm generation changed the text");
            let first = stats.round_log.first().expect("a round").plan;
            match &engine.warm {
                None => assert_eq!(i, 0),
                Some(learned) => assert_eq!(first, learned.plan(), "{name} prompt {i}: did not start warm"),
            }
            engine.warm = Some(stats.learned.expect("the adaptive controller learns"));
        }
    }
}

#[test]
fn sampled_generations_ignore_what_was_learned() {
    // Which sample a seed yields depends on the tree's shape, so a sampled
    // run's plans must not depend on earlier measurements: it starts cold.
    let (drafter, target) = (smollm2_f32(), smollm2());
    let prompts = reference_prompts("smollm2-135m");
    let greedy = GenerateConfig { max_new_tokens: 40, sampling: SamplingParams::greedy(), stop_ids: vec![] };
    let mut engine = SpecEngine::new(&*drafter, &*target, strategy::parse("ouroboros").unwrap()).unwrap();
    let (stats, _) =
        engine.generate(&prompts[0].1, &greedy, PhrasePool::default(), |_| ControlFlow::Continue(())).unwrap();
    let sampled =
        GenerateConfig { sampling: SamplingParams { temperature: 0.8, seed: 7, ..greedy.sampling }, ..greedy };
    let cold =
        engine.generate(&prompts[1].1, &sampled, PhrasePool::default(), |_| ControlFlow::Continue(())).unwrap().0;
    engine.warm = stats.learned;
    let warm =
        engine.generate(&prompts[1].1, &sampled, PhrasePool::default(), |_| ControlFlow::Continue(())).unwrap().0;
    assert_eq!(warm.tokens, cold.tokens);
    let plans = |s: &ouro_common::spec::SpecStats| s.round_log.iter().map(|l| l.plan).collect::<Vec<_>>();
    assert_eq!(plans(&warm), plans(&cold));
}
