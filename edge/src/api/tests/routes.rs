//! The routes that do not generate, and the fallbacks.

use axum::http::StatusCode;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

use super::*;

#[tokio::test]
async fn models_lists_the_served_model() {
    let reply = get(app(FakeBackend::new(vec![])), "/v1/models").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    let card = &body["data"][0];
    assert_eq!(card["id"], MODEL);
    assert_eq!(card["object"], "model");
    assert_eq!(card["owned_by"], "ouro");
    assert!(card["created"].is_u64());

    for id in [MODEL, "ouro"] {
        let reply = get(app(FakeBackend::new(vec![])), &format!("/v1/models/{id}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["id"], MODEL);
    }
    let reply = get(app(FakeBackend::new(vec![])), "/v1/models/gpt-4o").await;
    assert_eq!(reply.assert_error(StatusCode::NOT_FOUND)["code"], "model_not_found");
}

#[tokio::test]
async fn health_reports_model_and_mode() {
    let reply = get(app(FakeBackend::new(vec![])), "/health").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"status": "ok", "model": MODEL, "mode": "speculative"}));
}

#[tokio::test]
async fn metrics_is_404_without_a_handle() {
    let reply = get(app(FakeBackend::new(vec![])), "/metrics").await;
    reply.assert_error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_renders_the_handle() {
    // A recorder of its own, not installed globally, so tests do not share one.
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || metrics::counter!("ouro_edge_test_total").increment(3));
    let reply = get(router(FakeBackend::new(vec![]), Some(handle)), "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers[header::CONTENT_TYPE].to_str().is_ok_and(|t| t.starts_with("text/plain")));
    assert!(reply.body.contains("ouro_edge_test_total 3"), "{}", reply.body);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_openai_errors() {
    get(app(FakeBackend::new(vec![])), "/v1/embeddings").await.assert_error(StatusCode::NOT_FOUND);
    get(app(FakeBackend::new(vec![])), "/v1/chat/completions").await.assert_error(StatusCode::METHOD_NOT_ALLOWED);
    let req = request("POST", "/health").body(Body::empty()).expect("request");
    send(app(FakeBackend::new(vec![])), req).await.assert_error(StatusCode::METHOD_NOT_ALLOWED);
}
