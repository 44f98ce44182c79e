//! The gap a remote verifier would sit idle in, and how far it may run on
//! alone to fill it.
//!
//! When a round's verdict leaves the verifier with nothing in hand (no round
//! sent ahead, or a lost bet), the next round reaches it a round trip and a
//! drafting later. A greedy verifier may decode alone meanwhile
//! ([`Verifier::send`](super::Verifier::send)) where passes fit in that
//! gap. On a short link they do not: a pass still running when the round
//! arrives would only delay it, so the verifier waits as it always did.

use crate::controller::Ema;

/// What the gap is made of, as measured by the round driver.
#[derive(Debug, Clone)]
pub(crate) struct Gap {
    /// The network's share of a round trip.
    rtt: Ema,
    /// Drafting a round from scratch (after a verdict, not ahead of one).
    draft: Ema,
    /// The cheapest pass seen: about one decoding step.
    pass_ms: Option<f64>,
}

impl Default for Gap {
    fn default() -> Self {
        // Recent rounds weigh most: a link's delay and the drafter's speed
        // drift with load.
        Self { rtt: Ema::new(0.0, 0.2, 0.0), draft: Ema::new(0.0, 0.2, 0.0), pass_ms: None }
    }
}

impl Gap {
    pub fn observe_rtt(&mut self, ms: f64) {
        self.rtt.update(ms);
    }

    pub fn observe_draft(&mut self, ms: f64) {
        self.draft.update(ms);
    }

    pub fn observe_pass(&mut self, ms: f64) {
        if ms > 0.0 && ms.is_finite() {
            self.pass_ms = Some(self.pass_ms.map_or(ms, |p| p.min(ms)));
        }
    }

    /// Whole passes that fit between a verdict leaving the verifier and
    /// the next round reaching it; `None` until all three parts were
    /// measured.
    pub fn passes(&self) -> Option<usize> {
        let measured = |e: &Ema| (e.samples() > 0).then(|| e.value());
        let (rtt, draft, pass) = (measured(&self.rtt)?, measured(&self.draft)?, self.pass_ms?);
        Some(((rtt + draft) / pass).floor().clamp(0.0, 1e6) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(rtt: f64, draft: f64, pass: f64) -> Gap {
        let mut g = Gap::default();
        g.observe_rtt(rtt);
        g.observe_draft(draft);
        g.observe_pass(pass);
        g
    }

    #[test]
    fn a_short_link_leaves_no_pass_to_fill_and_a_long_one_several() {
        // The lan: a 2 ms round trip and 25 ms of drafting hold no 40 ms pass.
        assert_eq!(gap(2.0, 25.0, 40.0).passes(), Some(0));
        assert_eq!(gap(20.0, 25.0, 40.0).passes(), Some(1));
        // 4g: 80 ms and 30 ms of drafting hold two.
        assert_eq!(gap(80.0, 30.0, 40.0).passes(), Some(2));
    }

    #[test]
    fn the_gap_is_unknown_until_all_of_it_was_measured() {
        let mut g = Gap::default();
        g.observe_rtt(80.0);
        g.observe_draft(30.0);
        assert_eq!(g.passes(), None);
        g.observe_pass(0.0);
        assert_eq!(g.passes(), None, "a pass of no time measures nothing");
        g.observe_pass(50.0);
        g.observe_pass(40.0);
        g.observe_pass(90.0);
        assert_eq!(g.passes(), Some(2), "the cheapest pass is the step");
    }
}
