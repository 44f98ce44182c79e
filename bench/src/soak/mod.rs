//! `ouro-bench soak`: bounded load on one real server process, on loopback,
//! for a set time, checking every answer and watching the server's memory.
//!
//! Two scenarios, each starting its own server:
//!
//! - `cloud`: concurrent speculative sessions against one `ouro-cloud
//!   serve`, their drafts replayed from the target's own greedy output (see
//!   [`crate::replay`]) so the load costs no model time. Every session's
//!   text must equal `Generate`'s for its prompt.
//! - `edge`: concurrent HTTP clients sending chat completions to one
//!   `ouro-edge serve` running its drafter alone. Every 200 must carry the
//!   text a solo request got; every refusal must be a 429 with `Retry-After`.
//!
//! Both stop starting requests at the deadline (or after a request count),
//! let the ones in flight finish within a timeout, and then judge the run:
//! it fails on any mismatch, any admitted request that failed, any refusal
//! that was late or of the wrong kind, and RSS growth after warm-up past a
//! bound. See docs/RELIABILITY.md, "Load and soak".

mod cloud;
mod edge;
mod http;
pub mod netstat;
mod prompts;
mod report;
pub mod rss;
pub mod stalls;
pub mod tally;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, ValueEnum};

pub use report::{Environment, LoadFigures, SoakReport};

use crate::process::{pin_self, ProcessError};
use rss::{Monitor, Sample, Watched};
use tally::Tally;

