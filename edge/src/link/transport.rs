//! What a transport to the cloud provides, so that gRPC and QUIC carry the
//! same protocol and everything above them is written once.
//!
//! [`Transport`] is object-safe: a connected link is a `Box<dyn Transport>`
//! whichever transport carries it (see [`super::kind`] for connecting one).

use std::future::Future;
use std::pin::Pin;

use ouro_proto::v1::{self, session_request, session_response, SessionRequest, SessionResponse};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A transport's pending call.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The calls of the `Verifier` service, whatever carries them.
pub trait Transport: Send {
    fn info(&mut self) -> BoxFuture<'_, Result<v1::ModelInfo, Status>>;

    fn generate_stream(
        &mut self,
        req: v1::GenerateRequest,
    ) -> BoxFuture<'_, Result<ResponseStream<v1::GenerateResponse>, Status>>;

    /// Starts a `Session` call whose requests are read from `requests`.
    fn session_stream(
        &mut self,
        requests: mpsc::Receiver<SessionRequest>,
    ) -> BoxFuture<'_, Result<ResponseStream<SessionResponse>, Status>>;

    /// Opens a session and waits for `Opened`.
    fn open_session(&mut self, open: v1::Open) -> BoxFuture<'_, Result<(SessionStream, v1::Opened), Status>> {
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(4);
            let _ = tx.send(SessionRequest { msg: Some(session_request::Msg::Open(open)) }).await;
            let mut rx = self.session_stream(rx).await?;
            match rx.next().await.transpose()? {
                Some(SessionResponse { msg: Some(session_response::Msg::Opened(o)) }) => {
                    Ok((SessionStream { tx, rx }, o))
                }
                other => Err(Status::internal(format!("expected Opened, got {other:?}"))),
            }
        })
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn info(&mut self) -> BoxFuture<'_, Result<v1::ModelInfo, Status>> {
        (**self).info()
    }

    fn generate_stream(
        &mut self,
        req: v1::GenerateRequest,
    ) -> BoxFuture<'_, Result<ResponseStream<v1::GenerateResponse>, Status>> {
        (**self).generate_stream(req)
    }

    fn session_stream(
        &mut self,
        requests: mpsc::Receiver<SessionRequest>,
    ) -> BoxFuture<'_, Result<ResponseStream<SessionResponse>, Status>> {
        (**self).session_stream(requests)
    }

    fn open_session(&mut self, open: v1::Open) -> BoxFuture<'_, Result<(SessionStream, v1::Opened), Status>> {
        (**self).open_session(open)
    }
}

/// Where the cloud is and how to trust it, whatever the transport.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`: the TCP port for gRPC, the UDP port for QUIC. Several
    /// replicas (comma-separated, or a name with several addresses, like a
    /// headless Service): the client picks one by [`Target::affinity`]
    /// (see [`super::affinity`]).
    pub endpoint: String,
    pub token: String,
    /// The name the cloud's certificate must carry.
    pub server_name: String,
    pub trust: Trust,
    /// Sent on every call as [`super::affinity::AFFINITY_HEADER`], so that
    /// a proxy in front of several replicas keeps it on one of them.
    pub affinity: Option<String>,
}

/// How the client checks the server's certificate.
#[derive(Clone)]
pub enum Trust {
    /// Certificates signed by this CA (PEM), or this very certificate.
    Ca(Vec<u8>),
    /// No TLS (gRPC) or no certificate check (QUIC): loopback development only.
    InsecureDev,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trust::Ca(_) => "Ca(..)",
            Trust::InsecureDev => "InsecureDev",
        })
    }
}

/// Target-only decoding through `Generate`, collected.
pub async fn generate(
    t: &mut (impl Transport + ?Sized),
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
    pub async fn open(t: &mut (impl Transport + ?Sized), open: v1::Open) -> Result<(Self, v1::Opened), Status> {
        t.open_session(open).await
    }

    /// Sends a round and waits for its verdict.
    pub async fn round(&mut self, round: v1::DraftRound) -> Result<v1::Verdict, Status> {
        self.send(session_request::Msg::Round(round)).await;
        self.verdict().await
    }

    /// Waits for the verdict on the round sent last, passing over the
    /// tokens the server streams as it runs on (the verdict counts them).
    pub async fn verdict(&mut self) -> Result<v1::Verdict, Status> {
        loop {
            match self.reply().await? {
                session_response::Msg::Verdict(v) => return Ok(v),
                session_response::Msg::RanOn(_) => continue,
                other => return Err(Status::internal(format!("expected Verdict, got {other:?}"))),
            }
        }
    }

    /// The server's next message on the session.
    pub async fn reply(&mut self) -> Result<session_response::Msg, Status> {
        match self.rx.next().await.transpose()? {
            Some(SessionResponse { msg: Some(msg) }) => Ok(msg),
            None => Err(Status::internal("the session stream ended before a verdict")),
            Some(SessionResponse { msg: None }) => Err(Status::internal("an empty SessionResponse")),
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
