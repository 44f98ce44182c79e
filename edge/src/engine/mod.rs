//! The edge's generation engine, as a library: speculative generation with
//! the cloud, re-opening a lost session from the committed tokens, and the
//! drafter alone when the cloud is gone. The daemon and `ouro-edge generate`
//! serve it; the tests run it against a fake cloud.
//!
//! - [`cloud`]: the [`Cloud`] seam the engine reaches the verifier through,
//!   and how its failures are told apart;
//! - [`local`]: the drafter model with its tokenizer and chat template;
//! - [`draft_vocab`]: the drafter's restricted vocabulary (FR-Spec, `--draft-vocab`);
//! - [`backend`]: the engine itself ([`EdgeBackend`]), behind [`crate::api::Backend`].

pub mod backend;
pub mod cloud;
pub mod draft_vocab;
pub mod local;

pub use backend::{BackendOptions, EdgeBackend, Fallback, Mode};
pub use cloud::{backoff, Cloud, ConnectError};
pub use local::LocalModel;
