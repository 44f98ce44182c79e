//! `ouro-edge bench-model`: what one forward pass costs on this machine.
//!
//! Speculation on a CPU lives or dies by the verify-cost curve c(k): the time
//! of one forward pass over k new tokens, relative to k = 1. This prints it
//! next to plain decode speed and peak memory, in one process per
//! (model, threads) pair so that the thread pools and peak RSS are clean.

use std::time::Instant;

use clap::Args;
use ouro_common::model::gguf::LoadOptions;
use ouro_common::model::{AttnMask, CausalLm, Head, KvCache, LogitsRows};
use ouro_common::sampling::argmax;
use ouro_config::vocab::DraftVocabArgs;

use crate::local::{threads, LoadLocal, LocalModel};

#[derive(Args)]
pub struct BenchArgs {
    /// A pinned model name or a GGUF path.
    #[arg(long, env = "OURO_MODEL", default_value = "smollm2-135m")]
    pub model: String,
    /// Context length the verify passes run over.
    #[arg(long, default_value_t = 256)]
    pub context: usize,
    /// Values of k for the verify-cost curve.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    pub ks: Vec<usize>,
    /// Tokens to decode for the tokens/s figure.
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: usize,
    /// Repetitions per k (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Also time decoding with the drafter's restricted LM head (FR-Spec),
    /// step for step against the full head: `auto` has one for the Qwen2.5
    /// models, `none` skips it.
    #[command(flatten)]
    pub vocab: DraftVocabArgs,
    /// Keep Q4_0/Q4_1/Q5_1 tensors as they are instead of re-encoding them as Q8_0 (Q5_0 always runs on its own kernel).
    #[arg(long)]
    pub no_requantize: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// CPU seconds this process has used, all threads together. On a shared
/// machine a pass's CPU time moves far less than its wall time when other
/// work competes for the cores, so the curve is printed in both.
fn process_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; the clock id is a constant Linux and macOS both define.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Decode with the full and the restricted LM head, when the model has a
/// restricted one: tokens per wall second and per process CPU second of
/// each. The two decode side by side, one step each in turn, so load from
/// other processes lands on both alike.
fn draft_decode(model: &dyn CausalLm, prompt: &[u32], steps: usize) -> anyhow::Result<Option<DraftDecode>> {
    let Some(subset) = model.draft_vocab() else { return Ok(None) };
    let heads = [Head::Full, Head::Draft];
    let mut caches = [model.new_cache(), model.new_cache()];
    let mut next = [0u32; 2];
    let (mut secs, mut cpu) = ([0f64; 2], [0f64; 2]);
    for step in 0..=steps {
        for (i, head) in heads.into_iter().enumerate() {
            let cache = &mut caches[i];
            let tokens = if step == 0 { prompt.to_vec() } else { vec![next[i]] };
            let start = cache.len();
            let positions: Vec<usize> = (start..start + tokens.len()).collect();
            let mask = AttnMask::causal(tokens.len());
            let (t, c) = (Instant::now(), process_cpu_secs());
            let logits = model.forward_head(cache, &tokens, &positions, &mask, LogitsRows::Last, head)?;
            let col = argmax(logits.last().expect("a row"));
            if step > 0 {
                secs[i] += t.elapsed().as_secs_f64();
                cpu[i] += process_cpu_secs() - c;
            }
            next[i] = if head == Head::Draft { subset.token(col as usize) } else { col };
        }
    }
    let per = |s: f64| steps as f64 / s;
    Ok(Some(DraftDecode {
        ids: subset.len(),
        full: per(secs[0]),
        restricted: per(secs[1]),
        full_cpu: per(cpu[0]),
        restricted_cpu: per(cpu[1]),
    }))
}

/// What [`draft_decode`] measured, in tokens per second.
#[derive(Clone, Copy)]
struct DraftDecode {
    ids: usize,
    full: f64,
    restricted: f64,
    full_cpu: f64,
    restricted_cpu: f64,
}

/// Median wall and process CPU milliseconds of a pass of each `k` new tokens
/// (taken from `seed`) over what `cache` holds, every row's logits from
/// `head` (as a verification or a drafter's tree level needs), the cache
/// rolled back after each pass. The values of k take turns, after one
/// round discarded as warm-up, so that a slow spell of a shared machine
/// lands on all of them rather than skewing the ratios to k = 1.
pub(crate) fn pass_times(
    model: &dyn CausalLm,
    cache: &mut KvCache,
    seed: &[u32],
    ks: &[usize],
    reps: usize,
    head: Head,
) -> anyhow::Result<Vec<(usize, f64, f64)>> {
    let base = cache.len();
    let mut times = vec![(Vec::new(), Vec::new()); ks.len()];
    let inputs: Vec<(Vec<u32>, Vec<usize>, AttnMask)> = ks
        .iter()
        .map(|&k| {
            (seed.iter().cycle().skip(3).take(k).copied().collect(), (base..base + k).collect(), AttnMask::causal(k))
        })
        .collect();
    for rep in 0..=reps {
        for (i, (draft, positions, mask)) in inputs.iter().enumerate() {
            let (t, c) = (Instant::now(), process_cpu_secs());
            model.forward_head(cache, draft, positions, mask, LogitsRows::All, head)?;
            if rep > 0 {
                times[i].0.push(t.elapsed().as_secs_f64() * 1e3);
                times[i].1.push((process_cpu_secs() - c) * 1e3);
            }
            cache.truncate(base);
        }
    }
    Ok(ks.iter().zip(times).map(|(&k, (wall, cpu))| (k, median(wall), median(cpu))).collect())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Peak resident set size of this process, from /proc (Linux only).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The CPU's model name and the vector features the kernels care about, so
/// every figure says what it was measured on.
pub(crate) fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let wanted = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "amx_int8"];
    let have: Vec<&str> = wanted.into_iter().filter(|f| flags.split_whitespace().any(|x| x == *f)).collect();
    let model = field("model name");
    let model = if model.is_empty() { std::env::consts::ARCH.to_string() } else { model };
    format!("{model}, {} cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), have.join(" "))
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.reps > 0 && !args.ks.is_empty(), "need at least one k and one repetition");
    let opts = LoadOptions { requantize_legacy: !args.no_requantize, ..LoadOptions::default() };
    let t0 = Instant::now();
    let lm = LocalModel::load_with_vocab(&args.model, &opts, Some(&args.vocab))?;
    let load_secs = t0.elapsed().as_secs_f64();
    let model = &lm.model;
    let max_k = *args.ks.iter().max().unwrap_or(&1);
    anyhow::ensure!(
        args.context + max_k.max(args.decode_tokens) < model.config().max_context,
        "context {} plus k {max_k} exceeds the model's context",
        args.context
    );

