//! The link to the cloud verifier.
//!
//! - [`grpc`]: a tonic channel with bearer-token auth;
//! - [`session`]: one `Session` stream, and speculative generation over it
//!   with the drafter from the speculative core.

pub mod grpc;
pub mod session;

pub use grpc::{connect, Client, LinkError};
pub use session::{generate, speculate, Plan, SessionStream, SpecRun};
