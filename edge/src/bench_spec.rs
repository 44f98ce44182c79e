//! `ouro-edge bench-spec`: the in-process speculative engine on Spec-Bench.
//!
//! Every mode runs the same prompts in the same process, and the speed of
//! each is reported as a ratio to target-only decoding measured in the same
//! run. Under greedy decoding every mode's text is compared with
//! target-only's; a mismatch is printed and fails the run.
//!
//! The drafter drafts over its restricted vocabulary (`--draft-vocab`,
//! FR-Spec) when it has one; `--compare-full-vocab` runs every mode a second
//! time over every id (`MODE/full`), on the same weights in the same run.
//! It reads the last `--draft-window` tokens of each prompt;
//! `--compare-draft-window` runs every mode again with the drafter reading
//! all of it (`MODE/whole`).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ouro_common::chat::Message;
use ouro_common::draft::PhrasePool;
use ouro_common::engine::DEFAULT_DRAFT_WINDOW;
use ouro_common::generate::{generate, GenerateConfig};
use ouro_common::model::gguf::LoadOptions;
use ouro_common::model::{CausalLm, FullVocab};
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::strategy::{self, DraftStrategy};
use ouro_common::spec::{PredictionError, RoundLog, SpecEngine};
use ouro_config::vocab::DraftVocabArgs;

use crate::local::{threads, LoadLocal, LocalModel};

/// The models and the Spec-Bench prompts a benchmark runs them on.
#[derive(Args)]
pub struct Workload {
    /// Drafter model (pinned name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-0.5b")]
    pub drafter: String,
    /// Verifier model (pinned name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-1.5b")]
    pub target: String,
    /// Spec-Bench questions (JSONL with `category` and `turns`).
    #[arg(long, default_value = "../shared/data/spec_bench/question.jsonl")]
    pub questions: PathBuf,
    /// Prompts per category (MT-bench's eight sub-categories count as one).
    #[arg(long, default_value_t = 5)]
    pub per_category: usize,
    /// Skip the first N prompts of each category (to resume an interrupted run).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// New tokens per prompt.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Only these categories (default: all six).
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
}

#[derive(Args)]
pub struct BenchSpecArgs {
    #[command(flatten)]
    pub workload: Workload,
    /// Modes to compare with target-only: draft strategies by name (chainN
    /// for a fixed γ = N, heuristic, ouroboros, ouroboros-compute, pool, hybrid;
    /// `-nocopy` after the last four turns their copies of earlier text off).
    #[arg(long, value_delimiter = ',', default_value = "chain4,chain8,heuristic,ouroboros")]
    pub modes: Vec<String>,
    /// Also write every generated text as token ids, a JSON line per prompt
    /// and mode (`{"mode","category","prompt","tokens"}`), so that two
    /// builds' outputs can be compared byte for byte.
    #[arg(long)]
    pub tokens_out: Option<PathBuf>,
    /// Also write every round as a JSON line (`{"mode","category","prompt",
    /// "round",...}`): the plan, what the controller predicted of it (accepted
    /// tokens, drafting, verification, round trip, hidden drafting) and what
    /// happened (accepted tokens, times, wall time since the last round).
    #[arg(long)]
    pub round_log: Option<PathBuf>,
    #[command(flatten)]
    pub vocab: DraftVocabArgs,
    /// Also run every mode with the drafter over every id (`MODE/full`), to
    /// compare with its restricted vocabulary in the same run.
    #[arg(long)]
    pub compare_full_vocab: bool,
    /// The drafter reads at most this many of each prompt's last tokens (0:
    /// all of it); verification always covers the whole prompt.
    #[arg(long, default_value_t = DEFAULT_DRAFT_WINDOW)]
    pub draft_window: usize,
    /// Also run every mode with the drafter reading the whole prompt
    /// (`MODE/whole`), to compare with `--draft-window` in the same run.
    #[arg(long)]
    pub compare_draft_window: bool,
}

/// Spec-Bench's six categories: MT-bench's sub-categories are one.
fn category(raw: &str) -> &str {
    match raw {
        "translation" | "summarization" | "qa" | "math_reasoning" | "rag" => raw,
        _ => "mt_bench",
    }
}

/// Tokens after the first reply (`first`: when it came and the tokens it
/// brought) and the seconds from it to now.
fn after_first(first: Option<(Instant, usize)>, tokens: usize) -> (usize, f64) {
    first.map_or((0, 0.0), |(at, n)| (tokens - n, at.elapsed().as_secs_f64()))
}

