//! A JSON body extractor whose rejections are OpenAI-style errors: axum's own
//! `Json` answers malformed bodies in plain text, which OpenAI clients cannot
//! parse into an error message.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct OpenAiJson<T>(pub T);

impl<T, S> FromRequest<S> for OpenAiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_error(rejection)),
        }
    }
}

fn rejection_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(r) => ApiError::UnsupportedMediaType(r.body_text()),
        JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(r.body_text())
        }
        // Data errors (axum's 422) are 400 in OpenAI's API; the text names the
        // offending field, e.g. "messages[0].content: invalid type".
        other => ApiError::MalformedBody(other.body_text()),
    }
}
