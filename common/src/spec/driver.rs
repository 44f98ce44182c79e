//! The round driver: plan → draft → verify → commit until the request is
//! done. The in-process engine, the edge's link and the benchmarks' replay
//! all run this loop; they differ only in their [`Verifier`] and their
//! [`DraftSource`].

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::controller::{DraftPlan, DraftPolicy, Prediction, RoundFeedback};
use crate::engine::{Ahead, Draft, EngineError};
use crate::generate::FinishReason;
use crate::tree::TreeLimits;

use super::gap::Gap;
use super::stats::{RoundLog, SpecStats};
use super::strategy::DraftSource;
use super::verifier::Verifier;

/// One generation's bounds.
#[derive(Debug, Clone)]
pub struct Rounds<'a> {
    /// Every committed token so far (the verifier holds them too).
    pub prompt_len: usize,
    pub max_new: usize,
    pub stop_ids: &'a [u32],
    /// Sampled runs plan from acceptance alone (see [`drive`]).
    pub sampled: bool,
    /// Draft the next round while a verdict is in flight.
    pub pipeline: bool,
    pub limits: TreeLimits,
    pub vocab: usize,
    /// No round starts once the committed text is one token short of this.
    pub max_context: usize,
    /// Let a remote verifier decode on its own while no round is in hand
    /// (greedy only; see [`Verifier::send`]).
    pub run_on: bool,
}

/// Most rounds drafted ahead at once (sent ahead, they stack).
const MAX_AHEAD: usize = 4;

fn ms_duration(ms: f64) -> Duration {
    Duration::from_secs_f64((ms / 1e3).clamp(0.0, 3600.0))
}

/// Tokens the verifier streamed on its own since the last verdict, and how
/// far they went out to the caller.
struct Streamed<'a> {
    tokens: Vec<u32>,
    /// Tokens the request had left when they started.
    room: usize,
    stop_ids: &'a [u32],
    /// Of `tokens`, how many went out.
    shown: usize,
    /// They reached the request's end (its length, a stop token).
    ended: bool,
    /// The caller broke off.
    cancelled: bool,
    /// The verifier's passes behind `tokens`: it streams each pass's tokens at once.
    passes: usize,
}

impl<'a> Streamed<'a> {
    fn new(room: usize, stop_ids: &'a [u32]) -> Self {
        Self { tokens: Vec::new(), room, stop_ids, shown: 0, ended: false, cancelled: false, passes: 0 }
    }

    /// Takes `toks` in and hands the caller what the request still has room
    /// for, up to a stop token.
    fn take(&mut self, toks: &[u32], on_tokens: &mut impl FnMut(&[u32]) -> ControlFlow<()>) {
        self.tokens.extend_from_slice(toks);
        self.passes += usize::from(!toks.is_empty());
        if self.ended || self.cancelled {
            return;
        }
        let mut out = &toks[..toks.len().min(self.room - self.shown)];
        if let Some(i) = out.iter().position(|t| self.stop_ids.contains(t)) {
            out = &out[..=i];
        }
        self.ended = out.len() < toks.len() || self.shown + out.len() == self.room;
        self.shown += out.len();
        self.cancelled = !out.is_empty() && on_tokens(out).is_break();
    }
}

/// A round drafted while the previous verdict was in flight.
struct AheadRound {
    ahead: Ahead,
    /// Its drafting time: all of it, and the trunk's share.
    ms: f64,
    trunk_ms: f64,
    plan: DraftPlan,
    /// What the policy expected of `plan`.
    predicted: Option<Prediction>,
    /// When it was sent, if it went ahead of the verdict it bets on.
    sent: Option<Instant>,
    /// The run-on it was sent with.
    run_on: usize,
}

