//! The edge daemon's local OpenAI-compatible HTTP API.
//!
//! This layer is independent of how text is generated: it talks to the
//! engine only through [`Backend`], so everything here (request shapes,
//! validation, stop sequences, streaming, cancellation) is tested with a
//! scripted fake.
//!
//! Defaults that differ from OpenAI's: an absent `temperature` means greedy
//! (see [`DEFAULT_TEMPERATURE`] for why), an absent `max_tokens` means the
//! room left in the context, capped at [`DEFAULT_MAX_TOKENS`]. The `model`
//! field must name the served model or [`MODEL_ALIAS`].

mod backend;
mod completions;
mod error;
mod extract;
mod generation;
mod routes;
mod sse;
mod stop;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use backend::{Backend, ChatMessage, FinishReason, GenEvent, GenRequest, OuroStats};
pub use completions::MODE_HEADER;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use routes::router;
pub use stop::{Step, StopMatcher};
pub use validate::{DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, MAX_STOPS, MODEL_ALIAS};
