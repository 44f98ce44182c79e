//! Admission: so many generations run, so many wait, the rest are told to
//! come back later; a slot is held exactly as long as its generation.

use axum::http::StatusCode;
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;
use tokio::task::JoinHandle;

use super::*;

const CHAT: &str = "/v1/chat/completions";

fn limits(max_concurrent: usize, max_queue: usize) -> ApiConfig {
    ApiConfig { max_concurrent, max_queue, ..ApiConfig::default() }
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": stream})
}

/// A streamed request whose response (headers sent, body unread) is
/// returned: its generation, and so its slot, lives as long as the body.
async fn open_stream(app: &Router) -> Response {
    let call = app.clone().oneshot(json_request(CHAT, &chat("hi", true)));
    let response = tokio::time::timeout(PATIENCE, call).await.expect("admitted at once").expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    response
}

/// A non-streamed request running in the background.
fn spawn_chat(app: &Router, content: &str) -> JoinHandle<Reply> {
    let (app, body) = (app.clone(), chat(content, false));
    tokio::spawn(async move { post(app, CHAT, body).await })
}

/// Long enough for spawned requests to reach the queue: on the
/// current-thread test runtime they run while the test sleeps.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn assert_refused(reply: &Reply) {
    let error = reply.assert_error(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(reply.headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn beyond_the_running_and_the_queued_requests_are_refused_at_once() {
    let fake = FakeBackend::running_on(vec![text("x")]);
    let app = app_with(fake.clone(), limits(2, 2));
    let _running = [open_stream(&app).await, open_stream(&app).await];
    let queued = [spawn_chat(&app, "q1"), spawn_chat(&app, "q2")];
    settle().await;
    assert!(queued.iter().all(|q| !q.is_finished()), "the queued requests wait");
    assert_eq!(fake.requests().len(), 2, "only the admitted reach the engine");
    // `post` fails the test if this waits.
    assert_refused(&post(app.clone(), CHAT, chat("late", false)).await);
    assert_refused(&post(app.clone(), "/v1/completions", json!({"model": MODEL, "prompt": "x"})).await);
    assert_eq!(fake.requests().len(), 2);
    // Refusal is for generations only.
    assert_eq!(get(app, "/v1/models").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slot_frees_when_a_streaming_client_disconnects() {
    let fake = FakeBackend::running_on(vec![text("x")]);
    let app = app_with(fake.clone(), limits(1, 0));
    let first = open_stream(&app).await;
    assert_refused(&post(app.clone(), CHAT, chat("hi", true)).await);
    drop(first);
    fake.assert_cancelled().await;
    let _second = open_stream(&app).await;
}

#[tokio::test]
async fn a_slot_frees_when_a_generation_ends_or_a_stop_sequence_cuts_it() {
    let app = app_with(FakeBackend::new(vec![text("x"), done(OpenAiFinish::Stop, 1)]), limits(1, 0));
    for _ in 0..3 {
        let reply = post(app.clone(), CHAT, chat("hi", false)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    // An engine that would run on: the stop ends the generation, and the slot with it.
    let app = app_with(FakeBackend::running_on(vec![text("a"), text("STOP"), text("b")]), limits(1, 0));
    for _ in 0..3 {
        let mut body = chat("hi", false);
        body["stop"] = json!("STOP");
        let reply = post(app.clone(), CHAT, body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
}

#[tokio::test]
async fn queued_requests_run_in_arrival_order() {
    let fake = FakeBackend::new(vec![text("x"), done(OpenAiFinish::Stop, 1)]);
    let app = app_with(fake.clone(), limits(1, 2));
    // Its generation's end sits unread in the body, so it keeps the slot.
    let first = open_stream(&app).await;
    let second = spawn_chat(&app, "two words");
    settle().await;
    let third = spawn_chat(&app, "three words here");
    settle().await;
    assert_eq!(fake.requests().len(), 1);
    drop(first);
    for queued in [second, third] {
        let reply = queued.await.expect("task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let prompt_lengths: Vec<usize> = fake.requests().iter().map(|r| r.prompt.len()).collect();
    assert_eq!(prompt_lengths, [3, 4, 5], "the first to queue runs first");
}

#[tokio::test]
async fn a_client_leaving_the_queue_gives_its_place_back() {
    let fake = FakeBackend::running_on(vec![text("x")]);
    let app = app_with(fake.clone(), limits(1, 1));
    let first = open_stream(&app).await;
    let leaving = spawn_chat(&app, "hi");
    settle().await;
    assert_refused(&post(app.clone(), CHAT, chat("hi", false)).await);
    leaving.abort();
    settle().await;
    let waiting = spawn_chat(&app, "hi");
    settle().await;
    assert!(!waiting.is_finished(), "queued, not refused");
    drop(first);
    fake.assert_cancelled().await;
    // It is admitted now; its engine runs on, so stop waiting here.
    settle().await;
    assert_eq!(fake.requests().len(), 2);
    waiting.abort();
}

#[tokio::test]
async fn refusals_and_occupancy_are_in_the_metrics() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The test runtime is single-threaded: every task records here.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let app = app_with(FakeBackend::running_on(vec![text("x")]), limits(1, 1));
    let _running = open_stream(&app).await;
    let _queued = spawn_chat(&app, "hi");
    settle().await;
    assert_refused(&post(app.clone(), CHAT, chat("hi", false)).await);
    let wrong_host = request("GET", "/health").header(header::HOST, "evil.example").body(Body::empty()).expect("req");
    send(app, wrong_host).await.assert_error(StatusCode::FORBIDDEN);
    let text = handle.render();
    for line in [
        "ouro_edge_api_refused_total{reason=\"queue_full\"} 1",
        "ouro_edge_api_refused_total{reason=\"host\"} 1",
        "ouro_edge_api_running 1",
        "ouro_edge_api_queued 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
}
