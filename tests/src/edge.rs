//! A real `ouro-edge serve` process on loopback, and a tiny HTTP client for
//! its OpenAI-compatible API.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::bin_path;

/// A running edge daemon, killed on drop.
pub struct EdgeServer {
    child: Child,
    pub addr: SocketAddr,
}

impl EdgeServer {
    /// `ouro-edge serve --listen 127.0.0.1:0` plus `args`.
    pub fn start(args: &[&str]) -> Result<Self, String> {
        let mut cmd = Command::new(bin_path("ouro-edge"));
        cmd.args(["--threads", "1", "serve", "--listen", "127.0.0.1:0"]).args(args).stderr(Stdio::null());
        let (child, ready) = ouro_bench::process::spawn_ready(cmd).map_err(|e| e.to_string())?;
        Ok(Self { child, addr: ready.listen })
    }
}

impl EdgeServer {
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's OS threads now (Linux: `/proc/<pid>/status`).
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }
}

impl Drop for EdgeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; returns (status, head, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, String, String) {
    http_with(addr, method, path, body, &[])
}

/// [`http`] with extra request headers (a `Host` among them replaces `localhost`).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("edge API");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let host = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")).map_or("localhost", |(_, v)| v);
    let extra: String =
        headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("host")).map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head, body_of(&raw))
}

/// The body of a raw HTTP/1.1 response, de-chunked.
pub fn body_of(raw: &[u8]) -> String {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut body = raw[split..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    String::from_utf8_lossy(&body).to_string()
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = s.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&s[..i]).trim(), 16).unwrap_or(0);
        let rest = &s[i + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The `data:` payloads of an SSE body.
pub fn sse_events(body: &str) -> Vec<String> {
    body.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.trim().to_string()).collect()
}
