//! The generated protobuf types of ouro's wire contract (`proto/ouro/v1`).
//!
//! Kept apart from the logic in `ouro-common` so that the wire format can
//! evolve by version without touching the algorithms.

pub mod v1 {
    tonic::include_proto!("ouro.v1");
}
