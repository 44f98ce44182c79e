//! Reaching the cloud verifier: one connection per request over the chosen
//! transport, the handshake check, and backoff.

use std::time::Duration;

use anyhow::Context;

use ouro_edge::link::{self, Target, Transport, TransportKind, Trust};
use ouro_proto::v1::ModelInfo;

use super::config::LinkArgs;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Link(#[from] link::LinkError),
    #[error("{0}")]
    Status(#[from] tonic::Status),
    /// The cloud's model cannot verify this drafter's tokens: never retried.
    #[error("{0}")]
    Mismatch(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl ConnectError {
    /// The cloud refused our credentials: a configuration error, not an outage.
    pub fn is_auth(&self) -> bool {
        let status = match self {
            ConnectError::Status(s) | ConnectError::Link(link::LinkError::Status(s)) => s,
            _ => return false,
        };
        matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied)
    }
}

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
        let target = Target { endpoint: endpoint.clone(), token, server_name: args.server_name.clone(), trust };
        Ok(Some(Self {
            endpoint,
            transport: args.transport,
            target,
            wait: Duration::from_secs(args.wait_secs),
            expect: None,
        }))
    }

    /// Connects and checks the handshake: a cloud whose tokenizer differs
    /// is refused, naming both hashes.
    pub async fn connect(&self) -> Result<(Conn, ModelInfo), ConnectError> {
        let limit = Duration::from_secs(5);
        let attempt = async {
            let mut conn = self.transport.open(&self.target).await?;
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

/// Exponential backoff with jitter: 100 ms, doubling, capped at 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}
