//! The official `openai` Python client (pinned, from PyPI) against a real
//! `ouro-edge serve` running SmolLM2-135M alone: tests/openai/test_client.py
//! checks answers, streaming, stop sequences, seeds, usage, and that every
//! refusal is the client's typed exception.
//!
//! Needs python3 and PyPI (deploy/openai-env.sh builds the venv once, in the
//! cache) and the model (deploy/fetch-models.sh). Missing either is a
//! failure that says what to do, not a skip: CI has both.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ouro_tests::cloud::bin_path;
use ouro_tests::{model_path, repo_root};

/// The first install downloads a few MiB of wheels; later runs reuse the venv.
const SETUP_TIMEOUT: Duration = Duration::from_secs(600);
/// The whole client suite: a few dozen short generations on one thread.
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

/// What a finished (or timed-out) process said.
struct Outcome {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn report(&self, what: &str, timeout: Duration) -> String {
        let status = self.status.map_or_else(|| format!("killed after {timeout:?}"), |s| s.to_string());
        format!("{what}: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to its end or until `timeout`, killing it then.
fn run(mut cmd: Command, timeout: Duration) -> Outcome {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Outcome { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let mut bytes = Vec::new();
            let _ = p.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// The venv's python, from deploy/openai-env.sh.
fn openai_python() -> PathBuf {
    let script = repo_root().join("deploy/openai-env.sh");
    let outcome = run(Command::new(&script), SETUP_TIMEOUT);
    let report =
        || outcome.report(&format!("{} (python3 with venv, and PyPI, are needed)", script.display()), SETUP_TIMEOUT);
    assert!(outcome.status.is_some_and(|s| s.success()), "{}", report());
    let python = PathBuf::from(outcome.stdout.lines().last().unwrap_or_default().trim());
    assert!(python.is_file(), "no python at {python:?}: {}", report());
    python
}

/// `ouro-edge serve` on loopback, its stderr kept in a file for failure
/// reports; killed on drop.
struct Daemon {
    child: Child,
    base_url: String,
    log: PathBuf,
}

impl Daemon {
    fn start(model: &Path, extra: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("ouro-openai-client-{}.log", std::process::id()));
        let stderr = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut cmd = Command::new(bin_path("ouro-edge"));
        cmd.args(["--threads", "1", "serve", "--listen", "127.0.0.1:0", "--model"]).arg(model).args(extra);
        cmd.stderr(stderr);
        let started = ouro_bench::process::spawn_ready(cmd);
        let (child, ready) = started.unwrap_or_else(|e| {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "ouro-edge serve {extra:?} did not start ({e}); it needs the API flags --api-key, --max-concurrent \
                 and --max-queue\n--- its stderr ---\n{log_text}"
            )
        });
        Self { child, base_url: format!("http://{}/v1", ready.listen), log }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[test]
fn the_official_openai_client_gets_answers_and_typed_refusals() {
    let model = model_path("smollm2-135m");
    let python = openai_python();
    // Unique per run, so a stale daemon or venv cannot stand in for this one.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let key = format!("sk-ouro-test-{}-{nanos}", std::process::id());
    // One generation at a time and no queue: the rate-limit case needs it.
    let daemon = Daemon::start(&model, &["--api-key", &key, "--max-concurrent", "1", "--max-queue", "0"]);

    let mut cmd = Command::new(&python);
    cmd.arg(repo_root().join("tests/openai/test_client.py"))
        .env("OURO_BASE_URL", &daemon.base_url)
        .env("OURO_API_KEY", &key)
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL");
    let outcome = run(cmd, SUITE_TIMEOUT);
    assert!(
        outcome.status.is_some_and(|s| s.success()),
        "{}\n--- ouro-edge stderr ---\n{}",
        outcome.report("tests/openai/test_client.py", SUITE_TIMEOUT),
        daemon.stderr()
    );
}
