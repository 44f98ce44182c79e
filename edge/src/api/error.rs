//! Errors as OpenAI clients expect them: a status code and a body of the
//! shape `{"error": {"message", "type", "param", "code"}}`.
//!
//! The official clients pick their exception class from the status alone
//! (401 `AuthenticationError`, 403 `PermissionDeniedError`, 429
//! `RateLimitError`, ...), and retry 429 and 5xx after `Retry-After`; the
//! body's `code` is what a program matches on.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Everything a request can fail with. Each variant fixes its HTTP status and
/// OpenAI error type, so a handler only decides *what* went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed JSON but asks for something invalid.
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String>, code: Option<String> },
    /// The body is not JSON, or not JSON of the expected shape.
    #[error("{0}")]
    MalformedBody(String),
    /// The body is too large to read.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request is not `Content-Type: application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The `model` field names a model this daemon does not serve.
    #[error("The model `{0}` does not exist")]
    ModelNotFound(String),
    /// No such route.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The engine failed while generating (e.g. the cloud was lost and the
    /// fallback policy is to fail).
    #[error("generation failed: {0}")]
    Generation(String),
    /// The engine cannot take requests right now (e.g. still loading).
    #[error("{0}")]
    Unavailable(String),
    /// The `Host` the request was sent to is not one this daemon answers
    /// for: a web page's script reaching the loopback API through DNS
    /// rebinding names its own host here.
    #[error("{0}")]
    HostNotAllowed(String),
    /// API keys are configured and the request has none of them.
    #[error("{0}")]
    Unauthorized(String),
    /// Every generation slot is taken and the queue is full.
    #[error("{message}")]
    RateLimited { message: String, retry_after: Duration },
    /// The cloud verifier refused the generation for load.
    #[error("{message}")]
    Overloaded { message: String, retry_after: Duration },
}

impl ApiError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::InvalidRequest { message: message.into(), param: Some(param.into()), code: None }
    }

    /// OpenAI's error for a prompt that does not fit the context; clients
    /// match on the code to trim their history.
    pub fn context_length(param: &str, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: Some("context_length_exceeded".into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } | Self::MalformedBody(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ModelNotFound(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Generation(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::HostNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// When the client may try again: the `Retry-After` header.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Overloaded { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Why a request was turned away before (or instead of) generating: the
    /// `reason` label of `ouro_edge_api_refused_total`.
    fn refusal(&self) -> Option<&'static str> {
        match self {
            Self::HostNotAllowed(_) => Some("host"),
            Self::Unauthorized(_) => Some("api_key"),
            Self::RateLimited { .. } => Some("queue_full"),
            Self::PayloadTooLarge(_) => Some("body_too_large"),
            Self::Overloaded { .. } => Some("upstream_busy"),
            _ => None,
        }
    }

    /// The `error` object, also sent as an SSE event when a stream fails.
    pub fn body(&self) -> ErrorBody {
        let (kind, param, code) = match self {
            Self::InvalidRequest { param, code, .. } => ("invalid_request_error", param.clone(), code.clone()),
            Self::MalformedBody(_) | Self::PayloadTooLarge(_) | Self::UnsupportedMediaType(_) => {
                ("invalid_request_error", None, None)
            }
            Self::ModelNotFound(_) => ("invalid_request_error", Some("model".into()), Some("model_not_found".into())),
            Self::NotFound(_) | Self::MethodNotAllowed(_) => ("invalid_request_error", None, None),
            Self::Generation(_) => ("server_error", None, Some("generation_failed".into())),
            Self::Unavailable(_) => ("server_error", None, Some("unavailable".into())),
            Self::HostNotAllowed(_) => ("invalid_request_error", None, Some("host_not_allowed".into())),
            Self::Unauthorized(_) => ("invalid_request_error", None, Some("invalid_api_key".into())),
            // OpenAI's own type for a request-rate limit.
            Self::RateLimited { .. } => ("requests", None, Some("rate_limit_exceeded".into())),
            Self::Overloaded { .. } => ("server_error", None, Some("overloaded".into())),
        };
        ErrorBody { error: ErrorDetail { message: self.to_string(), kind, param, code } }
    }
}

#[derive(Serialize, Debug)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, Debug)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "api request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "api request rejected");
        }
        metrics::counter!("ouro_edge_api_errors_total", "status" => status.as_str().to_owned()).increment(1);
        if let Some(reason) = self.refusal() {
            metrics::counter!("ouro_edge_api_refused_total", "reason" => reason).increment(1);
        }
        let mut response = (status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(after) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(after)));
        }
        if matches!(self, Self::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `Retry-After` counts whole seconds: rounded up, so a client never comes
/// back early, and at least 1, since 0 invites a tight retry loop.
pub fn retry_after_secs(after: Duration) -> u64 {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_at_least_a_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
