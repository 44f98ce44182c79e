//! The edge side of ouro as a library, shared by the `ouro-edge` daemon,
//! the benchmark and the end-to-end tests:
//!
//! - [`link`]: the cloud link over any transport (gRPC, QUIC: one
//!   object-safe [`link::Transport`]) and speculation over it;
//! - [`api`]: the local OpenAI-compatible HTTP API, over any [`api::Backend`];
//! - [`engine`]: the generation engine behind it (speculative with the
//!   cloud, the drafter alone without).
//!
//! The binary adds `serve` (`daemon/`: options, the cloud connection),
//! `generate`, `bench-model`, `bench-spec` and `models`.

pub mod api;
pub mod engine;
pub mod link;
