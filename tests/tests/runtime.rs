//! The model runtime on a real model (SmolLM2-135M): tree attention, batch
//! invariance, rollback and keep-path.

use ouro_common::model::{AttnMask, CausalLm, Head, KvCache, Logits, LogitsRows, SeqInput};
use ouro_common::sampling::argmax;
use ouro_tests::{max_abs_diff, reference_prompts, smollm2};

fn prompt() -> Vec<u32> {
    reference_prompts("smollm2-135m")[0].1.clone()
}

/// A 14-node tree with branching at several depths.
const PARENTS: [i32; 14] = [-1, -1, -1, 0, 0, 1, 3, 3, 4, 6, 6, 2, 11, 12];

fn path_to(parents: &[i32], mut i: usize) -> Vec<usize> {
    let mut p = vec![i];
    while parents[i] >= 0 {
        i = parents[i] as usize;
        p.push(i);
    }
    p.reverse();
    p
}

fn depth(parents: &[i32], i: usize) -> usize {
    path_to(parents, i).len() - 1
}

/// Evaluates the 14-node tree (tokens picked from the prompt with `stride`
/// and `offset`) on top of `cache`, returning the tokens and their logits.
fn tree_pass(
    model: &dyn CausalLm,
    cache: &mut KvCache,
    prompt: &[u32],
    stride: usize,
    offset: usize,
) -> (Vec<u32>, Logits) {
    let start = cache.len();
    // Real tokens: continuations and near-misses taken from the prompt itself.
    let tokens: Vec<u32> = (0..PARENTS.len()).map(|i| prompt[(i * stride + offset) % prompt.len()]).collect();
    let positions: Vec<usize> = (0..PARENTS.len()).map(|i| start + depth(&PARENTS, i)).collect();
    let mask = AttnMask::from_parents(&PARENTS).unwrap();
    let logits = model.forward_masked(cache, &tokens, &positions, &mask, LogitsRows::All).unwrap();
    (tokens, logits)
}

#[test]
fn tree_pass_equals_each_path_fed_sequentially() {
    let model = smollm2();
    let prompt = prompt();
    let mut base = model.new_cache();
    model.forward_causal(&mut base, &prompt, LogitsRows::Last).unwrap();
    let mut tree_cache = base.clone();
    let (tokens, tree) = tree_pass(model.as_ref(), &mut tree_cache, &prompt, 7, 3);
    let mut worst = 0f32;
    for node in 0..PARENTS.len() {
        let path: Vec<u32> = path_to(&PARENTS, node).iter().map(|&j| tokens[j]).collect();
        let mut c = base.clone();
        let mut last = None;
        for &t in &path {
            last = Some(model.forward_causal(&mut c, &[t], LogitsRows::Last).unwrap());
        }
        let seq = last.unwrap();
        let (a, b) = (tree.row(node), seq.last().unwrap());
        let d = max_abs_diff(a, b);
        worst = worst.max(d);
        assert!(d < 1e-3, "node {node}: max abs diff {d}");
        assert_eq!(argmax(a), argmax(b), "node {node}: argmax differs");
    }
    println!("tree of {} nodes: worst max-abs-diff vs sequential paths = {worst:e}", PARENTS.len());
}

/// Feeds the last `k` prompt tokens in one pass and one by one: every row
/// must agree bit for bit.
fn assert_k_pass_equals_steps(name: &str, model: &dyn CausalLm, prompt: &[u32], k: usize) {
    let (head, tail) = prompt.split_at(prompt.len() - k);
    let mut a = model.new_cache();
    model.forward_causal(&mut a, head, LogitsRows::None).unwrap();
    let mut b = a.clone();
    let batched = model.forward_causal(&mut a, tail, LogitsRows::All).unwrap();
    for (i, &t) in tail.iter().enumerate() {
        let single = model.forward_causal(&mut b, &[t], LogitsRows::Last).unwrap();
        let d = max_abs_diff(batched.row(i), single.last().unwrap());
        assert!(d == 0.0, "{name}: row {i} differs by {d} between the batched pass and a single step");
    }
}

#[test]
fn k_token_pass_is_bitwise_equal_to_k_single_steps() {
    assert_k_pass_equals_steps("smollm2-135m", smollm2().as_ref(), &prompt(), 9);
}

