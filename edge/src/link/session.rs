//! One speculative session over the wire: the drafter runs here, the
//! verifier in the cloud, one `DraftRound` and one `Verdict` per round.

use std::time::Instant;

use ouro_common::controller::{Controller, DraftPolicy, FixedPolicy, RoundFeedback};
use ouro_common::draft::PhrasePool;
use ouro_common::engine::{Drafter, DrafterConfig};
use ouro_common::model::CausalLm;
use ouro_common::sampling::SamplingParams;
use ouro_common::tree::TreeLimits;
use ouro_proto::v1::{self, session_request, session_response, SessionRequest, SessionResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::grpc::{Client, LinkError};

/// Target-only decoding through `Generate`.
pub async fn generate(client: &mut Client, prompt: &[u32], max_new: u32, stop_ids: &[u32]) -> Result<Vec<u32>, Status> {
    let req = v1::GenerateRequest {
        prompt: prompt.to_vec(),
        max_new_tokens: max_new,
        stop_ids: stop_ids.to_vec(),
        ..Default::default()
    };
    let mut stream = client.generate(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await? {
        out.extend(msg.tokens);
    }
    Ok(out)
}

/// One side of an open session stream.
#[derive(Debug)]
pub struct SessionStream {
    pub tx: mpsc::Sender<SessionRequest>,
    pub rx: Streaming<SessionResponse>,
}

impl SessionStream {
    pub async fn open(client: &mut Client, open: v1::Open) -> Result<(Self, v1::Opened), Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(SessionRequest { msg: Some(session_request::Msg::Open(open)) }).await.unwrap();
        let mut rx = client.session(ReceiverStream::new(rx)).await?.into_inner();
        match rx.message().await? {
            Some(SessionResponse { msg: Some(session_response::Msg::Opened(o)) }) => Ok((Self { tx, rx }, o)),
            other => Err(Status::internal(format!("expected Opened, got {other:?}"))),
        }
    }

    /// Sends a round and waits for its verdict.
    pub async fn round(&mut self, round: v1::DraftRound) -> Result<v1::Verdict, Status> {
        self.send(session_request::Msg::Round(round)).await;
        match self.rx.message().await? {
            Some(SessionResponse { msg: Some(session_response::Msg::Verdict(v)) }) => Ok(v),
            other => Err(Status::internal(format!("expected Verdict, got {other:?}"))),
        }
    }

    pub async fn send(&mut self, msg: session_request::Msg) {
        // The server may already have ended the stream; its status comes
        // back on `rx`.
        let _ = self.tx.send(SessionRequest { msg: Some(msg) }).await;
    }

    /// Closes the session on the server and waits for the stream to end.
    pub async fn close(&mut self) -> Status {
        self.send(session_request::Msg::Close(v1::Close {})).await;
        self.status().await
    }

    /// The status the server ended the stream with (OK if it ended cleanly).
    pub async fn status(&mut self) -> Status {
        loop {
            match self.rx.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Status::ok(""),
                Err(s) => return s,
            }
        }
    }
}

/// How the drafter plans in [`speculate`].
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    Chain(usize),
    Ouroboros,
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
}

/// Speculative generation over the wire: the drafter runs here, the verifier
/// in the server. Stops at `max_new` tokens or a stop token.
#[allow(clippy::too_many_arguments)]
pub async fn speculate(
    client: &mut Client,
    drafter_model: &dyn CausalLm,
    tokenizer_hash: &str,
    prompt: &[u32],
    max_new: usize,
    stop_ids: &[u32],
    plan: Plan,
) -> Result<SpecRun, LinkError> {
    let open = v1::Open { tokenizer_hash: tokenizer_hash.into(), prompt: prompt.to_vec(), ..Default::default() };
    let (mut s, opened) = SessionStream::open(client, open).await?;
    let info = client.info(v1::InfoRequest {}).await?.into_inner();
    let limits = TreeLimits { max_nodes: info.max_tree_nodes as usize, max_depth: info.max_tree_depth as usize };
    let cfg = DrafterConfig { use_pool: matches!(plan, Plan::Ouroboros), ..DrafterConfig::default() };
    let mut drafter =
        Drafter::open(drafter_model, prompt, SamplingParams::greedy(), PhrasePool::default(), cfg, stop_ids.to_vec())?;
    let mut policy: Box<dyn DraftPolicy + Send> = match plan {
        Plan::Chain(g) => Box::new(FixedPolicy(g)),
        Plan::Ouroboros => Box::new(Controller::default()),
    };
    let mut run = SpecRun::default();
    let mut committed = opened.committed_len as usize;
    while run.tokens.len() < max_new {
        let mut p = policy.plan();
        p.trunk_len = p.trunk_len.min(max_new - run.tokens.len() - 1);
        let draft = drafter.draft(&p, &limits, info.vocab_size as usize)?;
        let msg = v1::DraftRound::from_draft(run.rounds as u64 + 1, committed, &draft.tree, None);
        run.bytes_out += msg.encoded_len();
        let t = Instant::now();
        let verdict = s.round(msg).await?;
        run.wait_secs += t.elapsed().as_secs_f64();
        run.cloud_compute_us += verdict.compute_us as u64;
        run.bytes_in += verdict.encoded_len();
        let v = verdict.to_verdict(&draft.tree)?;
        let (on_trunk, branches) = drafter.commit(&draft, &v);
        policy.observe(&RoundFeedback {
            offered_depth: draft.trunk_len,
            accepted_len: on_trunk,
            branches,
            nodes: draft.tree.len(),
            draft_ms: None,
            verify_ms: None,
            rtt_ms: None,
        });
        run.rounds += 1;
        committed = verdict.committed_len as usize;
        let mut emitted = v.emitted_tokens(&draft.tree);
        emitted.truncate(max_new - run.tokens.len());
        let stop = emitted.iter().position(|t| stop_ids.contains(t));
        if let Some(i) = stop {
            emitted.truncate(i + 1);
        }
        run.tokens.extend(emitted);
        if stop.is_some() {
            break;
        }
    }
    s.close().await;
    Ok(run)
}
