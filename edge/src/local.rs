//! Loading a local model with its tokenizer and chat template.

use anyhow::Context;
use ouro_common::chat::{ChatTemplate, Message, CHATML};
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::tokenizer::Tokenizer;
use ouro_config::models;
use ouro_config::vocab::DraftVocabArgs;
use ouro_edge::engine::draft_vocab;

/// Sets the thread count of candle's and rayon's pools. Must run before the
/// first model call: both pools read it once, when they start.
pub fn set_threads(threads: usize) {
    if threads > 0 {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
}

/// Effective model thread count.
pub fn threads() -> usize {
    std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

pub use ouro_edge::engine::LocalModel;

/// Loading the engine's [`LocalModel`] by name, and prompts for the CLI.
pub trait LoadLocal: Sized {
    fn load(name_or_path: &str, opts: &LoadOptions) -> anyhow::Result<Self> {
        Self::load_with_vocab(name_or_path, opts, None)
    }

    /// A model that drafts: with the restricted vocabulary `vocab` chooses
    /// (FR-Spec), said on stderr. `None`: every id, nothing said.
    fn load_with_vocab(name_or_path: &str, opts: &LoadOptions, vocab: Option<&DraftVocabArgs>) -> anyhow::Result<Self>;

    /// Prompt token ids for a chat turn, or for raw text. Raw text is the
    /// whole prompt as its author wrote it, so control tokens in it count;
    /// in a chat turn they are text (see [`LocalModel::chat_ids`]).
    fn prompt_ids(&self, prompt: &str, system: Option<&str>, raw: bool) -> anyhow::Result<Vec<u32>>;
}

impl LoadLocal for LocalModel {
    fn load_with_vocab(name_or_path: &str, opts: &LoadOptions, vocab: Option<&DraftVocabArgs>) -> anyhow::Result<Self> {
        let path = models::resolve(name_or_path)?;
        let (mut model, ct) = gguf::load(&path, opts).with_context(|| format!("loading {}", path.display()))?;
        let tokenizer = Tokenizer::from_gguf(&ct).context("building the tokenizer from GGUF metadata")?;
        let info = tokenizer.info();
        if let Some(args) = vocab {
            match draft_vocab::attach(&mut model, &path, &ct, &info.identity, args, opts)
                .with_context(|| format!("--draft-vocab {} for {name_or_path}", args.draft_vocab))?
            {
                Some(attached) => eprintln!("{name_or_path}: {attached}"),
                None => eprintln!("{name_or_path}: drafting over every id (--draft-vocab {})", args.draft_vocab),
            }
        }
        let token_text = |id: Option<u32>| id.and_then(|i| tokenizer.inner().id_to_token(i)).unwrap_or_default();
        let source = info.chat_template.clone().unwrap_or_else(|| CHATML.to_string());
        let template = ChatTemplate::new(&source, &token_text(info.bos), &token_text(info.eos))?;
        Ok(Self { name: name_or_path.to_string(), model, tokenizer, template })
    }

    fn prompt_ids(&self, prompt: &str, system: Option<&str>, raw: bool) -> anyhow::Result<Vec<u32>> {
        if !raw {
            let mut msgs = Vec::new();
            if let Some(s) = system {
                msgs.push(Message::new("system", s));
            }
            msgs.push(Message::new("user", prompt));
            return Ok(self.chat_ids(&msgs)?);
        }
        let mut ids = self.bos();
        ids.extend(self.tokenizer.encode(prompt, true)?);
        Ok(ids)
    }
}

pub fn list_models() {
    println!("model cache: {}", models::model_dir().display());
    for m in models::pinned_models() {
        let state = match models::resolve(m.name) {
            Ok(_) => "fetched",
            Err(_) => "not fetched (deploy/fetch-models.sh)",
        };
        println!("  {:<22} {:>13} bytes  {:<10} {}", m.name, m.size, state, m.description);
    }
}
