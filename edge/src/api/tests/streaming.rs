//! Streamed responses, stop sequences and cancellation.

use axum::http::StatusCode;
use serde_json::json;
use tokio_stream::StreamExt;

use super::*;
use crate::api::MODE_HEADER;

fn script() -> Vec<GenEvent> {
    vec![text("Hel"), text("lo"), text(""), text(" wor"), text("ld ✓"), done(OpenAiFinish::Stop, 5)]
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// The JSON chunks of a stream that must end with `[DONE]`.
fn stream_chunks(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let mut events = reply.events();
    assert_eq!(events.pop().as_deref(), Some("[DONE]"), "{}", reply.body);
    events.iter().map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}"))).collect()
}

fn chat_text(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

#[tokio::test]
async fn streamed_chat_matches_the_unstreamed_reply() {
    let unstreamed = post(app(FakeBackend::new(script())), "/v1/chat/completions", chat(json!({}))).await.json();
    let reply = post(app(FakeBackend::new(script())), "/v1/chat/completions", chat(json!({"stream": true}))).await;
    assert!(reply.headers[axum::http::header::CONTENT_TYPE].to_str().is_ok_and(|t| t.starts_with("text/event-stream")));
    assert_eq!(reply.headers[MODE_HEADER], "speculative");
    let chunks = stream_chunks(&reply);

    let id = &chunks[0]["id"];
    assert!(id.as_str().is_some_and(|id| id.starts_with("chatcmpl-")));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk", "{c}");
        assert_eq!(&c["id"], id);
        assert_eq!(c["model"], MODEL);
        assert_eq!(c["choices"][0]["index"], 0);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[1..].iter().all(|c| c["choices"][0]["delta"].get("role").is_none()));
    assert_eq!(chat_text(&chunks), "Hello world ✓");
    assert_eq!(chat_text(&chunks), unstreamed["choices"][0]["message"]["content"]);

    let (last, rest) = chunks.split_last().expect("chunks");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"], unstreamed["usage"]);
    assert_eq!(last["ouro"], unstreamed["ouro"]);
    for c in rest {
        assert!(c["choices"][0]["finish_reason"].is_null(), "{c}");
        assert!(c.get("usage").is_none() && c.get("ouro").is_none(), "{c}");
    }
}

#[tokio::test]
async fn streamed_completion_has_text_chunks() {
    let body = json!({"model": MODEL, "prompt": "Say", "stream": true});
    let reply = post(app(FakeBackend::new(script())), "/v1/completions", body).await;
    let chunks = stream_chunks(&reply);
    for c in &chunks {
        assert_eq!(c["object"], "text_completion", "{c}");
        assert!(c["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")));
    }
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, "Hello world ✓");
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"], json!({"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}));
    assert_eq!(last["ouro"]["accepted"], 9);
}

