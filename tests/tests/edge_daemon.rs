//! `ouro-edge serve` against a real `ouro-cloud serve`, both as processes on
//! loopback, through the edge's OpenAI-compatible API: the text equals the
//! cloud's own `Generate` over gRPC and QUIC, streamed or not, and survives
//! a killed cloud, a restarted cloud and an evicted session.

use ouro_common::model::gguf;
use ouro_common::tokenizer::Tokenizer;
use ouro_edge::link::TransportKind;
use ouro_tests::cloud::{connect, every_transport, generate, CloudServer, ADMIN_TOKEN, TOKEN};
use ouro_tests::edge::{http, sse_events, EdgeServer};
use ouro_tests::model_path;
use serde_json::{json, Value};
use std::io::{Read, Write};

const PROMPT: &str = "The three primary colors are";
const NEW: u32 = 40;

fn smol() -> String {
    model_path("smollm2-135m").display().to_string()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(&gguf::read_content(&model_path("smollm2-135m")).unwrap()).unwrap()
}

/// What the cloud alone writes for PROMPT, as text.
async fn cloud_text(cloud: &CloudServer, max: u32) -> String {
    let tok = tokenizer();
    let info = tok.info();
    let mut ids: Vec<u32> = if info.add_bos { info.bos.into_iter().collect() } else { vec![] };
    ids.extend(tok.encode(PROMPT, true).unwrap());
    let mut c = connect(cloud.addr, Some(TOKEN)).await;
    let out = generate(&mut c, &ids, max, &info.stop_ids).await.unwrap();
    tok.decode(&out, true).unwrap()
}

fn edge(cloud: &CloudServer, transport: TransportKind, extra: &[&str]) -> EdgeServer {
    let addr = cloud.addr_of(transport).unwrap_or_else(|| panic!("the cloud serves {transport}"));
    edge_at(addr, transport, extra)
}

fn edge_at(addr: std::net::SocketAddr, transport: TransportKind, extra: &[&str]) -> EdgeServer {
    let addr = addr.to_string();
    let leak = |s: String| &*Box::leak(s.into_boxed_str());
    let mut args = vec!["--model", leak(smol()), "--cloud", leak(addr)];
    args.extend(["--transport", leak(transport.name()), "--insecure-dev", "--token", TOKEN]);
    if !extra.contains(&"--draft") {
        args.extend(["--draft", "chain4"]);
    }
    args.extend(extra);
    EdgeServer::start(&args).expect("edge starts")
}

fn complete(e: &EdgeServer, max: u32, stream: bool) -> (u16, String, String) {
    let body = json!({"model": "ouro", "prompt": PROMPT, "max_tokens": max, "stream": stream});
    http(e.addr, "POST", "/v1/completions", Some(&body))
}

fn text_of(body: &str) -> (String, Value) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (v["choices"][0]["text"].as_str().unwrap().to_string(), v["ouro"].clone())
}

