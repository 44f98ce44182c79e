//! One speculative session over the wire: the drafter runs here, the
//! verifier in the cloud, one `DraftRound` and one `Verdict` per round. The
//! rounds are common's [round driver](ouro_common::spec::drive); this file
//! only opens the session and puts the driver's drafts on the wire
//! ([`RemoteVerifier`]).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use ouro_common::controller::{CostCurve, Learned, Objective};
use ouro_common::draft::PhrasePool;
use ouro_common::engine::{Draft, DEFAULT_DRAFT_WINDOW};
use ouro_common::model::CausalLm;
use ouro_common::sampling::SamplingParams;
use ouro_common::spec::{self, DraftStrategy, Opening, Reply, Rounds, SpecStats, Verifier};
use ouro_common::tree::TreeLimits;
use ouro_proto::v1::{self, session_request, session_response};
use prost::Message;
use tokio_stream::StreamExt;

use super::error::LinkError;
use super::transport::{SessionStream, Transport};

/// One speculative generation's inputs.
pub struct SpecRequest<'a> {
    pub tokenizer_hash: &'a str,
    /// Every committed token so far.
    pub prompt: &'a [u32],
    pub max_new: usize,
    pub stop_ids: &'a [u32],
    /// How the drafter drafts: a strategy from common's name table
    /// ([`ouro_common::spec::strategy::parse`]).
    pub strategy: Arc<dyn DraftStrategy>,
    pub sampling: SamplingParams,
    /// Draft the next round while a verdict is in flight (greedy only).
    pub pipeline: bool,
    /// The cloud's handshake, if the caller already has it.
    pub info: Option<&'a v1::ModelInfo>,
    /// What an earlier generation's policy learned: greedy runs start from
    /// it, and leave what they learned in [`SpecStats::learned`].
    pub warm: Option<&'a Learned>,
    /// The drafter reads at most this many of the prompt's last tokens (0:
    /// all of it).
    pub draft_window: usize,
    /// Let the cloud decode on its own while it has no round in hand
    /// (greedy only): it then never sits idle for a round trip, at one
    /// pass per token it runs on.
    pub run_on: bool,
}

impl SpecRequest<'_> {
    /// Where the request's strategy starts drafting.
    pub fn opening<'a>(&'a self, drafter: &'a dyn CausalLm, pool: &'a mut PhrasePool) -> Opening<'a> {
        Opening {
            drafter: Some(drafter),
            prompt: self.prompt,
            sampling: self.sampling,
            stop_ids: self.stop_ids,
            pool,
            draft_window: self.draft_window,
        }
    }

    /// The request's rounds against a verifier that takes trees within
    /// `limits` over `vocab` token ids, and holds `max_context` tokens.
    pub fn rounds(&self, limits: TreeLimits, vocab: usize, max_context: usize) -> Rounds<'_> {
        Rounds {
            prompt_len: self.prompt.len(),
            max_new: self.max_new,
            stop_ids: self.stop_ids,
            sampled: !self.sampling.is_greedy(),
            pipeline: self.pipeline,
            limits,
            vocab,
            max_context,
            run_on: self.runs_on(),
        }
    }

    /// Whether the cloud may decode on its own: tokens it decodes alone cost
    /// a pass each, so never when plans maximise tokens per verifier
    /// compute, and never for sampled requests (a seed's text would depend
    /// on when rounds arrive).
    pub fn runs_on(&self) -> bool {
        self.run_on && self.sampling.is_greedy() && self.strategy.objective() == Objective::Latency
    }
}

/// Speculative generation over the wire: the drafter runs here, the verifier
/// in the server. Stops at `max_new` tokens or a stop token.
pub async fn speculate(
    client: &mut impl Transport,
    drafter_model: &dyn CausalLm,
    tokenizer_hash: &str,
    prompt: &[u32],
    max_new: usize,
    stop_ids: &[u32],
    strategy: Arc<dyn DraftStrategy>,
) -> Result<SpecStats, LinkError> {
    let req = SpecRequest {
        tokenizer_hash,
        prompt,
        max_new,
        stop_ids,
        strategy,
        sampling: SamplingParams::greedy(),
        pipeline: true,
        info: None,
        warm: None,
        draft_window: DEFAULT_DRAFT_WINDOW,
        run_on: true,
    };
    let mut run = SpecStats::default();
    let mut pool = PhrasePool::default();
    speculate_into(client, drafter_model, &req, &mut pool, &mut run, |_| ControlFlow::Continue(())).await?;
    Ok(run)
}

