//! The figures a comparison reports, computed from raw samples: latency
//! percentiles, throughput, acceptance, cloud cost and wire bytes per
//! token, and each one's ratio to the baseline mode of the same run.

use std::collections::BTreeMap;

use ouro_common::spec::{PredictionError, RoundLog};
use serde::Serialize;

/// One prompt generated in one mode by one client.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub mode: String,
    pub category: String,
    pub prompt: usize,
    pub tokens: Vec<u32>,
    /// Seconds from the request to the first generated token.
    pub ttft_s: f64,
    /// Seconds from the request to the last token.
    pub total_s: f64,
    /// When each generated token arrived, seconds after the request. Tokens
    /// of one speculative round arrive together.
    pub arrivals_s: Vec<f64>,
    /// Verify rounds, and tokens committed by each.
    pub rounds: usize,
    pub accepted_per_round: Vec<u32>,
    /// Target forward passes spent on this prompt's generated tokens
    /// (prefill excluded).
    pub target_passes: usize,
    /// Under greedy decoding, whether the text equals the baseline's.
    pub matches_baseline: Option<bool>,
    /// Speculative modes: every round as the controller planned and
    /// predicted it, and as it happened.
    pub round_log: Vec<RoundLog>,
}

impl Sample {
    /// Per-token inter-token latencies: a delivery of k tokens after a gap
    /// of g seconds counts as k latencies of g/k, so a mode that streams
    /// several tokens per round is credited with its real average pace
    /// rather than with zeros.
    pub fn itl_s(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut i = 0;
        let mut prev = self.arrivals_s.first().copied().unwrap_or(0.0);
        // The first delivery is TTFT, not an inter-token latency.
        while i < self.arrivals_s.len() && self.arrivals_s[i] == prev {
            i += 1;
        }
        while i < self.arrivals_s.len() {
            let t = self.arrivals_s[i];
            let k = self.arrivals_s[i..].iter().take_while(|&&a| a == t).count();
            out.extend(std::iter::repeat_n((t - prev) / k as f64, k));
            prev = t;
            i += k;
        }
        out
    }
}

/// One mode's run over a set of prompts at one link setting and concurrency,
/// with what the cloud and the link measured around it.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub mode: String,
    pub rtt_ms: f64,
    pub concurrency: usize,
    /// Cloud process CPU seconds (all threads, from the kernel) during the group.
    pub cloud_cpu_s: f64,
    /// Payload bytes through the emulated link, both directions.
    pub wire_bytes: u64,
    pub wall_s: f64,
    pub samples: Vec<Sample>,
}

/// The reported figures of a set of samples.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Figures {
    pub prompts: usize,
    pub tokens: usize,
    pub ttft_p50_s: f64,
    pub itl_p50_s: f64,
    pub itl_p95_s: f64,
    /// Generated tokens per second of a client's wall time (TTFT included).
    pub tokens_per_s: f64,
    pub mean_accepted_per_round: f64,
    pub target_passes_per_token: f64,
    /// `None` where the figure is the group's and samples were split by category.
    pub cloud_cpu_s_per_token: Option<f64>,
    pub wire_bytes_per_token: Option<f64>,
    pub mismatches: usize,
    /// The controller's predictions against its rounds, where it predicted.
    pub prediction: Option<PredictionError>,
}

/// The `q`-quantile (0..=1) by linear interpolation; NaN when empty.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Figures of `samples`; the cloud CPU and wire bytes are the group's
/// totals, given only when `samples` are the whole group.
pub fn figures<'a>(samples: impl IntoIterator<Item = &'a Sample>, cloud: Option<(f64, u64)>) -> Figures {
    let samples: Vec<&Sample> = samples.into_iter().collect();
    let tokens: usize = samples.iter().map(|s| s.tokens.len()).sum();
    let secs: f64 = samples.iter().map(|s| s.total_s).sum();
    let rounds: usize = samples.iter().map(|s| s.rounds).sum();
    let ttft: Vec<f64> = samples.iter().filter(|s| !s.tokens.is_empty()).map(|s| s.ttft_s).collect();
    let itl: Vec<f64> = samples.iter().flat_map(|s| s.itl_s()).collect();
    let per_token = |x: f64| (tokens > 0).then(|| x / tokens as f64);
    Figures {
        prompts: samples.len(),
        tokens,
        ttft_p50_s: percentile(&ttft, 0.5),
        itl_p50_s: percentile(&itl, 0.5),
        itl_p95_s: percentile(&itl, 0.95),
        tokens_per_s: if secs > 0.0 { tokens as f64 / secs } else { 0.0 },
        mean_accepted_per_round: if rounds > 0 { tokens as f64 / rounds as f64 } else { 0.0 },
        target_passes_per_token: per_token(samples.iter().map(|s| s.target_passes).sum::<usize>() as f64)
            .unwrap_or(0.0),
        cloud_cpu_s_per_token: cloud.and_then(|(cpu, _)| per_token(cpu)),
        wire_bytes_per_token: cloud.and_then(|(_, bytes)| per_token(bytes as f64)),
        mismatches: samples.iter().filter(|s| s.matches_baseline == Some(false)).count(),
        prediction: PredictionError::over(samples.iter().flat_map(|s| &s.round_log)),
    }
}

