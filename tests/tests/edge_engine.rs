//! The edge's engine (the library behind `ouro-edge serve`) against a fake
//! cloud: an in-process verifier on the round driver, a little slow so that
//! a client can leave mid-verdict, and able to lose a session on cue.
//!
//! Drafter: SmolLM2-135M as fetched (Q8_0). Verifier: the same file in f32,
//! so drafts are mostly but not always accepted.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use ouro_common::chat::{ChatTemplate, CHATML};
use ouro_common::controller::DraftPlan;
use ouro_common::draft::PhrasePool;
use ouro_common::engine::{Draft, VerifierSession};
use ouro_common::generate::{generate, GenerateConfig};
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{CausalLm, Transformer};
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::{self, InProcessVerifier, Reply, SpecStats, Verifier};
use ouro_common::tokenizer::{StreamDecoder, Tokenizer};
use ouro_common::tree::TreeLimits;
use ouro_edge::api::{Backend, GenEvent, GenRequest, OpenAiFinish};
use ouro_edge::engine::{BackendOptions, Cloud, ConnectError, EdgeBackend, Fallback, LocalModel};
use ouro_edge::link::{LinkError, SpecRequest};
use ouro_proto::v1::ModelInfo;
use ouro_tests::{model_path, smollm2_f32};

/// The verifier in this process, with a pause before each verdict (the
/// network) and, optionally, sessions that are lost after some rounds.
/// Per session: the plan the edge's warm policy state held, if any, and the
/// first plan the session drafted with.
type Warmth = Arc<Mutex<Vec<(Option<DraftPlan>, DraftPlan)>>>;

struct FakeCloud {
    target: Arc<Transformer>,
    info: ModelInfo,
    /// Sessions opened so far.
    sessions: Arc<AtomicUsize>,
    /// The first session is lost (NOT_FOUND) after this many rounds.
    lose_first_after: Option<usize>,
    /// Every session waits here before its first round, so that concurrent
    /// requests are sure to overlap.
    start_together: Option<Arc<Barrier>>,
    /// The pause before each verdict, and whether one is under way.
    delay: Duration,
    in_verdict: Arc<AtomicBool>,
    /// The affinity key of every connection, in order.
    keys: Arc<Mutex<Vec<Option<String>>>>,
    warmth: Warmth,
}

struct FakeConn {
    target: Arc<Transformer>,
    lose_after: Option<usize>,
    start_together: Option<Arc<Barrier>>,
    delay: Duration,
    in_verdict: Arc<AtomicBool>,
    warmth: Warmth,
}

/// The in-process verifier, a millisecond away.
struct Distant<'m> {
    inner: InProcessVerifier<'m>,
    rounds: usize,
    lose_after: Option<usize>,
    delay: Duration,
    in_verdict: Arc<AtomicBool>,
}

impl Verifier for Distant<'_> {
    type Error = LinkError;

    fn remote(&self) -> bool {
        true
    }

    async fn send(&mut self, draft: &Draft, run_on: usize) -> Result<(), LinkError> {
        Ok(self.inner.send(draft, run_on).await?)
    }

    async fn verdict(&mut self, draft: &Draft, ran_on: &mut (dyn FnMut(&[u32]) + Send)) -> Result<Reply, LinkError> {
        self.in_verdict.store(true, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_verdict.store(false, Ordering::SeqCst);
        if self.lose_after == Some(self.rounds) {
            return Err(LinkError::Status(tonic::Status::not_found("session evicted")));
        }
        self.rounds += 1;
        Ok(self.inner.verdict(draft, ran_on).await?)
    }
}

impl Cloud for FakeCloud {
    type Conn = FakeConn;

    async fn connect(&self, affinity: Option<&str>) -> Result<(FakeConn, ModelInfo), ConnectError> {
        self.keys.lock().unwrap().push(affinity.map(str::to_string));
        let session = self.sessions.fetch_add(1, Ordering::SeqCst);
        let conn = FakeConn {
            target: self.target.clone(),
            lose_after: self.lose_first_after.filter(|_| session == 0),
            start_together: self.start_together.clone(),
            delay: self.delay,
            in_verdict: self.in_verdict.clone(),
            warmth: self.warmth.clone(),
        };
        Ok((conn, self.info.clone()))
    }