/// [`speculate`], handing each round's committed tokens to `on_tokens` as
/// they arrive and accumulating into `run`, so that a caller whose link
/// fails mid-way knows exactly what was committed. Called again with the
/// same `run` (and every committed token as the prompt), it resumes the
/// cloud session of the call before, so the cloud prefills nothing it
/// already holds; where the cloud no longer has it, or cannot go on from
/// those tokens, it opens a new one. `pool` carries phrases
/// across requests (Ouroboros' warm start); it keeps what this generation
/// taught even if the generation is dropped half-way.
pub async fn speculate_into(
    client: &mut impl Transport,
    drafter_model: &dyn CausalLm,
    req: &SpecRequest<'_>,
    pool: &mut PhrasePool,
    run: &mut SpecStats,
    on_tokens: impl FnMut(&[u32]) -> ControlFlow<()> + Send,
) -> Result<(), LinkError> {
    // The handshake costs a round trip; a caller that has just made it passes it in.
    let info = match req.info {
        Some(i) => i.clone(),
        None => client.info().await?,
    };
    // While the edge prefills its drafter and drafts round 1, the cloud,
    // its prefill done, may already decode the first tokens.
    let run_on = req.runs_on();
    let open = v1::Open {
        tokenizer_hash: req.tokenizer_hash.into(),
        prompt: req.prompt.to_vec(),
        sampling: Some((&req.sampling).into()),
        stop_ids: req.stop_ids.to_vec(),
        run_on: if run_on { req.max_new.min(u32::MAX as usize) as u32 } else { 0 },
        ..Default::default()
    };
    let at = req.opening(drafter_model, pool);
    let resume = run.session.clone().unwrap_or_default();
    let open_or_resume = async {
        if resume.is_empty() {
            return client.open_session(open).await;
        }
        // The stream that held the session may have a pass in flight (the
        // cloud running on): it lets go when the pass ends.
        let mut wait = Duration::from_millis(25);
        loop {
            match client.open_session(v1::Open { resume: resume.clone(), ..open.clone() }).await {
                Err(st) if st.code() == tonic::Code::Aborted && wait < RESUME_PATIENCE => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(st) if cannot_resume(&st) => {
                    tracing::debug!("a new session: the cloud cannot resume the last one ({st})");
                    return client.open_session(open).await;
                }
                r => return r,
            }
        }
    };
    // The drafter prefills the prompt while the cloud prefills it too: the
    // session's Open is on its way before the drafter's blocking pass starts.
    let (session, source) = tokio::join!(open_or_resume, async { off_runtime(|| req.strategy.open(at)) });
    let mut source = source?;
    let (mut stream, opened) = session?;
    run.session = Some(opened.session_id.clone());
    // Greedy runs plan with the cloud's own cost curve from the start, and
    // measured rounds refine it. Sampled runs keep the default curve: which
    // sample a seed yields depends on the tree shape, so their plans must not
    // depend on anything measured.
    let limits = TreeLimits { max_nodes: info.max_tree_nodes as usize, max_depth: info.max_tree_depth as usize };
    // No context bound here: the cloud says when its context is full.
    let rounds = req.rounds(limits, info.vocab_size as usize, usize::MAX);
    let curve = if rounds.sampled {
        None
    } else {
        CostCurve::from_points(info.verify_cost.iter().map(|c| (c.tokens as usize, c.ms as f64))).ok()
    };
    let mut policy = req.strategy.warm_policy(curve, req.warm, rounds.sampled);
    let mut verifier =
        RemoteVerifier::new(&mut stream, opened.committed_len as usize, opened.last_round, rounds.sampled);
    let driven = spec::drive(&mut verifier, &mut *source, &mut *policy, &rounds, run, on_tokens).await;
    // A generation cut short (a lost link, a cancelled client) still taught
    // the policy something.
    run.learned = policy.learned().or(run.learned.take());
    driven?;
    // The caller has every token by now: the Close handshake, a round trip
    // on a slow link, is none of its waiting where a runtime can finish it.
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn(async move { stream.close().await })),
        Err(_) => drop(stream.close().await),
    }
    Ok(())
}