    // A real prompt, repeated to the requested context length.
    let seed = lm.prompt_ids("Write a Python function that merges two sorted lists, and explain it.", None, false)?;
    let context: Vec<u32> = seed.iter().cycle().take(args.context).copied().collect();

    // Decode speed: greedy single-token steps after a short prompt.
    let mut cache = model.new_cache();
    let mut logits = model.forward_causal(&mut cache, &seed, LogitsRows::Last)?;
    let t = Instant::now();
    for _ in 0..args.decode_tokens {
        let next = argmax(logits.last().expect("a row"));
        logits = model.forward_causal(&mut cache, &[next], LogitsRows::Last)?;
    }
    let decode_tps = args.decode_tokens as f64 / t.elapsed().as_secs_f64();
    let draft_decode = draft_decode(model, &seed, args.decode_tokens)?;

    // Verify-cost curve: k new tokens over the context, all rows' logits (as
    // a verification needs), rolled back after each pass.
    // Prefill: the whole context in one pass, as a prompt arrives.
    let mut prefill = Vec::new();
    let mut cache = model.new_cache();
    for _ in 0..args.reps {
        cache.clear();
        let t = Instant::now();
        model.forward_causal(&mut cache, &context, LogitsRows::Last)?;
        prefill.push(t.elapsed().as_secs_f64());
    }
    let prefill_tps = args.context as f64 / median(prefill);
    cache.truncate(args.context);
    let curve = pass_times(model, &mut cache, &seed, &args.ks, args.reps, Head::Full)?;
    let base = curve[0].1;
    let cpu_base = curve[0].2;
    let kernel = opts.isa()?;
    let cpu = cpu_description();
    let rss = peak_rss_mib();
    let cfg = model.config();
    if args.json {
        let v = serde_json::json!({
            "model": lm.name,
            "threads": threads(),
            "requantize_legacy": opts.requantize_legacy,
            "load_secs": load_secs,
            "decode_tokens_per_sec": decode_tps,
            "draft_decode": draft_decode.map(|d| serde_json::json!({
                "ids": d.ids,
                "full_tokens_per_sec": d.full,
                "restricted_tokens_per_sec": d.restricted,
                "full_tokens_per_cpu_sec": d.full_cpu,
                "restricted_tokens_per_cpu_sec": d.restricted_cpu,
            })),
            "prefill_tokens_per_sec": prefill_tps,
            "kernel": kernel.name(),
            "cpu": cpu,
            "context": args.context,
            "verify_ms": curve
                .iter()
                .map(|(k, ms, cpu)| serde_json::json!({"k": k, "ms": ms, "ratio": ms / base, "cpu_ms": cpu, "cpu_ratio": cpu / cpu_base}))
                .collect::<Vec<_>>(),
            "peak_rss_mib": rss,
        });
        println!("{v}");
    } else {
        println!(
            "{} ({}, {} layers, hidden {}), {} threads, requantize legacy: {}",
            lm.name,
            cfg.arch.as_str(),
            cfg.num_layers,
            cfg.hidden_size,
            threads(),
            opts.requantize_legacy
        );
        println!("  {cpu}; kernels: {kernel}");
        println!(
            "  load {load_secs:.2}s, decode {decode_tps:.1} tok/s, prefill of {} tokens {prefill_tps:.1} tok/s, peak RSS {:.0} MiB",
            args.context,
            rss.unwrap_or(f64::NAN)
        );
        if let Some(d) = draft_decode {
            println!(
                "  decode with the drafter's restricted LM head ({} ids) vs the full one, step for step: {:.1} vs {:.1} tok/s ({:.2}x), per CPU second {:.1} vs {:.1} ({:.2}x)",
                d.ids,
                d.restricted,
                d.full,
                d.restricted / d.full,
                d.restricted_cpu,
                d.full_cpu,
                d.restricted_cpu / d.full_cpu
            );
        }
        println!("  verify cost over a {}-token context:", args.context);
        println!(
            "  {:>4} {:>10} {:>8} {:>12} {:>10} {:>8}",
            "k", "ms", "c(k)/c(1)", "ms per token", "cpu ms", "cpu c(k)"
        );
        for (k, ms, cpu) in &curve {
            println!(
                "  {k:>4} {ms:>10.1} {:>8.2} {:>12.2} {cpu:>10.1} {:>8.2}",
                ms / base,
                ms / *k as f64,
                cpu / cpu_base
            );
        }
    }
    Ok(())
}