/// Spec-Bench's first turns, rendered with the target's chat template and
/// tokenized, `w.per_category` per category after skipping `w.skip`.
pub(crate) fn spec_bench_prompts(w: &Workload, target: &LocalModel) -> anyhow::Result<BTreeMap<String, Vec<Vec<u32>>>> {
    let text = std::fs::read_to_string(&w.questions).with_context(|| format!("reading {}", w.questions.display()))?;
    let mut per_cat: BTreeMap<String, Vec<Vec<u32>>> = BTreeMap::new();
    let mut seen_per_cat: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let q: serde_json::Value = serde_json::from_str(line)?;
        let cat = category(q["category"].as_str().unwrap_or("")).to_string();
        if !w.categories.is_empty() && !w.categories.contains(&cat) {
            continue;
        }
        let seen = seen_per_cat.entry(cat.clone()).or_insert(0usize);
        *seen += 1;
        if *seen <= w.skip {
            continue;
        }
        let bucket = per_cat.entry(cat).or_default();
        if bucket.len() < w.per_category {
            let turn = q["turns"][0].as_str().context("a question without a first turn")?;
            let rendered = target.template.render(&[Message::new("user", turn)], true)?;
            bucket.push(target.tokenizer.encode(&rendered, true)?);
        }
    }
    Ok(per_cat)
}

#[derive(Default, Clone)]
struct Totals {
    tokens: usize,
    secs: f64,
    /// Tokens after the first callback and the seconds they took: decoding
    /// without the prompt's prefill (which dominates a long prompt's time on
    /// a CPU and is the same work in every mode).
    decode_tokens: usize,
    decode_secs: f64,
    rounds: usize,
    target_passes: usize,
    mismatches: usize,
    drafter_passes: usize,
    draft_secs: f64,
    accepted: usize,
    drafted: usize,
    pool_rounds: usize,
    copy_rounds: usize,
    copy_accepted: usize,
    siblings: usize,
    siblings_accepted: usize,
    rounds_log: Vec<RoundLog>,
}

/// One column of the comparison: a strategy, the drafter it drafts with,
/// and how much of each prompt that drafter reads.
struct Mode<'a> {
    name: String,
    strategy: Arc<dyn DraftStrategy>,
    drafter: &'a dyn CausalLm,
    window: usize,
}

