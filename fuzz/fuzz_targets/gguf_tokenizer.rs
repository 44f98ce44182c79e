//! The GGUF → tokenizer builder (`Tokenizer::from_gguf`) over the header
//! `gguf::read_content` parses from a file of arbitrary bytes, the way the
//! daemons load a tokenizer. The seeds are small byte-level BPE and
//! SentencePiece vocabularies (two cut from real models' headers).
//!
//! Checks: building returns an error rather than panicking; a tokenizer it
//! builds reports the vocabulary and template it was given, special ids
//! inside it, and encodes and decodes a short text.

#![no_main]

use std::path::PathBuf;

use candle_core::quantized::gguf_file::Value;
use libfuzzer_sys::fuzz_target;
use ouro_common::model::gguf;
use ouro_common::tokenizer::Tokenizer;

fn scratch() -> &'static PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("ouro-fuzz-tokenizer-{}.gguf", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(scratch(), data).expect("scratch file");
    let Ok(ct) = gguf::read_content(scratch()) else { return };
    let Ok(tk) = Tokenizer::from_gguf(&ct) else { return };
    let info = tk.info();
    let tokens = ct.metadata.get("tokenizer.ggml.tokens").and_then(|v| v.to_vec().ok()).map(Vec::len);
    assert_eq!(Some(info.vocab_size), tokens);
    for id in [info.bos, info.eos].into_iter().flatten().chain(info.stop_ids.iter().copied()) {
        assert!((id as usize) < info.vocab_size, "special id {id} outside the vocabulary");
    }
    if let Some(Value::String(template)) = ct.metadata.get("tokenizer.chat_template") {
        assert_eq!(info.chat_template.as_deref(), Some(template.as_str()));
    }
    // With special tokens parsed: the other way clones the tokenizer, which
    // compiles its regexes again and would halve the executions.
    if let Ok(ids) = tk.encode("Hello, wörld! 123 <|im_end|>\n", true) {
        assert!(ids.iter().all(|&id| (id as usize) < info.vocab_size));
        let _ = tk.decode(&ids, false);
    }
});
