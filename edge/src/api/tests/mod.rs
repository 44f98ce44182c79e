//! HTTP-level tests against a scripted fake engine.

mod access;
mod admission;
mod completions;
mod routes;
mod streaming;
mod validation;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use super::{
    router, router_with, ApiConfig, ApiError, Backend, ChatMessage, GenEvent, GenRequest, OpenAiFinish, OuroStats,
};

pub const MODEL: &str = "fake-model";
pub const CONTEXT: usize = 64;
pub const VOCAB: usize = 100;
/// What the fake puts before a token-id prompt, as an engine adds its BOS.
pub const BOS: u32 = 99;
/// Long enough for a slow CI machine, short enough that a hang fails quickly.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// An engine that sends a fixed script of events, records what it was
/// asked, and reports when its receiver is dropped.
pub struct FakeBackend {
    script: Vec<GenEvent>,
    /// After the script, keep the sender open until the receiver goes away,
    /// like a generation that would run on; without it the sender is
    /// dropped when the script ends.
    run_on: bool,
    requests: Mutex<Vec<GenRequest>>,
    messages: Mutex<Vec<Vec<ChatMessage>>>,
    cancelled: watch::Sender<bool>,
}

impl FakeBackend {
    pub fn new(script: Vec<GenEvent>) -> Arc<Self> {
        Arc::new(Self::build(script, false))
    }

    /// A fake whose generation never ends by itself.
    pub fn running_on(script: Vec<GenEvent>) -> Arc<Self> {
        Arc::new(Self::build(script, true))
    }

    fn build(script: Vec<GenEvent>, run_on: bool) -> Self {
        Self {
            script,
            run_on,
            requests: Mutex::default(),
            messages: Mutex::default(),
            cancelled: watch::channel(false).0,
        }
    }

    pub fn requests(&self) -> Vec<GenRequest> {
        self.requests.lock().expect("lock").clone()
    }

    pub fn messages(&self) -> Vec<Vec<ChatMessage>> {
        self.messages.lock().expect("lock").clone()
    }

    /// Waits until the generation's receiver has been dropped.
    pub async fn assert_cancelled(&self) {
        let mut rx = self.cancelled.subscribe();
        let seen = tokio::time::timeout(PATIENCE, rx.wait_for(|&c| c)).await;
        assert!(matches!(seen, Ok(Ok(_))), "the engine never saw its receiver dropped");
    }
}

/// The fake's tokenizer: one token per word, plus two per chat message for
/// the template's markup.
fn words(text: &str) -> Vec<u32> {
    (1..).take(text.split_whitespace().count()).collect()
}

impl Backend for FakeBackend {
    fn model_id(&self) -> String {
        MODEL.into()
    }

    fn max_context(&self) -> usize {
        CONTEXT
    }

    fn current_mode(&self) -> String {
        "speculative".into()
    }

    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ApiError> {
        if messages.iter().any(|m| m.content.contains("TEMPLATE-FAILS")) {
            return Err(ApiError::invalid("messages", "the chat template rejected the conversation"));
        }
        self.messages.lock().expect("lock").push(messages.to_vec());
        Ok(messages.iter().flat_map(|m| [0, 0].into_iter().chain(words(&m.content))).collect())
    }

    fn text_prompt(&self, prompt: &str) -> Result<Vec<u32>, ApiError> {
        Ok(words(prompt))
    }

    fn token_prompt(&self, ids: Vec<u32>) -> Result<Vec<u32>, ApiError> {
        Ok([BOS].into_iter().chain(ids).collect())
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(VOCAB)
    }

    fn generate(&self, req: GenRequest) -> mpsc::Receiver<GenEvent> {
        self.requests.lock().expect("lock").push(req);
        let (tx, rx) = mpsc::channel(2);
        let script = self.script.clone();
        let run_on = self.run_on;
        let cancelled = self.cancelled.clone();
        tokio::spawn(async move {
            for event in script {
                if tx.send(event).await.is_err() {
                    cancelled.send_replace(true);
                    return;
                }
            }
            if run_on {
                tx.closed().await;
                cancelled.send_replace(true);
            }
        });
        rx
    }
}

pub fn text(t: &str) -> GenEvent {
    GenEvent::Text { text: t.into(), tokens: 1 }
}

pub fn stats() -> OuroStats {
    OuroStats {
        rounds: 3,
        drafted: 12,
        accepted: 9,
        mean_accepted: 3.0,
        mode: "speculative".into(),
        cloud_rtt_ms: Some(21.5),
        local_tokens: 0,
        cloud_resumes: 0,
    }
}

pub fn done(finish_reason: OpenAiFinish, completion_tokens: usize) -> GenEvent {
    GenEvent::Done { finish_reason, completion_tokens, stats: stats() }
}

pub fn app(backend: Arc<FakeBackend>) -> Router {
    router(backend, None)
}

pub fn app_with(backend: Arc<FakeBackend>, config: ApiConfig) -> Router {
    router_with(backend, None, config)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `data:` payloads of an SSE body, in order.
    pub fn events(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter_map(|block| {
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                (!data.is_empty()).then(|| data.join("\n"))
            })
            .collect()
    }

    /// Asserts an OpenAI-style error body with this status.
    pub fn assert_error(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        let body = self.json();
        let error = &body["error"];
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        assert!(error["type"].is_string(), "{body}");
        assert!(error.get("param").is_some() && error.get("code").is_some(), "{body}");
        error.clone()
    }
}

pub async fn send(app: Router, req: Request<Body>) -> Reply {
    let call = async {
        let response = app.oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.expect("body");
        Reply { status, headers, body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body") }
    };
    tokio::time::timeout(PATIENCE, call).await.expect("the request hung")
}

/// A request as a local client sends it: to `localhost`.
pub fn request(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path).header(header::HOST, "localhost:8080")
}

pub fn json_request(path: &str, body: &Value) -> Request<Body> {
    request("POST", path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

pub async fn post(app: Router, path: &str, body: Value) -> Reply {
    send(app, json_request(path, &body)).await
}

pub async fn get(app: Router, path: &str) -> Reply {
    send(app, request("GET", path).body(Body::empty()).expect("request")).await
}
