//! `ouro-cloud serve` options: flags, with environment fallbacks, with an
//! optional TOML file underneath (see [`ouro_config::file`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// TOML file of options: keys are the long flag names (`max-sessions = 32`).
    /// Flags and environment variables take precedence over it.
    #[arg(long, env = "OURO_CLOUD_CONFIG")]
    pub config: Option<PathBuf>,

    /// The verifier model: a pinned name (see `ouro-edge models`) or a GGUF path.
    #[arg(long, env = "OURO_VERIFIER_MODEL", default_value = "qwen2.5-coder-1.5b")]
    pub model: String,

    /// gRPC address. Port 0 picks a free port; the chosen address is printed.
    #[arg(long, env = "OURO_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// Address of the Prometheus `/metrics` endpoint (plain HTTP, its own port). With
    /// operator tokens it also serves `POST /admin/evict/{session}` and
    /// `POST /admin/evict-idle`, which need `authorization: Bearer <operator token>`.
    #[arg(long, env = "OURO_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,

    /// File of operator tokens, one per line, for the `/admin` endpoints on the
    /// metrics port. Keep them apart from client tokens. Without any, the admin
    /// endpoints are off.
    #[arg(long, env = "OURO_ADMIN_TOKENS_FILE")]
    pub admin_tokens_file: Option<PathBuf>,

    /// Operator tokens, comma-separated (prefer --admin-tokens-file: flags show in `ps`).
    #[arg(long, env = "OURO_ADMIN_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub admin_tokens: Vec<String>,

    /// Also serve the Verifier over QUIC on this UDP address (same TLS files; with
    /// --insecure-dev a throwaway self-signed certificate). Port 0 picks a free port.
    #[arg(long, env = "OURO_QUIC_LISTEN")]
    pub quic_listen: Option<SocketAddr>,

    /// Also serve `grpc.health.v1` alone, without TLS, on this TCP address:
    /// for probes that cannot speak TLS, such as Kubernetes' gRPC probes.
    /// It tells only whether the server is serving (`ouro.v1.Verifier` turns
    /// NOT_SERVING when a drain starts). Port 0 picks a free port.
    #[arg(long, env = "OURO_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,

    /// TLS certificate chain (PEM).
    #[arg(long, env = "OURO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "OURO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve without TLS (gRPC) and with a throwaway self-signed certificate
    /// (QUIC). Refused unless `--listen`, `--quic-listen`, `--metrics-listen`
    /// and `--health-listen` are all loopback addresses.
    #[arg(long, env = "OURO_INSECURE_DEV")]
    pub insecure_dev: bool,

    /// File of accepted bearer tokens, one per line (`#` starts a comment).
    #[arg(long, env = "OURO_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Accepted bearer tokens, comma-separated (prefer --tokens-file: flags show in `ps`).
    #[arg(long, env = "OURO_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub tokens: Vec<String>,

    /// Most sessions (speculative and `Generate`) open at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "OURO_MAX_SESSIONS", default_value_t = 64)]
    pub max_sessions: usize,

    /// Most sessions one client token may hold at once (default: half of
    /// --max-sessions), so one tenant cannot lock the others out.
    #[arg(long, env = "OURO_MAX_SESSIONS_PER_TOKEN")]
    pub max_sessions_per_token: Option<usize>,

    /// When the session table (or a token's quota) is full, a session that no
    /// stream holds and that has been idle this long is dropped to make room,
    /// seconds. Its client re-opens it from its committed tokens.
    #[arg(long, env = "OURO_RECLAIM_AFTER_SECS", default_value_t = 5)]
    pub reclaim_after_secs: u64,

    /// Longest prompt an Open or a Generate may carry, tokens (default: the
    /// served context length).
    #[arg(long, env = "OURO_MAX_PROMPT_TOKENS")]
    pub max_prompt_tokens: Option<usize>,

    /// Largest gRPC message accepted or sent, bytes (QUIC frames have the
    /// same cap, 4 MiB).
    #[arg(long, env = "OURO_MAX_MESSAGE_BYTES", default_value_t = ouro_proto::frame::MAX_FRAME)]
    pub max_message_bytes: usize,

    /// Most rounds waiting for the verifier; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "OURO_MAX_QUEUE", default_value_t = 256)]
    pub max_queue: usize,

    /// Memory budget over all sessions, MiB: their KV caches, the caches
    /// prefills are filling and the activations of passes in flight. Idle
    /// sessions are evicted least-recently-used first to stay under it; a new
    /// session that still does not fit gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "OURO_MEMORY_BUDGET_MB", default_value_t = 4096)]
    pub memory_budget_mb: usize,

    /// Sessions idle this long are dropped, seconds.
    #[arg(long, env = "OURO_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub idle_timeout_secs: u64,

    /// Longest a round waits for other sessions' rounds to share its forward pass, ms.
    #[arg(long, env = "OURO_BATCH_WINDOW_MS", default_value_t = 3.0)]
    pub batch_window_ms: f64,

    /// Prompt tokens per prefill pass. A long prompt is prefilled in chunks of
    /// this size, round-robin with other prompts, and other sessions' rounds
    /// run between chunks, so one long prompt cannot stall every tenant.
    #[arg(long, env = "OURO_PREFILL_CHUNK", default_value_t = 64)]
    pub prefill_chunk: usize,

    /// Most sessions in one forward pass.
    #[arg(long, env = "OURO_MAX_BATCH", default_value_t = 16)]
    pub max_batch: usize,

    /// Largest draft tree a round may carry, nodes.
    #[arg(long, env = "OURO_MAX_TREE_NODES", default_value_t = 64)]
    pub max_tree_nodes: usize,

    /// Deepest draft tree a round may carry.
    #[arg(long, env = "OURO_MAX_TREE_DEPTH", default_value_t = 32)]
    pub max_tree_depth: usize,

    /// Most (id, prob) pairs per sampled draft node.
    #[arg(long, env = "OURO_MAX_DRAFT_TOP_K", default_value_t = 64)]
    pub max_draft_top_k: usize,

    /// Re-encode the model's k-quant weights (Q4_K, Q6_K...) as Q8_0 at load: about
    /// 1.9x the memory and bandwidth per token for Q8_0's precision. Q4_K and Q6_K
    /// have kernels of their own, as fast per row, so this is rarely worth it.
    #[arg(long, env = "OURO_REQUANTIZE")]
    pub requantize: bool,

    /// Context length to serve (defaults to the model's, capped at 8192).
    #[arg(long, env = "OURO_MAX_CONTEXT")]
    pub max_context: Option<usize>,

    /// While a session runs on (decodes alone between rounds), decode one
    /// token a pass instead of verifying drafts of its own: copies of the
    /// session's earlier text and phrase-pool continuations, which commit
    /// several tokens a pass where the text repeats itself.
    #[arg(long, env = "OURO_NO_RUN_ON_DRAFTS")]
    pub no_run_on_drafts: bool,

    /// Tree sizes k at which the verify cost c(k) is measured at start-up.
    #[arg(long, env = "OURO_COST_PROBE", value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    pub cost_probe: Vec<usize>,

    /// On SIGTERM, how long in-flight rounds get to finish, seconds.
    #[arg(long, env = "OURO_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

impl ServeArgs {
    /// Every address the server listens on, by its flag: `--insecure-dev`
    /// refuses any that is not loopback.
    pub fn listeners(&self) -> [(&'static str, Option<SocketAddr>); 4] {
        [
            ("--listen", Some(self.listen)),
            ("--quic-listen", self.quic_listen),
            ("--metrics-listen", Some(self.metrics_listen)),
            ("--health-listen", self.health_listen),
        ]
    }
}
