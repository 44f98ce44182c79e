//! `ouro-bench run` and `ouro-bench sweep`: every mode side by side on the
//! same prompts, through an emulated link, against `cloud-only` measured in
//! the same run.
//!
//! The cloud is a real `ouro-cloud` process pinned to its own cores; the
//! edge (drafter and clients) is this process, pinned to the others. Edge
//! and cloud talk through the [`netem`](ouro_bench::netem) proxies: TCP for
//! gRPC, UDP for QUIC. Modes run wave by wave (one prompt per client), so a
//! burst of load from elsewhere on a shared machine lands on all alike.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ouro_bench::figures::{rows, Group, Sample};
use ouro_bench::netem::{LinkProfile, Proxy};
use ouro_bench::process::{pin_self, BenchCloud};
use ouro_bench::report::{self, Environment, ModelRef, Results};
use ouro_common::controller::Learned;
use ouro_common::draft::PhrasePool;
use ouro_common::engine::DEFAULT_DRAFT_WINDOW;
use ouro_common::generate::{generate, GenerateConfig};
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::Transformer;
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::{strategy, DraftStrategy, SpecStats};
use ouro_common::tokenizer::Tokenizer;
use ouro_config::models;
use ouro_config::vocab::DraftVocabArgs;
use ouro_edge::engine::draft_vocab;
use ouro_edge::link::{self, SpecRequest, Target, Transport, TransportKind, Trust};
use ouro_proto::v1;
use tokio_stream::StreamExt;

use crate::workload::TextSide;

const TOKEN: &str = "ouro-bench";
const BASELINE: &str = "cloud-only";

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Drafter on the edge (pinned name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-0.5b")]
    pub drafter: String,
    /// Verifier in the cloud (pinned name or GGUF path).
    #[arg(long, default_value = "qwen2.5-coder-1.5b")]
    pub target: String,
    /// Spec-Bench-format questions (JSONL with `category` and `turns`).
    #[arg(long, default_value = "../shared/data/spec_bench/question.jsonl")]
    pub questions: PathBuf,
    /// Only these categories (translation, summarization, qa, math_reasoning, rag, mt_bench).
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// Prompts, taken round-robin across the categories.
    #[arg(long, default_value_t = 6)]
    pub prompts: usize,
    /// New tokens per prompt.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Skip questions longer than this many prompt tokens.
    #[arg(long, default_value_t = 300)]
    pub max_prompt_tokens: usize,
    /// Modes: cloud-only (the baseline, always run), cloud-pool (`Generate`
    /// verifying drafts of the cloud's own, copies of the text and
    /// phrase-pool continuations: no edge drafter), edge-only, sd-chain
    /// (chainN with N = --gamma), or any draft strategy (chainN, heuristic,
    /// ouroboros, ouroboros-compute, pool, hybrid; `-nocopy` after the last
    /// four turns their copies of earlier text off); `-quic` runs a mode over
    /// QUIC, `-nopipe` waits for each verdict before drafting again, `-wait`
    /// keeps the cloud from decoding on its own between rounds.
    #[arg(long, value_delimiter = ',', default_value = "cloud-only,edge-only,sd-chain,ouroboros,ouroboros-quic")]
    pub modes: Vec<String>,
    /// The emulated link: a profile (none, lan, wifi, 4g, intercontinental)
    /// or a spec such as `delay=20ms,jitter=5ms,bw=20mbit,loss=0.5%`
    /// (delays one-way). Default: 4g for `run`, none for `sweep`.
    #[arg(long)]
    pub link: Option<LinkProfile>,
    /// Concurrent edge clients against the one cloud.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub concurrency: Vec<usize>,
    /// Fixed draft length of sd-chain.
    #[arg(long, default_value_t = 4)]
    pub gamma: usize,
    /// Sampling temperature; 0 is greedy (and checks every text against cloud-only's).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cores of the edge (this process: drafter and clients).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub edge_cores: Vec<usize>,
    /// Cores of the cloud process.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub cloud_cores: Vec<usize>,
    /// Pass `--requantize` to the cloud (k-quant weights as Q8_0).
    #[arg(long)]
    pub requantize: bool,
    /// How long the cloud waits for sessions to share a pass, ms.
    #[arg(long, default_value_t = 5.0)]
    pub batch_window_ms: f64,
    /// Keep each speculative mode's phrase pool and what its draft policy
    /// learned from one prompt to the next, as the edge daemon does across
    /// a device's requests. Without it every prompt starts cold.
    #[arg(long, env = "OURO_BENCH_WARM")]
    pub warm: bool,
    /// Directory for results.json, report.md and the SVG plots.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    #[command(flatten)]
    pub vocab: DraftVocabArgs,
}

