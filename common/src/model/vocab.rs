//! Restricted drafter vocabularies (FR-Spec): the drafter's LM head computes
//! logits only for a frequency-ranked subset of the token ids, which shrinks
//! the largest single matrix a small drafter reads per token.
//!
//! - [`RankedVocab`]: a ranking file (token ids, most frequent first, tied
//!   to one tokenizer by its identity hash); the format is in its docs;
//! - [`VocabSubset`]: the ids a restricted head covers, in increasing id
//!   order, with the mapping between a logits column and its token id.
//!
//! Verification always runs on the full vocabulary, so greedy output does
//! not depend on the subset; only how often the drafter is right does.

use std::sync::Arc;

/// What is wrong with a ranking file or a subset. Never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabError {
    #[error("{source_name}: line {line}: {reason}")]
    Parse { source_name: String, line: usize, reason: String },
    #[error(
        "{source_name} ranks the ids of tokenizer {file}, but this model's tokenizer is {model}: \
         rank its vocabulary (deploy/vocab/README.md) or pass --draft-vocab none"
    )]
    TokenizerMismatch { source_name: String, file: String, model: String },
    #[error("{source_name} is for a vocabulary of {file} ids, but the model has {model}")]
    VocabSizeMismatch { source_name: String, file: usize, model: usize },
    #[error("token id {id} is out of range for a vocabulary of {vocab}")]
    IdOutOfRange { id: u32, vocab: usize },
    #[error("token id {0} appears twice")]
    Duplicate(u32),
    #[error("a restricted vocabulary needs at least one id")]
    Empty,
}

/// The first line of every ranking file, with the format's version.
pub const MAGIC: &str = "ouro-draft-vocab 1";

/// A ranking file: token ids of one tokenizer, most frequent first.
///
/// The format is plain text, so a diff shows what a new corpus changed:
///
/// ```text
/// # comment lines (corpus, command) and blank lines anywhere
/// ouro-draft-vocab 1
/// tokenizer <hex SHA-256: TokenizerInfo::identity>
/// vocab <number of ids of the tokenizer's models>
/// ids <N>
/// <id>            (N lines, rank order, each id at most once, below `vocab`)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedVocab {
    /// The tokenizer identity the ids belong to.
    pub tokenizer: String,
    /// The model vocabulary size the ids were checked against.
    pub vocab: usize,
    /// Token ids, most frequent first.
    pub ids: Vec<u32>,
}

