//! `ouro-edge serve` and `generate` options.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use ouro_common::engine::DEFAULT_DRAFT_WINDOW;
use ouro_common::spec::{strategy, DraftStrategy};
use ouro_config::vocab::DraftVocabArgs;
use ouro_edge::engine::BackendOptions;
use ouro_edge::link::TransportKind;

pub use ouro_edge::engine::Fallback;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// TOML file of options (keys are the long flag names); flags and environment win.
    #[arg(long, env = "OURO_EDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The drafter: a pinned model name or a GGUF path.
    #[arg(long, env = "OURO_MODEL", default_value = "qwen2.5-coder-0.5b")]
    pub model: String,
    /// Address of the local OpenAI-compatible API.
    #[arg(long, env = "OURO_EDGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// API key clients must send as `Authorization: Bearer <key>` (every route
    /// but `/health`); none by default. Prefer --api-key-file: flags show in `ps`.
    #[arg(long, env = "OURO_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File holding the API key (one line).
    #[arg(long, env = "OURO_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Host names the API answers for (the `Host` header, without its port),
    /// comma-separated; `*` allows any. Others get 403, which keeps web pages
    /// that rebind their domain to this machine out.
    #[arg(long, env = "OURO_ALLOWED_HOSTS", value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    pub allowed_hosts: Vec<String>,
    /// Generations running at once; each has its own thread.
    #[arg(long, env = "OURO_MAX_CONCURRENT", default_value_t = ouro_edge::api::DEFAULT_MAX_CONCURRENT)]
    pub max_concurrent: usize,
    /// Requests waiting for a generation slot; more get 429 with `Retry-After`.
    #[arg(long, env = "OURO_MAX_QUEUE", default_value_t = ouro_edge::api::DEFAULT_MAX_QUEUE)]
    pub max_queue: usize,
    /// Largest request body, bytes; larger get 413.
    #[arg(long, env = "OURO_MAX_BODY_BYTES", default_value_t = ouro_edge::api::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    #[command(flatten)]
    pub link: LinkArgs,
}

impl ServeArgs {
    pub fn api_config(&self) -> anyhow::Result<ouro_edge::api::ApiConfig> {
        let mut api_keys: Vec<String> = self.api_key.iter().map(|k| k.trim().to_string()).collect();
        if let Some(f) = &self.api_key_file {
            let key = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            api_keys.push(key.trim().to_string());
        }
        if api_keys.iter().any(String::is_empty) {
            anyhow::bail!("an empty API key would accept anyone: give a key or none");
        }
        if !self.listen.ip().is_loopback() && api_keys.is_empty() {
            tracing::warn!("the API listens on {} without an API key (--api-key-file)", self.listen);
        }
        Ok(ouro_edge::api::ApiConfig {
            api_keys,
            allowed_hosts: self.allowed_hosts.iter().map(|h| h.trim().to_string()).collect(),
            max_concurrent: self.max_concurrent.max(1),
            max_queue: self.max_queue,
            max_body_bytes: self.max_body_bytes,
        })
    }
}

