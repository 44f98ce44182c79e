//! The GGUF tokenizers against llama.cpp's own tokenization.
//!
//! The reference files were produced by `llama-tokenize --ids --no-bos` with
//! special tokens parsed; every line must match exactly. The greedy reference
//! files' prompts must encode to their recorded `prompt_ids` too, since the
//! decoding tests start from those ids.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use ouro_common::tokenizer::{Tokenizer, TokenizerKind};

fn load(model: &str) -> Tokenizer {
    let path = ouro_tests::model_path(model);
    let mut file = std::fs::File::open(&path).expect("open model");
    let ct = gguf_file::Content::read(&mut file).expect("read GGUF header");
    Tokenizer::from_gguf(&ct).unwrap_or_else(|e| panic!("tokenizer of {model}: {e}"))
}

fn reference(name: &str) -> PathBuf {
    ouro_tests::shared_data().join("reference").join(name)
}

fn ids_of(v: &serde_json::Value, key: &str) -> Vec<u32> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is not an array"))
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// Encodes each line's `text_key` and compares with `ids_key`; prints a
/// summary and every mismatch, then asserts there was none.
fn check_file(tk: &Tokenizer, file: &Path, text_key: &str, ids_key: &str) {
    let lines = ouro_tests::read_jsonl(file);
    assert!(!lines.is_empty(), "{} is empty", file.display());
    let mut mismatches = Vec::new();
    for line in &lines {
        let text = line[text_key].as_str().expect("text");
        let parse_special = line["parse_special"].as_bool().unwrap_or(true);
        let expected = ids_of(line, ids_key);
        let got = tk.encode(text, parse_special).expect("encode");
        if got != expected {
            mismatches.push((text.to_string(), expected, got));
        }
    }
    let name = file.file_name().unwrap().to_string_lossy();
    println!("{name}: matched {}/{}", lines.len() - mismatches.len(), lines.len());
    for (text, expected, got) in &mismatches {
        println!("  MISMATCH text={}\n    expected={expected:?}\n    got     ={got:?}", short(text));
    }
    assert!(mismatches.is_empty(), "{name}: {} mismatches", mismatches.len());
}

/// Decoding what was encoded gives the text back, in one go and streamed.
fn check_roundtrip(tk: &Tokenizer, file: &Path) {
    for line in ouro_tests::read_jsonl(file) {
        let text = line["text"].as_str().expect("text");
        let ids = tk.encode(text, true).expect("encode");
        let decoded = tk.decode(&ids, false).expect("decode");
        assert_eq!(decoded, text, "round trip of {}", short(text));

        let mut stream = tk.stream_decoder(false);
        let mut streamed = String::new();
        for &id in &ids {
            if let Some(delta) = stream.push(id).expect("push") {
                streamed.push_str(&delta);
            }
        }
        streamed.push_str(&stream.flush().expect("flush").unwrap_or_default());
        assert_eq!(streamed, text, "streamed decode of {}", short(text));
    }
}

#[test]
fn qwen_coder_matches_llama_cpp() {
    let tk = load("qwen2.5-coder-0.5b");
    check_file(&tk, &reference("tokenizer_qwen2.5-coder.jsonl"), "text", "ids");
}

#[test]
fn smollm2_matches_llama_cpp() {
    let tk = load("smollm2-135m");
    check_file(&tk, &reference("tokenizer_smollm2-135m.jsonl"), "text", "ids");
}

#[test]
fn greedy_prompts_encode_to_their_prompt_ids() {
    for model in ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] {
        if !ouro_tests::has_model(model) && model != "smollm2-135m" {
            println!("greedy_{model}.jsonl: skipped, model not fetched");
            continue;
        }
        let tk = load(model);
        check_file(&tk, &reference(&format!("greedy_{model}.jsonl")), "prompt", "prompt_ids");
    }
}

#[test]
fn decode_inverts_encode() {
    check_roundtrip(&load("smollm2-135m"), &reference("tokenizer_smollm2-135m.jsonl"));
    check_roundtrip(&load("qwen2.5-coder-0.5b"), &reference("tokenizer_qwen2.5-coder.jsonl"));
}