/// How long a resume waits, all told, for the stream that held the
/// session to let go, before a new session is opened instead.
const RESUME_PATIENCE: Duration = Duration::from_millis(800);

/// Refusals of a resume that a new session gets past: the session is gone
/// (evicted, expired, on another replica), still busy with a pass of the
/// stream that held it, or cannot go on from the tokens sent (a sampled
/// session that drew more), or the tokens to prefill are more than a
/// resume may bring.
fn cannot_resume(st: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(st.code(), Code::NotFound | Code::FailedPrecondition | Code::OutOfRange | Code::Aborted)
}

/// The cloud as the round driver's verifier: the only place the driver's
/// drafts become wire messages.
pub struct RemoteVerifier<'s> {
    stream: &'s mut SessionStream,
    /// Rounds count per session (a new session starts again at 1, a
    /// resumed one after its last).
    round: u64,
    committed: usize,
    /// Sampled drafts carry the drafter's distributions (q̃) for the cloud.
    sampled: bool,
    /// Bytes sent since the last verdict (a round sent ahead is counted with
    /// the verdict read after it was sent).
    sent_bytes: usize,
    /// The committed length the last round sent builds on (for a round sent
    /// ahead: if its bet and every bet before it win); the next bet adds its
    /// own tokens to it.
    tip: usize,
    /// A message read while draining tokens the cloud ran on, for `verdict`.
    held: Option<Result<session_response::Msg, tonic::Status>>,
    /// Bytes of the tokens drained since the last verdict.
    drained_bytes: usize,
}

impl<'s> RemoteVerifier<'s> {
    /// A verifier on an opened session whose cloud holds `committed` tokens
    /// and answered rounds up to `last_round` (`Opened`).
    pub fn new(stream: &'s mut SessionStream, committed: usize, last_round: u64, sampled: bool) -> Self {
        let (round, tip) = (last_round, committed);
        Self { stream, round, committed, sampled, sent_bytes: 0, tip, held: None, drained_bytes: 0 }
    }
}

