//! Reaching the cloud verifier: one connection per request over the chosen
//! transport, the handshake check, and backoff.

use std::time::Duration;

use anyhow::Context;

use std::ops::ControlFlow;

use ouro_common::draft::PhrasePool;
use ouro_common::model::CausalLm;
use ouro_edge::engine::{Cloud, LocalModel};
use ouro_edge::link::{self, Client, LinkError, QuicLink, SpecRequest, SpecRun, Trust};
use ouro_proto::v1::ModelInfo;
use tonic::transport::{Certificate, ClientTlsConfig};

use super::config::{LinkArgs, Transport};

pub use ouro_edge::engine::ConnectError;

/// A connected transport of either kind.
pub enum Conn {
    Grpc(Client),
    Quic(QuicLink),
}

pub struct CloudConfig {
    pub endpoint: String,
    pub transport: Transport,
    token: String,
    ca: Option<Vec<u8>>,
    server_name: String,
    insecure: bool,
    pub wait: Duration,
    /// The drafter's tokenizer identity and vocabulary, which the cloud must match.
    pub expect: Option<(String, u32)>,
}

impl CloudConfig {
    pub fn from_args(args: &LinkArgs) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = args.cloud.clone() else { return Ok(None) };
        let token = match (&args.token, &args.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)?.trim().to_string(),
            (None, None) => anyhow::bail!("--cloud needs --token or --token-file"),
        };
        let ca = args.ca.as_ref().map(std::fs::read).transpose()?;
        if ca.is_none() && !args.insecure_dev {
            anyhow::bail!("--cloud needs --ca (the CA or certificate to trust), or --insecure-dev on loopback");
        }
        if args.insecure_dev {
            check_loopback(&endpoint)?;
            eprintln!("WARNING: --insecure-dev: the cloud link is not authenticated by TLS. Development only.");
        }
        Ok(Some(Self {
            endpoint,
            transport: args.transport,
            token,
            ca,
            server_name: args.server_name.clone(),
            insecure: args.insecure_dev,
            wait: Duration::from_secs(args.wait_secs),
            expect: None,
        }))
    }

    async fn open(&self) -> Result<Conn, ConnectError> {
        match self.transport {
            Transport::Grpc => {
                let (url, tls) = match &self.ca {
                    Some(ca) if !self.insecure => (
                        format!("https://{}", self.endpoint),
                        Some(
                            ClientTlsConfig::new()
                                .ca_certificate(Certificate::from_pem(ca))
                                .domain_name(self.server_name.clone()),
                        ),
                    ),
                    _ => (format!("http://{}", self.endpoint), None),
                };
                Ok(Conn::Grpc(link::connect(&url, Some(&self.token), tls).await?))
            }
            Transport::Quic => {
                let addr = tokio::net::lookup_host(&self.endpoint)
                    .await
                    .map_err(|e| link::LinkError::Address(format!("{}: {e}", self.endpoint)))?
                    .next()
                    .ok_or_else(|| link::LinkError::Address(self.endpoint.clone()))?;
                let trust = match &self.ca {
                    Some(ca) if !self.insecure => Trust::Ca(ca.clone()),
                    _ => Trust::InsecureDev,
                };
                Ok(Conn::Quic(QuicLink::connect(addr, &self.server_name, &self.token, trust).await?))
            }
        }
    }

    /// Refuses a cloud whose tokenizer or vocabulary differs from `local`'s.
    pub fn expecting(mut self, local: &LocalModel) -> Self {
        let vocab = ouro_common::model::CausalLm::config(&local.model).vocab_size as u32;
        self.expect = Some((local.tokenizer.info().identity.clone(), vocab));
        self
    }

    /// Connects and checks the handshake: a cloud whose tokenizer differs
    /// is refused, naming both hashes.
    pub async fn connect(&self) -> Result<(Conn, ModelInfo), ConnectError> {
        let limit = Duration::from_secs(5);
        let attempt = async {
            let mut conn = self.open().await?;
            let info = match &mut conn {
                Conn::Grpc(c) => link::Transport::info(c).await?,
                Conn::Quic(q) => link::Transport::info(q).await?,
            };
            if let Some((hash, vocab)) = &self.expect {
                if &info.tokenizer_hash != hash || info.vocab_size != *vocab {
                    return Err(ConnectError::Mismatch(format!(
                        "the cloud's tokenizer differs from the drafter's: cloud {} ({} ids, {}), drafter {hash} ({vocab} ids)",
                        info.tokenizer_hash, info.vocab_size, info.model_id
                    )));
                }
            }
            Ok((conn, info))
        };
        tokio::time::timeout(limit, attempt).await.map_err(|_| ConnectError::Timeout(limit))?
    }
}

/// `--insecure-dev` sends the bearer token in the clear (gRPC) or to an
/// unverified peer (QUIC): only ever to this machine.
fn check_loopback(endpoint: &str) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> =
        endpoint.to_socket_addrs().with_context(|| format!("--cloud {endpoint} is not a host:port address"))?.collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "--insecure-dev is for a cloud on this machine only, and --cloud {endpoint} is not loopback ({addrs:?}); use TLS (--ca)"
        );
    }
    Ok(())
}

impl Cloud for CloudConfig {
    type Conn = Conn;

    fn connect(&self) -> impl std::future::Future<Output = Result<(Conn, ModelInfo), ConnectError>> + Send {
        CloudConfig::connect(self)
    }

    async fn speculate(
        conn: &mut Conn,
        drafter: &dyn CausalLm,
        req: &SpecRequest<'_>,
        pool: &mut PhrasePool,
        run: &mut SpecRun,
        on_tokens: impl FnMut(&[u32]) -> ControlFlow<()> + Send,
    ) -> Result<(), LinkError> {
        match conn {
            Conn::Grpc(c) => link::speculate_into(c, drafter, req, pool, run, on_tokens).await,
            Conn::Quic(q) => link::speculate_into(q, drafter, req, pool, run, on_tokens).await,
        }
    }

    fn wait(&self) -> Duration {
        self.wait
    }
}
