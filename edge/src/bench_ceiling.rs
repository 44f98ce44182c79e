//! `ouro-edge bench-ceiling`: what speculation could gain at most with this
//! drafter on this machine.
//!
//! The verifier writes each Spec-Bench prompt's greedy answer; the drafter
//! then reads that answer (as the engine's drafter reads a prompt, through
//! its restricted vocabulary and draft window) and ranks each token, and the
//! phrase pool and prompt lookup say how far their best phrase at each
//! position runs. With c(k) and a drafter step measured in the same process,
//! `ouro_common::spec::ceiling` turns the traces into the best fixed trees
//! and the oracle ceilings: what no strategy over these sources can beat.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ouro_common::draft::{find_repeat, lookup, PhrasePool, MAX_SUFFIX_MATCH};
use ouro_common::engine::siblings::top2;
use ouro_common::engine::DEFAULT_DRAFT_WINDOW;
use ouro_common::generate::{generate, GenerateConfig};
use ouro_common::model::gguf::LoadOptions;
use ouro_common::model::{AttnMask, CausalLm, Head, Logits, LogitsRows};
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::ceiling::{
    confidence_chain, fixed_trees, oracle, phrase_first, Costs, FixedTree, OracleRun, PhraseFirst, Sources, Trace,
};
use ouro_config::vocab::DraftVocabArgs;

use crate::bench::{cpu_description, pass_times};
use crate::bench_spec::{spec_bench_prompts, Workload};
use crate::local::{threads, LoadLocal, LocalModel};

#[derive(Args)]
pub struct BenchCeilingArgs {
    #[command(flatten)]
    pub workload: Workload,
    #[command(flatten)]
    pub vocab: DraftVocabArgs,
    /// The drafter reads at most this many of each prompt's last tokens (0: all of it).
    #[arg(long, default_value_t = DEFAULT_DRAFT_WINDOW)]
    pub draft_window: usize,
    /// The most nodes a round may send (the oracles' cap and the largest fixed tree).
    #[arg(long, default_value_t = 32)]
    pub max_nodes: usize,
    /// Context length c(k) and the drafter step are measured over.
    #[arg(long, default_value_t = 256)]
    pub context: usize,
    /// Values of k measured for c(k) (linear between them).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,6,8,12,16,24,33")]
    pub ks: Vec<usize>,
    /// Repetitions per k (the median is kept).
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write each prompt's trace as a JSON line (`{"category","prompt",
    /// "answer","ranks","confidence","pool_run","phrases"}`; `phrases[p]` lists, for
    /// each pool continuation then the copy found at position p, the tokens
    /// it matched on and how many it got right), for analyses of your own.
    #[arg(long)]
    pub traces: Option<PathBuf>,
}

/// Fixed-tree sizes printed (the best of them is marked).
const TREE_SIZES: [usize; 11] = [1, 2, 3, 4, 6, 8, 10, 12, 16, 24, 32];

/// Confidence thresholds of the buildable chains.
const THRESHOLDS: [f64; 8] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];

/// Copy lengths the hybrid's rule is tried with.
const COPY_LENS: [usize; 5] = [2, 4, 8, 16, 32];

/// Ranks a fixed tree's nodes may take (first to fourth choice).
const TREE_RANKS: u32 = 4;

/// Continuations of the pool's that count at each position, as many as a
/// round sends (its trunk and branches).
const POOL_PHRASES: usize = 4;

