//! `ouro-edge` as a user runs it.

use std::process::Command;

fn edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ouro-edge"))
}

#[test]
fn generate_streams_text_and_a_summary() {
    let out = edge()
        .args(["--threads", "2", "generate", "--model", "smollm2-135m", "--max-tokens", "12", "What is 2+2?"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // SmolLM2's greedy answer: the same on every kernel path and thread
    // count (the runtime is batch-invariant), so any change to it is a bug.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "The answer to this classic math problem is 4.\n");
    assert!(stderr.contains("37 prompt tokens, 12 generated") && stderr.contains("tok/s"), "{stderr}");
}

#[test]
fn unknown_model_is_a_clear_error() {
    let out = edge().args(["generate", "--model", "no-such-model", "hi"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a pinned model name") && stderr.contains("smollm2-135m"), "{stderr}");
}

#[test]
fn bad_sampling_parameters_are_refused() {
    let out = edge().args(["generate", "--temperature=-1", "hi"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("temperature"));
}

#[test]
fn a_draft_vocabulary_that_does_not_fit_the_drafter_is_refused() {
    let qwen = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/vocab/qwen2.5-frspec-32k.txt");
    let bad = std::env::temp_dir().join(format!("ouro-cli-bad-vocab-{}.txt", std::process::id()));
    std::fs::write(&bad, "not a ranking\n").unwrap();
    let bad = bad.to_str().unwrap().to_string();
    // The drafter only loads a restricted head when it drafts for a cloud;
    // the ranking is refused at load, before any connection.
    let cloud = ["--cloud", "127.0.0.1:9", "--insecure-dev"];
    for (vocab, size, expect) in [
        (qwen, None, "tokenizer"),
        (bad.as_str(), None, "line 1: expected `ouro-draft-vocab 1`"),
        ("/nonexistent/ranking.txt", None, "/nonexistent/ranking.txt"),
        ("auto", Some("0"), "at least one id"),
    ] {
        let mut cmd = edge();
        cmd.args(["generate", "--model", "smollm2-135m", "--draft-vocab", vocab]).args(cloud);
        if let Some(n) = size {
            cmd.args(["--draft-vocab-size", n]);
        }
        let out = cmd.arg("hi").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{vocab}: {stderr}");
        assert!(stderr.contains(expect) && !stderr.contains("panicked"), "{vocab}: {stderr}");
    }
    let _ = std::fs::remove_file(&bad);
}
