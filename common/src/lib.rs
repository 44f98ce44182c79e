//! ouro's transport-free core.
//!
//! Everything here is pure logic over tokens and tensors: no sockets, no
//! threads of its own. The cloud, the edge and the benchmark all run this code,
//! which is what makes their outputs comparable token for token.

pub mod chat;
pub mod controller;
pub mod draft;
pub mod engine;
pub mod generate;
pub mod model;
pub mod sampling;
pub mod spec;
pub mod tokenizer;
pub mod tree;
pub mod verify;
