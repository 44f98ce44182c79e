//! The cloud link over QUIC (quinn): each call is one bidirectional stream
//! of length-delimited protobuf frames, ending in a status frame
//! (`proto/ouro/v1/quic.proto`).

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use ouro_proto::frame::{self, FrameEncoder};
use ouro_proto::v1::{self, quic_call, quic_reply, QuicCall, QuicReply, SessionRequest, SessionResponse};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;
use tonic::{Code, Status};

use super::affinity;
use super::error::LinkError;
use super::transport::{BoxFuture, ResponseStream, Target, Transport, Trust};

use ouro_proto::quic::ALPN;

/// An open QUIC connection to `ouro-cloud`.
#[derive(Clone)]
pub struct QuicLink {
    conn: quinn::Connection,
    token: String,
}

/// Connects to `target`. No proxy can hash QUIC on the affinity key, so
/// among several replicas the client picks by it itself.
pub async fn open(target: &Target) -> Result<QuicLink, LinkError> {
    let addr = affinity::resolve(&target.endpoint, target.affinity.as_deref()).await?;
    QuicLink::connect(addr, &target.server_name, &target.token, target.trust.clone()).await
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(trust: &Trust) -> Result<quinn::ClientConfig, LinkError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| LinkError::Protocol(e.to_string()))?;
    let mut cfg = match trust {
        Trust::Ca(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| LinkError::Protocol(format!("CA certificate: {e:?}")))?;
                roots.add(cert).map_err(|e| LinkError::Protocol(e.to_string()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::InsecureDev => {
            tracing::warn!("QUIC: NOT verifying the cloud's certificate (insecure development mode)");
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify)).with_no_client_auth()
        }
    };
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(cfg).map_err(|e| LinkError::Protocol(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    // Keep-alives and a short idle timeout: a crashed cloud is noticed in
    // seconds, and the local fallback starts, as it does over gRPC.
    client.transport_config(Arc::new(ouro_proto::quic::transport()));
    Ok(client)
}

impl QuicLink {
    /// Connects to `addr`, checking the certificate for `server_name`.
    pub async fn connect(addr: SocketAddr, server_name: &str, token: &str, trust: Trust) -> Result<Self, LinkError> {
        let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| LinkError::Protocol(e.to_string()))?;
        endpoint.set_default_client_config(client_config(&trust)?);
        let connecting =
            endpoint.connect(addr, server_name).map_err(|e| LinkError::Protocol(format!("QUIC connect: {e}")))?;
        let conn = connecting.await.map_err(|e| LinkError::Protocol(format!("QUIC handshake with {addr}: {e}")))?;
        Ok(Self { conn, token: token.to_string() })
    }

    /// Opens a call: its first frame, then the frames it replies with.
    async fn call(
        &self,
        call: quic_call::Call,
    ) -> Result<(FramedWrite<quinn::SendStream, FrameEncoder>, ResponseStream<quic_reply::Msg>), Status> {
        let (send, recv) = self.conn.open_bi().await.map_err(|e| Status::unavailable(format!("QUIC stream: {e}")))?;
        let mut send = frame::writer(send);
        let first = QuicCall { token: self.token.clone(), call: Some(call) };
        send.send(first).await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok((send, replies(recv)))
    }
}

/// A call's reply frames, up to its status frame: an OK status ends the
/// stream, any other is its last item.
fn replies(recv: quinn::RecvStream) -> ResponseStream<quic_reply::Msg> {
    let frames = frame::reader::<QuicReply, _>(recv);
    Box::pin(futures_util::stream::unfold(Some(frames), |frames| async move {
        let mut frames = frames?;
        let item = match frames.next().await {
            Some(Ok(QuicReply { msg: Some(quic_reply::Msg::Status(st)) })) if st.code == 0 => return None,
            Some(Ok(QuicReply { msg: Some(quic_reply::Msg::Status(st)) })) => {
                Err(Status::new(Code::from_i32(st.code), st.message))
            }
            Some(Ok(QuicReply { msg: Some(m) })) => return Some((Ok(m), Some(frames))),
            Some(Ok(QuicReply { msg: None })) => Err(Status::internal("an empty reply frame")),
            None => Err(Status::unavailable("the QUIC stream ended without a status")),
            Some(Err(e)) => Err(Status::unavailable(e.to_string())),
        };
        Some((item, None))
    }))
}

fn unexpected<T>(what: &str, got: quic_reply::Msg) -> Result<T, Status> {
    Err(Status::internal(format!("expected {what}, got {got:?}")))
}

impl Transport for QuicLink {
    fn info(&mut self) -> BoxFuture<'_, Result<v1::ModelInfo, Status>> {
        Box::pin(async move {
            let (_send, mut replies) = self.call(quic_call::Call::Info(v1::InfoRequest {})).await?;
            match replies.next().await {
                Some(Ok(quic_reply::Msg::Info(i))) => Ok(i),
                Some(Ok(other)) => unexpected("ModelInfo", other),
                Some(Err(s)) => Err(s),
                None => Err(Status::unavailable("no reply")),
            }
        })
    }

    fn generate_stream(
        &mut self,
        req: v1::GenerateRequest,
    ) -> BoxFuture<'_, Result<ResponseStream<v1::GenerateResponse>, Status>> {
        Box::pin(async move {
            let (send, replies) = self.call(quic_call::Call::Generate(req)).await?;
            let stream = replies.map(move |r| {
                // The send half lives as long as the replies are read.
                let _keep = &send;
                match r? {
                    quic_reply::Msg::Generate(g) => Ok(g),
                    other => unexpected("GenerateResponse", other),
                }
            });
            Ok(Box::pin(stream) as ResponseStream<_>)
        })
    }

    fn session_stream(
        &mut self,
        requests: mpsc::Receiver<SessionRequest>,
    ) -> BoxFuture<'_, Result<ResponseStream<SessionResponse>, Status>> {
        Box::pin(async move {
            let (mut send, replies) = self.call(quic_call::Call::Session(v1::SessionStart {})).await?;
            tokio::spawn(async move {
                let mut requests = tokio_stream::wrappers::ReceiverStream::new(requests).map(Ok);
                if send.send_all(&mut requests).await.is_ok() {
                    let _ = send.get_mut().finish();
                }
            });
            let stream = replies.map(|r| match r? {
                quic_reply::Msg::Session(s) => Ok(s),
                other => unexpected("SessionResponse", other),
            });
            Ok(Box::pin(stream) as ResponseStream<_>)
        })
    }
}

/// Accepts any certificate: the loopback development mode only.
#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
