//! The engine behind the local API: speculative generation with the cloud,
//! re-opening an evicted session from the committed tokens, and the drafter
//! alone when the cloud is gone (`--fallback local`), said in every response.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ouro_common::chat::Message;
use ouro_common::draft::PhrasePool;
use ouro_common::generate::{generate, GenerateConfig};
use ouro_common::model::CausalLm;
use ouro_common::sampling::SamplingParams;
use ouro_common::tokenizer::StreamDecoder;
use ouro_edge::api::{ApiError, Backend, ChatMessage, FinishReason, GenEvent, GenRequest, OuroStats};
use ouro_edge::link::{speculate_into, LinkError, Plan, SpecRequest, SpecRun};
use tokio::sync::mpsc;
use tonic::Code;

use super::cloud::{backoff, CloudConfig, Conn, ConnectError};
use super::config::Fallback;
use crate::local::LocalModel;

pub struct EdgeBackend {
    local: Arc<LocalModel>,
    pub cloud: Option<Arc<CloudConfig>>,
    opts: Arc<BackendOptions>,
    /// What a request started now would run as: "speculative" or "local".
    mode: Arc<Mutex<&'static str>>,
    /// Ouroboros' phrase pool, warm across this device's requests.
    pool: Arc<Mutex<PhrasePool>>,
}

/// How the engine speculates and degrades.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    pub fallback: Fallback,
    pub plan: Plan,
    pub pool_file: Option<std::path::PathBuf>,
    /// Draft the next round while a verdict is in flight.
    pub pipeline: bool,
    /// How often a generation running on the drafter alone retries the cloud.
    pub reprobe: Duration,
}

impl EdgeBackend {
    pub fn new(local: Arc<LocalModel>, cloud: Option<CloudConfig>, opts: BackendOptions) -> Self {
        let info = local.tokenizer.info();
        let cloud = cloud.map(|mut c| {
            c.expect = Some((info.identity.clone(), local.model.config().vocab_size as u32));
            Arc::new(c)
        });
        let mode = if cloud.is_some() { "speculative" } else { "local" };
        Self {
            local,
            cloud,
            mode: Arc::new(Mutex::new(mode)),
            pool: Arc::new(Mutex::new(load_pool(opts.pool_file.as_deref()))),
            opts: Arc::new(opts),
        }
    }
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

impl Backend for EdgeBackend {
    fn model_id(&self) -> String {
        self.local.name.clone()
    }

    fn max_context(&self) -> usize {
        self.local.model.config().max_context
    }

    fn current_mode(&self) -> String {
        self.mode.lock().map(|m| m.to_string()).unwrap_or_else(|_| "local".into())
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
        };
        std::thread::spawn(move || {
            // This thread drafts; the worker moves the link's bytes meanwhile,
            // so drafting overlaps the round trip (see `link::session`).
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
            match rt {
                Ok(rt) => rt.block_on(job.run(req, tx)),
                Err(e) => {
                    let _ = tx.try_send(GenEvent::Error(format!("starting the engine: {e}")));
                }
            }
        });
        rx
    }
}

struct Job {
    local: Arc<LocalModel>,
    cloud: Option<Arc<CloudConfig>>,
    opts: Arc<BackendOptions>,
    mode: Arc<Mutex<&'static str>>,
    pool: Arc<Mutex<PhrasePool>>,
}

/// Turns committed tokens into text events, and knows when to stop.
struct Emitter<'a> {
    tx: mpsc::Sender<GenEvent>,
    decoder: StreamDecoder<&'a ouro_common::tokenizer::Tokenizer>,
    tokens: Vec<u32>,
    stop_ids: Vec<u32>,
    cancelled: bool,
}

