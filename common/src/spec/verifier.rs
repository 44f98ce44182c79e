//! The verifier seam: what the [round driver](super::drive) needs from
//! whatever checks its drafts, and the in-process implementation.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::engine::{Draft, EngineError, VerifierSession};
use crate::verify::Verdict;

/// A verdict and what it cost.
#[derive(Debug, Clone)]
pub struct Reply {
    pub verdict: Verdict,
    /// The verifier's compute for this round, ms.
    pub compute_ms: f64,
    /// Sessions that shared the verifier's pass.
    pub batch_size: u32,
    /// The pass also checked other rounds of this session (rounds sent
    /// ahead, stacked), so `compute_ms` does not measure this round's size.
    pub shared_pass: bool,
    /// Payload bytes of the round and of its verdict (0 in process).
    pub bytes_out: usize,
    pub bytes_in: usize,
    /// Tokens the verifier decoded on its own that the round's tree did not
    /// hold: they follow the verdict's, and every bet on the round is lost.
    pub ran_on: Vec<u32>,
    /// Accepted nodes that tokens the verifier decoded on its own decided
    /// before the round arrived: the verdict waited on passes that were not
    /// the round's.
    pub walked: usize,
    /// Tokens the verifier had decoded on its own past the round's root when
    /// the round arrived: `walked`, plus, where they left the tree, the
    /// verdict's own token and `ran_on`.
    pub ran_ahead: usize,
    /// How long the round was at the verifier, ms, where it says: the rest
    /// of the round trip is the network's.
    pub server_ms: Option<f64>,
}

impl Reply {
    /// A verdict from a verifier in this process, which never runs on.
    pub fn local(verdict: Verdict, compute_ms: f64) -> Self {
        Self {
            verdict,
            compute_ms,
            batch_size: 1,
            shared_pass: false,
            bytes_out: 0,
            bytes_in: 0,
            ran_on: Vec::new(),
            walked: 0,
            ran_ahead: 0,
            server_ms: None,
        }
    }
}

/// Checks drafts, one round at a time: `send` a draft, then `verdict` for
/// it. The driver drafts the next round between the two, so a remote
/// verifier should only start the round in `send` and wait in `verdict`.
pub trait Verifier {
    type Error: From<EngineError>;

    /// Whether rounds cross a network, so that round trips mean something.
    fn remote(&self) -> bool;

    /// Starts verifying `draft`. After its verdict, while no other round
    /// is in hand, the verifier may decode up to `run_on` tokens on its own
    /// (greedy only); they come back in the next [`Reply`].
    fn send(&mut self, draft: &Draft, run_on: usize) -> impl Future<Output = Result<(), Self::Error>>;

    /// Waits for the verdict on the draft last sent, which is passed again.
    /// Tokens the verifier decodes on its own meanwhile go to `ran_on` as
    /// they come (the reply accounts for them again, in `ran_ahead`).
    fn verdict(
        &mut self,
        draft: &Draft,
        ran_on: &mut (dyn FnMut(&[u32]) + Send),
    ) -> impl Future<Output = Result<Reply, Self::Error>>;

    /// Hands tokens the verifier has already sent on its own to `ran_on`,
    /// without waiting (those [`verdict`](Self::verdict) would pass on).
    fn drain_ran_on(&mut self, _ran_on: &mut (dyn FnMut(&[u32]) + Send)) {}

    /// Runs CPU-bound drafting while a verdict is in flight. A remote
    /// verifier lets its transport keep moving bytes meanwhile.
    fn while_in_flight<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }

    /// Whether a round drafted ahead may be sent before the verdict it
    /// bets on ([`send_ahead`](Self::send_ahead)). Only worth it where a
    /// round trip costs something.
    fn sends_ahead(&self) -> bool {
        false
    }

    /// Sends the round after the one in flight, on the bet that the one in
    /// flight commits exactly `assumed`. The verifier checks the bet: if it
    /// won, it verifies the round as soon as the last one is done, with no
    /// round trip between; if not, it verifies nothing and the round's
    /// [`verdict`](Self::verdict) is never asked for (the driver sends the
    /// round again, rebuilt).
    fn send_ahead(
        &mut self,
        _draft: &Draft,
        _assumed: &[u32],
        _run_on: usize,
    ) -> impl Future<Output = Result<(), Self::Error>> {
        async { Ok(()) }
    }
}

/// The target model in this process.
pub struct InProcessVerifier<'m> {
    pub session: VerifierSession<'m>,
}

impl Verifier for InProcessVerifier<'_> {
    type Error = EngineError;

    fn remote(&self) -> bool {
        false
    }

    async fn send(&mut self, _draft: &Draft, _run_on: usize) -> Result<(), EngineError> {
        Ok(())
    }

    async fn verdict(&mut self, draft: &Draft, _: &mut (dyn FnMut(&[u32]) + Send)) -> Result<Reply, EngineError> {
        let t = Instant::now();
        let verdict = self.session.verify(&draft.tree, &draft.dists)?;
        let compute_ms = t.elapsed().as_secs_f64() * 1e3;
        Ok(Reply::local(verdict, compute_ms))
    }
}

/// Runs a future that never waits (the in-process verifier's rounds) to
/// completion on this thread, without a runtime.
pub fn block_on_ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        // Nothing here waits on I/O; a pending poll is only a yield.
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_ready_runs_a_future_that_yields_once() {
        let mut polled = false;
        let yielding = std::future::poll_fn(|cx| {
            if polled {
                Poll::Ready(7)
            } else {
                polled = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        });
        assert_eq!(block_on_ready(yielding), 7);
    }
}
