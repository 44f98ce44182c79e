//! `ouro-cloud` and `ouro-edge` as child processes: started once they print
//! their readiness line ([`ouro_config::ready`]), pinned to cores with
//! `sched_setaffinity`, and their CPU time read from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub use ouro_config::ready::Ready;
use ouro_edge::link::TransportKind;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0} not found next to this executable; build it with `cargo build -p ouro-cloud`")]
    Missing(PathBuf),
    #[error("starting {what}: {source}")]
    Spawn { what: String, source: std::io::Error },
    #[error("the process exited before it was ready ({0})")]
    Exited(String),
    #[error("{what} is ready without {missing}: {line}")]
    Incomplete { what: String, missing: &'static str, line: String },
}

/// A workspace binary beside the running executable (`target/<profile>/`).
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

/// Spawns `cmd` (a server) and returns once it prints its readiness line,
/// with what the line says. Stdout keeps being drained so the child never
/// blocks on a full pipe.
pub fn spawn_ready(mut cmd: Command) -> Result<(Child, Ready), ProcessError> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| ProcessError::Spawn { what: format!("{cmd:?}"), source })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        match lines.next() {
            Some(Ok(l)) => match Ready::parse(&l) {
                Some(r) => break r,
                None => continue,
            },
            _ => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(ProcessError::Exited(status));
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, ready))
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
    /// The transports to serve; gRPC, the cloud's main listener, always is.
    pub transports: &'a [TransportKind],
}

/// The `ouro-cloud serve` flags that have it serve `kind` too, on a
/// loopback port the kernel picks.
pub fn serve_flags(kind: TransportKind) -> &'static [&'static str] {
    match kind {
        TransportKind::Grpc => &[],
        TransportKind::Quic => &["--quic-listen", "127.0.0.1:0"],
    }
}

impl BenchCloud<'_> {
    pub fn spawn(&self) -> Result<CloudProcess, ProcessError> {
        let mut cmd = Command::new(sibling_bin("ouro-cloud")?);
        cmd.args(["--threads", &self.cores.len().to_string(), "serve", "--insecure-dev"])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--tokens", self.token])
            .args(["--max-sessions", "64", "--batch-window-ms", &self.batch_window_ms.to_string()])
            .args(self.transports.iter().flat_map(|&k| serve_flags(k)))
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
    quic_addr: Option<SocketAddr>,
}

impl CloudProcess {
    /// Spawns `cmd` (an `ouro-cloud serve` command line) and waits until it is ready.
    pub fn spawn(cmd: Command) -> Result<Self, ProcessError> {
        let (child, ready) = spawn_ready(cmd)?;
        let Some(metrics_addr) = ready.metrics else {
            let line = ready.line();
            return Err(ProcessError::Incomplete { what: ready.service, missing: "a metrics address", line });
        };
        Ok(Self { child, addr: ready.listen, metrics_addr, quic_addr: ready.quic })
    }

    /// Where the server serves `kind`, if it does (as its readiness line says).
    pub fn addr_of(&self, kind: TransportKind) -> Option<SocketAddr> {
        match kind {
            TransportKind::Grpc => Some(self.addr),
            TransportKind::Quic => self.quic_addr,
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

    /// Another thread burns CPU while this one, idle, watches the reading
    /// grow by 0.2 s: a reading that stood still, or counted only the
    /// calling thread, never gets there. The burner's bound is work done
    /// (far more than 0.2 s of it on any machine), not time taken.
    #[test]
    fn reads_own_cpu_time_across_threads() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        let me = std::process::id();
        let before = cpu_seconds(me).expect("readable /proc/self/stat");
        let stop = Arc::new(AtomicBool::new(false));
        let burner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                for chunk in 0..2_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    for i in 0..10_000_000u64 {
                        x = x.wrapping_add(std::hint::black_box((i * i) ^ chunk));
                    }
                }
                x
            })
        };
        let mut grown = 0.0;
        while grown < 0.2 && !burner.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(5));
            grown = cpu_seconds(me).expect("readable") - before;
        }
        stop.store(true, Ordering::Relaxed);
        burner.join().unwrap();
        assert!(grown >= 0.2, "CPU time grew by only {grown} s while another thread burned");
    }
}
