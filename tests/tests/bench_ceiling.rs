//! `ouro-edge bench-ceiling` end to end on SmolLM2 drafting for itself: a
//! model ranks its own greedy tokens first, so every figure the ceilings are
//! built from is known exactly.

use std::process::Command;

use ouro_tests::cloud::bin_path;
use serde_json::Value;

#[test]
fn a_model_drafting_for_itself_has_every_token_as_its_first_choice() {
    let smol = ouro_tests::model_path("smollm2-135m");
    let questions = ouro_tests::shared_data().join("spec_bench/question.jsonl");
    let traces = std::env::temp_dir().join(format!("ouro-ceiling-{}.jsonl", std::process::id()));
    let o = Command::new(bin_path("ouro-edge"))
        .args(["--threads", "1", "bench-ceiling", "--drafter"])
        .arg(&smol)
        .arg("--target")
        .arg(&smol)
        .arg("--questions")
        .arg(&questions)
        .args(["--categories", "qa,summarization", "--per-category", "1", "--max-tokens", "24"])
        // The whole prompt, as the verifier reads it: the drafter's ranks are then its own greedy choices.
        .args(["--draft-window", "0", "--max-nodes", "4", "--ks", "1,2,5", "--reps", "1", "--json", "--traces"])
        .arg(&traces)
        .output()
        .expect("ouro-edge runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(r["prompts"], 2);
    let tokens = r["tokens"].as_u64().unwrap();
    assert!(tokens > 2, "{tokens} tokens");
    assert_eq!(r["drafter_rank"]["first"], 1.0, "{}", r["drafter_rank"]);
    // Every start accepts its first node; a tree of one node commits two tokens a pass.
    let one = &r["fixed_trees"][0];
    assert_eq!((one["nodes"].as_u64(), one["accepted"].as_f64()), (Some(1), Some(1.0)));
    let chain = r["oracles"].as_array().unwrap().iter().find(|o| o["sources"] == "drafter chain").unwrap();
    let tpp = chain["tokens_per_pass"].as_f64().unwrap();
    // c(k) was measured and interpolated up to max-nodes + 1 rows.
    let verify: Vec<f64> = r["costs"]["verify"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(verify.len(), 5);
    assert_eq!(verify[0], 1.0);
    let lines: Vec<Value> =
        std::fs::read_to_string(&traces).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let lens: Vec<usize> = lines.iter().map(|l| l["answer"].as_array().unwrap().len()).collect();
    assert_eq!(lens.iter().sum::<usize>() as u64, tokens);
    // The oracle chain sends its four nodes and the verifier adds one: five
    // tokens a round, but the last round of each prompt.
    let rounds: usize = lens.iter().map(|n| n.div_ceil(5)).sum();
    assert!((tpp - tokens as f64 / rounds as f64).abs() < 1e-9, "{tpp} vs {tokens}/{rounds}");
    for l in &lines {
        let n = l["answer"].as_array().unwrap().len();
        assert!(l["ranks"].as_array().unwrap().iter().all(|r| r == 0));
        let conf = l["confidence"].as_array().unwrap();
        assert_eq!(conf.len(), n);
        assert!(conf.iter().all(|c| c.as_f64().is_some_and(|c| c > 0.0 && c <= 1.0)));
        assert_eq!(l["phrases"].as_array().unwrap().len(), n);
    }
    let _ = std::fs::remove_file(&traces);
}
