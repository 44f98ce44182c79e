//! The engine behind the local API: speculative generation with the cloud,
//! re-opening an evicted session from the committed tokens, and the drafter
//! alone when the cloud is gone (`--fallback local`), said in every response.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::{ApiError, Backend, ChatMessage, GenEvent, GenRequest, OpenAiFinish, OuroStats};
use crate::link::{LinkError, SpecRequest};
use ouro_common::chat::Message;
use ouro_common::controller::Learned;
use ouro_common::draft::{PhrasePool, PoolMark};
use ouro_common::generate::{generate, GenerateConfig};
use ouro_common::model::CausalLm;
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::{DraftStrategy, SpecStats};
use ouro_common::tokenizer::StreamDecoder;
use tokio::sync::mpsc;
use tonic::Code;

use super::cloud::{backoff, Cloud, ConnectError};
use super::local::LocalModel;

pub struct EdgeBackend<C: Cloud> {
    local: Arc<LocalModel>,
    pub cloud: Option<Arc<C>>,
    opts: Arc<BackendOptions>,
    /// What a request started now would run as (see [`Mode`]).
    mode: Arc<Mutex<Mode>>,
    /// Ouroboros' phrase pool, warm across this device's requests.
    pool: Arc<Mutex<PhrasePool>>,
    /// What the draft policy learned by the end of the latest generation
    /// (acceptance per depth, drafter time, RTT, the plan): the next one
    /// starts from it.
    learned: Arc<Mutex<Option<Learned>>>,
    workers: Workers,
}

/// The daemon's view of the cloud, for `/health`, `x-ouro-mode` and new requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The cloud answered last time: generations are verified.
    Speculative,
    /// The cloud is unreachable and `--fallback local`: the drafter alone.
    Local,
    /// The cloud is unreachable and the fallback is not local: requests fail or wait.
    Unavailable,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Speculative => "speculative",
            Mode::Local => "local",
            Mode::Unavailable => "unavailable",
        }
    }
}

/// What to do when the cloud is unreachable or lost mid-generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Carry on with the drafter alone, and say so in the response.
    Local,
    /// End the request with an error.
    Fail,
    /// Retry the cloud with backoff until it answers (up to --wait-secs).
    Wait,
}

/// How the engine speculates and degrades.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    pub fallback: Fallback,
    pub strategy: Arc<dyn DraftStrategy>,
    pub pool_file: Option<std::path::PathBuf>,
    /// Draft the next round while a verdict is in flight.
    pub pipeline: bool,
    /// Let the cloud decode on its own while it has no round in hand.
    pub run_on: bool,
    /// The drafter reads at most this many of the prompt's last tokens (0:
    /// all of it).
    pub draft_window: usize,
    /// How often a generation running on the drafter alone retries the cloud.
    pub reprobe: Duration,
    /// How long a request waits for a cloud that refuses it for load before
    /// the client is told to come back later.
    pub busy_wait: Duration,
    /// Generation threads: at most this many generations run at once (the
    /// API's admission control queues the rest).
    pub workers: usize,
}

/// A fixed set of generation threads, each with its own small runtime: the
/// thread drafts, its runtime's worker moves the link's bytes meanwhile, so
/// drafting overlaps the round trip (see `link::session`). Fixed, so a burst
/// of requests cannot start a thread (and a runtime) each.
struct Workers {
    tx: std::sync::mpsc::Sender<Task>,
}

type Task = Box<dyn FnOnce(&tokio::runtime::Runtime) + Send>;

impl Workers {
    fn start(n: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("ouro-gen-{i}")).spawn(move || loop {
                let task = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(task) = task else { return };
                // A panicking generation drops its sender (the client hears
                // the generation failed); the thread serves the next one.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(&rt))).is_err() {
                    tracing::error!("a generation panicked");
                }
            })?;
        }
        Ok(Self { tx })
    }

    fn run(&self, task: Task) -> bool {
        self.tx.send(task).is_ok()
    }
}

impl<C: Cloud> EdgeBackend<C> {
    /// The engine for `local`, verified by `cloud` (none: the drafter alone).
    pub fn new(local: Arc<LocalModel>, cloud: Option<C>, opts: BackendOptions) -> std::io::Result<Self> {
        let cloud = cloud.map(Arc::new);
        let mode = if cloud.is_some() { Mode::Speculative } else { Mode::Local };
        Ok(Self {
            local,
            cloud,
            mode: Arc::new(Mutex::new(mode)),
            pool: Arc::new(Mutex::new(load_pool(opts.pool_file.as_deref()))),
            learned: Arc::default(),
            workers: Workers::start(opts.workers)?,
            opts: Arc::new(opts),
        })
    }

