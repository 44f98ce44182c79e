//! Benchmark building blocks: the cloud as a real process (pinned to its
//! own cores, its CPU time read from the kernel), a replay drafter, and the
//! bounded load and soak runs (`soak`).

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
