use std::io;
use std::net::SocketAddr;

/// Why a link profile could not be parsed or a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetemError {
    #[error("unknown link profile `{name}` (known: {known})")]
    UnknownProfile { name: String, known: String },
    #[error("invalid link spec `{spec}`: {reason}")]
    InvalidSpec { spec: String, reason: String },
    #[error("netem proxy cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("netem proxy I/O: {0}")]
    Io(#[from] io::Error),
}