    /// Keeps the daemon's mode true while no request is running: probes the
    /// cloud every `reprobe` and records whether it answers. Runs forever;
    /// spawn it on the daemon's runtime.
    pub async fn watch_cloud(self: Arc<Self>) {
        let Some(cloud) = self.cloud.clone() else { return };
        loop {
            tokio::time::sleep(self.opts.reprobe).await;
            let up = match cloud.connect(None).await {
                Ok(_) => true,
                // A cloud that answers but refuses us is up; the requests say why.
                Err(ConnectError::Status(s)) | Err(ConnectError::Link(LinkError::Status(s))) => {
                    !matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown)
                }
                Err(ConnectError::Mismatch(_)) => true,
                Err(_) => false,
            };
            set_mode(&self.mode, self.mode_for(up));
        }
    }

    fn mode_for(&self, cloud_up: bool) -> Mode {
        mode_for(cloud_up, self.opts.fallback)
    }
}

fn mode_for(cloud_up: bool, fallback: Fallback) -> Mode {
    match (cloud_up, fallback) {
        (true, _) => Mode::Speculative,
        (false, Fallback::Local) => Mode::Local,
        (false, _) => Mode::Unavailable,
    }
}

fn set_mode(cell: &Mutex<Mode>, mode: Mode) {
    *cell.lock().unwrap_or_else(|e| e.into_inner()) = mode;
}

/// A saved pool, or an empty one (a missing or unreadable file only costs warmth).
fn load_pool(path: Option<&std::path::Path>) -> PhrasePool {
    match path {
        Some(p) if p.exists() => PhrasePool::load(p).unwrap_or_else(|e| {
            tracing::warn!("ignoring phrase pool {}: {e}", p.display());
            PhrasePool::default()
        }),
        _ => PhrasePool::default(),
    }
}

impl<C: Cloud> Backend for EdgeBackend<C> {
    fn model_id(&self) -> String {
        self.local.name.clone()
    }

    fn max_context(&self) -> usize {
        self.local.model.config().max_context
    }

    fn current_mode(&self) -> String {
        self.mode.lock().unwrap_or_else(|e| e.into_inner()).as_str().to_string()
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(self.local.model.config().vocab_size)
    }

    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ApiError> {
        self.local.chat_ids(messages as &[Message]).map_err(|e| ApiError::invalid("messages", e.to_string()))
    }

    fn text_prompt(&self, prompt: &str) -> Result<Vec<u32>, ApiError> {
        let info = self.local.tokenizer.info();
        let mut ids: Vec<u32> = if info.add_bos { info.bos.into_iter().collect() } else { Vec::new() };
        ids.extend(self.local.tokenizer.encode(prompt, true).map_err(|e| ApiError::invalid("prompt", e.to_string()))?);
        Ok(ids)
    }

    fn generate(&self, req: GenRequest) -> mpsc::Receiver<GenEvent> {
        // Room for every event, so the engine never waits on a slow reader and
        // a closed channel is how it learns the client went away.
        let (tx, rx) = mpsc::channel(req.max_tokens + 8);
        let job = Job {
            local: self.local.clone(),
            cloud: self.cloud.clone(),
            opts: self.opts.clone(),
            mode: self.mode.clone(),
            pool: self.pool.clone(),
            learned: self.learned.clone(),
        };
        let failed = tx.clone();
        if !self.workers.run(Box::new(move |rt| rt.block_on(job.run(req, tx)))) {
            let _ = failed.try_send(GenEvent::Error("the generation threads have stopped".into()));
        }
        rx
    }
}

struct Job<C: Cloud> {
    local: Arc<LocalModel>,
    cloud: Option<Arc<C>>,
    opts: Arc<BackendOptions>,
    mode: Arc<Mutex<Mode>>,
    pool: Arc<Mutex<PhrasePool>>,
    learned: Arc<Mutex<Option<Learned>>>,
}

