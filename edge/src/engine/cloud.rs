//! The cloud as the engine reaches it: the [`Cloud`] seam (the daemon's
//! gRPC/QUIC client implements it; tests implement a fake), the errors the
//! engine tells apart, and backoff.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use ouro_common::draft::PhrasePool;
use ouro_common::model::CausalLm;
use ouro_proto::v1::ModelInfo;

use ouro_common::spec::SpecStats;

use crate::link::{self, LinkError, SpecRequest};

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

/// The verifier service, one connection per request.
pub trait Cloud: Send + Sync + 'static {
    /// A connection, handshake done.
    type Conn: Send;

    /// Connects and checks the handshake: a cloud whose tokenizer differs
    /// from the drafter's is a [`ConnectError::Mismatch`]. Every call on
    /// the connection carries `affinity` (see [`crate::link::affinity`]):
    /// one generation passes the same key to all its connections, so that
    /// behind a proxy its re-opens reach the same replica.
    fn connect(
        &self,
        affinity: Option<&str>,
    ) -> impl Future<Output = Result<(Self::Conn, ModelInfo), ConnectError>> + Send;

    /// One speculative session on `conn`, as [`link::speculate_into`].
    fn speculate(
        conn: &mut Self::Conn,
        drafter: &dyn CausalLm,
        req: &SpecRequest<'_>,
        pool: &mut PhrasePool,
        run: &mut SpecStats,
        on_tokens: impl FnMut(&[u32]) -> ControlFlow<()> + Send,
    ) -> impl Future<Output = Result<(), LinkError>>;

    /// How long `--fallback wait` keeps retrying.
    fn wait(&self) -> Duration;
}

/// Exponential backoff with jitter: 100 ms, doubling, capped at 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}
