//! A gRPC channel to `ouro-cloud`, every call carrying the bearer token and
//! the affinity key.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Status;

use ouro_proto::v1::verifier_client::VerifierClient;
use ouro_proto::v1::{self, SessionRequest};
use tokio::sync::mpsc;

use super::affinity::{self, AFFINITY_HEADER};
use super::error::LinkError;
use super::transport::{BoxFuture, ResponseStream, Target, Transport, Trust};

/// Adds `authorization: Bearer <token>` and the affinity key to every call.
#[derive(Clone)]
pub struct Bearer {
    token: Option<MetadataValue<Ascii>>,
    affinity: Option<MetadataValue<Ascii>>,
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.token {
            req.metadata_mut().insert("authorization", v.clone());
        }
        if let Some(v) = &self.affinity {
            req.metadata_mut().insert(AFFINITY_HEADER, v.clone());
        }
        Ok(req)
    }
}

pub type Client = VerifierClient<InterceptedService<Channel, Bearer>>;

/// Connects to `endpoint` (`http://` for the loopback development mode,
/// `https://` with `tls`). `token: None` sends no authorization header.
pub async fn connect(endpoint: &str, token: Option<&str>, tls: Option<ClientTlsConfig>) -> Result<Client, LinkError> {
    connect_with(endpoint, token, None, tls).await
}

/// [`connect`], every call also carrying `affinity` as [`AFFINITY_HEADER`].
pub async fn connect_with(
    endpoint: &str,
    token: Option<&str>,
    affinity: Option<&str>,
    tls: Option<ClientTlsConfig>,
) -> Result<Client, LinkError> {
    let mut ep = Channel::from_shared(endpoint.to_string()).map_err(|_| LinkError::Address(endpoint.into()))?;
    if let Some(tls) = tls {
        ep = ep.tls_config(tls).map_err(|source| LinkError::Connect { addr: endpoint.into(), source })?;
    }
    let channel = ep.connect().await.map_err(|source| LinkError::Connect { addr: endpoint.into(), source })?;
    let token = token.map(|t| format!("Bearer {t}").parse()).transpose().map_err(|_| LinkError::Token)?;
    let affinity = affinity.map(str::parse).transpose().map_err(|_| LinkError::Affinity)?;
    let bearer = Bearer { token, affinity };
    Ok(VerifierClient::with_interceptor(channel, bearer))
}

/// Connects to `target`: TLS checked against its CA, or plaintext HTTP/2 in
/// the loopback development mode.
pub async fn open(target: &Target) -> Result<Client, LinkError> {
    let key = target.affinity.as_deref();
    // One endpoint stays as written (tonic resolves it); several replicas
    // are chosen among here, as over QUIC.
    let endpoint = match affinity::replicas(&target.endpoint).await {
        Ok(all) if all.len() > 1 => affinity::choose(&all, key).map_or(target.endpoint.clone(), |a| a.to_string()),
        _ => target.endpoint.clone(),
    };
    let (url, tls) = match &target.trust {
        Trust::Ca(ca) => (
            format!("https://{endpoint}"),
            Some(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name(target.server_name.clone()),
            ),
        ),
        Trust::InsecureDev => (format!("http://{endpoint}"), None),
    };
    connect_with(&url, Some(&target.token), key, tls).await
}

impl Transport for Client {
    fn info(&mut self) -> BoxFuture<'_, Result<v1::ModelInfo, Status>> {
        Box::pin(async move { Ok(VerifierClient::info(self, v1::InfoRequest {}).await?.into_inner()) })
    }

    fn generate_stream(
        &mut self,
        req: v1::GenerateRequest,
    ) -> BoxFuture<'_, Result<ResponseStream<v1::GenerateResponse>, Status>> {
        Box::pin(async move {
            let replies = VerifierClient::generate(self, req).await?.into_inner();
            Ok(Box::pin(replies) as ResponseStream<_>)
        })
    }

    fn session_stream(
        &mut self,
        requests: mpsc::Receiver<SessionRequest>,
    ) -> BoxFuture<'_, Result<ResponseStream<v1::SessionResponse>, Status>> {
        Box::pin(async move {
            let stream = tokio_stream::wrappers::ReceiverStream::new(requests);
            let replies = VerifierClient::session(self, stream).await?.into_inner();
            Ok(Box::pin(replies) as ResponseStream<_>)
        })
    }
}
