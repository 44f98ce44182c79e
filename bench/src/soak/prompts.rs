//! The prompts both scenarios cycle through: Spec-Bench first turns, taken
//! round-robin across categories, rendered with the model's chat template.

use std::collections::BTreeMap;
use std::path::Path;

use ouro_common::chat::{ChatTemplate, Message, CHATML};
use ouro_common::model::gguf;
use ouro_common::tokenizer::Tokenizer;

use super::SoakError;

/// One question: its text (what an HTTP client sends) and its chat prompt's
/// token ids (what a speculative session opens with).
#[derive(Debug, Clone)]
pub struct Prompt {
    pub category: String,
    pub question: String,
    pub ids: Vec<u32>,
}

/// `n` questions of at most `max_tokens` prompt tokens. Long ones are
/// skipped: prefill is the same for every request, and on a small CPU a few
/// long prompts would be most of the run.
pub fn load(model: &Path, questions: &Path, n: usize, max_tokens: usize) -> Result<Vec<Prompt>, SoakError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| SoakError::Setup(format!("{what}: {e}"));
    let ct = gguf::read_content(model).map_err(|e| setup(&format!("reading {}", model.display()), &e))?;
    let tokenizer = Tokenizer::from_gguf(&ct).map_err(|e| setup("the model's tokenizer", &e))?;
    let info = tokenizer.info();
    let text = |id: Option<u32>| id.and_then(|i| tokenizer.inner().id_to_token(i)).unwrap_or_default();
    let source = info.chat_template.clone().unwrap_or_else(|| CHATML.to_string());
    let template = ChatTemplate::new(&source, &text(info.bos), &text(info.eos))
        .map_err(|e| setup("the model's chat template", &e))?;

    let raw = std::fs::read_to_string(questions)
        .map_err(|source| SoakError::Io { what: format!("reading {}", questions.display()), source })?;
    let mut by_category: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let q: serde_json::Value = serde_json::from_str(line).map_err(|e| setup("a question line", &e))?;
        let Some(turn) = q["turns"][0].as_str() else { continue };
        let category = q["category"].as_str().unwrap_or("unknown").to_string();
        by_category.entry(category).or_default().push(turn.to_string());
    }
    let mut out = Vec::new();
    let deepest = by_category.values().map(Vec::len).max().unwrap_or(0);
    'rounds: for i in 0..deepest {
        for (category, qs) in &by_category {
            let Some(q) = qs.get(i) else { continue };
            let rendered =
                template.render(&[Message::new("user", q)], true).map_err(|e| setup("rendering a prompt", &e))?;
            let ids = tokenizer.encode(&rendered, true).map_err(|e| setup("tokenizing a prompt", &e))?;
            if ids.len() <= max_tokens {
                out.push(Prompt { category: category.clone(), question: q.clone(), ids });
                if out.len() == n {
                    break 'rounds;
                }
            }
        }
    }
    if out.is_empty() {
        return Err(SoakError::Setup(format!(
            "no question in {} has at most {max_tokens} prompt tokens",
            questions.display()
        )));
    }
    Ok(out)
}
