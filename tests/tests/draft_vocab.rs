//! The drafter's restricted vocabulary (FR-Spec) on real models: the
//! restricted LM head gives the full head's logits at its ids, bit for bit,
//! alone and batched with full-vocabulary sequences; and speculation with a
//! restricted drafter stays byte-identical to target-only greedy decoding.

use std::ops::ControlFlow;

use ouro_common::draft::PhrasePool;
use ouro_common::generate::GenerateConfig;
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{AttnMask, CausalLm, Head, LogitsRows, SeqInput, Transformer, VocabSubset};
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::{strategy, SpecEngine};
use ouro_common::tokenizer::Tokenizer;
use ouro_config::vocab::DraftVocabArgs;
use ouro_edge::engine::draft_vocab;
use ouro_tests::{has_model, model_path, reference_prompts, target_only};

/// A model loaded with `opts` and given a restricted head over `ids`.
fn restricted(name: &str, opts: &LoadOptions, ids: Vec<u32>) -> Transformer {
    let path = model_path(name);
    let (mut m, ct) = gguf::load(&path, opts).unwrap();
    let subset = VocabSubset::new(ids, m.config().vocab_size).unwrap();
    m.set_draft_head(gguf::load_draft_head(&path, &ct, subset, opts).unwrap()).unwrap();
    m
}

/// Every `step`-th id, the first and the last: columns spread over every
/// tile of the full head, some tiles partly.
fn spread_ids(vocab: usize, step: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..vocab as u32).step_by(step).collect();
    ids.push(vocab as u32 - 1);
    ids.dedup();
    ids
}

fn assert_head_matches(model: &Transformer, prompt: &[u32], what: &str) {
    let subset = model.draft_vocab().expect("a restricted head").clone();
    let (mut full_cache, mut draft_cache) = (model.new_cache(), model.new_cache());
    let full = model.forward_causal(&mut full_cache, prompt, LogitsRows::All).unwrap();
    let positions: Vec<usize> = (0..prompt.len()).collect();
    let mask = AttnMask::causal(prompt.len());
    let draft = model.forward_head(&mut draft_cache, prompt, &positions, &mask, LogitsRows::All, Head::Draft).unwrap();
    assert_eq!((draft.vocab, draft.subset.as_ref()), (subset.len(), Some(&subset)));
    assert_eq!(draft.rows, full.rows);
    for r in 0..full.rows.len() {
        let (f, d) = (full.row(r), draft.row(r));
        for (j, &id) in subset.ids().iter().enumerate() {
            assert_eq!(d[j].to_bits(), f[id as usize].to_bits(), "{what}: row {r}, id {id}");
            assert_eq!(draft.token(j), id);
        }
    }
    // The caches agree too: the head is the only difference.
    assert_eq!(full_cache.len(), draft_cache.len());

    // One pass over two sequences, one per head, gives each what it gets alone.
    let (a, b) = (&prompt[..prompt.len() / 2], prompt);
    let (pa, pb): (Vec<usize>, Vec<usize>) = ((0..a.len()).collect(), (0..b.len()).collect());
    let (ma, mb) = (AttnMask::causal(a.len()), AttnMask::causal(b.len()));
    let (mut ca, mut cb) = (model.new_cache(), model.new_cache());
    let out = model
        .forward(&mut [
            SeqInput {
                cache: &mut ca,
                tokens: a,
                positions: &pa,
                mask: &ma,
                logits: LogitsRows::Last,
                head: Head::Draft,
            },
            SeqInput {
                cache: &mut cb,
                tokens: b,
                positions: &pb,
                mask: &mb,
                logits: LogitsRows::All,
                head: Head::Full,
            },
        ])
        .unwrap();
    let mut alone = model.new_cache();
    let want_a = model.forward_head(&mut alone, a, &pa, &ma, LogitsRows::Last, Head::Draft).unwrap();
    assert_eq!(out[0].data, want_a.data, "{what}: batched restricted rows");
    assert_eq!(out[0].subset.as_ref(), Some(&subset));
    assert_eq!(out[1].data, full.data, "{what}: batched full rows");
    assert_eq!(out[1].subset, None);
}

#[test]
fn restricted_head_logits_are_the_full_heads_bit_for_bit() {
    let prompt = &reference_prompts("smollm2-135m")[0].1;
    // SmolLM2's head is its (tied) embedding table: Q4_1 in the file, Q8_0
    // once loaded; as f32 too, and kept as Q4_1 on candle's kernel.
    let options = [
        ("smollm2 q8_0", LoadOptions::default()),
        ("smollm2 f32", LoadOptions { dequantize: true, ..LoadOptions::default() }),
        ("smollm2 q4_1", LoadOptions { requantize_legacy: false, ..LoadOptions::default() }),
    ];
    for (what, opts) in options {
        let m = restricted("smollm2-135m", &opts, spread_ids(49_152, 7));
        assert_head_matches(&m, prompt, what);
    }
    // Qwen2.5-0.5B has an untied Q8_0 output matrix; the shipped ranking.
    if has_model("qwen2.5-coder-0.5b") {
        let path = model_path("qwen2.5-coder-0.5b");
        let opts = LoadOptions::default();
        let (mut m, ct) = gguf::load(&path, &opts).unwrap();
        let id = Tokenizer::from_gguf(&ct).unwrap().info().identity.clone();
        let attached = draft_vocab::attach(&mut m, &path, &ct, &id, &DraftVocabArgs::default(), &opts).unwrap();
        let attached = attached.expect("the shipped ranking is Qwen2.5's");
        assert_eq!((attached.ids, attached.vocab), (32_768, 151_936));
        // 32,768 rows of 896 Q8_0 values: 28 blocks of 34 bytes each.
        assert_eq!(attached.bytes, 32_768 * 28 * 34);
        let prompt = &reference_prompts("qwen2.5-coder-1.5b")[0].1;
        assert_head_matches(&m, &prompt[..prompt.len().min(40)], "qwen2.5-0.5b q8_0");
    }
}

