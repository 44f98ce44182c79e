//! Prompt lookup: the text's own earlier tokens as a draft.
//!
//! Summaries quote their source, answers repeat names and numbers from the
//! question, code repeats identifiers: where the last tokens of the text
//! occurred before, what followed them then is a good guess at what follows
//! now, and the longer the match the better the guess (llama.cpp's
//! `ngram-simple`, prompt lookup decoding). The phrase pool sees at most
//! [`MAX_SUFFIX_MATCH`](super::MAX_SUFFIX_MATCH) tokens of match and keeps
//! phrases of a few tokens; a verbatim quote runs for dozens, and a verify
//! pass of a dozen rows costs little more than one of two. So a long match
//! earns a long draft: [`CopyStats`] learns, per match length, how often the
//! first copied token is right and how often a copy that held so far keeps
//! holding, and sends the length that makes the most tokens per unit of
//! round time under the policy's measured costs: long where a verify pass of
//! many rows is nearly free, short where the rows are paid for one by one.

use crate::controller::RoundCosts;

/// The longest match measured; past it a match is as good as certain.
pub const MAX_MATCH: usize = 32;

/// Where the text's suffix occurred before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    /// Tokens of the text's suffix matched there (at most [`MAX_MATCH`]).
    pub matched: usize,
    /// Index in the text of the first token after the earlier occurrence:
    /// the copy is `text[start..]`.
    pub start: usize,
}

/// The earlier occurrence of the longest suffix of `text` (at least
/// `min_match` tokens), the most recent among equally long ones.
///
/// A backward scan of the whole text: a few microseconds for thousands of
/// tokens, against a forward pass of tens of milliseconds, and no index to
/// keep in step with rollbacks.
pub fn find_repeat(text: &[u32], min_match: usize) -> Option<Repeat> {
    let n = text.len();
    let &last = text.last()?;
    let mut best: Option<Repeat> = None;
    // `p` is where the earlier occurrence ends; it must leave a token after it.
    for p in (0..n - 1).rev() {
        if text[p] != last {
            continue;
        }
        let longest = MAX_MATCH.min(p + 1);
        let matched = (0..longest).take_while(|&k| text[p - k] == text[n - 1 - k]).count();
        if best.is_none_or(|b| matched > b.matched) {
            best = Some(Repeat { matched, start: p + 1 });
            if matched == MAX_MATCH {
                break;
            }
        }
    }
    best.filter(|b| b.matched >= min_match.max(1))
}

/// Shortest match a copy is proposed on. Matches of up to
/// [`MAX_SUFFIX_MATCH`](super::MAX_SUFFIX_MATCH) tokens are the pool's, which
/// ranks the phrases it holds for them by how often they were accepted;
/// past that only the text itself knows.
pub const MIN_MATCH: usize = 4;

/// The chance of being reached and accepted a copied token needs to be
/// sent when nothing is known of costs (sampled runs, whose seeded text must
/// not depend on timings), and the first token in any case: a copy right
/// less often than that costs more than it brings.
pub const MIN_REACH: f64 = 0.2;

/// A copy to send as a round's trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The match length it was found on (for [`CopyStats::record`]).
    pub matched: usize,
    pub tokens: Vec<u32>,
}

/// Lower bounds of the match-length buckets [`CopyStats`] keeps apart.
const BUCKETS: [usize; 7] = [1, 2, 3, 4, 6, 9, 16];

/// A bucket's prior before any copy was judged: (first token right,
/// the next token right once the copy held so far). Longer matches start
/// more trusted, and a copy that has held tends to keep holding.
const PRIORS: [(f64, f64); 7] =
    [(0.25, 0.5), (0.35, 0.6), (0.45, 0.65), (0.55, 0.7), (0.65, 0.75), (0.75, 0.8), (0.85, 0.85)];

/// Pseudo-counts behind each prior.
const PRIOR_WEIGHT: f64 = 4.0;

/// One copy in this many that the estimate turns down is sent anyway, so a
/// bucket written off early can earn its way back when the text turns
/// repetitive.
const RETRY_EVERY: u32 = 8;

/// How copies have fared in this text, per match-length bucket.
#[derive(Debug, Clone, Default)]
pub struct CopyStats {
    /// Per bucket: copies sent, copies whose first token was accepted.
    first: [(u32, u32); BUCKETS.len()],
    /// Per bucket: tokens judged after an accepted one, and how many of
    /// those were accepted.
    next: [(u32, u32); BUCKETS.len()],
    turned_down: u32,
}

fn bucket(matched: usize) -> usize {
    BUCKETS.iter().rposition(|&lo| matched >= lo).unwrap_or(0)
}

