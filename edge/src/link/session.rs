//! One speculative session over the wire: the drafter runs here, the
//! verifier in the cloud, one `DraftRound` and one `Verdict` per round.

use std::ops::ControlFlow;
use std::time::Instant;

use ouro_common::controller::{
    Controller, ControllerConfig, CostCurve, DraftPolicy, FixedPolicy, Objective, RoundFeedback,
};
use ouro_common::draft::PhrasePool;
use ouro_common::engine::{Ahead, Drafter, DrafterConfig};
use ouro_common::model::CausalLm;
use ouro_common::sampling::SamplingParams;
use ouro_common::tree::TreeLimits;
use ouro_proto::v1::{self, session_request};
use prost::Message;

use super::error::LinkError;
use super::transport::Transport;

/// How the drafter plans in [`speculate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Chain(usize),
    /// Phrase pool and the adaptive controller, maximising `Objective`.
    Ouroboros,
    /// Ouroboros, maximising tokens per unit of verifier compute instead of
    /// tokens per second.
    OuroborosCompute,
}

/// What a speculative generation produced.
#[derive(Debug, Default)]
pub struct SpecRun {
    pub tokens: Vec<u32>,
    pub rounds: usize,
    /// Protobuf payload bytes sent and received.
    pub bytes_out: usize,
    pub bytes_in: usize,
    /// Time spent drafting, and waiting for verdicts (network + cloud).
    pub draft_secs: f64,
    pub wait_secs: f64,
    /// Cloud forward-pass time the verdicts reported (shared passes counted whole).
    pub cloud_compute_us: u64,
    /// Network round trips measured (a verdict's round trip less the
    /// cloud's compute), summed over `rtt_samples` rounds. Rounds whose
    /// verdict was already waiting when drafting ahead ended say nothing
    /// about it and are left out.
    pub rtt_ms_sum: f64,
    pub rtt_samples: usize,
    /// Draft nodes sent, and nodes the cloud accepted.
    pub drafted: usize,
    pub accepted: usize,
    /// Rounds drafted while the previous verdict was in flight, and how many
    /// of them were sent (the bet won).
    pub ahead_drafted: usize,
    pub ahead_used: usize,
}

/// One speculative generation's inputs.
pub struct SpecRequest<'a> {
    pub tokenizer_hash: &'a str,
    /// Every committed token so far.
    pub prompt: &'a [u32],
    pub max_new: usize,
    pub stop_ids: &'a [u32],
    pub plan: Plan,
    pub sampling: SamplingParams,
    /// Draft the next round while a verdict is in flight (greedy only).
    pub pipeline: bool,
    /// The cloud's handshake, if the caller already has it.
    pub info: Option<&'a v1::ModelInfo>,
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
    plan: Plan,
) -> Result<SpecRun, LinkError> {
    let req = SpecRequest {
        tokenizer_hash,
        prompt,
        max_new,
        stop_ids,
        plan,
        sampling: SamplingParams::greedy(),
        pipeline: true,
        info: None,
    };
    let mut run = SpecRun::default();
    let mut pool = PhrasePool::default();
    speculate_into(client, drafter_model, &req, &mut pool, &mut run, |_| ControlFlow::Continue(())).await?;
    Ok(run)
}

