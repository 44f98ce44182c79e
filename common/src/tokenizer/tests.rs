//! Tokenizers built from hand-made GGUF metadata: SentencePiece (no such model
//! file exists here), byte-level BPE, identities, streaming and bad metadata.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use super::gguf::{pre_spec, spm_merges};
use super::*;

type Metadata = HashMap<String, Value>;

fn strings<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.as_ref().to_string())).collect())
}

fn ints(items: &[i32]) -> Value {
    Value::Array(items.iter().map(|&t| Value::I32(t)).collect())
}

fn floats(items: &[f32]) -> Value {
    Value::Array(items.iter().map(|&s| Value::F32(s)).collect())
}

// ---------------------------------------------------------------- SentencePiece

/// `<unk> <s> </s>`, the 256 byte tokens, then pieces whose scores make
/// "▁hello" and "▁world" reachable by merges.
fn spm_metadata() -> Metadata {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let pieces = [
        ("▁h", -1.0),
        ("ll", -2.0),
        ("▁he", -3.0),
        ("llo", -4.0),
        ("▁hello", -5.0),
        ("▁w", -6.0),
        ("or", -7.0),
        ("ld", -8.0),
        ("▁wor", -9.0),
        ("▁world", -10.0),
        ("▁", -11.0),
        ("h", -12.0),
        ("e", -12.0),
        ("l", -12.0),
        ("o", -12.0),
        ("w", -12.0),
        ("r", -12.0),
        ("d", -12.0),
    ];
    for (p, s) in pieces {
        tokens.push(p.into());
        types.push(1);
        scores.push(s);
    }
    HashMap::from([
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        ("tokenizer.ggml.token_type".into(), ints(&types)),
        ("tokenizer.ggml.scores".into(), floats(&scores)),
    ])
}

fn spm(md: &Metadata) -> Tokenizer {
    Tokenizer::from_gguf_metadata(md).expect("toy SentencePiece tokenizer")
}

fn ids(tk: &Tokenizer, tokens: &[&str]) -> Vec<u32> {
    tokens.iter().map(|t| tk.token_to_id(t).unwrap_or_else(|| panic!("no token {t:?}"))).collect()
}

#[test]
fn spm_encodes_with_derived_merges() {
    let tk = spm(&spm_metadata());
    assert_eq!(tk.encode("hello world", true).unwrap(), ids(&tk, &["▁hello", "▁world"]));
    assert_eq!(tk.encode("", true).unwrap(), Vec::<u32>::new());
    // "é" is not a piece: its UTF-8 bytes stand in for it.
    let e = tk.encode("héllo", true).unwrap();
    assert_eq!(e, ids(&tk, &["▁h", "<0xC3>", "<0xA9>", "llo"]));
    assert_eq!(tk.decode(&e, false).unwrap(), "héllo");
    assert_eq!(tk.decode(&ids(&tk, &["▁hello", "▁world"]), false).unwrap(), "hello world");
}

#[test]
fn spm_special_tokens_and_defaults() {
    let tk = spm(&spm_metadata());
    let info = tk.info();
    assert_eq!(info.kind, TokenizerKind::SentencePiece);
    // llama.cpp's SentencePiece defaults when the keys are absent.
    assert_eq!((info.bos, info.eos), (Some(1), Some(2)));
    assert!(info.add_bos);
    assert_eq!(info.stop_ids, vec![2]);
    assert_eq!(info.vocab_size, 3 + 256 + 18);

    let hello = tk.token_to_id("▁hello").unwrap();
    assert_eq!(tk.encode("<s>hello", true).unwrap(), vec![1, hello]);
    assert!(!tk.encode("<s>hello", false).unwrap().contains(&1));
    assert_eq!(tk.decode(&[1, hello, 2], true).unwrap(), "hello");
}

#[test]
fn spm_without_space_prefix() {
    let mut md = spm_metadata();
    md.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false));
    let tk = spm(&md);
    let e = tk.encode("hello world", true).unwrap();
    assert_eq!(e, ids(&tk, &["h", "e", "llo", "▁world"]));
    assert_eq!(tk.decode(&e, false).unwrap(), "hello world");
}

