//! Resident memory of the servers over the run, sampled from
//! `/proc/<pid>/status` once a second, and what it says about growth.
//!
//! A leak shows as RSS that keeps rising under a steady load. Allocators
//! and caches grow while the load ramps up, so growth is measured from a
//! warm-up point (a fraction into the run) to the end, not from the start.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::process::cpu_seconds;

/// A process to watch.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

/// One reading of one process; `rss_kib` is absent once the process is gone.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub process: String,
    pub rss_kib: Option<u64>,
    pub cpu_s: Option<f64>,
}

/// `VmRSS` of `pid`, KiB (absent for a process that exited, zombies included).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the watched processes every `every` on its own thread until stopped.
pub struct Monitor {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Monitor {
    /// Starts sampling now (time 0 is `start`); `tick` runs after each round
    /// of samples, with the elapsed seconds, for progress lines.
    pub fn start(
        watched: Vec<Watched>,
        start: Instant,
        every: Duration,
        mut tick: impl FnMut(f64, &[Sample]) + Send + 'static,
    ) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            let read = |t_s: f64| -> Vec<Sample> {
                watched
                    .iter()
                    .map(|w| Sample {
                        t_s,
                        process: w.name.clone(),
                        rss_kib: rss_kib(w.pid),
                        cpu_s: cpu_seconds(w.pid),
                    })
                    .collect()
            };
            let mut samples = Vec::new();
            loop {
                let t_s = start.elapsed().as_secs_f64();
                let round = read(t_s);
                tick(t_s, &round);
                samples.extend(round);
                // A message or a dropped sender both mean stop, after one
                // more sample: the last one is the run's final reading.
                if stopped.recv_timeout(every) != Err(mpsc::RecvTimeoutError::Timeout) {
                    samples.extend(read(start.elapsed().as_secs_f64()));
                    return samples;
                }
            }
        });
        Self { stop, handle }
    }

    /// Takes one last sample and returns them all.
    pub fn stop(self) -> Vec<Sample> {
        let _ = self.stop.send(());
        self.handle.join().unwrap_or_default()
    }
}

/// What one process's memory did over the run, MiB.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RssSummary {
    pub process: String,
    pub samples: usize,
    /// First sample, as the load started.
    pub start_mib: f64,
    /// The first sample at or after `warmup_at_s`.
    pub warmup_mib: f64,
    pub warmup_at_s: f64,
    /// The last sample, after the last request finished.
    pub final_mib: f64,
    pub max_mib: f64,
    /// `final_mib - warmup_mib`.
    pub growth_mib: f64,
    /// CPU seconds the process used during the load.
    pub cpu_s: f64,
    /// The process was gone before the end of the run.
    pub exited: bool,
}

pub fn summarize(samples: &[Sample], process: &str, warmup_at_s: f64) -> Option<RssSummary> {
    let mine: Vec<&Sample> = samples.iter().filter(|s| s.process == process).collect();
    let live: Vec<(f64, f64)> = mine.iter().filter_map(|s| s.rss_kib.map(|k| (s.t_s, k as f64 / 1024.0))).collect();
    let &(_, start_mib) = live.first()?;
    let &(_, final_mib) = live.last()?;
    let (warmup_at_s, warmup_mib) =
        live.iter().copied().find(|&(t, _)| t >= warmup_at_s).unwrap_or((warmup_at_s, final_mib));
    let cpu: Vec<f64> = mine.iter().filter_map(|s| s.cpu_s).collect();
    Some(RssSummary {
        process: process.to_string(),
        samples: live.len(),
        start_mib,
        warmup_mib,
        warmup_at_s,
        final_mib,
        max_mib: live.iter().map(|&(_, m)| m).fold(0.0, f64::max),
        growth_mib: final_mib - warmup_mib,
        cpu_s: cpu.last().zip(cpu.first()).map_or(0.0, |(b, a)| b - a),
        exited: mine.last().is_some_and(|s| s.rss_kib.is_none()),
    })
}

/// The samples as CSV: `t_s,process,rss_mib,cpu_s`.
pub fn csv(samples: &[Sample]) -> String {
    let mut out = String::from("t_s,process,rss_mib,cpu_s\n");
    for s in samples {
        let rss = s.rss_kib.map_or(String::new(), |k| format!("{:.1}", k as f64 / 1024.0));
        let cpu = s.cpu_s.map_or(String::new(), |c| format!("{c:.2}"));
        out.push_str(&format!("{:.1},{},{rss},{cpu}\n", s.t_s, s.process));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t_s: f64, mib: Option<u64>) -> Sample {
        Sample { t_s, process: "p".into(), rss_kib: mib.map(|m| m * 1024), cpu_s: Some(t_s / 2.0) }
    }

    #[test]
    fn growth_is_measured_from_the_warm_up_point() {
        let s = [at(0.0, Some(100)), at(1.0, Some(180)), at(2.0, Some(200)), at(3.0, Some(250)), at(4.0, Some(210))];
        let r = summarize(&s, "p", 2.0).unwrap();
        assert_eq!((r.start_mib, r.warmup_mib, r.final_mib, r.max_mib), (100.0, 200.0, 210.0, 250.0));
        assert_eq!(r.growth_mib, 10.0);
        assert_eq!(r.cpu_s, 2.0);
        assert!(!r.exited);
        assert!(summarize(&s, "other", 2.0).is_none());
    }

    #[test]
    fn a_process_that_vanished_is_reported() {
        let r = summarize(&[at(0.0, Some(100)), at(1.0, None)], "p", 0.5).unwrap();
        assert!(r.exited);
        assert_eq!(r.final_mib, 100.0);
    }

    #[test]
    fn reads_own_rss() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