    async fn speculate(
        conn: &mut FakeConn,
        drafter: &dyn CausalLm,
        req: &SpecRequest<'_>,
        pool: &mut PhrasePool,
        run: &mut SpecStats,
        on_tokens: impl FnMut(&[u32]) -> ControlFlow<()> + Send,
    ) -> Result<(), LinkError> {
        let limits = TreeLimits { max_nodes: 64, max_depth: 32 };
        let mut source = req.strategy.open(req.opening(drafter, pool))?;
        // As the real link does: greedy sessions start from the edge's warm
        // policy state and hand back what they learned.
        let mut policy = req.strategy.warm_policy(None, req.warm, !req.sampling.is_greedy());
        conn.warmth.lock().unwrap().push((req.warm.map(|l| l.plan()), policy.plan()));
        let session = VerifierSession::open(&*conn.target, req.prompt, req.sampling, limits)?;
        if let Some(b) = conn.start_together.take() {
            tokio::task::block_in_place(|| b.wait());
        }
        let mut verifier = Distant {
            inner: InProcessVerifier { session },
            rounds: 0,
            lose_after: conn.lose_after,
            delay: conn.delay,
            in_verdict: conn.in_verdict.clone(),
        };
        let rounds = req.rounds(limits, conn.target.config().vocab_size, conn.target.config().max_context);
        let driven = spec::drive(&mut verifier, &mut *source, &mut *policy, &rounds, run, on_tokens).await;
        run.learned = policy.learned().or(run.learned.take());
        driven?;
        Ok(())
    }

    fn wait(&self) -> Duration {
        Duration::from_secs(5)
    }
}

fn local() -> LocalModel {
    let (model, ct) = gguf::load(&model_path("smollm2-135m"), &LoadOptions::default()).unwrap();
    let tokenizer = Tokenizer::from_gguf(&ct).unwrap();
    let template = ChatTemplate::new(CHATML, "", "").unwrap();
    LocalModel { name: "smollm2-135m".into(), model, tokenizer, template }
}

struct Setup {
    backend: EdgeBackend<FakeCloud>,
    local: Arc<LocalModel>,
    sessions: Arc<AtomicUsize>,
    in_verdict: Arc<AtomicBool>,
    keys: Arc<Mutex<Vec<Option<String>>>>,
    warmth: Warmth,
    _dir: TempDir,
    pool_file: std::path::PathBuf,
}

fn setup(name: &str, workers: usize, lose_first_after: Option<usize>, start_together: Option<usize>) -> Setup {
    setup_with(name, workers, lose_first_after, start_together, Duration::from_millis(20))
}

