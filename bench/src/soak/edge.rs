//! The `edge` scenario: concurrent HTTP clients sending greedy chat
//! completions to one `ouro-edge serve` running its drafter alone (no
//! cloud), with the daemon's own admission limits.
//!
//! Each client loops over the prompts. A 200 must carry the text a solo
//! request got for that prompt before the load; a refusal must be a 429
//! with `Retry-After`, arrive at once, and is honoured (the client waits
//! that long, as a well-behaved client would). Anything else is a failure.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cloud::stop_rule;
use super::http::{post_json, Response};
use super::prompts::Prompt;
use super::rss::Watched;
use super::tally::Tally;
use super::{drive, io, Cores, Outcome, SoakArgs, SoakError, Stop};
use crate::process::{pin, sibling_bin, spawn_ready};

const PROCESS: &str = "ouro-edge";
const PATH: &str = "/v1/chat/completions";
/// A refused client waits what `Retry-After` says, but never longer than
/// this: the run must end near its deadline.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A running `ouro-edge serve`, killed on drop.
struct EdgeProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Shared {
    addr: SocketAddr,
    bodies: Vec<String>,
    references: Vec<String>,
    prompts: Vec<Prompt>,
    timeout: Duration,
    stop: Stop,
    tally: Arc<Tally>,
}

pub(crate) fn run(
    args: &SoakArgs,
    cores: &Cores,
    rt: &tokio::runtime::Runtime,
    prompts: &[Prompt],
    model: &Path,
    out: &Path,
) -> Result<Outcome, SoakError> {
    let log = out.join("ouro-edge.log");
    let stderr = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
    let mut cmd = Command::new(sibling_bin("ouro-edge")?);
    cmd.args(["--threads", &cores.server_threads().to_string(), "serve", "--listen", "127.0.0.1:0", "--model"])
        .arg(model)
        .args(args.edge_max_queue.map(|q| ["--max-queue".to_string(), q.to_string()]).into_iter().flatten())
        // The drafter alone, whatever the environment says.
        .env_remove("OURO_CLOUD")
        .env_remove("OURO_EDGE_CONFIG")
        .stderr(Stdio::from(stderr));
    pin(&mut cmd, &cores.server);
    let (child, ready) = spawn_ready(cmd)?;
    let edge = EdgeProcess { addr: ready.listen, child };
    let max_tokens = args.max_tokens();
    let bodies: Vec<String> = prompts
        .iter()
        .map(|p| {
            json!({
                "model": "ouro",
                "messages": [{"role": "user", "content": p.question}],
                "max_tokens": max_tokens,
                "temperature": 0,
            })
            .to_string()
        })
        .collect();

    // The reference of every prompt: one request at a time, before any load.
    let references = rt.block_on(async {
        let mut refs = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let r = post_json(edge.addr, PATH, body)
                .await
                .map_err(|e| SoakError::Setup(format!("the solo request for prompt {i}: {e}")))?;
            match (r.status, content(&r)) {
                (200, Some(text)) => refs.push(text),
                _ => {
                    return Err(SoakError::Setup(format!(
                        "the solo request for prompt {i} got {}: {}",
                        r.status,
                        excerpt(&r.body)
                    )))
                }
            }
        }
        Ok(refs)
    })?;

    let setup = vec![
        (
            "server".to_string(),
            format!("ouro-edge serve, drafter alone (no cloud), {} (log: {})", args.model, log.display()),
        ),
        (
            "edge limits".to_string(),
            match args.edge_max_queue {
                Some(q) => format!("default --max-concurrent 4, --max-queue {q}"),
                None => "defaults: --max-concurrent 4, --max-queue 64".to_string(),
            },
        ),
        ("load".to_string(), format!("{} HTTP clients, a new connection per request", args.clients)),
        (
            "requests".to_string(),
            format!(
                "POST {PATH}, {} Spec-Bench questions (≤ {} prompt tokens) in turn, max_tokens {max_tokens}, temperature 0; after a 429 a client waits its Retry-After (≤ {} s)",
                prompts.len(),
                args.max_prompt_tokens,
                MAX_RETRY_AFTER.as_secs()
            ),
        ),
        ("duration".to_string(), stop_rule(args)),
    ];

    let start = Instant::now();
    let tally = Arc::new(Tally::new(start, Duration::from_secs_f64(args.refusal_max_ms / 1e3)));
    let shared = Arc::new(Shared {
        addr: edge.addr,
        bodies,
        references,
        prompts: prompts.to_vec(),
        timeout: Duration::from_secs_f64(args.request_timeout),
        stop: Stop::new(start, args),
        tally: tally.clone(),
    });
    let watched = vec![Watched { name: PROCESS.into(), pid: edge.child.id() }];
    let tasks: Vec<_> = (0..args.clients).map(|i| client(i, shared.clone())).collect();
    let (load_s, samples, stalls, listen) = drive(rt, watched, start, tally.clone(), tasks);
    drop(edge);
    Ok(Outcome { setup, processes: vec![PROCESS.into()], counts: tally.snapshot(), load_s, samples, stalls, listen })
}

/// The assistant's text of a chat completion.
fn content(r: &Response) -> Option<String> {
    let v: Value = serde_json::from_str(&r.body).ok()?;
    v["choices"][0]["message"]["content"].as_str().map(str::to_string)
}

fn completion_tokens(r: &Response) -> usize {
    serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["usage"]["completion_tokens"].as_u64()).unwrap_or(0)
        as usize
}

fn excerpt(body: &str) -> String {
    body.chars().take(200).collect()
}

async fn client(i: usize, s: Arc<Shared>) {
    let mut k = 0usize;
    while s.stop.next() {
        let p = (i + k) % s.prompts.len();
        k += 1;
        let t0 = Instant::now();
        let r = match tokio::time::timeout(s.timeout, post_json(s.addr, PATH, &s.bodies[p])).await {
            Err(_) => {
                s.tally.failed("timeout", format!("prompt {p} after {:?}", s.timeout));
                continue;
            }
            Ok(Err(e)) => {
                s.tally.failed("connection", e);
                continue;
            }
            Ok(Ok(r)) => r,
        };
        let latency = t0.elapsed();
        match r.status {
            200 => match content(&r) {
                Some(text) => {
                    let reference = &s.references[p];
                    let mismatch = (text != *reference)
                        .then(|| format!("prompt {p} ({}): {text:?}, solo {reference:?}", s.prompts[p].category));
                    s.tally.finished(latency, completion_tokens(&r), mismatch);
                }
                None => s.tally.failed("200 without a message", excerpt(&r.body)),
            },
            429 => {
                s.tally.refused("429", latency);
                match r.header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
                    Some(secs) => tokio::time::sleep(Duration::from_secs(secs).min(MAX_RETRY_AFTER)).await,
                    None => {
                        s.tally.failed("429 without Retry-After", excerpt(&r.body));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            status => s.tally.failed(&format!("HTTP {status}"), excerpt(&r.body)),
        }
    }
}
