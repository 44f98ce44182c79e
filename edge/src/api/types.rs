//! OpenAI request and response bodies.
//!
//! Requests deserialize leniently: fields this server does not know are
//! ignored (clients send many), and fields it knows but cannot honour are
//! kept so that `validate` can reject non-default values instead of silently
//! changing what the client asked for.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::backend::{OpenAiFinish, OuroStats};

/// Fields shared by `/v1/chat/completions` and `/v1/completions`.
#[derive(Deserialize, Debug, Default)]
pub struct RequestOptions {
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub stream: Option<bool>,
    pub n: Option<u64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logit_bias: Option<Map<String, Value>>,
}

/// `stop`: one string or a list of them.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug)]
pub struct ChatCompletionRequest {
    pub messages: Vec<RequestMessage>,
    /// The newer name of `max_tokens` for chat; wins when both are sent.
    pub max_completion_tokens: Option<u64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u64>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    /// The legacy names of `tools` and `tool_choice`.
    pub functions: Option<Vec<Value>>,
    pub function_call: Option<Value>,
    pub response_format: Option<Value>,
    /// Output kinds besides text (audio) and the audio settings.
    pub modalities: Option<Vec<String>>,
    pub audio: Option<Value>,
    /// Answers grounded on a web search.
    pub web_search_options: Option<Value>,
    #[serde(flatten)]
    pub options: RequestOptions,
}

#[derive(Deserialize, Debug)]
pub struct RequestMessage {
    pub role: String,
    pub content: Option<MessageContent>,
}

/// Message content: a string, or a list of parts of which only text parts
/// mean anything to a text model.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Debug)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Deserialize, Debug)]
pub struct CompletionRequest {
    pub prompt: Option<Prompt>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub best_of: Option<u64>,
    pub logprobs: Option<u64>,
    #[serde(flatten)]
    pub options: RequestOptions,
}

/// `prompt`: a string, token ids, or a batch of either (accepted with one
/// element only, since this server generates one choice per request).
/// Ids are `u64` so that one past `u32` is refused by `validate` by name
/// rather than as a shape error.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Batch(Vec<String>),
    Tokens(Vec<u64>),
    TokenBatch(Vec<Vec<u64>>),
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

#[derive(Serialize, Debug)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [ChatChoice; 1],
    pub usage: Usage,
    pub ouro: &'a OuroStats,
}

#[derive(Serialize, Debug)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    /// Always null: log-probabilities are not offered; clients expect the key.
    pub logprobs: Option<()>,
    pub finish_reason: OpenAiFinish,
}

#[derive(Serialize, Debug)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Serialize, Debug)]
pub struct ChatChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [ChunkChoice; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ouro: Option<&'a OuroStats>,
}

#[derive(Serialize, Debug)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<()>,
    pub finish_reason: Option<OpenAiFinish>,
}

#[derive(Serialize, Debug, Default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A `/v1/completions` response, and (with `usage`/`ouro` only on the last)
/// each of its streamed chunks: OpenAI uses the same shape for both.
#[derive(Serialize, Debug)]
pub struct TextCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [TextChoice; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ouro: Option<&'a OuroStats>,
}

#[derive(Serialize, Debug)]
pub struct TextChoice {
    pub text: String,
    pub index: u32,
    pub logprobs: Option<()>,
    pub finish_reason: Option<OpenAiFinish>,
}

#[derive(Serialize, Debug)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

#[derive(Serialize, Debug)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

#[derive(Serialize, Debug)]
pub struct Health {
    pub status: &'static str,
    pub model: String,
    pub mode: String,
}