fn streamed(body: &str) -> (String, Value) {
    let events = sse_events(body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    let mut text = String::new();
    let mut ouro = Value::Null;
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        text.push_str(v["choices"][0]["text"].as_str().unwrap_or(""));
        if !v["ouro"].is_null() {
            ouro = v["ouro"].clone();
        }
    }
    (text, ouro)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_text_equals_cloud_generate_over_grpc_and_quic() {
    let cloud = CloudServer::start(&model_path("smollm2-135m"), &every_transport());
    let want = cloud_text(&cloud, NEW).await;
    let pool = std::env::temp_dir().join(format!("ouro-pool-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&pool);
    for &transport in TransportKind::all() {
        let e = edge(&cloud, transport, &["--draft", "ouroboros", "--pool-file", pool.to_str().unwrap()]);
        let (status, head, body) = complete(&e, NEW, false);
        assert_eq!(status, 200, "{body}");
        let (text, ouro) = text_of(&body);
        assert_eq!(text, want, "{transport}");
        assert_eq!(ouro["mode"], "speculative", "{ouro}");
        assert!(ouro["rounds"].as_u64().unwrap() > 0);
        assert!(head.to_ascii_lowercase().contains("x-ouro-mode: speculative"), "{head}");
        let (status, _, body) = complete(&e, NEW, true);
        assert_eq!(status, 200);
        let (text, ouro) = streamed(&body);
        assert_eq!(text, want, "streamed, {transport}");
        assert_eq!(ouro["mode"], "speculative");
    }
    // The phrase pool was saved for the next start (and loaded by the second edge).
    assert!(ouro_common::draft::PhrasePool::load(&pool).is_ok(), "no pool at {}", pool.display());
    let _ = std::fs::remove_file(&pool);
}

/// Starts a streamed completion and reads until its first text delta.
fn stream_until_text(e: &EdgeServer, max: u32) -> (std::net::TcpStream, Vec<u8>) {
    let mut conn = std::net::TcpStream::connect(e.addr).unwrap();
    let req = json!({"model": "ouro", "prompt": PROMPT, "max_tokens": max, "stream": true}).to_string();
    write!(
        conn,
        "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{req}",
        req.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&raw).contains("\"text\":\"") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before any text");
        raw.extend_from_slice(&buf[..n]);
    }
    (conn, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_cloud_falls_back_to_local_without_losing_a_token_then_recovers() {
    // SmolLM2 drafts for itself, so the drafter alone writes the same greedy
    // text: any duplicated or missing token across the switch would show.
    let cloud = CloudServer::start(&model_path("smollm2-135m"), &[]);
    let port = cloud.addr.port();
    let want = cloud_text(&cloud, 160).await;
    let e = edge(&cloud, TransportKind::Grpc, &["--fallback", "local"]);
    // Kill the cloud once the first verified text has been streamed.
    let (mut conn, mut raw) = stream_until_text(&e, 160);
    drop(cloud);
    conn.read_to_end(&mut raw).unwrap();
    let body = ouro_tests::edge::body_of(&raw);
    let (text, ouro) = streamed(&body);
    assert_eq!(text, want, "text across the fallback");
    assert_eq!(ouro["mode"], "local", "{ouro}");
    // The cloud's tokens came first: as verdicts, or streamed as it ran on
    // from its prefill.
    assert!(ouro["local_tokens"].as_u64().unwrap() < 160, "no cloud token before the cloud died: {ouro}");
    let (_, head, body) = complete(&e, 8, false);
    assert_eq!(text_of(&body).1["mode"], "local");
    assert!(head.to_ascii_lowercase().contains("x-ouro-mode: local"), "{head}");

    // The cloud comes back on the same port: the next request is verified again.
    let port_arg = format!("127.0.0.1:{port}");
    let cloud = CloudServer::start(&model_path("smollm2-135m"), &["--listen", &port_arg]);
    let (_, _, body) = complete(&e, NEW, false);
    let (text, ouro) = text_of(&body);
    assert_eq!(ouro["mode"], "speculative", "{ouro}");
    assert_eq!(text, cloud_text(&cloud, NEW).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quic_a_killed_cloud_falls_back_to_local_without_losing_a_token() {
    // A crashed peer sends QUIC nothing (no reset as TCP has): the edge must
    // notice by its keep-alives and idle timeout, then carry on locally.
    let cloud = CloudServer::start(&model_path("smollm2-135m"), &["--quic-listen", "127.0.0.1:0"]);
    let want = cloud_text(&cloud, 160).await;
    let e = edge(&cloud, TransportKind::Quic, &["--fallback", "local"]);
    let (mut conn, mut raw) = stream_until_text(&e, 160);
    let t = std::time::Instant::now();
    drop(cloud);
    conn.read_to_end(&mut raw).unwrap();
    println!("QUIC: the rest of the generation took {:.1} s after the cloud was killed", t.elapsed().as_secs_f64());
    let (text, ouro) = streamed(&ouro_tests::edge::body_of(&raw));
    assert_eq!(text, want, "text across the fallback");
    assert_eq!(ouro["mode"], "local", "{ouro}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_that_returns_mid_generation_takes_over_again() {
    const LONG: u32 = 480;
    let cloud = CloudServer::start(&model_path("smollm2-135m"), &[]);
    let want = cloud_text(&cloud, LONG).await;
    // The outage is a link the test cuts and restores, so it ends the moment
    // the test says: a restarted process would race its model load against
    // the drafter finishing the text alone.
    let link = ouro_tests::link::CutLink::start(cloud.addr);
    let e = edge_at(link.addr, TransportKind::Grpc, &["--fallback", "local", "--reprobe-ms", "50"]);
    let (mut conn, mut raw) = stream_until_text(&e, LONG);
    link.cut();
    let t = std::time::Instant::now();
    while health_mode(&e) != "local" {
        assert!(t.elapsed().as_secs() < 60, "the edge never noticed the cut");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let before = cloud.metric_sum("ouro_rounds_total");
    link.restore();
    conn.read_to_end(&mut raw).unwrap();
    let (text, ouro) = streamed(&ouro_tests::edge::body_of(&raw));
    println!("generation ended {:.2} s after the cut: {ouro}", t.elapsed().as_secs_f64());
    // SmolLM2 drafts for itself, so verified and local text agree: any token
    // lost or repeated at either switch would show.
    assert_eq!(text, want, "text across both switches");
    assert_eq!(ouro["mode"], "local", "some tokens were not verified: {ouro}");
    assert!(ouro["local_tokens"].as_u64().unwrap() > 0, "{ouro}");
    assert_eq!(ouro["cloud_resumes"], 1, "speculation did not resume mid-generation: {ouro}");
    assert!(cloud.metric_sum("ouro_rounds_total") > before, "the returned cloud verified nothing");
    // The cloud still held the session (the cut ended its stream at once):
    // speculation went on in it, with only the drafter's tokens prefilled.
    let (opened, resumed) =
        (cloud.metric_sum("ouro_sessions_opened_total"), cloud.metric_sum("ouro_sessions_resumed_total"));
    assert_eq!((opened, resumed), (1.0, 1.0), "a new session instead of the one the cloud held");
}

fn health_mode(e: &EdgeServer) -> String {
    let (_, _, body) = http(e.addr, "GET", "/health", None);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body}"));
    v["mode"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_session_is_reopened_and_the_text_is_unchanged() {
    let cloud = CloudServer::start(&model_path("smollm2-135m"), &[]);
    let want = cloud_text(&cloud, 160).await;
    let e = edge(&cloud, TransportKind::Grpc, &["--fallback", "fail"]);
    let addr = e.addr;
    let req = std::thread::spawn(move || {
        let body = json!({"model": "ouro", "prompt": PROMPT, "max_tokens": 160});
        http(addr, "POST", "/v1/completions", Some(&body))
    });
    // Evict every idle session until one eviction lands mid-generation.
    let mut evicted = 0;
    while !req.is_finished() && evicted == 0 {
        let (_, b) = cloud.admin("/admin/evict-idle", Some(ADMIN_TOKEN));
        evicted += b.trim().trim_start_matches("evicted ").parse::<u32>().unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, _, body) = req.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let (text, ouro) = text_of(&body);
    assert_eq!(text, want);
    assert_eq!(ouro["mode"], "speculative");
    assert!(evicted > 0, "the generation ended before an eviction could land");
}

#[test]
fn tokenizer_mismatch_error_names_both_hashes() {
    let cloud = CloudServer::start(&model_path("qwen2.5-coder-0.5b"), &[]);
    let out = std::process::Command::new(ouro_tests::cloud::bin_path("ouro-edge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--model", &smol(), "--cloud", &cloud.addr.to_string()])
        .args(["--insecure-dev", "--token", TOKEN])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokenizer differs") && err.matches("ids").count() >= 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_cloud_certificate_is_refused() {
    let real = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir();
    let (cert, key, ca) = (
        dir.join(format!("ouro-e-cert-{}", std::process::id())),
        dir.join(format!("ouro-e-key-{}", std::process::id())),
        dir.join(format!("ouro-e-ca-{}", std::process::id())),
    );
    std::fs::write(&cert, real.cert.pem()).unwrap();
    std::fs::write(&key, real.signing_key.serialize_pem()).unwrap();
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let cloud = CloudServer::start_with(
        &model_path("smollm2-135m"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
        false,
    );
    for (trust, mode) in [(&ca, "local"), (&cert, "speculative")] {
        let e = EdgeServer::start(&[
            "--model",
            &smol(),
            "--cloud",
            &format!("localhost:{}", cloud.addr.port()),
            "--ca",
            trust.to_str().unwrap(),
            "--token",
            TOKEN,
        ])
        .unwrap();
        let (_, _, body) = complete(&e, 8, false);
        assert_eq!(text_of(&body).1["mode"], mode, "trusting {}", trust.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_generate_through_the_cloud_prints_the_clouds_text() {
    let cloud = CloudServer::start(&model_path("smollm2-135m"), &[]);
    let want = cloud_text(&cloud, NEW).await;
    let out = std::process::Command::new(ouro_tests::cloud::bin_path("ouro-edge"))
        .args(["--threads", "1", "generate", "--raw", "--model", &smol(), "--max-tokens", &NEW.to_string()])
        .args(["--cloud", &cloud.addr.to_string(), "--insecure-dev", "--token", TOKEN, "--draft", "ouroboros"])
        .arg(PROMPT)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.strip_suffix('\n').unwrap_or(&stdout), want);
    assert!(stderr.contains("mode speculative"), "summary line: {stderr}");
}

/// The Qwen pair through the edge's API over both transports, streamed and
/// not, against the cloud's own `Generate` (run locally: `cargo test -p
/// ouro-tests --test edge_daemon -- --ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Qwen pair and several minutes"]
async fn qwen_pair_through_the_api_equals_generate() {
    let target = model_path("qwen2.5-coder-1.5b");
    let cloud = CloudServer::start(&target, &every_transport());
    let tok = Tokenizer::from_gguf(&gguf::read_content(&target).unwrap()).unwrap();
    let info = tok.info();
    let question = "Write a Python function that returns the n-th Fibonacci number.";
    let chat = json!({"model": "ouro", "messages": [{"role": "user", "content": question}], "max_tokens": 64});
    // What the cloud alone writes for the same rendered prompt.
    let drafter = model_path("qwen2.5-coder-0.5b");
    let side = ouro_bench_text(&target, question);
    let mut c = connect(cloud.addr, Some(TOKEN)).await;
    let want = tok.decode(&generate(&mut c, &side, 64, &info.stop_ids).await.unwrap(), true).unwrap();
    for &transport in TransportKind::all() {
        let addr = cloud.addr_of(transport).unwrap().to_string();
        let name = transport.name();
        let e = EdgeServer::start(&[
            "--model",
            drafter.to_str().unwrap(),
            "--cloud",
            &addr,
            "--transport",
            &name,
            "--insecure-dev",
            "--token",
            TOKEN,
        ])
        .unwrap();
        let (status, _, body) = http(e.addr, "POST", "/v1/chat/completions", Some(&chat));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"].as_str().unwrap(), want, "{transport}");
        assert_eq!(v["ouro"]["mode"], "speculative");
        println!("{transport}: {}", v["ouro"]);
        let mut streamed_req = chat.clone();
        streamed_req["stream"] = json!(true);
        let (_, _, body) = http(e.addr, "POST", "/v1/chat/completions", Some(&streamed_req));
        let events = sse_events(&body);
        let text: String = events[..events.len() - 1]
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .map(|v| v["choices"][0]["delta"]["content"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(text, want, "streamed, {transport}");
    }
}

/// The prompt ids the edge builds for one user turn: the model's own chat
/// template, then BOS if the tokenizer adds one.
fn ouro_bench_text(model: &std::path::Path, question: &str) -> Vec<u32> {
    use ouro_common::chat::{ChatTemplate, Message, CHATML};
    let tok = Tokenizer::from_gguf(&gguf::read_content(model).unwrap()).unwrap();
    let info = tok.info();
    let text = |id: Option<u32>| id.and_then(|i| tok.inner().id_to_token(i)).unwrap_or_default();
    let source = info.chat_template.clone().unwrap_or_else(|| CHATML.to_string());
    let template = ChatTemplate::new(&source, &text(info.bos), &text(info.eos)).unwrap();
    let rendered = template.render(&[Message::new("user", question)], true).unwrap();
    let mut ids: Vec<u32> = if info.add_bos { info.bos.into_iter().collect() } else { vec![] };
    ids.extend(tok.encode(&rendered, true).unwrap());
    ids
}