#[test]
fn spm_merge_order_follows_transformers() {
    let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc", "<s>", "<0x61>"].map(String::from).to_vec();
    let types = [1, 1, 1, 1, 1, 1, 3, 6];
    let scores = [0.0, 0.0, 0.0, -1.0, -1.0, -2.0, 0.0, 0.0];
    let merges = spm_merges(&tokens, &types, &scores);
    let merges: Vec<(&str, &str)> = merges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    // Equal scores: vocabulary order; equal score within "abc": longer left first.
    assert_eq!(merges, vec![("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]);
}

#[test]
fn spm_requires_scores() {
    let mut md = spm_metadata();
    md.remove("tokenizer.ggml.scores");
    assert!(matches!(
        Tokenizer::from_gguf_metadata(&md),
        Err(TokenizerError::MissingKey(k)) if k == "tokenizer.ggml.scores"
    ));
    md.insert("tokenizer.ggml.scores".into(), floats(&[0.0]));
    assert!(matches!(Tokenizer::from_gguf_metadata(&md), Err(TokenizerError::InvalidVocab(_))));
}

/// A real SentencePiece BPE model (`testdata/spm_toy.py`) and its own
/// encodings: the rebuilt tokenizer must agree with SentencePiece itself.
#[test]
fn spm_matches_sentencepiece() {
    let fixture: serde_json::Value = serde_json::from_str(include_str!("testdata/spm_toy.json")).unwrap();
    let tokens: Vec<&str> = fixture["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let field = |k: &str| fixture[k].as_array().unwrap().iter();
    let types: Vec<i32> = field("types").map(|t| t.as_i64().unwrap() as i32).collect();
    let scores: Vec<f32> = field("scores").map(|s| s.as_f64().unwrap() as f32).collect();
    let md = HashMap::from([
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        ("tokenizer.ggml.token_type".into(), ints(&types)),
        ("tokenizer.ggml.scores".into(), floats(&scores)),
    ]);
    let tk = spm(&md);

    let mut checked = 0;
    for case in field("cases") {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
        let got = tk.encode(text, true).unwrap();
        if text.contains("<tool>") {
            // Like transformers' legacy Llama tokenizer and llama.cpp, text
            // after an added token gets its own "▁" prefix; SentencePiece does not.
            let tool = tk.token_to_id("<tool>").unwrap();
            assert!(got.contains(&tool) && expected.contains(&tool));
            continue;
        }
        assert_eq!(got, expected, "encoding {text:?}");
        assert_eq!(tk.decode(&got, false).unwrap(), text, "decoding {text:?}");
        checked += 1;
    }
    assert!(checked >= 20);
}

// ---------------------------------------------------------------- byte-level BPE

/// GPT-2's printable stand-ins for the 256 bytes.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap()
            }
        })
        .collect()
}

fn bpe_metadata(pre: &str) -> Metadata {
    let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
    let merges = ["Ġ t", "h e", "Ġt he", "1 2"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    tokens.extend(["<|im_end|>", "<tool>", "<|endoftext|>"].map(String::from));
    let mut types = vec![1; tokens.len()];
    let n = types.len();
    types[n - 3] = 3;
    types[n - 2] = 4;
    types[n - 1] = 1; // llama.cpp treats it as control by its name anyway
    HashMap::from([
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), strings(&tokens)),
        ("tokenizer.ggml.token_type".into(), ints(&types)),
        ("tokenizer.ggml.merges".into(), strings(&merges)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(n as u32 - 3)),
    ])
}

#[test]
fn byte_level_bpe_encodes_and_decodes() {
    let tk = Tokenizer::from_gguf_metadata(&bpe_metadata("qwen2")).unwrap();
    let the = tk.token_to_id("Ġthe").unwrap();
    let enc = tk.encode(" the the", true).unwrap();
    assert_eq!(enc, vec![the, the]);
    assert_eq!(tk.decode(&enc, false).unwrap(), " the the");

    let text = "é 12<|im_end|><tool>";
    let enc = tk.encode(text, true).unwrap();
    assert_eq!(tk.decode(&enc, false).unwrap(), text);
    // qwen2 splits digits one by one, so the "12" merge never applies.
    assert!(!enc.contains(&tk.token_to_id("12").unwrap()));
    // Control tokens are dropped by skip_special; user-defined ones are not.
    assert_eq!(tk.decode(&enc, true).unwrap(), "é 12<tool>");
    // <|endoftext|> was typed normal but is a stop and a control token by name.
    let eot = tk.token_to_id("<|endoftext|>").unwrap();
    let eos = tk.token_to_id("<|im_end|>").unwrap();
    assert_eq!(tk.info().stop_ids, vec![eos, eot]);
    assert_eq!(tk.encode("<|endoftext|>", true).unwrap(), vec![eot]);
    assert!(!tk.info().add_bos);
}