#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error("{0}")]
    Args(String),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Setup(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SoakError {
    let what = what.into();
    move |source| SoakError::Io { what, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Speculative sessions (replayed drafts) against one `ouro-cloud serve`.
    Cloud,
    /// HTTP chat completions against one `ouro-edge serve` (drafter alone).
    Edge,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cloud => "cloud",
            Scenario::Edge => "edge",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Which server to load.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// How long the load runs, seconds. No request starts after it; those in
    /// flight get --request-timeout to finish.
    #[arg(long, env = "OURO_SOAK_DURATION", default_value_t = 600.0)]
    pub duration: f64,
    /// Also stop after this many requests (refused ones count), whichever comes first.
    #[arg(long, env = "OURO_SOAK_REQUESTS")]
    pub requests: Option<u64>,
    /// The model of both sides (pinned name or GGUF path).
    #[arg(long, env = "OURO_SOAK_MODEL", default_value = "smollm2-135m")]
    pub model: String,
    /// Spec-Bench questions (JSONL with `category` and `turns`).
    #[arg(long, env = "OURO_SOAK_QUESTIONS", default_value = "../shared/data/spec_bench/question.jsonl")]
    pub questions: PathBuf,
    /// Distinct prompts, taken round-robin across categories; clients cycle through them.
    #[arg(long, default_value_t = 16)]
    pub prompts: usize,
    /// Skip questions longer than this many prompt tokens.
    #[arg(long, default_value_t = 256)]
    pub max_prompt_tokens: usize,
    /// New tokens per request (default: 64 for a cloud session, 16 for an edge chat completion).
    #[arg(long)]
    pub max_tokens: Option<u32>,

    /// cloud: concurrent sessions, each a loop of generations.
    #[arg(long, default_value_t = 64)]
    pub sessions: usize,
    /// cloud: clients beyond --sessions, so that the cloud's session limit is
    /// reached and refusals happen (with the default 64 sessions, the cloud's
    /// default --max-sessions 64 is exactly full without them).
    #[arg(long, default_value_t = 8)]
    pub extra_sessions: usize,
    /// cloud: bearer tokens the sessions are spread over (round-robin). The
    /// cloud allows one token half of --max-sessions by default; four tokens
    /// keep every token under that quota, so the limit that binds is the
    /// cloud-wide one.
    #[arg(long, default_value_t = 4)]
    pub client_tokens: usize,
    /// cloud: pass --max-sessions to the cloud (default: the cloud's default).
    #[arg(long)]
    pub cloud_max_sessions: Option<usize>,
    /// cloud: draft tokens per replayed round.
    #[arg(long, default_value_t = 4)]
    pub gamma: usize,
    /// cloud: probability that a replayed draft token is right (wrong ones
    /// make the cloud reject and roll back, as real drafts do).
    #[arg(long, default_value_t = 0.8)]
    pub accept: f64,
    /// cloud: how long a refused session waits before opening again, ms.
    #[arg(long, default_value_t = 500)]
    pub retry_ms: u64,

    /// edge: concurrent HTTP clients.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// edge: pass --max-queue to the daemon (default: the daemon's default).
    #[arg(long)]
    pub edge_max_queue: Option<usize>,

    /// The run fails when a server's RSS grows more than this after warm-up, MiB.
    #[arg(long, default_value_t = 64.0)]
    pub rss_growth_mb: f64,
    /// Warm-up: this fraction of --duration into the load.
    #[arg(long, default_value_t = 0.2)]
    pub warmup_fraction: f64,
    /// A refusal slower than this was not immediate, ms (the run fails).
    #[arg(long, default_value_t = 1000.0)]
    pub refusal_max_ms: f64,
    /// An admitted request that takes longer than this failed, seconds.
    #[arg(long, default_value_t = 300.0)]
    pub request_timeout: f64,
    /// Cores of the server process (default: core 1 when there are two or more).
    #[arg(long, value_delimiter = ',')]
    pub server_cores: Option<Vec<usize>>,
    /// Cores of the load generator (default: core 0 when there are two or more).
    #[arg(long, value_delimiter = ',')]
    pub client_cores: Option<Vec<usize>>,
    /// Where results.json, report.md and rss.csv go (default: `bench-results/soak/<scenario>`).
    #[arg(long, env = "OURO_SOAK_OUT")]
    pub out: Option<PathBuf>,
}

/// Parses soak flags alone, for callers that are not the `ouro-bench` CLI (tests).
#[derive(Parser)]
struct Standalone {
    #[command(flatten)]
    args: SoakArgs,
}

impl SoakArgs {
    /// The arguments `flags` would give `ouro-bench soak`.
    pub fn from_flags<I: AsRef<str>>(flags: &[I]) -> Result<Self, SoakError> {
        let argv = std::iter::once("soak").chain(flags.iter().map(AsRef::as_ref));
        Standalone::try_parse_from(argv).map(|s| s.args).map_err(|e| SoakError::Args(e.to_string()))
    }

    pub fn max_tokens(&self) -> u32 {
        self.max_tokens.unwrap_or(match self.scenario {
            Scenario::Cloud => 64,
            Scenario::Edge => 16,
        })
    }

    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from("bench-results/soak").join(self.scenario.name()))
    }

    fn validate(&self) -> Result<(), SoakError> {
        let bad = |m: &str| Err(SoakError::Args(m.into()));
        if !(self.duration.is_finite() && self.duration > 0.0) {
            return bad("--duration must be positive");
        }
        if self.prompts == 0 || self.max_tokens() == 0 || self.requests == Some(0) {
            return bad("--prompts, --max-tokens and --requests must be at least 1");
        }
        if self.sessions == 0 || self.clients == 0 || self.client_tokens == 0 || self.gamma == 0 {
            return bad("--sessions, --clients, --client-tokens and --gamma must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.accept) || !(0.0..1.0).contains(&self.warmup_fraction) {
            return bad("--accept must be in [0, 1] and --warmup-fraction in [0, 1)");
        }
        if !(self.request_timeout > 0.0 && self.refusal_max_ms > 0.0 && self.rss_growth_mb >= 0.0) {
            return bad("--request-timeout and --refusal-max-ms must be positive, --rss-growth-mb not negative");
        }
        Ok(())
    }

    fn warmup_at_s(&self) -> f64 {
        self.duration * self.warmup_fraction
    }
}

/// Which cores the server and the load generator run on.
#[derive(Debug, Clone)]
pub(crate) struct Cores {
    pub server: Vec<usize>,
    pub client: Vec<usize>,
}

impl Cores {
    fn of(args: &SoakArgs) -> Self {
        let online = online_cores();
        // Apart when there is room for it, so the load generator does not
        // take cycles from the server it measures.
        let (server, client) = if online >= 2 { (vec![1], vec![0]) } else { (Vec::new(), Vec::new()) };
        Self {
            server: args.server_cores.clone().unwrap_or(server),
            client: args.client_cores.clone().unwrap_or(client),
        }
    }

    /// Model threads for the server: one per core it may use.
    fn server_threads(&self) -> usize {
        self.server.len().max(1)
    }
}

/// Cores online on the machine (not those this thread may use: it may be pinned already).
pub(crate) fn online_cores() -> usize {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).max(1) as usize
}

