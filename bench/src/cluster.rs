//! `ouro-bench cluster`: verifier replicas behind the proxy, as deployed.
//!
//! Each replica count in `--replicas` is a fresh `deploy/cluster.sh` (the
//! replicas pinned to their own cores, HAProxy in front); `--cloud ADDR`
//! measures an endpoint that is already running instead. Concurrent
//! clients (one affinity key per session, as the edge sends) run
//! speculative sessions whose drafts replay the verifier's own output with
//! errors injected, standing in for edge devices. Reported: tokens/s, TTFT
//! and ITL percentiles, and the cloud CPU per token with the proxy's own
//! CPU counted, every text checked against `Generate`'s.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use ouro_bench::figures::{percentile, Sample};
use ouro_bench::process::cpu_seconds;
use ouro_bench::replay::{replay_with, ReplaySpec};
use ouro_edge::link::{self, affinity, SessionStream, Target, Transport, Trust};
use ouro_proto::v1;

use crate::workload::TextSide;

#[derive(Args)]
pub struct ClusterArgs {
    /// Replica counts to compare, each a fresh `deploy/cluster.sh`.
    #[arg(long, value_delimiter = ',', default_value = "1,2", conflicts_with = "cloud")]
    replicas: Vec<usize>,
    /// Measure this running endpoint (a proxy or one replica, plaintext on
    /// loopback) instead of starting clusters. Its CPU is not metered
    /// unless --meter-pids names its processes.
    #[arg(long)]
    cloud: Option<String>,
    /// With --cloud: the processes whose CPU time counts as the cloud's.
    #[arg(long, value_delimiter = ',', requires = "cloud")]
    meter_pids: Vec<u32>,
    /// With --cloud: the bearer token.
    #[arg(long, env = "OURO_CLOUD_TOKEN", hide_env_values = true, default_value = "ouro-bench")]
    token: String,
    /// Verifier model (pinned name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-1.5b")]
    target: String,
    /// Spec-Bench questions (JSONL).
    #[arg(long, default_value = "../shared/data/spec_bench/question.jsonl")]
    questions: PathBuf,
    /// Prompts, taken round-robin across the categories.
    #[arg(long, default_value_t = 16)]
    prompts: usize,
    /// New tokens per prompt.
    #[arg(long, default_value_t = 32)]
    max_tokens: u32,
    /// Skip questions longer than this many prompt tokens.
    #[arg(long, default_value_t = 400)]
    max_prompt_tokens: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Draft tokens per round.
    #[arg(long, default_value_t = 4)]
    gamma: usize,
    /// Probability that a replayed draft token is right.
    #[arg(long, default_value_t = 0.8)]
    accept: f64,
    /// Cores per replica (`deploy/cluster.sh --cores-per-replica`).
    #[arg(long, default_value_t = 1)]
    cores_per_replica: usize,
}

/// A `deploy/cluster.sh` this benchmark started, stopped on drop.
struct Cluster {
    child: Child,
    proxy: SocketAddr,
    pids: Vec<u32>,
    proxy_pid: u32,
}

