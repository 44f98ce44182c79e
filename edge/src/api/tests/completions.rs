//! Non-streamed responses: shapes, parameters handed to the engine, engine failures.

use axum::http::StatusCode;
use serde_json::json;

use super::*;
use crate::api::{DEFAULT_MAX_TOKENS, MODE_HEADER};

fn script() -> Vec<GenEvent> {
    vec![text("Hello"), text(", "), text("world!"), done(OpenAiFinish::Length, 3)]
}

fn chat_body() -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}]})
}

#[tokio::test]
async fn chat_completion_has_the_openai_shape_plus_ouro_stats() {
    let fake = FakeBackend::new(script());
    let reply = post(app(fake), "/v1/chat/completions", chat_body()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[MODE_HEADER], "speculative");
    let body = reply.json();
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")), "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().is_some_and(|c| c > 0));
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["choices"].as_array().map(Vec::len), Some(1));
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"], json!({"role": "assistant", "content": "Hello, world!"}));
    assert_eq!(choice["finish_reason"], "length");
    // Two template tokens plus two words.
    assert_eq!(body["usage"], json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}));
    assert_eq!(
        body["ouro"],
        json!({"rounds": 3, "drafted": 12, "accepted": 9, "mean_accepted": 3.0, "mode": "speculative",
               "cloud_rtt_ms": 21.5, "local_tokens": 0, "cloud_resumes": 0})
    );
}

#[tokio::test]
async fn text_completion_has_the_openai_shape_plus_ouro_stats() {
    let fake = FakeBackend::new(vec![text(" jumps"), text(" over"), done(OpenAiFinish::Stop, 2)]);
    let body = json!({"model": MODEL, "prompt": "The quick brown fox"});
    let reply = post(app(fake.clone()), "/v1/completions", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[MODE_HEADER], "speculative");
    let body = reply.json();
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")), "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], MODEL);
    let choice = &body["choices"][0];
    assert_eq!(choice["text"], " jumps over");
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(body["usage"], json!({"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}));
    assert_eq!(body["ouro"]["mode"], "speculative");
    assert_eq!(fake.requests()[0].prompt, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn defaults_are_greedy_and_bounded_by_the_context() {
    let fake = FakeBackend::new(script());
    post(app(fake.clone()), "/v1/chat/completions", chat_body()).await;
    let req = &fake.requests()[0];
    assert_eq!(req.temperature, 0.0);
    assert_eq!(req.top_p, None);
    assert_eq!(req.seed, None);
    assert_eq!(req.max_tokens, (CONTEXT - req.prompt.len()).min(DEFAULT_MAX_TOKENS));
}

#[tokio::test]
async fn sampling_parameters_reach_the_engine() {
    let fake = FakeBackend::new(script());
    let body = json!({"model": MODEL, "prompt": "a b", "max_tokens": 5, "temperature": 0.7, "top_p": 0.9,
                      "seed": 42});
    post(app(fake.clone()), "/v1/completions", body).await;
    assert_eq!(
        fake.requests()[0],
        GenRequest { prompt: vec![1, 2], max_tokens: 5, temperature: 0.7, top_p: Some(0.9), seed: Some(42) }
    );
    // max_completion_tokens is chat's newer name, and wins.
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9,
                      "max_completion_tokens": 6});
    post(app(fake.clone()), "/v1/chat/completions", body).await;
    assert_eq!(fake.requests()[1].max_tokens, 6);
}

#[tokio::test]
async fn alias_and_harmless_openai_fields_are_accepted() {
    let fake = FakeBackend::new(script());
    let body = json!({
        "model": "ouro",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "name": "ann", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "three"}
        ],
        "n": 1, "user": "ann", "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {},
        "stream": false, "stream_options": null, "tool_choice": "none", "tools": [],
        "response_format": {"type": "text"}, "logprobs": false, "stop": null, "parallel_tool_calls": false,
        "metadata": {"k": "v"}, "store": false
    });
    let reply = post(app(fake.clone()), "/v1/chat/completions", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["model"], MODEL, "responses name the served model, not the alias");
    assert_eq!(
        fake.messages()[0],
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "one\ntwo"),
            ChatMessage::new("assistant", "ok"),
            ChatMessage::new("user", "three"),
        ]
    );
    let body = json!({"model": MODEL, "prompt": ["only one"], "best_of": 1, "echo": false, "suffix": null,
                      "user": "ann"});
    let reply = post(app(fake), "/v1/completions", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn engine_failure_is_a_502_with_an_openai_error() {
    let fake = FakeBackend::new(vec![text("partial"), GenEvent::Error("cloud lost (fallback=fail)".into())]);
    let reply = post(app(fake), "/v1/chat/completions", chat_body()).await;
    let error = reply.assert_error(StatusCode::BAD_GATEWAY);
    assert_eq!(error["type"], "server_error");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("cloud lost")), "{error}");
}

#[tokio::test]
async fn engine_hanging_up_without_a_result_is_a_502() {
    let fake = FakeBackend::new(vec![text("partial")]);
    let reply = post(app(fake), "/v1/completions", json!({"model": MODEL, "prompt": "x"})).await;
    reply.assert_error(StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn prompt_errors_from_the_backend_pass_through() {
    let fake = FakeBackend::new(script());
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "TEMPLATE-FAILS"}]});
    let reply = post(app(fake.clone()), "/v1/chat/completions", body).await;
    assert_eq!(reply.assert_error(StatusCode::BAD_REQUEST)["param"], "messages");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn client_gone_before_a_non_streamed_reply_cancels() {
    let fake = FakeBackend::running_on(vec![text("never finishes")]);
    let call = app(fake.clone()).oneshot(json_request("/v1/chat/completions", &chat_body()));
    // Dropping the handler's future is what hyper does when the connection closes.
    assert!(tokio::time::timeout(Duration::from_millis(200), call).await.is_err());
    fake.assert_cancelled().await;
}

fn busy() -> GenEvent {
    GenEvent::Busy { message: "the cloud verifier is at capacity".into(), retry_after: Duration::from_millis(1500) }
}

#[tokio::test]
async fn a_busy_cloud_is_a_503_with_retry_after_not_a_degraded_answer() {
    for (path, body) in
        [("/v1/chat/completions", chat_body()), ("/v1/completions", json!({"model": MODEL, "prompt": "x"}))]
    {
        let reply = post(app(FakeBackend::new(vec![busy()])), path, body).await;
        let error = reply.assert_error(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error["type"], "server_error");
        assert_eq!(error["code"], "overloaded");
        assert!(error["message"].as_str().is_some_and(|m| m.contains("at capacity")), "{error}");
        assert_eq!(reply.headers[header::RETRY_AFTER], "2", "1.5 s rounds up");
    }
}

#[tokio::test]
async fn token_id_prompts_reach_the_engine_through_token_prompt() {
    let fake = FakeBackend::new(script());
    for prompt in [json!([1, 2, 3]), json!([[1, 2, 3]])] {
        let reply = post(app(fake.clone()), "/v1/completions", json!({"model": MODEL, "prompt": prompt})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.json()["usage"]["prompt_tokens"], 4, "the engine's BOS counts");
    }
    let last = VOCAB as u64 - 1;
    post(app(fake.clone()), "/v1/completions", json!({"model": MODEL, "prompt": [0, last]})).await;
    let prompts: Vec<Vec<u32>> = fake.requests().into_iter().map(|r| r.prompt).collect();
    assert_eq!(prompts, [vec![BOS, 1, 2, 3], vec![BOS, 1, 2, 3], vec![BOS, 0, last as u32]]);
}
