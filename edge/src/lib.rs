//! The edge side of ouro as a library, shared by the `ouro-edge` daemon,
//! the benchmark and the end-to-end tests:
//!
//! - [`link`]: the cloud link (gRPC and QUIC) and speculation over it;
//! - [`api`]: the local OpenAI-compatible HTTP API, over any [`api::Backend`];
//! - [`engine`]: the generation engine behind it (speculative with the
//!   cloud, the drafter alone without).

pub mod api;
pub mod engine;
pub mod link;
