//! Batch invariance at full speed, on all three pinned models: the logits of
//! a token are the same bits whether it is evaluated alone, in a k-token pass
//! for any k, as a node of a draft tree, on 1 or 2 threads, and on every
//! kernel path this CPU runs. Byte-identical greedy speculation rests on it.

use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{AttnMask, CausalLm, Isa, KvCache, Logits, LogitsRows, Transformer};
use ouro_tests::{model_path, reference_prompts};

const KS: [usize; 10] = [1, 2, 3, 5, 8, 13, 16, 17, 33, 64];
/// A draft tree with branching at several depths.
const PARENTS: [i32; 14] = [-1, -1, -1, 0, 0, 1, 3, 3, 4, 6, 6, 2, 11, 12];

fn load(name: &str, isa: Isa) -> Transformer {
    let opts = LoadOptions { kernel: Some(isa), ..LoadOptions::default() };
    gguf::load(&model_path(name), &opts).expect("load").0
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool")
}

/// A prefix of about 100 real tokens and 64 more to evaluate after it.
fn workload(name: &str) -> (Vec<u32>, Vec<u32>) {
    let prompts = reference_prompts(name);
    let all: Vec<u32> = prompts.iter().flat_map(|p| p.1.iter().copied()).collect();
    assert!(all.len() >= 164, "reference prompts hold {} tokens", all.len());
    (all[..100].to_vec(), all[100..164].to_vec())
}

fn prefilled(model: &Transformer, prefix: &[u32]) -> KvCache {
    let mut cache = model.new_cache();
    model.forward_causal(&mut cache, prefix, LogitsRows::None).expect("prefill");
    cache
}

fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn path_to(mut i: usize) -> Vec<usize> {
    let mut p = vec![i];
    while PARENTS[i] >= 0 {
        i = PARENTS[i] as usize;
        p.push(i);
    }
    p.reverse();
    p
}

fn tree_pass(model: &Transformer, base: &KvCache, tokens: &[u32]) -> Logits {
    let start = base.len();
    let positions: Vec<usize> = (0..PARENTS.len()).map(|i| start + path_to(i).len() - 1).collect();
    let mask = AttnMask::from_parents(&PARENTS).expect("tree");
    model.forward_masked(&mut base.clone(), tokens, &positions, &mask, LogitsRows::All).expect("tree pass")
}

fn check_model(name: &str) {
    let isas = Isa::available_all();
    let best = Isa::detect();
    let model = load(name, best);
    let (prefix, tail) = workload(name);
    let base = prefilled(&model, &prefix);

    // Single decode steps on one thread: the reference every pass must equal.
    let singles: Vec<Vec<f32>> = pool(1).install(|| {
        let mut cache = base.clone();
        tail.iter().map(|&t| model.forward_causal(&mut cache, &[t], LogitsRows::Last).expect("step").data).collect()
    });

    for threads in [1, 2] {
        pool(threads).install(|| {
            for k in KS {
                let pass = model.forward_causal(&mut base.clone(), &tail[..k], LogitsRows::All).expect("pass");
                for (i, single) in singles.iter().enumerate().take(k) {
                    assert!(same(pass.row(i), single), "{name} {best}: k={k} threads={threads} row {i} differs");
                }
            }
            // Every node of a tree equals its path fed one token at a time.
            let tokens: Vec<u32> = (0..PARENTS.len()).map(|i| tail[(i * 5 + 3) % tail.len()]).collect();
            let tree = tree_pass(&model, &base, &tokens);
            for node in 0..PARENTS.len() {
                let mut cache = base.clone();
                let mut last = None;
                for j in path_to(node) {
                    last = Some(model.forward_causal(&mut cache, &[tokens[j]], LogitsRows::Last).expect("path"));
                }
                let seq = last.expect("a node");
                assert!(same(tree.row(node), seq.last().expect("row")), "{name}: tree node {node} threads={threads}");
            }
        });
    }
    drop(model);

    // Every other kernel path gives the same bits. The portable one is slow
    // on the larger models, so they check a shorter pass.
    let k = if name == "smollm2-135m" { 17 } else { 5 };
    for isa in isas.into_iter().filter(|&i| i != best) {
        let other = load(name, isa);
        let cache = prefilled(&other, &prefix);
        let pass =
            pool(2).install(|| other.forward_causal(&mut cache.clone(), &tail[..k], LogitsRows::All).expect("pass"));
        for (i, single) in singles.iter().enumerate().take(k) {
            assert!(same(pass.row(i), single), "{name}: {isa} differs from {best} at row {i}");
        }
        println!("{name}: {isa} equals {best} on a {k}-token pass");
    }
    println!("{name}: k in {KS:?}, 1 and 2 threads, {}-node tree: bit-identical to single steps", PARENTS.len());
}

#[test]
fn smollm2_is_batch_invariant_on_every_path() {
    check_model("smollm2-135m");
}

#[test]
fn qwen_05b_is_batch_invariant_on_every_path() {
    check_model("qwen2.5-coder-0.5b");
}

#[test]
fn qwen_15b_is_batch_invariant_on_every_path() {
    check_model("qwen2.5-coder-1.5b");
}

#[test]
fn a_kernel_path_the_cpu_lacks_is_a_clear_error() {
    let missing = Isa::ALL.into_iter().find(|i| !i.available());
    let Some(isa) = missing else {
        println!("this CPU runs every kernel path; nothing to refuse");
        return;
    };
    let opts = LoadOptions { kernel: Some(isa), ..LoadOptions::default() };
    let err = gguf::load(&model_path("smollm2-135m"), &opts).err().expect("refused");
    assert!(err.to_string().contains(isa.name()), "{err}");
}
