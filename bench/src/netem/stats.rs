//! Bytes on the emulated wire, for benchmarks that report traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

/// A snapshot of what a proxy has delivered so far. Bytes are payload
/// (TCP stream bytes or UDP datagram payloads), counted when released to the
/// far side, so data still in flight is not yet included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TrafficStats {
    /// Client → upstream (edge → cloud).
    pub upstream_bytes: u64,
    /// Upstream → client (cloud → edge).
    pub downstream_bytes: u64,
    /// Datagrams dropped by emulated loss or a full link queue (UDP only).
    pub dropped_datagrams: u64,
}

impl TrafficStats {
    /// Payload bytes both ways.
    pub fn bytes(&self) -> u64 {
        self.upstream_bytes + self.downstream_bytes
    }
}

/// The live counters behind [`TrafficStats`], shared with the proxy tasks.
#[derive(Debug, Clone, Default)]
pub(super) struct Counters {
    pub upstream_bytes: Arc<AtomicU64>,
    pub downstream_bytes: Arc<AtomicU64>,
    pub dropped_datagrams: Arc<AtomicU64>,
}

impl Counters {
    pub fn snapshot(&self) -> TrafficStats {
        TrafficStats {
            upstream_bytes: self.upstream_bytes.load(Ordering::Relaxed),
            downstream_bytes: self.downstream_bytes.load(Ordering::Relaxed),
            dropped_datagrams: self.dropped_datagrams.load(Ordering::Relaxed),
        }
    }
}

pub(super) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}
