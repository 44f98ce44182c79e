//! The transports by name: the one place on the client side that knows them all.

use super::error::LinkError;
use super::transport::{Target, Transport};
use super::{grpc, quic};

/// The transports, by the name `--transport` takes. Adding one is a module
/// beside [`super::grpc`] and [`super::quic`] with an `open` function, and
/// a variant here; the README's how-to lists the cloud's and the
/// benchmark's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TransportKind {
    /// tonic over HTTP/2 (TCP): the cloud's main listener.
    #[default]
    Grpc,
    /// quinn: length-delimited frames, one QUIC stream per call (UDP).
    Quic,
}

impl TransportKind {
    /// Every transport.
    pub fn all() -> &'static [TransportKind] {
        <Self as clap::ValueEnum>::value_variants()
    }

    /// The name `--transport` takes (`grpc`, `quic`).
    pub fn name(self) -> String {
        let value = clap::ValueEnum::to_possible_value(&self).expect("no transport is skipped");
        value.get_name().to_string()
    }

    /// Connects to `target` over this transport.
    pub async fn open(self, target: &Target) -> Result<Box<dyn Transport>, LinkError> {
        Ok(match self {
            TransportKind::Grpc => Box::new(grpc::open(target).await?),
            TransportKind::Quic => Box::new(quic::open(target).await?),
        })
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Grpc => "gRPC",
            TransportKind::Quic => "QUIC",
        })
    }
}