/// The cloud link and how generation uses it (shared by `serve` and `generate`).
#[derive(Args, Debug, Clone)]
pub struct LinkArgs {
    /// The cloud verifier, host:port (none: drafter alone). For QUIC, its UDP
    /// port. Several replicas without a proxy: comma-separated, or a name
    /// with several addresses (a headless Service); see --affinity-key.
    #[arg(long, env = "OURO_CLOUD")]
    pub cloud: Option<String>,
    /// Transport to the cloud.
    #[arg(long, env = "OURO_TRANSPORT", value_enum, default_value_t = TransportKind::default())]
    pub transport: TransportKind,
    /// CA certificate (PEM) the cloud's certificate must chain to; or the cloud's own certificate.
    #[arg(long, env = "OURO_CA")]
    pub ca: Option<PathBuf>,
    /// Name the cloud's certificate must carry.
    #[arg(long, env = "OURO_CLOUD_NAME", default_value = "localhost")]
    pub server_name: String,
    /// Talk to the cloud without TLS (gRPC) or without checking its certificate
    /// (QUIC). Loopback development only: refused when --cloud is not a
    /// loopback address.
    #[arg(long, env = "OURO_INSECURE_DEV")]
    pub insecure_dev: bool,
    /// Affinity key sent on every call (gRPC metadata `x-ouro-affinity`): a
    /// proxy in front of several verifier replicas hashes on it, and over
    /// QUIC, or with several `--cloud` addresses, the client picks a replica
    /// by it. Set, it keeps all of this device's sessions on one replica
    /// (e.g. a device id); unset, each generation gets a fresh random key,
    /// kept for its re-opens.
    #[arg(long, env = "OURO_AFFINITY_KEY")]
    pub affinity_key: Option<String>,
    /// Bearer token for the cloud.
    #[arg(long, env = "OURO_CLOUD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "OURO_CLOUD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// When the cloud is unreachable or lost.
    #[arg(long, env = "OURO_FALLBACK", value_enum, default_value_t = Fallback::Local)]
    pub fallback: Fallback,
    /// How long `--fallback wait` keeps retrying, seconds.
    #[arg(long, env = "OURO_WAIT_SECS", default_value_t = 60)]
    pub wait_secs: u64,
    /// Ouroboros' phrase pool on disk: loaded at start if present, saved after
    /// each request, so a device's phrases survive restarts (warm start).
    #[arg(long, env = "OURO_POOL_FILE")]
    pub pool_file: Option<PathBuf>,
    /// Drafting strategy: `ouroboros` (phrase pool, adaptive controller),
    /// `chainN` (fixed γ = N), `heuristic`, `hybrid` (pool phrases first,
    /// the drafter where the pool has nothing) or `pool` (no drafter model).
    /// `ouroboros`, `hybrid` and `pool` also copy the text's earlier tokens
    /// where it repeats itself (prompt lookup); `-nocopy` turns that off.
    #[arg(long, env = "OURO_DRAFT", default_value = "ouroboros")]
    pub draft: String,
    #[command(flatten)]
    pub vocab: DraftVocabArgs,
    /// What the adaptive controller maximises: committed tokens per second
    /// (`latency`) or per unit of verifier compute (`compute`).
    #[arg(long, env = "OURO_OBJECTIVE", value_enum, default_value_t = ObjectiveArg::Latency)]
    pub objective: ObjectiveArg,
    /// Wait for each verdict before drafting again, instead of drafting the
    /// next rounds while the verdict is in flight and sending them ahead of
    /// it (greedy requests stack several; sampled ones keep one in flight, so
    /// a seed's text does not depend on timing).
    #[arg(long, env = "OURO_NO_PIPELINE")]
    pub no_pipeline: bool,
    /// Never let the cloud decode on its own. By default a greedy request
    /// under the latency objective lets it: once a verdict is out and no
    /// round is in hand, the cloud decodes alone (one pass a token, as
    /// target-only decoding does) instead of idling for the round trip the
    /// next round takes, and checks that round against what it decoded.
    /// Sampled requests and `--objective compute` never let it.
    #[arg(long, env = "OURO_NO_RUN_ON")]
    pub no_run_on: bool,
    /// The drafter reads at most this many of the prompt's last tokens (0:
    /// all of it): a long prompt's prefill on the device is cut to this,
    /// while the phrase pool and copies still see the whole text. Output is
    /// unchanged (the cloud verifies over the whole context).
    #[arg(long, env = "OURO_DRAFT_WINDOW", default_value_t = DEFAULT_DRAFT_WINDOW)]
    pub draft_window: usize,
    /// While running on the drafter alone, retry the cloud this often (ms);
    /// when it answers, speculation resumes mid-generation. The daemon also
    /// probes this often while idle, so `/health` stays true.
    #[arg(long, env = "OURO_REPROBE_MS", default_value_t = 2000)]
    pub reprobe_ms: u64,
    /// How long a request waits for a cloud at capacity (RESOURCE_EXHAUSTED)
    /// before the client gets 503 with `Retry-After`, seconds. A busy cloud is
    /// back-pressure, not an outage: it never triggers the local fallback.
    #[arg(long, env = "OURO_BUSY_WAIT_SECS", default_value_t = 10)]
    pub busy_wait_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    Latency,
    Compute,
}

impl LinkArgs {
    pub fn strategy(&self) -> anyhow::Result<Arc<dyn DraftStrategy>> {
        // `--objective compute` picks Ouroboros' other objective; the name
        // table knows it as `ouroboros-compute`.
        let name = match self.draft.as_str() {
            "ouroboros" if self.objective == ObjectiveArg::Compute => "ouroboros-compute",
            "ouroboros-nocopy" if self.objective == ObjectiveArg::Compute => "ouroboros-compute-nocopy",
            s => s,
        };
        strategy::parse(name).map_err(|e| anyhow::anyhow!("--draft: {e}"))
    }
}

impl LinkArgs {
    /// The engine's options; `workers` generations may run at once.
    pub fn backend_options(&self, workers: usize) -> anyhow::Result<BackendOptions> {
        Ok(BackendOptions {
            fallback: self.fallback,
            strategy: self.strategy()?,
            pool_file: self.pool_file.clone(),
            pipeline: !self.no_pipeline,
            run_on: !self.no_run_on,
            draft_window: self.draft_window,
            reprobe: std::time::Duration::from_millis(self.reprobe_ms),
            busy_wait: std::time::Duration::from_secs(self.busy_wait_secs),
            workers,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        link: LinkArgs,
    }

    #[test]
    fn the_compute_objective_picks_ouroboros_compute_with_or_without_copies() {
        let cases = [
            ("ouroboros", "ouroboros-compute"),
            ("ouroboros-nocopy", "ouroboros-compute-nocopy"),
            ("hybrid", "hybrid"),
        ];
        for (draft, want) in cases {
            let cli = Cli::try_parse_from(["ouro-edge", "--draft", draft, "--objective", "compute"]).unwrap();
            assert_eq!(cli.link.strategy().unwrap().name(), want, "--draft {draft}");
        }
    }

    #[test]
    fn the_cloud_runs_on_unless_told_not_to() {
        let run_on = |args: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("ouro-edge").chain(args.iter().copied())).unwrap();
            cli.link.backend_options(1).unwrap().run_on
        };
        assert!(run_on(&[]));
        assert!(!run_on(&["--no-run-on"]));
    }
}
