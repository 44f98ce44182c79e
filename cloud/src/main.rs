//! `ouro-cloud`: the verifier side of ouro.
//!
//! - [`service`]: the gRPC `Verifier` service (sessions, `Generate`, handshake);
//! - [`run_on`]: what a session decodes alone between rounds, and its own drafts meanwhile;
//! - [`batcher`]: the compute thread that batches rounds across sessions;
//! - [`sessions`]: KV caches per session, memory budget, expiry, ownership;
//! - [`quic`]: the same service over QUIC (quinn), length-delimited frames;
//! - [`admin`]: the operator port, `/metrics` and the `/admin` endpoints;
//! - [`auth`], [`telemetry`], [`config`]: tokens, metric names and recording, options.

mod admin;
mod auth;
mod batcher;
mod config;
mod quic;
mod run_on;
mod service;
mod sessions;
mod telemetry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{CausalLm, LogitsRows, Transformer};
use ouro_common::tokenizer::Tokenizer;
use ouro_common::tree::TreeLimits;
use ouro_config::models;
use ouro_proto::v1::verifier_server::VerifierServer;
use ouro_proto::v1::{CostPoint, ModelInfo, SamplingSupport};
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::auth::TokenSet;
use crate::batcher::{BatchConfig, Batcher};
use crate::config::ServeArgs;
use crate::service::{MemoryCosts, RequestLimits, Shared, VerifierService};
use crate::sessions::{SessionLimits, SessionTable};

/// ouro's cloud verifier: checks the edge's draft trees against the large model.
#[derive(Parser)]
#[command(name = "ouro-cloud", version, about, long_about = None)]
struct Cli {
    /// Compute threads (sets RAYON_NUM_THREADS for the model runtime).
    #[arg(long, global = true, env = "OURO_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the handshake model info (architecture, tokenizer identity, limits) as JSON.
    Info {
        /// A pinned model name or a GGUF path.
        #[arg(long, env = "OURO_VERIFIER_MODEL", default_value = "qwen2.5-coder-1.5b")]
        model: String,
    },
    /// Serve the Verifier gRPC service (sessions, batched verification, Generate).
    Serve(Box<ServeArgs>),
}

struct Loaded {
    model: Transformer,
    tokenizer: Tokenizer,
    name: String,
}

fn load(name: &str, max_context: Option<usize>, requantize: bool) -> anyhow::Result<Loaded> {
    let path = models::resolve(name)?;
    let mut opts = LoadOptions { requantize_kquants: requantize, ..LoadOptions::default() };
    if max_context.is_some() {
        opts.max_context = max_context;
    }
    let (model, ct) = gguf::load(&path, &opts).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&ct)?;
    Ok(Loaded { model, tokenizer, name: name.to_string() })
}

fn model_info(l: &Loaded, limits: &TreeLimits, max_top_k: usize, cost: Vec<CostPoint>) -> ModelInfo {
    let cfg = l.model.config();
    ModelInfo {
        model_id: l.name.clone(),
        architecture: cfg.arch.as_str().to_string(),
        tokenizer_hash: l.tokenizer.info().identity.clone(),
        vocab_size: cfg.vocab_size as u32,
        max_context: cfg.max_context as u32,
        max_tree_nodes: limits.max_nodes as u32,
        max_tree_depth: limits.max_depth as u32,
        sampling: Some(SamplingSupport {
            greedy: true,
            temperature: true,
            top_k: true,
            top_p: true,
            seed: true,
            max_draft_top_k: max_top_k as u32,
        }),
        verify_cost: cost,
        protocol_version: ouro_proto::PROTOCOL_VERSION,
    }
}

