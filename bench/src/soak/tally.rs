//! What the load saw, counted as it happens: finished requests and their
//! latencies, refusals by code and how long each took to arrive, failures
//! by kind, and texts that differ from the reference.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Examples kept per kind of problem: enough to start debugging, bounded
/// so a run that goes wrong for ten minutes stays small.
const EXAMPLES: usize = 8;
/// Slow refusals kept with their time, at most.
const SLOW_KEPT: usize = 1000;

pub struct Tally {
    start: Instant,
    /// Refusals slower than this are kept with their time, to set beside
    /// the load generator's own stalls (see [`super::stalls`]).
    slow: Duration,
    inner: Mutex<Counts>,
}

/// A slow refusal: its code, when it arrived (seconds into the load) and
/// how long it took (seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct SlowRefusal {
    pub code: String,
    pub at_s: f64,
    pub took_s: f64,
}

#[derive(Default, Clone, Debug)]
pub struct Counts {
    pub finished: u64,
    pub tokens: u64,
    /// Seconds from sending a request to its last token, finished ones only.
    pub latencies: Vec<f64>,
    /// Seconds from sending a request to its refusal, by code.
    pub refusals: BTreeMap<String, Vec<f64>>,
    pub slow_refusals: Vec<SlowRefusal>,
    pub failures: BTreeMap<String, u64>,
    pub failure_examples: Vec<String>,
    pub mismatches: u64,
    pub mismatch_examples: Vec<String>,
}

impl Tally {
    /// Counts from `start`, the beginning of the load; refusals slower
    /// than `slow` are kept with their time.
    pub fn new(start: Instant, slow: Duration) -> Self {
        Self { start, slow, inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request that ran to the end; `mismatch` describes how its text
    /// differs from the reference, if it does.
    pub fn finished(&self, latency: Duration, tokens: usize, mismatch: Option<String>) {
        let mut c = self.lock();
        c.finished += 1;
        c.tokens += tokens as u64;
        c.latencies.push(latency.as_secs_f64());
        if let Some(m) = mismatch {
            c.mismatches += 1;
            if c.mismatch_examples.len() < EXAMPLES {
                c.mismatch_examples.push(m);
            }
        }
    }

    pub fn refused(&self, code: &str, latency: Duration) {
        let mut c = self.lock();
        c.refusals.entry(code.to_string()).or_default().push(latency.as_secs_f64());
        if latency > self.slow && c.slow_refusals.len() < SLOW_KEPT {
            let at_s = self.start.elapsed().as_secs_f64();
            c.slow_refusals.push(SlowRefusal { code: code.to_string(), at_s, took_s: latency.as_secs_f64() });
        }
    }

    /// A request the server took on (or answered wrongly) that did not finish.
    pub fn failed(&self, kind: &str, detail: impl std::fmt::Display) {
        let mut c = self.lock();
        *c.failures.entry(kind.to_string()).or_default() += 1;
        if c.failure_examples.len() < EXAMPLES {
            c.failure_examples.push(format!("{kind}: {detail}"));
        }
    }

    pub fn snapshot(&self) -> Counts {
        self.lock().clone()
    }

    /// One line for a progress report.
    pub fn progress(&self) -> String {
        let c = self.lock();
        let refused: usize = c.refusals.values().map(Vec::len).sum();
        let failed: u64 = c.failures.values().sum();
        format!(
            "{} finished ({} tokens), {refused} refused, {failed} failed, {} mismatched",
            c.finished, c.tokens, c.mismatches
        )
    }
}

/// Latency percentiles, milliseconds (absent without samples).
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    pub fn of(seconds: &[f64]) -> Self {
        let mut v: Vec<f64> = seconds.iter().map(|s| s * 1e3).collect();
        v.sort_by(f64::total_cmp);
        Self { count: v.len(), p50_ms: percentile(&v, 50.0), p99_ms: percentile(&v, 99.0), max_ms: v.last().copied() }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Refusals of one code.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Refusals {
    pub latency: Latency,
    /// Refusals slower than the bound: the server held the request before
    /// saying no.
    pub late: usize,
}

pub fn refusals(counts: &Counts, bound: Duration) -> BTreeMap<String, Refusals> {
    counts
        .refusals
        .iter()
        .map(|(code, l)| {
            let late = l.iter().filter(|&&s| s > bound.as_secs_f64()).count();
            (code.clone(), Refusals { latency: Latency::of(l), late })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn counts_refusals_by_code_and_lateness() {
        let t = Tally::new(Instant::now(), Duration::from_secs(1));
        t.refused("429", Duration::from_millis(3));
        t.refused("429", Duration::from_millis(1500));
        t.finished(Duration::from_millis(200), 16, None);
        t.finished(Duration::from_millis(300), 16, Some("differs".into()));
        t.failed("timeout", "after 120 s");
        let c = t.snapshot();
        let r = refusals(&c, Duration::from_secs(1));
        assert_eq!(r["429"].latency.count, 2);
        assert_eq!(r["429"].late, 1);
        assert_eq!(c.slow_refusals.len(), 1);
        assert_eq!(c.slow_refusals[0].took_s, 1.5);
        assert_eq!((c.finished, c.tokens, c.mismatches), (2, 32, 1));
        assert_eq!(c.failures["timeout"], 1);
        assert_eq!(Latency::of(&c.latencies).max_ms, Some(300.0));
    }
}