#[derive(Args, Clone)]
pub struct SweepArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Round-trip times to emulate, ms (each replaces the link's delay).
    #[arg(long, value_delimiter = ',', default_value = "0,10,20,40,80,160")]
    pub rtt: Vec<f64>,
}

/// What a mode runs.
#[derive(Debug, Clone)]
enum Kind {
    /// `Generate`; with `self_draft`, greedy passes also verify the cloud's
    /// own drafts (`GenerateRequest.self_draft`).
    CloudOnly {
        self_draft: bool,
    },
    EdgeOnly,
    Speculative {
        strategy: Arc<dyn DraftStrategy>,
        pipeline: bool,
        run_on: bool,
    },
}

#[derive(Debug, Clone)]
struct Mode {
    name: String,
    kind: Kind,
    transport: TransportKind,
    /// With `--warm`: what the mode's clients carry from prompt to prompt.
    warm: Option<Arc<Mutex<Warmth>>>,
}

/// A device's warmth: its phrase pool and its draft policy's estimates.
#[derive(Debug, Default)]
struct Warmth {
    pool: PhrasePool,
    learned: Option<Learned>,
}

/// A mode names its transport by a suffix, `-` and the name `--transport`
/// takes (`-quic`); without one it runs over the default (gRPC).
fn split_transport(name: &str) -> (&str, TransportKind) {
    let suffixed = TransportKind::all().iter().filter(|&&k| k != TransportKind::default());
    suffixed
        .into_iter()
        .find_map(|&k| name.strip_suffix(&format!("-{}", k.name())).map(|base| (base, k)))
        .unwrap_or((name, TransportKind::default()))
}

/// The transport suffixes a mode may take, as the usage writes them (`[-quic]`).
fn transport_suffixes() -> String {
    let all = TransportKind::all().iter().filter(|&&k| k != TransportKind::default());
    all.map(|k| format!("[-{}]", k.name())).collect()
}

fn parse_mode(name: &str, gamma: usize) -> anyhow::Result<Mode> {
    let (rest, run_on) = match name.strip_suffix("-wait") {
        Some(r) => (r, false),
        None => (name, true),
    };
    let (rest, pipeline) = match rest.strip_suffix("-nopipe") {
        Some(r) => (r, false),
        None => (rest, true),
    };
    let (base, transport) = split_transport(rest);
    let kind = match base {
        "cloud-only" if pipeline && run_on => Kind::CloudOnly { self_draft: false },
        "cloud-pool" if pipeline && run_on => Kind::CloudOnly { self_draft: true },
        "edge-only" if pipeline && run_on && transport == TransportKind::default() => Kind::EdgeOnly,
        // sd-chain is chainN with N from --gamma; other draft modes are
        // named as every CLI names a draft strategy.
        "sd-chain" => Kind::Speculative { strategy: strategy::parse(&format!("chain{gamma}"))?, pipeline, run_on },
        "cloud-only" | "cloud-pool" | "edge-only" => {
            bail!("`{name}`: {base} runs without pipelining, waiting or transport variants")
        }
        _ => match strategy::parse(base) {
            Ok(strategy) => Kind::Speculative { strategy, pipeline, run_on },
            Err(_) => {
                let t = transport_suffixes();
                bail!(
                    "unknown mode `{name}`: cloud-only{t}, cloud-pool{t}, edge-only, sd-chain{t}[-nopipe][-wait], \
                     ouroboros{t}[-nopipe][-wait], or another draft strategy ({}){t}[-nopipe][-wait]",
                    strategy::names()
                )
            }
        },
    };
    Ok(Mode { name: name.to_string(), kind, transport, warm: None })
}