#[tokio::test]
async fn streamed_engine_failure_is_an_error_event_then_the_end() {
    let fake = FakeBackend::new(vec![text("par"), GenEvent::Error("cloud lost".into())]);
    let reply = post(app(fake), "/v1/chat/completions", chat(json!({"stream": true}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let events = reply.events();
    assert!(!events.contains(&"[DONE]".to_string()), "{}", reply.body);
    let error: Value = serde_json::from_str(events.last().expect("events")).expect("JSON");
    assert_eq!(error["error"]["type"], "server_error");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("cloud lost")));
}

/// Deltas that spell "Answer: 42\n\nUser: more" and would run on.
fn chatty() -> Vec<GenEvent> {
    vec![text("Answer"), text(": 4"), text("2\n"), text("\nUs"), text("er: more")]
}

#[tokio::test]
async fn stop_sequence_split_across_deltas_truncates_and_cancels() {
    let fake = FakeBackend::running_on(chatty());
    let reply = post(app(fake.clone()), "/v1/chat/completions", chat(json!({"stop": "\n\nUser:"}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["choices"][0]["message"]["content"], "Answer: 42");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 5, "every delta up to the stop was generated");
    assert_eq!(body["ouro"]["mode"], "speculative");
    fake.assert_cancelled().await;
}

#[tokio::test]
async fn first_completed_of_several_stops_wins_when_streamed() {
    let fake = FakeBackend::running_on(chatty());
    let reply =
        post(app(fake.clone()), "/v1/chat/completions", chat(json!({"stream": true, "stop": ["more", "42"]}))).await;
    let chunks = stream_chunks(&reply);
    assert_eq!(chat_text(&chunks), "Answer: ");
    assert_eq!(chunks.last().expect("chunks")["choices"][0]["finish_reason"], "stop");
    fake.assert_cancelled().await;

    let fake = FakeBackend::running_on(chatty());
    let body = json!({"model": MODEL, "prompt": "Q", "stream": true, "stop": ["zzz", "Us", "\n\n"]});
    let chunks = stream_chunks(&post(app(fake.clone()), "/v1/completions", body).await);
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, "Answer: 42");
    fake.assert_cancelled().await;
}

#[tokio::test]
async fn stop_that_never_completes_leaves_the_text_whole() {
    let fake = FakeBackend::new(vec![text("a\n"), text("b\n"), done(OpenAiFinish::Length, 2)]);
    let reply = post(app(fake), "/v1/completions", json!({"model": MODEL, "prompt": "x", "stop": "\n\n"})).await;
    let body = reply.json();
    assert_eq!(body["choices"][0]["text"], "a\nb\n");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn client_disconnecting_mid_stream_cancels_the_generation() {
    let fake = FakeBackend::running_on(vec![text("first"), text("second")]);
    let response = app(fake.clone())
        .oneshot(json_request("/v1/chat/completions", &chat(json!({"stream": true}))))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let first = tokio::time::timeout(PATIENCE, body.next()).await.expect("a first event");
    assert!(first.is_some_and(|f| f.is_ok()));
    drop(body);
    fake.assert_cancelled().await;
}

#[tokio::test]
async fn dropping_an_unread_stream_cancels_the_generation() {
    let fake = FakeBackend::running_on(vec![text("first")]);
    let body = json!({"model": MODEL, "prompt": "x", "stream": true});
    let response = app(fake.clone()).oneshot(json_request("/v1/completions", &body)).await.expect("infallible");
    drop(response);
    fake.assert_cancelled().await;
}

#[tokio::test]
async fn a_refusal_or_failure_before_any_text_is_a_real_status_when_streamed() {
    let busy =
        GenEvent::Busy { message: "the cloud verifier is at capacity".into(), retry_after: Duration::from_secs(3) };
    let completion = json!({"model": MODEL, "prompt": "x", "stream": true});
    for (path, body) in [("/v1/chat/completions", chat(json!({"stream": true}))), ("/v1/completions", completion)] {
        let reply = post(app(FakeBackend::new(vec![busy.clone()])), path, body.clone()).await;
        assert_eq!(reply.assert_error(StatusCode::SERVICE_UNAVAILABLE)["code"], "overloaded");
        assert_eq!(reply.headers[axum::http::header::RETRY_AFTER], "3");

        let failing = FakeBackend::new(vec![GenEvent::Stats(stats()), GenEvent::Error("cloud lost".into())]);
        let reply = post(app(failing), path, body.clone()).await;
        let error = reply.assert_error(StatusCode::BAD_GATEWAY);
        assert!(error["message"].as_str().is_some_and(|m| m.contains("cloud lost")), "{error}");

        // The engine hanging up without a word is a failure too.
        post(app(FakeBackend::new(vec![])), path, body).await.assert_error(StatusCode::BAD_GATEWAY);
    }
}

#[tokio::test]
async fn busy_after_text_is_an_error_event() {
    let busy = GenEvent::Busy { message: "at capacity".into(), retry_after: Duration::from_secs(1) };
    let reply =
        post(app(FakeBackend::new(vec![text("par"), busy])), "/v1/chat/completions", chat(json!({"stream": true})))
            .await;
    assert_eq!(reply.status, StatusCode::OK);
    let events = reply.events();
    let error: Value = serde_json::from_str(events.last().expect("events")).expect("JSON");
    assert_eq!(error["error"]["code"], "overloaded", "{}", reply.body);
    assert_eq!(
        chat_text(
            &events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).expect("JSON")).collect::<Vec<_>>()
        ),
        "par"
    );
}

#[tokio::test]
async fn a_stream_ending_without_text_still_streams() {
    let reply = post(
        app(FakeBackend::new(vec![done(OpenAiFinish::Length, 0)])),
        "/v1/chat/completions",
        chat(json!({"stream": true})),
    )
    .await;
    let chunks = stream_chunks(&reply);
    assert_eq!(chat_text(&chunks), "");
    assert_eq!(chunks.last().expect("chunks")["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn stream_headers_wait_for_the_first_output_and_leaving_meanwhile_cancels() {
    let fake = FakeBackend::running_on(vec![]);
    let call = app(fake.clone()).oneshot(json_request("/v1/chat/completions", &chat(json!({"stream": true}))));
    assert!(tokio::time::timeout(Duration::from_millis(200), call).await.is_err(), "no headers before any output");
    fake.assert_cancelled().await;
}