/// [`speculate`], handing each round's committed tokens to `on_tokens` as
/// they arrive and accumulating into `run`, so that a caller whose link
/// fails mid-way knows exactly what was committed. `pool` carries phrases
/// across requests (Ouroboros' warm start).
pub async fn speculate_into(
    client: &mut impl Transport,
    drafter_model: &dyn CausalLm,
    req: &SpecRequest<'_>,
    pool: &mut PhrasePool,
    run: &mut SpecRun,
    mut on_tokens: impl FnMut(&[u32]) -> ControlFlow<()>,
) -> Result<(), LinkError> {
    // The handshake costs a round trip; a caller that has just made it passes it in.
    let info = match req.info {
        Some(i) => i.clone(),
        None => client.info().await?,
    };
    let open = v1::Open {
        tokenizer_hash: req.tokenizer_hash.into(),
        prompt: req.prompt.to_vec(),
        sampling: Some((&req.sampling).into()),
        ..Default::default()
    };
    let limits = TreeLimits { max_nodes: info.max_tree_nodes as usize, max_depth: info.max_tree_depth as usize };
    let cfg = DrafterConfig { use_pool: !matches!(req.plan, Plan::Chain(_)), ..DrafterConfig::default() };
    // The drafter prefills the prompt while the cloud prefills it too: the
    // session's Open is on its way before the drafter's blocking pass starts.
    let taken = std::mem::take(pool);
    let (session, drafter) = tokio::join!(client.open_session(open), async {
        off_runtime(|| Drafter::open(drafter_model, req.prompt, req.sampling, taken, cfg, req.stop_ids.to_vec()))
    });
    let mut drafter = drafter?;
    let (mut s, opened) = match session {
        Ok(s) => s,
        Err(e) => {
            *pool = drafter.into_pool();
            return Err(e.into());
        }
    };
    // Greedy runs plan with the cloud's own cost curve from the start, and
    // measured rounds refine it. Sampled runs keep the default curve: which
    // sample a seed yields depends on the tree shape, so their plans must not
    // depend on anything measured.
    let curve = if req.sampling.is_greedy() {
        CostCurve::from_points(info.verify_cost.iter().map(|c| (c.tokens as usize, c.ms as f64))).ok()
    } else {
        None
    };
    let objective = match req.plan {
        Plan::OuroborosCompute => Objective::VerifierCompute,
        _ => Objective::Latency,
    };
    let controller = || {
        Controller::new(ControllerConfig { objective, ..ControllerConfig::default() })
            .expect("the default controller configuration is valid")
    };
    let mut policy: Box<dyn DraftPolicy + Send> = match (req.plan, curve) {
        (Plan::Chain(g), _) => Box::new(FixedPolicy(g)),
        (_, Some(curve)) => Box::new(controller().with_cost_curve(curve)),
        (_, None) => Box::new(controller()),
    };
    let sampled = !req.sampling.is_greedy();
    let vocab = info.vocab_size as usize;
    let mut committed = opened.committed_len as usize;
    let mut generated = 0;
    // A round drafted while the previous verdict was in flight, with its
    // drafting time and the tokens it bets the verdict commits.
    let mut ahead: Option<(Ahead, f64)> = None;
    let mut round = 0u64;
    let result = loop {
        if generated >= req.max_new {
            break Ok(());
        }
        let (draft, draft_ms) = match ahead.take() {
            Some((a, ms)) => {
                run.ahead_used += 1;
                (a.draft, ms)
            }
            None => {
                let mut p = policy.plan();
                p.trunk_len = p.trunk_len.min(req.max_new - generated - 1);
                let t = Instant::now();
                let d = drafter.draft(&p, &limits, vocab)?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                run.draft_secs += ms / 1e3;
                (d, ms)
            }
        };
        // Rounds count per session: `run` may span several (a re-opened or
        // resumed session starts again at round 1).
        round += 1;
        let msg = v1::DraftRound::from_draft(round, committed, &draft.tree, sampled.then_some(&draft.dists[..]));
        run.bytes_out += msg.encoded_len();
        let sent = Instant::now();
        s.send(session_request::Msg::Round(msg)).await;
        // While the verdict travels, draft the next round on the bet that
        // this one is accepted whole.
        let room_after = req.max_new.saturating_sub(generated + draft.trunk_len + 1);
        let mut ahead_ms = None;
        if req.pipeline && room_after >= 2 {
            let mut p = policy.plan();
            p.trunk_len = p.trunk_len.min(room_after - 1);
            let t = Instant::now();
            let a = off_runtime(|| drafter.draft_ahead(&draft, &p, &limits, vocab))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            run.draft_secs += ms / 1e3;
            if let Some(a) = a {
                run.ahead_drafted += 1;
                ahead = Some((a, ms));
                ahead_ms = Some(ms);
            }
        }
        let t = Instant::now();
        let verdict = match s.verdict().await {
            Ok(v) => v,
            Err(e) => break Err(e.into()),
        };
        let waited_ms = t.elapsed().as_secs_f64() * 1e3;
        let round_trip_ms = sent.elapsed().as_secs_f64() * 1e3;
        run.wait_secs += waited_ms / 1e3;
        run.cloud_compute_us += verdict.compute_us as u64;
        run.bytes_in += verdict.encoded_len();
        let v = verdict.to_verdict(&draft.tree)?;
        let (on_trunk, branches) = drafter.commit(&draft, &v);
        let verify_ms = verdict.compute_us as f64 / 1e3;
        // A verdict that was already waiting when drafting ahead ended says
        // only that the round trip was shorter than that drafting.
        let rtt_ms = match ahead_ms {
            Some(_) if waited_ms < 0.5 => None,
            _ => Some((round_trip_ms - verify_ms).max(0.0)),
        };
        if let Some(rtt) = rtt_ms {
            run.rtt_ms_sum += rtt;
            run.rtt_samples += 1;
        }
        // Seeded sampled runs plan from acceptance alone, so that a seed
        // reproduces its text whatever the timings (see engine/spec.rs).
        policy.observe(&RoundFeedback {
            offered_depth: draft.trunk_len,
            accepted_len: on_trunk,
            branches,
            nodes: draft.tree.len(),
            draft_ms: (!sampled).then_some(draft_ms),
            verify_ms: (!sampled).then_some(verify_ms),
            rtt_ms: rtt_ms.filter(|_| !sampled),
        });
        run.rounds += 1;
        run.drafted += draft.tree.len();
        run.accepted += v.accepted.len();
        committed = verdict.committed_len as usize;
        let mut emitted = v.emitted_tokens(&draft.tree);
        if ahead.as_ref().is_some_and(|(a, _)| a.assumed != emitted) {
            // Lost the bet; `commit` has already rolled the drafter back.
            ahead = None;
        }
        emitted.truncate(req.max_new - generated);
        let stop = emitted.iter().position(|t| req.stop_ids.contains(t));
        if let Some(i) = stop {
            emitted.truncate(i + 1);
        }
        generated += emitted.len();
        run.tokens.extend_from_slice(&emitted);
        if on_tokens(&emitted).is_break() || stop.is_some() {
            break Ok(());
        }
    };
    *pool = drafter.into_pool();
    if result.is_ok() {
        s.close().await;
    }
    result
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