impl RankedVocab {
    /// Parses a ranking file; `source_name` (a path, or the shipped file's
    /// name) only labels errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, VocabError> {
        let err =
            |line: usize, reason: String| VocabError::Parse { source_name: source_name.to_string(), line, reason };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let mut next =
            |what: &str| lines.next().ok_or_else(|| err(text.lines().count(), format!("ends before {what}")));
        let (n, magic) = next("the `ouro-draft-vocab` line")?;
        if magic != MAGIC {
            return Err(err(n, format!("expected `{MAGIC}`, found `{}`", clip(magic))));
        }
        let mut field = |key: &str| -> Result<(usize, String), VocabError> {
            let (n, l) = next(&format!("`{key}`"))?;
            match l.split_once(char::is_whitespace) {
                Some((k, v)) if k == key && !v.trim().is_empty() => Ok((n, v.trim().to_string())),
                _ => Err(err(n, format!("expected `{key} <value>`, found `{}`", clip(l)))),
            }
        };
        let (n, tokenizer) = field("tokenizer")?;
        if tokenizer.len() != 64 || !tokenizer.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(n, "the tokenizer identity is not a hex SHA-256".into()));
        }
        let number = |(n, v): (usize, String), what: &str| {
            v.parse::<usize>().map_err(|_| err(n, format!("{what} `{}` is not a count", clip(&v))))
        };
        let vocab = number(field("vocab")?, "vocab")?;
        let count_line = field("ids")?;
        let count_at = count_line.0;
        let count = number(count_line, "ids")?;
        if count == 0 {
            return Err(err(count_at, "a ranking of no ids".into()));
        }
        // `count` is the file's claim: ids are collected as they come, so a
        // huge one costs nothing before the lines run out.
        let mut ids = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (n, l) in lines {
            let id: u32 = l.parse().map_err(|_| err(n, format!("`{}` is not a token id", clip(l))))?;
            if id as usize >= vocab {
                return Err(err(n, format!("token id {id} is out of range for a vocabulary of {vocab}")));
            }
            if !seen.insert(id) {
                return Err(err(n, format!("token id {id} appears twice")));
            }
            if ids.len() == count {
                return Err(err(n, format!("more ids than the {count} announced")));
            }
            ids.push(id);
        }
        if ids.len() != count {
            return Err(err(text.lines().count(), format!("{} ids where {count} were announced", ids.len())));
        }
        Ok(Self { tokenizer: tokenizer.to_ascii_lowercase(), vocab, ids })
    }

    /// The file's text (what [`RankedVocab::parse`] reads back), after
    /// `header` lines, each written as a comment.
    pub fn to_text(&self, header: &[String]) -> String {
        let mut s = String::with_capacity(self.ids.len() * 7 + 256);
        for h in header {
            for l in h.lines() {
                s.push_str(if l.is_empty() { "#" } else { "# " });
                s.push_str(l);
                s.push('\n');
            }
        }
        s.push_str(&format!("{MAGIC}\ntokenizer {}\nvocab {}\nids {}\n", self.tokenizer, self.vocab, self.ids.len()));
        for id in &self.ids {
            s.push_str(&id.to_string());
            s.push('\n');
        }
        s
    }

    /// Refuses a ranking made for another tokenizer or vocabulary size: its
    /// ids would name other tokens.
    pub fn check(&self, source_name: &str, tokenizer: &str, vocab: usize) -> Result<(), VocabError> {
        if !self.tokenizer.eq_ignore_ascii_case(tokenizer) {
            return Err(VocabError::TokenizerMismatch {
                source_name: source_name.to_string(),
                file: self.tokenizer.clone(),
                model: tokenizer.to_string(),
            });
        }
        if self.vocab != vocab {
            return Err(VocabError::VocabSizeMismatch {
                source_name: source_name.to_string(),
                file: self.vocab,
                model: vocab,
            });
        }
        Ok(())
    }

    /// The `top` most frequent ids (all of them for `None` or more than the
    /// file holds) as a subset of a `vocab`-id model.
    pub fn subset(&self, top: Option<usize>, vocab: usize) -> Result<VocabSubset, VocabError> {
        let n = top.unwrap_or(self.ids.len()).min(self.ids.len());
        VocabSubset::new(self.ids[..n].to_vec(), vocab)
    }
}

/// A long line shortened for an error message.
fn clip(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// The token ids a restricted LM head covers, in increasing order: column
/// `i` of its logits is token [`VocabSubset::token`]`(i)`.
///
/// Increasing order keeps the ties of `argmax` and of top-k (the lower id
/// wins) the same on the subset as on the full vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabSubset {
    ids: Arc<[u32]>,
}

