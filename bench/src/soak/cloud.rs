//! The `cloud` scenario: concurrent speculative sessions against one
//! `ouro-cloud serve --insecure-dev`, drafts replayed from the target's own
//! greedy output so the load generator costs no model time.
//!
//! Each client holds one gRPC connection (as a device would) and loops:
//! open a session on the next prompt, replay rounds until the reference is
//! committed, close. Its text must equal what `Generate` returned for that
//! prompt before the load started. An open refused with RESOURCE_EXHAUSTED
//! is a refusal (timed, then retried after a pause); any other error is a
//! failure.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ouro_edge::link::{self, Code, LinkError, SessionStream, Status};
use ouro_proto::v1;

use super::prompts::Prompt;
use super::rss::Watched;
use super::tally::Tally;
use super::{drive, io, Cores, Outcome, SoakArgs, SoakError, Stop};
use crate::process::{pin, sibling_bin, CloudProcess};
use crate::replay::replay;

const PROCESS: &str = "ouro-cloud";
/// The one right refusal: the gRPC status of a server at capacity.
const REFUSAL: &str = "RESOURCE_EXHAUSTED";

/// What every client shares.
struct Shared {
    endpoint: String,
    tokens: Vec<String>,
    prompts: Vec<Prompt>,
    references: Vec<Vec<u32>>,
    info: v1::ModelInfo,
    gamma: usize,
    accept: f64,
    retry: Duration,
    timeout: Duration,
    stop: Stop,
    tally: Arc<Tally>,
}

/// How one generation ended, when it did not finish.
enum Ended {
    Refused(Duration),
    Failed(String, String),
}

fn status_failure(what: &str, s: &Status) -> Ended {
    Ended::Failed(format!("{what}: {:?}", s.code()), s.message().to_string())
}

pub(crate) fn run(
    args: &SoakArgs,
    cores: &Cores,
    rt: &tokio::runtime::Runtime,
    prompts: &[Prompt],
    model: &Path,
    out: &Path,
) -> Result<Outcome, SoakError> {
    let tokens: Vec<String> = (0..args.client_tokens).map(|i| format!("ouro-soak-{i}")).collect();
    let log = out.join("ouro-cloud.log");
    let stderr = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
    let mut cmd = Command::new(sibling_bin("ouro-cloud")?);
    cmd.args(["--threads", &cores.server_threads().to_string(), "serve", "--insecure-dev"])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--tokens", &tokens.join(",")])
        .args(args.cloud_max_sessions.map(|m| ["--max-sessions".to_string(), m.to_string()]).into_iter().flatten())
        .arg("--model")
        .arg(model)
        .env_remove("OURO_TOKENS")
        .env_remove("OURO_TOKENS_FILE")
        .stderr(Stdio::from(stderr));
    pin(&mut cmd, &cores.server);
    let cloud = CloudProcess::spawn(cmd)?;
    let endpoint = format!("http://{}", cloud.addr);
    let max_tokens = args.max_tokens();

    // The reference of every prompt, from the target alone, before any load.
    let (info, references) = rt
        .block_on(async {
            let mut c = link::connect(&endpoint, Some(&tokens[0]), None).await?;
            let info = c.info(v1::InfoRequest {}).await.map_err(LinkError::from)?.into_inner();
            let mut refs = Vec::new();
            for p in prompts {
                refs.push(link::generate(&mut c, &p.ids, max_tokens, &[]).await?);
            }
            Ok::<_, LinkError>((info, refs))
        })
        .map_err(|e| SoakError::Setup(format!("the references from Generate: {e}")))?;

    let clients = args.sessions + args.extra_sessions;
    let setup = vec![
        ("server".to_string(), format!("ouro-cloud serve --insecure-dev, {} (log: {})", info.model_id, log.display())),
        (
            "cloud limits".to_string(),
            match args.cloud_max_sessions {
                Some(m) => format!("--max-sessions {m}, per-token quota {} (half)", (m / 2).max(1)),
                None => "defaults: --max-sessions 64, per-token quota 32 (half)".to_string(),
            },
        ),
        (
            "load".to_string(),
            format!(
                "{} sessions + {} over the limit = {clients} clients, spread over {} bearer tokens ({} sessions per token at most), one gRPC connection each",
                args.sessions,
                args.extra_sessions,
                tokens.len(),
                clients.div_ceil(tokens.len())
            ),
        ),
        (
            "requests".to_string(),
            format!(
                "{} Spec-Bench prompts (≤ {} tokens) in turn, {max_tokens} new tokens each, drafts replayed from Generate's text (γ={}, each token right with p={}); refused opens retried after {} ms",
                prompts.len(),
                args.max_prompt_tokens,
                args.gamma,
                args.accept,
                args.retry_ms
            ),
        ),
        ("duration".to_string(), stop_rule(args)),
    ];

    let start = Instant::now();
    let tally = Arc::new(Tally::new(start, Duration::from_secs_f64(args.refusal_max_ms / 1e3)));
    let shared = Arc::new(Shared {
        endpoint,
        tokens,
        prompts: prompts.to_vec(),
        references,
        info,
        gamma: args.gamma,
        accept: args.accept,
        retry: Duration::from_millis(args.retry_ms),
        timeout: Duration::from_secs_f64(args.request_timeout),
        stop: Stop::new(start, args),
        tally: tally.clone(),
    });
    let watched = vec![Watched { name: PROCESS.into(), pid: cloud.pid() }];
    let tasks: Vec<_> = (0..clients).map(|i| client(i, shared.clone())).collect();
    let (load_s, samples, stalls, listen) = drive(rt, watched, start, tally.clone(), tasks);
    drop(cloud);
    Ok(Outcome { setup, processes: vec![PROCESS.into()], counts: tally.snapshot(), load_s, samples, stalls, listen })
}

