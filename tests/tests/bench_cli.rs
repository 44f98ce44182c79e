//! `ouro-bench run` and `sweep` end to end on SmolLM2 (drafting for itself,
//! so speculation is exact and fast): every mode through the emulated link,
//! a results.json with every figure, the report and the plots.

use std::path::{Path, PathBuf};
use std::process::Command;

use ouro_tests::cloud::bin_path;
use serde_json::Value;

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ouro-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn bench(args: &[&str], out: &Path) -> Value {
    let smol = ouro_tests::model_path("smollm2-135m");
    let questions = ouro_tests::shared_data().join("spec_bench/question.jsonl");
    let o = Command::new(bin_path("ouro-bench"))
        .args(args)
        .arg("--drafter")
        .arg(&smol)
        .arg("--target")
        .arg(&smol)
        .arg("--questions")
        .arg(&questions)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let json = std::fs::read_to_string(out.join("results.json")).unwrap();
    serde_json::from_str(&json).unwrap()
}

fn overall<'a>(results: &'a Value, mode: &str, rtt: f64) -> &'a Value {
    results["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["mode"] == mode && r["category"] == "all" && r["rtt_ms"].as_f64() == Some(rtt))
        .unwrap_or_else(|| panic!("no overall row for {mode} at {rtt} ms"))
}

