//! The cloud link over QUIC (quinn): each call is one bidirectional stream
//! of length-delimited protobuf frames, ending in a status frame
//! (`proto/ouro/v1/quic.proto`).

use std::net::SocketAddr;
use std::sync::Arc;

use ouro_proto::frame;
use ouro_proto::v1::{self, quic_call, quic_reply, QuicCall, QuicReply, SessionRequest, SessionResponse};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::sync::mpsc;
use tonic::{Code, Status};

use super::grpc::LinkError;
use super::transport::{ResponseStream, Transport};

pub use ouro_proto::quic::ALPN;

/// How the client checks the server's certificate.
pub enum Trust {
    /// Certificates signed by this CA (PEM), or this very certificate.
    Ca(Vec<u8>),
    /// No check at all: loopback development only, and said loudly.
    InsecureDev,
}

/// An open QUIC connection to `ouro-cloud`.
#[derive(Clone)]
pub struct QuicLink {
    conn: quinn::Connection,
    token: String,
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

    /// Opens a call: its first frame, then a stream of replies.
    async fn call(
        &self,
        call: quic_call::Call,
    ) -> Result<(quinn::SendStream, ResponseStream<quic_reply::Msg>), Status> {
        let (mut send, mut recv) =
            self.conn.open_bi().await.map_err(|e| Status::unavailable(format!("QUIC stream: {e}")))?;
        let first = QuicCall { token: self.token.clone(), call: Some(call) };
        frame::write(&mut send, &first).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                let item = match frame::read::<QuicReply, _>(&mut recv).await {
                    Ok(Some(QuicReply { msg: Some(quic_reply::Msg::Status(st)) })) => {
                        if st.code != 0 {
                            let _ = tx.send(Err(Status::new(Code::from_i32(st.code), st.message))).await;
                        }
                        return;
                    }
                    Ok(Some(QuicReply { msg: Some(m) })) => Ok(m),
                    Ok(Some(QuicReply { msg: None })) => Err(Status::internal("an empty reply frame")),
                    Ok(None) => Err(Status::unavailable("the QUIC stream ended without a status")),
                    Err(e) => Err(Status::unavailable(e.to_string())),
                };
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        Ok((send, Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

fn unexpected<T>(what: &str, got: quic_reply::Msg) -> Result<T, Status> {
    Err(Status::internal(format!("expected {what}, got {got:?}")))
}

impl Transport for QuicLink {
    async fn info(&mut self) -> Result<v1::ModelInfo, Status> {
        use tokio_stream::StreamExt;
        let (_send, mut replies) = self.call(quic_call::Call::Info(v1::InfoRequest {})).await?;
        match replies.next().await {
            Some(Ok(quic_reply::Msg::Info(i))) => Ok(i),
            Some(Ok(other)) => unexpected("ModelInfo", other),
            Some(Err(s)) => Err(s),
            None => Err(Status::unavailable("no reply")),
        }
    }

    async fn generate_stream(
        &mut self,
        req: v1::GenerateRequest,
    ) -> Result<ResponseStream<v1::GenerateResponse>, Status> {
        use tokio_stream::StreamExt;
        let (send, replies) = self.call(quic_call::Call::Generate(req)).await?;
        Ok(Box::pin(replies.map(move |r| {
            // The send half lives as long as the replies are read.
            let _keep = &send;
            match r? {
                quic_reply::Msg::Generate(g) => Ok(g),
                other => unexpected("GenerateResponse", other),
            }
        })))
    }

    async fn session_stream(
        &mut self,
        mut requests: mpsc::Receiver<SessionRequest>,
    ) -> Result<ResponseStream<SessionResponse>, Status> {
        use tokio_stream::StreamExt;
        let (mut send, replies) = self.call(quic_call::Call::Session(v1::SessionStart {})).await?;
        tokio::spawn(async move {
            while let Some(req) = requests.recv().await {
                if frame::write(&mut send, &req).await.is_err() {
                    return;
                }
            }
            let _ = send.finish();
        });
        Ok(Box::pin(replies.map(|r| match r? {
            quic_reply::Msg::Session(s) => Ok(s),
            other => unexpected("SessionResponse", other),
        })))
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
