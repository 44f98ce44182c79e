//! The edge side of ouro as a library: the cloud link, shared by the
//! `ouro-edge` daemon, the benchmark and the end-to-end tests.

pub mod link;
