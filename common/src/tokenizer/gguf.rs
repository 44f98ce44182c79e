//! A [`Tokenizer`] from the `tokenizer.ggml.*` keys of a GGUF file.
//!
//! The goal is llama.cpp's tokenization, id for id: the pre-tokenizer regexes
//! are llama.cpp's (not the upstream `tokenizer.json` ones), and token types
//! decide what is an added token the way `llama-vocab.cpp` does.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::identity::{identity, Ranks};
use super::{is_forced_control, is_stop_name, Result, Tokenizer, TokenizerError, TokenizerInfo, TokenizerKind};

type Metadata = HashMap<String, Value>;

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const SCORES: &str = "tokenizer.ggml.scores";
const MERGES: &str = "tokenizer.ggml.merges";
const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
const EOT_ID: &str = "tokenizer.ggml.eot_token_id";
const EOM_ID: &str = "tokenizer.ggml.eom_token_id";
const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const CHAT_TEMPLATE: &str = "tokenizer.chat_template";

// `llama_token_type` in llama.cpp.
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_UNUSED: i32 = 5;
const TYPE_BYTE: i32 = 6;

const REGEX_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's pre-tokenization for one family of `tokenizer.ggml.pre` names.
/// The regexes split in turn, each match becoming its own piece (and the text
/// between matches too), which is what a sequence of isolating `Split`s does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PreSpec {
    pub regexes: &'static [&'static str],
    /// A word that is itself a token is not merged (Llama 3).
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos_token` when the key is absent.
    pub add_bos: bool,
}

const PRE_DEFAULT: PreSpec = PreSpec {
    regexes: &[r"[\p{P}\$\+<=>\^~\|]+", REGEX_GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    ignore_merges: false,
    add_bos: false,
};

/// Maps `tokenizer.ggml.pre` to llama.cpp's regexes (`llama-vocab.cpp`).
pub(super) fn pre_spec(pre: Option<&str>) -> Result<PreSpec> {
    let spec = |regexes, ignore_merges, add_bos| PreSpec { regexes, ignore_merges, add_bos };
    Ok(match pre {
        None => {
            tracing::warn!("GGUF has no `{PRE}`: using llama.cpp's default pre-tokenizer");
            PRE_DEFAULT
        }
        Some("default") => PRE_DEFAULT,
        Some("llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2") => {
            spec(&[REGEX_LLAMA3], true, true)
        }
        Some("smaug-bpe" | "dbrx") => spec(&[REGEX_LLAMA3], false, false),
        Some("qwen2" | "deepseek-r1-qwen" | "kormo" | "megrez" | "stablelm2" | "hunyuan") => {
            spec(&[REGEX_QWEN2], false, false)
        }
        // SmolLM's upstream pre-tokenizer is Digits(individual) + ByteLevel.
        Some("smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b") => {
            spec(&[r"\p{N}", REGEX_GPT2], false, false)
        }
        Some(
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
            | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo" | "jais" | "exaone4" | "trillion"
            | "granite-docling",
        ) => spec(&[REGEX_GPT2], false, false),
        Some(other) => return Err(TokenizerError::UnsupportedPreTokenizer(other.to_string())),
    })
}

pub(super) fn build(md: &Metadata) -> Result<Tokenizer> {
    let model = str_key(md, MODEL)?.ok_or_else(|| missing(MODEL))?;
    let vocab = Vocab::read(md)?;

    let (mut inner, kind, ident, default_add_bos) = match model {
        "gpt2" => {
            let pre = str_key(md, PRE)?;
            let spec = pre_spec(pre)?;
            let merges = read_merges(md)?;
            let ranks = Ranks::Merges(merges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect());
            let ident = vocab.identity(&ranks);
            let inner = byte_level_bpe(&vocab, merges, &spec)?;
            let kind = TokenizerKind::ByteLevelBpe { pre: pre.unwrap_or_default().to_string() };
            (inner, kind, ident, spec.add_bos)
        }
        "llama" => {
            let scores = f32_array(md, SCORES)?.ok_or_else(|| missing(SCORES))?;
            if scores.len() != vocab.tokens.len() {
                return Err(TokenizerError::InvalidVocab(format!(
                    "{} scores for {} tokens",
                    scores.len(),
                    vocab.tokens.len()
                )));
            }
            let ident = vocab.identity(&Ranks::Scores(scores.iter().map(|&s| s as f64).collect()));
            let add_space_prefix = bool_key(md, ADD_SPACE_PREFIX)?.unwrap_or(true);
            let unk = vocab
                .id_key(md, UNK_ID)?
                .or_else(|| vocab.types.iter().position(|&t| t == TYPE_UNKNOWN))
                .or_else(|| vocab.tokens.iter().position(|t| t == "<unk>"))
                .map(|id| vocab.tokens[id].as_str());
            let inner = sentencepiece_bpe(&vocab, &scores, add_space_prefix, unk)?;
            (inner, TokenizerKind::SentencePiece, ident, true)
        }
        other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
    };

    inner.add_tokens(vocab.added_tokens()).map_err(TokenizerError::Tokenizers)?;

    let is_spm = kind == TokenizerKind::SentencePiece;
    // llama.cpp's defaults when the keys are absent: SentencePiece uses 1 and 2.
    let default_id = |id: usize| (is_spm && id < vocab.tokens.len()).then_some(id);
    let bos = vocab.id_key(md, BOS_ID)?.or_else(|| default_id(1));
    let eos = vocab.id_key(md, EOS_ID)?.or_else(|| default_id(2));

    let mut stop_ids: Vec<u32> =
        [eos, vocab.id_key(md, EOT_ID)?, vocab.id_key(md, EOM_ID)?].into_iter().flatten().map(|id| id as u32).collect();
    for (id, token) in vocab.tokens.iter().enumerate() {
        let control = vocab.types[id] == TYPE_CONTROL;
        if is_stop_name(token) || (control && token == "</s>") {
            stop_ids.push(id as u32);
        }
    }
    stop_ids.sort_unstable();
    stop_ids.dedup();

    let info = TokenizerInfo {
        kind,
        bos: bos.map(|id| id as u32),
        eos: eos.map(|id| id as u32),
        stop_ids,
        add_bos: bool_key(md, ADD_BOS)?.unwrap_or(default_add_bos),
        vocab_size: vocab.tokens.len(),
        chat_template: str_key(md, CHAT_TEMPLATE)?.map(str::to_string),
        identity: ident,
    };
    Ok(Tokenizer::new(inner, info))
}

/// The token list with llama.cpp's token types.
struct Vocab {
    tokens: Vec<String>,
    types: Vec<i32>,
}

impl Vocab {
    fn read(md: &Metadata) -> Result<Self> {
        let raw = str_array(md, TOKENS)?.ok_or_else(|| missing(TOKENS))?;
        if raw.is_empty() {
            return Err(TokenizerError::InvalidVocab("no tokens".into()));
        }
        if u32::try_from(raw.len()).is_err() {
            return Err(TokenizerError::InvalidVocab(format!("{} tokens do not fit u32 ids", raw.len())));
        }
        let mut types = match i32_array(md, TOKEN_TYPE)? {
            Some(t) if t.len() != raw.len() => {
                return Err(TokenizerError::InvalidVocab(format!("{} token types for {} tokens", t.len(), raw.len())))
            }
            Some(t) => t,
            None => vec![TYPE_NORMAL; raw.len()],
        };

        let mut tokens = Vec::with_capacity(raw.len());
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(raw.len());
        for (id, &token) in raw.iter().enumerate() {
            if let Some(first) = seen.insert(token, id) {
                // llama.cpp refuses such a file too (its token→id map would lose one).
                return Err(TokenizerError::InvalidVocab(format!("token {token:?} appears at ids {first} and {id}")));
            }
            // An empty token can never be matched; llama.cpp renames it the same way.
            tokens.push(if token.is_empty() { format!("[EMPTY_{id}]") } else { token.to_string() });
            if is_forced_control(token) {
                types[id] = TYPE_CONTROL;
            }
        }
        Ok(Self { tokens, types })
    }

    fn bpe_vocab(&self) -> BpeVocab {
        self.tokens.iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect()
    }

    fn is_added(&self, id: usize) -> bool {
        matches!(self.types[id], TYPE_CONTROL | TYPE_UNKNOWN | TYPE_USER_DEFINED)
    }

    /// Control and unknown tokens are special (parsed on request, skippable);
    /// user-defined ones are always parsed and always shown. None is
    /// normalised: llama.cpp matches them against the raw text.
    fn added_tokens(&self) -> Vec<AddedToken> {
        (0..self.tokens.len())
            .filter(|&id| self.is_added(id))
            .map(|id| {
                let special = self.types[id] != TYPE_USER_DEFINED;
                AddedToken::from(self.tokens[id].clone(), special).normalized(false)
            })
            .collect()
    }

    fn identity(&self, ranks: &Ranks<'_>) -> String {
        // GGUF converters pad the vocabulary to the embedding size with unused
        // tokens the upstream tokenizer does not have.
        let used = self.types.iter().rposition(|&t| t != TYPE_UNUSED).map_or(0, |i| i + 1);
        let tokens: Vec<Option<&str>> = self.tokens[..used].iter().map(|t| Some(t.as_str())).collect();
        let added: Vec<(u32, &str)> =
            (0..used).filter(|&id| self.is_added(id)).map(|id| (id as u32, self.tokens[id].as_str())).collect();
        identity(&tokens, ranks, &added)
    }

    /// A token id key, ignored with a warning when out of range as llama.cpp does.
    fn id_key(&self, md: &Metadata, key: &str) -> Result<Option<usize>> {
        let Some(id) = u32_key(md, key)? else {
            return Ok(None);
        };
        if (id as usize) < self.tokens.len() {
            Ok(Some(id as usize))
        } else {
            tracing::warn!("GGUF `{key}` = {id} is outside the vocabulary of {}; ignored", self.tokens.len());
            Ok(None)
        }
    }
}

fn read_merges(md: &Metadata) -> Result<Vec<(String, String)>> {
    let raw = str_array(md, MERGES)?.ok_or_else(|| missing(MERGES))?;
    raw.iter()
        .enumerate()
        .map(|(index, m)| {
            // As llama.cpp: the separator is the first space after the first
            // byte, so a left part could itself be a space.
            m.bytes()
                .skip(1)
                .position(|b| b == b' ')
                .map(|p| (m[..p + 1].to_string(), m[p + 2..].to_string()))
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .ok_or_else(|| TokenizerError::InvalidMerge { index, merge: m.to_string() })
        })
        .collect()
}

fn split(regex: &str) -> Result<PreTokenizerWrapper> {
    Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
        .map(Into::into)
        .map_err(TokenizerError::Tokenizers)
}

fn byte_level_bpe(vocab: &Vocab, merges: Vec<(String, String)>, spec: &PreSpec) -> Result<tokenizers::Tokenizer> {
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.bpe_vocab(), merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(TokenizerError::Tokenizers)?;
    let mut pre = spec.regexes.iter().map(|r| split(r)).collect::<Result<Vec<_>>>()?;
    // The regexes already split; ByteLevel only maps bytes to its alphabet.
    pre.push(ByteLevel::new(false, false, false).into());

    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_pre_tokenizer(Some(PreSequence::new(pre)));
    tk.with_decoder(Some(ByteLevel::default()));
    Ok(tk)
}

/// A SentencePiece vocabulary as transformers' `LlamaConverter` rebuilds it:
/// BPE over derived merges with `<0xXX>` byte fallback, spaces as "▁".
fn sentencepiece_bpe(
    vocab: &Vocab,
    scores: &[f32],
    add_space_prefix: bool,
    unk: Option<&str>,
) -> Result<tokenizers::Tokenizer> {
    let merges = spm_merges(&vocab.tokens, &vocab.types, scores);
    let mut builder = BPE::builder().vocab_and_merges(vocab.bpe_vocab(), merges).fuse_unk(true).byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk.to_string());
    }
    let bpe = builder.build().map_err(TokenizerError::Tokenizers)?;

    let tkerr = TokenizerError::Tokenizers;
    let replace_space: NormalizerWrapper = Replace::new(" ", "▁").map_err(tkerr)?.into();
    let normalizer: NormalizerWrapper = if add_space_prefix {
        NormalizerSequence::new(vec![Prepend::new("▁".into()).into(), replace_space]).into()
    } else {
        replace_space
    };
    let mut decoders: Vec<DecoderWrapper> =
        vec![Replace::new("▁", " ").map_err(tkerr)?.into(), ByteFallback::new().into(), Fuse::new().into()];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tk = tokenizers::Tokenizer::new(bpe);
    tk.with_normalizer(Some(normalizer)).map_err(tkerr)?;
    tk.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tk)
}

/// BPE merges for a SentencePiece vocabulary, derived like transformers'
/// `generate_merges`: every way of writing a piece as two vocabulary pieces is
/// a merge ranked by the piece's score; ties go to the longer left part, then
/// the longer right part, then vocabulary order.
///
/// Control, unknown, byte and unused tokens take no part: SentencePiece never
/// builds them from text.
pub(super) fn spm_merges(tokens: &[String], types: &[i32], scores: &[f32]) -> Vec<(String, String)> {
    let mergeable = |id: usize| !matches!(types[id], TYPE_CONTROL | TYPE_UNKNOWN | TYPE_BYTE | TYPE_UNUSED);
    let index: HashMap<&str, usize> =
        tokens.iter().enumerate().filter(|&(id, _)| mergeable(id)).map(|(id, t)| (t.as_str(), id)).collect();

    struct Merge {
        left: usize,
        right: usize,
        score: f32,
        left_chars: usize,
        right_chars: usize,
    }
    let mut merges = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if !mergeable(id) {
            continue;
        }
        let start = merges.len();
        for (pos, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(pos);
            if let (Some(&left), Some(&right)) = (index.get(l), index.get(r)) {
                merges.push(Merge {
                    left,
                    right,
                    score: scores[id],
                    left_chars: l.chars().count(),
                    right_chars: r.chars().count(),
                });
            }
        }
        merges[start..].sort_by_key(|m| (m.left, m.right));
    }
    // Stable, so equal keys keep the vocabulary order, as Python's sort does.
    merges.sort_by(|a, b| {
        b.score.total_cmp(&a.score).then(b.left_chars.cmp(&a.left_chars)).then(b.right_chars.cmp(&a.right_chars))
    });
    merges.into_iter().map(|m| (tokens[m.left].clone(), tokens[m.right].clone())).collect()
}

fn missing(key: &str) -> TokenizerError {
    TokenizerError::MissingKey(key.to_string())
}

fn wrong_type(key: &str, expected: &'static str, found: &Value) -> TokenizerError {
    TokenizerError::WrongType { key: key.to_string(), expected, found: format!("{:?}", found.value_type()) }
}

fn str_key<'a>(md: &'a Metadata, key: &str) -> Result<Option<&'a str>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(wrong_type(key, "a string", v)),
    }
}

fn bool_key(md: &Metadata, key: &str) -> Result<Option<bool>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong_type(key, "a bool", v)),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    Some(match *v {
        Value::U8(x) => x.into(),
        Value::I8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::U64(x) => i64::try_from(x).ok()?,
        Value::I64(x) => x,
        _ => return None,
    })
}

fn u32_key(md: &Metadata, key: &str) -> Result<Option<u32>> {
    match md.get(key) {
        None => Ok(None),
        Some(v) => {
            as_i64(v).and_then(|x| u32::try_from(x).ok()).map(Some).ok_or_else(|| wrong_type(key, "a u32 token id", v))
        }
    }
}

fn array<'a>(md: &'a Metadata, key: &str, expected: &'static str) -> Result<Option<&'a [Value]>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(v) => Err(wrong_type(key, expected, v)),
    }
}

fn str_array<'a>(md: &'a Metadata, key: &str) -> Result<Option<Vec<&'a str>>> {
    const EXPECTED: &str = "an array of strings";
    let Some(items) = array(md, key, EXPECTED)? else {
        return Ok(None);
    };
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_str()),
            v => Err(wrong_type(key, EXPECTED, v)),
        })
        .collect::<Result<_>>()
        .map(Some)
}

fn i32_array(md: &Metadata, key: &str) -> Result<Option<Vec<i32>>> {
    const EXPECTED: &str = "an array of integers";
    let Some(items) = array(md, key, EXPECTED)? else {
        return Ok(None);
    };
    items
        .iter()
        .map(|v| as_i64(v).and_then(|x| i32::try_from(x).ok()).ok_or_else(|| wrong_type(key, EXPECTED, v)))
        .collect::<Result<_>>()
        .map(Some)
}

fn f32_array(md: &Metadata, key: &str) -> Result<Option<Vec<f32>>> {
    const EXPECTED: &str = "an array of floats";
    let Some(items) = array(md, key, EXPECTED)? else {
        return Ok(None);
    };
    items
        .iter()
        .map(|v| match *v {
            Value::F32(x) => Ok(x),
            Value::F64(x) => Ok(x as f32),
            ref v => Err(wrong_type(key, EXPECTED, v)),
        })
        .collect::<Result<_>>()
        .map(Some)
}
