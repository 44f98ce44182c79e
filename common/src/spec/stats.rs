//! What a speculative run did: the one statistics type of the in-process
//! engine, the edge's link and the benchmarks.

use serde::Serialize;

use crate::controller::{DraftPlan, Learned, Prediction};
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
    /// Rounds drafted ahead that were also sent ahead, before the verdict
    /// they bet on; of those, the lost bets the verifier answered as stale.
    pub ahead_sent: usize,
    pub ahead_stale: usize,
    /// Most rounds drafted ahead at once (bets stacked on bets).
    pub ahead_deepest: usize,
    /// Rounds whose trunk was a pool phrase sent without a drafter pass
    /// (hybrid drafting).
    pub pool_rounds: usize,
    /// Of those, rounds whose trunk copied the text's earlier tokens (prompt
    /// lookup), and the copied tokens the verifier accepted.
    pub copy_rounds: usize,
    pub copy_accepted: usize,
    /// Tokens the verifier decoded on its own between rounds that came back
    /// past a round's tree, and accepted nodes those tokens decided before
    /// their round arrived (see [`Verifier::send`](super::Verifier::send)).
    pub ran_on: usize,
    pub walked: usize,
    /// The passes behind those tokens, as the verifier streamed them (a
    /// pass may commit several: it verifies drafts of its own), and the
    /// rounds its tokens had left, answered with no pass.
    pub ran_on_passes: usize,
    pub overtaken: usize,
    /// Rounds sent empty, on a link where the verifier's own tokens would
    /// overtake any draft: the drafter stayed idle.
    pub listened: usize,
    /// Runner-up siblings sent (dynamic trees), and how many the verifier accepted.
    pub siblings: usize,
    pub siblings_accepted: usize,
    /// `accept_hist[n]`: rounds that accepted `n` draft tokens.
    pub accept_hist: Vec<usize>,
    /// Every round: what the policy predicted and what happened.
    pub round_log: Vec<RoundLog>,
    /// What the policy had learned when the run ended, for the next
    /// generation to start from (greedy runs of a learning policy).
    pub learned: Option<Learned>,
    pub finish: Option<FinishReason>,
    /// The remote session these rounds last ran on: a generation whose link
    /// failed resumes it, where the verifier still holds it.
    pub session: Option<String>,
}

/// One round as planned, predicted and measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundLog {
    pub plan: DraftPlan,
    /// The policy's expectation of `plan`, where it models one.
    pub predicted: Option<Prediction>,
    /// Draft nodes sent and draft tokens accepted.
    pub nodes: usize,
    pub accepted: usize,
    /// Drafting time (for a round drafted ahead: while the previous verdict
    /// was in flight).
    pub draft_ms: f64,
    /// Verifier compute, as measured or reported.
    pub verify_ms: f64,
    /// The network's share of the round trip, where one was measured.
    pub rtt_ms: Option<f64>,
    /// From the previous round's commit to this one's: what tokens per
    /// second are made of. Drafting hidden behind the previous round's
    /// flight is not in it, which is what a model that adds drafting, round
    /// trip and verification up misses.
    pub wall_ms: f64,
    /// Drafted while the previous verdict was in flight.
    pub ahead: bool,
    /// And sent then too, before the verdict it bet on.
    pub sent_ahead: bool,
    /// Rounds drafted ahead, betting on this one and on each other, when
    /// this round's verdict came.
    pub bets: usize,
    /// The trunk was a pool phrase, sent without a drafter pass.
    pub pooled: bool,
    /// The trunk was a copy of earlier text (then also `pooled`).
    pub copied: bool,
    /// Accepted nodes the verifier's own tokens decided before the round
    /// arrived, and its own tokens past the tree.
    pub walked: usize,
    pub ran_on: usize,
}

/// How far a policy's predictions were from its rounds, over the rounds it
/// predicted.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct PredictionError {
    pub rounds: usize,
    /// Mean predicted and actual accepted draft tokens, and the mean absolute error.
    pub accepted_predicted: f64,
    pub accepted_actual: f64,
    pub accepted_mae: f64,
    /// Mean predicted round time and mean wall time per round (ms), and the
    /// mean absolute error.
    pub round_ms_predicted: f64,
    pub round_ms_actual: f64,
    pub round_ms_mae: f64,
}

