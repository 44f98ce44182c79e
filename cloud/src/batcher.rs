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

use crate::sessions::SessionState;
use crate::telemetry;

/// A prefill: of a new session's prompt, or of the tokens a resumed
/// session was given to go on from (`VerifierSession::resume_on`).
pub struct OpenJob {
    pub from: PrefillFrom,
    pub reply: oneshot::Sender<Result<SessionState, EngineError>>,
}

pub enum PrefillFrom {
    Prompt { prompt: Vec<u32>, params: SamplingParams },
    Session(SessionState),
}

/// One round of one session.
pub struct VerifyJob {
    pub verifier: SessionState,
    pub tree: DraftTree,
    pub dists: Vec<SparseDist>,
    pub reply: oneshot::Sender<VerifyDone>,
}

pub struct VerifyDone {
    pub verifier: SessionState,
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
    fn submit(&self, job: Job) -> Result<(), (QueueError, Job)> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(j) => (QueueError::Full, j),
            TrySendError::Disconnected(j) => (QueueError::Stopped, j),
        })
    }

    /// On failure a resumed session's verifier state comes back with the reason.
    pub fn open(&self, job: OpenJob) -> Result<(), (QueueError, Option<SessionState>)> {
        self.submit(Job::Open(Box::new(job))).map_err(|(e, j)| match j {
            Job::Open(j) => match j.from {
                PrefillFrom::Session(s) => (e, Some(s)),
                PrefillFrom::Prompt { .. } => (e, None),
            },
            Job::Verify(_) => unreachable!("submitted an open job"),
        })
    }

    /// On failure the session's verifier state comes back with the reason.
    pub fn verify(&self, job: VerifyJob) -> Result<(), (QueueError, SessionState)> {
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
                Job::Open(j) => match j.from {
                    PrefillFrom::Session(session) => prefills.push_back(Prefill { session, reply: j.reply }),
                    PrefillFrom::Prompt { prompt, params } => {
                        match VerifierSession::start(model, &prompt, params, limits) {
                            Ok(session) => prefills.push_back(Prefill { session: Box::new(session), reply: j.reply }),
                            Err(e) => {
                                let _ = j.reply.send(Err(e));
                            }
                        }
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
    session: SessionState,
    reply: oneshot::Sender<Result<SessionState, EngineError>>,
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use ouro_common::model::{KvCache, Logits, ModelConfig, ModelError, Result as ModelResult, SeqInput};

    use super::*;

    const LIMITS: TreeLimits = TreeLimits { max_nodes: 8, max_depth: 8 };

    /// A model that computes nothing: it records how many sessions each pass
    /// carried and fails the pass (which leaves every cache as it was), so a
    /// test sees how rounds were batched. With a gate, each pass says it has
    /// started and waits to be released.
    struct Recorder {
        config: ModelConfig,
        passes: Mutex<Vec<usize>>,
        gate: Option<Gate>,
    }

    /// Each pass says it has started, then waits to be released.
    struct Gate {
        started: Mutex<mpsc::Sender<()>>,
        release: Mutex<mpsc::Receiver<()>>,
    }

    impl CausalLm for Recorder {
        fn config(&self) -> &ModelConfig {
            &self.config
        }
        fn new_cache(&self) -> KvCache {
            KvCache::new(1, 1, 4, self.config.max_context)
        }
        fn forward(&self, seqs: &mut [SeqInput<'_>]) -> ModelResult<Vec<Logits>> {
            self.passes.lock().unwrap().push(seqs.len());
            if let Some(gate) = &self.gate {
                let _ = gate.started.lock().unwrap().send(());
                let _ = gate.release.lock().unwrap().recv();
            }
            Err(ModelError::InvalidInput("the recorder computes nothing".into()))
        }
    }

    impl Recorder {
        fn passes(&self) -> Vec<usize> {
            self.passes.lock().unwrap().clone()
        }
    }

    fn recorder(gate: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>) -> &'static Recorder {
        let config = crate::sessions::tests::tiny_config();
        let gate = gate.map(|(s, r)| Gate { started: Mutex::new(s), release: Mutex::new(r) });
        Box::leak(Box::new(Recorder { config, passes: Mutex::new(Vec::new()), gate }))
    }

    fn config(window: Duration, max_batch: usize, max_queue: usize) -> BatchConfig {
        BatchConfig { window, max_batch, max_queue, prefill_chunk: 16 }
    }

    fn session(model: &'static Recorder) -> SessionState {
        // A one-token prompt needs no prefill pass.
        Box::new(VerifierSession::open(model, &[1], SamplingParams::greedy(), LIMITS).unwrap())
    }

    fn submit(b: &Batcher, model: &'static Recorder) -> oneshot::Receiver<VerifyDone> {
        let (reply, rx) = oneshot::channel();
        let job = VerifyJob { verifier: session(model), tree: DraftTree::chain(&[2]), dists: Vec::new(), reply };
        assert!(b.verify(job).is_ok(), "queued");
        rx
    }

    /// Gives the compute thread time to take the first job, so a batcher
    /// that did not wait for the others would run it alone. Correct code
    /// batches whatever this pause is.
    fn pause() {
        std::thread::sleep(Duration::from_millis(50));
    }

    #[test]
    fn rounds_of_active_sessions_share_one_pass() {
        let model = recorder(None);
        let b = Batcher::start(model, LIMITS, config(Duration::from_secs(600), 8, 16));
        let _active: Vec<_> = (0..3).map(|_| b.active_guard()).collect();
        let mut replies = vec![submit(&b, model)];
        pause();
        replies.extend((0..2).map(|_| submit(&b, model)));
        for r in replies {
            let done = r.blocking_recv().expect("a reply");
            assert_eq!(done.batch_size, 3);
            assert!(done.result.is_err(), "the recorder's pass fails");
        }
        assert_eq!(model.passes(), [3]);
    }

    #[test]
    fn a_lone_session_does_not_wait_for_the_window() {
        let model = recorder(None);
        let b = Batcher::start(model, LIMITS, config(Duration::from_secs(600), 8, 16));
        let _active = b.active_guard();
        let rx = submit(&b, model);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        // A hang guard far below the window, not a speed requirement.
        let done = rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), rx).await });
        assert_eq!(done.expect("no wait for the 10-minute window").expect("a reply").batch_size, 1);
        assert_eq!(model.passes(), [1]);
    }

    #[test]
    fn queued_rounds_ride_along_up_to_max_batch() {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let model = recorder(Some((started_tx, release_rx)));
        // One active session: no pass waits for the window.
        let b = Batcher::start(model, LIMITS, config(Duration::from_secs(600), 2, 16));
        let _active = b.active_guard();
        let first = submit(&b, model);
        started.recv().unwrap(); // the compute thread is in the first pass
        let queued: Vec<_> = (0..3).map(|_| submit(&b, model)).collect();
        // One release per pass there could be, so a batcher that failed to
        // batch still ends (and fails the assertions below) instead of hanging.
        for _ in 0..4 {
            release.send(()).unwrap();
        }
        assert_eq!(first.blocking_recv().expect("a reply").batch_size, 1);
        let sizes: Vec<usize> = queued.into_iter().map(|r| r.blocking_recv().expect("a reply").batch_size).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(model.passes(), [1, 2, 1]);
    }

    #[test]
    fn a_full_queue_hands_the_session_back() {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let model = recorder(Some((started_tx, release_rx)));
        let b = Batcher::start(model, LIMITS, config(Duration::ZERO, 1, 1));
        let _active = b.active_guard();
        let first = submit(&b, model);
        started.recv().unwrap(); // the compute thread is in the first pass
        let second = submit(&b, model); // fills the queue of one
        let (reply, _rx) = oneshot::channel();
        let job = VerifyJob { verifier: session(model), tree: DraftTree::chain(&[2]), dists: Vec::new(), reply };
        let Err((QueueError::Full, back)) = b.verify(job) else { panic!("a third job must be refused") };
        assert_eq!(back.prefill_remaining(), 0, "the session comes back whole");
        release.send(()).unwrap();
        assert_eq!(first.blocking_recv().expect("a reply").batch_size, 1);
        started.recv().unwrap();
        release.send(()).unwrap();
        assert_eq!(second.blocking_recv().expect("a reply").batch_size, 1);
    }

    #[test]
    fn an_active_guard_counts_while_it_lives() {
        let b = Batcher::start(recorder(None), LIMITS, config(Duration::ZERO, 1, 1));
        let g = b.active_guard();
        let h = b.active_guard();
        assert_eq!(b.active.load(Ordering::Relaxed), 2);
        drop(g);
        drop(h);
        assert_eq!(b.active.load(Ordering::Relaxed), 0);
    }
}