#[test]
fn pre_tokenizer_families() {
    let gpt2_digits = pre_spec(Some("smollm")).unwrap();
    assert_eq!(gpt2_digits.regexes[0], r"\p{N}");
    assert_eq!(gpt2_digits.regexes.len(), 2);
    let llama3 = pre_spec(Some("llama-bpe")).unwrap();
    assert!(llama3.ignore_merges && llama3.add_bos);
    assert!(llama3.regexes[0].contains(r"\p{N}{1,3}"));
    assert_eq!(pre_spec(None).unwrap().regexes.len(), 4);

    let tk = Tokenizer::from_gguf_metadata(&bpe_metadata("llama-bpe")).unwrap();
    assert!(tk.info().add_bos);
    let twelve = tk.token_to_id("12").unwrap();
    assert_eq!(tk.encode("12", true).unwrap(), vec![twelve]);
}

// ---------------------------------------------------------------- identity

#[test]
fn identity_is_stable_and_discriminating() {
    let base = spm(&spm_metadata()).info().identity.clone();
    assert_eq!(base.len(), 64);
    assert_eq!(spm(&spm_metadata()).info().identity, base);

    // A template or a flag is not part of the vocabulary.
    let mut md = spm_metadata();
    md.insert("tokenizer.chat_template".into(), Value::String("x".into()));
    assert_eq!(spm(&md).info().identity, base);

    let Value::Array(tokens) = &spm_metadata()["tokenizer.ggml.tokens"] else { unreachable!() };
    let mut renamed = tokens.clone();
    *renamed.last_mut().unwrap() = Value::String("z".into());
    let mut md = spm_metadata();
    md.insert("tokenizer.ggml.tokens".into(), Value::Array(renamed));
    assert_ne!(spm(&md).info().identity, base);

    let Value::Array(scores) = &spm_metadata()["tokenizer.ggml.scores"] else { unreachable!() };
    let mut rescored = scores.clone();
    *rescored.last_mut().unwrap() = Value::F32(-13.0);
    let mut md = spm_metadata();
    md.insert("tokenizer.ggml.scores".into(), Value::Array(rescored));
    assert_ne!(spm(&md).info().identity, base);

    let bpe = Tokenizer::from_gguf_metadata(&bpe_metadata("qwen2")).unwrap();
    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.merges".into(), strings(&["h e", "Ġ t", "Ġt he", "1 2"]));
    let reordered = Tokenizer::from_gguf_metadata(&md).unwrap();
    assert_ne!(bpe.info().identity, reordered.info().identity);
}

#[test]
fn identity_ignores_trailing_padding() {
    let base = Tokenizer::from_gguf_metadata(&bpe_metadata("qwen2")).unwrap();
    let mut md = bpe_metadata("qwen2");
    let (Value::Array(tokens), Value::Array(types)) =
        (md["tokenizer.ggml.tokens"].clone(), md["tokenizer.ggml.token_type"].clone())
    else {
        unreachable!()
    };
    let (mut tokens, mut types) = (tokens, types);
    for i in 0..3 {
        tokens.push(Value::String(format!("[PAD{i}]")));
        types.push(Value::I32(5));
    }
    md.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens));
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    let padded = Tokenizer::from_gguf_metadata(&md).unwrap();
    assert_eq!(padded.info().vocab_size, base.info().vocab_size + 3);
    assert_eq!(padded.info().identity, base.info().identity);
}

// ---------------------------------------------------------------- streaming

fn stream_all(tk: &Tokenizer, ids: &[u32]) -> Vec<Option<String>> {
    let mut s = tk.stream_decoder(false);
    let mut out: Vec<_> = ids.iter().map(|&id| s.push(id).unwrap()).collect();
    out.push(s.flush().unwrap());
    out
}