/// Each figure's ratio to the baseline's (`x / baseline`); `None` where
/// either is missing or the baseline is zero.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Ratios {
    pub tokens_per_s: Option<f64>,
    pub ttft_p50: Option<f64>,
    pub itl_p50: Option<f64>,
    pub itl_p95: Option<f64>,
    pub target_passes_per_token: Option<f64>,
    pub cloud_cpu_per_token: Option<f64>,
    pub wire_bytes_per_token: Option<f64>,
}

fn ratio(x: f64, base: f64) -> Option<f64> {
    (x.is_finite() && base.is_finite() && base != 0.0).then(|| x / base)
}

pub fn ratios(f: &Figures, base: &Figures) -> Ratios {
    let opt = |x: Option<f64>, b: Option<f64>| ratio(x?, b?);
    Ratios {
        tokens_per_s: ratio(f.tokens_per_s, base.tokens_per_s),
        ttft_p50: ratio(f.ttft_p50_s, base.ttft_p50_s),
        itl_p50: ratio(f.itl_p50_s, base.itl_p50_s),
        itl_p95: ratio(f.itl_p95_s, base.itl_p95_s),
        target_passes_per_token: ratio(f.target_passes_per_token, base.target_passes_per_token),
        cloud_cpu_per_token: opt(f.cloud_cpu_s_per_token, base.cloud_cpu_s_per_token),
        wire_bytes_per_token: opt(f.wire_bytes_per_token, base.wire_bytes_per_token),
    }
}

/// One row of the report: a mode at one RTT and concurrency, over all
/// prompts or one category.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub mode: String,
    pub rtt_ms: f64,
    pub concurrency: usize,
    pub category: String,
    pub figures: Figures,
    pub vs_baseline: Ratios,
}