impl PredictionError {
    /// Over every predicted round of `logs`; `None` when none was predicted.
    pub fn over<'a>(logs: impl IntoIterator<Item = &'a RoundLog>) -> Option<Self> {
        let mut e = Self::default();
        for (log, p) in logs.into_iter().filter_map(|l| l.predicted.map(|p| (l, p))) {
            e.rounds += 1;
            e.accepted_predicted += p.accepted;
            e.accepted_actual += log.accepted as f64;
            e.accepted_mae += (p.accepted - log.accepted as f64).abs();
            e.round_ms_predicted += p.round_ms();
            e.round_ms_actual += log.wall_ms;
            e.round_ms_mae += (p.round_ms() - log.wall_ms).abs();
        }
        if e.rounds == 0 {
            return None;
        }
        let n = e.rounds as f64;
        for v in [
            &mut e.accepted_predicted,
            &mut e.accepted_actual,
            &mut e.accepted_mae,
            &mut e.round_ms_predicted,
            &mut e.round_ms_actual,
            &mut e.round_ms_mae,
        ] {
            *v /= n;
        }
        Some(e)
    }
}

impl SpecStats {
    /// The verifier's forward passes behind this run, as far as the edge
    /// can tell: one per round but those its own tokens had left (answered
    /// with no pass), plus those it ran alone. (Rounds stacked in one pass
    /// count one each.)
    pub fn target_passes(&self) -> usize {
        self.rounds - self.overtaken.min(self.rounds) + self.ran_on_passes
    }

    /// Mean tokens committed per verify step (accepted + the verifier's own).
    pub fn tokens_per_round(&self) -> f64 {
        self.generated as f64 / self.rounds.max(1) as f64
    }

    /// The policy's prediction error over this run's rounds.
    pub fn prediction_error(&self) -> Option<PredictionError> {
        PredictionError::over(&self.round_log)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn log(predicted: Option<(f64, f64)>, accepted: usize, wall_ms: f64) -> RoundLog {
        RoundLog {
            plan: DraftPlan::chain(4),
            predicted: predicted.map(|(accepted, ms)| Prediction { accepted, draft_ms: ms, ..Prediction::default() }),
            nodes: 4,
            accepted,
            draft_ms: 0.0,
            verify_ms: 0.0,
            rtt_ms: None,
            wall_ms,
            ahead: false,
            sent_ahead: false,
            bets: 0,
            pooled: false,
            copied: false,
            walked: 0,
            ran_on: 0,
        }
    }

    #[test]
    fn passes_count_the_passes_the_verifier_ran_alone() {
        // Three rounds: one verified in its own pass, one walked two tokens
        // before its pass, one its tokens left after one node (its next
        // token and two more decoded alone, no pass of its own).
        // The verifier ran 2 + 4 passes alone, one token each.
        let s = SpecStats { rounds: 3, walked: 2 + 1, ran_on: 2, ran_on_passes: 6, overtaken: 1, ..Default::default() };
        assert_eq!(s.target_passes(), 1 + (2 + 1) + (1 + 1 + 2));
        // The same tokens from passes that committed two at a time.
        let s = SpecStats { ran_on_passes: 3, ..s };
        assert_eq!(s.target_passes(), 2 + 3);
    }

    #[test]
    fn prediction_error_averages_over_predicted_rounds_only() {
        assert_eq!(PredictionError::over(&[log(None, 3, 10.0)]), None);
        let logs = [log(Some((2.0, 100.0)), 4, 80.0), log(None, 0, 1.0), log(Some((3.0, 50.0)), 1, 70.0)];
        let e = PredictionError::over(&logs).unwrap();
        assert_eq!(e.rounds, 2);
        assert_eq!((e.accepted_predicted, e.accepted_actual, e.accepted_mae), (2.5, 2.5, 2.0));
        assert_eq!((e.round_ms_predicted, e.round_ms_actual, e.round_ms_mae), (75.0, 75.0, 20.0));
    }
}
