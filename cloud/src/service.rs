//! The `ouro.v1.Verifier` gRPC service: handshake, speculative sessions and
//! target-only generation. Every bad input ends only its own stream, with a
//! status that says what was wrong; the session's state is left as it was,
//! so the client can re-attach and carry on.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use ouro_common::controller::CostCurve;
use ouro_common::engine::EngineError;
use ouro_common::sampling::{SamplingParams, SparseDist};
use ouro_common::tree::DraftTree;
use ouro_common::verify::run_on::{self, Walk};
use ouro_common::verify::StackedRounds;
use ouro_common::verify::Verdict;
use ouro_proto::v1::verifier_server::Verifier;
use ouro_proto::v1::{
    self, session_request, session_response, GenerateRequest, GenerateResponse, InfoRequest, ModelInfo, SessionRequest,
    SessionResponse,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{owner, Owner};
use crate::batcher::{Batcher, OpenJob, PrefillFrom, QueueError, VerifyDone, VerifyJob};
use crate::run_on::{own_draft, own_tokens, OwnDrafts, RunOn};
use crate::sessions::{Holder, SessionError, SessionState, SessionTable};
use crate::telemetry;

/// Everything the handlers share.
pub struct Shared {
    pub info: ModelInfo,
    pub stop_ids: Vec<u32>,
    pub batcher: Batcher,
    pub sessions: SessionTable,
    pub draining: watch::Receiver<bool>,
    pub limits: RequestLimits,
    /// Whether a session running on verifies drafts of its own
    /// ([`crate::run_on`]) rather than decoding a token a pass.
    pub run_on_drafts: bool,
    passes: AtomicU64,
    committed: AtomicU64,
}

impl Shared {
    pub fn new(
        info: ModelInfo,
        stop_ids: Vec<u32>,
        batcher: Batcher,
        sessions: SessionTable,
        draining: watch::Receiver<bool>,
        limits: RequestLimits,
    ) -> Self {
        Self {
            info,
            stop_ids,
            batcher,
            sessions,
            draining,
            limits,
            run_on_drafts: true,
            passes: AtomicU64::new(0),
            committed: AtomicU64::new(0),
        }
    }

    fn vocab(&self) -> usize {
        self.info.vocab_size as usize
    }

    /// The c(k) measured at start-up, which sizes the server's own drafts.
    fn cost_curve(&self) -> Option<CostCurve> {
        CostCurve::from_points(self.info.verify_cost.iter().map(|c| (c.tokens as usize, c.ms as f64))).ok()
    }

    fn draining(&self) -> bool {
        *self.draining.borrow()
    }

    fn count_tokens(&self, passes: u64, tokens: usize) {
        let p = self.passes.fetch_add(passes, Ordering::Relaxed) + passes;
        let t = self.committed.fetch_add(tokens as u64, Ordering::Relaxed) + tokens as u64;
        telemetry::passes_per_token(p, t);
    }
}

/// What one request may ask for, beyond the tree limits the batcher holds.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Most (id, prob) pairs per sampled draft node.
    pub max_draft_top_k: usize,
    /// Longest prompt an Open or a Generate may carry.
    pub max_prompt_tokens: usize,
    /// What a session's memory costs, for the budget.
    pub memory: MemoryCosts,
}

/// The memory a session and its passes take, from the model's shape.
#[derive(Debug, Clone)]
pub struct MemoryCosts {
    pub config: ouro_common::model::ModelConfig,
    /// Prompt tokens per prefill pass.
    pub prefill_chunk: usize,
}

impl MemoryCosts {
    /// A new session: its cache once prefilled, and its prefill's activations.
    fn open(&self, prompt: usize) -> usize {
        let c = &self.config;
        prompt * c.kv_bytes_per_token() + c.activation_bytes(prompt.min(self.prefill_chunk), 1, prompt)
    }

    /// One round: the tree's cache rows and the pass's activations.
    fn round(&self, committed: usize, nodes: usize) -> usize {
        let c = &self.config;
        let rows = nodes + 1;
        rows * c.kv_bytes_per_token() + c.activation_bytes(rows, rows, committed + rows)
    }
}

#[derive(Clone)]
pub struct VerifierService {
    shared: Arc<Shared>,
}

impl VerifierService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        InvalidArgument => "invalid_argument",
        FailedPrecondition => "failed_precondition",
        OutOfRange => "out_of_range",
        NotFound => "not_found",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        Unavailable => "unavailable",
        Unauthenticated => "unauthenticated",
        _ => "internal",
    }
}

fn reject(status: Status) -> Status {
    telemetry::rejected(code_label(status.code()));
    status
}

