//! Benchmark building blocks, shared by the `ouro-bench` CLI and the
//! end-to-end tests:
//!
//! - [`process`]: `ouro-cloud` and `ouro-edge` as child processes, started
//!   from their readiness line, pinned to cores, their CPU time read from
//!   the kernel;
//! - [`replay`]: a drafter that replays known tokens, for load without a model;
//! - [`netem`]: the link emulator (TCP and UDP proxies with delay, jitter,
//!   bandwidth and loss, by named profile);
//! - [`soak`]: bounded load and soak runs against one server;
//! - [`figures`], [`report`] and `plots`: percentiles and ratios, the JSON,
//!   Markdown and terminal reports, the SVG figures.

pub mod figures;
pub mod netem;
/// SVG figures of a run (the `plots` feature, on by default: the CLI needs
/// it, the end-to-end tests do not).
#[cfg(feature = "plots")]
pub mod plots;
pub mod process;
pub mod replay;
pub mod report;
pub mod soak;