fn rate((offered, accepted): (u32, u32), prior: f64) -> f64 {
    (f64::from(accepted) + prior * PRIOR_WEIGHT) / (f64::from(offered) + PRIOR_WEIGHT)
}

impl CopyStats {
    /// Estimated chance that a copy found on `matched` tokens has its first
    /// token right, and that each later token is right given the ones
    /// before it were.
    pub fn rates(&self, matched: usize) -> (f64, f64) {
        let b = bucket(matched);
        (rate(self.first[b], PRIORS[b].0), rate(self.next[b], PRIORS[b].1))
    }

    /// How many tokens of a copy found on `matched` tokens to send (at most
    /// `max`). With `costs`, the length with the most expected tokens (the
    /// accepted ones and the verifier's own) per millisecond of round;
    /// without, every token whose chance of being reached and accepted is
    /// at least [`MIN_REACH`]. 0 when the first token is not that likely,
    /// except one time in [`RETRY_EVERY`], when a single token is tried.
    pub fn length(&mut self, matched: usize, max: usize, costs: Option<&RoundCosts>) -> usize {
        let (first, next) = self.rates(matched);
        let mut len = 0;
        if first >= MIN_REACH {
            match costs {
                Some(costs) => {
                    let (mut tokens, mut reach, mut best) = (1.0, first, 0.0);
                    for l in 1..=max {
                        tokens += reach;
                        reach *= next;
                        let rate = tokens / (costs.verify.cost(l) + costs.fixed_ms).max(1e-3);
                        if rate > best {
                            (len, best) = (l, rate);
                        }
                    }
                }
                None => {
                    let mut reach = first;
                    while len < max && reach >= MIN_REACH {
                        len += 1;
                        reach *= next;
                    }
                }
            }
        }
        if len == 0 && max > 0 {
            self.turned_down = self.turned_down.wrapping_add(1);
            if self.turned_down.is_multiple_of(RETRY_EVERY) {
                return 1;
            }
        }
        len
    }

    /// The copy worth sending after `text`, at most `max` tokens and
    /// ending at the first of `stop_ids` (nothing after the end of the text
    /// can be accepted); `None` when the text does not repeat itself on at
    /// least [`MIN_MATCH`] tokens or such copies have not paid. `costs` as
    /// for [`length`](Self::length).
    pub fn propose(&mut self, text: &[u32], max: usize, stop_ids: &[u32], costs: Option<&RoundCosts>) -> Option<Copy> {
        let found = find_repeat(text, MIN_MATCH)?;
        let len = self.length(found.matched, max, costs);
        let copy = super::until_stop(&text[found.start..], stop_ids);
        let tokens = copy[..len.min(copy.len())].to_vec();
        (!tokens.is_empty()).then_some(Copy { matched: found.matched, tokens })
    }

