//! A running proxy of either kind: its address, its counters, and the
//! tasks that stop with it.

use std::net::SocketAddr;

use super::stats::Counters;
use super::tasks::ProxyTasks;
use super::{LinkProfile, TrafficStats};

/// A proxy started by [`Proxy::tcp`] (gRPC) or [`Proxy::udp`] (QUIC) that
/// delays (and for UDP drops) traffic as its profile says. Stops when dropped.
pub struct Proxy {
    pub(super) local_addr: SocketAddr,
    pub(super) profile: LinkProfile,
    pub(super) counters: Counters,
    pub(super) tasks: ProxyTasks,
}

impl Proxy {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn profile(&self) -> &LinkProfile {
        &self.profile
    }

    /// Payload bytes delivered so far per direction, and datagrams dropped.
    pub fn stats(&self) -> TrafficStats {
        self.counters.snapshot()
    }

    /// Stops relaying and closes every proxied connection; once this returns
    /// the listening port is free.
    pub async fn shutdown(self) {
        self.tasks.shutdown().await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.tasks.abort();
    }
}