/// Everything the clients share.
struct Bench {
    drafter: Transformer,
    /// The cloud's handshake, made once: cloud-only makes none either.
    cloud_info: v1::ModelInfo,
    tokenizer_hash: String,
    stop_ids: Vec<u32>,
    sampling: SamplingParams,
    max_tokens: usize,
    /// Where clients connect, by transport: the proxies' ends of the emulated link.
    link: Vec<(TransportKind, SocketAddr)>,
}

impl Bench {
    /// Where `transport` reaches the cloud, as a link target.
    fn target(&self, transport: TransportKind) -> anyhow::Result<Target> {
        let Some(&(_, addr)) = self.link.iter().find(|(k, _)| *k == transport) else {
            bail!("the cloud does not serve {transport}");
        };
        Ok(Target {
            endpoint: addr.to_string(),
            token: TOKEN.into(),
            server_name: "localhost".into(),
            trust: Trust::InsecureDev,
            affinity: None,
        })
    }
}

/// A runtime for one client: the connection's I/O runs on its worker while
/// the client's own thread drafts, as in the edge daemon.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?)
}

/// Token arrival times, relative to the request.
struct Clock {
    start: Instant,
    arrivals: Vec<f64>,
    chunks: Vec<u32>,
    tokens: Vec<u32>,
}

impl Clock {
    fn new() -> Self {
        Self { start: Instant::now(), arrivals: Vec::new(), chunks: Vec::new(), tokens: Vec::new() }
    }

    fn push(&mut self, toks: &[u32]) {
        if toks.is_empty() {
            return;
        }
        let t = self.start.elapsed().as_secs_f64();
        self.arrivals.extend(std::iter::repeat_n(t, toks.len()));
        self.chunks.push(toks.len() as u32);
        self.tokens.extend_from_slice(toks);
    }

    fn sample(self, mode: &str, category: &str, prompt: usize, rounds: usize, target_passes: usize) -> Sample {
        Sample {
            mode: mode.into(),
            category: category.into(),
            prompt,
            ttft_s: self.arrivals.first().copied().unwrap_or(f64::NAN),
            total_s: self.start.elapsed().as_secs_f64(),
            arrivals_s: self.arrivals,
            rounds,
            accepted_per_round: if rounds > 0 { self.chunks } else { Vec::new() },
            target_passes,
            tokens: self.tokens,
            matches_baseline: None,
            round_log: Vec::new(),
        }
    }
}

impl Bench {
    fn sampling_proto(&self) -> v1::Sampling {
        (&self.sampling).into()
    }

    async fn cloud_only(&self, t: &mut impl Transport, prompt: &[u32], self_draft: bool) -> anyhow::Result<Clock> {
        let req = v1::GenerateRequest {
            tokenizer_hash: self.tokenizer_hash.clone(),
            prompt: prompt.to_vec(),
            sampling: Some(self.sampling_proto()),
            max_new_tokens: self.max_tokens as u32,
            stop_ids: self.stop_ids.clone(),
            self_draft,
        };
        let mut clock = Clock::new();
        let mut stream = t.generate_stream(req).await?;
        while let Some(msg) = stream.next().await.transpose()? {
            clock.push(&msg.tokens);
        }
        Ok(clock)
    }