    /// Records a copy found on `matched` tokens: `sent` tokens sent, the
    /// first `accepted` of them accepted.
    pub fn record(&mut self, matched: usize, sent: usize, accepted: usize) {
        if sent == 0 {
            return;
        }
        let b = bucket(matched);
        let accepted = accepted.min(sent);
        let add = |slot: &mut (u32, u32), offered: usize, hits: usize| {
            slot.0 = slot.0.saturating_add(offered as u32);
            slot.1 = slot.1.saturating_add(hits as u32);
        };
        add(&mut self.first[b], 1, usize::from(accepted > 0));
        // Depth d >= 1 was judged when depth d-1 was accepted.
        add(&mut self.next[b], accepted.min(sent - 1), accepted.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::CostCurve;

    #[test]
    fn the_longest_match_wins_and_ties_go_to_the_most_recent() {
        //          0  1  2  3  4  5  6  7  8  9 10 11 12 13
        let text = [1, 2, 3, 9, 5, 2, 3, 7, 1, 2, 3, 8, 2, 3];
        // The suffix [8, 2, 3] occurs nowhere else; [2, 3] three times: the
        // most recent (ending at 10) wins.
        assert_eq!(find_repeat(&text, 1), Some(Repeat { matched: 2, start: 11 }));
        let text = [1, 2, 3, 9, 5, 2, 3, 7, 1, 2, 3];
        // Suffix [1, 2, 3] occurs at 0..=2: longer than [2, 3] at 5..=6.
        assert_eq!(find_repeat(&text, 1), Some(Repeat { matched: 3, start: 3 }));
        assert_eq!(find_repeat(&text, 4), None);
    }

    #[test]
    fn nothing_to_copy_in_new_or_tiny_texts() {
        assert_eq!(find_repeat(&[], 1), None);
        assert_eq!(find_repeat(&[4], 1), None);
        assert_eq!(find_repeat(&[4, 5, 6], 1), None);
        // A run copies itself: the match may overlap the suffix.
        assert_eq!(find_repeat(&[4, 4, 4], 1), Some(Repeat { matched: 2, start: 2 }));
    }

    #[test]
    fn a_match_is_counted_up_to_max_match() {
        let mut text: Vec<u32> = (0..40).collect();
        text.extend(0..40);
        let r = find_repeat(&text, 1).unwrap();
        assert_eq!(r, Repeat { matched: MAX_MATCH, start: 40 });
    }

    #[test]
    fn copies_that_hold_grow_long_and_copies_that_fail_stop() {
        let mut s = CopyStats::default();
        // Priors: a long match is sent further than a short one.
        assert!(s.clone().length(20, 64, None) > s.clone().length(4, 64, None));
        for _ in 0..40 {
            s.record(10, 16, 16);
        }
        let (first, next) = s.rates(10);
        assert!(first > 0.9 && next > 0.9, "{first} {next}");
        assert!(s.length(10, 64, None) >= 16);
        assert_eq!(s.length(10, 5, None), 5, "capped by max");
        for _ in 0..40 {
            s.record(2, 4, 0);
        }
        // Written off, but one in RETRY_EVERY is still tried as one token.
        let tried: Vec<usize> = (0..RETRY_EVERY * 2).map(|_| s.length(2, 64, None)).collect();
        assert_eq!(tried.iter().filter(|&&l| l == 1).count(), 2, "{tried:?}");
        assert_eq!(tried.iter().filter(|&&l| l == 0).count(), (RETRY_EVERY * 2 - 2) as usize);
    }

    #[test]
    fn copies_are_long_where_rows_are_cheap_and_short_where_they_are_not() {
        let mut s = CopyStats::default();
        for _ in 0..40 {
            s.record(10, 16, 15);
        }
        let flat = RoundCosts { verify: CostCurve::linear(30.0, 0.5), fixed_ms: 0.0 };
        // This CPU's 1.5B at 2 threads: flat to 4 rows, then ~6 ms a row.
        let pts = [(0, 33.0), (1, 34.6), (3, 35.6), (7, 52.0), (15, 100.6), (31, 202.2)];
        let steep = RoundCosts { verify: CostCurve::from_points(pts).unwrap(), fixed_ms: 0.0 };
        let far = RoundCosts { fixed_ms: 80.0, ..steep.clone() };
        let (flat, steep, far) =
            (s.length(10, 32, Some(&flat)), s.length(10, 32, Some(&steep)), s.length(10, 32, Some(&far)));
        assert!(flat >= 16, "{flat}");
        assert!(steep < flat && steep >= 3, "steep {steep}, flat {flat}");
        // A round trip to pay for makes every round dearer and longer copies worth it.
        assert!(far > steep, "far {far}, steep {steep}");
        // A bucket whose first token is rarely right is not sent at any price.
        for _ in 0..40 {
            s.record(4, 4, 0);
        }
        assert_eq!(s.length(4, 32, Some(&RoundCosts { verify: CostCurve::linear(30.0, 0.5), fixed_ms: 0.0 })), 0);
    }

    #[test]
    fn a_proposal_copies_what_followed_and_stops_at_a_stop_token() {
        let mut s = CopyStats::default();
        let text = [10, 11, 12, 13, 14, 15, 2, 16, 17, 10, 11, 12, 13];
        // By the prior alone a 4-token match is worth 3 tokens.
        assert_eq!(s.propose(&text, 64, &[], None), Some(Copy { matched: 4, tokens: vec![14, 15, 2] }));
        for _ in 0..20 {
            s.record(4, 8, 8);
        }
        // Once such copies have held, all that followed is sent.
        assert_eq!(s.propose(&text, 64, &[], None).unwrap().tokens, [14, 15, 2, 16, 17, 10, 11, 12, 13]);
        let copy = s.propose(&text, 64, &[2], None).unwrap();
        assert_eq!(copy.tokens, [14, 15, 2]);
        assert_eq!(s.propose(&text, 1, &[], None).unwrap().tokens, [14]);
        // Three tokens of match are the pool's business.
        assert_eq!(s.propose(&text[1..], 64, &[], None), None);
    }

    #[test]
    fn record_judges_each_depth_once() {
        let mut s = CopyStats::default();
        s.record(5, 5, 3); // depths 1, 2 accepted, 3 rejected
        let b = bucket(5);
        assert_eq!(s.first[b], (1, 1));
        assert_eq!(s.next[b], (3, 2));
        s.record(5, 4, 4); // every depth accepted, the last has no successor judged
        assert_eq!(s.next[b], (6, 5));
        s.record(5, 4, 0);
        assert_eq!(s.first[b], (3, 2));
        assert_eq!(s.next[b], (6, 5));
        s.record(5, 0, 0);
        assert_eq!(s.first[b], (3, 2));
    }
}
