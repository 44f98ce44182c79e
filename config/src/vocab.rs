//! The drafter's restricted vocabulary (FR-Spec): the ranking files shipped
//! with ouro, and `--draft-vocab`, which picks one. Parsing and checking a
//! ranking is `ouro_common::model::vocab`'s business; this only finds it.

use std::path::PathBuf;

/// A ranking file compiled into the binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shipped {
    /// Its path in the repository, which names it in messages.
    pub name: &'static str,
    pub text: &'static str,
}

/// Every shipped ranking; `auto` takes the one made for the drafter's
/// tokenizer. Qwen2.5's (the pinned drafter and verifier share it):
/// deploy/vocab/README.md says how it was made.
pub const SHIPPED: &[Shipped] = &[Shipped {
    name: "deploy/vocab/qwen2.5-frspec-32k.txt",
    text: include_str!("../../deploy/vocab/qwen2.5-frspec-32k.txt"),
}];

/// What `--draft-vocab` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftVocab {
    /// The shipped ranking whose tokenizer is the drafter's; none if no
    /// shipped ranking matches.
    Auto,
    /// Every id: the drafter's full LM head.
    Off,
    /// A ranking file, which must match the drafter's tokenizer.
    File(PathBuf),
}

impl std::str::FromStr for DraftVocab {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "auto" => Self::Auto,
            "none" | "off" | "full" => Self::Off,
            path => Self::File(PathBuf::from(path)),
        })
    }
}

impl std::fmt::Display for DraftVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Off => f.write_str("none"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The flags of every command that runs a drafter.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct DraftVocabArgs {
    /// The drafter's restricted vocabulary (FR-Spec): its LM head computes
    /// only the ids of a frequency ranking, a cheaper drafting step. `auto`:
    /// the shipped ranking made for the drafter's tokenizer (Qwen2.5's,
    /// 32,768 of 151,936 ids), else every id; `none`: every id; or a ranking
    /// file (deploy/vocab/README.md), refused unless it matches the drafter's
    /// tokenizer. Verification always covers every id: greedy output does
    /// not change, only how often drafts are accepted.
    #[arg(long, env = "OURO_DRAFT_VOCAB", default_value = "auto", value_name = "auto|none|FILE")]
    pub draft_vocab: DraftVocab,
    /// Keep only the N most frequent ids of the ranking (default: all of it).
    #[arg(long, env = "OURO_DRAFT_VOCAB_SIZE", value_name = "N")]
    pub draft_vocab_size: Option<usize>,
}

impl Default for DraftVocabArgs {
    fn default() -> Self {
        Self { draft_vocab: DraftVocab::Auto, draft_vocab_size: None }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reading the draft vocabulary {path}: {source}")]
pub struct ReadError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

impl DraftVocabArgs {
    /// The rankings to consider, as (name, text): the shipped ones for
    /// `auto`, the file's for a path, none for `none`.
    pub fn candidates(&self) -> Result<Vec<(String, std::borrow::Cow<'static, str>)>, ReadError> {
        Ok(match &self.draft_vocab {
            DraftVocab::Off => Vec::new(),
            DraftVocab::Auto => SHIPPED.iter().map(|s| (s.name.to_string(), s.text.into())).collect(),
            DraftVocab::File(p) => {
                let path = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| ReadError { path: path.clone(), source })?;
                vec![(path, text.into())]
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        vocab: DraftVocabArgs,
    }

    #[test]
    fn the_flag_names_auto_none_or_a_file() {
        let parse =
            |args: &[&str]| Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap().vocab;
        assert_eq!(parse(&[]), DraftVocabArgs::default());
        assert_eq!(parse(&["--draft-vocab", "none"]).draft_vocab, DraftVocab::Off);
        let f = parse(&["--draft-vocab", "my.txt", "--draft-vocab-size", "16384"]);
        assert_eq!((f.draft_vocab, f.draft_vocab_size), (DraftVocab::File("my.txt".into()), Some(16384)));
        assert!(Cli::try_parse_from(["x", "--draft-vocab-size", "-1"]).is_err());
    }

    #[test]
    fn candidates_come_from_the_shipped_files_or_the_given_one() {
        let auto = DraftVocabArgs::default().candidates().unwrap();
        assert_eq!(auto.len(), SHIPPED.len());
        assert!(auto[0].1.contains("ouro-draft-vocab 1"));
        let off = DraftVocabArgs { draft_vocab: DraftVocab::Off, draft_vocab_size: None };
        assert!(off.candidates().unwrap().is_empty());
        let missing =
            DraftVocabArgs { draft_vocab: DraftVocab::File("/nonexistent/v.txt".into()), draft_vocab_size: None };
        let e = missing.candidates().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/v.txt"), "{e}");
    }
}