/// Rows for every group, overall and per category, each against the
/// baseline mode's group at the same RTT and concurrency.
pub fn rows(groups: &[Group], baseline: &str) -> Vec<Row> {
    let key = |g: &Group| (g.rtt_ms.to_bits(), g.concurrency);
    let mut out = Vec::new();
    for g in groups {
        let base = groups.iter().find(|b| b.mode == baseline && key(b) == key(g));
        let mut cats: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
        for s in &g.samples {
            cats.entry(&s.category).or_default().push(s);
        }
        let overall = figures(&g.samples, Some((g.cloud_cpu_s, g.wire_bytes)));
        let base_overall = base.map(|b| figures(&b.samples, Some((b.cloud_cpu_s, b.wire_bytes))));
        out.push(Row {
            mode: g.mode.clone(),
            rtt_ms: g.rtt_ms,
            concurrency: g.concurrency,
            category: "all".into(),
            vs_baseline: base_overall.as_ref().map(|b| ratios(&overall, b)).unwrap_or_default(),
            figures: overall,
        });
        for (cat, samples) in cats {
            let f = figures(samples.iter().copied(), None);
            let b = base.map(|b| figures(b.samples.iter().filter(|s| s.category == cat), None));
            out.push(Row {
                mode: g.mode.clone(),
                rtt_ms: g.rtt_ms,
                concurrency: g.concurrency,
                category: cat.to_string(),
                vs_baseline: b.as_ref().map(|b| ratios(&f, b)).unwrap_or_default(),
                figures: f,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mode: &str, cat: &str, arrivals: &[f64], rounds: usize) -> Sample {
        Sample {
            mode: mode.into(),
            category: cat.into(),
            prompt: 0,
            tokens: vec![1; arrivals.len()],
            ttft_s: arrivals[0],
            total_s: *arrivals.last().unwrap(),
            arrivals_s: arrivals.to_vec(),
            rounds,
            accepted_per_round: vec![],
            target_passes: rounds,
            matches_baseline: Some(true),
            round_log: Vec::new(),
        }
    }

    #[test]
    fn predictions_are_summed_over_every_sample_s_rounds() {
        use ouro_common::controller::{DraftPlan, Prediction};
        let round = |predicted: f64, accepted: usize, wall_ms: f64| RoundLog {
            plan: DraftPlan::chain(4),
            predicted: Some(Prediction { accepted: predicted, verify_ms: 50.0, ..Prediction::default() }),
            nodes: 4,
            accepted,
            draft_ms: 0.0,
            verify_ms: 40.0,
            rtt_ms: None,
            wall_ms,
            ahead: false,
            sent_ahead: false,
            bets: 0,
            pooled: false,
            copied: false,
            walked: 0,
            ran_on: 0,
        };
        let mut a = sample("ouroboros", "qa", &[0.1, 0.2], 2);
        a.round_log = vec![round(2.0, 1, 40.0)];
        let mut b = sample("ouroboros", "qa", &[0.1, 0.2], 2);
        b.round_log = vec![round(1.0, 3, 80.0)];
        let f = figures([&a, &b], None);
        let e = f.prediction.unwrap();
        assert_eq!((e.rounds, e.accepted_predicted, e.accepted_actual, e.accepted_mae), (2, 1.5, 2.0, 1.5));
        assert_eq!((e.round_ms_predicted, e.round_ms_actual, e.round_ms_mae), (50.0, 60.0, 20.0));
        assert_eq!(figures([&sample("cloud-only", "qa", &[0.1], 0)], None).prediction, None);
    }

    #[test]
    fn percentile_interpolates() {
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(percentile(&[1.0, 2.0], 0.5), 1.5);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95), 4.8);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn itl_spreads_a_delivery_over_its_tokens() {
        // First token at 1.0; then three at once at 1.3, then one at 1.4.
        let s = sample("m", "c", &[1.0, 1.3, 1.3, 1.3, 1.4], 2);
        let itl = s.itl_s();
        assert_eq!(itl.len(), 4);
        for x in &itl[..3] {
            assert!((x - 0.1).abs() < 1e-12);
        }
        assert!((itl[3] - 0.1).abs() < 1e-12);
        // Tokens delivered with the first one are part of TTFT.
        let s = sample("m", "c", &[1.0, 1.0, 2.0], 1);
        assert_eq!(s.itl_s(), vec![1.0]);
    }

    #[test]
    fn figures_and_ratios_against_the_baseline() {
        let base = Group {
            mode: "cloud-only".into(),
            rtt_ms: 20.0,
            concurrency: 1,
            cloud_cpu_s: 4.0,
            wire_bytes: 400,
            wall_s: 4.0,
            samples: vec![sample("cloud-only", "qa", &[1.0, 2.0, 3.0, 4.0], 4)],
        };
        let fast = Group {
            mode: "ouroboros".into(),
            cloud_cpu_s: 1.0,
            wire_bytes: 200,
            samples: vec![sample("ouroboros", "qa", &[1.0, 2.0, 2.0, 2.0], 2)],
            ..base.clone()
        };
        let rows = rows(&[base, fast], "cloud-only");
        assert_eq!(rows.len(), 4, "overall and one category per group");
        let r = rows.iter().find(|r| r.mode == "ouroboros" && r.category == "all").unwrap();
        assert_eq!(r.figures.tokens, 4);
        assert_eq!(r.figures.tokens_per_s, 2.0);
        assert_eq!(r.figures.mean_accepted_per_round, 2.0);
        assert_eq!(r.figures.cloud_cpu_s_per_token, Some(0.25));
        assert_eq!(r.vs_baseline.tokens_per_s, Some(2.0));
        assert_eq!(r.vs_baseline.cloud_cpu_per_token, Some(0.25));
        assert_eq!(r.vs_baseline.wire_bytes_per_token, Some(0.5));
        assert_eq!(r.vs_baseline.target_passes_per_token, Some(0.5));
        let cat = rows.iter().find(|r| r.mode == "ouroboros" && r.category == "qa").unwrap();
        assert_eq!(cat.figures.cloud_cpu_s_per_token, None, "group totals are not split by category");
        assert_eq!(cat.vs_baseline.tokens_per_s, Some(2.0));
    }

    #[test]
    fn mismatches_are_counted() {
        let mut s = sample("m", "c", &[1.0, 2.0], 2);
        s.matches_baseline = Some(false);
        assert_eq!(figures([&s], None).mismatches, 1);
    }
}
