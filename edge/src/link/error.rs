//! What can go wrong on the link, whatever the transport.

use tonic::Status;

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
    #[error("the affinity key is not a valid header value (printable ASCII only)")]
    Affinity,
    #[error("cloud: {0}")]
    Status(#[from] Status),
    #[error("drafter: {0}")]
    Drafter(#[from] ouro_common::engine::EngineError),
    #[error("protocol: {0}")]
    Wire(#[from] ouro_proto::WireError),
    #[error("protocol: {0}")]
    Protocol(String),
}
