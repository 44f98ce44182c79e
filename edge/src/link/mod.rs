//! The link to the cloud verifier.
//!
//! - [`transport`]: the calls every transport provides (object-safe), where
//!   the cloud is ([`Target`]), and a session stream;
//! - [`kind`]: the transports by name ([`TransportKind`]), and connecting one;
//! - [`grpc`]: tonic over HTTP/2, with bearer-token auth;
//! - [`quic`]: quinn, length-delimited frames on one stream per call;
//! - [`affinity`]: which replica a client reaches when there are several;
//! - [`error`]: what can go wrong on any of them;
//! - [`session`]: speculative generation over a transport, with the drafter
//!   from the speculative core.

pub mod affinity;
pub mod error;
pub mod grpc;
pub mod kind;
pub mod quic;
pub mod session;
pub mod transport;

pub use error::LinkError;
pub use grpc::{connect, Client};
pub use kind::TransportKind;
pub use quic::QuicLink;
pub use session::{speculate, speculate_into, SpecRequest};
/// What every call on the link ends with, whichever transport carries it.
pub use tonic::{Code, Status};
pub use transport::{generate, SessionStream, Target, Transport, Trust};
