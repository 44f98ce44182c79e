//! Request validation: what this server accepts, and the defaults it fills in.
//!
//! The rule for OpenAI fields this server cannot honour: absent, null or the
//! value that means "off" is accepted; anything else is a 400 naming the
//! field. Silently ignoring, say, a penalty would return text the client did
//! not ask for. Fields this server does not know at all are ignored, as
//! OpenAI-compatible servers do.

use serde_json::Value;

use super::backend::ChatMessage;
use super::error::ApiError;
use super::types::{
    ChatCompletionRequest, CompletionRequest, MessageContent, Prompt, RequestMessage, RequestOptions, Stop,
};

/// Accepted in the `model` field besides the served model's own id, so that
/// clients can be configured once whatever model the daemon runs.
pub const MODEL_ALIAS: &str = "ouro";

/// `max_tokens` when the request has none: the room left in the context, but
/// no more than this, so a forgotten limit cannot tie up the cloud verifier
/// for a whole context's worth of rounds.
pub const DEFAULT_MAX_TOKENS: usize = 512;

/// OpenAI's limit on the number of stop sequences.
pub const MAX_STOPS: usize = 4;

/// `temperature` when the request has none: greedy, unlike OpenAI's 1.0.
/// Greedy speculative decoding returns exactly the verifier model's own
/// greedy output, byte for byte, whatever the drafter proposed; that
/// determinism is what ouro promises by default. Clients that want sampling
/// say so.
pub const DEFAULT_TEMPERATURE: f32 = 0.0;

/// The request's generation settings, checked, before the prompt is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub max_tokens: Option<usize>,
    pub temperature: f32,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stops: Vec<String>,
    pub stream: bool,
}

pub fn settings(opts: RequestOptions, model_id: &str) -> Result<Settings, ApiError> {
    match opts.model.as_deref() {
        None => return Err(ApiError::invalid("model", "you must provide a model parameter")),
        Some(m) if m != model_id && m != MODEL_ALIAS => return Err(ApiError::ModelNotFound(m.to_owned())),
        Some(_) => {}
    }
    if let Some(n) = opts.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid("n", format!("n = {n} is not supported: this server returns one choice")));
    }
    let max_tokens = match opts.max_tokens {
        Some(0) => return Err(ApiError::invalid("max_tokens", "max_tokens must be at least 1")),
        // Anything over usize::MAX is over the context too; the budget check says so.
        Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        None => None,
    };
    let temperature = match opts.temperature {
        None => DEFAULT_TEMPERATURE,
        Some(t) if t.is_finite() && (0.0..=2.0).contains(&t) => t as f32,
        Some(t) => return Err(ApiError::invalid("temperature", format!("temperature must be in [0, 2], got {t}"))),
    };
    let top_p = match opts.top_p {
        None => None,
        Some(p) if p > 0.0 && p <= 1.0 => Some(p as f32),
        Some(p) => return Err(ApiError::invalid("top_p", format!("top_p must be in (0, 1], got {p}"))),
    };
    for (param, value) in [("presence_penalty", opts.presence_penalty), ("frequency_penalty", opts.frequency_penalty)] {
        if let Some(v) = value.filter(|&v| v != 0.0) {
            return Err(unsupported(param, &format!("{param} = {v}")));
        }
    }
    if opts.logit_bias.is_some_and(|m| !m.is_empty()) {
        return Err(unsupported("logit_bias", "logit_bias"));
    }
    let stops = match opts.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    if stops.len() > MAX_STOPS {
        return Err(ApiError::invalid("stop", format!("at most {MAX_STOPS} stop sequences are allowed")));
    }
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "stop sequences must not be empty"));
    }
    Ok(Settings { max_tokens, temperature, top_p, seed: opts.seed, stops, stream: opts.stream.unwrap_or(false) })
}

fn unsupported(param: &str, what: &str) -> ApiError {
    ApiError::invalid(param, format!("{what} is not supported by this server"))
}

/// Checks the chat-only fields; returns the messages for the chat template
/// and the shared options.
pub fn chat(req: ChatCompletionRequest) -> Result<(Vec<ChatMessage>, RequestOptions), ApiError> {
    if req.logprobs == Some(true) {
        return Err(unsupported("logprobs", "logprobs"));
    }
    if req.top_logprobs.is_some_and(|n| n > 0) {
        return Err(unsupported("top_logprobs", "top_logprobs"));
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported("tools", "tool calling"));
    }
    if req.functions.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(unsupported("functions", "function calling"));
    }
    // "none", and "auto" with no tools to choose from, ask for plain text.
    for (param, choice) in [("tool_choice", &req.tool_choice), ("function_call", &req.function_call)] {
        match choice {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "none" || s == "auto" => {}
            Some(other) => return Err(unsupported(param, &format!("{param} = {other}"))),
        }
    }
    if req.modalities.as_ref().is_some_and(|m| m.iter().any(|m| m != "text")) {
        return Err(unsupported("modalities", "output other than text"));
    }
    if req.audio.as_ref().is_some_and(|a| !a.is_null()) {
        return Err(unsupported("audio", "audio output"));
    }
    if req.web_search_options.as_ref().is_some_and(|w| !w.is_null()) {
        return Err(unsupported("web_search_options", "web search"));
    }
    if let Some(format) = &req.response_format {
        if format.get("type").and_then(Value::as_str) != Some("text") {
            return Err(unsupported("response_format", "a response_format other than {\"type\": \"text\"}"));
        }
    }
    let messages = messages(&req.messages)?;
    let mut options = req.options;
    options.max_tokens = req.max_completion_tokens.or(options.max_tokens);
    Ok((messages, options))
}

