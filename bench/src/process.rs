//! `ouro-cloud` as a child process: started from its banner, pinned to
//! cores with `sched_setaffinity`, and its CPU time read from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0} not found next to this executable; build it with `cargo build -p ouro-cloud`")]
    Missing(PathBuf),
    #[error("starting {what}: {source}")]
    Spawn { what: String, source: std::io::Error },
    #[error("the process exited before listening ({0})")]
    Exited(String),
    #[error("unexpected banner: {0}")]
    Banner(String),
}

/// A workspace binary beside the running executable (target/<profile>/).
pub fn sibling_bin(name: &str) -> Result<PathBuf, ProcessError> {
    let exe = std::env::current_exe().map_err(|source| ProcessError::Spawn { what: name.into(), source })?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Test executables live one level down, in deps/.
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    p.is_file().then_some(p.clone()).ok_or(ProcessError::Missing(p))
}

/// Restricts `cmd`'s process to `cores` (Linux); its threads inherit it.
pub fn pin(cmd: &mut Command, cores: &[usize]) {
    let cores = cores.to_vec();
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        // Only async-signal-safe calls between fork and exec.
        cmd.pre_exec(move || {
            set_affinity(0, &cores);
            Ok(())
        });
    }
}

/// Pins the calling thread (and the threads it starts later) to `cores`.
pub fn pin_self(cores: &[usize]) {
    #[cfg(target_os = "linux")]
    set_affinity(0, cores);
}

#[cfg(target_os = "linux")]
fn set_affinity(pid: libc::pid_t, cores: &[usize]) {
    if cores.is_empty() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is valid, and CPU_SET stays in bounds for
    // core ids below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU seconds (user + system) `pid` has used so far, all threads together.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

/// Spawns `cmd` and returns once it prints a stdout line containing
/// `marker` (its "listening on" banner), with that line. Stdout keeps being
/// drained so the child never blocks on a full pipe.
pub fn spawn_until(mut cmd: Command, marker: &str) -> Result<(Child, String), ProcessError> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| ProcessError::Spawn { what: format!("{cmd:?}"), source })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let banner = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(marker) => break l,
            Some(Ok(_)) => continue,
            _ => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(ProcessError::Exited(status));
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, banner))
}

/// How a benchmark runs its cloud: plaintext on loopback with ports the
/// kernel picks, one bearer token, one model thread per core it is pinned to.
pub struct BenchCloud<'a> {
    pub model: &'a Path,
    pub cores: &'a [usize],
    pub token: &'a str,
    pub batch_window_ms: f64,
    /// Pass `--requantize` (k-quant weights as Q8_0).
    pub requantize: bool,
    /// Also serve QUIC.
    pub quic: bool,
}

impl BenchCloud<'_> {
    pub fn spawn(&self) -> Result<CloudProcess, ProcessError> {
        let mut cmd = Command::new(sibling_bin("ouro-cloud")?);
        cmd.args(["--threads", &self.cores.len().to_string(), "serve", "--insecure-dev"])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--tokens", self.token])
            .args(["--max-sessions", "64", "--batch-window-ms", &self.batch_window_ms.to_string()])
            .args(self.quic.then_some(["--quic-listen", "127.0.0.1:0"]).into_iter().flatten())
            .args(self.requantize.then_some("--requantize"))
            .arg("--model")
            .arg(self.model)
            .stderr(Stdio::null());
        pin(&mut cmd, self.cores);
        CloudProcess::spawn(cmd)
    }
}

/// A running `ouro-cloud serve`, killed on drop.
pub struct CloudProcess {
    child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Set when the server also serves QUIC (`--quic-listen`).
    pub quic_addr: Option<SocketAddr>,
}

impl CloudProcess {
    /// Spawns `cmd` (an `ouro-cloud serve` command line) and waits for its
    /// banner: `ouro-cloud listening on ADDR (...); metrics on http://ADDR/metrics`.
    pub fn spawn(cmd: Command) -> Result<Self, ProcessError> {
        let (child, banner) = spawn_until(cmd, "listening on")?;
        let word_after = |key: &str| -> Option<String> {
            let rest = &banner[banner.find(key)? + key.len()..];
            Some(rest.split_whitespace().next()?.trim_end_matches([';', ',']).to_string())
        };
        let addr = word_after("listening on ").and_then(|w| w.parse().ok());
        let metrics = word_after("metrics on http://").and_then(|w| w.trim_end_matches("/metrics").parse().ok());
        let quic_addr = word_after("quic on ").and_then(|w| w.parse().ok());
        match (addr, metrics) {
            (Some(addr), Some(metrics_addr)) => Ok(Self { child, addr, metrics_addr, quic_addr }),
            _ => Err(ProcessError::Banner(banner)),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid()).unwrap_or(f64::NAN)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> std::io::Result<std::process::ExitStatus> {
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        self.child.wait()
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.metrics_addr)?;
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }
}

impl Drop for CloudProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time() {
        let before = cpu_seconds(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(std::process::id()).unwrap() >= before);
    }
}