impl Emitter<'_> {
    fn push(&mut self, toks: &[u32]) -> ControlFlow<()> {
        for &t in toks {
            self.tokens.push(t);
            let text = self.decoder.push(t).ok().flatten().unwrap_or_default();
            if self.tx.try_send(GenEvent::Text { text, tokens: 1 }).is_err() {
                self.cancelled = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    fn stopped(&self) -> bool {
        self.tokens.last().is_some_and(|t| self.stop_ids.contains(t))
    }
}

impl Job {
    async fn run(self, req: GenRequest, tx: mpsc::Sender<GenEvent>) {
        let info = self.local.tokenizer.info();
        let sampling = SamplingParams {
            temperature: req.temperature,
            top_k: None,
            top_p: req.top_p,
            seed: req.seed.unwrap_or_else(rand::random),
        };
        let mut out = Emitter {
            tx: tx.clone(),
            decoder: StreamDecoder::new(&self.local.tokenizer, true),
            tokens: Vec::new(),
            stop_ids: info.stop_ids.clone(),
            cancelled: false,
        };
        let mut stats = OuroStats { mode: "speculative".into(), ..OuroStats::default() };
        let mut run = SpecRun::default();
        let mut local_only = self.cloud.is_none();
        let mut attempt = 0u32;
        let started = Instant::now();
        let stop_ids = out.stop_ids.clone();
        let unfinished = |out: &Emitter| !out.cancelled && !out.stopped() && out.tokens.len() < req.max_tokens;
        // Speculate until done; on a lost session re-open from the committed
        // tokens; on a lost cloud follow the fallback policy. With `local`,
        // the drafter carries on alone until the cloud answers again, and
        // speculation resumes on everything committed so far.
        while unfinished(&out) {
            if local_only {
                let back = self.local_until_cloud_returns(&req, sampling, &mut out, &mut stats).await;
                match back {
                    Ok(true) => {
                        tracing::info!("the cloud is back: resuming speculation after {} tokens", out.tokens.len());
                        stats.cloud_resumes += 1;
                        local_only = false;
                        attempt = 0;
                        self.set_mode("speculative");
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
            let err = match cloud.connect().await {
                Ok((conn, info)) => {
                    let mut committed = req.prompt.clone();
                    committed.extend_from_slice(&out.tokens);
                    let spec = SpecRequest {
                        tokenizer_hash: &info.tokenizer_hash,
                        prompt: &committed,
                        max_new: req.max_tokens - out.tokens.len(),
                        stop_ids: &stop_ids,
                        plan: self.opts.plan,
                        sampling,
                        pipeline: self.opts.pipeline,
                        info: Some(&info),
                    };
                    let mut pool = std::mem::take(&mut *self.pool.lock().unwrap_or_else(|e| e.into_inner()));
                    let model: &dyn CausalLm = &self.local.model;
                    let r = match conn {
                        Conn::Grpc(mut c) => {
                            speculate_into(&mut c, model, &spec, &mut pool, &mut run, |t| out.push(t)).await
                        }
                        Conn::Quic(mut q) => {
                            speculate_into(&mut q, model, &spec, &mut pool, &mut run, |t| out.push(t)).await
                        }
                    };
                    if let Some(path) = &self.opts.pool_file {
                        if let Err(e) = pool.save(path.as_path()) {
                            tracing::warn!("saving the phrase pool to {}: {e}", path.display());
                        }
                    }
                    *self.pool.lock().unwrap_or_else(|e| e.into_inner()) = pool;
                    if run.rounds > 0 {
                        stats.cloud_rtt_ms = Some(run.wait_secs * 1e3 / run.rounds as f64);
                    }
                    match r {
                        Ok(()) => continue,
                        Err(e) => ConnectError::Link(e),
                    }
                }
                Err(ConnectError::Mismatch(m)) => {
                    let _ = tx.try_send(GenEvent::Error(m));
                    return;
                }
                Err(e) => e,
            };
            tracing::warn!("cloud link: {err}");
            // An evicted or expired session is re-opened at once.
            let lost_session = matches!(&err, ConnectError::Link(LinkError::Status(s)) if s.code() == Code::NotFound);
            if lost_session {
                attempt += 1;
                if attempt < 4 {
                    continue;
                }
            }
            match self.opts.fallback {
                Fallback::Local => {
                    local_only = true;
                    self.set_mode("local");
                }
                Fallback::Fail => {
                    let _ = tx.try_send(GenEvent::Error(format!("the cloud verifier is unavailable: {err}")));
                    return;
                }
                Fallback::Wait => {
                    if started.elapsed() > cloud.wait {
                        let _ = tx.try_send(GenEvent::Error(format!("the cloud stayed unavailable: {err}")));
                        return;
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
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
        stats.drafted = run.drafted;
        stats.accepted = run.accepted;
        stats.mean_accepted = if run.rounds > 0 { run.accepted as f64 / run.rounds as f64 } else { 0.0 };
        let finish_reason = if out.stopped() { FinishReason::Stop } else { FinishReason::Length };
        let _ = tx.try_send(GenEvent::Done { finish_reason, completion_tokens: out.tokens.len(), stats });
    }

    fn set_mode(&self, mode: &'static str) {
        if let Ok(mut m) = self.mode.lock() {
            *m = mode;
        }
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
                let mut attempt = 0;
                loop {
                    tokio::time::sleep(every.max(backoff(attempt))).await;
                    if cloud.connect().await.is_ok() {
                        back.store(true, Ordering::Release);
                        return;
                    }
                    attempt += 1;
                }
            })
        });
        let mut committed = req.prompt.clone();
        committed.extend_from_slice(&out.tokens);
        let cfg = GenerateConfig {
            max_new_tokens: req.max_tokens - out.tokens.len(),
            // Each stretch gets its own stream of the seed, so a resumed
            // stretch does not replay the same random draws.
            sampling: SamplingParams { seed: sampling.seed.wrapping_add(out.tokens.len() as u64), ..sampling },
            stop_ids: out.stop_ids.clone(),
        };
        let r = generate(&self.local.model, &committed, &cfg, |t| {
            stats.local_tokens += 1;
            out.push(&[t])?;
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
