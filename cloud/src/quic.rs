//! The Verifier service over QUIC (quinn): one bidirectional stream per
//! call, carrying length-delimited protobuf frames (`proto/ouro/v1/quic.proto`).
//! The handlers are the gRPC ones; only the framing differs.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use ouro_proto::frame::{self, FrameEncoder};
use ouro_proto::v1::{quic_call, quic_reply, CallStatus, QuicCall, QuicReply, SessionRequest};
use quinn::{RecvStream, SendStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;
use tonic::Status;

use crate::auth::TokenSet;
use crate::service::{run_generate, run_session, Shared};

use ouro_proto::quic::ALPN;

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("TLS material: {0}")]
    Pem(String),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Config(String),
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Certificate chain and key (PEM).
pub struct TlsMaterial {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl TlsMaterial {
    /// A throwaway self-signed certificate for `localhost`, for the loopback
    /// development mode: QUIC cannot run without TLS.
    pub fn self_signed() -> Result<Self, QuicError> {
        let ck =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).map_err(|e| QuicError::Pem(e.to_string()))?;
        Ok(Self { cert_pem: ck.cert.pem().into_bytes(), key_pem: ck.signing_key.serialize_pem().into_bytes() })
    }
}

fn server_config(tls: &TlsMaterial) -> Result<quinn::ServerConfig, QuicError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| QuicError::Pem(format!("certificate: {e:?}")))?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|e| QuicError::Pem(format!("key: {e:?}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(cfg).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(ouro_proto::quic::transport()));
    Ok(server)
}

/// Serves the Verifier over QUIC on `addr`, when one is given: binds now,
/// so that a taken port fails start-up, and serves from a task for the life
/// of the process. `tls` is the gRPC listener's certificate; without one
/// (`--insecure-dev`) a throwaway self-signed one, as QUIC has no plaintext.
/// Returns the bound address, for the readiness line.
pub fn start(
    addr: Option<SocketAddr>,
    tls: Option<&TlsMaterial>,
    shared: &Arc<Shared>,
    tokens: &TokenSet,
) -> Result<Option<SocketAddr>, QuicError> {
    let Some(addr) = addr else { return Ok(None) };
    let self_signed;
    let tls = match tls {
        Some(t) => t,
        None => {
            self_signed = TlsMaterial::self_signed()?;
            &self_signed
        }
    };
    let endpoint =
        quinn::Endpoint::server(server_config(tls)?, addr).map_err(|source| QuicError::Bind { addr, source })?;
    let bound = endpoint.local_addr().map_err(|source| QuicError::Bind { addr, source })?;
    tokio::spawn(serve(endpoint, shared.clone(), tokens.clone()));
    Ok(Some(bound))
}

async fn serve(endpoint: quinn::Endpoint, shared: Arc<Shared>, tokens: TokenSet) {
    while let Some(incoming) = endpoint.accept().await {
        let (shared, tokens) = (shared.clone(), tokens.clone());
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(call(send, recv, shared.clone(), tokens.clone()));
            }
        });
    }
}

/// A call's reply half: frames onto its send stream.
type Replies = FramedWrite<SendStream, FrameEncoder>;

async fn reply(send: &mut Replies, msg: quic_reply::Msg) -> bool {
    send.send(QuicReply { msg: Some(msg) }).await.is_ok()
}

async fn finish(mut send: Replies, status: Status) {
    let st = CallStatus { code: status.code() as i32, message: status.message().to_string() };
    let _ = reply(&mut send, quic_reply::Msg::Status(st)).await;
    let send = send.get_mut();
    let _ = send.finish();
    // Let the peer read the status before the stream is dropped.
    let _ = send.stopped().await;
}

/// Sends a handler's responses as frames, then its final status.
async fn forward<T>(mut rx: mpsc::Receiver<Result<T, Status>>, mut send: Replies, wrap: fn(T) -> quic_reply::Msg) {
    while let Some(item) = rx.recv().await {
        match item {
            Ok(r) => {
                if !reply(&mut send, wrap(r)).await {
                    return;
                }
            }
            Err(st) => return finish(send, st).await,
        }
    }
    finish(send, Status::ok("")).await;
}

async fn call(send: SendStream, recv: RecvStream, shared: Arc<Shared>, tokens: TokenSet) {
    let mut send = frame::writer(send);
    // The first frame is a `QuicCall`; on a session, `SessionRequest`s follow
    // on the same stream, so the reader changes type after it.
    let mut calls = frame::reader::<QuicCall, _>(recv);
    let first = match calls.next().await {
        Some(Ok(c)) => c,
        None => return,
        Some(Err(e)) => return finish(send, Status::invalid_argument(e.to_string())).await,
    };
    let owner = match tokens.owner_of(&first.token) {
        Ok(o) => o,
        Err(st) => return finish(send, st).await,
    };
    match first.call {
        Some(quic_call::Call::Info(_)) => {
            reply(&mut send, quic_reply::Msg::Info(shared.info.clone())).await;
            finish(send, Status::ok("")).await;
        }
        Some(quic_call::Call::Generate(req)) => {
            let (tx, rx) = mpsc::channel(16);
            tokio::spawn(run_generate(shared, owner, req, tx));
            forward(rx, send, quic_reply::Msg::Generate).await;
        }
        Some(quic_call::Call::Session(_)) => {
            // Frames in become the request stream; a frame that does not
            // decode ends it with INVALID_ARGUMENT, as over gRPC (the reader
            // ends after its first error).
            let requests = calls
                .map_decoder(|_| frame::FrameDecoder::<SessionRequest>::default())
                .map(|r| r.map_err(|e| Status::invalid_argument(e.to_string())));
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(run_session(shared, owner, requests, tx));
            forward(rx, send, quic_reply::Msg::Session).await;
        }
        None => finish(send, Status::invalid_argument("a QuicCall without a call")).await,
    }
}
