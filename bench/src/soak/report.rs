//! A soak run judged and written down: the verdict with its reasons,
//! results.json, report.md (also printed) and rss.csv.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::netstat::ListenCounters;
use super::rss::{self, RssSummary, Sample};
use super::stalls::Stalls;
use super::tally::{self, Latency, Refusals};
use super::{io, online_cores, Cores, Outcome, Scenario, SoakArgs, SoakError};
use crate::report::{cpu_model, git_revision, sha256_file, ModelRef, MISSING};

/// Where and when the run happened.
#[derive(Serialize, Debug, Clone)]
pub struct Environment {
    pub cpu: String,
    /// The vector features the kernels use, of those the CPU has.
    pub cpu_flags: String,
    pub cores: usize,
    pub server_cores: Vec<usize>,
    pub client_cores: Vec<usize>,
    pub model: ModelRef,
    pub git_revision: String,
    pub command: String,
    pub started_unix: u64,
    pub date_utc: String,
}

impl Environment {
    pub(crate) fn now(args: &SoakArgs, cores: &Cores, model: &Path, started: SystemTime) -> Self {
        let started_unix = started.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self {
            cpu: cpu_model(),
            cpu_flags: cpu_flags(),
            // The machine's, not this pinned thread's.
            cores: online_cores(),
            server_cores: cores.server.clone(),
            client_cores: cores.client.clone(),
            model: ModelRef {
                name: args.model.clone(),
                path: model.display().to_string(),
                sha256: sha256_file(model).unwrap_or_else(|e| format!("unreadable: {e}")),
            },
            git_revision: git_revision(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started_unix,
            date_utc: utc(started_unix),
        }
    }
}

/// The kernel-relevant flags of /proc/cpuinfo, as `ouro-edge bench-model` lists them.
fn cpu_flags() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    let wanted = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "amx_int8"];
    let have: Vec<&str> = wanted.into_iter().filter(|f| flags.split_whitespace().any(|x| x == *f)).collect();
    have.join(" ")
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time (days to civil date: Hinnant's algorithm).
fn utc(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

/// The limits a run is judged against.
#[derive(Serialize, Debug, Clone)]
pub struct Bounds {
    pub rss_growth_mib: f64,
    pub warmup_at_s: f64,
    pub refusal_max_ms: f64,
    pub request_timeout_s: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct LoadFigures {
    /// The configured length of the load, seconds.
    pub duration_s: f64,
    /// From the first request to the last one finishing, seconds (the
    /// throughputs are over this).
    pub load_s: f64,
    pub finished: u64,
    pub tokens: u64,
    pub tokens_per_s: f64,
    pub requests_per_s: f64,
    /// Admitted requests that finished, from sending to the last token.
    pub latency: Latency,
    pub refused: usize,
    pub refusals: BTreeMap<String, Refusals>,
    pub failures: BTreeMap<String, u64>,
    pub failure_examples: Vec<String>,
    pub mismatches: u64,
    pub mismatch_examples: Vec<String>,
    /// Refusals slower than the bound, each beside the longest stall of the
    /// load generator while it was in flight.
    pub late_refusals: Vec<LateRefusal>,
    /// How late the load generator's own ticks came (see [`super::stalls`]).
    pub load_generator: Stalls,
    /// Handshakes the kernel dropped at full accept queues during the load
    /// (see [`super::netstat`]).
    pub listen: Option<ListenCounters>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LateRefusal {
    pub code: String,
    /// Seconds into the load when it arrived.
    pub at_s: f64,
    pub took_ms: f64,
    /// The longest stall of the load generator itself during that request, ms.
    pub generator_stall_ms: Option<f64>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Setting {
    pub what: String,
    pub value: String,
}

/// A judged run.
#[derive(Serialize, Debug, Clone)]
pub struct SoakReport {
    pub scenario: Scenario,
    pub passed: bool,
    /// Why the run failed (empty when it passed).
    pub failures: Vec<String>,
    pub environment: Environment,
    pub setup: Vec<Setting>,
    pub bounds: Bounds,
    pub load: LoadFigures,
    pub rss: Vec<RssSummary>,
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

impl SoakReport {
    pub(crate) fn judge(args: &SoakArgs, environment: Environment, outcome: Outcome) -> Self {
        let bounds = Bounds {
            rss_growth_mib: args.rss_growth_mb,
            warmup_at_s: args.warmup_at_s(),
            refusal_max_ms: args.refusal_max_ms,
            request_timeout_s: args.request_timeout,
        };
        let c = &outcome.counts;
        let refusals = tally::refusals(c, Duration::from_secs_f64(args.refusal_max_ms / 1e3));
        let load_s = outcome.load_s.max(1e-9);
        let mut load = LoadFigures {
            duration_s: args.duration,
            load_s: outcome.load_s,
            finished: c.finished,
            tokens: c.tokens,
            tokens_per_s: c.tokens as f64 / load_s,
            requests_per_s: c.finished as f64 / load_s,
            latency: Latency::of(&c.latencies),
            refused: c.refusals.values().map(Vec::len).sum(),
            refusals,
            failures: c.failures.clone(),
            failure_examples: c.failure_examples.clone(),
            mismatches: c.mismatches,
            mismatch_examples: c.mismatch_examples.clone(),
            late_refusals: c
                .slow_refusals
                .iter()
                .map(|r| LateRefusal {
                    code: r.code.clone(),
                    at_s: r.at_s,
                    took_ms: r.took_s * 1e3,
                    generator_stall_ms: outcome.stalls.during(r.at_s, r.took_s),
                })
                .collect(),
            load_generator: outcome.stalls.clone(),
            listen: outcome.listen,
        };
        // Slowest first: the list in the report is cut short.
        load.late_refusals.sort_by(|a, b| b.took_ms.total_cmp(&a.took_ms));
        let mut rss_summaries = Vec::new();
        let mut failures = Vec::new();
        for p in &outcome.processes {
            match rss::summarize(&outcome.samples, p, bounds.warmup_at_s) {
                Some(s) => {
                    if s.growth_mib > bounds.rss_growth_mib {
                        failures.push(format!(
                            "{p}: RSS grew {:.1} MiB after warm-up ({:.1} → {:.1} MiB), more than {} MiB",
                            s.growth_mib, s.warmup_mib, s.final_mib, bounds.rss_growth_mib
                        ));
                    }
                    if s.exited {
                        failures.push(format!("{p} exited during the run"));
                    }
                    rss_summaries.push(s);
                }
                None => failures.push(format!("{p}: no RSS sample (did it exit at once?)")),
            }
        }
        if load.finished == 0 {
            failures.push("no request finished".into());
        }
        if load.mismatches > 0 {
            failures.push(format!("{} texts differ from the reference", load.mismatches));
        }
        let failed: u64 = load.failures.values().sum();
        if failed > 0 {
            let kinds: Vec<String> = load.failures.iter().map(|(k, n)| format!("{n} × {k}")).collect();
            failures.push(format!("{failed} requests failed or were answered wrongly: {}", kinds.join(", ")));
        }
        for (code, r) in &load.refusals {
            if r.late > 0 {
                failures.push(format!(
                    "{} refusals ({code}) took longer than {} ms (max {})",
                    r.late,
                    bounds.refusal_max_ms,
                    fmt_ms(r.latency.max_ms)
                ));
            }
        }
        let setup = outcome.setup.into_iter().map(|(what, value)| Setting { what, value }).collect();
        Self {
            scenario: args.scenario,
            passed: failures.is_empty(),
            failures,
            environment,
            setup,
            bounds,
            load,
            rss: rss_summaries,
            samples: outcome.samples,
        }
    }

    /// results.json, report.md and rss.csv in `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), SoakError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| SoakError::Setup(e.to_string()))?;
        let put = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(io(format!("writing {}", p.display())))
        };
        put("results.json", json + "\n")?;
        put("report.md", self.markdown())?;
        put("rss.csv", rss::csv(&self.samples))
    }

    pub fn markdown(&self) -> String {
        let (e, l) = (&self.environment, &self.load);
        let mut s = String::new();
        let verdict = if self.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(s, "## Soak: {} — {verdict}\n", self.scenario.name());
        let _ = writeln!(s, "- CPU: {} ({} cores; {})", e.cpu, e.cores, e.cpu_flags);
        let _ = writeln!(s, "- server on cores {:?}, load generator on cores {:?}", e.server_cores, e.client_cores);
        let _ = writeln!(s, "- model: {} (sha256 {})", e.model.name, short(&e.model.sha256));
        let _ = writeln!(s, "- {} · git {} · `{}`", e.date_utc, e.git_revision, e.command);
        for st in &self.setup {
            let _ = writeln!(s, "- {}: {}", st.what, st.value);
        }
        let _ = writeln!(s, "\n| figure | value |\n|---|---:|");
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "| {k} | {v} |");
        };
        row(&mut s, "load (s, drain included)", format!("{:.0}", l.load_s));
        row(&mut s, "requests finished", l.finished.to_string());
        row(&mut s, "tokens generated", l.tokens.to_string());
        row(&mut s, "tokens/s", format!("{:.1}", l.tokens_per_s));
        row(&mut s, "requests/s", format!("{:.2}", l.requests_per_s));
        row(&mut s, "latency p50 (admitted)", format!("{} ms", fmt_ms(l.latency.p50_ms)));
        row(&mut s, "latency p99 (admitted)", format!("{} ms", fmt_ms(l.latency.p99_ms)));
        row(&mut s, "latency max (admitted)", format!("{} ms", fmt_ms(l.latency.max_ms)));
        row(&mut s, "refusals", l.refused.to_string());
        row(&mut s, "mismatched texts", l.mismatches.to_string());
        row(&mut s, "failed requests", l.failures.values().sum::<u64>().to_string());
        let g = &l.load_generator;
        row(
            &mut s,
            "load generator stalls (ticks of 20 ms)",
            format!("max {:.0} ms; {} > 100 ms, {} > 500 ms", g.max_late_ms, g.late_over_100ms, g.late_over_500ms),
        );
        row(
            &mut s,
            "handshakes dropped at a full accept queue (kernel, namespace-wide)",
            l.listen.map_or(MISSING.into(), |c| c.listen_overflows.to_string()),
        );

        let _ = writeln!(s, "\nRefusals by code (latency from sending to the refusal):\n");
        let _ = writeln!(s, "| code | count | p50 ms | p99 ms | max ms | over {} ms |", self.bounds.refusal_max_ms);
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        if l.refusals.is_empty() {
            let _ = writeln!(s, "| (none) | 0 | {MISSING} | {MISSING} | {MISSING} | 0 |");
        }
        for (code, r) in &l.refusals {
            let _ = writeln!(
                s,
                "| {code} | {} | {} | {} | {} | {} |",
                r.latency.count,
                fmt_ms(r.latency.p50_ms),
                fmt_ms(r.latency.p99_ms),
                fmt_ms(r.latency.max_ms),
                r.late
            );
        }
        if !l.late_refusals.is_empty() {
            let _ = writeln!(s, "\nLate refusals (and the load generator's own longest stall meanwhile):\n");
            for r in l.late_refusals.iter().take(20) {
                let stall =
                    r.generator_stall_ms.map_or("no stall ≥ 250 ms".into(), |ms| format!("stalled {ms:.0} ms"));
                let _ = writeln!(s, "- {} at {:.1} s took {:.0} ms; load generator {stall}", r.code, r.at_s, r.took_ms);
            }
        }
        if !l.failures.is_empty() {
            let _ = writeln!(s, "\nFailures by kind: {:?}; first ones:\n", l.failures);
            for f in &l.failure_examples {
                let _ = writeln!(s, "- {f}");
            }
        }
        if !l.mismatch_examples.is_empty() {
            let _ = writeln!(s, "\nMismatches, first ones:\n");
            for m in &l.mismatch_examples {
                let _ = writeln!(s, "- {m}");
            }
        }

        let _ = writeln!(
            s,
            "\nRSS (sampled every second; warm-up at {:.0} s; growth = final − warm-up, bound {} MiB):\n",
            self.bounds.warmup_at_s, self.bounds.rss_growth_mib
        );
        let _ =
            writeln!(s, "| process | start MiB | warm-up MiB | final MiB | max MiB | growth MiB | CPU s | samples |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rss {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1} | {:.0} | {} |",
                r.process, r.start_mib, r.warmup_mib, r.final_mib, r.max_mib, r.growth_mib, r.cpu_s, r.samples
            );
        }
        let _ = writeln!(s);
        if self.passed {
            let _ = writeln!(s, "Verdict: PASS");
        } else {
            let _ = writeln!(s, "Verdict: FAIL");
            for f in &self.failures {
                let _ = writeln!(s, "- {f}");
            }
        }
        s
    }
}

fn fmt_ms(x: Option<f64>) -> String {
    match x {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => MISSING.into(),
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_767_225_600 + 3_723), "2026-01-01 01:02 UTC");
    }
}
