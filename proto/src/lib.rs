//! The generated protobuf types of ouro's wire contract (`proto/ouro/v1`),
//! and their conversions to and from the speculative core's types.
//!
//! Kept apart from the logic in `ouro-common` so that the wire format can
//! evolve by version without touching the algorithms.

pub mod convert;
pub mod frame;

pub mod v1 {
    tonic::include_proto!("ouro.v1");
}

pub use convert::WireError;

/// The protocol version `proto/ouro/v1` describes.
pub const PROTOCOL_VERSION: u32 = 1;