fn setup_with(
    name: &str,
    workers: usize,
    lose_first_after: Option<usize>,
    start_together: Option<usize>,
    delay: Duration,
) -> Setup {
    let local = Arc::new(local());
    let sessions = Arc::new(AtomicUsize::new(0));
    let in_verdict = Arc::new(AtomicBool::new(false));
    let keys = Arc::new(Mutex::new(Vec::new()));
    let warmth = Arc::new(Mutex::new(Vec::new()));
    let info = ModelInfo {
        tokenizer_hash: local.tokenizer.info().identity.clone(),
        vocab_size: local.model.config().vocab_size as u32,
        max_tree_nodes: 64,
        max_tree_depth: 32,
        ..ModelInfo::default()
    };
    let cloud = FakeCloud {
        target: smollm2_f32(),
        info,
        sessions: sessions.clone(),
        lose_first_after,
        start_together: start_together.map(|n| Arc::new(Barrier::new(n))),
        delay,
        in_verdict: in_verdict.clone(),
        keys: keys.clone(),
        warmth: warmth.clone(),
    };
    let dir = TempDir::new(name);
    let pool_file = dir.0.join("pool.json");
    let opts = BackendOptions {
        fallback: Fallback::Fail,
        strategy: spec::strategy::parse("ouroboros").unwrap(),
        pool_file: Some(pool_file.clone()),
        pipeline: true,
        run_on: true,
        draft_window: 0,
        reprobe: Duration::from_secs(60),
        busy_wait: Duration::from_secs(1),
        workers,
    };
    let backend = EdgeBackend::new(local.clone(), Some(cloud), opts).unwrap();
    Setup { backend, local, sessions, in_verdict, keys, warmth, _dir: dir, pool_file }
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ouro-edge-engine-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn request(prompt: Vec<u32>, max_tokens: usize) -> GenRequest {
    GenRequest { prompt, max_tokens, temperature: 0.0, top_p: None, seed: Some(0) }
}

/// Everything a generation says: its text, and how it ended.
fn collect(mut rx: tokio::sync::mpsc::Receiver<GenEvent>) -> (String, Option<(OpenAiFinish, usize, usize)>) {
    let mut text = String::new();
    while let Some(e) = rx.blocking_recv() {
        match e {
            GenEvent::Text { text: t, .. } => text += &t,
            GenEvent::Done { finish_reason, completion_tokens, stats } => {
                assert_eq!(stats.mode, "speculative");
                return (text, Some((finish_reason, completion_tokens, stats.rounds)));
            }
            GenEvent::Error(e) => panic!("generation failed: {e}"),
            GenEvent::Busy { message, .. } => panic!("busy: {message}"),
            GenEvent::Stats(_) => {}
        }
    }
    (text, None)
}

/// The target's own greedy text after `prompt`, as the engine would render it.
fn target_text(s: &Setup, prompt: &[u32], max_tokens: usize) -> String {
    let stop_ids = s.local.tokenizer.info().stop_ids.clone();
    let cfg =
        GenerateConfig { max_new_tokens: max_tokens, sampling: SamplingParams::greedy(), stop_ids: stop_ids.clone() };
    let mut decoder = StreamDecoder::new(&s.local.tokenizer, true);
    let mut text = String::new();
    generate(&*smollm2_f32(), prompt, &cfg, |t| {
        if !stop_ids.contains(&t) {
            text += &decoder.push(t).unwrap().unwrap_or_default();
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    text + &decoder.flush().unwrap().unwrap_or_default()
}

fn prompt(s: &Setup, text: &str) -> Vec<u32> {
    s.backend.text_prompt(text).unwrap()
}

/// A phrase of `prompt` that the pool must know once it has seen the prompt.
fn knows(pool: &PhrasePool, prompt: &[u32]) -> bool {
    let mid = prompt.len() / 2;
    pool.continuations(&prompt[mid - 2..mid + 1], 8).iter().any(|c| c.first() == prompt.get(mid + 1))
}

#[test]
fn the_engine_speculates_the_targets_text_through_a_fake_cloud() {
    let s = setup("text", 1, None, None);
    let p = prompt(&s, "The three primary colours are red, yellow and");
    let (text, done) = collect(s.backend.generate(request(p.clone(), 24)));
    let (finish, tokens, rounds) = done.expect("finished");
    assert_eq!(text, target_text(&s, &p, 24));
    assert!(rounds < tokens, "{rounds} rounds for {tokens} tokens: no speculation");
    if tokens < 24 {
        assert_eq!(finish, OpenAiFinish::Stop);
    }
}

#[test]
fn the_draft_policy_stays_warm_from_one_request_to_the_next() {
    let s = setup("warm", 1, None, None);
    for text in ["The three primary colours are red, yellow and", "Once upon a time, in a small village by the sea,"] {
        let p = prompt(&s, text);
        let (got, done) = collect(s.backend.generate(request(p.clone(), 24)));
        assert!(done.is_some());
        assert_eq!(got, target_text(&s, &p, 24));
    }
    let warmth = s.warmth.lock().unwrap().clone();
    assert_eq!(warmth.len(), 2);
    assert_eq!(warmth[0].0, None, "the first request had nothing to start from");
    let learned = warmth[1].0.expect("the second request started from what the first learned");
    assert_eq!(warmth[1].1, learned, "and drafted its first round with that plan");
}

#[test]
fn a_lost_session_is_reopened_from_the_committed_text() {
    let s = setup("lost", 1, Some(2), None);
    let p = prompt(&s, "Once upon a time, in a small village by the sea,");
    let (text, done) = collect(s.backend.generate(request(p.clone(), 32)));
    assert!(done.is_some());
    assert_eq!(text, target_text(&s, &p, 32));
    assert_eq!(s.sessions.load(Ordering::SeqCst), 2, "the lost session was not re-opened once");
    // Behind a proxy the re-open must reach the same replica: same key.
    let keys = s.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].is_some() && keys[0] == keys[1], "the re-open carried another affinity key: {keys:?}");
}

#[test]
fn concurrent_requests_keep_each_others_phrases() {
    let s = setup("concurrent", 2, None, Some(2));
    let a = prompt(&s, "Alpha bravo charlie delta echo foxtrot golf hotel india juliet");
    let b = prompt(&s, "Seven swans swimming, six geese laying, five golden rings");
    let (ra, rb) = (s.backend.generate(request(a.clone(), 8)), s.backend.generate(request(b.clone(), 8)));
    let (da, db) = (collect(ra).1, collect(rb).1);
    assert!(da.is_some() && db.is_some());
    let pool = PhrasePool::load(&s.pool_file).expect("the pool was saved");
    assert!(knows(&pool, &a), "the first request's phrases were lost");
    assert!(knows(&pool, &b), "the second request's phrases were lost");
    // Two generations, two keys: a proxy may spread them over replicas.
    let keys = s.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(Option::is_some) && keys[0] != keys[1], "{keys:?}");
}

#[test]
fn a_cancelled_request_loses_none_of_its_phrases() {
    let s = setup_with("cancelled", 1, None, None, Duration::from_millis(300));
    let a = prompt(&s, "Mercury Venus Earth Mars Jupiter Saturn Uranus Neptune and Pluto");
    let mut rx = s.backend.generate(request(a.clone(), 64));
    // Leave after the first words, while a verdict is on its way: the engine
    // drops the whole session, drafter and all, mid-round.
    assert!(matches!(rx.blocking_recv(), Some(GenEvent::Text { .. })));
    let since = std::time::Instant::now();
    while !s.in_verdict.load(Ordering::SeqCst) {
        assert!(since.elapsed() < Duration::from_secs(60), "no second round came");
        std::thread::yield_now();
    }
    drop(rx);
    // One worker: this request starts once the cancelled one has ended.
    let b = prompt(&s, "Hello");
    assert!(collect(s.backend.generate(request(b, 2))).1.is_some());
    let pool = PhrasePool::load(&s.pool_file).expect("the pool was saved");
    assert!(knows(&pool, &a), "the cancelled request's phrases were lost");
}
