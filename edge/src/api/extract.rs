//! A JSON body extractor whose rejections are OpenAI-style errors in the
//! client's terms: axum's own `Json` answers in plain text, and its
//! messages speak of Rust ("Failed to deserialize the JSON body into the
//! target type", "untagged enum", "u64"), which a client can do nothing
//! with. Here a bad field is named by its path with what it should be
//! ("`messages[0].content`: expected a string or an array of content parts,
//! got an integer"), and that path is the error's `param`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::state::AppState;
use super::types::RequestOptions;

pub struct OpenAiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for OpenAiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be JSON, sent with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| body_error(&r, state.max_body_bytes))?;
        parse(&bytes).map(Self)
    }
}

/// `application/json`, or any `application/*+json`, parameters aside.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

fn body_error(rejection: &BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!("the request body is larger than this server's limit of {limit} bytes"))
    } else {
        // hyper's own text says nothing a client can act on.
        ApiError::MalformedBody("the request body could not be read: the connection failed while sending it".into())
    }
}

/// The request of type `T` in `bytes`, or an error that names the problem.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first: serde's position is exact, and no type is involved yet.
    let value: Value = serde_json::from_slice(bytes).map_err(|e| syntax_error(bytes, &e))?;
    if !value.is_object() {
        return Err(ApiError::MalformedBody(format!("the body must be a JSON object, not {}", kind(&value))));
    }
    match Json::<T>::from_bytes(bytes) {
        Ok(Json(request)) => Ok(request),
        Err(JsonRejection::JsonDataError(e)) => {
            let error = DataError::of(&e);
            // Fields of the flattened `RequestOptions` come back without a
            // path; reading the options alone finds it.
            if error.path.is_none() {
                if let Err(JsonRejection::JsonDataError(e)) = Json::<RequestOptions>::from_bytes(bytes) {
                    return Err(DataError::of(&e).into());
                }
            }
            Err(error.into())
        }
        // The syntax was checked above.
        Err(_) => Err(ApiError::MalformedBody("the body is not valid JSON".into())),
    }
}

fn syntax_error(bytes: &[u8], e: &serde_json::Error) -> ApiError {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return ApiError::MalformedBody("the body is empty: send a JSON object".into());
    }
    let text = e.to_string();
    let reason = strip_position(&text);
    ApiError::MalformedBody(format!("the body is not valid JSON (line {}, column {}): {reason}", e.line(), e.column()))
}

/// serde_json's message without its " at line L column C".
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i)
            if message[i + 9..].split(" column ").all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            &message[..i]
        }
        _ => message,
    }
}

/// A data error: where in the body, and what was wrong, in JSON terms.
#[derive(Debug, PartialEq)]
struct DataError {
    path: Option<String>,
    message: String,
}

impl From<DataError> for ApiError {
    fn from(e: DataError) -> Self {
        match e.path {
            Some(path) => {
                ApiError::InvalidRequest { message: format!("{path}: {}", e.message), param: Some(path), code: None }
            }
            None => ApiError::InvalidRequest { message: e.message, param: None, code: None },
        }
    }
}

impl DataError {
    fn of(rejection: &axum::extract::rejection::JsonDataError) -> Self {
        // The source is serde_path_to_error's "path: message at line L column C",
        // without axum's preamble.
        let text = std::error::Error::source(rejection).map_or_else(|| rejection.body_text(), ToString::to_string);
        Self::parse(strip_position(&text))
    }

    fn parse(text: &str) -> Self {
        let (path, message) = match text.split_once(": ") {
            Some((head, rest)) if is_path(head) => (Some(head.to_owned()), rest),
            _ => (None, text),
        };
        if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            let path = path.map_or_else(|| field.to_owned(), |p| format!("{p}.{field}"));
            return Self { path: Some(path), message: "this field is required".into() };
        }
        Self { path, message: plain(message) }
    }
}

/// Whether `s` is a serde path (`messages[0].content`), not the start of a message.
fn is_path(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.[]".contains(&b))
}

