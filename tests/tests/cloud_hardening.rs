//! What a probe of a running `ouro-cloud` found (issue 15), each as a test
//! that fails on the code before the fix: one token locking the others
//! out, the operator endpoints open to anyone, `--insecure-dev` binding off
//! loopback, and requests past the size limits.

use std::process::{Command, Stdio};

use ouro_proto::v1;
use ouro_tests::cloud::{self, connect, generate, CloudServer, SessionStream, ADMIN_TOKEN, OTHER_TOKEN, TOKEN};
use ouro_tests::{model_path, reference_prompts};
use tonic::Code;

const STOP: [u32; 3] = [0, 2, 4];

fn prompt() -> Vec<u32> {
    reference_prompts("smollm2-135m").into_iter().map(|(_, p, _)| p).next().expect("a reference prompt")
}

fn server(extra: &[&str]) -> CloudServer {
    CloudServer::start(&model_path("smollm2-135m"), extra)
}

async fn open(addr: std::net::SocketAddr, token: &str) -> Result<SessionStream, tonic::Status> {
    let mut c = connect(addr, Some(token)).await;
    let h = c.info(v1::InfoRequest {}).await?.into_inner().tokenizer_hash;
    SessionStream::open(&mut c, v1::Open { tokenizer_hash: h, prompt: prompt(), ..Default::default() })
        .await
        .map(|(s, _)| s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_cannot_lock_the_others_out() {
    // Four slots; each token may hold two (half, the default quota).
    let srv = server(&["--max-sessions", "4", "--reclaim-after-secs", "0"]);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(open(srv.addr, TOKEN).await.expect("within the quota"));
    }
    let st = open(srv.addr, TOKEN).await.map(drop).expect_err("past the quota");
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("quota"), "{}", st.message());
    // The other token is not locked out.
    let other = open(srv.addr, OTHER_TOKEN).await.expect("another token still gets a session");
    // Abandoned sessions (no stream holds them) make room for their own
    // token's new ones instead of blocking it until they idle out.
    drop(held);
    for _ in 0..6 {
        let s = cloud::eventually(100, || async { open(srv.addr, TOKEN).await.ok() }).await;
        drop(s);
    }
    drop(other);
    let m = srv.metrics();
    assert!(m.lines().any(|l| l.starts_with("ouro_evictions_total{reason=\"token quota\"}")), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_operator_token() {
    let srv = server(&[]);
    let _s = open(srv.addr, TOKEN).await.expect("a session");
    // No credentials (what a cross-origin form post sends), a client token, a wrong one.
    for token in [None, Some(TOKEN), Some("nope")] {
        let (status, body) = srv.admin("/admin/evict-idle", token);
        assert_eq!(status, 401, "{token:?}: {body}");
        let (status, _) = srv.admin("/admin/evict/whatever", token);
        assert_eq!(status, 401, "{token:?}");
    }
    assert!(srv.metrics().contains("ouro_sessions_opened_total"), "/metrics stays open on loopback");
    let (status, body) = srv.admin("/admin/evict-idle", Some(ADMIN_TOKEN));
    assert_eq!(status, 200, "{body}");
    let (status, _) = srv.admin("/admin/evict/not-a-session", Some(ADMIN_TOKEN));
    assert_eq!(status, 404);
}

#[test]
fn insecure_dev_refuses_every_listener_off_loopback() {
    for (flag, addr) in [("--listen", "0.0.0.0:0"), ("--quic-listen", "0.0.0.0:0"), ("--metrics-listen", "0.0.0.0:0")] {
        let mut cmd = Command::new(ouro_tests::cloud::bin_path("ouro-cloud"));
        cmd.args(["serve", "--insecure-dev", "--tokens", "t", "--model"]).arg(model_path("smollm2-135m"));
        if flag != "--listen" {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if flag != "--metrics-listen" {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        let out = cmd.args([flag, addr]).stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {addr} was accepted");
        assert!(stderr.contains(flag) && stderr.contains("loopback"), "{flag}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_size_limits_are_refused_and_the_server_carries_on() {
    let srv = server(&["--max-prompt-tokens", "8", "--max-message-bytes", "4096"]);
    let mut c = connect(srv.addr, Some(TOKEN)).await;
    let h = c.info(v1::InfoRequest {}).await.unwrap().into_inner().tokenizer_hash;
    let long = vec![28u32; 9];
    let st =
        SessionStream::open(&mut c, v1::Open { tokenizer_hash: h.clone(), prompt: long.clone(), ..Default::default() })
            .await
            .map(drop)
            .expect_err("a prompt past the cap");
    assert_eq!(st.code(), Code::OutOfRange, "{st:?}");
    assert!(st.message().contains("--max-prompt-tokens"), "{}", st.message());
    let st = generate(&mut c, &long, 4, &STOP).await.unwrap_err();
    assert_eq!(st.code(), Code::OutOfRange, "{st:?}");
    // A message past the byte cap is refused before it is decoded.
    let huge = vec![28u32; 4000];
    let st = SessionStream::open(&mut c, v1::Open { tokenizer_hash: h.clone(), prompt: huge, ..Default::default() })
        .await
        .map(drop)
        .expect_err("a message past the byte cap");
    assert_ne!(st.code(), Code::Ok);
    // Within the limits all is well.
    let out = generate(&mut c, &[28, 29, 30], 4, &STOP).await.expect("a small request");
    assert!(!out.is_empty());
    let _s = SessionStream::open(&mut c, v1::Open { tokenizer_hash: h, prompt: vec![28, 29], ..Default::default() })
        .await
        .expect("a small session");
}
