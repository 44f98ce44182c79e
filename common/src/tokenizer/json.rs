//! A [`Tokenizer`] from a Hugging Face `tokenizer.json`, for safetensors model
//! directories, with the BOS/EOS facts read from the config files beside it.

use std::path::Path;

use serde_json::Value;

use super::identity::{identity, Ranks};
use super::{is_stop_name, Result, Tokenizer, TokenizerError, TokenizerInfo, TokenizerKind};

pub(super) fn load(path: &Path) -> Result<Tokenizer> {
    let text = read(path)?;
    let raw: Value =
        serde_json::from_str(&text).map_err(|source| TokenizerError::Json { path: path.to_path_buf(), source })?;
    let inner: tokenizers::Tokenizer = text.parse().map_err(TokenizerError::Tokenizers)?;

    let dir = path.parent().unwrap_or(Path::new("."));
    let tk_config = read_optional(&dir.join("tokenizer_config.json"))?;
    let config = read_optional(&dir.join("config.json"))?;
    let gen_config = read_optional(&dir.join("generation_config.json"))?;
    let key = |v: &Option<Value>, k: &str| v.as_ref().and_then(|v| v.get(k)).cloned();

    // `tokenizer_config.json` names tokens (a string or an AddedToken object);
    // the model configs give ids, EOS possibly as a list of stop ids.
    let named = |v: Option<Value>| -> Option<u32> {
        let v = v?;
        let content = v.as_str().or_else(|| v.get("content")?.as_str())?;
        inner.token_to_id(content)
    };
    let ids = |v: Option<Value>| -> Vec<u32> {
        match v {
            Some(Value::Array(items)) => items.iter().filter_map(as_u32).collect(),
            Some(v) => as_u32(&v).into_iter().collect(),
            None => Vec::new(),
        }
    };
    let config_eos = ids(key(&config, "eos_token_id"));
    let gen_eos = ids(key(&gen_config, "eos_token_id"));
    let bos = named(key(&tk_config, "bos_token"))
        .or_else(|| ids(key(&config, "bos_token_id")).first().copied())
        .or_else(|| ids(key(&gen_config, "bos_token_id")).first().copied());
    let eos = named(key(&tk_config, "eos_token"))
        .or_else(|| config_eos.first().copied())
        .or_else(|| gen_eos.first().copied());

    let vocab = inner.get_vocab(true);
    let vocab_size = vocab.values().max().map_or(0, |&m| m as usize + 1);
    let added = inner.get_added_tokens_decoder();

    let mut stop_ids: Vec<u32> = eos.into_iter().chain(config_eos).chain(gen_eos).collect();
    for (&id, token) in &added {
        if token.special && (is_stop_name(&token.content) || token.content == "</s>") {
            stop_ids.push(id);
        }
    }
    stop_ids.retain(|&id| (id as usize) < vocab_size);
    stop_ids.sort_unstable();
    stop_ids.dedup();

    let add_bos = match key(&tk_config, "add_bos_token").and_then(|v| v.as_bool()) {
        Some(b) => b,
        // No flag: the post-processor is what adds BOS, if anything does.
        None => bos.is_some_and(|bos| inner.encode_fast("", true).is_ok_and(|e| e.get_ids().first() == Some(&bos))),
    };

    let chat_template = match key(&tk_config, "chat_template") {
        Some(Value::String(s)) => Some(s),
        // Several named templates: the "default" one, else the first.
        Some(Value::Array(list)) => {
            let template = |t: &Value| t.get("template")?.as_str().map(str::to_string);
            list.iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or(list.first())
                .and_then(template)
        }
        _ => None,
    }
    .map_or_else(|| read_optional_text(&dir.join("chat_template.jinja")), |t| Ok(Some(t)))?;

    let mut tokens: Vec<Option<&str>> = vec![None; vocab_size];
    for (token, &id) in &vocab {
        tokens[id as usize] = Some(token);
    }
    let ranks = ranks(&raw);
    let mut added_list: Vec<(u32, &str)> = added.iter().map(|(&id, t)| (id, t.content.as_str())).collect();
    added_list.sort_unstable();

    let info = TokenizerInfo {
        kind: TokenizerKind::HfJson,
        bos,
        eos,
        stop_ids,
        add_bos,
        vocab_size,
        chat_template,
        identity: identity(&tokens, &ranks, &added_list),
    };
    Ok(Tokenizer::new(inner, info))
}

/// The merges (BPE) or scores (Unigram) of the `model` section; merges may be
/// written as `"a b"` strings or as `["a", "b"]` pairs.
fn ranks(raw: &Value) -> Ranks<'_> {
    let model = &raw["model"];
    match model["type"].as_str() {
        Some("BPE") | None if model["merges"].is_array() => Ranks::Merges(
            model["merges"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| match m {
                    Value::String(s) => s.split_once(' '),
                    Value::Array(p) => Some((p.first()?.as_str()?, p.get(1)?.as_str()?)),
                    _ => None,
                })
                .collect(),
        ),
        Some("Unigram") => {
            Ranks::Scores(model["vocab"].as_array().into_iter().flatten().filter_map(|p| p.get(1)?.as_f64()).collect())
        }
        _ => Ranks::None,
    }
}

fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|x| u32::try_from(x).ok())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Io { path: path.to_path_buf(), source })
}

fn read_optional_text(path: &Path) -> Result<Option<String>> {
    if path.is_file() {
        read(path).map(Some)
    } else {
        Ok(None)
    }
}

fn read_optional(path: &Path) -> Result<Option<Value>> {
    let Some(text) = read_optional_text(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|source| TokenizerError::Json { path: path.to_path_buf(), source })
}
