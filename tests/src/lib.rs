//! Shared helpers for the end-to-end tests: where the pinned models and the
//! shared reference data live.
//!
//! The models are fetched by `deploy/fetch-models.sh` (the README's test
//! command runs it first); a missing file is a setup error, reported as such.

use std::path::PathBuf;

/// Path of a pinned model by its short name (`smollm2-135m`,
/// `qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`).
pub fn model_path(name: &str) -> PathBuf {
    let p = ouro_config::models::cached_path(name);
    assert!(p.is_file(), "model {name} is missing at {}: run `deploy/fetch-models.sh {name}` first", p.display());
    p
}

/// Whether a pinned model is present, for tests that run only where the
/// larger models have been fetched (the Qwen pair is fetched locally, not in CI).
pub fn has_model(name: &str) -> bool {
    ouro_config::models::cached_path(name).is_file()
}

/// Where cargo put the workspace's binaries (beside this test's `deps/`).
pub fn bin_path(name: &str) -> PathBuf {
    ouro_bench::process::sibling_bin(name).unwrap_or_else(|e| panic!("{e} (cargo test --workspace builds it)"))
}

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `shared/data`, beside the checkout (`$OURO_SHARED_DATA` overrides).
pub fn shared_data() -> PathBuf {
    if let Some(d) = std::env::var_os("OURO_SHARED_DATA") {
        return PathBuf::from(d);
    }
    let p = repo_root().join("../shared/data");
    assert!(p.is_dir(), "shared data not found at {}", p.display());
    p
}

/// Reads a JSONL file into values.
pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("valid JSON line")).collect()
}

use std::sync::{Arc, OnceLock};

use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{CausalLm, KvCache, LogitsRows, Transformer};

/// SmolLM2-135M loaded once per test binary (the default load options).
pub fn smollm2() -> Arc<Transformer> {
    static MODEL: OnceLock<Arc<Transformer>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let (m, _) = gguf::load(&model_path("smollm2-135m"), &LoadOptions::default()).expect("load smollm2");
            Arc::new(m)
        })
        .clone()
}

/// SmolLM2-135M dequantized to f32: a drafter numerically distinct from the
/// file the cloud serves, so that some drafts (and draft-ahead bets) fail.
pub fn smollm2_f32() -> Arc<Transformer> {
    static MODEL: OnceLock<Arc<Transformer>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let opts = LoadOptions { dequantize: true, ..LoadOptions::default() };
            let (m, _) = gguf::load(&model_path("smollm2-135m"), &opts).expect("load smollm2");
            Arc::new(m)
        })
        .clone()
}

/// Prompt token ids of the shared reference set (ChatML-wrapped Spec-Bench questions).
pub fn reference_prompts(model: &str) -> Vec<(String, Vec<u32>, Vec<u32>)> {
    let path = shared_data().join(format!("reference/greedy_{model}.jsonl"));
    read_jsonl(&path)
        .into_iter()
        .map(|v| {
            let ids = |k: &str| -> Vec<u32> {
                v[k].as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
            };
            (v["category"].as_str().unwrap_or("").to_string(), ids("prompt_ids"), ids("output_ids"))
        })
        .collect()
}

/// What the target alone writes after `prompt` under `cfg` (the library's
/// own decoding loop): what every speculative run must equal.
pub fn target_only(model: &dyn CausalLm, prompt: &[u32], cfg: &ouro_common::generate::GenerateConfig) -> Vec<u32> {
    let mut out = Vec::new();
    ouro_common::generate::generate(model, prompt, cfg, |t| {
        out.push(t);
        std::ops::ControlFlow::Continue(())
    })
    .expect("target-only generation");
    out
}

/// What a speculative engine writes after `prompt` under `cfg`, from an
/// empty phrase pool, and its statistics.
pub fn speculate(
    engine: &ouro_common::spec::SpecEngine,
    prompt: &[u32],
    cfg: &ouro_common::generate::GenerateConfig,
) -> (Vec<u32>, ouro_common::spec::SpecStats) {
    let mut out = Vec::new();
    let (stats, _) = engine
        .generate(prompt, cfg, Default::default(), |ts| {
            out.extend_from_slice(ts);
            std::ops::ControlFlow::Continue(())
        })
        .expect("speculative generation");
    (out, stats)
}

/// Greedy decoding with single-token steps, the reference every speculative
/// path is compared with.
pub fn greedy(model: &dyn CausalLm, cache: &mut KvCache, prompt: &[u32], n: usize, stop: &[u32]) -> Vec<u32> {
    let mut logits = model.forward_causal(cache, prompt, LogitsRows::Last).expect("prefill");
    let mut out = Vec::new();
    for _ in 0..n {
        let t = ouro_common::sampling::argmax(logits.last().expect("a row"));
        out.push(t);
        if stop.contains(&t) {
            break;
        }
        logits = model.forward_causal(cache, &[t], LogitsRows::Last).expect("step");
    }
    out
}

/// Largest absolute difference between two logit rows.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
pub mod cloud;
pub mod edge;
pub mod link;
