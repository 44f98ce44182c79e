//! A real `ouro-cloud` process on loopback, and the edge's client for it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use ouro_edge::link::{generate, speculate, Client, Plan, SessionStream, SpecRun};

/// The token every test server accepts; [`OTHER_TOKEN`] is a second client.
pub const TOKEN: &str = "test-token-alpha";
pub const OTHER_TOKEN: &str = "test-token-beta";

/// Where cargo put the workspace's binaries (beside this test's `deps/`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build -p ouro-cloud` (cargo test --workspace does)",
        p.display()
    );
    p
}

/// A running `ouro-cloud serve`, killed on drop.
pub struct CloudServer {
    child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    _tokens: TempFile,
}

struct TempFile(PathBuf);

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
        let tokens = TempFile(std::env::temp_dir().join(format!(
            "ouro-test-tokens-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        )));
        std::fs::write(&tokens.0, format!("# test tokens\n{TOKEN}\n{OTHER_TOKEN}\n")).unwrap();
        let mut child = Command::new(bin_path("ouro-cloud"))
            .args(["--threads", "1", "serve", "--listen", "127.0.0.1:0"])
            .args(plaintext.then_some("--insecure-dev"))
            .args(["--metrics-listen", "127.0.0.1:0", "--cost-probe", "1,4"])
            .arg("--model")
            .arg(model)
            .arg("--tokens-file")
            .arg(&tokens.0)
            .args(extra)
            .env_remove("OURO_TOKENS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning ouro-cloud");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let banner = loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("listening on") => break l,
                Some(Ok(_)) => continue,
                _ => {
                    let status = child.wait().ok();
                    panic!("ouro-cloud exited before listening: {status:?}");
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let word_after = |key: &str| -> String {
            let rest = &banner[banner.find(key).expect("banner shape") + key.len()..];
            rest.split_whitespace().next().unwrap().to_string()
        };
        let addr = word_after("listening on ").parse().expect("address");
        let metrics = word_after("metrics on http://");
        let metrics_addr = metrics.trim_end_matches("/metrics").parse().expect("metrics address");
        Self { child, addr, metrics_addr, _tokens: tokens }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().expect("waiting for ouro-cloud")
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.metrics_addr).expect("metrics port");
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for CloudServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
