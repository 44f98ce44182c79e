//! `ouro-bench cloud`: what a verified token costs the cloud.
//!
//! The cloud runs as its own process pinned to its own cores; its CPU time
//! comes from the kernel (`/proc/<pid>/stat`), so everything it spends
//! (batching, gRPC, the model) is counted. Each concurrency level runs
//! `Generate` (target-only decoding, itself batched across sessions) and
//! speculative sessions over the same prompts, and every speculative text
//! is checked against `Generate`'s.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use ouro_bench::process::{pin_self, BenchCloud};
use ouro_bench::replay::replay;
use ouro_edge::link::{self, SessionStream, TransportKind};
use ouro_proto::v1;

use crate::workload::TextSide;

const TOKEN: &str = "ouro-bench";

#[derive(Args)]
pub struct CloudArgs {
    /// Verifier model (pinned name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-1.5b")]
    target: String,
    /// Spec-Bench questions (JSONL).
    #[arg(long, default_value = "../shared/data/spec_bench/question.jsonl")]
    questions: PathBuf,
    /// Prompts, taken round-robin across the six categories.
    #[arg(long, default_value_t = 8)]
    prompts: usize,
    /// New tokens per prompt.
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// Skip questions longer than this many prompt tokens: prefill is the
    /// same for every mode, and on this CPU long ones would dominate the run.
    #[arg(long, default_value_t = 400)]
    max_prompt_tokens: usize,
    /// Concurrent sessions to compare.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    concurrency: Vec<usize>,
    /// Draft tokens per round.
    #[arg(long, default_value_t = 4)]
    gamma: usize,
    /// Probability that a replayed draft token is right. Drafts replay the
    /// target's own output with errors injected, standing in for one edge
    /// device per session (this machine cannot run eight drafters at once).
    #[arg(long, default_value_t = 0.8)]
    accept: f64,
    /// Cores the cloud process may use (the benchmark itself takes the others).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    cloud_cores: Vec<usize>,
    /// Cores the clients may use.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    edge_cores: Vec<usize>,
    /// Pass `--requantize` to the cloud (k-quant weights as Q8_0).
    #[arg(long)]
    requantize: bool,
    /// How long the cloud waits for sessions to share a pass, ms.
    #[arg(long, default_value_t = 5.0)]
    batch_window_ms: f64,
}

#[derive(Default, Clone)]
struct Row {
    mode: String,
    sessions: usize,
    tokens: usize,
    cloud_cpu: f64,
    wall: f64,
    rounds: usize,
    bytes: usize,
    batch_sum: u64,
    mismatches: usize,
}

