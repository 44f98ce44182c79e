//! Streamed responses: a generation as OpenAI server-sent events.
//!
//! The event stream owns the `Generation`, which owns the engine's receiver:
//! when the client goes away, hyper drops the body, and with it the
//! receiver, which cancels the engine's work.
//!
//! Headers go out only once the generation has produced its first output,
//! so that a refusal or failure before any text is a real HTTP status
//! (which clients turn into typed errors and retries) rather than a 200
//! whose only event is an error. Once text has flowed, a failure can only
//! be an error event.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio_stream::Stream;

use super::backend::OuroStats;
use super::generation::{Finish, Generation, Output};
use super::reply::{record_finish, set_mode_header, Endpoint, Reply};
use super::types::{ChatChunk, ChunkChoice, Delta, TextChoice, TextCompletion, Usage};

/// The SSE response to a generation whose `first` output was text or its
/// end (not a failure); `mode` is the `x-ouro-mode` header (the engine's
/// statistics are not known when headers are sent, so it is the backend's
/// mode at the start).
pub fn response(reply: Reply, generation: Generation, first: Output, mode: &str) -> Response {
    let chunks = Chunks { generation, first: Some(first), reply, state: State::Start };
    let sse = Sse::new(chunks).keep_alive(KeepAlive::default());
    let mut response = sse.into_response();
    set_mode_header(&mut response, mode);
    response
}

enum State {
    /// A chat stream opens with the assistant's role, as OpenAI's does.
    Start,
    Running,
    /// The final chunk is out; `[DONE]` is next.
    Finished,
    Ended,
}

struct Chunks {
    generation: Generation,
    /// Read before the headers were sent; the stream's first output.
    first: Option<Output>,
    reply: Reply,
    state: State,
}

impl Chunks {
    fn text(&self, text: String) -> Event {
        match self.reply.endpoint {
            Endpoint::Chat => json_event(&self.chat_chunk(Delta { role: None, content: Some(text) }, None, None)),
            Endpoint::Completion => json_event(&self.text_completion(text, None, None)),
        }
    }

    fn role(&self) -> Event {
        json_event(&self.chat_chunk(Delta { role: Some("assistant"), content: Some(String::new()) }, None, None))
    }

    fn last(&self, finish: &Finish) -> Event {
        let usage = Usage::new(self.reply.prompt_tokens, finish.completion_tokens);
        match self.reply.endpoint {
            Endpoint::Chat => {
                json_event(&self.chat_chunk(Delta::default(), Some(finish), Some((usage, &finish.stats))))
            }
            Endpoint::Completion => {
                json_event(&self.text_completion(String::new(), Some(finish), Some((usage, &finish.stats))))
            }
        }
    }

    fn chat_chunk<'a>(
        &'a self,
        delta: Delta,
        finish: Option<&Finish>,
        end: Option<(Usage, &'a OuroStats)>,
    ) -> ChatChunk<'a> {
        let r = &self.reply;
        ChatChunk {
            id: &r.id,
            object: "chat.completion.chunk",
            created: r.created,
            model: &r.model,
            choices: [ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish.map(|f| f.finish_reason) }],
            usage: end.map(|(u, _)| u),
            ouro: end.map(|(_, s)| s),
        }
    }

    fn text_completion<'a>(
        &'a self,
        text: String,
        finish: Option<&Finish>,
        end: Option<(Usage, &'a OuroStats)>,
    ) -> TextCompletion<'a> {
        let r = &self.reply;
        TextCompletion {
            id: &r.id,
            object: "text_completion",
            created: r.created,
            model: &r.model,
            choices: [TextChoice { text, index: 0, logprobs: None, finish_reason: finish.map(|f| f.finish_reason) }],
            usage: end.map(|(u, _)| u),
            ouro: end.map(|(_, s)| s),
        }
    }
}

impl Chunks {
    fn next_output(&mut self, cx: &mut Context<'_>) -> Poll<Option<Output>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(first)),
            None => Pin::new(&mut self.generation).poll_next(cx),
        }
    }
}

fn json_event(data: &impl Serialize) -> Event {
    // Serializing these plain structs cannot fail; should it ever, the client
    // still gets a well-formed error rather than a broken stream.
    Event::default().json_data(data).unwrap_or_else(|_| {
        Event::default()
            .data(r#"{"error":{"message":"failed to encode a chunk","type":"server_error","param":null,"code":null}}"#)
    })
}

impl Stream for Chunks {
    type Item = Result<Event, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let event = match this.state {
            State::Start => {
                this.state = State::Running;
                match this.reply.endpoint {
                    Endpoint::Chat => this.role(),
                    Endpoint::Completion => return Pin::new(this).poll_next(cx),
                }
            }
            State::Running => match this.next_output(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Output::Text(text))) => this.text(text),
                Poll::Ready(Some(Output::Finished(finish))) => {
                    this.state = State::Finished;
                    record_finish(&this.reply, &finish);
                    this.last(&finish)
                }
                Poll::Ready(Some(Output::Failed(error))) => {
                    this.state = State::Ended;
                    tracing::warn!(error = %error, "streamed generation failed");
                    metrics::counter!("ouro_edge_api_errors_total", "status" => "stream").increment(1);
                    json_event(&error.body())
                }
                Poll::Ready(None) => {
                    this.state = State::Ended;
                    return Poll::Ready(None);
                }
            },
            State::Finished => {
                this.state = State::Ended;
                Event::default().data("[DONE]")
            }
            State::Ended => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(event)))
    }
}
