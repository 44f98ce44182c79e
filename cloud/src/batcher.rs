//! The verifier's one compute thread. Rounds of concurrent sessions that
//! arrive within a short window share one forward pass: their trees are
//! concatenated with a block-diagonal mask (each session attends only to its
//! own cache and tree), so the weights are streamed from memory once for
//! all of them, while each session still gets exactly its own logits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ouro_common::engine::{EngineError, VerifierSession};
use ouro_common::model::CausalLm;
use ouro_common::sampling::{SamplingParams, SparseDist};
use ouro_common::tree::{DraftTree, TreeLimits};
use ouro_common::verify::Verdict;
use tokio::sync::oneshot;

use crate::sessions::Verifier;
use crate::telemetry;

/// A prefill for a new session.
pub struct OpenJob {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub reply: oneshot::Sender<Result<Verifier, EngineError>>,
}

/// One round of one session.
pub struct VerifyJob {
    pub verifier: Verifier,
    pub tree: DraftTree,
    pub dists: Vec<SparseDist>,
    pub reply: oneshot::Sender<VerifyDone>,
}

pub struct VerifyDone {
    pub verifier: Verifier,
    pub result: Result<Verdict, EngineError>,
    /// Wall time of the forward pass this round shared.
    pub compute: Duration,
    /// Sessions in that pass.
    pub batch_size: usize,
}

enum Job {
    Open(Box<OpenJob>),
    Verify(Box<VerifyJob>),
}

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Longest a round waits for others to join its pass.
    pub window: Duration,
    pub max_batch: usize,
    /// Jobs waiting beyond this are refused at once.
    pub max_queue: usize,
    /// Prompt tokens per prefill pass; other sessions' rounds run between
    /// a long prompt's chunks.
    pub prefill_chunk: usize,
}

/// Why a job could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the verify queue is full")]
    Full,
    #[error("the verifier has stopped")]
    Stopped,
}

/// The handle the async side submits work through.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    /// Sessions currently between an Open and their end: how many rounds a
    /// pass may usefully wait for.
    active: Arc<AtomicUsize>,
    limits: TreeLimits,
}

impl Batcher {
    /// Starts the compute thread. `model` lives for the whole process.
    pub fn start(model: &'static dyn CausalLm, limits: TreeLimits, cfg: BatchConfig) -> Self {
        let (tx, rx) = mpsc::sync_channel(cfg.max_queue);
        let active = Arc::new(AtomicUsize::new(0));
        let worker_active = active.clone();
        std::thread::Builder::new()
            .name("ouro-verifier".into())
            .spawn(move || run(model, limits, cfg, rx, worker_active))
            .expect("spawning the verifier thread");
        Self { tx, active, limits }
    }

    /// Queues a job, or hands it back at once with the reason: callers
    /// must get their session state back when the queue is full.
    #[allow(clippy::result_large_err)] // the job is handed back, not copied
    fn submit(&self, job: Job) -> Result<(), (QueueError, Job)> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(j) => (QueueError::Full, j),
            TrySendError::Disconnected(j) => (QueueError::Stopped, j),
        })
    }

    pub fn open(&self, job: OpenJob) -> Result<(), QueueError> {
        self.submit(Job::Open(Box::new(job))).map_err(|(e, _)| e)
    }

    /// On failure the session's verifier state comes back with the reason.
    pub fn verify(&self, job: VerifyJob) -> Result<(), (QueueError, Verifier)> {
        self.submit(Job::Verify(Box::new(job))).map_err(|(e, j)| match j {
            Job::Verify(j) => (e, j.verifier),
            Job::Open(_) => unreachable!("submitted a verify job"),
        })
    }

    pub fn limits(&self) -> TreeLimits {
        self.limits
    }

    /// Counts a session as active while the guard lives.
    pub fn active_guard(&self) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.active.clone())
    }
}