fn session_status(e: SessionError) -> Status {
    let msg = e.to_string();
    match e {
        SessionError::Unknown(_) | SessionError::Evicted { .. } => Status::not_found(msg),
        SessionError::NotOwner(_) => Status::permission_denied(msg),
        // A conflict between two streams of one client: the newer retries
        // (`ABORTED`), the older is done.
        SessionError::Busy(_) => Status::aborted(msg),
        SessionError::TakenOver(_) => Status::failed_precondition(msg),
        SessionError::TooMany { .. } | SessionError::OverQuota { .. } | SessionError::NoMemory { .. } => {
            Status::resource_exhausted(msg)
        }
    }
}

/// Takes a slot for a new session, or says why not.
fn reserve<'a>(shared: &'a Shared, owner: &Owner, prompt: usize) -> Result<crate::sessions::Reservation<'a>, Status> {
    let r = shared.sessions.reserve(owner, shared.limits.memory.open(prompt));
    let reclaimed = match &r {
        Ok(slot) => slot.reclaimed,
        Err((_, reclaimed)) => *reclaimed,
    };
    telemetry::evicted("reclaimed under pressure", reclaimed.pressure);
    telemetry::evicted("token quota", reclaimed.quota);
    telemetry::evicted("memory budget", reclaimed.memory);
    r.map_err(|(e, _)| session_status(e))
}