pub(super) fn stop_rule(args: &SoakArgs) -> String {
    match args.requests {
        Some(n) => format!("{} s or {n} requests, whichever first; in-flight ones then finish", args.duration),
        None => format!("{} s; in-flight requests then finish", args.duration),
    }
}

async fn client(i: usize, s: Arc<Shared>) {
    let token = &s.tokens[i % s.tokens.len()];
    let mut conn = match link::connect(&s.endpoint, Some(token), None).await {
        Ok(c) => c,
        Err(e) => return s.tally.failed("connect", e),
    };
    let mut k = 0usize;
    while s.stop.next() {
        // Clients start at different prompts so every prompt is in flight at once.
        let p = (i + k) % s.prompts.len();
        let seed = ((i as u64) << 32) | k as u64;
        k += 1;
        let t0 = Instant::now();
        match tokio::time::timeout(s.timeout, generation(&mut conn, &s, p, seed)).await {
            Err(_) => s.tally.failed("timeout", format!("prompt {p} after {:?}", s.timeout)),
            Ok(Ok(tokens)) => {
                let reference = &s.references[p];
                let mismatch = (tokens != *reference).then(|| {
                    let at = tokens.iter().zip(reference).take_while(|(a, b)| a == b).count();
                    format!(
                        "prompt {p} ({}): {} tokens, reference {}; first difference at token {at}",
                        s.prompts[p].category,
                        tokens.len(),
                        reference.len()
                    )
                });
                s.tally.finished(t0.elapsed(), tokens.len(), mismatch);
            }
            Ok(Err(Ended::Refused(after))) => {
                s.tally.refused(REFUSAL, after);
                tokio::time::sleep(s.retry).await;
            }
            Ok(Err(Ended::Failed(kind, detail))) => s.tally.failed(&kind, detail),
        }
    }
}

/// One session: open, replay until the reference is committed, close.
async fn generation(conn: &mut link::Client, s: &Shared, p: usize, seed: u64) -> Result<Vec<u32>, Ended> {
    let t0 = Instant::now();
    let open = v1::Open {
        tokenizer_hash: s.info.tokenizer_hash.clone(),
        prompt: s.prompts[p].ids.clone(),
        ..Default::default()
    };
    let (mut stream, opened) = match SessionStream::open(conn, open).await {
        Ok(o) => o,
        Err(st) if st.code() == Code::ResourceExhausted => return Err(Ended::Refused(t0.elapsed())),
        Err(st) => return Err(status_failure("open", &st)),
    };
    let reference = &s.references[p];
    let run = replay(&mut stream, opened.committed_len as usize, reference, s.gamma, s.accept, s.info.vocab_size, seed)
        .await
        .map_err(|e| match e {
            // Mid-session, only a full verify queue refuses; timed from the
            // open, it shows as late unless it came at once.
            LinkError::Status(st) if st.code() == Code::ResourceExhausted => Ended::Refused(t0.elapsed()),
            LinkError::Status(st) => status_failure("round", &st),
            other => Ended::Failed("round".into(), other.to_string()),
        })?;
    let closed = stream.close().await;
    if closed.code() != Code::Ok {
        return Err(status_failure("close", &closed));
    }
    Ok(run.tokens)
}
