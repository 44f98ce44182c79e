//! The drafter's restricted vocabulary (FR-Spec): which ranking
//! `--draft-vocab` means for a given drafter, and the restricted LM head
//! built from it at load.

use std::path::Path;

use ouro_common::model::gguf::{self, Content, LoadOptions};
use ouro_common::model::{ModelError, RankedVocab, Transformer, VocabError, VocabSubset};
use ouro_config::vocab::{DraftVocab, DraftVocabArgs, ReadError};

#[derive(Debug, thiserror::Error)]
pub enum DraftVocabError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Vocab(#[from] VocabError),
    #[error("building the restricted drafter head: {0}")]
    Model(#[from] ModelError),
}

/// A ranking chosen for a drafter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Where it came from (a shipped file's repository path, or the path given).
    pub source: String,
    pub subset: VocabSubset,
}

/// The subset `args` means for a drafter with this tokenizer identity and
/// vocabulary size; `None` for `none`, and for `auto` when no shipped
/// ranking was made for this tokenizer. A file given by path must match.
pub fn choose(args: &DraftVocabArgs, tokenizer: &str, vocab: usize) -> Result<Option<Chosen>, DraftVocabError> {
    if args.draft_vocab_size == Some(0) {
        return Err(VocabError::Empty.into());
    }
    for (source, text) in args.candidates()? {
        let ranked = RankedVocab::parse(&text, &source)?;
        match ranked.check(&source, tokenizer, vocab) {
            Ok(()) => {}
            // `auto` looks for a ranking of this tokenizer; others are not errors.
            Err(_) if args.draft_vocab == DraftVocab::Auto => continue,
            Err(e) => return Err(e.into()),
        }
        let subset = ranked.subset(args.draft_vocab_size, vocab)?;
        return Ok(Some(Chosen { source, subset }));
    }
    Ok(None)
}

/// What [`attach`] gave the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub source: String,
    pub ids: usize,
    pub vocab: usize,
    /// Memory of the restricted head, on top of the full one.
    pub bytes: usize,
}

impl std::fmt::Display for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "draft vocabulary: {} of {} ids from {} (restricted LM head, {:.1} MB)",
            self.ids,
            self.vocab,
            self.source,
            self.bytes as f64 / 1e6
        )
    }
}

/// Chooses the drafter's ranking ([`choose`]) and gives `model` (loaded from
/// `path`, whose header is `ct`, with `opts`) its restricted head.
pub fn attach(
    model: &mut Transformer,
    path: &Path,
    ct: &Content,
    tokenizer: &str,
    args: &DraftVocabArgs,
    opts: &LoadOptions,
) -> Result<Option<Attached>, DraftVocabError> {
    let vocab = ouro_common::model::CausalLm::config(model).vocab_size;
    let Some(chosen) = choose(args, tokenizer, vocab)? else {
        model.take_draft_head();
        return Ok(None);
    };
    let ids = chosen.subset.len();
    let head = gguf::load_draft_head(path, ct, chosen.subset, opts)?;
    let bytes = head.size_bytes();
    model.set_draft_head(head)?;
    Ok(Some(Attached { source: chosen.source, ids, vocab, bytes }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_config::vocab::SHIPPED;

    const QWEN_VOCAB: usize = 151_936;

    fn qwen_identity() -> String {
        RankedVocab::parse(SHIPPED[0].text, SHIPPED[0].name).unwrap().tokenizer
    }

    fn args(v: DraftVocab, size: Option<usize>) -> DraftVocabArgs {
        DraftVocabArgs { draft_vocab: v, draft_vocab_size: size }
    }

    /// A ranking file that is removed when the guard drops.
    struct Temp(std::path::PathBuf);

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file(text: &str) -> (Temp, DraftVocab) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ouro-draft-vocab-{}-{n}.txt", std::process::id()));
        std::fs::write(&p, text).unwrap();
        (Temp(p.clone()), DraftVocab::File(p))
    }

    #[test]
    fn auto_takes_the_shipped_ranking_of_the_drafters_tokenizer_only() {
        let id = qwen_identity();
        let c = choose(&DraftVocabArgs::default(), &id, QWEN_VOCAB).unwrap().unwrap();
        assert_eq!((c.source.as_str(), c.subset.len()), ("deploy/vocab/qwen2.5-frspec-32k.txt", 32_768));
        let c = choose(&args(DraftVocab::Auto, Some(1000)), &id, QWEN_VOCAB).unwrap().unwrap();
        assert_eq!(c.subset.len(), 1000);
        // Another tokenizer (SmolLM2's), or another vocabulary size: none.
        assert_eq!(choose(&DraftVocabArgs::default(), &"0".repeat(64), 49_152).unwrap(), None);
        assert_eq!(choose(&DraftVocabArgs::default(), &id, 1000).unwrap(), None);
        assert_eq!(choose(&args(DraftVocab::Off, None), &id, QWEN_VOCAB).unwrap(), None);
    }

    #[test]
    fn the_shipped_ranking_keeps_the_control_and_stop_tokens() {
        let r = RankedVocab::parse(SHIPPED[0].text, SHIPPED[0].name).unwrap();
        // <|endoftext|> (also BOS and padding), <|im_start|>, <|im_end|> (EOS),
        // the FIM tokens and <|file_sep|>: Qwen2.5's added tokens, 151643..=151664.
        for id in 151_643..=151_664 {
            assert!(r.ids.contains(&id), "{id} missing");
        }
        assert!(r.ids.iter().all(|&id| (id as usize) < QWEN_VOCAB));
        assert!(SHIPPED[0].text.len() < 300_000);
    }

    #[test]
    fn a_file_for_another_tokenizer_or_model_is_refused() {
        let id = qwen_identity();
        let (_d, v) = file(SHIPPED[0].text);
        assert!(choose(&args(v.clone(), None), &id, QWEN_VOCAB).unwrap().is_some());
        let e = choose(&args(v.clone(), None), &"ab".repeat(32), QWEN_VOCAB).unwrap_err();
        assert!(matches!(e, DraftVocabError::Vocab(VocabError::TokenizerMismatch { .. })), "{e}");
        assert!(e.to_string().contains("--draft-vocab none"), "{e}");
        let e = choose(&args(v.clone(), None), &id, 49_152).unwrap_err();
        assert!(matches!(e, DraftVocabError::Vocab(VocabError::VocabSizeMismatch { .. })), "{e}");
        let e = choose(&args(v, Some(0)), &id, QWEN_VOCAB).unwrap_err();
        assert!(matches!(e, DraftVocabError::Vocab(VocabError::Empty)), "{e}");
        // Ids beyond the vocabulary the file itself declares.
        let bad = format!("ouro-draft-vocab 1\ntokenizer {id}\nvocab {QWEN_VOCAB}\nids 1\n{QWEN_VOCAB}\n");
        let (_d, v) = file(&bad);
        let e = choose(&args(v, None), &id, QWEN_VOCAB).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let (_d, v) = file("not a ranking");
        assert!(choose(&args(v, None), &id, QWEN_VOCAB).unwrap_err().to_string().contains("line 1"));
    }
}
