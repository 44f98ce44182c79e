//! The gap a remote verifier would sit idle in, and how far it may run on
//! alone to fill it.
//!
//! When a round's verdict leaves the verifier with nothing in hand (no round
//! sent ahead, or a lost bet), the next round reaches it a round trip and a
//! drafting later. A greedy verifier may decode alone meanwhile
//! ([`Verifier::send`](super::Verifier::send)) where the gap is worth
//! filling. On a short link it is not: a pass still running when the round
//! arrives would only delay it, so the verifier waits as it always did.

use crate::controller::Ema;

/// Passes the whole gap must hold. A round that arrives while a pass runs
/// waits for it and is walked along what the verifier decoded, which a gap
/// of one pass barely repays (measured at a 20 ms round trip, where it lost
/// ~5%).
const MIN_PASSES: f64 = 2.0;

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

    /// Whether the verifier should run on: the gap holds two passes, and
    /// the link's share of it at least one (drafting alone never makes a
    /// gap worth filling: on a short link the round is soon there, and
    /// walked along tokens it must have guessed). `None` until all three
    /// parts were measured.
    pub fn worth_filling(&self) -> Option<bool> {
        let measured = |e: &Ema| (e.samples() > 0).then(|| e.value());
        let (rtt, draft, pass) = (measured(&self.rtt)?, measured(&self.draft)?, self.pass_ms?);
        Some(rtt >= pass && rtt + draft >= MIN_PASSES * pass)
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
    fn only_a_long_link_leaves_a_gap_worth_filling() {
        // The lan: a 2 ms round trip and 25 ms of drafting hold no 40 ms pass.
        assert_eq!(gap(2.0, 25.0, 40.0).worth_filling(), Some(false));
        // 20 ms: one pass.
        assert_eq!(gap(20.0, 25.0, 40.0).worth_filling(), Some(false));
        // Slow drafting on a short link is not a gap to fill.
        assert_eq!(gap(5.0, 120.0, 40.0).worth_filling(), Some(false));
        // 4g: 80 ms and 30 ms of drafting hold two.
        assert_eq!(gap(80.0, 30.0, 40.0).worth_filling(), Some(true));
    }

    #[test]
    fn the_gap_is_unknown_until_all_of_it_was_measured() {
        let mut g = Gap::default();
        g.observe_rtt(80.0);
        g.observe_draft(30.0);
        assert_eq!(g.worth_filling(), None);
        g.observe_pass(0.0);
        assert_eq!(g.worth_filling(), None, "a pass of no time measures nothing");
        g.observe_pass(90.0);
        assert_eq!(g.worth_filling(), Some(false));
        g.observe_pass(50.0);
        g.observe_pass(40.0);
        assert_eq!(g.worth_filling(), Some(true), "the cheapest pass is the step");
    }
}
