//! A gRPC channel to `ouro-cloud`, every call carrying the bearer token.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::Status;

use ouro_proto::v1::verifier_client::VerifierClient;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid cloud address {0}")]
    Address(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the bearer token is not a valid header value")]
    Token,
    #[error("cloud: {0}")]
    Status(#[from] Status),
    #[error("drafter: {0}")]
    Drafter(#[from] ouro_common::engine::EngineError),
    #[error("protocol: {0}")]
    Wire(#[from] ouro_proto::WireError),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Client = VerifierClient<InterceptedService<Channel, Bearer>>;

/// Connects to `endpoint` (`http://` for the loopback development mode,
/// `https://` with `tls`). `token: None` sends no authorization header.
pub async fn connect(endpoint: &str, token: Option<&str>, tls: Option<ClientTlsConfig>) -> Result<Client, LinkError> {
    let mut ep = Channel::from_shared(endpoint.to_string()).map_err(|_| LinkError::Address(endpoint.into()))?;
    if let Some(tls) = tls {
        ep = ep.tls_config(tls).map_err(|source| LinkError::Connect { addr: endpoint.into(), source })?;
    }
    let channel = ep.connect().await.map_err(|source| LinkError::Connect { addr: endpoint.into(), source })?;
    let bearer = Bearer(token.map(|t| format!("Bearer {t}").parse()).transpose().map_err(|_| LinkError::Token)?);
    Ok(VerifierClient::with_interceptor(channel, bearer))
}

impl super::transport::Transport for Client {
    async fn info(&mut self) -> Result<ouro_proto::v1::ModelInfo, Status> {
        Ok(VerifierClient::info(self, ouro_proto::v1::InfoRequest {}).await?.into_inner())
    }

    async fn generate_stream(
        &mut self,
        req: ouro_proto::v1::GenerateRequest,
    ) -> Result<super::transport::ResponseStream<ouro_proto::v1::GenerateResponse>, Status> {
        Ok(Box::pin(VerifierClient::generate(self, req).await?.into_inner()))
    }

    async fn session_stream(
        &mut self,
        requests: tokio::sync::mpsc::Receiver<ouro_proto::v1::SessionRequest>,
    ) -> Result<super::transport::ResponseStream<ouro_proto::v1::SessionResponse>, Status> {
        let stream = tokio_stream::wrappers::ReceiverStream::new(requests);
        Ok(Box::pin(VerifierClient::session(self, stream).await?.into_inner()))
    }
}