fn messages(messages: &[RequestMessage]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "user" | "assistant" => m.role.as_str(),
                // OpenAI's newer name for the system turn; chat templates know only "system".
                "developer" => "system",
                other => {
                    return Err(ApiError::invalid(
                        &format!("messages[{i}].role"),
                        format!("unsupported role `{other}`: expected system, developer, user or assistant"),
                    ))
                }
            };
            let content = match &m.content {
                None => {
                    return Err(ApiError::invalid(&format!("messages[{i}].content"), "message content is required"))
                }
                Some(MessageContent::Text(text)) => text.clone(),
                Some(MessageContent::Parts(parts)) => {
                    let mut texts = Vec::with_capacity(parts.len());
                    for (j, part) in parts.iter().enumerate() {
                        match (part.kind.as_str(), &part.text) {
                            ("text", Some(text)) => texts.push(text.as_str()),
                            _ => {
                                return Err(ApiError::invalid(
                                    &format!("messages[{i}].content[{j}]"),
                                    "only text content parts are supported",
                                ))
                            }
                        }
                    }
                    texts.join("\n")
                }
            };
            Ok(ChatMessage::new(role, &content))
        })
        .collect()
}

/// A completion's prompt as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    Text(String),
    /// Token ids, not yet checked against the vocabulary (see [`token_ids`]).
    Tokens(Vec<u64>),
}

/// Checks the completion-only fields; returns the prompt and the shared options.
pub fn completion(req: CompletionRequest) -> Result<(PromptInput, RequestOptions), ApiError> {
    if req.echo == Some(true) {
        return Err(unsupported("echo", "echo"));
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(unsupported("suffix", "suffix"));
    }
    if let Some(b) = req.best_of.filter(|&b| b != 1) {
        return Err(unsupported("best_of", &format!("best_of = {b}")));
    }
    if req.logprobs.is_some() {
        return Err(unsupported("logprobs", "logprobs"));
    }
    let prompt = match req.prompt {
        None => return Err(ApiError::invalid("prompt", "you must provide a prompt")),
        Some(Prompt::Text(text)) => PromptInput::Text(text),
        Some(Prompt::Tokens(ids)) => PromptInput::Tokens(ids),
        Some(Prompt::Batch(batch)) => PromptInput::Text(single(batch)?),
        Some(Prompt::TokenBatch(batch)) => PromptInput::Tokens(single(batch)?),
    };
    Ok((prompt, req.options))
}

/// The one prompt of a batch: this server generates one choice per request.
fn single<T>(batch: Vec<T>) -> Result<T, ApiError> {
    let n = batch.len();
    match <[T; 1]>::try_from(batch) {
        Ok([prompt]) => Ok(prompt),
        Err(_) if n == 0 => Err(ApiError::invalid("prompt", "the prompt is an empty list: send one prompt")),
        Err(_) => Err(ApiError::invalid(
            "prompt",
            format!("a batch of {n} prompts is not supported: this server completes one prompt per request"),
        )),
    }
}

/// Token-id prompts, checked against the vocabulary when its size is known.
pub fn token_ids(ids: &[u64], vocab_size: Option<usize>) -> Result<Vec<u32>, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::invalid("prompt", "the prompt is an empty list of token ids"));
    }
    let limit = vocab_size.map_or(u64::from(u32::MAX) + 1, |v| v as u64);
    ids.iter()
        .enumerate()
        .map(|(i, &id)| match u32::try_from(id) {
            Ok(id) if u64::from(id) < limit => Ok(id),
            _ => Err(ApiError::invalid(
                "prompt",
                match vocab_size {
                    Some(v) => format!("prompt[{i}]: token id {id} is out of range: the vocabulary has {v} tokens"),
                    None => format!("prompt[{i}]: token id {id} is out of range"),
                },
            )),
        })
        .collect()
}

/// How many tokens to generate for a prompt of `prompt_len` tokens.
pub fn budget(
    prompt_len: usize,
    requested: Option<usize>,
    max_context: usize,
    prompt_param: &str,
) -> Result<usize, ApiError> {
    if prompt_len == 0 {
        return Err(ApiError::invalid(prompt_param, "the prompt is empty"));
    }
    match requested {
        Some(m) if prompt_len.saturating_add(m) > max_context => Err(ApiError::context_length(
            prompt_param,
            format!(
                "This model's maximum context length is {max_context} tokens. However, you requested {} tokens \
                 ({prompt_len} in the prompt, {m} for the completion).",
                prompt_len.saturating_add(m)
            ),
        )),
        Some(m) => Ok(m),
        None if prompt_len >= max_context => Err(ApiError::context_length(
            prompt_param,
            format!(
                "This model's maximum context length is {max_context} tokens. However, the prompt is \
                 {prompt_len} tokens, which leaves no room for a completion."
            ),
        )),
        None => Ok((max_context - prompt_len).min(DEFAULT_MAX_TOKENS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_defaults_to_the_room_left_capped() {
        assert_eq!(budget(10, None, 4096, "prompt"), Ok(DEFAULT_MAX_TOKENS));
        assert_eq!(budget(10, None, 100, "prompt"), Ok(90));
        assert_eq!(budget(10, Some(90), 100, "prompt"), Ok(90));
        assert!(budget(10, Some(91), 100, "prompt").is_err());
        assert!(budget(100, None, 100, "prompt").is_err());
        assert!(budget(0, Some(1), 100, "prompt").is_err());
        assert!(budget(10, Some(usize::MAX), 100, "prompt").is_err());
    }

    #[test]
    fn settings_defaults() {
        let opts = RequestOptions { model: Some(MODEL_ALIAS.into()), ..Default::default() };
        let s = settings(opts, "m").expect("valid");
        assert_eq!(
            s,
            Settings { max_tokens: None, temperature: 0.0, top_p: None, seed: None, stops: vec![], stream: false }
        );
    }
}
