//! The edge API's request handling, from JSON body to response, through the
//! public router (`ouro_edge::api::router`) over a scripted backend: axum's
//! JSON extraction into `ChatCompletionRequest` / `CompletionRequest`, then
//! `validate::chat` / `validate::completion`, `validate::settings`, the
//! token budget, and for valid requests the (streamed or whole) response
//! with the request's stop sequences applied.
//!
//! Every input is sent as the body of both `POST /v1/chat/completions` and
//! `POST /v1/completions`, from `localhost` with the default `ApiConfig`.
//!
//! Checks: nothing panics; the backend never fails, so no response is a
//! 5xx; what reaches the backend is within the checked bounds; every JSON response (success or error) is valid JSON, and so is
//! every SSE event of a stream.

#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::{to_bytes, Body};
use axum::http::{header, Request};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use ouro_edge::api::{router, ApiError, Backend, ChatMessage, GenEvent, GenRequest, OpenAiFinish, OuroStats};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// A backend that tokenizes by length and answers every request with the
/// same few deltas, cut so that common stop sequences straddle them.
struct Scripted;

const CONTEXT: usize = 64;
const VOCAB: usize = 100;

fn tokens(bytes: usize) -> Vec<u32> {
    (0..bytes.div_ceil(4) as u32).collect()
}

impl Backend for Scripted {
    fn model_id(&self) -> String {
        "fuzz-model".into()
    }

    fn max_context(&self) -> usize {
        CONTEXT
    }

    fn current_mode(&self) -> String {
        "speculative".into()
    }

    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ApiError> {
        let text: usize = messages.iter().map(|m| 4 + m.content.len()).sum();
        Ok(tokens(text))
    }

    fn text_prompt(&self, prompt: &str) -> Result<Vec<u32>, ApiError> {
        Ok(tokens(prompt.len()))
    }

    fn vocab_size(&self) -> Option<usize> {
        Some(VOCAB)
    }

    fn generate(&self, req: GenRequest) -> mpsc::Receiver<GenEvent> {
        assert!(!req.prompt.is_empty() && req.max_tokens >= 1);
        assert!(req.prompt.iter().all(|&id| (id as usize) < VOCAB), "token ids were checked");
        assert!(req.prompt.len() + req.max_tokens <= CONTEXT, "the budget was checked");
        assert!((0.0..=2.0).contains(&req.temperature));
        assert!(req.top_p.is_none_or(|p| p > 0.0 && p <= 1.0));
        let script = [
            GenEvent::Text { text: "Hello".into(), tokens: 1 },
            GenEvent::Text { text: ", wo".into(), tokens: 1 },
            GenEvent::Stats(OuroStats { rounds: 1, drafted: 4, accepted: 2, ..OuroStats::default() }),
            GenEvent::Text { text: "rld!\n\nUser: é".into(), tokens: 2 },
            GenEvent::Text { text: String::new(), tokens: 1 },
            GenEvent::Text { text: "→<|im_end|>".into(), tokens: 1 },
            GenEvent::Done { finish_reason: OpenAiFinish::Length, completion_tokens: 6, stats: OuroStats::default() },
        ];
        let (tx, rx) = mpsc::channel(script.len());
        for event in script {
            tx.try_send(event).expect("room for the whole script");
        }
        rx
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

fn app() -> Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| router(Arc::new(Scripted), None)).clone()
}

async fn post(uri: &str, body: &[u8]) {
    let request = Request::post(uri)
        .header(header::HOST, "localhost:8080")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .expect("request");
    let response = app().oneshot(request).await.expect("infallible");
    let status = response.status();
    assert!(!status.is_server_error(), "{uri}: {status}");
    let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_owned());
    let body = to_bytes(response.into_body(), 1 << 20).await.expect("the body is read");
    match content_type.as_deref() {
        Some("application/json") => {
            serde_json::from_slice::<serde_json::Value>(&body).expect("a JSON body");
        }
        Some("text/event-stream") => {
            let text = std::str::from_utf8(&body).expect("UTF-8 events");
            let mut done = false;
            for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
                assert!(!done, "no event after [DONE]");
                if data == "[DONE]" {
                    done = true;
                } else {
                    serde_json::from_str::<serde_json::Value>(data).expect("a JSON event");
                }
            }
            assert!(done, "a stream ends with [DONE]");
        }
        other => panic!("{uri}: unexpected content type {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        post("/v1/chat/completions", data).await;
        post("/v1/completions", data).await;
    });
});