/// Turns committed tokens into text events, and knows when to stop.
///
/// The end-of-sequence token is not part of the completion: it is neither
/// sent nor counted. So that the same text always ends the same way, the
/// engine generates one token past `max_tokens` when the context has room:
/// if that token ends the sequence the finish is `stop`, else it is dropped
/// unseen and the finish is `length`. (Without it, a text of exactly
/// `max_tokens` tokens would say `length` though the model had finished.)
struct Emitter<'a> {
    tx: mpsc::Sender<GenEvent>,
    decoder: StreamDecoder<&'a ouro_common::tokenizer::Tokenizer>,
    tokens: Vec<u32>,
    stop_ids: Vec<u32>,
    /// The completion's budget, and the engine's (one more, room allowing).
    max_tokens: usize,
    budget: usize,
    stopped: bool,
    full: bool,
    cancelled: bool,
}

impl Emitter<'_> {
    fn push(&mut self, toks: &[u32]) -> ControlFlow<()> {
        for &t in toks {
            if self.stop_ids.contains(&t) {
                self.stopped = true;
                return ControlFlow::Break(());
            }
            if self.tokens.len() >= self.max_tokens {
                self.full = true;
                return ControlFlow::Break(());
            }
            self.tokens.push(t);
            let text = self.decoder.push(t).ok().flatten().unwrap_or_default();
            if self.tx.try_send(GenEvent::Text { text, tokens: 1 }).is_err() {
                self.cancelled = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Tokens the engine may still generate (lookahead included).
    fn room(&self) -> usize {
        self.budget - self.tokens.len()
    }

    fn unfinished(&self) -> bool {
        !self.cancelled && !self.stopped && !self.full && self.tokens.len() < self.budget
    }
}

/// How a failed attempt at the cloud is handled.
enum Failure {
    /// The cloud cannot verify this drafter, or refuses its credentials:
    /// configuration errors, never retried and never papered over.
    Fatal(String),
    /// The cloud refused for load (RESOURCE_EXHAUSTED): back-pressure.
    Busy(String),
    /// The session is gone (evicted, expired): re-open it at once.
    LostSession(String),
    /// The cloud is unreachable or failed: the fallback policy decides.
    Down(String),
}

fn classify(err: ConnectError) -> Failure {
    if err.is_auth() {
        return Failure::Fatal(format!(
            "the cloud refused this edge's credentials ({err}); check --token / --token-file"
        ));
    }
    let status = match &err {
        ConnectError::Mismatch(m) => return Failure::Fatal(m.clone()),
        ConnectError::Status(s) | ConnectError::Link(LinkError::Status(s)) => Some(s),
        _ => None,
    };
    match status.map(|s| s.code()) {
        Some(Code::ResourceExhausted) => Failure::Busy(err.to_string()),
        Some(Code::NotFound) => Failure::LostSession(err.to_string()),
        _ => Failure::Down(err.to_string()),
    }
}

impl<C: Cloud> Job<C> {
    /// Takes in what a generation's copy of the pool learned, and saves the
    /// result (under the lock, so saves land in the order of the merges).
    fn merge_pool(&self, pool: &PhrasePool, mark: PoolMark) {
        let mut shared = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        shared.merge_since(pool, mark);
        if let Some(path) = &self.opts.pool_file {
            if let Err(e) = shared.save(path.as_path()) {
                tracing::warn!("saving the phrase pool to {}: {e}", path.display());
            }
        }
    }

    async fn run(self, req: GenRequest, tx: mpsc::Sender<GenEvent>) {
        let info = self.local.tokenizer.info();
        let sampling = SamplingParams {
            temperature: req.temperature,
            top_k: None,
            top_p: req.top_p,
            seed: req.seed.unwrap_or_else(rand::random),
        };
        let lookahead = usize::from(req.prompt.len() + req.max_tokens < self.local.model.config().max_context);
        let mut out = Emitter {
            tx: tx.clone(),
            decoder: StreamDecoder::new(&self.local.tokenizer, true),
            tokens: Vec::new(),
            stop_ids: info.stop_ids.clone(),
            max_tokens: req.max_tokens,
            budget: req.max_tokens + lookahead,
            stopped: false,
            full: false,
            cancelled: false,
        };
        let mut stats = OuroStats { mode: "speculative".into(), ..OuroStats::default() };
        let mut run = SpecStats::default();
        let mut local_only = self.cloud.is_none();
        let mut attempt = 0u32;
        let started = Instant::now();
        let mut busy_since: Option<Instant> = None;
        let stop_ids = out.stop_ids.clone();
        // Every connection of this generation carries one key, so behind a
        // proxy its re-opens reach the replica that had its session.
        let affinity = crate::link::affinity::fresh_key();
        // Speculate until done; on a lost session re-open from the committed
        // tokens; on a busy cloud wait (and then tell the client to come
        // back); on a lost cloud follow the fallback policy. With `local`,
        // the drafter carries on alone until the cloud answers again, and
        // speculation resumes on everything committed so far, in the cloud
        // session it had where the cloud still holds it (`speculate_into`
        // resumes the session `run` names).
        while out.unfinished() {
            if local_only {
                let back = self.local_until_cloud_returns(&req, sampling, &mut out, &mut stats).await;
                match back {
                    Ok(true) => {
                        tracing::info!("the cloud is back: resuming speculation after {} tokens", out.tokens.len());
                        stats.cloud_resumes += 1;
                        local_only = false;
                        attempt = 0;
                        continue;
                    }
                    Ok(false) => break,
                    Err(e) => {
                        let _ = tx.try_send(GenEvent::Error(format!("local generation: {e}")));
                        return;
                    }
                }
            }
            let cloud = self.cloud.as_ref().expect("checked above");
            let err = match cloud.connect(Some(&affinity)).await {
                Ok((mut conn, info)) => {
                    let mut committed = req.prompt.clone();
                    committed.extend_from_slice(&out.tokens);
                    let warm = self.learned.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let spec = SpecRequest {
                        tokenizer_hash: &info.tokenizer_hash,
                        prompt: &committed,
                        max_new: out.room(),
                        stop_ids: &stop_ids,
                        strategy: self.opts.strategy.clone(),
                        sampling,
                        pipeline: self.opts.pipeline,
                        info: Some(&info),
                        warm: warm.as_ref(),
                        draft_window: self.opts.draft_window,
                        run_on: self.opts.run_on,
                    };
                    // A copy, merged back when the generation ends, finished
                    // or cancelled: concurrent requests keep each other's
                    // phrases, and one dropped mid-way loses nothing.
                    let (mut pool, mark) = {
                        let shared = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                        (shared.clone(), shared.mark())
                    };
                    let model: &dyn CausalLm = &self.local.model;
                    let work = C::speculate(&mut conn, model, &spec, &mut pool, &mut run, |t| out.push(t));
                    // A client that leaves while we wait on the cloud (its
                    // prefill, a verdict) ends the session now: dropping the
                    // stream tells the cloud to stop, instead of both sides
                    // computing for nobody until the next token is sent.
                    let r = tokio::select! {
                        r = work => Some(r),
                        () = tx.closed() => None,
                    };
                    self.merge_pool(&pool, mark);
                    if let Some(learned) = run.learned.take() {
                        *self.learned.lock().unwrap_or_else(|e| e.into_inner()) = Some(learned);
                    }
                    if let Some(rtt) = run.mean_rtt_ms() {
                        stats.cloud_rtt_ms = Some(rtt);
                    }
                    match r {
                        None => {
                            out.cancelled = true;
                            break;
                        }
                        Some(Ok(())) => {
                            set_mode(&self.mode, Mode::Speculative);
                            busy_since = None;
                            continue;
                        }
                        Some(Err(e)) => ConnectError::Link(e),
                    }
                }
                Err(e) => e,
            };
            tracing::warn!("cloud link: {err}");
            match classify(err) {
                Failure::Fatal(m) => {
                    let _ = tx.try_send(GenEvent::Error(m));
                    return;
                }
                Failure::LostSession(_) if attempt < 3 => {
                    attempt += 1;
                    continue;
                }
                // Already answering with the drafter alone: carry on so
                // rather than fail a response that has been flowing.
                Failure::Busy(_) if stats.local_tokens > 0 && self.opts.fallback == Fallback::Local => {
                    local_only = true;
                }
                Failure::Busy(m) => {
                    let since = *busy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.opts.busy_wait {
                        metrics::counter!("ouro_edge_cloud_busy_total").increment(1);
                        let message = format!("the cloud verifier is at capacity: {m}");
                        let event = if out.tokens.is_empty() {
                            GenEvent::Busy { message, retry_after: Duration::from_secs(2) }
                        } else {
                            GenEvent::Error(message)
                        };
                        let _ = tx.try_send(event);
                        return;
                    }
                    tokio::time::sleep(backoff(attempt.min(4))).await;
                    attempt += 1;
                }
                Failure::LostSession(m) | Failure::Down(m) => match self.opts.fallback {
                    Fallback::Local => {
                        local_only = true;
                        set_mode(&self.mode, Mode::Local);
                    }
                    Fallback::Fail => {
                        set_mode(&self.mode, Mode::Unavailable);
                        let _ = tx.try_send(GenEvent::Error(format!("the cloud verifier is unavailable: {m}")));
                        return;
                    }
                    Fallback::Wait => {
                        if started.elapsed() > cloud.wait() {
                            set_mode(&self.mode, Mode::Unavailable);
                            let _ = tx.try_send(GenEvent::Error(format!("the cloud stayed unavailable: {m}")));
                            return;
                        }
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                },
            }
        }
        // A response any of whose tokens the cloud did not verify is "local".
        let mode = if stats.local_tokens > 0 { "local" } else { "speculative" };
        stats.mode = mode.into();
        // Operators see degraded operation without reading responses.
        metrics::counter!("ouro_edge_generations_total", "mode" => mode).increment(1);
        metrics::gauge!("ouro_edge_cloud_verified").set(if mode == "local" { 0.0 } else { 1.0 });
        if out.cancelled {
            return;
        }
        if let Ok(Some(rest)) = out.decoder.flush() {
            let _ = tx.try_send(GenEvent::Text { text: rest, tokens: 0 });
        }
        stats.rounds = run.rounds;
        stats.drafted = run.drafted_nodes;
        stats.accepted = run.accepted;
        stats.mean_accepted = if run.rounds > 0 { run.accepted as f64 / run.rounds as f64 } else { 0.0 };
        let finish_reason = if out.stopped { OpenAiFinish::Stop } else { OpenAiFinish::Length };
        let _ = tx.try_send(GenEvent::Done { finish_reason, completion_tokens: out.tokens.len(), stats });
    }

    /// The drafter alone, continuing exactly where the text so far ends,
    /// while a probe retries the cloud in the background. Returns whether
    /// the generation stopped because the cloud is back (`true`) rather than
    /// because it finished.
    async fn local_until_cloud_returns(
        &self,
        req: &GenRequest,
        sampling: SamplingParams,
        out: &mut Emitter<'_>,
        stats: &mut OuroStats,
    ) -> Result<bool, ouro_common::generate::GenerateError> {
        let back = Arc::new(AtomicBool::new(false));
        let probe = self.cloud.clone().map(|cloud| {
            let (back, every) = (back.clone(), self.opts.reprobe);
            tokio::spawn(async move {
                let answers = || {
                    let cloud = cloud.clone();
                    async move { cloud.connect(None).await.is_ok() }
                };
                probe_until_up(every, tokio::time::sleep, answers).await;
                back.store(true, Ordering::Release);
            })
        });
        let mut committed = req.prompt.clone();
        committed.extend_from_slice(&out.tokens);
        let cfg = GenerateConfig {
            max_new_tokens: out.room(),
            // Each stretch gets its own stream of the seed, so a resumed
            // stretch does not replay the same random draws.
            sampling: SamplingParams { seed: sampling.seed.wrapping_add(out.tokens.len() as u64), ..sampling },
            stop_ids: out.stop_ids.clone(),
        };
        let r = generate(&self.local.model, &committed, &cfg, |t| {
            let before = out.tokens.len();
            let flow = out.push(&[t]);
            stats.local_tokens += out.tokens.len() - before;
            flow?;
            if back.load(Ordering::Acquire) {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        if let Some(p) = probe {
            p.abort();
        }
        r?;
        Ok(back.load(Ordering::Acquire))
    }
}

/// Tries `up` every `every` until it says the cloud answers. A steady
/// interval, not a growing backoff: `--reprobe-ms` is the operator's promise
/// of how soon a returned cloud takes over, and one connect per interval is
/// cheap for the cloud.
async fn probe_until_up<S, U>(every: Duration, mut sleep: impl FnMut(Duration) -> S, mut up: impl FnMut() -> U)
where
    S: std::future::Future<Output = ()>,
    U: std::future::Future<Output = bool>,
{
    loop {
        sleep(every).await;
        if up().await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cloud_that_stays_down_is_retried_at_the_set_interval() {
        let every = Duration::from_millis(50);
        let mut slept = Vec::new();
        let mut tries = 0;
        let sleep = |d| {
            slept.push(d);
            std::future::ready(())
        };
        let up = || {
            tries += 1;
            std::future::ready(tries == 9)
        };
        probe_until_up(every, sleep, up).await;
        assert_eq!(tries, 9);
        assert_eq!(slept, vec![every; 9], "the probe must not back off past --reprobe-ms");
    }
}
