//! Reaching the cloud verifier: one connection per request over the chosen
//! transport, the handshake check, and backoff.

use std::time::Duration;

use anyhow::Context;

use std::ops::ControlFlow;

use ouro_common::draft::PhrasePool;
use ouro_common::model::CausalLm;
use ouro_common::spec::SpecStats;
use ouro_edge::engine::{Cloud, LocalModel};
use ouro_edge::link::{self, LinkError, SpecRequest, Target, Transport, TransportKind, Trust};
use ouro_proto::v1::ModelInfo;

use super::config::LinkArgs;

pub use ouro_edge::engine::ConnectError;

/// A connected link, whichever transport carries it.
pub type Conn = Box<dyn Transport>;

pub struct CloudConfig {
    pub endpoint: String,
    pub transport: TransportKind,
    target: Target,
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
        let trust = match ca {
            Some(ca) if !args.insecure_dev => Trust::Ca(ca),
            _ => Trust::InsecureDev,
        };
        if let Some(key) = &args.affinity_key {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
                anyhow::bail!("--affinity-key must be non-empty printable ASCII without spaces");
            }
        }
        let target = Target {
            endpoint: endpoint.clone(),
            token,
            server_name: args.server_name.clone(),
            trust,
            affinity: args.affinity_key.clone(),
        };
        Ok(Some(Self {
            endpoint,
            transport: args.transport,
            target,

            wait: Duration::from_secs(args.wait_secs),
            expect: None,
        }))
    }

    /// Refuses a cloud whose tokenizer or vocabulary differs from `local`'s.
    pub fn expecting(mut self, local: &LocalModel) -> Self {
        let vocab = ouro_common::model::CausalLm::config(&local.model).vocab_size as u32;
        self.expect = Some((local.tokenizer.info().identity.clone(), vocab));
        self
    }

    /// Connects and checks the handshake: a cloud whose tokenizer differs
    /// is refused, naming both hashes. Calls carry `affinity` unless
    /// `--affinity-key` fixed one for the whole device.
    pub async fn connect(&self, affinity: Option<&str>) -> Result<(Conn, ModelInfo), ConnectError> {
        let limit = Duration::from_secs(5);
        let mut target = self.target.clone();
        if target.affinity.is_none() {
            target.affinity = affinity.map(str::to_string);
        }
        let attempt = async {
            let mut conn = self.transport.open(&target).await?;
            let info = conn.info().await?;
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

    fn connect(
        &self,
        affinity: Option<&str>,
    ) -> impl std::future::Future<Output = Result<(Conn, ModelInfo), ConnectError>> + Send {
        CloudConfig::connect(self, affinity)
    }

    async fn speculate(
        conn: &mut Conn,
        drafter: &dyn CausalLm,
        req: &SpecRequest<'_>,
        pool: &mut PhrasePool,
        run: &mut SpecStats,
        on_tokens: impl FnMut(&[u32]) -> ControlFlow<()> + Send,
    ) -> Result<(), LinkError> {
        link::speculate_into(conn, drafter, req, pool, run, on_tokens).await
    }

    fn wait(&self) -> Duration {
        self.wait
    }
}
