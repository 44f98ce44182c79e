//! The GGUF model loader (`ouro_common::model::gguf::load`) on a file of
//! arbitrary bytes: the seeds are small but complete models (and a real
//! model's header with its arrays cut short), so mutations reach the
//! tensor checks, the configuration and the weight conversion.
//!
//! Checks: loading returns an error rather than panicking, and never
//! allocates more than the bytes the file holds can justify (libFuzzer's
//! `-malloc_limit_mb` reports any single allocation over the RSS limit); a
//! model it accepts runs a forward pass.

#![no_main]

use std::io::Write;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{CausalLm, LogitsRows};

fn scratch() -> &'static PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("ouro-fuzz-gguf-{}.gguf", std::process::id())))
}

fuzz_target!(
    init: {
        // One thread: candle's and ouro's worker pools spin between parallel
        // loops, which on a shared machine costs more than the tiny models'
        // arithmetic. Results do not depend on the split.
        std::env::set_var("RAYON_NUM_THREADS", "1");
    },
    |data: &[u8]| run(data)
);

fn run(data: &[u8]) {
    let path = scratch();
    let mut file = std::fs::File::create(path).expect("scratch file");
    file.write_all(data).expect("write scratch file");
    drop(file);
    // The default options (legacy quants re-encoded as Q8_0, contexts capped
    // at 8192), and every alternative path over the same bytes.
    let defaults = LoadOptions::default();
    if let Ok((model, _)) = gguf::load(path, &defaults) {
        // A model the loader accepted runs (or reports an error, say a
        // context of one token): two tokens, one at a time.
        let vocab = model.config().vocab_size;
        let mut cache = model.new_cache();
        for token in [0, vocab as u32 - 1] {
            let Ok(logits) = model.forward_causal(&mut cache, &[token], LogitsRows::Last) else { break };
            assert_eq!(logits.last().expect("one row").len(), vocab);
        }
        for opts in [
            LoadOptions { requantize_legacy: false, requantize_kquants: true, ..defaults.clone() },
            LoadOptions { dequantize: true, ..defaults.clone() },
        ] {
            let _ = gguf::load(path, &opts);
        }
    }
}
