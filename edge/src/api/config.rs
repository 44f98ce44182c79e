//! What the operator decides about the API: who may call it, how many
//! generations run at once, how large a request may be.

/// Access and admission settings of [`router_with`](super::router_with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Accepted `Authorization: Bearer` keys; empty means no key is needed.
    /// `GET /health` never needs one, so a supervisor can probe the daemon.
    pub api_keys: Vec<String>,
    /// Host names (as in the `Host` header, without the port) the API
    /// answers for; `*` allows any. Anything else is refused with 403, which
    /// keeps a web page that rebinds its own domain to 127.0.0.1 out.
    pub allowed_hosts: Vec<String>,
    /// Generations running at once (0 counts as 1).
    pub max_concurrent: usize,
    /// Requests waiting for a generation slot; one more is refused with 429.
    pub max_queue: usize,
    /// Largest request body read, in bytes; a larger one is refused with 413.
    pub max_body_bytes: usize,
}

/// The loopback names: what a local client (or the daemon's own tests)
/// sends as `Host` when the daemon listens on loopback.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
pub const DEFAULT_MAX_CONCURRENT: usize = 4;
pub const DEFAULT_MAX_QUEUE: usize = 64;
/// 1 MiB holds a full context's worth of text many times over.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            allowed_hosts: LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_queue: DEFAULT_MAX_QUEUE,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}
