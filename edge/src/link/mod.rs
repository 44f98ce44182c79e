//! The link to the cloud verifier.
//!
//! - [`transport`]: the calls every transport provides, and a session stream;
//! - [`grpc`]: tonic over HTTP/2, with bearer-token auth;
//! - [`quic`]: quinn, length-delimited frames on one stream per call;
//! - [`session`]: speculative generation over a transport, with the drafter
//!   from the speculative core.

pub mod grpc;
pub mod quic;
pub mod session;
pub mod transport;

pub use grpc::{connect, Client, LinkError};
pub use quic::{QuicLink, Trust};
pub use session::{speculate, speculate_into, Plan, SpecRequest, SpecRun};
pub use transport::{generate, SessionStream, Transport};