impl Cluster {
    fn start(
        replicas: usize,
        model: &std::path::Path,
        cores: usize,
        token_file: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/cluster.sh");
        let cloud = ouro_bench::process::sibling_bin("ouro-cloud")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = Command::new(&script);
        cmd.args(["--replicas", &replicas.to_string(), "--cores-per-replica", &cores.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--model")
            .arg(model)
            .arg("--tokens-file")
            .arg(token_file)
            .arg("--cloud-bin")
            .arg(cloud)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", script.display()))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let line: serde_json::Value = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("{\"ready\"") => break serde_json::from_str(&l)?,
                Some(Ok(_)) => continue,
                _ => bail!("deploy/cluster.sh exited before it was ready: {:?}", child.wait()),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let c = &line["cluster"];
        let mut pids = Vec::new();
        for r in c["replicas"].as_array().context("replicas")? {
            let file = r["pid_file"].as_str().context("pid_file")?;
            pids.push(std::fs::read_to_string(file)?.trim().parse()?);
        }
        let proxy_pid = c["proxy_pid"].as_u64().context("proxy_pid")? as u32;
        pids.push(proxy_pid);
        let proxy = line["ready"]["listen"].as_str().context("listen")?.parse()?;
        Ok(Self { child, proxy, pids, proxy_pid })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// CPU seconds of `pids`, all together.
fn cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| cpu_seconds(p)).sum()
}

struct Row {
    label: String,
    samples: Vec<Sample>,
    wall: f64,
    cloud_cpu: Option<f64>,
    proxy_cpu: Option<f64>,
    mismatches: usize,
}

fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn target(endpoint: &str, token: &str, key: Option<String>) -> Target {
    Target {
        endpoint: endpoint.to_string(),
        token: token.to_string(),
        server_name: "localhost".into(),
        trust: Trust::InsecureDev,
        affinity: key,
    }
}

/// `Generate` for every prompt through `endpoint`, one at a time: the
/// texts the speculative sessions must reproduce.
fn reference(endpoint: &str, token: &str, prompts: &[Vec<u32>], max: u32) -> anyhow::Result<Vec<Vec<u32>>> {
    rt()?.block_on(async {
        let mut c = link::grpc::open(&target(endpoint, token, None)).await?;
        let mut out = Vec::new();
        for p in prompts {
            out.push(link::generate(&mut c, p, max, &[]).await?);
        }
        anyhow::Ok(out)
    })
}

/// One speculative session per prompt, `clients` at a time, each with a
/// fresh affinity key.
#[allow(clippy::too_many_arguments)]
fn sessions(
    endpoint: &str,
    token: &str,
    prompts: Arc<Vec<Vec<u32>>>,
    refs: Arc<Vec<Vec<u32>>>,
    clients: usize,
    gamma: usize,
    accept: f64,
) -> anyhow::Result<(Vec<Sample>, f64)> {
    let queue = Arc::new(Mutex::new((0..prompts.len()).rev().collect::<Vec<_>>()));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (queue, prompts, refs) = (queue.clone(), prompts.clone(), refs.clone());
            let (endpoint, token) = (endpoint.to_string(), token.to_string());
            std::thread::spawn(move || -> anyhow::Result<Vec<Sample>> {
                let rt = rt()?;
                let mut out = Vec::new();
                loop {
                    let Some(i) = queue.lock().unwrap().pop() else { return Ok(out) };
                    out.push(rt.block_on(one(&endpoint, &token, &prompts[i], &refs[i], i, gamma, accept))?);
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    for h in handles {
        samples.extend(h.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??);
    }
    Ok((samples, t0.elapsed().as_secs_f64()))
}

async fn one(
    endpoint: &str,
    token: &str,
    prompt: &[u32],
    reference: &[u32],
    i: usize,
    gamma: usize,
    accept: f64,
) -> anyhow::Result<Sample> {
    let t = Instant::now();
    let mut c = link::grpc::open(&target(endpoint, token, Some(affinity::fresh_key()))).await?;
    let info = Transport::info(&mut c).await?;
    let open = v1::Open { tokenizer_hash: info.tokenizer_hash, prompt: prompt.to_vec(), ..Default::default() };
    let (mut s, opened) = SessionStream::open(&mut c, open).await?;
    let mut arrivals = Vec::new();
    let spec = ReplaySpec { gamma, accept, vocab: info.vocab_size, seed: i as u64 };
    let run = replay_with(&mut s, opened.committed_len as usize, reference, spec, |tokens| {
        let at = t.elapsed().as_secs_f64();
        arrivals.extend(std::iter::repeat_n(at, tokens.len()));
        std::ops::ControlFlow::Continue(())
    })
    .await?;
    s.close().await;
    Ok(Sample {
        mode: "cluster".into(),
        category: String::new(),
        prompt: i,
        matches_baseline: Some(run.tokens == reference),
        ttft_s: arrivals.first().copied().unwrap_or(f64::NAN),
        total_s: t.elapsed().as_secs_f64(),
        arrivals_s: arrivals,
        rounds: run.rounds,
        accepted_per_round: Vec::new(),
        target_passes: run.target_passes(),
        tokens: run.tokens,
        // A replay at a fixed draft length: no controller, nothing predicted.
        round_log: Vec::new(),
    })
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.accept) || args.gamma == 0 || args.prompts == 0 || args.concurrency == 0 {
        bail!("--accept must be in [0, 1]; --gamma, --prompts and --concurrency at least 1");
    }
    if args.cloud.is_none() && args.replicas.contains(&0) {
        bail!("--replicas: every count must be at least 1");
    }
    let text = TextSide::load(&args.target)?;
    let prompts: Vec<Vec<u32>> = text
        .spec_bench_prompts(&args.questions, args.prompts, args.max_prompt_tokens, &[])?
        .into_iter()
        .map(|(_, ids)| ids)
        .collect();
    let prompts = Arc::new(prompts);
    let model = ouro_config::models::resolve(&args.target)?;
    let token_file = std::env::temp_dir().join(format!("ouro-bench-cluster-{}", std::process::id()));
    std::fs::write(&token_file, format!("{}\n", args.token))?;
    let mut refs: Option<Arc<Vec<Vec<u32>>>> = None;
    let mut rows = Vec::new();
    let configs: Vec<Option<usize>> =
        if args.cloud.is_some() { vec![None] } else { args.replicas.iter().map(|&r| Some(r)).collect() };
    println!(
        "{} · {} prompts × {} new tokens · {} clients · replayed drafts γ={} p={} · {} cores on this machine",
        args.target,
        prompts.len(),
        args.max_tokens,
        args.concurrency,
        args.gamma,
        args.accept,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for config in configs {
        let cluster = config.map(|n| Cluster::start(n, &model, args.cores_per_replica, &token_file)).transpose()?;
        let endpoint = match (&cluster, &args.cloud) {
            (Some(c), _) => c.proxy.to_string(),
            (None, Some(addr)) => addr.clone(),
            (None, None) => unreachable!("a cluster or --cloud"),
        };
        let refs = match &refs {
            Some(r) => r.clone(),
            None => {
                let r = Arc::new(reference(&endpoint, &args.token, &prompts, args.max_tokens)?);
                refs = Some(r.clone());
                r
            }
        };
        let pids: Vec<u32> = cluster.as_ref().map_or(args.meter_pids.clone(), |c| c.pids.clone());
        let proxy_pid = cluster.as_ref().map(|c| c.proxy_pid);
        let (cpu0, proxy0) = (cpu(&pids), proxy_pid.map(|p| cpu(&[p])));
        let (samples, wall) =
            sessions(&endpoint, &args.token, prompts.clone(), refs.clone(), args.concurrency, args.gamma, args.accept)?;
        let cloud_cpu = (!pids.is_empty()).then(|| cpu(&pids) - cpu0);
        let proxy_cpu = proxy_pid.zip(proxy0).map(|(p, c0)| cpu(&[p]) - c0);
        let mismatches = samples.iter().filter(|s| s.matches_baseline == Some(false)).count();
        let label = match config {
            Some(n) => format!("{n} replica{} + HAProxy", if n == 1 { "" } else { "s" }),
            None => endpoint.clone(),
        };
        rows.push(Row { label, samples, wall, cloud_cpu, proxy_cpu, mismatches });
    }
    let _ = std::fs::remove_file(&token_file);

    println!("\n| cloud | sessions | tokens | wall s | tokens/s (all clients) | TTFT p50 / p95 ms | ITL p50 / p95 ms | cloud CPU ms / token (proxy's) | mismatches |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let tokens: usize = r.samples.iter().map(|s| s.tokens.len()).sum();
        let ttft: Vec<f64> = r.samples.iter().map(|s| s.ttft_s).collect();
        let itl: Vec<f64> = r.samples.iter().flat_map(Sample::itl_s).collect();
        let ms = |v: f64| v * 1e3;
        let cpu = match (r.cloud_cpu, r.proxy_cpu) {
            (Some(c), Some(p)) => format!("{:.1} ({:.2})", ms(c) / tokens as f64, ms(p) / tokens as f64),
            (Some(c), None) => format!("{:.1}", ms(c) / tokens as f64),
            _ => "not metered".into(),
        };
        println!(
            "| {} | {} | {tokens} | {:.1} | {:.1} | {:.0} / {:.0} | {:.0} / {:.0} | {cpu} | {} |",
            r.label,
            r.samples.len(),
            r.wall,
            tokens as f64 / r.wall,
            ms(percentile(&ttft, 0.5)),
            ms(percentile(&ttft, 0.95)),
            ms(percentile(&itl, 0.5)),
            ms(percentile(&itl, 0.95)),
            r.mismatches
        );
    }
    let mismatches: usize = rows.iter().map(|r| r.mismatches).sum();
    if mismatches > 0 {
        bail!("{mismatches} outputs differ from Generate's");
    }
    Ok(())
}
