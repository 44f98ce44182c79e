//! What every response of a generating route carries, streamed or not: the
//! request's identity, its mode header, and its token counts for metrics.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::header::HeaderName;
use axum::http::HeaderValue;
use axum::response::Response;

use super::generation::Finish;

/// The response header carrying the generation mode ("speculative", "local"
/// or "cloud-only"), so a client can tell a degraded answer without parsing it.
pub const MODE_HEADER: HeaderName = HeaderName::from_static("x-ouro-mode");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Completion => "completion",
        }
    }
}

/// What every response (or chunk) of one request repeats.
pub struct Reply {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub prompt_tokens: usize,
}

/// Sets `x-ouro-mode`, unless the backend's mode is not a valid header value
/// (a response without the header beats a failed one).
pub fn set_mode_header(response: &mut Response, mode: &str) {
    if let Ok(value) = HeaderValue::from_str(mode) {
        response.headers_mut().insert(MODE_HEADER, value);
    }
}

pub fn record_finish(reply: &Reply, finish: &Finish) {
    let endpoint = reply.endpoint.label();
    metrics::counter!("ouro_edge_api_prompt_tokens_total", "endpoint" => endpoint)
        .increment(reply.prompt_tokens as u64);
    metrics::counter!("ouro_edge_api_completion_tokens_total", "endpoint" => endpoint)
        .increment(finish.completion_tokens as u64);
}

pub fn unix_now() -> u64 {
    // A clock set before 1970 is not worth failing a request over.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
