//! A short soak of both servers (issue 15): `ouro-bench soak` run as a
//! library for 20 s each, with fewer clients than the full run and with the
//! servers' limits lowered so that refusals happen. Every answer must carry
//! the reference text, every admitted request must finish, every refusal
//! must be the right one and come at once, and the servers' memory must not
//! grow past a generous bound after warm-up. No assertion on throughput or
//! latency of admitted requests: this machine is shared.

use std::path::Path;
use std::sync::Mutex;

use ouro_bench::soak::{self, SoakArgs, SoakReport};
use ouro_tests::{model_path, shared_data};

/// The two scenarios each pin a server and a load generator to the
/// machine's cores; run side by side they would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// "At once" for a refusal, generously: a refusal that waited for a slot
/// would wait for a whole generation (seconds here); a real one takes
/// milliseconds. Twice the tool's default, for a loaded test machine.
const REFUSAL_MAX_MS: &str = "2000";
/// RSS growth after warm-up allowed, MiB (the tool's default).
const RSS_GROWTH_MB: f64 = 64.0;

fn soak(scenario: &str, flags: &[&str]) -> (SoakReport, std::path::PathBuf) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::env::temp_dir().join(format!("ouro-soak-test-{}-{scenario}", std::process::id()));
    let model = model_path("smollm2-135m").display().to_string();
    let questions = shared_data().join("spec_bench/question.jsonl").display().to_string();
    let out_flag = out.display().to_string();
    let mut all = vec!["--scenario", scenario, "--duration", "20", "--prompts", "8", "--model", &model];
    all.extend(["--questions", &questions, "--out", &out_flag, "--refusal-max-ms", REFUSAL_MAX_MS]);
    all.extend(["--rss-growth-mb", "64"]);
    all.extend(flags);
    let args = SoakArgs::from_flags(&all).expect("soak flags");
    let report = soak::run(&args).unwrap_or_else(|e| panic!("the {scenario} soak did not run: {e}"));
    (report, out)
}

fn check(report: &SoakReport, out: &Path, refusal_code: &str, server: &str) {
    let l = &report.load;
    let md = report.markdown();
    assert!(l.finished > 0, "nothing finished\n{md}");
    assert_eq!(l.mismatches, 0, "texts differ from the reference: {:?}\n{md}", l.mismatch_examples);
    // Admitted requests all finished: no timeout, error or wrong answer.
    assert!(l.failures.is_empty(), "{:?}: {:?}\n{md}", l.failures, l.failure_examples);
    // The limits were set below the load, so there are refusals, all of the right kind and all at once.
    assert!(l.refused > 0, "no refusal: the load never reached the server's limits\n{md}");
    assert_eq!(l.refusals.keys().collect::<Vec<_>>(), [refusal_code], "{md}");
    assert!(l.refusals.values().all(|r| r.late == 0), "late refusals\n{md}");
    let rss = report.rss.iter().find(|r| r.process == server).unwrap_or_else(|| panic!("no RSS of {server}\n{md}"));
    assert!(!rss.exited, "{server} exited\n{md}");
    assert!(rss.samples >= 10, "{} RSS samples\n{md}", rss.samples);
    assert!(rss.growth_mib <= RSS_GROWTH_MB, "{server} grew {:.1} MiB after warm-up\n{md}", rss.growth_mib);
    assert!(report.passed, "{:?}\n{md}", report.failures);
    // What the run leaves behind.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).expect("results.json")).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["load"]["mismatches"], 0);
    let csv = std::fs::read_to_string(out.join("rss.csv")).expect("rss.csv");
    assert!(csv.lines().count() > 10 && csv.starts_with("t_s,process,rss_mib,cpu_s"), "{csv}");
    assert!(std::fs::read_to_string(out.join("report.md")).expect("report.md").contains("Verdict: PASS"));
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn cloud_sessions_under_load_match_generate_and_refusals_come_at_once() {
    // 16 sessions and 4 more against a cloud that holds 16: the extra ones
    // (whoever they are at the time) are refused with RESOURCE_EXHAUSTED.
    let flags = ["--sessions", "16", "--extra-sessions", "4", "--cloud-max-sessions", "16"];
    let (report, out) = soak("cloud", &flags);
    check(&report, &out, "RESOURCE_EXHAUSTED", "ouro-cloud");
}

#[test]
fn edge_chat_completions_under_load_match_a_solo_request_and_refusals_are_429() {
    // 48 clients against 4 running and 16 queued: the rest get 429 with Retry-After.
    let (report, out) = soak("edge", &["--clients", "48", "--edge-max-queue", "16"]);
    check(&report, &out, "429", "ouro-edge");
}
