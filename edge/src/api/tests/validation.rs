//! Every invalid request is a 4xx with an OpenAI error body, and never reaches the engine.

use axum::http::StatusCode;
use serde_json::json;

use super::*;

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

fn chat_with(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn completion_with(extra: Value) -> Value {
    let mut body = json!({"model": MODEL, "prompt": "hi"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn fake() -> Arc<FakeBackend> {
    FakeBackend::new(vec![text("x"), done(OpenAiFinish::Stop, 1)])
}

/// Sends `body`, expects `status` with an OpenAI error naming `param`.
async fn rejects(path: &str, body: Value, status: StatusCode, param: Option<&str>) {
    let fake = fake();
    let reply = post(app(fake.clone()), path, body.clone()).await;
    let error = reply.assert_error(status);
    assert_eq!(error["type"], "invalid_request_error", "{body} -> {error}");
    if let Some(param) = param {
        assert_eq!(error["param"], param, "{body} -> {error}");
    }
    assert!(fake.requests().is_empty(), "{body} reached the engine");
}

#[tokio::test]
async fn malformed_json_is_a_400_with_an_openai_body() {
    for body in ["{not json", "", "[1, 2", r#"{"model": "fake-model", "temperature": NaN}"#] {
        let req = request("POST", CHAT)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("request");
        send(app(fake()), req).await.assert_error(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_a_415_with_an_openai_body() {
    let body = chat_with(json!({})).to_string();
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut req = request("POST", CHAT);
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        let reply = send(app(fake()), req.body(Body::from(body.clone())).expect("request")).await;
        reply.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}

#[tokio::test]
async fn wrong_shapes_are_400s() {
    let bad = StatusCode::BAD_REQUEST;
    rejects(CHAT, json!({"model": MODEL}), bad, None).await;
    rejects(CHAT, json!({"model": MODEL, "messages": "hi"}), bad, None).await;
    rejects(CHAT, chat_with(json!({"temperature": "hot"})), bad, None).await;
    rejects(CHAT, chat_with(json!({"max_tokens": -1})), bad, None).await;
    rejects(CHAT, chat_with(json!({"stop": 7})), bad, None).await;
    rejects(CHAT, json!({"model": MODEL, "messages": [{"content": "no role"}]}), bad, None).await;
    rejects(COMPLETIONS, completion_with(json!({"prompt": 42})), bad, None).await;
    rejects(COMPLETIONS, json!([1, 2, 3]), bad, None).await;
}

#[tokio::test]
async fn model_must_be_the_served_one_or_the_alias() {
    rejects(CHAT, chat_with(json!({"model": "gpt-4o"})), StatusCode::NOT_FOUND, Some("model")).await;
    rejects(COMPLETIONS, completion_with(json!({"model": ""})), StatusCode::NOT_FOUND, Some("model")).await;
    let mut body = chat_with(json!({}));
    body.as_object_mut().map(|b| b.remove("model"));
    rejects(CHAT, body, StatusCode::BAD_REQUEST, Some("model")).await;
}

#[tokio::test]
async fn token_budget_must_fit_the_context() {
    let bad = StatusCode::BAD_REQUEST;
    rejects(CHAT, chat_with(json!({"max_tokens": 0})), bad, Some("max_tokens")).await;
    rejects(COMPLETIONS, completion_with(json!({"max_tokens": 0})), bad, Some("max_tokens")).await;
    // "hi" is 3 tokens with the template: 3 + 62 > 64.
    rejects(CHAT, chat_with(json!({"max_tokens": CONTEXT - 2})), bad, Some("messages")).await;
    rejects(CHAT, chat_with(json!({"max_completion_tokens": u64::MAX})), bad, Some("messages")).await;
    let long = "word ".repeat(CONTEXT);
    rejects(COMPLETIONS, completion_with(json!({"prompt": long})), bad, Some("prompt")).await;
    let reply = post(app(fake()), COMPLETIONS, completion_with(json!({"max_tokens": 1, "prompt": long}))).await;
    assert_eq!(reply.assert_error(bad)["code"], "context_length_exceeded");
    rejects(COMPLETIONS, completion_with(json!({"prompt": "  "})), bad, Some("prompt")).await;
    // Exactly full is fine.
    let reply = post(app(fake()), CHAT, chat_with(json!({"max_tokens": CONTEXT - 3}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn sampling_values_out_of_range_are_400s() {
    let bad = StatusCode::BAD_REQUEST;
    for t in [-0.1, 2.01, 1e300] {
        rejects(CHAT, chat_with(json!({"temperature": t})), bad, Some("temperature")).await;
    }
    for p in [0.0, -0.5, 1.5] {
        rejects(COMPLETIONS, completion_with(json!({"top_p": p})), bad, Some("top_p")).await;
    }
    for n in [0, 2] {
        rejects(CHAT, chat_with(json!({"n": n})), bad, Some("n")).await;
    }
    rejects(CHAT, chat_with(json!({"presence_penalty": 0.5})), bad, Some("presence_penalty")).await;
    rejects(CHAT, chat_with(json!({"frequency_penalty": -1})), bad, Some("frequency_penalty")).await;
    rejects(CHAT, chat_with(json!({"logit_bias": {"42": 10}})), bad, Some("logit_bias")).await;
    // Edges of the ranges are fine.
    let reply = post(app(fake()), CHAT, chat_with(json!({"temperature": 2, "top_p": 1}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn stop_sequences_are_limited() {
    let bad = StatusCode::BAD_REQUEST;
    rejects(CHAT, chat_with(json!({"stop": ["a", "b", "c", "d", "e"]})), bad, Some("stop")).await;
    rejects(CHAT, chat_with(json!({"stop": ""})), bad, Some("stop")).await;
    rejects(COMPLETIONS, completion_with(json!({"stop": ["a", ""]})), bad, Some("stop")).await;
}

#[tokio::test]
async fn messages_must_be_a_usable_conversation() {
    let bad = StatusCode::BAD_REQUEST;
    rejects(CHAT, json!({"model": MODEL, "messages": []}), bad, Some("messages")).await;
    for role in ["wizard", "tool", "function", ""] {
        let body =
            json!({"model": MODEL, "messages": [{"role": "user", "content": "a"}, {"role": role, "content": "b"}]});
        rejects(CHAT, body, bad, Some("messages[1].role")).await;
    }
    let body = json!({"model": MODEL, "messages": [{"role": "assistant", "content": null}]});
    rejects(CHAT, body, bad, Some("messages[0].content")).await;
    let image = json!({"type": "image_url", "image_url": {"url": "data:,"}});
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, image]}]});
    rejects(CHAT, body, bad, Some("messages[0].content[1]")).await;
}

#[tokio::test]
async fn features_this_server_cannot_honour_are_400s() {
    let bad = StatusCode::BAD_REQUEST;
    rejects(CHAT, chat_with(json!({"logprobs": true})), bad, Some("logprobs")).await;
    rejects(CHAT, chat_with(json!({"top_logprobs": 2})), bad, Some("top_logprobs")).await;
    rejects(CHAT, chat_with(json!({"tools": [{"type": "function"}]})), bad, Some("tools")).await;
    let format = json!({"response_format": {"type": "json_object"}});
    rejects(CHAT, chat_with(format), bad, Some("response_format")).await;
    rejects(COMPLETIONS, completion_with(json!({"echo": true})), bad, Some("echo")).await;
    rejects(COMPLETIONS, completion_with(json!({"suffix": "}"})), bad, Some("suffix")).await;
    rejects(COMPLETIONS, completion_with(json!({"best_of": 3})), bad, Some("best_of")).await;
    rejects(COMPLETIONS, completion_with(json!({"logprobs": 0})), bad, Some("logprobs")).await;
    rejects(COMPLETIONS, completion_with(json!({"prompt": ["a", "b"]})), bad, Some("prompt")).await;
    rejects(COMPLETIONS, completion_with(json!({"prompt": []})), bad, Some("prompt")).await;
    rejects(COMPLETIONS, json!({"model": MODEL}), bad, Some("prompt")).await;
}

#[tokio::test]
async fn oversized_body_is_a_413_with_an_openai_body() {
    let body = chat_with(json!({"padding": "x".repeat(3 << 20)}));
    let reply = send(app(fake()), json_request(CHAT, &body)).await;
    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn function_calling_in_any_spelling_and_non_text_output_are_refused() {
    let bad = StatusCode::BAD_REQUEST;
    let function = json!({"name": "f", "parameters": {"type": "object"}});
    rejects(CHAT, chat_with(json!({"functions": [function]})), bad, Some("functions")).await;
    rejects(CHAT, chat_with(json!({"function_call": {"name": "f"}})), bad, Some("function_call")).await;
    rejects(CHAT, chat_with(json!({"tool_choice": "required"})), bad, Some("tool_choice")).await;
    let named = json!({"tool_choice": {"type": "function", "function": {"name": "f"}}});
    rejects(CHAT, chat_with(named), bad, Some("tool_choice")).await;
    rejects(CHAT, chat_with(json!({"modalities": ["text", "audio"]})), bad, Some("modalities")).await;
    rejects(CHAT, chat_with(json!({"audio": {"voice": "alloy", "format": "wav"}})), bad, Some("audio")).await;
    rejects(CHAT, chat_with(json!({"web_search_options": {}})), bad, Some("web_search_options")).await;
    // The values that ask for plain text are fine.
    let plain = json!({"tool_choice": "auto", "function_call": "none", "functions": [], "modalities": ["text"],
                       "audio": null, "web_search_options": null});
    let reply = post(app(fake()), CHAT, chat_with(plain)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn token_id_prompts_are_checked() {
    let bad = StatusCode::BAD_REQUEST;
    let prompt = |p: Value| completion_with(json!({ "prompt": p }));
    // Ids the model has no embedding for, or that are not ids at all.
    for ids in [json!([1, VOCAB]), json!([u64::from(u32::MAX) + 1]), json!([-1]), json!([1.5]), json!([1, "a"])] {
        rejects(COMPLETIONS, prompt(ids), bad, Some("prompt")).await;
    }
    let reply = post(app(fake()), COMPLETIONS, prompt(json!([3, VOCAB + 7]))).await;
    let message = reply.assert_error(bad)["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains(&format!("{}", VOCAB + 7)) && message.contains("vocabulary"), "{message}");
    // Batches are refused by name, whatever they hold.
    for batch in [json!([[1], [2]]), json!(["a", "b"]), json!([[], [], []])] {
        let reply = post(app(fake()), COMPLETIONS, prompt(batch.clone())).await;
        let error = reply.assert_error(bad);
        assert_eq!(error["param"], "prompt", "{batch}");
        assert!(error["message"].as_str().is_some_and(|m| m.contains("batch")), "{batch}: {error}");
    }
    rejects(COMPLETIONS, prompt(json!([[]])), bad, Some("prompt")).await;
}

/// The error of a request that fails in deserialization.
async fn shape_error(path: &str, body: &str) -> Value {
    let req = request("POST", path).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_owned()));
    let fake = fake();
    let error = send(app(fake.clone()), req.expect("request")).await.assert_error(StatusCode::BAD_REQUEST);
    assert!(fake.requests().is_empty());
    let message = error["message"].as_str().unwrap_or_default();
    for internal in ["deserialize", "untagged", "enum", "u64", "f64", "struct", "target type", "sequence", "serde"] {
        assert!(!message.contains(internal), "{body} -> {message}");
    }
    error
}

#[tokio::test]
async fn shape_errors_name_the_field_in_json_terms() {
    let m = r#""model": "fake-model""#;
    let ok_messages = r#""messages": [{"role": "user", "content": "hi"}]"#;
    let cases = [
        (
            CHAT,
            format!(r#"{{{m}, "messages": [{{"role": "user", "content": 5}}]}}"#),
            Some("messages[0].content"),
            "messages[0].content: expected a string or an array of content parts",
        ),
        (
            CHAT,
            format!(r#"{{{m}, "messages": [{{"content": "x"}}]}}"#),
            Some("messages[0].role"),
            "messages[0].role: this field is required",
        ),
        (CHAT, format!(r#"{{{m}, "messages": "hi"}}"#), Some("messages"), "messages: expected an array, got a string"),
        (CHAT, format!("{{{m}}}"), Some("messages"), "messages: this field is required"),
        (
            CHAT,
            format!(r#"{{{m}, {ok_messages}, "temperature": "hot"}}"#),
            Some("temperature"),
            "temperature: expected a number, got a string",
        ),
        (
            CHAT,
            format!(r#"{{{m}, {ok_messages}, "max_tokens": -1}}"#),
            Some("max_tokens"),
            "max_tokens: expected a non-negative integer, got -1",
        ),
        (
            CHAT,
            format!(r#"{{{m}, {ok_messages}, "stop": 7}}"#),
            Some("stop"),
            "stop: expected a string or an array of strings",
        ),
        (
            CHAT,
            format!(r#"{{{m}, {ok_messages}, "stream": "yes"}}"#),
            Some("stream"),
            "stream: expected a boolean, got a string",
        ),
        (
            CHAT,
            format!(r#"{{{m}, {ok_messages}, "tools": {{}}}}"#),
            Some("tools"),
            "tools: expected an array, got an object",
        ),
        (
            COMPLETIONS,
            format!(r#"{{{m}, "prompt": 42}}"#),
            Some("prompt"),
            "prompt: expected a string, an array of strings",
        ),
        (
            COMPLETIONS,
            format!(r#"{{{m}, "prompt": "x", "logit_bias": 3}}"#),
            Some("logit_bias"),
            "logit_bias: expected an object, got a number",
        ),
        (COMPLETIONS, "[1, 2, 3]".into(), None, "the body must be a JSON object, not an array"),
        (CHAT, "\"hi\"".into(), None, "the body must be a JSON object, not a string"),
    ];
    for (path, body, param, message) in cases {
        let error = shape_error(path, &body).await;
        assert_eq!(error["param"], json!(param), "{body} -> {error}");
        assert!(error["message"].as_str().is_some_and(|m| m.starts_with(message)), "{body} -> {error}");
    }
}

#[tokio::test]
async fn json_syntax_errors_give_the_position() {
    let cases = [
        ("{not json", "the body is not valid JSON (line 1, column 2)"),
        ("{\n  \"model\": 1,,\n}", "the body is not valid JSON (line 2, column 14)"),
        (r#"{"temperature": NaN}"#, "the body is not valid JSON (line 1, column 17)"),
        (r#"{"a": 1} trailing"#, "the body is not valid JSON (line 1, column 10)"),
        ("", "the body is empty"),
        ("  \n", "the body is empty"),
    ];
    for (body, message) in cases {
        let error = shape_error(CHAT, body).await;
        assert!(error["message"].as_str().is_some_and(|m| m.starts_with(message)), "{body:?} -> {error}");
        assert!(error["param"].is_null());
    }
}

#[tokio::test]
async fn a_body_that_cannot_be_read_is_a_clean_400() {
    let pieces: Vec<Result<&'static str, std::io::Error>> =
        vec![Ok("{\"model\": "), Err(std::io::Error::other("connection reset by peer (hyper::Error(Io))"))];
    let req = request("POST", CHAT)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(tokio_stream::iter(pieces)))
        .expect("request");
    let error = send(app(fake()), req).await.assert_error(StatusCode::BAD_REQUEST);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("the request body could not be read"), "{message}");
    assert!(!message.contains("hyper") && !message.contains("reset"), "{message}");
}