/// Runs `jobs` (one per prompt) on `sessions` client threads, each with its
/// own runtime, the way separate devices would.
fn fan_out<T: Send + 'static>(
    sessions: usize,
    jobs: Vec<usize>,
    work: impl Fn(usize) -> anyhow::Result<T> + Send + Sync + 'static,
) -> anyhow::Result<Vec<(usize, T)>> {
    let work = std::sync::Arc::new(work);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(jobs));
    let handles: Vec<_> = (0..sessions)
        .map(|_| {
            let (work, queue) = (work.clone(), queue.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<(usize, T)>> {
                let mut out = Vec::new();
                loop {
                    let Some(i) = queue.lock().unwrap().pop() else { return Ok(out) };
                    out.push((i, work(i)?));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??);
    }
    Ok(all)
}

fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub fn run(args: CloudArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.accept) || args.gamma == 0 || args.prompts == 0 {
        bail!("--accept must be in [0, 1], --gamma and --prompts at least 1");
    }
    pin_self(&args.edge_cores);
    let text = TextSide::load(&args.target)?;
    let prompts: Vec<Vec<u32>> = text
        .spec_bench_prompts(&args.questions, args.prompts, args.max_prompt_tokens, &[])?
        .into_iter()
        .map(|(_, ids)| ids)
        .collect();
    let model = ouro_config::models::resolve(&args.target)?;
    let cloud = BenchCloud {
        model: &model,
        cores: &args.cloud_cores,
        token: TOKEN,
        batch_window_ms: args.batch_window_ms,
        requantize: args.requantize,
        transports: &[TransportKind::Grpc],
    }
    .spawn()
    .context("starting ouro-cloud")?;
    let endpoint = format!("http://{}", cloud.addr);
    let info = rt()?.block_on(async {
        let mut c = link::connect(&endpoint, Some(TOKEN), None).await?;
        anyhow::Ok(c.info(v1::InfoRequest {}).await?.into_inner())
    })?;
    println!(
        "cloud: {}{} pinned to cores {:?} · clients on cores {:?} · {} prompts (≤ {} tokens) × {} new tokens · replayed drafts γ={} p={}",
        info.model_id,
        if args.requantize { " (k-quants as Q8_0)" } else { "" },
        args.cloud_cores,
        args.edge_cores,
        prompts.len(),
        args.max_prompt_tokens,
        args.max_tokens,
        args.gamma,
        args.accept
    );

    let prompts = std::sync::Arc::new(prompts);
    let max_tokens = args.max_tokens;
    let generate_all = |sessions: usize| -> anyhow::Result<(Row, Vec<Vec<u32>>)> {
        let (cpu0, t0) = (cloud.cpu_seconds(), Instant::now());
        let n = prompts.len();
        let (endpoint, prompts) = (endpoint.clone(), prompts.clone());
        let outs = fan_out(sessions, (0..n).collect(), move |i| {
            rt()?.block_on(async {
                let mut c = link::connect(&endpoint, Some(TOKEN), None).await?;
                anyhow::Ok(link::generate(&mut c, &prompts[i], max_tokens, &[]).await?)
            })
        })?;
        let mut texts = vec![Vec::new(); n];
        for (i, t) in outs {
            texts[i] = t;
        }
        let tokens = texts.iter().map(Vec::len).sum();
        let row = Row {
            mode: "generate".into(),
            sessions,
            tokens,
            cloud_cpu: cloud.cpu_seconds() - cpu0,
            wall: t0.elapsed().as_secs_f64(),
            rounds: tokens,
            bytes: 0,
            batch_sum: 0,
            mismatches: 0,
        };
        Ok((row, texts))
    };

    // Every row prefills every prompt once; measure that alone so the
    // decoding cost can be read apart from it.
    let prefill_cpu = {
        let cpu0 = cloud.cpu_seconds();
        let (endpoint, prompts, hash) = (endpoint.clone(), prompts.clone(), info.tokenizer_hash.clone());
        rt()?.block_on(async move {
            let mut c = link::connect(&endpoint, Some(TOKEN), None).await?;
            for p in prompts.iter() {
                let open = v1::Open { tokenizer_hash: hash.clone(), prompt: p.clone(), ..Default::default() };
                let (mut s, _) = SessionStream::open(&mut c, open).await?;
                s.close().await;
            }
            anyhow::Ok(())
        })?;
        cloud.cpu_seconds() - cpu0
    };
    let mut rows = Vec::new();
    let (_, reference) = generate_all(1)?;
    let reference = std::sync::Arc::new(reference);
    for &sessions in &args.concurrency {
        let (mut g, texts) = generate_all(sessions)?;
        g.mismatches = texts.iter().zip(reference.iter()).filter(|(a, b)| a != b).count();
        rows.push(g);

        let (cpu0, t0) = (cloud.cpu_seconds(), Instant::now());
        let (endpoint, prompts, refs) = (endpoint.clone(), prompts.clone(), reference.clone());
        let (hash, vocab, gamma, accept) = (info.tokenizer_hash.clone(), info.vocab_size, args.gamma, args.accept);
        let runs = fan_out(sessions, (0..prompts.len()).collect(), move |i| {
            rt()?.block_on(async {
                let mut c = link::connect(&endpoint, Some(TOKEN), None).await?;
                let open = v1::Open { tokenizer_hash: hash.clone(), prompt: prompts[i].clone(), ..Default::default() };
                let (mut s, opened) = SessionStream::open(&mut c, open).await?;
                let run =
                    replay(&mut s, opened.committed_len as usize, &refs[i], gamma, accept, vocab, i as u64).await?;
                anyhow::Ok(run)
            })
        })?;
        let mut row = Row {
            mode: format!("speculative γ={}", args.gamma),
            sessions,
            cloud_cpu: cloud.cpu_seconds() - cpu0,
            wall: t0.elapsed().as_secs_f64(),
            ..Row::default()
        };
        for (i, r) in runs {
            row.tokens += r.tokens.len();
            row.rounds += r.rounds;
            row.bytes += r.bytes_out + r.bytes_in;
            row.batch_sum += r.batch_sizes.iter().map(|&b| b as u64).sum::<u64>();
            row.mismatches += usize::from(r.tokens != reference[i]);
        }
        rows.push(row);
    }

    let base = rows.iter().find(|r| r.mode == "generate" && r.sessions == 1).unwrap_or(&rows[0]).clone();
    let per_cpu = |r: &Row| r.tokens as f64 / (r.cloud_cpu - prefill_cpu).max(1e-9);
    println!(
        "prefilling the {} prompts alone costs the cloud {prefill_cpu:.1} CPU-s; decode CPU below excludes it",
        prompts.len()
    );
    println!("\n| mode | sessions | tokens | cloud CPU s | decode CPU s | tokens / decode CPU-s | vs generate ×1 | mean batch | tokens / round | bytes / token | wall tok/s | mismatches |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let batch = if r.batch_sum > 0 { format!("{:.2}", r.batch_sum as f64 / r.rounds as f64) } else { "–".into() };
        let bytes = if r.bytes > 0 { format!("{:.1}", r.bytes as f64 / r.tokens as f64) } else { "–".into() };
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2}× | {batch} | {:.2} | {bytes} | {:.1} | {} |",
            r.mode,
            r.sessions,
            r.tokens,
            r.cloud_cpu,
            r.cloud_cpu - prefill_cpu,
            per_cpu(r),
            per_cpu(r) / per_cpu(&base),
            r.tokens as f64 / r.rounds.max(1) as f64,
            r.tokens as f64 / r.wall,
            r.mismatches
        );
    }
    let mismatches: usize = rows.iter().map(|r| r.mismatches).sum();
    if mismatches > 0 {
        bail!("{mismatches} outputs differ from Generate's");
    }
    Ok(())
}