/// When the load stops: at the deadline, or when the request budget is spent.
pub(crate) struct Stop {
    deadline: Instant,
    left: Option<AtomicU64>,
}

impl Stop {
    fn new(start: Instant, args: &SoakArgs) -> Self {
        Self { deadline: start + Duration::from_secs_f64(args.duration), left: args.requests.map(AtomicU64::new) }
    }

    /// Whether another request may start (and takes it from the budget).
    pub fn next(&self) -> bool {
        Instant::now() < self.deadline
            && self
                .left
                .as_ref()
                .is_none_or(|l| l.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok())
    }
}

/// What a scenario measured, before it is judged.
pub(crate) struct Outcome {
    /// How the scenario was set up, as (what, value) lines for the report.
    pub setup: Vec<(String, String)>,
    pub processes: Vec<String>,
    pub counts: tally::Counts,
    /// From the first request to the last one finishing.
    pub load_s: f64,
    pub samples: Vec<Sample>,
    pub stalls: stalls::Stalls,
    /// Handshakes the kernel dropped at full accept queues during the load.
    pub listen: Option<netstat::ListenCounters>,
}

/// Runs `clients` to completion on `rt` while sampling `watched` and the
/// load generator's own stalls, with a progress line every 30 s. Returns
/// the load's length, the samples, the stalls and the handshakes dropped.
pub(crate) fn drive<F>(
    rt: &tokio::runtime::Runtime,
    watched: Vec<Watched>,
    start: Instant,
    tally: Arc<Tally>,
    clients: Vec<F>,
) -> (f64, Vec<Sample>, stalls::Stalls, Option<netstat::ListenCounters>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let progress = tally.clone();
    let mut next_line = 30.0;
    let monitor = Monitor::start(watched, start, Duration::from_secs(1), move |t, round| {
        if t >= next_line {
            next_line += 30.0;
            let rss: Vec<String> = round
                .iter()
                .map(|s| format!("{} {}", s.process, s.rss_kib.map_or("gone".into(), |k| format!("{} MiB", k / 1024))))
                .collect();
            eprintln!("soak: {t:>5.0} s · {} · RSS {}", progress.progress(), rss.join(", "));
        }
    });
    let stalls = Arc::new(std::sync::Mutex::new(stalls::Stalls::default()));
    let listen_before = netstat::ListenCounters::read();
    rt.block_on(async {
        let probe = tokio::spawn(stalls::probe(start, stalls.clone()));
        let mut set = tokio::task::JoinSet::new();
        for c in clients {
            set.spawn(c);
        }
        while let Some(done) = set.join_next().await {
            if let Err(e) = done {
                tally.failed("client task", e);
            }
        }
        probe.abort();
    });
    let load_s = start.elapsed().as_secs_f64();
    let listen = listen_before.zip(netstat::ListenCounters::read()).map(|(a, b)| a.since(b));
    let mut stalls = stalls.lock().unwrap_or_else(|e| e.into_inner()).clone();
    stalls.finish();
    (load_s, monitor.stop(), stalls, listen)
}

/// The load generator's runtime: one worker per core it is pinned to.
fn runtime(cores: &Cores) -> Result<tokio::runtime::Runtime, SoakError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.client.len().max(1))
        .enable_all()
        .build()
        .map_err(io("starting the load generator's runtime"))
}

/// Runs one scenario, writes results.json, report.md and rss.csv to its
/// output directory, and returns the report (judged: see [`SoakReport::failures`]).
pub fn run(args: &SoakArgs) -> Result<SoakReport, SoakError> {
    args.validate()?;
    let started = std::time::SystemTime::now();
    let cores = Cores::of(args);
    pin_self(&cores.client);
    let model = ouro_config::models::resolve(&args.model).map_err(|e| SoakError::Setup(e.to_string()))?;
    let prompts = prompts::load(&model, &args.questions, args.prompts, args.max_prompt_tokens)?;
    let out = args.out_dir();
    std::fs::create_dir_all(&out).map_err(io(format!("creating {}", out.display())))?;
    let rt = runtime(&cores)?;
    let outcome = match args.scenario {
        Scenario::Cloud => cloud::run(args, &cores, &rt, &prompts, &model, &out)?,
        Scenario::Edge => edge::run(args, &cores, &rt, &prompts, &model, &out)?,
    };
    let environment = Environment::now(args, &cores, &model, started);
    let report = SoakReport::judge(args, environment, outcome);
    report.write(&out)?;
    Ok(report)
}
