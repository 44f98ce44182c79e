//! One running generation as the HTTP layer sees it: the engine's events
//! with stop sequences applied.
//!
//! `Generation` owns the engine's receiver and nothing else holds it, so
//! dropping a `Generation` (a finished handler, a client gone mid-stream)
//! cancels the engine's work. It also drops the receiver itself as soon as
//! the outcome is known, so a stop sequence frees the engine immediately,
//! not when the response has been written. The admission slot goes with
//! the receiver: a slot is busy exactly while the engine may be working.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};

use super::admission::Slot;
use super::backend::{GenEvent, OpenAiFinish, OuroStats};
use super::error::ApiError;
use super::stop::StopMatcher;

/// The last thing a successful generation yields.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub finish_reason: OpenAiFinish,
    pub completion_tokens: usize,
    pub stats: OuroStats,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Text safe to send (never empty).
    Text(String),
    /// The end; nothing follows.
    Finished(Finish),
    /// The engine failed or refused; nothing follows.
    Failed(ApiError),
}

/// What ties up the engine while a generation runs; dropped as one.
struct Engine {
    rx: mpsc::Receiver<GenEvent>,
    _slot: Option<Slot>,
}

pub struct Generation {
    engine: Option<Engine>,
    matcher: StopMatcher,
    /// Tokens of the text deltas so far: the count when a stop cuts the
    /// generation short, since the engine's own count never arrives then.
    tokens: usize,
    stats: Option<OuroStats>,
    /// The mode reported when the engine's statistics leave it empty.
    mode: String,
    queue: VecDeque<Output>,
}

impl Generation {
    pub fn new(rx: mpsc::Receiver<GenEvent>, stops: Vec<String>, mode: String) -> Self {
        Self {
            engine: Some(Engine { rx, _slot: None }),
            matcher: StopMatcher::new(stops),
            tokens: 0,
            stats: None,
            mode,
            queue: VecDeque::new(),
        }
    }

    /// Holds `slot` until the engine's receiver is dropped.
    pub fn holding(mut self, slot: Slot) -> Self {
        if let Some(engine) = &mut self.engine {
            engine._slot = Some(slot);
        }
        self
    }

    /// Runs to the end, for a non-streamed response.
    pub async fn run_to_end(mut self) -> Result<(String, Finish), ApiError> {
        let mut text = String::new();
        while let Some(out) = self.next().await {
            match out {
                Output::Text(t) => text.push_str(&t),
                Output::Finished(finish) => return Ok((text, finish)),
                Output::Failed(e) => return Err(e),
            }
        }
        // The stream always ends with Finished or Failed; this is defensive.
        Err(ApiError::Generation(ENDED_EARLY.into()))
    }

    fn with_mode(&self, mut stats: OuroStats) -> OuroStats {
        if stats.mode.is_empty() {
            stats.mode.clone_from(&self.mode);
        }
        stats
    }

    fn on_event(&mut self, event: GenEvent) {
        match event {
            GenEvent::Text { text, tokens } => {
                self.tokens += tokens;
                let step = self.matcher.push(&text);
                if !step.emit.is_empty() {
                    self.queue.push_back(Output::Text(step.emit));
                }
                if step.stopped {
                    self.engine = None;
                    let latest = self.stats.take().unwrap_or_default();
                    let stats = self.with_mode(latest);
                    self.queue.push_back(Output::Finished(Finish {
                        finish_reason: OpenAiFinish::Stop,
                        completion_tokens: self.tokens,
                        stats,
                    }));
                }
            }
            GenEvent::Stats(stats) => self.stats = Some(stats),
            GenEvent::Done { finish_reason, completion_tokens, stats } => {
                self.engine = None;
                let rest = self.matcher.finish();
                if !rest.is_empty() {
                    self.queue.push_back(Output::Text(rest));
                }
                let stats = self.with_mode(stats);
                self.queue.push_back(Output::Finished(Finish { finish_reason, completion_tokens, stats }));
            }
            GenEvent::Error(message) => {
                self.engine = None;
                self.queue.push_back(Output::Failed(ApiError::Generation(message)));
            }
            GenEvent::Busy { message, retry_after } => {
                self.engine = None;
                self.queue.push_back(Output::Failed(ApiError::Overloaded { message, retry_after }));
            }
        }
    }
}