fn engine_status(e: &EngineError) -> Status {
    match e {
        EngineError::ContextFull { .. } => Status::out_of_range(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

fn queue_status(e: QueueError) -> Status {
    match e {
        QueueError::Full => Status::resource_exhausted("the verify queue is full; retry later"),
        QueueError::Stopped => Status::unavailable("the verifier has stopped"),
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down; re-open the session elsewhere")
}

/// Reads the next message; a frame that does not decode is the client's
/// fault (INVALID_ARGUMENT), not the server's.
async fn next<T, S>(inbound: &mut S) -> Result<Option<T>, Status>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    received(inbound.next().await)
}

/// What the client sent, or a status that says what was wrong with it.
fn received<T>(item: Option<Result<T, Status>>) -> Result<Option<T>, Status> {
    match item {
        None => Ok(None),
        Some(Ok(m)) => Ok(Some(m)),
        Some(Err(s)) if s.code() == tonic::Code::Internal || s.code() == tonic::Code::Unknown => {
            Err(Status::invalid_argument(format!("malformed message: {}", s.message())))
        }
        Some(Err(s)) => Err(s),
    }
}

/// Takes in what the client has already sent, without waiting: the rounds
/// it sent ahead, for stacking on the round about to be verified.
fn read_ready<T, S>(inbound: &mut S, ready: &mut VecDeque<Result<Option<T>, Status>>)
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    while ready.back().is_none_or(|r| matches!(r, Ok(Some(_)))) {
        match inbound.next().now_or_never() {
            Some(item) => ready.push_back(received(item)),
            None => break,
        }
    }
}

/// Greedy rounds sent ahead that are already in hand and bet on `first`,
/// hung below it in one tree ([`StackedRounds`]), in round order: each must
/// follow the one before in number and committed length, and be a valid
/// round whose bet can still win, and the merged tree must fit in the
/// `room` the context has left. The first that cannot stays queued and is
/// handled on its own.
fn stack_ready(
    shared: &Shared,
    first: &v1::DraftRound,
    tree: DraftTree,
    room: usize,
    ready: &mut VecDeque<Result<Option<SessionRequest>, Status>>,
) -> (StackedRounds, Vec<v1::DraftRound>) {
    let mut stack = StackedRounds::new(tree);
    let mut stacked: Vec<v1::DraftRound> = Vec::new();
    let limits = shared.batcher.limits();
    while let Some(Ok(Some(SessionRequest { msg: Some(session_request::Msg::Round(next)) }))) = ready.front() {
        let prev = stacked.last().unwrap_or(first);
        let fits = next.round == prev.round + 1
            && next.q.is_empty()
            && !next.assumed.is_empty()
            && next.committed_len as usize == prev.committed_len as usize + next.assumed.len();
        if !fits {
            break;
        }
        let Ok((tree, _)) = next.to_draft(&limits, shared.vocab(), shared.limits.max_draft_top_k) else { break };
        // The guessed token takes a row too.
        if stack.tree().len() + 1 + tree.len() > room {
            break;
        }
        if !stack.push(&next.assumed, &tree) {
            break;
        }
        let Some(Ok(Some(SessionRequest { msg: Some(session_request::Msg::Round(next)) }))) = ready.pop_front() else {
            unreachable!("matched above")
        };
        telemetry::bytes(next.encoded_len(), 0);
        stacked.push(next);
    }
    (stack, stacked)
}

fn check_tokenizer(shared: &Shared, hash: &str) -> Result<(), Status> {
    if hash != shared.info.tokenizer_hash {
        return Err(Status::failed_precondition(format!(
            "tokenizer mismatch: client {hash:?}, verifier {:?} ({}); their token ids mean different text",
            shared.info.tokenizer_hash, shared.info.model_id
        )));
    }
    Ok(())
}

fn check_prompt(shared: &Shared, prompt: &[u32]) -> Result<(), Status> {
    if prompt.is_empty() {
        return Err(Status::invalid_argument("the prompt is empty"));
    }
    let max = shared.info.max_context as usize;
    if prompt.len() >= max {
        return Err(Status::out_of_range(format!("the prompt has {} tokens; the context holds {max}", prompt.len())));
    }
    if prompt.len() > shared.limits.max_prompt_tokens {
        return Err(Status::out_of_range(format!(
            "the prompt has {} tokens; this server takes at most {} (--max-prompt-tokens)",
            prompt.len(),
            shared.limits.max_prompt_tokens
        )));
    }
    if let Some((i, t)) = prompt.iter().enumerate().find(|(_, &t)| t as usize >= shared.vocab()) {
        return Err(Status::invalid_argument(format!(
            "prompt token {i} is {t}, outside a vocabulary of {}",
            shared.vocab()
        )));
    }
    Ok(())
}

fn sampling(s: Option<&v1::Sampling>) -> Result<SamplingParams, Status> {
    s.map_or(Ok(SamplingParams::greedy()), |s| s.to_params().map_err(|e| Status::invalid_argument(e.to_string())))
}

/// Prefills on the compute thread: a new verifier state, or a resumed
/// one's new tokens. If `gone` completes first (the client's response
/// stream was dropped), the prefill is abandoned and the compute thread
/// stops it at its next chunk. A resumed state comes back with the error
/// only where the queue refused it; otherwise it is lost with the prefill.
async fn prefill(
    shared: &Shared,
    from: PrefillFrom,
    gone: impl std::future::Future<Output = ()>,
) -> Result<SessionState, (Option<SessionState>, Status)> {
    let (reply, rx) = oneshot::channel();
    shared.batcher.open(OpenJob { from, reply }).map_err(|(e, s)| (s, queue_status(e)))?;
    prefilled(rx, gone).await.map_err(|st| (None, st))
}

/// [`prefill`] of a new session's prompt.
async fn prefill_prompt(
    shared: &Shared,
    prompt: Vec<u32>,
    params: SamplingParams,
    gone: impl std::future::Future<Output = ()>,
) -> Result<SessionState, Status> {
    prefill(shared, PrefillFrom::Prompt { prompt, params }, gone).await.map_err(|(_, st)| st)
}

async fn prefilled(
    rx: oneshot::Receiver<Result<SessionState, EngineError>>,
    gone: impl std::future::Future<Output = ()>,
) -> Result<SessionState, Status> {
    tokio::select! {
        verifier = rx => {
            let verifier = verifier.map_err(|_| Status::internal("the verifier dropped the prefill"))?;
            verifier.map_err(|e| engine_status(&e))
        }
        () = gone => Err(Status::cancelled("the client left during its prefill")),
    }
}

/// Runs one round on the compute thread. On failure the verifier state
/// comes back when it still exists (a full queue), so the session survives.
async fn verify(
    shared: &Shared,
    verifier: SessionState,
    tree: DraftTree,
    dists: Vec<SparseDist>,
) -> Result<VerifyDone, (Option<SessionState>, Status)> {
    let (reply, rx) = oneshot::channel();
    if let Err((e, verifier)) = shared.batcher.verify(VerifyJob { verifier, tree, dists, reply }) {
        return Err((Some(verifier), queue_status(e)));
    }
    rx.await.map_err(|_| (None, Status::internal("the verifier failed on this round; re-open the session")))
}

/// Ends the stream's hold on its session however the handler exits
/// (unless a newer stream took it over).
struct Attachment<'a> {
    shared: &'a Shared,
    id: String,
    stream: u64,
    _active: crate::batcher::ActiveGuard,
}

impl Drop for Attachment<'_> {
    fn drop(&mut self) {
        self.shared.sessions.detach(&self.id, self.stream);
    }
}