/// Runs rounds until `max_new` tokens, a stop token, the context's end, or
/// `on_tokens` breaking (a cancelled request). Each round's committed tokens
/// go to `on_tokens` and into `stats`, so a caller whose verifier fails
/// mid-way knows exactly what was committed.
pub async fn drive<V: Verifier>(
    verifier: &mut V,
    source: &mut (dyn DraftSource + Send),
    policy: &mut (dyn DraftPolicy + Send),
    rounds: &Rounds<'_>,
    stats: &mut SpecStats,
    mut on_tokens: impl FnMut(&[u32]) -> ControlFlow<()> + Send,
) -> Result<FinishReason, V::Error> {
    let mut generated = 0;
    // Rounds drafted ahead, oldest first: each bets on the one before it,
    // the first on the round in flight.
    let mut queue: VecDeque<AheadRound> = VecDeque::new();
    // The drafter's time per pass when drafting ahead, last measured.
    let mut pass_ms: Option<f64> = None;
    let mut last_commit = Instant::now();
    let mut finish = None;
    // Drafting past the end of the request would be wasted work.
    let plan_within = |policy: &dyn DraftPolicy, room: usize| {
        let plan = policy.plan();
        DraftPlan { trunk_len: plan.trunk_len.min(room.saturating_sub(1)), ..plan }
    };
    // The same bound for trees sized outside the plan (copies of the text):
    // no node deeper than the tokens the request and the context have left.
    let limits_within = |room: usize, bet: usize| {
        let context_left = rounds.max_context.saturating_sub(rounds.prompt_len + bet + 2);
        let depth = rounds.limits.max_depth.min(room.saturating_sub(1)).min(context_left);
        TreeLimits { max_depth: depth, ..rounds.limits }
    };
    // After a round's verdict, a greedy verifier with nothing in hand may
    // run on, as far as the request goes, where the gap before the next
    // round reaches it is worth filling ([`Gap`]). Until the gap is
    // measured it runs on (the first rounds measure it). `bet` counts the
    // tokens the round builds on past the request's start.
    let mut gap = Gap::default();
    let runs_on = rounds.run_on && !rounds.sampled && verifier.remote();
    if let Some(costs) = policy.round_costs() {
        gap.observe_pass(costs.verify.cost(1));
    }
    let run_on = |gap: &Gap, bet: usize, sent_ahead: bool| {
        // Rounds sent ahead before the gap was measured mean bets are
        // winning on a link not yet known to be long: no run-on for them.
        let fill = gap.worth_filling().unwrap_or(!sent_ahead);
        if runs_on && fill {
            rounds.max_new.saturating_sub(bet + 1)
        } else {
            0
        }
    };
    // Tokens the verifier decodes on its own go out as they come, before
    // the verdict that accounts for them: since the last verdict, all belong
    // to the next one.
    let mut streamed = Streamed::new(rounds.max_new, rounds.stop_ids);
    let mut heard_run_on = false;
    while generated < rounds.max_new {
        if rounds.prompt_len + generated + 1 >= rounds.max_context {
            finish = Some(FinishReason::Length);
            break;
        }
        let remaining = rounds.max_new - generated;
        let was_ahead = !queue.is_empty();
        // Copies are sized from measured costs, which a seeded sampled text
        // must not depend on.
        if let Some(costs) = policy.round_costs().filter(|_| !rounds.sampled) {
            source.price(costs);
        }
        let (draft, draft_ms, trunk_ms, plan, predicted, sent_early, ahead_cap, listening) = match queue.pop_front() {
            Some(a) => {
                stats.ahead_used += 1;
                (a.ahead.draft, a.ms, a.trunk_ms, a.plan, a.predicted, a.sent, Some(a.run_on), false)
            }
            // On a link long enough that the verifier runs on, its own
            // tokens overtake a draft before it lands: of the rounds drafted
            // there, most were answered with no pass, and the verifier
            // needed as many passes per token as with no drafter at all
            // (docs/BENCHMARKS.md, session 15). So the drafter stays idle
            // and the round goes out empty, only to hear what the verifier
            // decoded (with drafts of its own); drafting resumes when the
            // gap closes. Only with a verifier seen running on: to one that
            // does not, an empty round would be a round trip per token.
            None if runs_on && heard_run_on && gap.worth_filling() == Some(true) => {
                verifier.drain_ran_on(&mut |toks| streamed.take(toks, &mut on_tokens));
                stats.listened += 1;
                (Draft::empty(&rounds.limits, rounds.vocab), 0.0, 0.0, DraftPlan::chain(0), None, None, None, true)
            }
            None => {
                verifier.drain_ran_on(&mut |toks| streamed.take(toks, &mut on_tokens));
                let plan = plan_within(policy, remaining);
                let predicted = policy.predict(&plan);
                let t = Instant::now();
                let d = source.draft(&plan, &limits_within(remaining, generated), rounds.vocab)?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                stats.draft_secs += ms / 1e3;
                gap.observe_draft(ms);
                (d, ms, ms, plan, predicted, None, None, false)
            }
        };
        // A round sent ahead told the verifier its run-on when it went.
        let cap = ahead_cap.filter(|_| sent_early.is_some()).unwrap_or_else(|| run_on(&gap, generated, false));
        let sent = match sent_early {
            Some(at) => at,
            None => {
                verifier.send(&draft, cap).await?;
                Instant::now()
            }
        };
        // While the verdict travels, draft the next round on the bet that
        // this one is accepted whole. A verifier that takes rounds sent ahead
        // gets each at once, and the bets stack while there is time before
        // the verdict is due: with a long round trip the verifier then has
        // the next rounds in hand when it finishes this one.
        let mut ahead_ms = None;
        // When this round's verdict should come: a round trip and its
        // verification after it was sent, and, sent ahead, no sooner than its
        // verification after the verdict of the round before (the verifier
        // takes rounds in order).
        let due = predicted.map(|p| {
            let flight = sent + ms_duration(p.rtt_ms + p.verify_ms);
            match sent_early {
                Some(_) => flight.max(last_commit + ms_duration(p.verify_ms)),
                None => flight,
            }
        });
        // Bets stack as deep as the time before the verdict allows, which
        // is measured; under sampling that would make a seeded text depend
        // on timing, so sampled runs keep exactly one bet in flight, drafted
        // every round whatever the clock says.
        let depth = if verifier.sends_ahead() && !rounds.sampled { MAX_AHEAD } else { 1 };
        let mut bet_tokens =
            generated + draft.trunk_len + 1 + queue.iter().map(|a| a.ahead.draft.trunk_len + 1).sum::<usize>();
        while rounds.pipeline && queue.len() < depth && !listening {
            let room_after = rounds.max_new.saturating_sub(bet_tokens);
            if room_after < 2 {
                break;
            }
            let plan = plan_within(policy, room_after);
            if !queue.is_empty() {
                // A deeper bet only if it is drafted before the verdict it
                // stacks on is due.
                let needed = pass_ms.map(|ms| ms_duration(ms * (plan.trunk_len + 1) as f64));
                match (due, needed) {
                    (Some(due), Some(needed)) if Instant::now() + needed <= due => {}
                    _ => break,
                }
            }
            let predicted = policy.predict(&plan);
            verifier.drain_ran_on(&mut |toks| streamed.take(toks, &mut on_tokens));
            let last = queue.back().map_or(&draft, |a| &a.ahead.draft);
            let t = Instant::now();
            let passes = source.forward_passes();
            let limits = limits_within(room_after, bet_tokens);
            let a = verifier.while_in_flight(|| source.draft_ahead(last, &plan, &limits, rounds.vocab))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            stats.draft_secs += ms / 1e3;
            let Some(a) = a else { break };
            stats.ahead_drafted += 1;
            // Drafting ahead first feeds the trunk's last token (its logits
            // give the guessed verifier token), a pass that a round drafted
            // after its verdict folds into its first one. Left in, it would
            // price every trunk token a pass too high.
            let passes = source.forward_passes().saturating_sub(passes);
            pass_ms = Some(ms / passes.max(1) as f64);
            let trunk_ms = if passes >= 2 { ms * (passes - 1) as f64 / passes as f64 } else { ms };
            // Sent at once, the round is verified right after the one it
            // bets on if the bet wins: no round trip in between. A bet on a
            // text that stops would only make the verifier run past it.
            let early = verifier.sends_ahead() && !a.assumed.iter().any(|t| rounds.stop_ids.contains(t));
            let cap = run_on(&gap, bet_tokens, early);
            let sent = if early {
                verifier.send_ahead(&a.draft, &a.assumed, cap).await?;
                stats.ahead_sent += 1;
                Some(Instant::now())
            } else {
                None
            };
            bet_tokens += a.draft.trunk_len + 1;
            queue.push_back(AheadRound { ahead: a, ms, trunk_ms, plan, predicted, sent, run_on: cap });
            stats.ahead_deepest = stats.ahead_deepest.max(queue.len());
            ahead_ms = Some(ms);
            if !early {
                // Nothing can stack on a bet the verifier has not got.
                break;
            }
        }
        let t = Instant::now();
        let reply = verifier.verdict(&draft, &mut |toks| streamed.take(toks, &mut on_tokens)).await?;
        let waited_ms = t.elapsed().as_secs_f64() * 1e3;
        let round_trip_ms = sent.elapsed().as_secs_f64() * 1e3;
        stats.wait_secs += waited_ms / 1e3;
        stats.verify_secs += reply.compute_ms / 1e3;
        stats.bytes_out += reply.bytes_out;
        stats.bytes_in += reply.bytes_in;
        stats.batch_sizes.push(reply.batch_size);
        let verdict = reply.verdict;
        let (on_trunk, branches) = source.commit(&draft, &verdict);
        // Tokens the verifier ran on past the tree follow the verdict's.
        if !reply.ran_on.is_empty() {
            source.extend(&reply.ran_on);
            stats.ran_on += reply.ran_on.len();
        }
        stats.walked += reply.walked;
        stats.overtaken += usize::from(reply.ran_ahead > reply.walked);
        // A verdict that waited on the verifier's own passes (it ran on
        // before the round arrived) does not time the round trip.
        let waited_on_run_on = reply.walked > 0 || !reply.ran_on.is_empty();
        // A verdict that was already waiting when drafting ahead ended says
        // only that the round trip was shorter than that drafting; one for a
        // round sent ahead waited behind the last round's verification.
        // The verifier says how long the round was there; one that does not
        // was there for its pass, unless it ran on first.
        let at_verifier = reply.server_ms.unwrap_or(reply.compute_ms);
        let rtt_ms = match ahead_ms {
            _ if !verifier.remote() => Some(0.0),
            _ if sent_early.is_some() => None,
            _ if reply.server_ms.is_none() && waited_on_run_on => None,
            Some(_) if waited_ms < 0.5 => None,
            _ => Some((round_trip_ms - at_verifier).max(0.0)),
        };
        if let Some(rtt) = rtt_ms.filter(|_| verifier.remote()) {
            stats.rtt_ms_sum += rtt;
            stats.rtt_samples += 1;
            gap.observe_rtt(rtt);
        }
        if !reply.shared_pass {
            gap.observe_pass(reply.compute_ms);
        }
        // Under sampling, which sample a seed yields depends on the tree
        // shape; plans made from wall-clock timings would make seeded runs
        // irreproducible. So sampled runs plan from acceptance alone (with
        // the policy's default costs); greedy output cannot depend on the
        // plan, so greedy runs use the measured costs.
        let timed = !rounds.sampled;
        // A copy's length is not the plan's, and copies are sent where they
        // are likely right: the plan's acceptance must not learn from them.
        let (offered_depth, accepted_len) = if draft.copied.is_some() { (0, 0) } else { (draft.trunk_len, on_trunk) };
        // An empty round says nothing of the drafts the policy plans.
        if !listening {
            policy.observe(&RoundFeedback {
                offered_depth,
                accepted_len,
                branches,
                nodes: draft.tree.len(),
                // A pool phrase sent as it is says nothing about the drafter's speed.
                draft_ms: timed.then_some(trunk_ms).filter(|_| draft.pooled.is_none()),
                // A pass shared with stacked rounds says nothing about this
                // round's size.
                verify_ms: timed.then_some(reply.compute_ms).filter(|_| !reply.shared_pass),
                rtt_ms: rtt_ms.filter(|_| timed),
                ahead: was_ahead,
                sent_ahead: sent_early.is_some(),
                rescued: draft.siblings.iter().any(|(n, _)| verdict.accepted.contains(n)),
            });
        }
        stats.rounds += 1;
        stats.pool_rounds += usize::from(draft.pooled.is_some());
        if draft.copied.is_some() {
            stats.copy_rounds += 1;
            stats.copy_accepted += on_trunk;
        }
        stats.siblings += draft.siblings.len();
        stats.siblings_accepted += draft.siblings.iter().filter(|(n, _)| verdict.accepted.contains(n)).count();
        stats.drafted_nodes += draft.tree.len();
        stats.count_accepted(verdict.accepted.len());
        stats.round_log.push(RoundLog {
            plan,
            predicted,
            nodes: draft.tree.len(),
            accepted: verdict.accepted.len(),
            draft_ms,
            verify_ms: reply.compute_ms,
            rtt_ms: rtt_ms.filter(|_| verifier.remote()),
            wall_ms: last_commit.elapsed().as_secs_f64() * 1e3,
            ahead: was_ahead,
            sent_ahead: sent_early.is_some(),
            bets: queue.len(),
            pooled: draft.pooled.is_some(),
            copied: draft.copied.is_some(),
            walked: reply.walked,
            ran_on: reply.ran_on.len(),
        });
        last_commit = Instant::now();

        let mut emitted = verdict.emitted_tokens(&draft.tree);
        let ran_past = !reply.ran_on.is_empty();
        emitted.extend_from_slice(&reply.ran_on);
        let Streamed { tokens: streamed_tokens, shown, cancelled, passes, .. } =
            std::mem::replace(&mut streamed, Streamed::new(0, rounds.stop_ids));
        stats.ran_on_passes += passes;
        heard_run_on |= passes > 0;
        if emitted.get(..streamed_tokens.len()) != Some(&streamed_tokens[..]) {
            let verdict = emitted[..reply.ran_ahead.min(emitted.len())].to_vec();
            return Err(EngineError::RanOnMismatch { streamed: streamed_tokens, verdict }.into());
        }
        if ran_past || queue.front().is_some_and(|a| a.ahead.assumed != emitted) {
            // Lost the bet, and with it every bet stacked on it; `commit` has
            // already rolled the drafter back. Rounds sent ahead are answered
            // as stale, which the verifier skips.
            stats.ahead_stale += queue.drain(..).filter(|a| a.sent.is_some()).count();
        }
        emitted.truncate(remaining);
        if let Some(i) = emitted.iter().position(|t| rounds.stop_ids.contains(t)) {
            emitted.truncate(i + 1);
            finish = Some(FinishReason::Stop);
        }
        generated += emitted.len();
        streamed.room = rounds.max_new - generated;
        stats.generated += emitted.len();
        stats.tokens.extend_from_slice(&emitted);
        // What was streamed is the verdict's first tokens, cut as it was cut.
        let rest = &emitted[shown.min(emitted.len())..];
        if cancelled || (!rest.is_empty() && on_tokens(rest).is_break()) {
            finish = Some(FinishReason::Cancelled);
        }
        if finish.is_some() {
            break;
        }
    }
    stats.drafter_forward_passes += source.forward_passes();
    let finish = finish.unwrap_or(FinishReason::Length);
    stats.finish = Some(finish);
    Ok(finish)
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::*;
    use crate::controller::{BranchFeedback, FixedPolicy};
    use crate::draft::PhrasePool;
    use crate::engine::Draft;
    use crate::sampling::SamplingParams;
    use crate::spec::strategy::replay::Replay;
    use crate::spec::strategy::tests::{greedy_along, rounds, Oracle};
    use crate::spec::{block_on_ready, DraftStrategy, Opening, Reply};

    /// A drafter that replays `text`, each token right with chance `accept`.
    fn replay<'a>(
        pool: &'a mut PhrasePool,
        text: &[u32],
        accept: f64,
        seed: u64,
        stop_ids: &'a [u32],
    ) -> Box<dyn DraftSource + Send + 'a> {
        let replay = Replay { reference: text.to_vec(), gamma: 4, accept, seed };
        let at = Opening {
            drafter: None,
            prompt: &[0],
            sampling: SamplingParams::greedy(),
            stop_ids,
            pool,
            draft_window: 0,
        };
        replay.open(at).unwrap()
    }

    /// Replays `text` with every draft token right, `gamma` a round.
    fn go(
        text: &[u32],
        r: &Rounds<'_>,
        policy: &mut (dyn DraftPolicy + Send),
        on_tokens: impl FnMut(&[u32]) -> ControlFlow<()> + Send,
    ) -> (FinishReason, SpecStats) {
        let mut pool = PhrasePool::default();
        let mut source = replay(&mut pool, text, 1.0, 0, &[]);
        let mut oracle = Oracle { text: text.to_vec(), pos: 0 };
        let mut stats = SpecStats::default();
        let finish = block_on_ready(drive(&mut oracle, &mut *source, policy, r, &mut stats, on_tokens)).unwrap();
        (finish, stats)
    }

    #[test]
    fn a_round_is_cut_after_its_stop_token() {
        let text: Vec<u32> = (1..=20).collect();
        let mut seen = Vec::new();
        let (finish, stats) = go(&text, &rounds(1, 20, &[7]), &mut FixedPolicy(4), |t| {
            seen.extend_from_slice(t);
            ControlFlow::Continue(())
        });
        assert_eq!(finish, FinishReason::Stop);
        assert_eq!(seen, (1..=7).collect::<Vec<_>>());
        assert_eq!((stats.tokens, stats.generated), (seen.clone(), 7));
    }

    /// Drafts the next six tokens of its text whatever the plan says (as a
    /// pool branch may run past the planned trunk).
    struct Overdraft {
        text: Vec<u32>,
        done: usize,
    }

    impl DraftSource for Overdraft {
        fn draft(&mut self, _: &DraftPlan, _: &TreeLimits, _: usize) -> Result<Draft, crate::engine::EngineError> {
            let tokens = &self.text[self.done..self.done + 6];
            let dists = tokens.iter().map(|&t| crate::sampling::SparseDist::point(t)).collect();
            Ok(Draft {
                tree: crate::tree::DraftTree::chain(tokens),
                dists,
                trunk_len: 6,
                branches: Vec::new(),
                pooled: None,
                copied: None,
                siblings: Vec::new(),
            })
        }

        fn commit(&mut self, draft: &Draft, verdict: &crate::verify::Verdict) -> (usize, Vec<BranchFeedback>) {
            self.done += verdict.emitted_tokens(&draft.tree).len();
            (draft.trunk_accepted(verdict), Vec::new())
        }

        fn extend(&mut self, tokens: &[u32]) {
            self.done += tokens.len();
        }
    }

    #[test]
    fn a_round_is_cut_at_the_length_limit() {
        let text: Vec<u32> = (1..=20).collect();
        let mut source = Overdraft { text: text.clone(), done: 0 };
        let mut oracle = Oracle { text, pos: 0 };
        let mut stats = SpecStats::default();
        let r = rounds(1, 3, &[]);
        let on_tokens = |_: &[u32]| ControlFlow::Continue(());
        let finish =
            block_on_ready(drive(&mut oracle, &mut source, &mut FixedPolicy(2), &r, &mut stats, on_tokens)).unwrap();
        // The round committed seven tokens; the request wanted three.
        assert_eq!(finish, FinishReason::Length);
        assert_eq!(stats.tokens, [1, 2, 3]);
        assert_eq!((stats.rounds, stats.generated), (1, 3));
    }

    #[test]
    fn the_context_end_stops_the_rounds() {
        let text: Vec<u32> = (1..=20).collect();
        let r = Rounds { max_context: 8, ..rounds(1, 20, &[]) };
        let (finish, stats) = go(&text, &r, &mut FixedPolicy(2), |_| ControlFlow::Continue(()));
        assert_eq!(finish, FinishReason::Length);
        // Three tokens a round; a round needs two free slots past the text.
        assert_eq!(stats.generated, 6);
    }

    #[test]
    fn a_caller_that_breaks_cancels_after_that_round() {
        let text: Vec<u32> = (1..=20).collect();
        let (finish, stats) = go(&text, &rounds(1, 20, &[]), &mut FixedPolicy(4), |_| ControlFlow::Break(()));
        assert_eq!(finish, FinishReason::Cancelled);
        assert_eq!(stats.rounds, 1);
        assert_eq!(stats.accept_hist, [0, 0, 0, 0, 1]);
    }

    #[test]
    fn every_round_is_logged_with_the_policy_s_prediction() {
        let text: Vec<u32> = (1..=40).collect();
        let r = rounds(1, 30, &[]);
        let (_, fixed) = go(&text, &r, &mut FixedPolicy(4), |_| ControlFlow::Continue(()));
        assert_eq!(fixed.round_log.len(), fixed.rounds);
        assert!(fixed.round_log.iter().all(|l| l.predicted.is_none() && l.plan == DraftPlan::chain(4)));
        assert_eq!(fixed.prediction_error(), None);

        let mut controller = crate::controller::Controller::default();
        let (_, adaptive) = go(&text, &r, &mut controller, |_| ControlFlow::Continue(()));
        assert_eq!(adaptive.round_log.len(), adaptive.rounds);
        assert!(adaptive.round_log.iter().all(|l| l.predicted.is_some()));
        // The replay accepts every token it drafts, so the log's accepted
        // counts add up to the run's.
        assert_eq!(adaptive.round_log.iter().map(|l| l.accepted).sum::<usize>(), adaptive.accepted);
        let e = adaptive.prediction_error().unwrap();
        assert_eq!(e.rounds, adaptive.rounds);
        assert!(e.accepted_actual > 0.0 && e.accepted_predicted > 0.0, "{e:?}");
    }

    /// A remote oracle that decodes `ahead` tokens of its text on its own
    /// before each round arrives, streaming them as a cloud that ran on
    /// does, and walks the round's tree along them.
    struct RunsOn {
        text: Vec<u32>,
        pos: usize,
        ahead: usize,
        /// The run-on each round was sent with.
        caps: Vec<usize>,
        /// How long each verdict takes to come back: the link.
        link: Duration,
    }

    impl Verifier for RunsOn {
        type Error = crate::engine::EngineError;

        fn remote(&self) -> bool {
            true
        }

        async fn send(&mut self, _: &Draft, run_on: usize) -> Result<(), Self::Error> {
            self.caps.push(run_on);
            Ok(())
        }

        async fn verdict(
            &mut self,
            draft: &Draft,
            ran_on: &mut (dyn FnMut(&[u32]) + Send),
        ) -> Result<Reply, Self::Error> {
            use crate::verify::run_on::{left_verdict, walk, Walk};
            std::thread::sleep(self.link);
            let own = self.text[self.pos..(self.pos + self.ahead).min(self.text.len())].to_vec();
            for t in &own {
                ran_on(std::slice::from_ref(t));
            }
            let mut reply = match walk(&draft.tree, &own)? {
                Walk::Left { path } => {
                    let mut r = Reply::local(left_verdict(&draft.tree, &path, &own), 0.0);
                    r.ran_on = own[path.len() + 1..].to_vec();
                    r.walked = path.len();
                    self.pos += own.len();
                    r
                }
                Walk::Reached(below) => {
                    let sub = greedy_along(&self.text[self.pos + own.len()..], below.tree());
                    self.pos += own.len() + sub.accepted.len() + 1;
                    let mut r = Reply::local(below.verdict(&draft.tree, &sub), 1.0);
                    r.walked = own.len();
                    r
                }
            };
            reply.ran_ahead = own.len();
            reply.server_ms = Some(0.0);
            Ok(reply)
        }
    }

    #[test]
    fn tokens_a_verifier_runs_on_stream_at_once_and_keep_the_text() {
        let text: Vec<u32> = (1..=80).collect();
        for (ahead, accept, stop) in [(2, 1.0, None), (3, 0.6, None), (1, 0.8, Some(23)), (2, 0.0, Some(40))] {
            let stop_ids: Vec<u32> = stop.into_iter().collect();
            let r = Rounds { run_on: true, ..rounds(1, 50, &stop_ids) };
            let mut pool = PhrasePool::default();
            let mut source = replay(&mut pool, &text, accept, 5, &stop_ids);
            let mut v = RunsOn { text: text.clone(), pos: 0, ahead, caps: Vec::new(), link: Duration::ZERO };
            let mut stats = SpecStats::default();
            let mut seen = Vec::new();
            let mut deliveries = 0;
            let on_tokens = |t: &[u32]| {
                assert!(!t.is_empty(), "an empty delivery");
                seen.extend_from_slice(t);
                deliveries += 1;
                ControlFlow::Continue(())
            };
            let finish =
                block_on_ready(drive(&mut v, &mut *source, &mut FixedPolicy(4), &r, &mut stats, on_tokens)).unwrap();
            let want: Vec<u32> = match stop {
                Some(s) => (1..=s).collect(),
                None => (1..=50).collect(),
            };
            let case = format!("ahead {ahead}, accept {accept}, stop {stop:?}");
            assert_eq!(seen, want, "{case}");
            assert_eq!(stats.tokens, want, "{case}");
            assert_eq!(finish, if stop.is_some() { FinishReason::Stop } else { FinishReason::Length }, "{case}");
            // Each token the verifier ran on went out on its own, before its verdict.
            assert!(deliveries > stats.rounds, "{case}: {deliveries} deliveries in {} rounds", stats.rounds);
            assert!(stats.walked + stats.ran_on > 0, "{case}");
            // A pass a token: the passes the verifier streamed and the
            // rounds it overtook account for every token it ran on.
            assert_eq!(stats.target_passes(), stats.rounds + stats.walked + stats.ran_on, "{case}");
            // Until the gap was measured (a round trip, a drafting, a pass),
            // the verifier is told to run on to the request's end; rounds
            // take no time here, so from then on no pass fits in the gap
            // (it runs on all the same).
            assert_eq!(v.caps[0], 49, "{case}");
            let measured = v.caps.iter().position(|&c| c == 0).unwrap_or(v.caps.len());
            assert!(v.caps[measured..].iter().all(|&c| c == 0), "{case}: {:?}", v.caps);
            if accept > 0.5 {
                assert!(measured < v.caps.len(), "{case}: never measured, {:?}", v.caps);
            }
        }
    }

    /// 40 tokens of `text` from a verifier 3 ms away (a pass of 1 ms: a
    /// gap worth filling as soon as it is measured) that runs `ahead`
    /// tokens on before each round.
    fn behind_a_link(text: &[u32], ahead: usize) -> (RunsOn, SpecStats) {
        let r = Rounds { run_on: true, ..rounds(1, 40, &[]) };
        let mut pool = PhrasePool::default();
        let mut source = replay(&mut pool, text, 0.7, 5, &[]);
        let mut v = RunsOn { text: text.to_vec(), pos: 0, ahead, caps: Vec::new(), link: Duration::from_millis(3) };
        let mut stats = SpecStats::default();
        let on_tokens = |_: &[u32]| ControlFlow::Continue(());
        block_on_ready(drive(&mut v, &mut *source, &mut FixedPolicy(4), &r, &mut stats, on_tokens)).unwrap();
        assert_eq!(stats.tokens, text[..40].to_vec());
        (v, stats)
    }

    #[test]
    fn on_a_link_the_verifier_outruns_rounds_go_out_empty_and_keep_the_text() {
        let text: Vec<u32> = (1..=80).collect();
        let (v, stats) = behind_a_link(&text, 2);
        let first = stats.round_log.iter().position(|l| l.nodes == 0).expect("an empty round");
        assert!(first <= 3, "drafting went on once the gap was known: {first}");
        // From then on the drafter stays idle, and every round lets the
        // verifier run on to the request's end.
        assert!(stats.round_log[first..].iter().all(|l| l.nodes == 0));
        assert_eq!(stats.listened, stats.rounds - first);
        let last = v.caps.len() - 1;
        assert!(v.caps[first..last].iter().all(|&c| c > 0), "{:?}", v.caps);
        // A verifier that never runs on is never sent an empty round: each
        // would cost a round trip for one token.
        let (_, stats) = behind_a_link(&text, 0);
        assert_eq!(stats.listened, 0);
    }

    /// Records what the driver tells it.
    struct Recorder(Vec<RoundFeedback>);

    impl DraftPolicy for Recorder {
        fn plan(&self) -> DraftPlan {
            DraftPlan::chain(3)
        }
        fn observe(&mut self, feedback: &RoundFeedback) {
            self.0.push(feedback.clone());
        }
    }

    #[test]
    fn sampled_runs_plan_without_timings() {
        let text: Vec<u32> = (1..=20).collect();
        for sampled in [false, true] {
            let mut rec = Recorder(Vec::new());
            let r = Rounds { sampled, ..rounds(1, 12, &[]) };
            go(&text, &r, &mut rec, |_| ControlFlow::Continue(()));
            assert_eq!(rec.0.len(), 3);
            for f in &rec.0 {
                assert_eq!((f.offered_depth, f.accepted_len), (3, 3));
                let timed = [f.draft_ms, f.verify_ms, f.rtt_ms].iter().all(Option::is_some);
                let untimed = [f.draft_ms, f.verify_ms, f.rtt_ms].iter().all(Option::is_none);
                assert!(if sampled { untimed } else { timed }, "sampled {sampled}: {f:?}");
            }
        }
    }
}