    async fn speculative(
        &self,
        t: &mut impl Transport,
        prompt: &[u32],
        strategy: Arc<dyn DraftStrategy>,
        (pipeline, run_on): (bool, bool),
        warm: Option<&Mutex<Warmth>>,
    ) -> anyhow::Result<(Clock, SpecStats)> {
        // Cold: a fresh pool per prompt, so each mode starts as cold as the
        // others. Warm: a copy of the mode's pool, merged back afterwards as
        // the daemon merges concurrent requests' pools.
        let (mut pool, mark, learned) = match warm {
            Some(w) => {
                let w = w.lock().unwrap_or_else(|e| e.into_inner());
                (w.pool.clone(), Some(w.pool.mark()), w.learned.clone())
            }
            None => (PhrasePool::default(), None, None),
        };
        let req = SpecRequest {
            tokenizer_hash: &self.tokenizer_hash,
            prompt,
            max_new: self.max_tokens,
            stop_ids: &self.stop_ids,
            strategy,
            sampling: self.sampling,
            pipeline,
            info: Some(&self.cloud_info),
            warm: learned.as_ref(),
            draft_window: DEFAULT_DRAFT_WINDOW,
            run_on,
        };
        let mut clock = Clock::new();
        let mut run = SpecStats::default();
        let done = link::speculate_into(t, &self.drafter, &req, &mut pool, &mut run, |toks| {
            clock.push(toks);
            ControlFlow::Continue(())
        })
        .await;
        if let (Some(w), Some(mark)) = (warm, mark) {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            w.pool.merge_since(&pool, mark);
            if let Some(learned) = run.learned.clone() {
                w.learned = Some(learned);
            }
        }
        done?;
        Ok((clock, run))
    }

    fn edge_only(&self, prompt: &[u32]) -> anyhow::Result<Clock> {
        let cfg = GenerateConfig {
            max_new_tokens: self.max_tokens,
            sampling: self.sampling,
            stop_ids: self.stop_ids.clone(),
        };
        let mut clock = Clock::new();
        generate(&self.drafter, prompt, &cfg, |t| {
            clock.push(&[t]);
            ControlFlow::Continue(())
        })?;
        Ok(clock)
    }

    /// One prompt in one mode, on its own connection (set up before the clock starts).
    fn one(&self, mode: &Mode, category: &str, index: usize, prompt: &[u32]) -> anyhow::Result<Sample> {
        let rt = client_runtime()?;
        let name = &mode.name;
        match &mode.kind {
            Kind::EdgeOnly => Ok(self.edge_only(prompt)?.sample(name, category, index, 0, 0)),
            kind => rt.block_on(async {
                let mut conn = mode.transport.open(&self.target(mode.transport)?).await?;
                let (clock, run) = self.dispatch(kind, mode.warm.as_deref(), &mut conn, prompt).await?;
                let rounds = run.as_ref().map_or(0, |r| r.rounds);
                let passes = match &run {
                    // Generate sends each pass's tokens at once; its first
                    // token comes from the prefill pass.
                    None => clock.chunks.len().saturating_sub(1),
                    // Every token the cloud decoded alone took a pass; a
                    // round its tokens had left took none (see
                    // `SpecStats::target_passes`).
                    Some(r) => r.target_passes(),
                };
                let mut sample = clock.sample(name, category, index, rounds, passes);
                sample.round_log = run.map(|r| r.round_log).unwrap_or_default();
                Ok(sample)
            }),
        }
    }

    async fn dispatch(
        &self,
        kind: &Kind,
        warm: Option<&Mutex<Warmth>>,
        t: &mut impl Transport,
        prompt: &[u32],
    ) -> anyhow::Result<(Clock, Option<SpecStats>)> {
        match kind {
            Kind::CloudOnly { self_draft } => Ok((self.cloud_only(t, prompt, *self_draft).await?, None)),
            Kind::Speculative { strategy, pipeline, run_on } => {
                let (clock, run) = self.speculative(t, prompt, strategy.clone(), (*pipeline, *run_on), warm).await?;
                Ok((clock, Some(run)))
            }
            Kind::EdgeOnly => unreachable!("runs without a link"),
        }
    }
}

/// The drafter, with its restricted vocabulary (FR-Spec) when `vocab` gives
/// one; edge-only decodes over every id all the same.
fn load_drafter(name: &str, vocab: &DraftVocabArgs) -> anyhow::Result<(Transformer, PathBuf, String)> {
    let path = models::resolve(name)?;
    let opts = LoadOptions::default();
    let (mut m, ct) = gguf::load(&path, &opts).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&ct).context("the drafter's tokenizer")?;
    let attached = draft_vocab::attach(&mut m, &path, &ct, &tokenizer.info().identity, vocab, &opts)
        .with_context(|| format!("--draft-vocab {}", vocab.draft_vocab))?;
    let said = attached.map_or_else(|| "drafting over every id".to_string(), |a| a.to_string());
    Ok((m, path, said))
}

