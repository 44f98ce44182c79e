//! The line a server prints on stdout once all its listeners are bound, for
//! the processes that start it (tests, the benchmark, scripts): one JSON
//! object, `{"ready":{"service":"ouro-cloud","listen":"127.0.0.1:7070",...}}`.
//! The human banner beside it is free to change; this line is the contract.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// `ouro-cloud` or `ouro-edge`.
    pub service: String,
    /// The main listener: the cloud's gRPC port, the edge's HTTP API.
    pub listen: SocketAddr,
    /// The cloud's `/metrics` (and `/admin`) port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// The cloud's QUIC (UDP) port, when it serves QUIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<SocketAddr>,
    /// The cloud's plaintext `grpc.health.v1` port, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<SocketAddr>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    ready: Ready,
}

impl Ready {
    pub fn new(service: &str, listen: SocketAddr) -> Self {
        Self { service: service.into(), listen, metrics: None, quic: None, health: None }
    }

    /// The transports served beside the main listener, by name (for banners).
    pub fn also_serving(&self) -> impl Iterator<Item = (&'static str, SocketAddr)> {
        [("quic", self.quic), ("health", self.health)].into_iter().filter_map(|(name, addr)| Some((name, addr?)))
    }

    /// The line, without its newline.
    pub fn line(&self) -> String {
        serde_json::to_string(&Line { ready: self.clone() }).expect("addresses and strings serialize")
    }

    /// Prints the line on stdout and flushes it, so a reader of a pipe sees it now.
    pub fn announce(&self) -> std::io::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", self.line())?;
        out.flush()
    }

    /// The readiness of `line`, or `None` for any other line.
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim();
        if !line.starts_with('{') {
            return None;
        }
        serde_json::from_str::<Line>(line).ok().map(|l| l.ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_back_and_other_lines_are_not_it() {
        let mut r = Ready::new("ouro-cloud", "127.0.0.1:7070".parse().unwrap());
        r.metrics = Some("127.0.0.1:9464".parse().unwrap());
        assert_eq!(
            r.line(),
            r#"{"ready":{"service":"ouro-cloud","listen":"127.0.0.1:7070","metrics":"127.0.0.1:9464"}}"#
        );
        assert_eq!(Ready::parse(&format!("{}\n", r.line())), Some(r.clone()));
        assert_eq!(r.also_serving().count(), 0);
        r.quic = Some("127.0.0.1:7071".parse().unwrap());
        assert_eq!(r.also_serving().collect::<Vec<_>>(), [("quic", "127.0.0.1:7071".parse().unwrap())]);
        for other in ["ouro-cloud listening on 127.0.0.1:7070", "{\"ready\":{}}", "{}", "", "{\"ready\":"] {
            assert_eq!(Ready::parse(other), None, "{other}");
        }
    }
}
