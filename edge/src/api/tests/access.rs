//! The `Host` allow-list, API keys and the body limit.

use axum::http::StatusCode;
use serde_json::json;

use super::*;

const CHAT: &str = "/v1/chat/completions";

fn fake() -> Arc<FakeBackend> {
    FakeBackend::new(vec![text("x"), done(OpenAiFinish::Stop, 1)])
}

fn chat() -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
}

/// A request to `path` with `host` (none when `None`) and extra headers.
fn to_host(method: &str, path: &str, host: Option<&str>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(host) = host {
        req = req.header(header::HOST, host);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if method == "POST" {
        req.header(header::CONTENT_TYPE, "application/json").body(Body::from(chat().to_string()))
    } else {
        req.body(Body::empty())
    }
    .expect("request")
}

/// Every route, the fallback included.
const ROUTES: [(&str, &str); 6] = [
    ("GET", "/health"),
    ("GET", "/v1/models"),
    ("GET", "/metrics"),
    ("POST", CHAT),
    ("POST", "/v1/completions"),
    ("GET", "/nope"),
];

#[tokio::test]
async fn loopback_hosts_are_allowed_by_default() {
    for host in ["localhost", "localhost:8080", "LocalHost", "127.0.0.1:9", "[::1]:8080", "[::1]", "localhost."] {
        let reply = send(app(fake()), to_host("GET", "/health", Some(host), &[])).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
        let reply = send(app(fake()), to_host("POST", CHAT, Some(host), &[])).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
    }
}

#[tokio::test]
async fn other_hosts_are_refused_on_every_route() {
    let hosts = ["evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io", "localhost:x", ""];
    for host in hosts {
        for (method, path) in ROUTES {
            let fake = fake();
            let reply = send(app(fake.clone()), to_host(method, path, Some(host), &[])).await;
            let error = reply.assert_error(StatusCode::FORBIDDEN);
            assert_eq!(error["code"], "host_not_allowed", "{host} {method} {path}");
            assert!(fake.requests().is_empty());
        }
    }
}

#[tokio::test]
async fn a_request_without_a_host_is_refused_unless_any_host_is_allowed() {
    let reply = send(app(fake()), to_host("GET", "/health", None, &[])).await;
    assert_eq!(reply.assert_error(StatusCode::FORBIDDEN)["code"], "host_not_allowed");

    let any = ApiConfig { allowed_hosts: vec!["*".into()], ..ApiConfig::default() };
    for host in [None, Some("evil.example"), Some("localhost")] {
        let reply = send(app_with(fake(), any.clone()), to_host("POST", CHAT, host, &[])).await;
        assert_eq!(reply.status, StatusCode::OK, "{host:?}: {}", reply.body);
    }
}

#[tokio::test]
async fn an_absolute_target_must_name_an_allowed_host_too() {
    let reply = send(app(fake()), to_host("GET", "http://evil.example/health", Some("localhost"), &[])).await;
    reply.assert_error(StatusCode::FORBIDDEN);
    let reply = send(app(fake()), to_host("GET", "http://localhost:8080/health", Some("localhost"), &[])).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn configured_hosts_replace_the_defaults() {
    let config = ApiConfig { allowed_hosts: vec!["Ouro.LAN".into(), "[fd00::1]".into()], ..ApiConfig::default() };
    for host in ["ouro.lan:8080", "[fd00::1]:80"] {
        let reply = send(app_with(fake(), config.clone()), to_host("GET", "/health", Some(host), &[])).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
    }
    let reply = send(app_with(fake(), config), to_host("GET", "/health", Some("localhost"), &[])).await;
    reply.assert_error(StatusCode::FORBIDDEN);
}

fn keyed() -> ApiConfig {
    ApiConfig { api_keys: vec!["sk-one".into(), "sk-two".into()], ..ApiConfig::default() }
}

#[tokio::test]
async fn with_keys_every_route_but_the_health_probe_needs_one() {
    for (method, path) in ROUTES.into_iter().chain([("POST", "/health")]) {
        if (method, path) == ("GET", "/health") {
            continue;
        }
        let fake = fake();
        let reply = send(app_with(fake.clone(), keyed()), to_host(method, path, Some("localhost"), &[])).await;
        // Unknown routes too: a prober without a key cannot map the API.
        let error = reply.assert_error(StatusCode::UNAUTHORIZED);
        assert_eq!(error["type"], "invalid_request_error", "{method} {path}");
        assert_eq!(error["code"], "invalid_api_key", "{method} {path}");
        assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(fake.requests().is_empty());
    }
    let reply = send(app_with(fake(), keyed()), to_host("GET", "/health", Some("localhost"), &[])).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn only_a_configured_key_as_a_bearer_token_passes() {
    for auth in ["Bearer sk-one", "bearer sk-two", "BEARER  sk-one "] {
        let req = to_host("POST", CHAT, Some("localhost"), &[("authorization", auth)]);
        let reply = send(app_with(fake(), keyed()), req).await;
        assert_eq!(reply.status, StatusCode::OK, "{auth}: {}", reply.body);
    }
    for auth in
        ["Bearer sk-on", "Bearer sk-one2", "Bearer SK-ONE", "Basic sk-one", "sk-one", "Bearer ", "Bearer sk-one sk-two"]
    {
        let req = to_host("POST", CHAT, Some("localhost"), &[("authorization", auth)]);
        let reply = send(app_with(fake(), keyed()), req).await;
        assert_eq!(reply.assert_error(StatusCode::UNAUTHORIZED)["code"], "invalid_api_key", "{auth}");
        assert!(!reply.body.contains("sk-one"), "the key is not echoed: {}", reply.body);
    }
    // Without keys configured, a key sent is not checked.
    let req = to_host("POST", CHAT, Some("localhost"), &[("authorization", "Bearer anything")]);
    assert_eq!(send(app(fake()), req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_host_is_checked_before_the_key() {
    let req = to_host("POST", CHAT, Some("evil.example"), &[("authorization", "Bearer sk-one")]);
    send(app_with(fake(), keyed()), req).await.assert_error(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_body_limit_is_the_configured_one() {
    let config = ApiConfig { max_body_bytes: 200, ..ApiConfig::default() };
    let small = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "user": "x".repeat(50)});
    let reply = send(app_with(fake(), config.clone()), json_request(CHAT, &small)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let large = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "user": "x".repeat(300)});
    let reply = send(app_with(fake(), config.clone()), json_request(CHAT, &large)).await;
    let error = reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error["message"].as_str().is_some_and(|m| m.contains("200 bytes")), "{error}");

    // Streamed without a Content-Length, the limit still holds.
    let bytes = large.to_string().into_bytes();
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(64).map(|c| Ok(c.to_vec())).collect();
    let req = request("POST", CHAT)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(tokio_stream::iter(pieces)))
        .expect("request");
    send(app_with(fake(), config), req).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_default_body_limit_is_one_mebibyte() {
    let body = |len: usize| {
        let mut body = chat();
        let pad = len - body.to_string().len() - r#","user":"""#.len();
        body["user"] = json!("x".repeat(pad));
        assert_eq!(body.to_string().len(), len);
        body
    };
    let reply = post(app(fake()), CHAT, body(1 << 20)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", &reply.body[..reply.body.len().min(200)]);
    post(app(fake()), CHAT, body((1 << 20) + 1)).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE);
}
