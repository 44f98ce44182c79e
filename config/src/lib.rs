//! What ouro's processes need to start, kept out of the pure core
//! (`ouro-common`): it reads files, the environment and the command line,
//! and binds the servers' listener.
//!
//! - [`file`](mod@file): options from a TOML file, beneath flags and environment variables;
//! - [`models`]: the pinned models (one table, `deploy/models.tsv`, which
//!   `deploy/fetch-models.sh` reads too), where they are cached, their hashes;
//! - [`listen`]: the TCP listener both servers accept on, with a deep accept queue;
//! - [`ready`]: the machine-readable line a server prints once it listens,
//!   which the processes that start it wait for;
//! - [`memory`]: the allocator settings that keep the model runtime's large
//!   temporaries for reuse;
//! - [`vocab`]: the drafter's shipped restricted vocabularies (FR-Spec) and
//!   `--draft-vocab`.

pub mod file;
pub mod listen;
pub mod memory;
pub mod models;
pub mod ready;
pub mod vocab;