#[test]
fn stream_decoder_holds_partial_characters() {
    let tk = Tokenizer::from_gguf_metadata(&bpe_metadata("qwen2")).unwrap();
    let ids = tk.encode("é!", true).unwrap();
    assert_eq!(ids.len(), 3, "é is two byte tokens");
    assert_eq!(stream_all(&tk, &ids), vec![None, Some("é".into()), Some("!".into()), None]);
    // An unfinished character comes out, replaced, only at the end.
    assert_eq!(stream_all(&tk, &ids[..1]), vec![None, Some("\u{FFFD}".into())]);
    let mut s = StreamDecoder::new(std::sync::Arc::new(tk), true);
    assert!(matches!(s.push(u32::MAX), Err(TokenizerError::IdOutOfRange { .. })));
}

#[test]
fn stream_decoder_keeps_sentencepiece_spaces() {
    let tk = spm(&spm_metadata());
    let ids = ids(&tk, &["▁hello", "▁world", "▁h", "<0xC3>", "<0xA9>", "llo"]);
    let streamed = stream_all(&tk, &ids);
    assert_eq!(
        streamed,
        vec![
            Some("hello".into()),
            Some(" world".into()),
            Some(" h".into()),
            None,
            Some("é".into()),
            Some("llo".into()),
            None
        ]
    );
    let joined: String = streamed.into_iter().flatten().collect();
    assert_eq!(joined, tk.decode(&ids, false).unwrap());
}

// ---------------------------------------------------------------- bad metadata

fn build_err(md: &Metadata) -> TokenizerError {
    Tokenizer::from_gguf_metadata(md).expect_err("bad metadata must be an error")
}

#[test]
fn bad_metadata_is_a_typed_error() {
    let mut md = bpe_metadata("qwen2");
    md.remove("tokenizer.ggml.model");
    assert!(matches!(build_err(&md), TokenizerError::MissingKey(_)));

    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
    assert!(matches!(build_err(&md), TokenizerError::UnsupportedModel(m) if m == "bert"));

    let md = bpe_metadata("no-such-pre");
    assert!(matches!(build_err(&md), TokenizerError::UnsupportedPreTokenizer(_)));

    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.merges".into(), strings(&["Ġ t", "he"]));
    assert!(matches!(build_err(&md), TokenizerError::InvalidMerge { index: 1, .. }));

    // A merge of tokens that are not in the vocabulary.
    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.merges".into(), strings(&["Ġ nope"]));
    assert!(matches!(build_err(&md), TokenizerError::Tokenizers(_)));

    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.tokens".into(), Value::U32(3));
    assert!(matches!(build_err(&md), TokenizerError::WrongType { .. }));

    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.tokens".into(), Value::Array(vec![Value::U8(1)]));
    assert!(matches!(build_err(&md), TokenizerError::WrongType { .. }));

    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.token_type".into(), ints(&[1, 1]));
    assert!(matches!(build_err(&md), TokenizerError::InvalidVocab(_)));

    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.tokens".into(), strings(&["a", "b", "a"]));
    md.remove("tokenizer.ggml.token_type");
    assert!(matches!(build_err(&md), TokenizerError::InvalidVocab(_)));

    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::String("2".into()));
    assert!(matches!(build_err(&md), TokenizerError::WrongType { .. }));

    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::I32(-1));
    assert!(matches!(build_err(&md), TokenizerError::WrongType { .. }));

    // An id past the vocabulary is ignored, as llama.cpp does.
    let mut md = bpe_metadata("qwen2");
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(1 << 30));
    assert_eq!(Tokenizer::from_gguf_metadata(&md).unwrap().info().eos, None);
}

#[test]
fn decode_rejects_unknown_ids() {
    let tk = spm(&spm_metadata());
    let n = tk.info().vocab_size as u32;
    assert!(matches!(
        tk.decode(&[0, n], false),
        Err(TokenizerError::IdOutOfRange { id, .. }) if id == n
    ));
    assert!(tk.decode(&[n - 1], false).is_ok());
}

#[test]
fn missing_tokenizer_json_is_an_io_error() {
    let err = Tokenizer::from_tokenizer_json(std::path::Path::new("/nonexistent/tokenizer.json")).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }));
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Tokenizer>();
    shareable::<StreamDecoder<std::sync::Arc<Tokenizer>>>();
    let debug = format!("{:?}", spm(&spm_metadata()));
    assert!(debug.len() < 1000, "Debug must not dump the vocabulary");
}
