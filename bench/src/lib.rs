//! Benchmark building blocks: the cloud as a real process (pinned to its
//! own cores, its CPU time read from the kernel) and a replay drafter.

pub mod netem;
pub mod process;
pub mod replay;
