//! Workloads: Spec-Bench questions rendered with a model's chat template.

use std::path::Path;

use anyhow::Context;
use ouro_common::chat::{ChatTemplate, Message, CHATML};
use ouro_common::model::gguf;
use ouro_common::tokenizer::Tokenizer;
use ouro_config::models;

/// A model's tokenizer and chat template, without its weights.
pub struct TextSide {
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
}

impl TextSide {
    pub fn load(model: &str) -> anyhow::Result<Self> {
        let path = models::resolve(model)?;
        let ct = gguf::read_content(&path).with_context(|| format!("reading {}", path.display()))?;
        let tokenizer = Tokenizer::from_gguf(&ct)?;
        let info = tokenizer.info();
        let text = |id: Option<u32>| id.and_then(|i| tokenizer.inner().id_to_token(i)).unwrap_or_default();
        let source = info.chat_template.clone().unwrap_or_else(|| CHATML.to_string());
        let template = ChatTemplate::new(&source, &text(info.bos), &text(info.eos))?;
        Ok(Self { tokenizer, template })
    }

    /// Token ids of a single-turn chat prompt.
    pub fn chat_prompt(&self, question: &str) -> anyhow::Result<Vec<u32>> {
        let rendered = self.template.render(&[Message::new("user", question)], true)?;
        Ok(self.tokenizer.encode(&rendered, true)?)
    }

    /// Up to `n` Spec-Bench prompts as token ids, with their categories:
    /// round-robin over `categories` (all when empty), skipping any longer
    /// than `max_tokens`.
    pub fn spec_bench_prompts(
        &self,
        path: &Path,
        n: usize,
        max_tokens: usize,
        categories: &[String],
    ) -> anyhow::Result<Vec<(String, Vec<u32>)>> {
        let mut prompts = Vec::new();
        for (cat, q) in spec_bench(path, usize::MAX)? {
            if prompts.len() == n {
                break;
            }
            if !categories.is_empty() && !categories.contains(&cat) {
                continue;
            }
            let ids = self.chat_prompt(&q)?;
            if ids.len() <= max_tokens {
                prompts.push((cat, ids));
            }
        }
        Ok(prompts)
    }
}

/// Spec-Bench questions (first turns), taken round-robin across categories
/// so that a short run still covers all of them.
pub fn spec_bench(path: &Path, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut by_cat: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let q: serde_json::Value = serde_json::from_str(line)?;
        let raw = q["category"].as_str().unwrap_or("");
        let cat = match raw {
            "translation" | "summarization" | "qa" | "math_reasoning" | "rag" => raw,
            _ => "mt_bench",
        };
        let turn = q["turns"][0].as_str().context("a question without a first turn")?;
        by_cat.entry(cat.to_string()).or_default().push(turn.to_string());
    }
    let mut out = Vec::new();
    for i in 0.. {
        let before = out.len();
        for (cat, qs) in &by_cat {
            if out.len() < n {
                if let Some(q) = qs.get(i) {
                    out.push((cat.clone(), q.clone()));
                }
            }
        }
        if out.len() == n || out.len() == before {
            break;
        }
    }
    Ok(out)
}
