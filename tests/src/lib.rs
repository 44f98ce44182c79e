//! Shared helpers for the end-to-end tests: where the pinned models and the
//! shared reference data live.
//!
//! The models are fetched by `deploy/fetch-models.sh` (the README's test
//! command runs it first); a missing file is a setup error, reported as such.

use std::path::PathBuf;

/// `$OURO_MODEL_DIR`, default `~/.cache/ouro/models`, as `deploy/fetch-models.sh` uses.
pub fn model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OURO_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/ouro/models")
}

/// Path of a pinned model by its short name (`smollm2-135m`,
/// `qwen2.5-coder-0.5b`, `qwen2.5-coder-1.5b`).
pub fn model_path(name: &str) -> PathBuf {
    let p = model_dir().join(format!("{name}.gguf"));
    assert!(
        p.is_file(),
        "model {name} is missing at {}: run `deploy/fetch-models.sh {name}` first",
        p.display()
    );
    p
}

/// Whether a pinned model is present, for tests that run only where the
/// larger models have been fetched (the Qwen pair is fetched locally, not in CI).
pub fn has_model(name: &str) -> bool {
    model_dir().join(format!("{name}.gguf")).is_file()
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
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}
