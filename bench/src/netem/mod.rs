//! A userspace link emulator. There is no `tc netem` on the benchmark
//! machines, so edge and cloud talk through a local proxy that holds every
//! chunk (TCP) or datagram (UDP, for QUIC) until the emulated link would have
//! delivered it: one-way delay with uniform jitter, a bandwidth cap and, for
//! UDP, random loss. All randomness is seeded so a run can be repeated.
//!
//! Each direction of each connection or flow owns a [`LinkScheduler`], which
//! decides release times without touching the network; the proxies only read,
//! stamp, queue, and write at the scheduled instant. Many chunks can be in
//! flight at once, so latency is added without throttling throughput.
//!
//! Releases wait on tokio's timer, which has millisecond resolution and never
//! fires early: each direction adds up to about a millisecond beyond the
//! emulated delay, so a 40 ms RTT measures roughly 41–43 ms on loopback.

mod delay;
mod error;
mod profile;
mod proxy;
mod stats;
mod tasks;
mod tcp;
mod udp;

#[cfg(test)]
mod tests;

pub use delay::LinkScheduler;
pub use error::NetemError;
pub use profile::LinkProfile;
pub use proxy::Proxy;
pub use stats::TrafficStats;