pub fn run(args: BenchSpecArgs) -> anyhow::Result<()> {
    let w = &args.workload;
    let parsed: Vec<(String, Arc<dyn DraftStrategy>)> =
        args.modes.iter().map(|m| strategy::parse(m).map(|d| (m.clone(), d))).collect::<Result<_, _>>()?;
    let opts = LoadOptions::default();
    let drafter = LocalModel::load_with_vocab(&w.drafter, &opts, Some(&args.vocab))?;
    anyhow::ensure!(
        !args.compare_full_vocab || drafter.model.draft_vocab().is_some(),
        "--compare-full-vocab needs a restricted drafter vocabulary, and --draft-vocab {} gave none",
        args.vocab.draft_vocab
    );
    // Each mode with the drafter as loaded, then (to compare) over every id.
    let full = FullVocab(&drafter.model);
    let window = args.draft_window;
    let loaded = &drafter.model as &dyn CausalLm;
    let mode = |name: String, strategy: &Arc<dyn DraftStrategy>, drafter, window| Mode {
        name,
        strategy: strategy.clone(),
        drafter,
        window,
    };
    let mut modes: Vec<Mode> = parsed.iter().map(|(n, d)| mode(n.clone(), d, loaded, window)).collect();
    if args.compare_full_vocab {
        modes.extend(parsed.iter().map(|(n, d)| mode(format!("{n}/full"), d, &full, window)));
    }
    if args.compare_draft_window {
        modes.extend(parsed.iter().map(|(n, d)| mode(format!("{n}/whole"), d, loaded, 0)));
    }
    let target = LocalModel::load(&w.target, &opts)?;
    let (di, ti) = (drafter.tokenizer.info(), target.tokenizer.info());
    anyhow::ensure!(
        di.identity == ti.identity,
        "drafter and target tokenizers differ: {} vs {}",
        di.identity,
        ti.identity
    );
    let per_cat = spec_bench_prompts(w, &target)?;
    let cfg = GenerateConfig {
        max_new_tokens: w.max_tokens,
        sampling: SamplingParams::greedy(),
        stop_ids: ti.stop_ids.clone(),
    };
    let vocab = drafter.model.draft_vocab().map_or("every id".to_string(), |v| format!("{} ids", v.len()));
    println!(
        "drafter {} (drafting over {vocab}) · target {} · {} threads · {} prompts × {} tokens, greedy",
        w.drafter,
        w.target,
        threads(),
        per_cat.values().map(Vec::len).sum::<usize>(),
        w.max_tokens
    );
    let mut tokens_out = match &args.tokens_out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut record = |mode: &str, cat: &str, prompt: usize, tokens: &[u32]| -> std::io::Result<()> {
        use std::io::Write;
        match &mut tokens_out {
            Some(w) => {
                let line = serde_json::json!({"mode": mode, "category": cat, "prompt": prompt, "tokens": tokens});
                writeln!(w, "{line}")
            }
            None => Ok(()),
        }
    };
    let mut round_log = match &args.round_log {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    // results[mode][category]
    let mut results: BTreeMap<String, BTreeMap<String, Totals>> = BTreeMap::new();
    let mut engines = modes
        .iter()
        .map(|m| {
            SpecEngine::new(m.drafter, &target.model, m.strategy.clone())
                .map(|e| SpecEngine { draft_window: m.window, ..e })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Each mode keeps its own pool and what its policy learned across
    // prompts, as one client of the edge daemon would.
    let mut pools: Vec<PhrasePool> = modes.iter().map(|_| PhrasePool::default()).collect();
    // Modes are interleaved prompt by prompt, so a burst of load from another
    // process on this shared machine lands on all of them alike.
    for (cat, prompts) in &per_cat {
        for (i, p) in prompts.iter().enumerate() {
            let i = i + w.skip;
            let mut reference = Vec::new();
            let t = Instant::now();
            let mut first = None;
            let stats = generate(&target.model, p, &cfg, |tok| {
                reference.push(tok);
                first.get_or_insert_with(|| (Instant::now(), reference.len()));
                ControlFlow::Continue(())
            })?;
            let base_secs = t.elapsed().as_secs_f64();
            let decode = after_first(first, reference.len());
            record("target-only", cat, i, &reference)?;
            let mut line = format!("{cat} {i}: target-only {:.2} tok/s", reference.len() as f64 / base_secs);
            let e = results.entry("target-only".into()).or_default().entry(cat.clone()).or_default();
            e.secs += base_secs;
            e.tokens += reference.len();
            (e.decode_tokens, e.decode_secs) = (e.decode_tokens + decode.0, e.decode_secs + decode.1);
            e.rounds += stats.forward_passes - 1;
            e.target_passes += stats.forward_passes - 1;
            for ((Mode { name, .. }, engine), pool) in modes.iter().zip(&mut engines).zip(&mut pools) {
                let mut out = Vec::new();
                let t = Instant::now();
                let mut first = None;
                let (stats, back) = engine.generate(p, &cfg, std::mem::take(pool), |ts| {
                    out.extend_from_slice(ts);
                    first.get_or_insert_with(|| (Instant::now(), out.len()));
                    ControlFlow::Continue(())
                })?;
                let decode = after_first(first, out.len());
                *pool = back;
                // The policy stays warm across prompts too, as in the daemon.
                engine.warm = stats.learned.clone();
                let secs = t.elapsed().as_secs_f64();
                record(name, cat, i, &out)?;
                line +=
                    &format!(", {name} {:.2} tok/s ({:.2}/step)", out.len() as f64 / secs, stats.tokens_per_round());
                let e = results.entry(name.clone()).or_default().entry(cat.clone()).or_default();
                e.secs += secs;
                e.tokens += out.len();
                (e.decode_tokens, e.decode_secs) = (e.decode_tokens + decode.0, e.decode_secs + decode.1);
                e.rounds += stats.rounds;
                // The prefill pass is not a verification; leave it out as for target-only.
                e.target_passes += stats.target_forward_passes - 1;
                // Nor is the drafter's, whose time `draft_secs` does not hold.
                e.drafter_passes += stats.drafter_forward_passes.saturating_sub(1);
                e.draft_secs += stats.draft_secs;
                e.accepted += stats.accepted;
                e.drafted += stats.drafted_nodes;
                e.pool_rounds += stats.pool_rounds;
                e.copy_rounds += stats.copy_rounds;
                e.copy_accepted += stats.copy_accepted;
                e.siblings += stats.siblings;
                e.siblings_accepted += stats.siblings_accepted;
                if let Some(w) = &mut round_log {
                    use std::io::Write;
                    for (r, log) in stats.round_log.iter().enumerate() {
                        let mut line = serde_json::to_value(log)?;
                        line["mode"] = name.as_str().into();
                        line["category"] = cat.as_str().into();
                        line["prompt"] = i.into();
                        line["round"] = r.into();
                        writeln!(w, "{line}")?;
                    }
                }
                e.rounds_log.extend(stats.round_log);
                if out != reference {
                    e.mismatches += 1;
                    eprintln!("MISMATCH: {name} {cat} prompt {i} differs from target-only");
                }
            }
            // Progress, and partial results should a long run be cut short.
            eprintln!("{line}");
        }
    }
    if let Some(mut w) = tokens_out {
        std::io::Write::flush(&mut w)?;
    }
    if let Some(mut w) = round_log {
        std::io::Write::flush(&mut w)?;
    }
    let total = |m: &BTreeMap<String, Totals>| {
        m.values().fold(Totals::default(), |a, t| Totals {
            tokens: a.tokens + t.tokens,
            secs: a.secs + t.secs,
            decode_tokens: a.decode_tokens + t.decode_tokens,
            decode_secs: a.decode_secs + t.decode_secs,
            rounds: a.rounds + t.rounds,
            target_passes: a.target_passes + t.target_passes,
            mismatches: a.mismatches + t.mismatches,
            drafter_passes: a.drafter_passes + t.drafter_passes,
            draft_secs: a.draft_secs + t.draft_secs,
            accepted: a.accepted + t.accepted,
            drafted: a.drafted + t.drafted,
            pool_rounds: a.pool_rounds + t.pool_rounds,
            copy_rounds: a.copy_rounds + t.copy_rounds,
            copy_accepted: a.copy_accepted + t.copy_accepted,
            siblings: a.siblings + t.siblings,
            siblings_accepted: a.siblings_accepted + t.siblings_accepted,
            rounds_log: Vec::new(),
        })
    };
    let base = total(&results["target-only"]);
    let base_tps = base.tokens as f64 / base.secs;
    let base_decode = base.decode_tokens as f64 / base.decode_secs;
    println!("\ntok/s: every token over the whole request; after the first: the tokens after the first reply over the time after it (no prefill)");
    println!(
        "| mode | tokens/verify step | target passes/token | tok/s | vs target-only | after the first | vs target-only | drafter ms/pass | drafted nodes accepted | mismatches |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut names = vec!["target-only".to_string()];
    names.extend(modes.iter().map(|m| m.name.clone()));
    for n in &names {
        let t = total(&results[n]);
        let tps = t.tokens as f64 / t.secs;
        let (draft_ms, accepted) = if t.drafter_passes > 0 {
            let ms = format!("{:.2}", t.draft_secs * 1e3 / t.drafter_passes as f64);
            (ms, format!("{:.1}%", 100.0 * t.accepted as f64 / t.drafted.max(1) as f64))
        } else {
            ("–".into(), "–".into())
        };
        let decode = t.decode_tokens as f64 / t.decode_secs;
        println!(
            "| {n} | {:.2} | {:.3} | {tps:.2} | {:.2}× | {decode:.2} | {:.2}× | {draft_ms} | {accepted} | {} |",
            t.tokens as f64 / t.rounds.max(1) as f64,
            t.target_passes as f64 / t.tokens as f64,
            tps / base_tps,
            decode / base_decode,
            t.mismatches
        );
    }
    println!("\nPer category: tokens per verify step / speed vs target-only / after the first token");
    print!("| mode |");
    for c in per_cat.keys() {
        print!(" {c} |");
    }
    println!();
    println!("|---|{}", "---:|".repeat(per_cat.len()));
    for n in &names {
        print!("| {n} |");
        for c in per_cat.keys() {
            let (t, b) = (&results[n][c], &results["target-only"][c]);
            let ratio = (t.tokens as f64 / t.secs) / (b.tokens as f64 / b.secs);
            let decode = (t.decode_tokens as f64 / t.decode_secs) / (b.decode_tokens as f64 / b.decode_secs);
            print!(" {:.2} / {ratio:.2}× / {decode:.2}× |", t.tokens as f64 / t.rounds.max(1) as f64);
        }
        println!();
    }
    println!("\nThe controller's predictions against its rounds (modes with an adaptive controller):");
    println!(
        "| mode | rounds | pool rounds | copies (tokens accepted) | siblings accepted | accepted: predicted / actual (MAE) | round ms: predicted / actual wall (MAE) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for n in &names {
        let logs = results[n].values().flat_map(|t| &t.rounds_log);
        if let Some(e) = PredictionError::over(logs) {
            let t = total(&results[n]);
            println!(
                "| {n} | {} | {} | {} ({}) | {} of {} | {:.2} / {:.2} ({:.2}) | {:.1} / {:.1} ({:.1}) |",
                e.rounds,
                t.pool_rounds,
                t.copy_rounds,
                t.copy_accepted,
                t.siblings_accepted,
                t.siblings,
                e.accepted_predicted,
                e.accepted_actual,
                e.accepted_mae,
                e.round_ms_predicted,
                e.round_ms_actual,
                e.round_ms_mae
            );
        }
    }
    let mismatches: usize = names.iter().map(|n| total(&results[n]).mismatches).sum();
    anyhow::ensure!(mismatches == 0, "{mismatches} speculative outputs differ from target-only");
    Ok(())
}