/// Measures c(k): one forward pass over k new tokens after a short prefix,
/// best of three, with logits for every row as verification needs.
fn measure_cost(model: &dyn CausalLm, points: &[usize]) -> anyhow::Result<Vec<CostPoint>> {
    let vocab = model.config().vocab_size as u32;
    let prefix: Vec<u32> = (0..64u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let mut cache = model.new_cache();
    model.forward_causal(&mut cache, &prefix, LogitsRows::None)?;
    let mut out = Vec::new();
    for &k in points {
        if k == 0 || prefix.len() + k >= model.config().max_context {
            continue;
        }
        let tokens: Vec<u32> = (0..k as u32).map(|i| (i * 104_729 + 7) % vocab).collect();
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            model.forward_causal(&mut cache, &tokens, LogitsRows::All)?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            cache.truncate(prefix.len());
        }
        out.push(CostPoint { tokens: k as u32, ms: best as f32 });
    }
    Ok(out)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let tokens = TokenSet::load(args.tokens_file.as_deref(), &args.tokens)?;
    let mut pem = None;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let cert = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            pem = Some(quic::TlsMaterial { cert_pem: cert.clone(), key_pem: key.clone() });
            Some(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
        }
        _ if args.insecure_dev => {
            for (flag, addr) in args.listeners() {
                if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                    bail!("--insecure-dev is for loopback only and is refused with {flag} {addr}");
                }
            }
            None
        }
        _ => bail!("TLS needs --tls-cert and --tls-key (or --insecure-dev on a loopback address)"),
    };
    let operators = auth::read_tokens(args.admin_tokens_file.as_deref(), &args.admin_tokens)?;
    let operators = (!operators.is_empty()).then(|| TokenSet::load(None, &operators)).transpose()?;
    if !args.metrics_listen.ip().is_loopback() {
        tracing::warn!("metrics on {} are plain HTTP and reachable off this machine", args.metrics_listen);
    }
    let limits = TreeLimits { max_nodes: args.max_tree_nodes, max_depth: args.max_tree_depth };
    let t = Instant::now();
    let loaded = load(&args.model, args.max_context, args.requantize)?;
    tracing::info!("loaded {} in {:.1}s", args.model, t.elapsed().as_secs_f64());
    let cost = measure_cost(&loaded.model, &args.cost_probe)?;
    tracing::info!("verify cost c(k) ms: {:?}", cost.iter().map(|c| (c.tokens, c.ms)).collect::<Vec<_>>());
    let info = model_info(&loaded, &limits, args.max_draft_top_k, cost);
    let stop_ids = loaded.tokenizer.info().stop_ids.clone();
    let memory = MemoryCosts { config: loaded.model.config().clone(), prefill_chunk: args.prefill_chunk.max(1) };
    let max_prompt_tokens = args.max_prompt_tokens.unwrap_or(usize::MAX);
    // One model for the life of the process; sessions borrow it.
    let model: &'static Transformer = Box::leak(Box::new(loaded.model));
    let batcher = Batcher::start(
        model,
        limits,
        BatchConfig {
            window: Duration::from_secs_f64(args.batch_window_ms.max(0.0) / 1e3),
            max_batch: args.max_batch.max(1),
            max_queue: args.max_queue.max(1),
            prefill_chunk: args.prefill_chunk.max(1),
        },
    );
    let sessions = SessionTable::new(SessionLimits {
        max_sessions: args.max_sessions,
        max_per_owner: args.max_sessions_per_token.unwrap_or(args.max_sessions / 2).max(1),
        memory_budget_bytes: args.memory_budget_mb.saturating_mul(1 << 20),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        reclaim_after: Duration::from_secs(args.reclaim_after_secs),
    });
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut shared = Shared::new(
        info,
        stop_ids,
        batcher,
        sessions,
        drain_rx,
        RequestLimits { max_draft_top_k: args.max_draft_top_k, max_prompt_tokens, memory },
    );
    shared.run_on_drafts = !args.no_run_on_drafts;
    let shared = Arc::new(shared);

    let prometheus = telemetry::install()?;
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding {}", args.metrics_listen))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let admin_banner = if operators.is_some() { "; admin endpoints on (operator tokens)" } else { "" };
    tokio::spawn(admin::serve(metrics_listener, prometheus, shared.clone(), operators));

    let expiry = shared.clone();
    let period = Duration::from_secs(args.idle_timeout_secs.clamp(1, 20)) / 4;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let n = expiry.sessions.expire_idle();
            telemetry::evicted("idle timeout", n);
            telemetry::sessions_open(expiry.sessions.len());
        }
    });

    let listener = ouro_config::listen::tcp(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut ready = ouro_config::ready::Ready::new("ouro-cloud", addr);
    ready.metrics = Some(metrics_addr);
    // Transports beside gRPC, one line each: each binds here, serves from
    // its own task, and puts its address in the readiness line.
    ready.quic = quic::start(args.quic_listen, pem.as_ref(), &shared, &tokens)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<VerifierServer<VerifierService>>().await;
    if let Some(at) = args.health_listen {
        let listener = ouro_config::listen::tcp(at).with_context(|| format!("binding {at}"))?;
        ready.health = Some(listener.local_addr()?);
        // No shutdown of its own: during the drain it answers NOT_SERVING,
        // and it ends with the process.
        let probes = Server::builder()
            .add_service(health_service.clone())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(async move {
            if let Err(e) = probes.await {
                tracing::error!("the health port stopped: {e}");
            }
        });
    }
    let verifier = VerifierServer::new(VerifierService::new(shared.clone()))
        .max_decoding_message_size(args.max_message_bytes)
        .max_encoding_message_size(args.max_message_bytes);
    let verifier = InterceptedService::new(verifier, move |r| tokens.check(r));
    let mut builder = Server::builder();
    let transport = match tls {
        Some(tls) => {
            builder = builder.tls_config(tls)?;
            "TLS"
        }
        None => {
            eprintln!("WARNING: ouro-cloud is serving WITHOUT TLS (--insecure-dev); tokens and text cross {addr} in the clear. Development only.");
            tracing::warn!("serving without TLS on {addr}");
            "plaintext (insecure-dev)"
        }
    };
    // For people; processes read the readiness line after it.
    let also: String = ready.also_serving().map(|(name, a)| format!("; {name} on {a}")).collect();
    println!(
        "ouro-cloud listening on {addr} ({transport}); metrics on {}{also}{admin_banner}",
        telemetry::describe(metrics_addr)
    );
    ready.announce()?;

    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let signal = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: refusing new sessions, finishing rounds in flight");
        let _ = drain_tx.send(true);
        health.set_not_serving::<VerifierServer<VerifierService>>().await;
    };
    let server = builder
        .add_service(health_service)
        .add_service(verifier)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), signal);
    tokio::pin!(server);
    // Stop waiting for stragglers `grace` after the signal, not before.
    let mut draining = shared.draining.clone();
    tokio::select! {
        r = &mut server => r?,
        _ = async {
            let _ = draining.wait_for(|d| *d).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("shutdown grace of {grace:?} expired; closing the remaining streams"),
    }
    println!("ouro-cloud stopped");
    Ok(())
}

/// `OURO_LOG` (as documented), else `RUST_LOG`, else `info`.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("OURO_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| "info".into())
}

fn main() -> anyhow::Result<()> {
    ouro_config::memory::keep_freed_buffers();
    let cli: Cli = ouro_config::file::parse(&["serve"])?;
    if let Some(n) = cli.threads {
        // Read by rayon's global pool when it starts; nothing has started yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    tracing_subscriber::fmt().with_env_filter(log_filter()).with_writer(std::io::stderr).init();
    match cli.command {
        Command::Info { model } => {
            let loaded = load(&model, None, false)?;
            let limits = TreeLimits { max_nodes: 64, max_depth: 32 };
            let info = model_info(&loaded, &limits, 64, Vec::new());
            let json = serde_json::json!({
                "model_id": info.model_id,
                "architecture": info.architecture,
                "tokenizer_hash": info.tokenizer_hash,
                "vocab_size": info.vocab_size,
                "max_context": info.max_context,
                "encoded_bytes": prost::Message::encoded_len(&info),
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Command::Serve(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(serve(*args))?;
        }
    }
    Ok(())
}