/// serde's message in JSON terms.
fn plain(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            return format!("expected {}, got {}", expectation(expected), got_kind(got));
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((got, expected)) = rest.split_once(", expected ") {
            return format!("expected {}, got {}", expectation(expected), got_value(got));
        }
    }
    if let Some(name) = message.strip_prefix("data did not match any variant of untagged enum ") {
        return format!("expected {}", untagged(name));
    }
    if let Some((_, expected)) = message.strip_prefix("invalid length ").and_then(|r| r.split_once(", expected ")) {
        return format!("expected {}", expectation(expected));
    }
    message.to_owned()
}

fn expectation(rust: &str) -> &str {
    match rust {
        "f64" | "f32" => "a number",
        "u64" | "u32" | "u16" | "u8" | "usize" => "a non-negative integer",
        "i64" | "i32" | "i16" | "i8" | "isize" => "an integer",
        "a sequence" => "an array",
        "a map" => "an object",
        "a borrowed string" => "a string",
        s if s.starts_with("struct ") => "an object",
        s => s,
    }
}

/// The kind of value serde's `Unexpected` names, e.g. ``integer `5` ``.
fn got_kind(unexpected: &str) -> &'static str {
    match unexpected.split([' ', '`']).next().unwrap_or("") {
        "string" | "char" => "a string",
        "integer" | "floating" => "a number",
        "boolean" => "a boolean",
        "sequence" => "an array",
        "map" => "an object",
        "unit" | "null" => "null",
        _ => "a value of another type",
    }
}

/// The value serde's `Unexpected` shows, e.g. `-1` for ``integer `-1` ``.
fn got_value(unexpected: &str) -> String {
    match unexpected.split_once('`') {
        Some((_, v)) => v.trim_end_matches('`').to_owned(),
        None => got_kind(unexpected).to_owned(),
    }
}

/// What the request types' untagged enums accept.
fn untagged(name: &str) -> &'static str {
    match name {
        "Stop" => "a string or an array of strings",
        "MessageContent" => "a string or an array of content parts ({\"type\": \"text\", \"text\": ...})",
        "Prompt" => "a string, an array of strings, an array of token ids or an array of arrays of token ids",
        _ => "a value of another shape",
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_become_json_terms() {
        let cases = [
            (
                "messages: invalid type: string \"hi\", expected a sequence",
                Some("messages"),
                "expected an array, got a string",
            ),
            (
                "temperature: invalid type: string \"hot\", expected f64",
                Some("temperature"),
                "expected a number, got a string",
            ),
            (
                "max_tokens: invalid value: integer `-1`, expected u64",
                Some("max_tokens"),
                "expected a non-negative integer, got -1",
            ),
            (
                "stop: data did not match any variant of untagged enum Stop",
                Some("stop"),
                "expected a string or an array of strings",
            ),
            ("messages[0]: missing field `role`", Some("messages[0].role"), "this field is required"),
            ("missing field `messages`", Some("messages"), "this field is required"),
            (
                "logit_bias: invalid type: integer `3`, expected a map",
                Some("logit_bias"),
                "expected an object, got a number",
            ),
            (
                "stream: invalid type: string \"yes\", expected a boolean",
                Some("stream"),
                "expected a boolean, got a string",
            ),
            ("something odd: happened", None, "something odd: happened"),
        ];
        for (text, path, message) in cases {
            let e = DataError::parse(text);
            assert_eq!(e, DataError { path: path.map(str::to_owned), message: message.into() }, "{text}");
        }
    }

    #[test]
    fn positions_are_stripped_only_when_they_are_positions() {
        assert_eq!(strip_position("expected value at line 1 column 2"), "expected value");
        assert_eq!(strip_position("a: b at line one"), "a: b at line one");
        assert_eq!(strip_position("no position"), "no position");
    }

    #[test]
    fn content_types() {
        let ok = ["application/json", "Application/JSON; charset=utf-8", "application/merge-patch+json"];
        let bad = ["text/plain", "application/jsonx", "json", "", "application/x-www-form-urlencoded"];
        for (t, want) in ok.iter().map(|t| (t, true)).chain(bad.iter().map(|t| (t, false))) {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, t.parse().expect("header"));
            assert_eq!(is_json(&headers), want, "{t}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