#[test]
fn sequences_batched_together_equal_each_alone() {
    let model = smollm2();
    let prompts = reference_prompts("smollm2-135m");
    let (p1, p2) = (&prompts[1].1, &prompts[2].1);
    let (mut c1, mut c2) = (model.new_cache(), model.new_cache());
    let alone1 = model.forward_causal(&mut c1, p1, LogitsRows::Last).unwrap();
    let alone2 = model.forward_causal(&mut c2, p2, LogitsRows::Last).unwrap();
    let (mut d1, mut d2) = (model.new_cache(), model.new_cache());
    let pos1: Vec<usize> = (0..p1.len()).collect();
    let pos2: Vec<usize> = (0..p2.len()).collect();
    let (m1, m2) = (AttnMask::causal(p1.len()), AttnMask::causal(p2.len()));
    let out = model
        .forward(&mut [
            SeqInput {
                cache: &mut d1,
                tokens: p1,
                positions: &pos1,
                mask: &m1,
                logits: LogitsRows::Last,
                head: Head::Full,
            },
            SeqInput {
                cache: &mut d2,
                tokens: p2,
                positions: &pos2,
                mask: &m2,
                logits: LogitsRows::Last,
                head: Head::Full,
            },
        ])
        .unwrap();
    assert!(out[0].last().unwrap() == alone1.last().unwrap());
    assert!(out[1].last().unwrap() == alone2.last().unwrap());
}

#[test]
fn truncate_then_refeed_equals_a_fresh_run() {
    let model = smollm2();
    let prompt = prompt();
    let (head, rest) = prompt.split_at(prompt.len() - 8);
    let mut c = model.new_cache();
    model.forward_causal(&mut c, head, LogitsRows::None).unwrap();
    let wrong: Vec<u32> = rest.iter().rev().copied().collect();
    model.forward_causal(&mut c, &wrong, LogitsRows::All).unwrap();
    c.truncate(head.len());
    let again = model.forward_causal(&mut c, rest, LogitsRows::All).unwrap();
    let mut fresh = model.new_cache();
    let expect = model.forward_causal(&mut fresh, &prompt, LogitsRows::All).unwrap();
    for i in 0..rest.len() {
        assert!(again.row(i) == expect.row(head.len() + i), "row {i} differs after rollback");
    }
}

#[test]
fn keep_path_after_tree_then_continue_equals_recomputing_the_path() {
    let model = smollm2();
    let prompt = prompt();
    let mut c = model.new_cache();
    model.forward_causal(&mut c, &prompt, LogitsRows::None).unwrap();
    let start = c.len();
    let (tokens, _) = tree_pass(model.as_ref(), &mut c, &prompt, 5, 1);
    let path = path_to(&PARENTS, 9); // 0 -> 3 -> 6 -> 9
    c.keep(start, &path).unwrap();
    assert_eq!(c.len(), start + path.len());
    let next = prompt[4];
    let cont = model.forward_causal(&mut c, &[next, prompt[5]], LogitsRows::All).unwrap();

    let mut fresh = model.new_cache();
    let mut seq = prompt.clone();
    seq.extend(path.iter().map(|&j| tokens[j]));
    seq.extend([next, prompt[5]]);
    let expect = model.forward_causal(&mut fresh, &seq, LogitsRows::All).unwrap();
    let n = seq.len();
    for i in 0..2 {
        let d = max_abs_diff(cont.row(i), expect.row(n - 2 + i));
        assert!(d < 1e-3, "continuation row {i}: diff {d}");
        assert_eq!(argmax(cont.row(i)), argmax(expect.row(n - 2 + i)));
    }
}

/// The Qwen files mix Q4_K, Q6_K, Q5_0 and Q8_0 tensors, whose candle kernels
/// differ from SmolLM2's; batch invariance must hold for each of them.
fn k_token_pass_matches_steps_on(name: &str) {
    use ouro_common::model::gguf::{self, LoadOptions};
    let (model, _) = gguf::load(&ouro_tests::model_path(name), &LoadOptions::default()).unwrap();
    assert_k_pass_equals_steps(name, &model, &reference_prompts(name)[0].1, 6);
}

#[test]
fn k_token_pass_is_bitwise_equal_on_qwen_05b() {
    k_token_pass_matches_steps_on("qwen2.5-coder-0.5b");
}

#[test]
fn k_token_pass_is_bitwise_equal_on_qwen_15b() {
    k_token_pass_matches_steps_on("qwen2.5-coder-1.5b");
}

