//! The edge daemon's local OpenAI-compatible HTTP API.
//!
//! This layer is independent of how text is generated: it talks to the
//! engine only through [`Backend`], so everything here (request shapes,
//! validation, stop sequences, streaming, cancellation) is tested with a
//! scripted fake.
//!
//! # Request defaults
//!
//! - `temperature` absent: 0, greedy, where OpenAI's is 1 (see
//!   [`DEFAULT_TEMPERATURE`] for why). Accepted range `[0, 2]`.
//! - `top_p` absent: no nucleus cut (1). Accepted range `(0, 1]`.
//! - `max_tokens` absent (for chat, `max_completion_tokens`, which wins when
//!   both are sent): the room left in the context after the prompt, but at
//!   most [`DEFAULT_MAX_TOKENS`] (512). When sent, prompt + `max_tokens`
//!   must fit the context, or the request is a 400 with code
//!   `context_length_exceeded`.
//! - `seed` absent: the engine picks one per request (the daemon, a random
//!   one), so sampled answers differ; with a seed they repeat.
//! - `stop`: at most [`MAX_STOPS`] (4) non-empty sequences; the text is cut
//!   before the first match, which is not included.
//! - `stream` absent: false. `n` must be 1.
//! - `model` must name the served model or [`MODEL_ALIAS`] (`ouro`).
//!
//! # Access and admission ([`ApiConfig`], defaults)
//!
//! - `Host` must be `localhost`, `127.0.0.1` or `::1` (any port): 403
//!   `host_not_allowed` otherwise, which stops DNS-rebinding pages.
//! - No API key; with keys, every route but `GET /health` needs
//!   `Authorization: Bearer <key>`: 401 `invalid_api_key` otherwise.
//! - [`DEFAULT_MAX_CONCURRENT`] (4) generations at once and
//!   [`DEFAULT_MAX_QUEUE`] (64) waiting; beyond, 429 `rate_limit_exceeded`
//!   with `Retry-After: 1`.
//! - Bodies up to [`DEFAULT_MAX_BODY_BYTES`] (1 MiB): 413 beyond.
//! - A cloud that refuses for load ([`GenEvent::Busy`]) is a 503
//!   `overloaded` with its `Retry-After`. A streamed request's headers wait
//!   for its first output, so every refusal or failure before any text is
//!   an HTTP status, never a 200 with an error event.

mod access;
mod admission;
mod backend;
mod completions;
mod config;
mod error;
mod extract;
mod generation;
mod reply;
mod routes;
mod sse;
mod state;
mod stop;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use backend::{Backend, ChatMessage, GenEvent, GenRequest, OpenAiFinish, OuroStats};
pub use config::{ApiConfig, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_QUEUE, LOOPBACK_HOSTS};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use reply::MODE_HEADER;
pub use routes::{router, router_with};
pub use stop::{Step, StopMatcher};
pub use validate::{DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, MAX_STOPS, MODEL_ALIAS};