const ENDED_EARLY: &str = "the engine ended the generation without a result";

impl Stream for Generation {
    type Item = Output;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Output>> {
        let this = self.get_mut();
        loop {
            if let Some(out) = this.queue.pop_front() {
                return Poll::Ready(Some(out));
            }
            let Some(engine) = this.engine.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(engine.rx.poll_recv(cx)) {
                Some(event) => this.on_event(event),
                None => {
                    this.engine = None;
                    this.queue.push_back(Output::Failed(ApiError::Generation(ENDED_EARLY.into())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> GenEvent {
        GenEvent::Text { text: t.into(), tokens: 1 }
    }

    /// Runs a script whose sender is dropped once queued (so a stream
    /// without `Done` or `Error` ends as a silent hang-up).
    async fn outputs(events: Vec<GenEvent>, stops: &[&str]) -> Vec<Output> {
        let (tx, rx) = mpsc::channel(events.len() + 1);
        for e in events {
            tx.try_send(e).expect("channel sized for the script");
        }
        drop(tx);
        let generation = Generation::new(rx, stops.iter().map(|s| s.to_string()).collect(), "local".into());
        StreamExt::collect(generation).await
    }

    #[tokio::test]
    async fn done_flushes_held_text_then_finishes() {
        let stats = OuroStats { rounds: 2, mode: "speculative".into(), ..Default::default() };
        let done = GenEvent::Done { finish_reason: OpenAiFinish::Length, completion_tokens: 7, stats: stats.clone() };
        let outs = outputs(vec![text("ab"), text("c#"), done], &["##"]).await;
        assert_eq!(
            outs,
            vec![
                Output::Text("ab".into()),
                Output::Text("c".into()),
                Output::Text("#".into()),
                Output::Finished(Finish { finish_reason: OpenAiFinish::Length, completion_tokens: 7, stats }),
            ]
        );
    }

    #[tokio::test]
    async fn stop_finishes_with_counted_tokens_and_latest_stats_and_drops_the_receiver() {
        let snapshot = OuroStats { rounds: 1, drafted: 4, accepted: 3, ..Default::default() };
        let (tx, rx) = mpsc::channel(8);
        for e in [text("a"), GenEvent::Stats(snapshot.clone()), text("bX"), text("never")] {
            tx.try_send(e).expect("channel sized for the script");
        }
        let mut generation = Generation::new(rx, vec!["X".into()], "local".into());
        assert_eq!(generation.next().await, Some(Output::Text("a".into())));
        assert_eq!(generation.next().await, Some(Output::Text("b".into())));
        let stats = OuroStats { mode: "local".into(), ..snapshot };
        let finish = Finish { finish_reason: OpenAiFinish::Stop, completion_tokens: 2, stats };
        assert_eq!(generation.next().await, Some(Output::Finished(finish)));
        // Cancelled at the stop, not when the response is done with the generation.
        assert!(tx.is_closed(), "the engine's sender must see the generation cancelled");
        assert_eq!(generation.next().await, None);
    }

    #[tokio::test]
    async fn error_and_silent_hangup_fail() {
        let outs = outputs(vec![text("a"), GenEvent::Error("cloud lost".into())], &[]).await;
        let failed = Output::Failed(ApiError::Generation("cloud lost".into()));
        assert_eq!(outs, vec![Output::Text("a".into()), failed]);
        let outs = outputs(vec![text("a")], &[]).await;
        let failed = Output::Failed(ApiError::Generation(ENDED_EARLY.into()));
        assert_eq!(outs, vec![Output::Text("a".into()), failed]);
    }

    #[tokio::test]
    async fn busy_is_an_overloaded_failure() {
        let retry_after = std::time::Duration::from_millis(1500);
        let outs = outputs(vec![GenEvent::Busy { message: "full".into(), retry_after }], &[]).await;
        assert_eq!(outs, vec![Output::Failed(ApiError::Overloaded { message: "full".into(), retry_after })]);
    }
}