async fn send(tx: &mpsc::Sender<Result<SessionResponse, Status>>, msg: session_response::Msg) -> bool {
    let resp = SessionResponse { msg: Some(msg) };
    telemetry::bytes(0, resp.encoded_len());
    tx.send(Ok(resp)).await.is_ok()
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// Most stop tokens an Open may name.
const MAX_STOP_IDS: usize = 64;

fn check_stop_ids(shared: &Shared, stop_ids: &[u32]) -> Result<(), Status> {
    if stop_ids.len() > MAX_STOP_IDS {
        return Err(Status::invalid_argument(format!(
            "{} stop tokens; at most {MAX_STOP_IDS} are taken",
            stop_ids.len()
        )));
    }
    if let Some(&t) = stop_ids.iter().find(|&&t| t as usize >= shared.vocab()) {
        return Err(Status::invalid_argument(format!("stop token {t} is outside a vocabulary of {}", shared.vocab())));
    }
    Ok(())
}

/// A session as its stream opened it.
struct OpenedSession {
    id: String,
    committed_len: usize,
    /// The last round it answered.
    last_round: u64,
    resumed: bool,
    greedy: bool,
    /// The number of the stream that holds it (`sessions::Holder`).
    stream: u64,
}

async fn open_session(
    shared: &Shared,
    owner: &Owner,
    open: &v1::Open,
    tx: &mpsc::Sender<Result<SessionResponse, Status>>,
) -> Result<OpenedSession, Status> {
    check_tokenizer(shared, &open.tokenizer_hash)?;
    if shared.draining() {
        return Err(shutting_down());
    }
    let params = sampling(open.sampling.as_ref())?;
    check_stop_ids(shared, &open.stop_ids)?;
    if !open.resume.is_empty() {
        return resume_session(shared, owner, open, tx).await;
    }
    check_prompt(shared, &open.prompt)?;
    let slot = reserve(shared, owner, open.prompt.len())?;
    let len = open.prompt.len();
    let verifier = prefill_prompt(shared, open.prompt.clone(), params, tx.closed()).await?;
    let id = hex::encode(rand::random::<[u8; 16]>());
    let evicted = slot.insert(id.clone(), verifier);
    telemetry::evicted("memory budget", evicted.memory);
    metrics::counter!(telemetry::SESSIONS_OPENED).increment(1);
    telemetry::sessions_open(shared.sessions.len());
    Ok(OpenedSession { id, committed_len: len, last_round: 0, resumed: false, greedy: params.is_greedy(), stream: 0 })
}

/// Re-attaches a session on the client's committed tokens (`Open.resume`).
/// It goes on from them (`VerifierSession::resume_on`): a greedy session
/// drops what the client never heard of (tokens run on alone, a verdict
/// lost with the connection) and decodes it again, the same tokens; tokens
/// the client went on with alone (its drafter, while the cloud was away) are
/// prefilled, only they. A sampled session must hold no token the client
/// lacks.
async fn resume_session(
    shared: &Shared,
    owner: &Owner,
    open: &v1::Open,
    tx: &mpsc::Sender<Result<SessionResponse, Status>>,
) -> Result<OpenedSession, Status> {
    let id = open.resume.as_str();
    let (mut verifier, last_round, stream) =
        shared.sessions.checkout(id, owner, Holder::Attach).map_err(session_status)?;
    // Every refusal leaves the session as it was, for another try.
    let refuse = |verifier, status: Status| {
        shared.sessions.checkin(id, verifier, last_round);
        shared.sessions.detach(id, stream);
        Err(status)
    };
    let (held, common) = (verifier.committed().len(), verifier.shared_with(&open.prompt));
    let new = open.prompt.len().saturating_sub(common);
    if new > shared.limits.max_prompt_tokens {
        let max = shared.limits.max_prompt_tokens;
        let msg =
            format!("the resume brings {new} tokens to prefill; this server takes at most {max} (--max-prompt-tokens)");
        return refuse(verifier, Status::out_of_range(msg));
    }
    let greedy = verifier.sampling().is_greedy();
    match verifier.resume_on(&open.prompt) {
        Ok(true) => {}
        Ok(false) => {
            let msg = format!(
                "session {id} holds {held} committed tokens, {} past the {common} it shares with the {} sent; a sampled session cannot go back",
                held - common,
                open.prompt.len()
            );
            return refuse(verifier, Status::failed_precondition(msg));
        }
        Err(e) => return refuse(verifier, engine_status(&e)),
    }
    let verifier = if verifier.prefill_remaining() > 0 {
        let (charge, evicted) = shared.sessions.charge(shared.limits.memory.open(new));
        telemetry::evicted("memory budget", evicted.memory);
        let done = prefill(shared, PrefillFrom::Session(verifier), tx.closed()).await;
        drop(charge);
        match done {
            Ok(v) => v,
            // Refused by a full queue: its new tokens stay committed, to be
            // fed on the next resume.
            Err((Some(v), st)) => return refuse(v, st),
            // Lost with its prefill (the client left, the pass failed).
            Err((None, st)) => {
                let _ = shared.sessions.remove(id, owner);
                return Err(st);
            }
        }
    } else {
        verifier
    };
    let len = verifier.committed().len();
    shared.sessions.checkin(id, verifier, last_round);
    // Behind a proxy, this shows that a resume reached its replica.
    metrics::counter!(telemetry::SESSIONS_RESUMED).increment(1);
    Ok(OpenedSession { id: id.to_string(), committed_len: len, last_round, resumed: true, greedy, stream })
}

/// A pass's verdict, its wall time and batch size, with the session's state
/// checked back in at `round` (or the session dropped where the pass lost
/// its state). `last_round` is what the session answered before, should the
/// pass have failed.
fn settle(
    shared: &Shared,
    id: &str,
    owner: &Owner,
    (round, last_round): (u64, u64),
    done: Result<VerifyDone, (Option<SessionState>, Status)>,
) -> Result<(Verdict, Duration, usize), Status> {
    let VerifyDone { verifier, result, compute, batch_size } = match done {
        Ok(d) => d,
        Err((Some(verifier), status)) => {
            shared.sessions.checkin(id, verifier, last_round);
            return Err(status);
        }
        Err((None, status)) => {
            let _ = shared.sessions.remove(id, owner);
            return Err(status);
        }
    };
    match result {
        Ok(v) => {
            let evicted = shared.sessions.checkin(id, verifier, round);
            telemetry::evicted("memory budget", evicted.memory);
            Ok((v, compute, batch_size))
        }
        Err(e) => {
            shared.sessions.checkin(id, verifier, last_round);
            Err(engine_status(&e))
        }
    }
}

/// One pass a session runs alone: its own draft (empty where it has none
/// worth sending, a plain decoding step) verified, and the tokens it
/// commits, at most `room`. A message that arrives meanwhile waits in
/// `ready`, with the time it came.
#[allow(clippy::too_many_arguments)]
async fn run_on_step<S>(
    shared: &Shared,
    (id, owner, stream): (&str, &Owner, u64),
    last_round: u64,
    room: usize,
    mut drafts: Option<&mut OwnDrafts<'_>>,
    inbound: &mut S,
    ready: &mut VecDeque<Result<Option<SessionRequest>, Status>>,
) -> Result<(Vec<u32>, Option<Instant>), Status>
where
    S: Stream<Item = Result<SessionRequest, Status>> + Unpin,
{
    let (verifier, _, _) = shared.sessions.checkout(id, owner, Holder::Stream(stream)).map_err(session_status)?;
    let committed = verifier.committed().len();
    let limits = shared.batcher.limits();
    let (draft, tree) = own_draft(drafts.as_deref_mut(), verifier.committed(), &limits, room, shared.vocab(), id);
    let (charge, evicted) = shared.sessions.charge(shared.limits.memory.round(committed, tree.len()));
    telemetry::evicted("memory budget", evicted.memory);
    let t = Instant::now();
    let step = verify(shared, verifier, tree, Vec::new());
    tokio::pin!(step);
    let mut arrived = None;
    let done = tokio::select! {
        done = &mut step => done,
        m = next(inbound) => {
            ready.push_back(m);
            arrived = Some(Instant::now());
            step.await
        }
    };
    drop(charge);
    let (verdict, compute, _) = settle(shared, id, owner, (last_round, last_round), done)?;
    if let Some(d) = &draft {
        telemetry::run_on_drafted(d.tree.len(), verdict.accepted.len());
    }
    let emitted = own_tokens(drafts, draft.as_ref(), &verdict, compute.as_secs_f64() * 1e3);
    telemetry::run_on(t.elapsed(), emitted.len());
    shared.count_tokens(1, emitted.len());
    Ok((emitted, arrived))
}

async fn drive_session<S>(
    shared: &Shared,
    owner: &Owner,
    inbound: &mut S,
    tx: &mpsc::Sender<Result<SessionResponse, Status>>,
) -> Result<(), Status>
where
    S: Stream<Item = Result<SessionRequest, Status>> + Unpin,
{
    let first = next(inbound).await?.ok_or_else(|| Status::invalid_argument("the stream ended before Open"))?;
    telemetry::bytes(first.encoded_len(), 0);
    let Some(session_request::Msg::Open(open)) = first.msg else {
        return Err(Status::invalid_argument("the first message of a session must be Open"));
    };
    let OpenedSession { id, mut committed_len, mut last_round, resumed, greedy, stream } =
        open_session(shared, owner, &open, tx).await?;
    let _attachment = Attachment { shared, id: id.clone(), stream, _active: shared.batcher.active_guard() };
    let opened = v1::Opened { session_id: id.clone(), committed_len: committed_len as u32, resumed, last_round };
    if !send(tx, session_response::Msg::Opened(opened)).await {
        return Ok(());
    }
    let max_context = shared.info.max_context as usize;
    let mut run =
        RunOn { greedy, stop_ids: open.stop_ids, budget: open.run_on as usize, since: committed_len, own: Vec::new() };
    let mut pool = OwnDrafts::pool();
    let mut drafts =
        (greedy && shared.run_on_drafts).then(|| OwnDrafts::new(&mut pool, &run.stop_ids, shared.cost_curve()));
    let mut draining = shared.draining.clone();
    // What the last verified round committed: the bet a round sent ahead
    // makes (DraftRound.assumed).
    let mut last_emitted: Vec<u32> = Vec::new();
    // Once a bet lost, every round sent ahead before the client heard of it
    // is stale too, until a round that bets on nothing.
    let mut bets_lost = false;
    // Messages taken in early while looking for rounds to stack.
    let mut ready = VecDeque::new();
    // When the message at the front of `ready` arrived, if it waited there
    // for a pass to end (the client's round trip excludes that wait).
    let mut arrived_at = None;
    loop {
        // A server shutting down decodes nothing more on its own.
        if ready.is_empty() && run.may_step(committed_len, max_context) && !shared.draining() {
            read_ready(inbound, &mut ready);
            if ready.is_empty() {
                let room = run.room(committed_len, max_context);
                let (tokens, arrived) =
                    run_on_step(shared, (&id, owner, stream), last_round, room, drafts.as_mut(), inbound, &mut ready)
                        .await?;
                arrived_at = arrived;
                committed_len += tokens.len();
                tokens.iter().for_each(|&t| run.took(t));
                let msg = v1::RanOn { tokens, committed_len: committed_len as u32 };
                if !send(tx, session_response::Msg::RanOn(msg)).await {
                    return Ok(());
                }
                continue;
            }
        }
        let msg = match ready.pop_front() {
            Some(m) => m?,
            None => tokio::select! {
                m = next(inbound) => m?,
                _ = draining.wait_for(|d| *d) => return Err(shutting_down()),
            },
        };
        let Some(msg) = msg else { return Ok(()) };
        let arrived = arrived_at.take().unwrap_or_else(Instant::now);
        telemetry::bytes(msg.encoded_len(), 0);
        match msg.msg {
            Some(session_request::Msg::Round(round)) => {
                if round.round != last_round + 1 {
                    return Err(Status::failed_precondition(format!(
                        "round {} out of order: the next round is {}",
                        round.round,
                        last_round + 1
                    )));
                }
                let ahead = !round.assumed.is_empty();
                if ahead && (bets_lost || round.assumed != last_emitted) {
                    // Drafted before the last verdict, on a guess at it that
                    // was wrong: nothing here builds on the committed text.
                    // Not an error; the edge sends the round again.
                    last_round = round.round;
                    bets_lost = true;
                    telemetry::stale_round();
                    let msg = v1::Verdict::stale(round.round, committed_len);
                    if !send(tx, session_response::Msg::Verdict(msg)).await {
                        return Ok(());
                    }
                    continue;
                }
                bets_lost = false;
                // A round builds on what the client was last told, and the
                // tokens run on since then are walked through its tree; a
                // round sent ahead builds on exactly the round it bets on.
                let base = round.committed_len as usize;
                let fits = if ahead { base == run.since } else { (run.since..=committed_len).contains(&base) };
                if !fits {
                    return Err(Status::failed_precondition(format!(
                        "the draft builds on {} committed tokens; the session has {committed_len}",
                        round.committed_len
                    )));
                }
                let limits = shared.batcher.limits();
                let (tree, dists) = round
                    .to_draft(&limits, shared.vocab(), shared.limits.max_draft_top_k)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                run.budget = if run.greedy { round.run_on as usize } else { 0 };
                if base < committed_len {
                    let own = run.own[base - run.since..].to_vec();
                    let walk = run_on::walk(&tree, &own).map_err(|e| Status::invalid_argument(e.to_string()))?;
                    let (mut msg, emitted) = match walk {
                        Walk::Left { path } => {
                            // The verifier's tokens left the tree: answered
                            // with no pass, and the bets on it are lost.
                            let v = run_on::left_verdict(&tree, &path, &own);
                            let mut msg = v1::Verdict::from_verdict(round.round, &v, committed_len, 0, 0);
                            msg.ran_on = own[path.len() + 1..].to_vec();
                            msg.walked = path.len() as u32;
                            msg.pass_rounds = 0;
                            bets_lost = !msg.ran_on.is_empty();
                            telemetry::overtaken_round();
                            (msg, v.emitted_tokens(&tree))
                        }
                        Walk::Reached(below) => {
                            let (verifier, _, _) =
                                shared.sessions.checkout(&id, owner, Holder::Stream(stream)).map_err(session_status)?;
                            let memory = shared.limits.memory.round(committed_len, below.tree().len());
                            let (charge, evicted) = shared.sessions.charge(memory);
                            telemetry::evicted("memory budget", evicted.memory);
                            let t = Instant::now();
                            let done = verify(shared, verifier, below.tree().clone(), Vec::new()).await;
                            drop(charge);
                            let (sub, compute, batch) = settle(shared, &id, owner, (round.round, last_round), done)?;
                            let v = below.verdict(&tree, &sub);
                            committed_len += sub.accepted.len() + 1;
                            telemetry::round(v.accepted.len(), sub.accepted.len() + 1, t.elapsed());
                            shared.count_tokens(1, sub.accepted.len() + 1);
                            let compute_us = compute.as_micros().min(u32::MAX as u128) as u32;
                            let mut msg =
                                v1::Verdict::from_verdict(round.round, &v, committed_len, compute_us, batch as u32);
                            msg.walked = own.len() as u32;
                            (msg, v.emitted_tokens(&tree))
                        }
                    };
                    last_round = round.round;
                    last_emitted = emitted;
                    run.answered(committed_len);
                    msg.server_us = micros(arrived.elapsed());
                    if !send(tx, session_response::Msg::Verdict(msg)).await {
                        return Ok(());
                    }
                    continue;
                }
                let (verifier, _, _) =
                    shared.sessions.checkout(&id, owner, Holder::Stream(stream)).map_err(session_status)?;
                // Greedy rounds sent ahead on this one and already here are
                // checked in its pass: the verdicts are those of the rounds
                // one at a time, for one pass instead of several.
                let (stack, stacked) = if verifier.sampling().is_greedy() && dists.is_empty() {
                    read_ready(inbound, &mut ready);
                    let room = max_context.saturating_sub(committed_len + 1);
                    stack_ready(shared, &round, tree, room, &mut ready)
                } else {
                    (StackedRounds::new(tree), Vec::new())
                };
                let tree = stack.tree().clone();
                let (charge, evicted) = shared.sessions.charge(shared.limits.memory.round(committed_len, tree.len()));
                telemetry::evicted("memory budget", evicted.memory);
                let t = Instant::now();
                let done = verify(shared, verifier, tree, dists).await;
                drop(charge);
                let last = stacked.last().map_or(round.round, |r| r.round);
                let (verdict, compute, batch) = settle(shared, &id, owner, (last, last_round), done)?;
                let latency = t.elapsed();
                let rounds: Vec<&v1::DraftRound> = std::iter::once(&round).chain(&stacked).collect();
                if let Some(r) = stacked.last() {
                    run.budget = if run.greedy { r.run_on as usize } else { 0 };
                }
                shared.count_tokens(1, 0);
                let mut compute_us = compute.as_micros().min(u32::MAX as u128) as u32;
                for (r, verdict) in rounds.iter().zip(stack.split(&verdict)) {
                    last_round = r.round;
                    let msg = match verdict {
                        Some(verdict) => {
                            committed_len += verdict.accepted.len() + 1;
                            last_emitted.clear();
                            last_emitted.extend(verdict.accepted.iter().map(|&n| r.tokens[n]));
                            last_emitted.push(verdict.next_token);
                            let emitted = verdict.accepted.len() + 1;
                            telemetry::round(verdict.accepted.len(), emitted, latency);
                            shared.count_tokens(0, emitted);
                            if r.round != round.round {
                                telemetry::stacked_round();
                            }
                            let mut msg =
                                v1::Verdict::from_verdict(r.round, &verdict, committed_len, compute_us, batch as u32);
                            msg.pass_rounds = rounds.len() as u32;
                            msg.server_us = micros(arrived.elapsed());
                            // The pass is reported once, with the first round.
                            compute_us = 0;
                            msg
                        }
                        None => {
                            telemetry::stale_round();
                            bets_lost = true;
                            v1::Verdict::stale(r.round, committed_len)
                        }
                    };
                    if !send(tx, session_response::Msg::Verdict(msg)).await {
                        return Ok(());
                    }
                }
                run.answered(committed_len);
                if shared.draining() {
                    return Err(shutting_down());
                }
            }
            Some(session_request::Msg::Close(_)) => {
                shared.sessions.remove(&id, owner).map_err(session_status)?;
                telemetry::sessions_open(shared.sessions.len());
                send(tx, session_response::Msg::Closed(v1::Closed { committed_len: committed_len as u32 })).await;
                return Ok(());
            }
            Some(session_request::Msg::Open(_)) => {
                return Err(Status::invalid_argument("Open may only be the first message of a session"));
            }
            None => return Err(Status::invalid_argument("an empty SessionRequest")),
        }
    }
}

async fn drive_generate(
    shared: &Shared,
    owner: &Owner,
    req: GenerateRequest,
    tx: &mpsc::Sender<Result<GenerateResponse, Status>>,
) -> Result<(), Status> {
    if !req.tokenizer_hash.is_empty() {
        check_tokenizer(shared, &req.tokenizer_hash)?;
    }
    if shared.draining() {
        return Err(shutting_down());
    }
    if req.max_new_tokens == 0 {
        return Err(Status::invalid_argument("max_new_tokens must be at least 1"));
    }
    check_prompt(shared, &req.prompt)?;
    let params = sampling(req.sampling.as_ref())?;
    let stop_ids = if req.stop_ids.is_empty() { shared.stop_ids.clone() } else { req.stop_ids.clone() };
    let _slot = reserve(shared, owner, req.prompt.len())?;
    let _active = shared.batcher.active_guard();
    let mut verifier = prefill_prompt(shared, req.prompt.clone(), params, tx.closed()).await?;
    let limits = shared.batcher.limits();
    let max_context = shared.info.max_context as usize;
    let max_new = req.max_new_tokens as usize;
    let mut pool = OwnDrafts::pool();
    let own = req.self_draft && verifier.sampling().is_greedy();
    let mut drafts = own.then(|| OwnDrafts::new(&mut pool, &stop_ids, shared.cost_curve()));
    let mut generated = 0usize;
    loop {
        if shared.draining() {
            return Err(shutting_down());
        }
        let t = Instant::now();
        let room = (max_new - generated).min(max_context.saturating_sub(verifier.committed().len() + 1));
        let (draft, tree) = own_draft(drafts.as_mut(), verifier.committed(), &limits, room, shared.vocab(), "generate");
        let memory = shared.limits.memory.round(verifier.committed().len(), tree.len());
        let (charge, _) = shared.sessions.charge(memory);
        let done = verify(shared, verifier, tree, Vec::new()).await.map_err(|(_, s)| s);
        drop(charge);
        let done = done?;
        verifier = done.verifier;
        let verdict = done.result.map_err(|e| engine_status(&e))?;
        let mut tokens = own_tokens(drafts.as_mut(), draft.as_ref(), &verdict, done.compute.as_secs_f64() * 1e3);
        telemetry::round(verdict.accepted.len(), tokens.len(), t.elapsed());
        shared.count_tokens(1, tokens.len());
        // The session may hold tokens past a stop; the answer ends at it.
        let stop = tokens.iter().position(|t| stop_ids.contains(t));
        if let Some(i) = stop {
            tokens.truncate(i + 1);
        }
        generated += tokens.len();
        let finish = if stop.is_some() {
            "stop"
        } else if generated >= max_new || verifier.committed().len() + 1 >= max_context {
            "length"
        } else {
            ""
        };
        let compute_us = done.compute.as_micros().min(u32::MAX as u128) as u32;
        let resp = GenerateResponse { tokens, finish_reason: finish.into(), compute_us };
        telemetry::bytes(0, resp.encoded_len());
        if tx.send(Ok(resp)).await.is_err() || !finish.is_empty() {
            return Ok(());
        }
    }
}

/// Runs one session stream to its end, whatever the transport: requests come
/// from `inbound`, responses (and a final error status) go to `tx`.
pub async fn run_session<S>(
    shared: Arc<Shared>,
    owner: Owner,
    mut inbound: S,
    tx: mpsc::Sender<Result<SessionResponse, Status>>,
) where
    S: Stream<Item = Result<SessionRequest, Status>> + Unpin,
{
    if let Err(status) = drive_session(&shared, &owner, &mut inbound, &tx).await {
        let _ = tx.send(Err(reject(status))).await;
    }
}

/// Runs one `Generate` call to its end, whatever the transport.
pub async fn run_generate(
    shared: Arc<Shared>,
    owner: Owner,
    req: GenerateRequest,
    tx: mpsc::Sender<Result<GenerateResponse, Status>>,
) {
    telemetry::bytes(req.encoded_len(), 0);
    if let Err(status) = drive_generate(&shared, &owner, req, &tx).await {
        let _ = tx.send(Err(reject(status))).await;
    }
}

#[tonic::async_trait]
impl Verifier for VerifierService {
    async fn info(&self, req: Request<InfoRequest>) -> Result<Response<ModelInfo>, Status> {
        owner(&req)?;
        Ok(Response::new(self.shared.info.clone()))
    }

    type SessionStream = BoxStream<SessionResponse>;

    async fn session(&self, req: Request<Streaming<SessionRequest>>) -> Result<Response<Self::SessionStream>, Status> {
        let owner = owner(&req)?;
        let (tx, rx) = mpsc::channel(4);
        // Each session runs on its own task: a slow or stalled client only
        // ever blocks itself.
        tokio::spawn(run_session(self.shared.clone(), owner, req.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type GenerateStream = BoxStream<GenerateResponse>;

    async fn generate(&self, req: Request<GenerateRequest>) -> Result<Response<Self::GenerateStream>, Status> {
        let owner = owner(&req)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run_generate(self.shared.clone(), owner, req.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