pub fn run(args: BenchCeilingArgs) -> anyhow::Result<()> {
    let w = &args.workload;
    anyhow::ensure!(args.max_nodes >= 1 && args.reps >= 1, "need --max-nodes and --reps of at least 1");
    anyhow::ensure!(args.ks.contains(&1), "--ks must include 1 (c(k) is relative to it)");
    let opts = LoadOptions::default();
    let drafter = LocalModel::load_with_vocab(&w.drafter, &opts, Some(&args.vocab))?;
    let target = LocalModel::load(&w.target, &opts)?;
    let (di, ti) = (drafter.tokenizer.info(), target.tokenizer.info());
    anyhow::ensure!(di.identity == ti.identity, "drafter and target tokenizers differ");
    let per_cat = spec_bench_prompts(w, &target)?;
    let head = if drafter.model.draft_vocab().is_some() { Head::Draft } else { Head::Full };

    // Costs first, on an idle process: c(k) of the verifier, and one drafter
    // step (its head as it drafts) against one verifier step, over the same context.
    let seed =
        target.prompt_ids("Write a Python function that merges two sorted lists, and explain it.", None, false)?;
    let context: Vec<u32> = seed.iter().cycle().take(args.context).copied().collect();
    let mut cache = target.model.new_cache();
    target.model.forward_causal(&mut cache, &context, LogitsRows::None)?;
    let curve = pass_times(&target.model, &mut cache, &seed, &args.ks, args.reps, Head::Full)?;
    drop(cache);
    let mut cache = drafter.model.new_cache();
    drafter.model.forward_causal(&mut cache, &context, LogitsRows::None)?;
    let draft_ms = pass_times(&drafter.model, &mut cache, &seed, &[1], args.reps, head)?[0].1;
    drop(cache);
    let one = curve.iter().find(|p| p.0 == 1).expect("k = 1 is measured").1;
    let points: Vec<(usize, f64)> = curve.iter().map(|&(k, ms, _)| (k, ms / one)).collect();
    let costs = Costs::interpolate(&points, args.max_nodes + 1, draft_ms / one).expect("k = 1 is measured");

    let cfg = GenerateConfig {
        max_new_tokens: w.max_tokens,
        sampling: SamplingParams::greedy(),
        stop_ids: ti.stop_ids.clone(),
    };
    let (mut cats, mut all): (Vec<&str>, Vec<Trace>) = (Vec::new(), Vec::new());
    let mut traces_out = match &args.traces {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    // One pool across prompts, as one client of the daemon keeps it.
    let mut pool = PhrasePool::default();
    for (cat, prompts) in &per_cat {
        for (i, prompt) in prompts.iter().enumerate() {
            let i = i + w.skip;
            let mut answer = Vec::new();
            generate(&target.model, prompt, &cfg, |t| {
                answer.push(t);
                ControlFlow::Continue(())
            })?;
            let (ranks, confidence) = drafter_ranks(&drafter.model, head, prompt, &answer, args.draft_window)?;
            let phrases = pool_phrases(&mut pool, prompt, &answer);
            let pool_run = phrases.iter().map(|p| p.iter().map(|c| c.1).max().unwrap_or(0)).collect();
            // A copy (last, on a match past the pool's) before the pool's first continuation.
            let first_phrase = phrases
                .iter()
                .map(|p| p.iter().rev().find(|c| c.0 > MAX_SUFFIX_MATCH).or(p.first()).copied().unwrap_or((0, 0)))
                .collect();
            eprintln!("{cat} {i}: {} tokens", answer.len());
            if let Some(w) = &mut traces_out {
                use std::io::Write;
                let line = serde_json::json!({
                    "category": cat, "prompt": i, "answer": answer, "ranks": ranks,
                    "confidence": confidence, "pool_run": pool_run, "phrases": phrases,
                });
                writeln!(w, "{line}")?;
            }
            cats.push(cat);
            all.push(Trace { ranks, pool_run, confidence, first_phrase });
        }
    }
    if let Some(mut w) = traces_out {
        std::io::Write::flush(&mut w)?;
    }
    let trees = fixed_trees(&all, args.max_nodes, TREE_RANKS, args.max_nodes);
    let oracles: Vec<(&str, Sources)> = [
        ("drafter chain", 1, false),
        ("drafter tree, top-2 siblings", 2, false),
        ("drafter tree, top-4 siblings", 4, false),
        ("pool and copies alone", 0, true),
        ("drafter chain + pool", 1, true),
        ("top-2 tree + pool", 2, true),
        ("top-4 tree + pool", 4, true),
    ]
    .into_iter()
    .map(|(name, siblings, pool)| (name, Sources { siblings, pool, max_nodes: args.max_nodes }))
    .collect();
    let runs: Vec<(&str, OracleRun)> = oracles.iter().map(|&(n, s)| (n, oracle(&all, s, &costs))).collect();
    let chains: Vec<(f64, OracleRun)> =
        THRESHOLDS.iter().map(|&th| (th, confidence_chain(&all, th, args.max_nodes, &costs))).collect();
    // The hybrid's rule at its best threshold and phrase length.
    let hybrid = THRESHOLDS
        .iter()
        .flat_map(|&th| (2..=MAX_SUFFIX_MATCH).map(move |m| (th, m)))
        .flat_map(|(th, m)| (1..=8).flat_map(move |len| COPY_LENS.map(|copy_len| (th, m, len, copy_len))))
        .map(|(th, min_match, len, copy_len)| {
            let rule = PhraseFirst { min_match, len, copy_len };
            (th, rule, phrase_first(&all, th, Some(rule), args.max_nodes, &costs))
        })
        .max_by(|a, b| a.2.one_process(&costs).total_cmp(&b.2.one_process(&costs)));
    let (rows, batch_ceiling) = costs.batch_bound(8);
    let tokens: usize = all.iter().map(Trace::len).sum();
    let share = |f: &dyn Fn(&Trace, usize) -> bool| {
        all.iter().map(|t| (0..t.len()).filter(|&p| f(t, p)).count()).sum::<usize>() as f64 / tokens.max(1) as f64
    };
    let rank_below = |k: u32| share(&|t, p| t.ranks[p].is_some_and(|r| r < k));
    let pooled = share(&|t, p| t.pool_run[p] > 0);

    if args.json {
        let tree_json = |t: &FixedTree| {
            serde_json::json!({
                "nodes": t.nodes, "accepted": t.accepted, "depth": t.depth,
                "verify_per_token": t.verify_per_token(&costs), "one_process": t.one_process(&costs),
                "ahead_hit": t.ahead_hit, "drafting_ahead": t.drafting_ahead(&costs),
            })
        };
        let v = serde_json::json!({
            "cpu": cpu_description(),
            "threads": threads(),
            "drafter": w.drafter,
            "target": w.target,
            "prompts": all.len(),
            "tokens": tokens,
            "costs": {"verify": costs.verify, "draft_step": costs.draft_step, "context": args.context},
            "drafter_rank": {"first": rank_below(1), "top2": rank_below(2), "top4": rank_below(4)},
            "pool_covers": pooled,
            "fixed_trees": trees.iter().skip(1).map(tree_json).collect::<Vec<_>>(),
            "eight_sessions_ceiling": {"rows": rows, "vs_batched": batch_ceiling},
            "confidence_chains": chains.iter().map(|(th, r)| {
                figures(r, &costs, serde_json::json!({"threshold": th}))
            }).collect::<Vec<_>>(),
            "phrase_first": hybrid.as_ref().map(|(th, rule, r)| figures(r, &costs, serde_json::json!({
                "threshold": th, "min_match": rule.min_match, "len": rule.len, "copy_len": rule.copy_len,
            }))),
            "oracles": runs.iter().map(|(n, r)| figures(r, &costs, serde_json::json!({"sources": n}))).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "drafter {} · target {} · {} threads · {} prompts, {tokens} tokens, greedy · {}",
        w.drafter,
        w.target,
        threads(),
        all.len(),
        cpu_description()
    );
    let shown: Vec<String> = points.iter().map(|(k, c)| format!("c({k}) {c:.2}")).collect();
    println!(
        "costs over a {}-token context, in verifier steps ({one:.1} ms): {}; drafter step {:.2} ({draft_ms:.1} ms)",
        args.context,
        shown.join(", "),
        costs.draft_step
    );
    println!(
        "the verifier's token was the drafter's first choice {:.1}%, in its top 2 {:.1}%, top 4 {:.1}%; a pool phrase or copy began with it {:.1}%",
        100.0 * rank_below(1),
        100.0 * rank_below(2),
        100.0 * rank_below(4),
        100.0 * pooled
    );
    println!("\nBest fixed trees (drafter only; the same tree every round; its speed if drafting were free is 1 / verifier steps per token):");
    println!("| nodes | depth | accepted/round | tokens/pass | passes/token | verifier steps/token | one process | verdict guessed | separate cores, drafting ahead |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let best = trees.iter().skip(1).max_by(|a, b| a.one_process(&costs).total_cmp(&b.one_process(&costs)));
    for t in trees.iter().filter(|t| TREE_SIZES.contains(&t.nodes)) {
        let mark = if best.is_some_and(|b| b.nodes == t.nodes) { " (best)" } else { "" };
        println!(
            "| {}{mark} | {} | {:.2} | {:.2} | {:.3} | {:.3} | {:.2}× | {:.0}% | {:.2}× |",
            t.nodes,
            t.depth,
            t.accepted,
            t.tokens(),
            1.0 / t.tokens(),
            t.verify_per_token(&costs),
            t.one_process(&costs),
            100.0 * t.ahead_hit,
            t.drafting_ahead(&costs)
        );
    }
    println!(
        "\nOracle ceilings (every round sends exactly the verifier's next tokens, up to {} nodes, as far as its sources hold them):",
        args.max_nodes
    );
    println!("| sources | tokens/pass | passes/token | verifier steps/token | one process |");
    println!("|---|---:|---:|---:|---:|");
    for (n, r) in &runs {
        print_row(n, r, &costs);
    }
    println!("\nChains of the drafter's first choices while the product of its confidences stays above a threshold (EAGLE-2's rule; buildable), and the best of them with the pool's phrase first where it matched (the hybrid's rule):");
    println!("| threshold | tokens/pass | passes/token | verifier steps/token | one process |");
    println!("|---:|---:|---:|---:|---:|");
    for (th, r) in &chains {
        print_row(&format!("{th:.2}"), r, &costs);
    }
    if let Some((th, rule, r)) = &hybrid {
        let label = format!(
            "pool phrase first on a {}+ token match ({} tokens, copies {}), else {th:.2}; the best setting on these traces",
            rule.min_match, rule.len, rule.copy_len
        );
        print_row(&label, r, &costs);
    }
    println!(
        "\nEight sessions on one verifier: batched decoding makes 8 tokens per c(8) = {:.2} steps; speculation with every node accepted makes at most {batch_ceiling:.2}× that (at {rows} rows a pass)",
        costs.verify(8)
    );
    println!("\nPer category, top-4 tree + pool oracle: tokens/pass, verifier steps/token");
    for cat in per_cat.keys() {
        let these: Vec<Trace> = all.iter().zip(&cats).filter(|(_, c)| *c == cat).map(|(t, _)| t.clone()).collect();
        let r = oracle(&these, oracles[6].1, &costs);
        println!("  {cat}: {:.2}, {:.3}", 1.0 / r.passes_per_token(), r.verify_per_token());
    }
    Ok(())
}

/// A run's figures as a JSON object, after the fields of `about`.
fn figures(r: &OracleRun, costs: &Costs, mut about: serde_json::Value) -> serde_json::Value {
    about["tokens_per_pass"] = (1.0 / r.passes_per_token()).into();
    about["passes_per_token"] = r.passes_per_token().into();
    about["verify_per_token"] = r.verify_per_token().into();
    about["one_process"] = r.one_process(costs).into();
    about
}

/// A run's row of a table headed `| … | tokens/pass | passes/token | verifier steps/token | one process |`.
fn print_row(label: &str, r: &OracleRun, costs: &Costs) {
    println!(
        "| {label} | {:.2} | {:.3} | {:.3} | {:.2}× |",
        1.0 / r.passes_per_token(),
        r.passes_per_token(),
        r.verify_per_token(),
        r.one_process(costs)
    );
}

/// The drafter's rank of each answer token (0: its first choice) and its
/// confidence in its first choice there, reading the prompt's last `window`
/// tokens and the answer before it.
fn drafter_ranks(
    model: &dyn CausalLm,
    head: Head,
    prompt: &[u32],
    answer: &[u32],
    window: usize,
) -> anyhow::Result<(Vec<Option<u32>>, Vec<f32>)> {
    if answer.is_empty() || prompt.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let base = if window == 0 { 0 } else { prompt.len().saturating_sub(window) };
    let mut cache = model.new_cache();
    model.forward_causal(&mut cache, &prompt[base..prompt.len() - 1], LogitsRows::None)?;
    // Row i reads everything before answer token i.
    let mut tokens = vec![prompt[prompt.len() - 1]];
    tokens.extend_from_slice(&answer[..answer.len() - 1]);
    let positions: Vec<usize> = (cache.len()..cache.len() + tokens.len()).collect();
    let mask = AttnMask::causal(tokens.len());
    let logits = model.forward_head(&mut cache, &tokens, &positions, &mask, LogitsRows::All, head)?;
    let ranks = answer.iter().enumerate().map(|(i, &t)| rank_of(&logits, i, t)).collect();
    // The greedy column's softmax probability, as the drafter's sibling rule sees it.
    let confidence = (0..answer.len()).map(|i| top2(logits.row(i)).map_or(1.0, |(p, _)| p)).collect();
    Ok((ranks, confidence))
}

/// Where `token` ranks in row `row` of `logits` (ties go to the lower
/// column, as argmax breaks them); `None` if the row has no column for it.
fn rank_of(logits: &Logits, row: usize, token: u32) -> Option<u32> {
    let r = logits.row(row);
    let col = match &logits.subset {
        Some(s) => s.index_of(token)?,
        None => Some(token as usize).filter(|&c| c < r.len())?,
    };
    let v = r[col];
    Some(r.iter().enumerate().filter(|&(c, &x)| x > v || (x == v && c < col)).count() as u32)
}

/// At each answer position, the pool's continuations (its first
/// [`POOL_PHRASES`]) and then the copy of earlier text, if any, found on the
/// true text before it: each as (tokens matched on, answer tokens it gets
/// right from there). The pool learns the answer as it goes, as a
/// strategy's pool learns what it commits.
fn pool_phrases(pool: &mut PhrasePool, prompt: &[u32], answer: &[u32]) -> Vec<Vec<(usize, usize)>> {
    pool.add_context(prompt);
    let mut text = prompt.to_vec();
    let mut out = Vec::with_capacity(answer.len());
    for (p, &token) in answer.iter().enumerate() {
        let rest = &answer[p..];
        let agree = |phrase: &[u32]| phrase.iter().zip(rest).take_while(|(a, b)| a == b).count();
        let tail = &text[text.len().saturating_sub(MAX_SUFFIX_MATCH)..];
        let mut found: Vec<(usize, usize)> =
            pool.continuations_with_match(tail, POOL_PHRASES).into_iter().map(|(m, c)| (m, agree(c))).collect();
        if let Some(r) = find_repeat(&text, lookup::MIN_MATCH) {
            found.push((r.matched, agree(&text[r.start..])));
        }
        out.push(found);
        pool.extend_context(&[token]);
        text.push(token);
    }
    out
}
