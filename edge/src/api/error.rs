//! Errors as OpenAI clients expect them: a status code and a body of the
//! shape `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
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
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
        (status, Json(self.body())).into_response()
    }
}