pub struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn run(
    model: &'static dyn CausalLm,
    limits: TreeLimits,
    cfg: BatchConfig,
    rx: mpsc::Receiver<Job>,
    active: Arc<AtomicUsize>,
) {
    // Prompts being prefilled, a chunk per turn, round-robin: a long prompt
    // never holds the compute thread for more than one chunk while other
    // sessions' rounds (or short prompts) wait.
    let mut prefills: VecDeque<Prefill> = VecDeque::new();
    loop {
        let first = if prefills.is_empty() {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        };
        let mut jobs: Vec<Job> = first.into_iter().collect();
        if !jobs.is_empty() {
            // Wait for the other active sessions' rounds, but never longer than
            // the window: with one session the pass starts at once.
            let deadline = Instant::now() + cfg.window;
            while jobs.len() < active.load(Ordering::Relaxed).clamp(1, cfg.max_batch) {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => jobs.push(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        // Anything already queued rides along too.
        while jobs.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut rounds = Vec::new();
        for job in jobs {
            match job {
                Job::Open(j) => match VerifierSession::start(model, &j.prompt, j.params, limits) {
                    Ok(session) => prefills.push_back(Prefill { session: Box::new(session), reply: j.reply }),
                    Err(e) => {
                        let _ = j.reply.send(Err(e));
                    }
                },
                Job::Verify(j) => rounds.push(*j),
            }
        }
        // A bug in one pass must not stop the service: its sessions are lost
        // (their handlers see the reply dropped), everyone else carries on.
        let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if !rounds.is_empty() {
                verify_batch(model, rounds);
            }
            if let Some(mut p) = prefills.pop_front() {
                // A client that left during its prefill costs no more compute.
                if p.reply.is_closed() {
                    telemetry::prefill_cancelled();
                    return;
                }
                telemetry::prefill_chunk();
                match p.session.prefill(cfg.prefill_chunk) {
                    Ok(0) => {
                        let _ = p.reply.send(Ok(p.session));
                    }
                    Ok(_) => prefills.push_back(p),
                    Err(e) => {
                        let _ = p.reply.send(Err(e));
                    }
                }
            }
        }));
        if pass.is_err() {
            tracing::error!("a verification pass panicked; its sessions were dropped");
        }
    }
}

/// A session whose prompt is still being prefilled.
struct Prefill {
    session: Verifier,
    reply: oneshot::Sender<Result<Verifier, EngineError>>,
}

fn verify_batch(model: &'static dyn CausalLm, jobs: Vec<VerifyJob>) {
    let mut ready = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job.verifier.begin(&job.tree) {
            Ok(pending) => ready.push((job, pending)),
            Err(e) => {
                let _ = job.reply.send(VerifyDone {
                    verifier: job.verifier,
                    result: Err(e),
                    compute: Duration::ZERO,
                    batch_size: 0,
                });
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let batch_size = ready.len();
    let t = Instant::now();
    let out = {
        let mut inputs: Vec<_> = ready.iter_mut().map(|(job, pending)| job.verifier.seq_input(pending)).collect();
        model.forward(&mut inputs)
    };
    let compute = t.elapsed();
    telemetry::batch(batch_size, compute);
    match out {
        Ok(logits) => {
            for ((mut job, pending), logits) in ready.into_iter().zip(logits) {
                let result = job.verifier.finish(pending, &job.tree, &job.dists, &logits);
                let _ = job.reply.send(VerifyDone { verifier: job.verifier, result, compute, batch_size });
            }
        }
        Err(e) => {
            // The runtime leaves caches untouched on error; report it to every
            // session of the pass (none of them is lost).
            let msg = e.to_string();
            for (mut job, pending) in ready {
                job.verifier.abort(pending);
                let result = Err(EngineError::Model(ouro_common::model::ModelError::InvalidInput(msg.clone())));
                let _ = job.reply.send(VerifyDone { verifier: job.verifier, result, compute, batch_size });
            }
        }
    }
}
