//! What a transport to the cloud provides, so that gRPC and QUIC carry the
//! same protocol and everything above them is written once.

use std::pin::Pin;

use ouro_proto::v1::{self, session_request, session_response, SessionRequest, SessionResponse};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The calls of the `Verifier` service, whatever carries them.
#[allow(async_fn_in_trait)] // used with concrete types; no Send bound needed on the trait
pub trait Transport {
    async fn info(&mut self) -> Result<v1::ModelInfo, Status>;
    async fn generate_stream(
        &mut self,
        req: v1::GenerateRequest,
    ) -> Result<ResponseStream<v1::GenerateResponse>, Status>;
    /// Starts a `Session` call whose requests are read from `requests`.
    async fn session_stream(
        &mut self,
        requests: mpsc::Receiver<SessionRequest>,
    ) -> Result<ResponseStream<SessionResponse>, Status>;

    /// Opens a session and waits for `Opened`.
    async fn open_session(&mut self, open: v1::Open) -> Result<(SessionStream, v1::Opened), Status> {
        let (tx, rx) = mpsc::channel(4);
        let _ = tx.send(SessionRequest { msg: Some(session_request::Msg::Open(open)) }).await;
        let mut rx = self.session_stream(rx).await?;
        match rx.next().await.transpose()? {
            Some(SessionResponse { msg: Some(session_response::Msg::Opened(o)) }) => Ok((SessionStream { tx, rx }, o)),
            other => Err(Status::internal(format!("expected Opened, got {other:?}"))),
        }
    }
}

/// Target-only decoding through `Generate`, collected.
pub async fn generate(
    t: &mut impl Transport,
    prompt: &[u32],
    max_new: u32,
    stop_ids: &[u32],
) -> Result<Vec<u32>, Status> {
    let req = v1::GenerateRequest {
        prompt: prompt.to_vec(),
        max_new_tokens: max_new,
        stop_ids: stop_ids.to_vec(),
        ..Default::default()
    };
    let mut stream = t.generate_stream(req).await?;
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await.transpose()? {
        out.extend(msg.tokens);
    }
    Ok(out)
}

/// The client's side of an open session.
pub struct SessionStream {
    pub tx: mpsc::Sender<SessionRequest>,
    pub rx: ResponseStream<SessionResponse>,
}

impl std::fmt::Debug for SessionStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionStream")
    }
}

impl SessionStream {
    /// Opens a session on any transport (see [`Transport::open_session`]).
    pub async fn open(t: &mut impl Transport, open: v1::Open) -> Result<(Self, v1::Opened), Status> {
        t.open_session(open).await
    }

    /// Sends a round and waits for its verdict.
    pub async fn round(&mut self, round: v1::DraftRound) -> Result<v1::Verdict, Status> {
        self.send(session_request::Msg::Round(round)).await;
        self.verdict().await
    }

    /// Waits for the verdict on the round sent last.
    pub async fn verdict(&mut self) -> Result<v1::Verdict, Status> {
        match self.rx.next().await.transpose()? {
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
            match self.rx.next().await {
                Some(Ok(_)) => continue,
                None => return Status::ok(""),
                Some(Err(s)) => return s,
            }
        }
    }
}
