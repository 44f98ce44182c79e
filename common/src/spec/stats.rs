//! What a speculative run did: the one statistics type of the in-process
//! engine, the edge's link and the benchmarks.

use crate::generate::FinishReason;

/// Totals over the rounds of one or more [`drive`](super::drive) calls (the
/// edge resumes a generation on a new session into the same stats).
#[derive(Debug, Clone, Default)]
pub struct SpecStats {
    pub prompt_tokens: usize,
    /// Tokens committed and handed out, in order.
    pub tokens: Vec<u32>,
    pub generated: usize,
    pub rounds: usize,
    /// Draft tokens accepted (excluding the verifier's own token per round).
    pub accepted: usize,
    pub drafted_nodes: usize,
    pub target_forward_passes: usize,
    pub drafter_forward_passes: usize,
    pub draft_secs: f64,
    /// Verifier compute (in process: measured; remote: as the verdicts report it).
    pub verify_secs: f64,
    /// Time spent waiting for verdicts (in process: the verification itself;
    /// remote: network and cloud).
    pub wait_secs: f64,
    pub wall_secs: f64,
    /// Network round trips measured (a verdict's round trip less the
    /// verifier's compute), summed over `rtt_samples` rounds. Rounds whose
    /// verdict was already waiting when drafting ahead ended say nothing
    /// about it and are left out.
    pub rtt_ms_sum: f64,
    pub rtt_samples: usize,
    /// Payload bytes sent and received (0 in process).
    pub bytes_out: usize,
    pub bytes_in: usize,
    /// Sessions that shared each round's verifier pass (1 in process).
    pub batch_sizes: Vec<u32>,
    /// Rounds drafted while the previous verdict was in flight, and how many
    /// of them were sent (the bet won).
    pub ahead_drafted: usize,
    pub ahead_used: usize,
    /// `accept_hist[n]`: rounds that accepted `n` draft tokens.
    pub accept_hist: Vec<usize>,
    pub finish: Option<FinishReason>,
}

impl SpecStats {
    /// Mean tokens committed per verify step (accepted + the verifier's own).
    pub fn tokens_per_round(&self) -> f64 {
        self.generated as f64 / self.rounds.max(1) as f64
    }

    /// Mean measured network round trip, if any round measured one.
    pub fn mean_rtt_ms(&self) -> Option<f64> {
        (self.rtt_samples > 0).then(|| self.rtt_ms_sum / self.rtt_samples as f64)
    }

    pub(super) fn count_accepted(&mut self, n: usize) {
        self.accepted += n;
        if self.accept_hist.len() <= n {
            self.accept_hist.resize(n + 1, 0);
        }
        self.accept_hist[n] += 1;
    }
}