impl VocabSubset {
    /// The subset of a `vocab`-id model holding `ids` (any order, no repeats).
    pub fn new(mut ids: Vec<u32>, vocab: usize) -> Result<Self, VocabError> {
        if ids.is_empty() {
            return Err(VocabError::Empty);
        }
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(VocabError::Duplicate(w[0]));
        }
        let last = *ids.last().expect("not empty");
        if last as usize >= vocab {
            return Err(VocabError::IdOutOfRange { id: last, vocab });
        }
        Ok(Self { ids: ids.into() })
    }

    /// The ids, increasing.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false: [`VocabSubset::new`] refuses an empty subset.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The token id of logits column `index`.
    pub fn token(&self, index: usize) -> u32 {
        self.ids[index]
    }

    /// The logits column of token `id`, if the subset holds it.
    pub fn index_of(&self, id: u32) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.index_of(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn file(body: &str) -> String {
        format!("# a comment\n\n{MAGIC}\ntokenizer {HASH}\nvocab 10\n{body}")
    }

    fn parse_err(text: &str) -> String {
        RankedVocab::parse(text, "t.txt").expect_err("must be refused").to_string()
    }

    #[test]
    fn parses_and_round_trips() {
        let r = RankedVocab::parse(&file("ids 3\n7\n# inside\n0\n9\n"), "t.txt").unwrap();
        assert_eq!(r, RankedVocab { tokenizer: HASH.into(), vocab: 10, ids: vec![7, 0, 9] });
        let text = r.to_text(&["corpus: x\n\nmore".into()]);
        assert!(text.starts_with("# corpus: x\n#\n# more\nouro-draft-vocab 1\n"), "{text}");
        assert_eq!(RankedVocab::parse(&text, "again").unwrap(), r);
    }

    #[test]
    fn bad_files_are_refused_with_their_line() {
        assert!(parse_err("").contains("ends before the `ouro-draft-vocab` line"));
        assert!(parse_err("ouro-draft-vocab 2\n").contains("line 1: expected `ouro-draft-vocab 1`"));
        assert!(parse_err(&format!("{MAGIC}\ntokenizer abc\n")).contains("line 2: the tokenizer identity"));
        assert!(parse_err(&format!("{MAGIC}\nvocab 3\n")).contains("expected `tokenizer <value>`"));
        assert!(parse_err(&file("ids x\n")).contains("line 6: ids `x` is not a count"));
        assert!(parse_err(&file("ids 0\n")).contains("a ranking of no ids"));
        assert!(parse_err(&file("ids 2\n1\n")).contains("1 ids where 2 were announced"));
        assert!(parse_err(&file("ids 1\n1\n2\n")).contains("line 8: more ids than the 1 announced"));
        assert!(parse_err(&file("ids 2\n1\n1\n")).contains("line 8: token id 1 appears twice"));
        assert!(parse_err(&file("ids 1\n10\n")).contains("line 7: token id 10 is out of range for a vocabulary of 10"));
        assert!(parse_err(&file("ids 1\n-1\n")).contains("`-1` is not a token id"));
        assert!(parse_err(&file("ids 1\n99999999999\n")).contains("is not a token id"));
        // A huge announced count is only a claim: the lines say how many there are.
        assert!(parse_err(&file(&format!("ids {}\n1\n", usize::MAX))).contains("1 ids where"));
        let long = "x".repeat(1000);
        assert!(parse_err(&long).len() < 200);
    }

    #[test]
    fn another_tokenizer_or_size_is_refused() {
        let r = RankedVocab::parse(&file("ids 2\n3\n1\n"), "t.txt").unwrap();
        assert!(r.check("t.txt", &HASH.to_uppercase(), 10).is_ok());
        let other = "f".repeat(64);
        match r.check("t.txt", &other, 10) {
            Err(VocabError::TokenizerMismatch { file, model, .. }) => assert_eq!((file.as_str(), model), (HASH, other)),
            e => panic!("{e:?}"),
        }
        assert_eq!(
            r.check("t.txt", HASH, 11),
            Err(VocabError::VocabSizeMismatch { source_name: "t.txt".into(), file: 10, model: 11 })
        );
    }

    #[test]
    fn subsets_are_sorted_and_map_both_ways() {
        let r = RankedVocab::parse(&file("ids 4\n7\n2\n9\n0\n"), "t.txt").unwrap();
        let s = r.subset(Some(3), 10).unwrap();
        assert_eq!(s.ids(), &[2, 7, 9]);
        assert_eq!((s.token(0), s.token(2)), (2, 9));
        assert_eq!((s.index_of(7), s.index_of(0)), (Some(1), None));
        assert!(s.contains(9) && !s.contains(3));
        assert_eq!(r.subset(None, 10).unwrap().len(), 4);
        assert_eq!(r.subset(Some(100), 10).unwrap().len(), 4);
        assert_eq!(r.subset(Some(0), 10), Err(VocabError::Empty));
        assert_eq!(r.subset(None, 9), Err(VocabError::IdOutOfRange { id: 9, vocab: 9 }));
        assert_eq!(VocabSubset::new(vec![3, 1, 3], 10), Err(VocabError::Duplicate(3)));
    }
}
