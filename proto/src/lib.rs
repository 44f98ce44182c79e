//! The generated protobuf types of ouro's wire contract (`proto/ouro/v1`),
//! and their conversions to and from the speculative core's types.
//!
//! Kept apart from the logic in `ouro-common` so that the wire format can
//! evolve by version without touching the algorithms.

pub mod convert;
pub mod frame;

pub mod v1 {
    tonic::include_proto!("ouro.v1");
}

pub use convert::WireError;

/// The protocol version `proto/ouro/v1` describes.
pub const PROTOCOL_VERSION: u32 = 1;

/// The gRPC metadata key of the client's affinity key. A proxy in front of
/// several verifier replicas hashes on it, consistently, so that every call
/// of one generation (a resume, a re-open after a dropped connection) reaches
/// the replica that holds its KV cache (`deploy/k8s/base/proxy/haproxy.cfg`).
pub const AFFINITY_HEADER: &str = "x-ouro-affinity";

/// QUIC's transport settings, the same at both ends.
pub mod quic {
    use std::time::Duration;

    /// ALPN of protocol version 1; a peer speaking another version fails the handshake.
    pub const ALPN: &[u8] = b"ouro/1";

    /// How often an otherwise quiet connection is pinged. A long prefill or
    /// a slow verdict keeps the connection alive this way, since the peers'
    /// QUIC stacks answer pings while their application is busy.
    pub const KEEP_ALIVE: Duration = Duration::from_millis(500);

    /// A connection that hears nothing (not even a ping's ack) this long is
    /// dead: a crashed peer is noticed in about this time, as a reset TCP
    /// connection is under gRPC, instead of quinn's 30 s default.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

    /// The transport configuration both ends use.
    pub fn transport() -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        t.keep_alive_interval(Some(KEEP_ALIVE));
        t.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("3 s is a valid QUIC idle timeout")));
        t
    }
}

#[cfg(test)]
mod tests {
    use super::quic::{IDLE_TIMEOUT, KEEP_ALIVE};

    #[test]
    fn quic_pings_often_enough_to_stay_alive_and_gives_up_on_a_dead_peer_soon() {
        // Several pings may be lost before a live connection idles out...
        assert!(KEEP_ALIVE * 4 <= IDLE_TIMEOUT);
        // ...and a dead peer is noticed in seconds, not quinn's default 30 s.
        assert!(IDLE_TIMEOUT <= std::time::Duration::from_secs(5));
        let _ = super::quic::transport();
    }
}
