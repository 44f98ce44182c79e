//! The seam between the HTTP layer and the generation engine.
//!
//! The API layer knows nothing about models, drafting or the cloud link: it
//! turns requests into a [`GenRequest`], reads [`GenEvent`]s back and shapes
//! them as OpenAI responses. The daemon implements [`Backend`]; the tests use
//! a scripted fake.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::error::ApiError;

/// One chat turn as handed to the chat template. It is the template's own
/// message type so the daemon can render it without conversion.
pub use ouro_common::chat::Message as ChatMessage;

/// What the HTTP layer needs from the generation engine (the daemon implements it;
/// tests use a fake).
///
/// Every method is called from an async handler, so none may block for long:
/// `generate` must hand the work to a task or thread and return at once.
pub trait Backend: Send + Sync + 'static {
    /// The model id served (for `model` fields and `GET /v1/models`).
    fn model_id(&self) -> String;
    /// Context length in tokens (prompt + max_tokens must fit).
    fn max_context(&self) -> usize;
    /// The mode a generation started now would run in ("speculative", "local" or
    /// "cloud-only"): the `x-ouro-mode` header of a streamed response is sent
    /// before the generation has reported anything, and `/health` shows it.
    fn current_mode(&self) -> String;
    /// Token ids of a chat conversation rendered with the model's chat template (with the generation prompt).
    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ApiError>;
    /// Token ids of a raw completion prompt.
    fn text_prompt(&self, prompt: &str) -> Result<Vec<u32>, ApiError>;
    /// The prompt for a completion request that sent token ids (each already
    /// checked to be below [`vocab_size`](Self::vocab_size) when that is
    /// known). The default uses them as sent; an engine whose
    /// [`text_prompt`](Self::text_prompt) adds a BOS may add it here too.
    fn token_prompt(&self, ids: Vec<u32>) -> Result<Vec<u32>, ApiError> {
        Ok(ids)
    }
    /// The tokenizer's vocabulary size, to refuse token-id prompts with ids
    /// the model has no embedding for; `None` skips that check.
    fn vocab_size(&self) -> Option<usize> {
        None
    }
    /// Starts generating. Events arrive on the returned receiver; dropping the receiver cancels the generation
    /// (the engine notices on its next send and frees its cloud session).
    ///
    /// The stream must end with exactly one [`GenEvent::Done`],
    /// [`GenEvent::Error`] or [`GenEvent::Busy`]; a sender dropped without
    /// one is reported to the client as a failed generation.
    fn generate(&self, req: GenRequest) -> mpsc::Receiver<GenEvent>;
}

/// A validated generation request.
#[derive(Clone, Debug, PartialEq)]
pub struct GenRequest {
    /// The prompt's token ids; never empty.
    pub prompt: Vec<u32>,
    /// At least 1, and `prompt.len() + max_tokens <= max_context()`.
    pub max_tokens: usize,
    /// In `[0, 2]`; 0 is greedy.
    pub temperature: f32,
    /// In `(0, 1]` when present.
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
}

/// Why a generation ended, as OpenAI's `finish_reason` says it (the
/// engine's own, with cancellation, is `ouro_common::generate::FinishReason`).
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OpenAiFinish {
    /// End of sequence, or a stop sequence matched.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// What the engine reports while generating.
#[derive(Clone, Debug, PartialEq)]
pub enum GenEvent {
    /// A UTF-8-safe text delta (the engine already detokenises incrementally).
    ///
    /// `tokens` is how many generated tokens this delta accounts for (a
    /// speculative round can accept several at once; a delta may be empty
    /// while a multi-byte character is incomplete). When a stop sequence
    /// cuts a generation short, no `Done` ever arrives, so these counts are
    /// what `usage.completion_tokens` is made of.
    Text { text: String, tokens: usize },
    /// Optional running statistics. Like `tokens` above, they exist for
    /// generations cancelled by a stop sequence: the latest snapshot is what
    /// the response reports. An engine that never sends them gets
    /// `OuroStats::default()` with the mode of [`Backend::current_mode`].
    Stats(OuroStats),
    /// Generation ended: finish reason "stop" or "length", token counts and speculation stats.
    Done { finish_reason: OpenAiFinish, completion_tokens: usize, stats: OuroStats },
    /// The engine failed mid-way (e.g. cloud lost with fallback=fail).
    Error(String),
    /// The cloud refused the generation for load. Sent instead of any text,
    /// so the client gets a 503 with `Retry-After` it can act on rather than
    /// a degraded answer.
    Busy { message: String, retry_after: Duration },
}

/// Speculation statistics, sent as the top-level `ouro` object of every response.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct OuroStats {
    pub rounds: usize,
    pub drafted: usize,
    pub accepted: usize,
    pub mean_accepted: f64,
    /// "speculative", "local" (drafter alone: the cloud was unreachable) or "cloud-only"
    pub mode: String,
    pub cloud_rtt_ms: Option<f64>,
    /// Tokens the drafter produced alone while the cloud was unreachable
    /// (unverified: the response's mode is then "local").
    pub local_tokens: usize,
    /// Times the cloud came back mid-generation and speculation resumed on
    /// the text so far.
    pub cloud_resumes: usize,
}
