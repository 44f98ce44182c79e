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