#[test]
fn info_of_the_pinned_models() {
    let smol = load("smollm2-135m");
    let info = smol.info();
    assert_eq!(info.kind, TokenizerKind::ByteLevelBpe { pre: "smollm".into() });
    assert_eq!((info.bos, info.eos), (Some(1), Some(2)));
    assert!(!info.add_bos);
    assert_eq!(info.vocab_size, 49152);
    // <|endoftext|>, <|im_end|>, and <reponame> (llama.cpp's FIM repo stop).
    assert_eq!(info.stop_ids, vec![0, 2, 4]);
    assert!(info.chat_template.as_deref().unwrap().contains("<|im_start|>"));
    assert_eq!(info.identity.len(), 64);

    let qwen = load("qwen2.5-coder-0.5b");
    let info = qwen.info();
    assert_eq!((info.bos, info.eos), (Some(151643), Some(151645)));
    assert!(!info.add_bos);
    assert_eq!(info.vocab_size, 151936);
    // <|endoftext|>, <|im_end|>, <|fim_pad|>, <|repo_name|>, <|file_sep|>.
    assert_eq!(info.stop_ids, vec![151643, 151645, 151662, 151663, 151664]);
    assert!(info.is_stop(151645) && !info.is_stop(151644));
    assert!(info.chat_template.is_some());
}

#[test]
fn identity_is_per_vocabulary() {
    let smol = load("smollm2-135m");
    let again = load("smollm2-135m");
    let qwen = load("qwen2.5-coder-0.5b");
    assert_eq!(smol.info().identity, again.info().identity);
    assert_ne!(smol.info().identity, qwen.info().identity);
    if ouro_tests::has_model("qwen2.5-coder-1.5b") {
        // The draft/target pair share one tokenizer, which is what makes them a pair.
        assert_eq!(qwen.info().identity, load("qwen2.5-coder-1.5b").info().identity);
    }
}

#[test]
fn special_tokens_parse_only_when_asked() {
    let tk = load("qwen2.5-coder-0.5b");
    let text = "<|im_start|>user\nhi<|im_end|>";
    let parsed = tk.encode(text, true).unwrap();
    assert_eq!(parsed.first(), Some(&151644));
    assert_eq!(parsed.last(), Some(&151645));
    let plain = tk.encode(text, false).unwrap();
    assert!(!plain.contains(&151644) && !plain.contains(&151645));
    assert_eq!(tk.decode(&plain, false).unwrap(), text);
    assert_eq!(tk.decode(&parsed, true).unwrap(), "user\nhi");
    // User-defined tokens are always one token and are kept by skip_special.
    let tool = tk.encode("<tool_call>", false).unwrap();
    assert_eq!(tool, vec![151657]);
    assert_eq!(tk.decode(&tool, true).unwrap(), "<tool_call>");
    assert!(tk.decode(&[151936], false).is_err());
}

/// The GGUF tokenizer, saved as a `tokenizer.json` beside a config, loads back
/// with the same identity and the same tokenization.
#[test]
fn tokenizer_json_round_trip() {
    let gguf = load("smollm2-135m");
    let dir = std::env::temp_dir().join(format!("ouro-tokenizer-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer.json");
    gguf.inner().save(&path, false).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"},
            "add_bos_token": false, "chat_template": "{{ messages }}"}"#,
    )
    .unwrap();
    let json = Tokenizer::from_tokenizer_json(&path);
    let _ = std::fs::remove_dir_all(&dir);
    let json = json.expect("load tokenizer.json");

    let info = json.info();
    assert_eq!(info.kind, TokenizerKind::HfJson);
    assert_eq!((info.bos, info.eos), (Some(1), Some(2)));
    assert_eq!(info.stop_ids, vec![0, 2, 4]);
    assert_eq!(info.vocab_size, gguf.info().vocab_size);
    assert_eq!(info.chat_template.as_deref(), Some("{{ messages }}"));
    assert_eq!(info.identity, gguf.info().identity);
    check_file(&json, &reference("tokenizer_smollm2-135m.jsonl"), "text", "ids");
}
