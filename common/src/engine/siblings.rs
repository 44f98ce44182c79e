//! Dynamic trees, the cheap half of EAGLE-2: where the drafter is unsure of
//! its greedy token, its runner-up hangs beside it as a one-node sibling.
//!
//! A sibling costs no drafter pass (it comes from the logits the trunk token
//! came from) and one node of the verify pass, which costs little while c(k)
//! is flat. It is worth that node when the drafter's confidence says the
//! trunk may break there and the runner-up has been right often enough at
//! that confidence: the expected gain is the chance of reaching the node
//! (the drafter's cumulative confidence along the trunk, as EAGLE-2 ranks
//! its nodes) times the runner-up's measured acceptance in the node's
//! confidence bucket. Greedy drafting only: under sampling every node must
//! be drawn from the drafter's distribution.

/// Confidence buckets of the greedy token's probability, equal widths.
pub const BUCKETS: usize = 5;

/// Expected accepted tokens a sibling must bring to be sent: a node of a
/// flat verify pass costs a few percent of a token.
pub const MIN_GAIN: f64 = 0.05;

/// Pseudo-counts each bucket starts with.
const PRIOR_OFFERED: f64 = 4.0;

/// The runner-up's acceptance per confidence bucket, learned from every
/// sibling offered in one generation.
#[derive(Debug, Clone, Default)]
pub struct SiblingStats {
    offered: [u32; BUCKETS],
    accepted: [u32; BUCKETS],
}

/// The bucket of a greedy token's probability.
pub fn bucket(confidence: f32) -> usize {
    ((confidence.clamp(0.0, 1.0) * BUCKETS as f32) as usize).min(BUCKETS - 1)
}

impl SiblingStats {
    /// The runner-up's estimated acceptance at this bucket. The prior says
    /// it is right half the times the greedy token is wrong.
    pub fn rate(&self, bucket: usize) -> f64 {
        let mid = (bucket as f64 + 0.5) / BUCKETS as f64;
        let prior = (1.0 - mid) * 0.5;
        (self.accepted[bucket] as f64 + prior * PRIOR_OFFERED) / (self.offered[bucket] as f64 + PRIOR_OFFERED)
    }

    /// Whether a sibling beside a token of this confidence, reached with
    /// probability `reach`, is worth its node.
    pub fn worth(&self, reach: f64, confidence: f32) -> bool {
        reach * self.rate(bucket(confidence)) >= MIN_GAIN
    }

    pub fn record(&mut self, bucket: usize, accepted: bool) {
        let b = bucket.min(BUCKETS - 1);
        self.offered[b] = self.offered[b].saturating_add(1);
        self.accepted[b] = self.accepted[b].saturating_add(u32::from(accepted));
    }
}

/// The greedy column's softmax probability and the runner-up's column, or
/// `None` for fewer than two finite logits.
pub fn top2(logits: &[f32]) -> Option<(f32, u32)> {
    let mut first: Option<(usize, f32)> = None;
    let mut second: Option<(usize, f32)> = None;
    for (i, &x) in logits.iter().enumerate() {
        if !x.is_finite() {
            continue;
        }
        // Strict `>`: the earliest of equal maxima is the greedy one, as in `argmax`.
        match first {
            Some((_, f)) if x <= f => {
                if second.is_none_or(|(_, s)| x > s) {
                    second = Some((i, x));
                }
            }
            _ => {
                second = first;
                first = Some((i, x));
            }
        }
    }
    let ((_, max), (col, _)) = (first?, second?);
    let sum: f32 = logits.iter().filter(|x| x.is_finite()).map(|&x| (x - max).exp()).sum();
    Some((1.0 / sum, col as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top2_finds_the_greedy_probability_and_the_runner_up() {
        let (p, second) = top2(&[0.0, 2.0, 1.0, f32::NAN]).unwrap();
        let e = |x: f32| x.exp();
        assert!((p - e(2.0) / (e(0.0) + e(2.0) + e(1.0))).abs() < 1e-6);
        assert_eq!(second, 2);
        // Ties: the earlier is greedy, the later the runner-up.
        assert_eq!(top2(&[3.0, 3.0]).map(|t| t.1), Some(1));
        assert_eq!(top2(&[1.0, 5.0, 0.0, 5.0]).map(|t| t.1), Some(3));
        assert_eq!(top2(&[1.0]), None);
        assert_eq!(top2(&[f32::NAN, 1.0]), None);
    }

    #[test]
    fn siblings_go_where_the_drafter_is_unsure_and_the_runner_up_pays() {
        let mut s = SiblingStats::default();
        assert_eq!((bucket(0.0), bucket(0.39), bucket(0.99), bucket(1.0), bucket(f32::NAN)), (0, 1, 4, 4, 0));
        // Unsure and reachable: worth it; sure, or unlikely to be reached: not.
        assert!(s.worth(1.0, 0.3));
        assert!(!s.worth(1.0, 0.95));
        assert!(!s.worth(0.1, 0.3));
        // A runner-up that is never right at this confidence stops being sent.
        for _ in 0..40 {
            s.record(bucket(0.3), false);
        }
        assert!(!s.worth(1.0, 0.3));
        // One that is often right is sent even where the drafter is fairly sure.
        for _ in 0..40 {
            s.record(bucket(0.85), true);
        }
        assert!(s.worth(0.5, 0.85));
        assert!(s.rate(bucket(0.85)) > 0.9);
    }
}