/// A prompt prefilled in chunks (as the cloud does, between other sessions'
/// rounds) continues exactly as one prefilled in one pass.
#[test]
fn chunked_prefill_continues_like_one_pass() {
    use ouro_common::engine::VerifierSession;
    use ouro_common::tree::{DraftTree, TreeLimits};
    let model = smollm2();
    let prompt = prompt();
    let limits = TreeLimits { max_nodes: 8, max_depth: 8 };
    let params = ouro_common::sampling::SamplingParams::greedy();
    let mut whole = VerifierSession::open(model.as_ref(), &prompt, params, limits).unwrap();
    let mut chunked = VerifierSession::start(model.as_ref(), &prompt, params, limits).unwrap();
    assert_eq!(chunked.prefill_remaining(), prompt.len() - 1);
    let mut passes = 0;
    while chunked.prefill(7).unwrap() > 0 {
        passes += 1;
    }
    assert_eq!(passes + 1, (prompt.len() - 1).div_ceil(7));
    let vocab = model.config().vocab_size;
    for step in 0..12 {
        let tree = DraftTree::empty(&limits, vocab);
        let (a, b) = (whole.verify(&tree, &[]).unwrap(), chunked.verify(&tree, &[]).unwrap());
        assert_eq!(a.target_argmax, b.target_argmax, "step {step}");
        assert_eq!(a.next_token, b.next_token, "step {step}");
    }
    assert_eq!(whole.committed(), chunked.committed());
}

#[test]
fn a_resumed_session_decodes_as_one_opened_on_its_text() {
    use ouro_common::engine::VerifierSession;
    use ouro_common::sampling::SamplingParams;
    use ouro_common::tree::{DraftTree, TreeLimits};
    let model = smollm2();
    let prompt = prompt();
    let limits = TreeLimits { max_nodes: 8, max_depth: 8 };
    let empty = DraftTree::empty(&limits, model.config().vocab_size);
    let greedy = SamplingParams::greedy();
    // The session's text after `steps` more tokens, and that of a fresh one.
    let decode = |s: &mut VerifierSession, steps: usize| {
        for _ in 0..steps {
            s.verify(&empty, &[]).unwrap();
        }
        s.committed().to_vec()
    };
    let fresh = |text: &[u32], steps: usize| {
        let mut s = VerifierSession::open(model.as_ref(), text, greedy, limits).unwrap();
        decode(&mut s, steps)
    };
    let mut s = VerifierSession::open(model.as_ref(), &prompt, greedy, limits).unwrap();
    let ten = decode(&mut s, 10);
    let passes = s.forward_passes();

    // Back four tokens (the client never heard them): the same ones again.
    assert!(s.resume_on(&ten[..ten.len() - 4]).unwrap());
    assert_eq!((s.prefill_remaining(), s.committed()), (0, &ten[..ten.len() - 4]));
    assert_eq!(decode(&mut s, 4), ten, "decoding again after going back gave other tokens");
    // On with two tokens of the client's own: only they are prefilled.
    let own = [ten.as_slice(), &[ten[3], ten[4]]].concat();
    assert!(s.resume_on(&own).unwrap());
    assert_eq!(s.prefill_remaining(), 2, "the old root and the first new token");
    while s.prefill(usize::MAX).unwrap() > 0 {}
    assert_eq!(decode(&mut s, 6), fresh(&own, 6));
    // Back into the prompt and off on another text.
    let other = [&prompt[..3], &[ten[9], ten[1]]].concat();
    assert!(s.resume_on(&other).unwrap());
    while s.prefill(usize::MAX).unwrap() > 0 {}
    assert_eq!(decode(&mut s, 8), fresh(&other, 8));
    assert!(s.forward_passes() > passes);

    // Bad texts are errors and change nothing.
    let held = s.committed().to_vec();
    assert!(s.resume_on(&[]).is_err());
    assert!(s.resume_on(&[u32::MAX]).is_err());
    assert_eq!(s.committed(), held.as_slice());

    let sampled = SamplingParams { temperature: 0.8, seed: 7, ..greedy };
    let mut s = VerifierSession::open(model.as_ref(), &prompt, sampled, limits).unwrap();
    s.verify(&empty, &[]).unwrap();
    let held = s.committed().to_vec();
    assert!(!s.resume_on(&prompt).unwrap(), "a sampled session cannot replay its draws");
    assert_eq!(s.committed(), held.as_slice());
    assert!(s.resume_on(&held).unwrap(), "its whole text is always a place to resume");
    assert!(s.resume_on(&[held.as_slice(), &[ten[2]]].concat()).unwrap(), "nor does going on from it replay any");
}
