//! `ouro-edge serve` and `generate` options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ouro_edge::link::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Grpc,
    Quic,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Grpc => "gRPC",
            Transport::Quic => "QUIC",
        })
    }
}

/// What to do when the cloud is unreachable or lost mid-generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fallback {
    /// Carry on with the drafter alone, and say so in the response.
    Local,
    /// End the request with an error.
    Fail,
    /// Retry the cloud with backoff until it answers (up to --wait-secs).
    Wait,
}

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
    #[command(flatten)]
    pub link: LinkArgs,
}

/// The cloud link and how generation uses it (shared by `serve` and `generate`).
#[derive(Args, Debug, Clone)]
pub struct LinkArgs {
    /// The cloud verifier, host:port (none: drafter alone). For QUIC, its UDP port.
    #[arg(long, env = "OURO_CLOUD")]
    pub cloud: Option<String>,
    /// Transport to the cloud.
    #[arg(long, env = "OURO_TRANSPORT", value_enum, default_value_t = Transport::Grpc)]
    pub transport: Transport,
    /// CA certificate (PEM) the cloud's certificate must chain to; or the cloud's own certificate.
    #[arg(long, env = "OURO_CA")]
    pub ca: Option<PathBuf>,
    /// Name the cloud's certificate must carry.
    #[arg(long, env = "OURO_CLOUD_NAME", default_value = "localhost")]
    pub server_name: String,
    /// Talk to the cloud without TLS (gRPC) or without checking its certificate (QUIC). Loopback development only.
    #[arg(long, env = "OURO_INSECURE_DEV")]
    pub insecure_dev: bool,
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
    /// Drafting: `ouroboros` (phrase pool, adaptive controller) or `chainN` (fixed γ = N).
    #[arg(long, env = "OURO_DRAFT", default_value = "ouroboros")]
    pub draft: String,
    /// What the adaptive controller maximises: committed tokens per second
    /// (`latency`) or per unit of verifier compute (`compute`).
    #[arg(long, env = "OURO_OBJECTIVE", value_enum, default_value_t = ObjectiveArg::Latency)]
    pub objective: ObjectiveArg,
    /// Wait for each verdict before drafting again, instead of drafting the
    /// next round while the verdict is in flight.
    #[arg(long, env = "OURO_NO_PIPELINE")]
    pub no_pipeline: bool,
    /// While running on the drafter alone, retry the cloud this often (ms);
    /// when it answers, speculation resumes mid-generation.
    #[arg(long, env = "OURO_REPROBE_MS", default_value_t = 2000)]
    pub reprobe_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    Latency,
    Compute,
}

impl LinkArgs {
    pub fn plan(&self) -> anyhow::Result<Plan> {
        Ok(match self.draft.as_str() {
            "ouroboros" if self.objective == ObjectiveArg::Compute => Plan::OuroborosCompute,
            "ouroboros" => Plan::Ouroboros,
            s => match s.strip_prefix("chain").and_then(|g| g.parse().ok()) {
                Some(g) if g > 0 => Plan::Chain(g),
                _ => anyhow::bail!("--draft must be `ouroboros` or `chainN`, not `{s}`"),
            },
        })
    }
}

impl LinkArgs {
    pub fn backend_options(&self) -> anyhow::Result<super::backend::BackendOptions> {
        Ok(super::backend::BackendOptions {
            fallback: self.fallback,
            plan: self.plan()?,
            pool_file: self.pool_file.clone(),
            pipeline: !self.no_pipeline,
            reprobe: std::time::Duration::from_millis(self.reprobe_ms),
        })
    }
}
