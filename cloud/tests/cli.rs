//! `ouro-cloud info`: the handshake description, from the real model files.

use std::process::Command;

fn info(model: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ouro-cloud")).args(["info", "--model", model]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn qwen_pair_shares_a_tokenizer_and_smollm2_does_not() {
    let (small, large, other) = (info("qwen2.5-coder-0.5b"), info("qwen2.5-coder-1.5b"), info("smollm2-135m"));
    assert_eq!(small["tokenizer_hash"], large["tokenizer_hash"]);
    assert_ne!(small["tokenizer_hash"], other["tokenizer_hash"]);
    assert_eq!(large["architecture"], "qwen2");
    assert_eq!(large["vocab_size"], 151936);
    assert_eq!(other["architecture"], "llama");
}