/// Runs `modes` over the prompts and asserts each output equals `expected`;
/// returns (tokens, rounds) per mode.
fn assert_identical(
    drafter: &dyn CausalLm,
    target: &Transformer,
    prompts: &[Vec<u32>],
    expected: &[Vec<u32>],
    cfg: &GenerateConfig,
    modes: &[&str],
) {
    for name in modes {
        let engine = SpecEngine::new(drafter, target, strategy::parse(name).unwrap()).unwrap();
        let mut pool = PhrasePool::default();
        let (mut generated, mut rounds) = (0, 0);
        for (i, (prompt, expect)) in prompts.iter().zip(expected).enumerate() {
            let mut got = Vec::new();
            let (stats, p) = engine
                .generate(prompt, cfg, pool, |ts| {
                    got.extend_from_slice(ts);
                    ControlFlow::Continue(())
                })
                .unwrap();
            pool = p;
            assert_eq!(&got, expect, "{name}, prompt {i}: a restricted drafter changed the text");
            generated += stats.generated;
            rounds += stats.rounds;
        }
        println!(
            "{name}: {generated} tokens in {rounds} rounds ({:.2} per verify step)",
            generated as f64 / rounds as f64
        );
        assert!(rounds < generated, "{name}: no draft token was ever accepted");
    }
}

/// SmolLM2 drafting over its first 8,192 ids for SmolLM2 itself: drafter
/// and target are the same weights, so every rejection is the restriction's
/// doing (the target's choice lies outside the subset), and the text is
/// still the target's, byte for byte.
#[test]
fn greedy_speculation_with_a_restricted_drafter_is_byte_identical_to_target_only() {
    // The stop ids (0, 2) are among them.
    let drafter = restricted("smollm2-135m", &LoadOptions::default(), (0..8192).collect());
    let target = ouro_tests::smollm2();
    let target = target.as_ref();
    let cfg = GenerateConfig { max_new_tokens: 48, sampling: SamplingParams::greedy(), stop_ids: vec![0, 2] };
    let prompts: Vec<Vec<u32>> = reference_prompts("smollm2-135m").into_iter().take(6).map(|(_, p, _)| p).collect();
    let expected: Vec<Vec<u32>> = prompts.iter().map(|p| target_only(target, p, &cfg)).collect();
    assert_identical(&drafter, target, &prompts, &expected, &cfg, &["chain4", "heuristic", "ouroboros"]);
}

/// Sampled runs with a restricted drafter complete and are reproducible.
#[test]
fn sampled_speculation_with_a_restricted_drafter_is_reproducible() {
    let drafter = restricted("smollm2-135m", &LoadOptions::default(), (0..4096).collect());
    let target = ouro_tests::smollm2();
    let prompt = &reference_prompts("smollm2-135m")[1].1;
    let engine = SpecEngine::new(&drafter, target.as_ref(), strategy::parse("chain4").unwrap()).unwrap();
    let run = |seed| {
        let sampling = SamplingParams { temperature: 0.8, top_k: Some(40), top_p: Some(0.95), seed };
        let cfg = GenerateConfig { max_new_tokens: 40, sampling, stop_ids: vec![0, 2] };
        let (got, stats) = ouro_tests::speculate(&engine, prompt, &cfg);
        (got, stats.accepted)
    };
    let (a, accepted) = run(3);
    assert_eq!(a, run(3).0, "same seed, different text");
    assert!(accepted > 0, "no sampled draft token was accepted");
}

/// The Qwen pair with the shipped ranking (run locally: `cargo test -p
/// ouro-tests --test draft_vocab -- --ignored --nocapture`).
#[test]
#[ignore = "local: the Qwen pair, a few minutes"]
fn qwen_pair_with_the_shipped_ranking_is_byte_identical_to_target_only() {
    let opts = LoadOptions::default();
    let path = model_path("qwen2.5-coder-0.5b");
    let (mut drafter, ct) = gguf::load(&path, &opts).unwrap();
    let id = Tokenizer::from_gguf(&ct).unwrap().info().identity.clone();
    draft_vocab::attach(&mut drafter, &path, &ct, &id, &DraftVocabArgs::default(), &opts).unwrap().unwrap();
    let (target, ct) = gguf::load(&model_path("qwen2.5-coder-1.5b"), &opts).unwrap();
    let stop_ids = Tokenizer::from_gguf(&ct).unwrap().info().stop_ids.clone();
    let cfg = GenerateConfig { max_new_tokens: 64, sampling: SamplingParams::greedy(), stop_ids };
    let prompts: Vec<Vec<u32>> =
        reference_prompts("qwen2.5-coder-1.5b").into_iter().step_by(3).take(4).map(|(_, p, _)| p).collect();
    let expected: Vec<Vec<u32>> = prompts.iter().map(|p| target_only(&target, p, &cfg)).collect();
    assert_identical(&drafter, &target, &prompts, &expected, &cfg, &["chain4", "ouroboros"]);
}
