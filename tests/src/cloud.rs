//! A real `ouro-cloud` process on loopback, and the edge's client for it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ouro_bench::process::{serve_flags, CloudProcess};
use ouro_edge::link::TransportKind;

pub use crate::bin_path;

pub use ouro_common::spec::SpecStats;
pub use ouro_edge::link::{generate, speculate, speculate_into, Client, QuicLink, SessionStream, SpecRequest, Trust};

/// A draft strategy by its CLI name.
pub fn strategy(name: &str) -> std::sync::Arc<dyn ouro_common::spec::DraftStrategy> {
    ouro_common::spec::strategy::parse(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The `extra` flags of [`CloudServer::start`] that serve every transport.
pub fn every_transport() -> Vec<&'static str> {
    TransportKind::all().iter().flat_map(|&k| serve_flags(k)).copied().collect()
}

/// The token every test server accepts; [`OTHER_TOKEN`] is a second client.
pub const TOKEN: &str = "test-token-alpha";
pub const OTHER_TOKEN: &str = "test-token-beta";
/// The operator token of every test server's `/admin` endpoints.
pub const ADMIN_TOKEN: &str = "test-operator-token";

/// A running `ouro-cloud serve` on loopback, killed on drop.
pub struct CloudServer {
    process: CloudProcess,
    _tokens: TempFile,
    _admin: TempFile,
}

impl std::ops::Deref for CloudServer {
    type Target = CloudProcess;
    fn deref(&self) -> &CloudProcess {
        &self.process
    }
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(kind: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "ouro-test-{kind}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl CloudServer {
    /// Starts a plaintext loopback server on `model` with extra flags.
    pub fn start(model: &Path, extra: &[&str]) -> Self {
        Self::start_with(model, extra, true)
    }

    /// Starts a server; `plaintext` adds `--insecure-dev` (else pass TLS flags in `extra`).
    pub fn start_with(model: &Path, extra: &[&str], plaintext: bool) -> Self {
        let tokens = TempFile::new("tokens", &format!("# test tokens\n{TOKEN}\n{OTHER_TOKEN}\n"));
        let admin = TempFile::new("admin", &format!("{ADMIN_TOKEN}\n"));
        let mut cmd = Command::new(bin_path("ouro-cloud"));
        cmd.args(["--threads", "1", "serve"])
            .args((!extra.contains(&"--listen")).then_some(["--listen", "127.0.0.1:0"]).into_iter().flatten())
            .args(plaintext.then_some("--insecure-dev"))
            .args(["--metrics-listen", "127.0.0.1:0", "--cost-probe", "1,4"])
            .arg("--model")
            .arg(model)
            .arg("--tokens-file")
            .arg(&tokens.0)
            .arg("--admin-tokens-file")
            .arg(&admin.0)
            .args(extra)
            .env_remove("OURO_TOKENS")
            .stderr(Stdio::null());
        let process = CloudProcess::spawn(cmd).expect("starting ouro-cloud");
        Self { process, _tokens: tokens, _admin: admin }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.process.terminate().expect("waiting for ouro-cloud")
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.process.metrics().expect("reading /metrics")
    }

    /// The sum of every sample of metric `name` across its labels (0 when
    /// it has none yet).
    pub fn metric_sum(&self, name: &str) -> f64 {
        (self.metrics().lines())
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum()
    }

    /// `POST`s to an `/admin` path on the metrics port with `token` (none:
    /// no authorization); returns the status and body.
    pub fn admin(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (status, _, body) = crate::edge::http_with(self.metrics_addr, "POST", path, None, &headers);
        (status, body)
    }
}

/// Retries `f` until it succeeds or `tries` run out, for servers that are
/// still starting.
pub async fn eventually<T, F, Fut>(tries: usize, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..tries {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met after {tries} tries");
}

/// A client of a test server (`token: None` sends no authorization).
pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Client {
    ouro_edge::link::connect(&format!("http://{addr}"), token, None).await.expect("connecting")
}
