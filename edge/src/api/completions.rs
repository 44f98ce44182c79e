//! `POST /v1/chat/completions` and `POST /v1/completions`.
//!
//! The two differ only in how the prompt is made and how the text is
//! wrapped; validation, the token budget, stop sequences and streaming are
//! shared.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio_stream::StreamExt;

use super::backend::GenRequest;
use super::error::ApiError;
use super::extract::OpenAiJson;
use super::generation::{Generation, Output};
use super::reply::{record_finish, set_mode_header, unix_now, Endpoint, Reply};
use super::sse;
use super::state::AppState;
use super::types::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionRequest, CompletionRequest, TextChoice, TextCompletion,
    Usage,
};
use super::validate::{self, PromptInput, Settings};

pub async fn chat_completions(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let (messages, options) = validate::chat(req)?;
    let settings = validate::settings(options, &state.backend.model_id())?;
    let prompt = state.backend.chat_prompt(&messages)?;
    serve(&state, Endpoint::Chat, prompt, settings, "messages").await
}

pub async fn completions(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let (prompt, options) = validate::completion(req)?;
    let settings = validate::settings(options, &state.backend.model_id())?;
    let prompt = match prompt {
        PromptInput::Text(text) => state.backend.text_prompt(&text)?,
        PromptInput::Tokens(ids) => {
            let ids = validate::token_ids(&ids, state.backend.vocab_size())?;
            state.backend.token_prompt(ids)?
        }
    };
    serve(&state, Endpoint::Completion, prompt, settings, "prompt").await
}

async fn serve(
    state: &AppState,
    endpoint: Endpoint,
    prompt: Vec<u32>,
    settings: Settings,
    prompt_param: &str,
) -> Result<Response, ApiError> {
    let backend = &state.backend;
    let max_tokens = validate::budget(prompt.len(), settings.max_tokens, backend.max_context(), prompt_param)?;
    // After validation, so a bad request is told so whatever the load.
    let slot = state.admission.admit().await?;
    let reply = Reply {
        endpoint,
        id: new_id(endpoint),
        created: unix_now(),
        model: backend.model_id(),
        prompt_tokens: prompt.len(),
    };
    metrics::counter!(
        "ouro_edge_api_requests_total",
        "endpoint" => endpoint.label(),
        "stream" => if settings.stream { "true" } else { "false" }
    )
    .increment(1);
    let mode = backend.current_mode();
    let rx = backend.generate(GenRequest {
        prompt,
        max_tokens,
        temperature: settings.temperature,
        top_p: settings.top_p,
        seed: settings.seed,
    });
    let mut generation = Generation::new(rx, settings.stops, mode.clone()).holding(slot);
    if settings.stream {
        return match generation.next().await {
            Some(Output::Failed(error)) => Err(error),
            Some(first) => Ok(sse::response(reply, generation, first, &mode)),
            // Never: a generation's last output is Finished or Failed.
            None => Err(ApiError::Generation("the engine ended the generation without a result".into())),
        };
    }
    let (text, finish) = generation.run_to_end().await?;
    record_finish(&reply, &finish);
    let usage = Usage::new(reply.prompt_tokens, finish.completion_tokens);
    let mut response = match endpoint {
        Endpoint::Chat => Json(ChatCompletion {
            id: &reply.id,
            object: "chat.completion",
            created: reply.created,
            model: &reply.model,
            choices: [ChatChoice {
                index: 0,
                message: AssistantMessage { role: "assistant", content: text },
                logprobs: None,
                finish_reason: finish.finish_reason,
            }],
            usage,
            ouro: &finish.stats,
        })
        .into_response(),
        Endpoint::Completion => Json(TextCompletion {
            id: &reply.id,
            object: "text_completion",
            created: reply.created,
            model: &reply.model,
            choices: [TextChoice { text, index: 0, logprobs: None, finish_reason: Some(finish.finish_reason) }],
            usage: Some(usage),
            ouro: Some(&finish.stats),
        })
        .into_response(),
    };
    set_mode_header(&mut response, &finish.stats.mode);
    Ok(response)
}

fn new_id(endpoint: Endpoint) -> String {
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completion => "cmpl",
    };
    format!("{prefix}-{:016x}", rand::random::<u64>())
}