#[test]
fn run_compares_every_mode_through_the_emulated_link() {
    let out = out_dir("run");
    // `-wait`: a cloud that runs on between rounds spends a pass a token it
    // decodes alone, so only modes without it must need fewer passes than
    // tokens (on a fast target over this link the gap is worth filling).
    let modes = "cloud-only,edge-only,sd-chain-wait,ouroboros,ouroboros-wait,ouroboros-quic-wait,ouroboros-nopipe-wait";
    let r = bench(
        &["run", "--prompts", "3", "--max-tokens", "24", "--link", "delay=5ms,jitter=1ms", "--modes", modes],
        &out,
    );
    for mode in modes.split(',') {
        let row = overall(&r, mode, 10.0);
        let f = &row["figures"];
        assert_eq!(f["prompts"], 3, "{mode}");
        assert!(f["tokens"].as_u64().unwrap() > 0, "{mode}");
        assert_eq!(f["mismatches"], 0, "{mode}: {f}");
        assert!(f["tokens_per_s"].as_f64().unwrap() > 0.0, "{mode}");
        assert!(row["vs_baseline"]["tokens_per_s"].as_f64().is_some(), "{mode}: no ratio");
        if mode.starts_with("sd-chain") || mode.starts_with("ouroboros") {
            // Speculation commits several tokens per verify pass.
            assert!(f["mean_accepted_per_round"].as_f64().unwrap() > 1.0, "{mode}: {f}");
        }
        if mode.ends_with("-wait") {
            assert!(f["target_passes_per_token"].as_f64().unwrap() < 1.0, "{mode}: {f}");
        }
        if mode != "edge-only" {
            assert!(f["cloud_cpu_s_per_token"].as_f64().unwrap() > 0.0, "{mode}: {f}");
            assert!(f["wire_bytes_per_token"].as_f64().unwrap() > 0.0, "{mode}: {f}");
        }
    }
    // Every sample's text was checked against cloud-only's.
    for g in r["groups"].as_array().unwrap() {
        let speculative = g["mode"] != "cloud-only" && g["mode"] != "edge-only";
        for s in g["samples"].as_array().unwrap() {
            assert_eq!(s["matches_baseline"].as_bool(), speculative.then_some(true), "{}", g["mode"]);
        }
    }
    let env = &r["environment"];
    assert_eq!(env["edge_cores"], serde_json::json!([0]));
    assert_eq!(env["target"]["sha256"].as_str().map(str::len), Some(64));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for mode in modes.split(',') {
        assert!(report.contains(mode), "{mode} missing from report.md");
    }
    for svg in ["tokens_per_s_vs_rtt_c1.svg", "cloud_cpu_per_token.svg", "accepted_per_round.svg"] {
        let s = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(s.starts_with("<svg"), "{svg}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn warm_runs_start_each_prompt_where_the_last_one_ended() {
    // Cold, every prompt's first round uses the default plan; warm, the
    // later prompts start on whatever plan the one before ended with.
    let out = out_dir("warm");
    let r = bench(
        &["run", "--prompts", "3", "--max-tokens", "24", "--link", "lan", "--modes", "cloud-only,ouroboros", "--warm"],
        &out,
    );
    let group = r["groups"].as_array().unwrap().iter().find(|g| g["mode"] == "ouroboros").unwrap();
    let first_plans: Vec<&Value> =
        group["samples"].as_array().unwrap().iter().map(|s| &s["round_log"][0]["plan"]).collect();
    let cold = serde_json::json!({"trunk_len": 4, "branches": 0, "branch_len": 0});
    assert_eq!(first_plans[0], &cold, "the first prompt starts cold");
    assert!(first_plans[1..].iter().any(|p| *p != &cold), "no prompt started warm: {first_plans:?}");
    assert_eq!(overall(&r, "ouroboros", 2.0)["figures"]["mismatches"], 0);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn over_a_long_round_trip_rounds_go_out_ahead_and_stack() {
    // 300 ms of round trip against a few ms of drafting and verifying (a
    // margin wide enough for a busy machine: how deep bets stack depends on
    // how much drafting fits in a flight): the edge sends each round drafted
    // ahead at once and stacks bets while a verdict travels, over both
    // transports, and the text stays the cloud's. With the cloud running on
    // between rounds (`-wait` keeps it from it), rounds are walked along
    // what it decoded alone, and the text is the cloud's too.
    let out = out_dir("ahead");
    let modes = "cloud-only,ouroboros-wait,ouroboros-quic-wait,ouroboros,ouroboros-quic";
    let r = bench(&["run", "--prompts", "2", "--max-tokens", "32", "--link", "delay=150ms", "--modes", modes], &out);
    for mode in ["ouroboros", "ouroboros-quic"] {
        assert_eq!(overall(&r, mode, 300.0)["figures"]["mismatches"], 0, "{mode}");
        let group = r["groups"].as_array().unwrap().iter().find(|g| g["mode"] == mode).unwrap();
        let rounds: Vec<&Value> =
            group["samples"].as_array().unwrap().iter().flat_map(|s| s["round_log"].as_array().unwrap()).collect();
        let walked: u64 = rounds.iter().map(|r| r["walked"].as_u64().unwrap() + r["ran_on"].as_u64().unwrap()).sum();
        assert!(walked > 0, "{mode}: the cloud never ran on");
    }
    for mode in ["ouroboros-wait", "ouroboros-quic-wait"] {
        assert_eq!(overall(&r, mode, 300.0)["figures"]["mismatches"], 0, "{mode}");
        let group = r["groups"].as_array().unwrap().iter().find(|g| g["mode"] == mode).unwrap();
        let rounds: Vec<&Value> =
            group["samples"].as_array().unwrap().iter().flat_map(|s| s["round_log"].as_array().unwrap()).collect();
        let sent_ahead = rounds.iter().filter(|r| r["sent_ahead"] == true).count();
        let deepest = rounds.iter().filter_map(|r| r["bets"].as_u64()).max().unwrap_or(0);
        assert!(sent_ahead > 0, "{mode}: no round went out ahead");
        assert!(deepest >= 2, "{mode}: bets never stacked (at most {deepest})");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn sweep_runs_each_rtt_and_two_clients_at_once() {
    let out = out_dir("sweep");
    let r = bench(
        &[
            "sweep",
            "--rtt",
            "0,30",
            "--prompts",
            "2",
            "--max-tokens",
            "16",
            "--concurrency",
            "2",
            "--modes",
            "cloud-only,ouroboros",
        ],
        &out,
    );
    for rtt in [0.0, 30.0] {
        for mode in ["cloud-only", "ouroboros"] {
            let row = overall(&r, mode, rtt);
            assert_eq!(row["concurrency"], 2);
            assert_eq!(row["figures"]["prompts"], 2);
            assert_eq!(row["figures"]["mismatches"], 0);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