fn model_ref(name: &str, path: &Path) -> ModelRef {
    ModelRef {
        name: name.into(),
        path: path.display().to_string(),
        sha256: report::sha256_file(path).unwrap_or_else(|e| format!("unreadable: {e}")),
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let link = args.link.unwrap_or(LinkProfile::by_name("4g")?);
    execute(&args, &[link])
}

pub fn sweep(args: SweepArgs) -> anyhow::Result<()> {
    let base = args.run.link.unwrap_or_default();
    let links: Vec<LinkProfile> = args.rtt.iter().map(|&r| base.with_rtt_ms(r)).collect();
    execute(&args.run, &links)
}

fn execute(args: &RunArgs, links: &[LinkProfile]) -> anyhow::Result<()> {
    let started_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if args.prompts == 0 || args.max_tokens == 0 || args.concurrency.contains(&0) {
        bail!("--prompts, --max-tokens and --concurrency must be at least 1");
    }
    let mut modes: Vec<Mode> = args.modes.iter().map(|m| parse_mode(m, args.gamma)).collect::<anyhow::Result<_>>()?;
    // The baseline runs first in every wave: the others are checked against it.
    modes.retain(|m| m.name != BASELINE);
    modes.insert(0, parse_mode(BASELINE, args.gamma)?);
    if args.warm {
        for m in modes.iter_mut().filter(|m| matches!(m.kind, Kind::Speculative { .. })) {
            m.warm = Some(Arc::default());
        }
    }
    pin_self(&args.edge_cores);
    // Model threads read these once, when their pools start.
    std::env::set_var("RAYON_NUM_THREADS", args.edge_cores.len().to_string());
    std::env::set_var("CANDLE_NUM_THREADS", args.edge_cores.len().to_string());
    let text = TextSide::load(&args.target)?;
    let info = text.tokenizer.info();
    let prompts = text.spec_bench_prompts(&args.questions, args.prompts, args.max_prompt_tokens, &args.categories)?;
    if prompts.is_empty() {
        bail!("no question matched the categories and --max-prompt-tokens");
    }
    let (drafter, drafter_path, drafter_vocab) = load_drafter(&args.drafter, &args.vocab)?;
    let target_path = models::resolve(&args.target)?;

    // The cloud serves the transports the modes run over.
    let transports: Vec<TransportKind> =
        TransportKind::all().iter().copied().filter(|&k| modes.iter().any(|m| m.transport == k)).collect();
    let cloud = BenchCloud {
        model: &target_path,
        cores: &args.cloud_cores,
        token: TOKEN,
        batch_window_ms: args.batch_window_ms,
        requantize: args.requantize,
        transports: &transports,
    }
    .spawn()
    .context("starting ouro-cloud")?;
    let mut served = Vec::new();
    for &kind in &transports {
        let addr = cloud.addr_of(kind).with_context(|| format!("the cloud did not report a {kind} address"))?;
        served.push((kind, addr));
    }
    let setup = client_runtime()?;
    let cloud_info = setup.block_on(async {
        let mut c = link::connect(&format!("http://{}", cloud.addr), Some(TOKEN), None).await?;
        let cloud_info = c.info(v1::InfoRequest {}).await?.into_inner();
        if cloud_info.tokenizer_hash != info.identity {
            bail!("the cloud's tokenizer {} differs from the drafter's {}", cloud_info.tokenizer_hash, info.identity);
        }
        anyhow::Ok(cloud_info)
    })?;
    let sampling = SamplingParams { temperature: args.temperature, top_k: None, top_p: None, seed: args.seed };
    sampling.validate()?;
    let greedy = sampling.is_greedy();
    println!(
        "edge: {} ({drafter_vocab}) on cores {:?} · cloud: {} on cores {:?} · {} prompts × {} tokens, {} · modes {}",
        args.drafter,
        args.edge_cores,
        args.target,
        args.cloud_cores,
        prompts.len(),
        args.max_tokens,
        if greedy { "greedy".to_string() } else { format!("T={} seed {}", args.temperature, args.seed) },
        modes.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
    );

    let mut groups: Vec<Group> = Vec::new();
    let total = links.len() * args.concurrency.len() * modes.len() * prompts.len();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut bench = Bench {
        drafter,
        tokenizer_hash: cloud_info.tokenizer_hash.clone(),
        cloud_info,
        stop_ids: info.stop_ids.clone(),
        sampling,
        max_tokens: args.max_tokens,
        link: Vec::new(),
    };
    for profile in links {
        // One proxy per transport, of the kind its packets need.
        let proxies = setup.block_on(async {
            let mut proxies = Vec::new();
            for &(kind, addr) in &served {
                let any = "127.0.0.1:0".parse().expect("literal");
                let proxy = match kind {
                    TransportKind::Grpc => Proxy::tcp(any, addr, *profile).await?,
                    TransportKind::Quic => Proxy::udp(any, addr, *profile).await?,
                };
                proxies.push((kind, proxy));
            }
            anyhow::Ok(proxies)
        })?;
        bench.link = proxies.iter().map(|(k, p)| (*k, p.local_addr())).collect();
        let wire_bytes = || proxies.iter().map(|(_, p)| p.stats().bytes()).sum::<u64>();
        let rtt_ms = profile.rtt().as_secs_f64() * 1e3;
        for &clients in &args.concurrency {
            let mut by_mode: Vec<Group> = modes
                .iter()
                .map(|m| Group {
                    mode: m.name.clone(),
                    rtt_ms,
                    concurrency: clients,
                    cloud_cpu_s: 0.0,
                    wire_bytes: 0,
                    wall_s: 0.0,
                    samples: Vec::new(),
                })
                .collect();
            for wave in (0..prompts.len()).collect::<Vec<_>>().chunks(clients) {
                let mut reference: Vec<Vec<u32>> = Vec::new();
                for (mode, group) in modes.iter().zip(&mut by_mode) {
                    bar.set_message(format!("{} · RTT {rtt_ms:.0} ms · {clients} clients", mode.name));
                    let (cpu0, t0) = (cloud.cpu_seconds(), Instant::now());
                    let bytes0 = wire_bytes();
                    let samples = wave_of(&bench, mode, wave, &prompts)?;
                    group.cloud_cpu_s += cloud.cpu_seconds() - cpu0;
                    group.wall_s += t0.elapsed().as_secs_f64();
                    group.wire_bytes += wire_bytes() - bytes0;
                    for (k, mut s) in samples.into_iter().enumerate() {
                        if mode.name == BASELINE {
                            reference.push(s.tokens.clone());
                        } else if greedy && !matches!(mode.kind, Kind::EdgeOnly) {
                            let same = reference.get(k) == Some(&s.tokens);
                            if !same {
                                say(
                                    &bar,
                                    format!(
                                        "MISMATCH: {} on prompt {} ({}) differs from cloud-only",
                                        mode.name, s.prompt, s.category
                                    ),
                                );
                            }
                            s.matches_baseline = Some(same);
                        }
                        if bar.is_hidden() {
                            // No terminal for the bar (a log file, CI): a line per sample instead.
                            eprintln!(
                                "[{}/{total}] {} · RTT {rtt_ms:.0} ms · {clients} clients · {} {}: {} tokens, {:.2} tok/s",
                                bar.position() + 1,
                                mode.name,
                                s.category,
                                s.prompt,
                                s.tokens.len(),
                                s.tokens.len() as f64 / s.total_s.max(1e-9)
                            );
                        }
                        group.samples.push(s);
                        bar.inc(1);
                    }
                }
            }
            groups.extend(by_mode);
        }
        setup.block_on(async {
            for (_, p) in proxies {
                p.shutdown().await;
            }
        });
    }
    bar.finish_and_clear();
    drop(cloud);

    let rows = rows(&groups, BASELINE);
    let environment = Environment {
        cpu: report::cpu_model(),
        // The machine's, not this pinned process's.
        // SAFETY: sysconf has no preconditions.
        cores: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize,
        edge_cores: args.edge_cores.clone(),
        cloud_cores: args.cloud_cores.clone(),
        edge_threads: args.edge_cores.len(),
        cloud_threads: args.cloud_cores.len(),
        drafter: model_ref(&args.drafter, &drafter_path),
        target: model_ref(&args.target, &target_path),
        link: links.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | "),
        transport_note: "loopback through the netem proxies; gRPC in plaintext (--insecure-dev), QUIC with a self-signed certificate".into(),
        git_revision: report::git_revision(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_unix,
        max_tokens: args.max_tokens,
        sampling: if greedy { "greedy".into() } else { format!("temperature {} seed {}", args.temperature, args.seed) },
    };
    let results = Results { environment, baseline: BASELINE.into(), groups, rows };
    println!("{}", report::terminal_table(&results.rows));
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    results.write_json(&args.out.join("results.json"))?;
    let plots = ouro_bench::plots::write_all(&results, &args.out)?;
    std::fs::write(args.out.join("report.md"), report::markdown(&results, &plots))?;
    println!("results.json, report.md and plots in {}", args.out.display());
    let mismatches: usize = results.rows.iter().filter(|r| r.category == "all").map(|r| r.figures.mismatches).sum();
    if mismatches > 0 {
        bail!("{mismatches} speculative outputs differ from cloud-only's");
    }
    Ok(())
}

/// A line above the progress bar, or on stderr when there is no bar to keep clear.
fn say(bar: &ProgressBar, msg: String) {
    if bar.is_hidden() {
        eprintln!("{msg}");
    } else {
        bar.println(msg);
    }
}

/// One prompt per client, all at once.
fn wave_of(bench: &Bench, mode: &Mode, wave: &[usize], prompts: &[(String, Vec<u32>)]) -> anyhow::Result<Vec<Sample>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = wave
            .iter()
            .map(|&i| {
                let (cat, p) = &prompts[i];
                s.spawn(move || bench.one(mode, cat, i, p))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a client panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_transport_and_pipelining() {
        let speculative = |name: &str, gamma| match parse_mode(name, gamma).unwrap().kind {
            Kind::Speculative { strategy, pipeline, run_on: true } => (strategy.name(), pipeline),
            other => panic!("{name}: {other:?}"),
        };
        let m = parse_mode("hybrid-quic-nopipe-wait", 4).unwrap();
        assert!(matches!(m.kind, Kind::Speculative { pipeline: false, run_on: false, .. }), "{:?}", m.kind);
        assert_eq!(m.transport, TransportKind::Quic);
        assert!(matches!(parse_mode("pool-wait", 4).unwrap().kind, Kind::Speculative { run_on: false, .. }));
        let m = parse_mode("ouroboros-quic-nopipe", 4).unwrap();
        assert_eq!(m.transport, TransportKind::Quic);
        assert_eq!(speculative("ouroboros-quic-nopipe", 4), ("ouroboros".into(), false));
        assert_eq!(speculative("sd-chain", 6), ("chain6".into(), true));
        // Every draft strategy's name is a mode.
        assert_eq!(speculative("heuristic-quic", 4), ("heuristic".into(), true));
        assert_eq!(speculative("pool-nopipe", 4), ("pool".into(), false));
        assert!(matches!(parse_mode("cloud-only-quic", 4).unwrap().kind, Kind::CloudOnly { self_draft: false }));
        assert!(matches!(parse_mode("cloud-pool", 4).unwrap().kind, Kind::CloudOnly { self_draft: true }));
        for bad in [
            "edge-only-quic",
            "cloud-only-nopipe",
            "cloud-only-wait",
            "chain",
            "ouroboros-wait-quic",
            "sd-chain-quic-x",
        ] {
            assert!(parse_mode(bad, 4).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_clock_groups_tokens_by_delivery() {
        let mut c = Clock::new();
        c.push(&[1, 2, 3]);
        c.push(&[]);
        c.push(&[4]);
        let s = c.sample("m", "qa", 0, 2, 2);
        assert_eq!(s.tokens, vec![1, 2, 3, 4]);
        assert_eq!(s.accepted_per_round, vec![3, 1]);
        assert_eq!(s.arrivals_s.len(), 4);
        assert!(s.ttft_s <= s.total_s);
    }
}
