//! Prometheus metrics: the names in one place, the recorder, and what the
//! service records (served on the operator port, see [`crate::admin`]).

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const SESSIONS_OPEN: &str = "ouro_sessions_open";
pub const SESSIONS_OPENED: &str = "ouro_sessions_opened_total";
pub const SESSIONS_RESUMED: &str = "ouro_sessions_resumed_total";
pub const ROUNDS: &str = "ouro_rounds_total";
pub const STALE_ROUNDS: &str = "ouro_stale_rounds_total";
pub const STACKED_ROUNDS: &str = "ouro_stacked_rounds_total";
pub const RUN_ON_TOKENS: &str = "ouro_run_on_tokens_total";
pub const RUN_ON_PASSES: &str = "ouro_run_on_passes_total";
pub const RUN_ON_DRAFTED: &str = "ouro_run_on_drafted_tokens_total";
pub const RUN_ON_DRAFTED_ACCEPTED: &str = "ouro_run_on_drafted_accepted_total";
pub const ACCEPTED_PER_ROUND: &str = "ouro_accepted_tokens_per_round";
pub const VERIFY_SECONDS: &str = "ouro_verify_seconds";
pub const BATCH_SIZE: &str = "ouro_batch_size";
pub const TARGET_PASSES: &str = "ouro_target_forward_passes_total";
pub const COMMITTED_TOKENS: &str = "ouro_committed_tokens_total";
pub const PASSES_PER_TOKEN: &str = "ouro_target_passes_per_committed_token";
pub const BYTES_IN: &str = "ouro_bytes_in_total";
pub const BYTES_OUT: &str = "ouro_bytes_out_total";
pub const EVICTIONS: &str = "ouro_evictions_total";
pub const REJECTIONS: &str = "ouro_rejections_total";
pub const KV_CACHE_BYTES: &str = "ouro_kv_cache_bytes";
pub const PREFILL_CANCELLED: &str = "ouro_prefill_cancelled_total";
pub const PREFILL_CHUNKS: &str = "ouro_prefill_chunks_total";
pub const COMPUTE_MICROS: &str = "ouro_compute_microseconds_total";
pub const INFLIGHT_BYTES: &str = "ouro_inflight_bytes";

/// Installs the global recorder. Histograms get explicit buckets so that
/// Prometheus can aggregate them across replicas.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(ACCEPTED_PER_ROUND.into()),
            &[0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full(VERIFY_SECONDS.into()),
            &[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0],
        )?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0])?
        .install_recorder()?;
    Ok(handle)
}

pub fn batch(size: usize, compute: Duration) {
    histogram!(BATCH_SIZE).record(size as f64);
    counter!(TARGET_PASSES).increment(1);
    counter!(COMPUTE_MICROS).increment(compute.as_micros() as u64);
}

pub fn round(accepted: usize, committed: usize, verify: Duration) {
    counter!(ROUNDS).increment(1);
    counter!(COMMITTED_TOKENS).increment(committed as u64);
    histogram!(ACCEPTED_PER_ROUND).record(accepted as f64);
    histogram!(VERIFY_SECONDS).record(verify.as_secs_f64());
}

/// Passes per committed token, kept as a running ratio so a dashboard needs
/// no query language to read it.
pub fn passes_per_token(passes: u64, tokens: u64) {
    if tokens > 0 {
        gauge!(PASSES_PER_TOKEN).set(passes as f64 / tokens as f64);
    }
}

pub fn sessions_open(n: usize) {
    gauge!(SESSIONS_OPEN).set(n as f64);
}

pub fn bytes(inbound: usize, outbound: usize) {
    counter!(BYTES_IN).increment(inbound as u64);
    counter!(BYTES_OUT).increment(outbound as u64);
}

pub fn evicted(reason: &'static str, n: usize) {
    if n > 0 {
        counter!(EVICTIONS, "reason" => reason).increment(n as u64);
    }
}

/// A round sent ahead on a bet that lost: answered without a pass.
pub fn stale_round() {
    counter!(STALE_ROUNDS).increment(1);
}

/// A round sent ahead, verified in the forward pass of the round it bet on.
pub fn stacked_round() {
    counter!(STACKED_ROUNDS).increment(1);
}

/// A prompt whose client left before its prefill finished.
pub fn prefill_cancelled() {
    counter!(PREFILL_CANCELLED).increment(1);
}

/// One chunk of a prompt's prefill ran.
pub fn prefill_chunk() {
    counter!(PREFILL_CHUNKS).increment(1);
}

pub fn rejected(reason: &'static str) {
    counter!(REJECTIONS, "reason" => reason).increment(1);
}

/// The address `/metrics` is served on, for the start-up banner.
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}/metrics")
}

/// A pass a session's verifier ran on its own between rounds, and the
/// tokens it committed.
pub fn run_on(pass: Duration, tokens: usize) {
    counter!(RUN_ON_TOKENS).increment(tokens as u64);
    counter!(RUN_ON_PASSES).increment(1);
    counter!(COMMITTED_TOKENS).increment(tokens as u64);
    histogram!(VERIFY_SECONDS).record(pass.as_secs_f64());
}

/// The verifier's own draft in a run-on pass: nodes checked, nodes accepted.
pub fn run_on_drafted(nodes: usize, accepted: usize) {
    counter!(RUN_ON_DRAFTED).increment(nodes as u64);
    counter!(RUN_ON_DRAFTED_ACCEPTED).increment(accepted as u64);
}

/// A round answered with no pass: the verifier's own tokens had left its tree.
pub fn overtaken_round() {
    counter!(ROUNDS).increment(1);
}