impl Verifier for RemoteVerifier<'_> {
    type Error = LinkError;

    fn remote(&self) -> bool {
        true
    }

    async fn send(&mut self, draft: &Draft, run_on: usize) -> Result<(), LinkError> {
        self.round += 1;
        // A round sent the ordinary way follows a verdict that ended every bet.
        self.tip = self.committed;
        let dists = self.sampled.then_some(&draft.dists[..]);
        let mut msg = v1::DraftRound::from_draft(self.round, self.committed, &draft.tree, dists);
        msg.run_on = run_on.min(u32::MAX as usize) as u32;
        self.sent_bytes += msg.encoded_len();
        self.stream.send(session_request::Msg::Round(msg)).await;
        Ok(())
    }

    async fn verdict(&mut self, draft: &Draft, ran_on: &mut (dyn FnMut(&[u32]) + Send)) -> Result<Reply, LinkError> {
        // A round sent ahead on a bet that lost is answered as stale before
        // the round sent in its place; tokens the cloud decodes on its own
        // come as it commits them.
        let mut other_bytes = 0;
        let verdict = loop {
            let msg = match self.held.take() {
                Some(held) => held?,
                None => self.stream.reply().await?,
            };
            match msg {
                session_response::Msg::Verdict(v) if v.stale => other_bytes += v.encoded_len(),
                session_response::Msg::Verdict(v) => break v,
                session_response::Msg::RanOn(r) => {
                    other_bytes += r.encoded_len();
                    ran_on(&r.tokens);
                }
                other => return Err(tonic::Status::internal(format!("expected Verdict, got {other:?}")).into()),
            }
        };
        let v = verdict.to_verdict(&draft.tree)?;
        self.committed = verdict.committed_len as usize;
        // No pass checked a round the cloud's own tokens had left.
        let overtaken = verdict.pass_rounds == 0;
        let ran_ahead = verdict.walked as usize + if overtaken { 1 + verdict.ran_on.len() } else { 0 };
        Ok(Reply {
            verdict: v,
            compute_ms: verdict.compute_us as f64 / 1e3,
            batch_size: verdict.batch_size,
            shared_pass: verdict.pass_rounds > 1,
            bytes_out: std::mem::take(&mut self.sent_bytes),
            bytes_in: verdict.encoded_len() + other_bytes + std::mem::take(&mut self.drained_bytes),
            ran_on: verdict.ran_on,
            walked: verdict.walked as usize,
            ran_ahead,
            // Servers that predate `server_us` send 0.
            server_ms: (verdict.server_us > 0).then(|| verdict.server_us as f64 / 1e3),
        })
    }

    fn drain_ran_on(&mut self, ran_on: &mut (dyn FnMut(&[u32]) + Send)) {
        while self.held.is_none() {
            let Some(next) = self.stream.rx.next().now_or_never() else { return };
            match next {
                Some(Ok(v1::SessionResponse { msg: Some(session_response::Msg::RanOn(r)) })) => {
                    self.drained_bytes += r.encoded_len();
                    ran_on(&r.tokens);
                }
                // Anything else is for `verdict` to read, in its turn.
                Some(Ok(v1::SessionResponse { msg: Some(msg) })) => self.held = Some(Ok(msg)),
                Some(Ok(v1::SessionResponse { msg: None })) => {
                    self.held = Some(Err(tonic::Status::internal("an empty SessionResponse")))
                }
                Some(Err(status)) => self.held = Some(Err(status)),
                None => self.held = Some(Err(tonic::Status::internal("the session stream ended before a verdict"))),
            }
        }
    }

    fn while_in_flight<R>(&self, f: impl FnOnce() -> R) -> R {
        off_runtime(f)
    }

    fn sends_ahead(&self) -> bool {
        true
    }

    async fn send_ahead(&mut self, draft: &Draft, assumed: &[u32], run_on: usize) -> Result<(), LinkError> {
        self.round += 1;
        self.tip += assumed.len();
        let dists = self.sampled.then_some(&draft.dists[..]);
        let mut msg = v1::DraftRound::from_draft(self.round, self.tip, &draft.tree, dists);
        msg.assumed = assumed.to_vec();
        msg.run_on = run_on.min(u32::MAX as usize) as u32;
        self.sent_bytes += msg.encoded_len();
        self.stream.send(session_request::Msg::Round(msg)).await;
        Ok(())
    }
}

/// Runs CPU-bound drafting so that the runtime keeps moving the connection's
/// bytes meanwhile: on a multi-threaded runtime another thread drives the
/// I/O; a current-thread runtime has no other thread, so there it just runs.
fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use ouro_common::spec::strategy;

    use super::*;

    #[test]
    fn the_cloud_runs_on_for_greedy_requests_under_the_latency_objective_only() {
        let req = |draft: &str, sampling: SamplingParams, run_on: bool| SpecRequest {
            tokenizer_hash: "",
            prompt: &[1, 2],
            max_new: 8,
            stop_ids: &[],
            strategy: strategy::parse(draft).unwrap(),
            sampling,
            pipeline: true,
            info: None,
            warm: None,
            draft_window: 0,
            run_on,
        };
        let greedy = SamplingParams::greedy();
        assert!(req("ouroboros", greedy, true).runs_on());
        assert!(req("pool", greedy, true).rounds(TreeLimits::UNBOUNDED, 10, 100).run_on);
        assert!(!req("ouroboros", greedy, false).runs_on());
        assert!(!req("ouroboros-compute", greedy, true).runs_on());
        assert!(!req("ouroboros", SamplingParams::with_temperature(0.8, 1), true).runs_on());
    }
}
