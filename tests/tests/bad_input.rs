//! Bad input to the runtime gives a typed error, never a panic, and leaves
//! the KV cache as it was.

use std::io::Write;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{AttnMask, CausalLm, Head, LogitsRows, ModelError, SeqInput};
use ouro_config::models;
use ouro_tests::{model_path, smollm2};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ouro-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn token_id_beyond_vocab_is_refused_and_cache_untouched() {
    let model = smollm2();
    let mut c = model.new_cache();
    model.forward_causal(&mut c, &[1, 2, 3], LogitsRows::None).unwrap();
    let vocab = model.config().vocab_size as u32;
    let err = model.forward_causal(&mut c, &[5, vocab], LogitsRows::Last).unwrap_err();
    assert!(matches!(err, ModelError::TokenOutOfRange { token, .. } if token == vocab), "{err}");
    assert_eq!(c.len(), 3);
}

#[test]
fn position_beyond_context_is_refused() {
    let model = smollm2();
    let mut c = model.new_cache();
    let max = model.config().max_context;
    let mask = AttnMask::causal(1);
    let err = model
        .forward(&mut [SeqInput {
            cache: &mut c,
            tokens: &[1],
            positions: &[max],
            mask: &mask,
            logits: LogitsRows::Last,
            head: Head::Full,
        }])
        .unwrap_err();
    assert!(matches!(err, ModelError::PositionOutOfRange { .. }), "{err}");
    assert_eq!(c.len(), 0);
}

#[test]
fn mismatched_inputs_are_refused() {
    let model = smollm2();
    let mut c = model.new_cache();
    let mask = AttnMask::causal(2);
    let err = model
        .forward(&mut [SeqInput {
            cache: &mut c,
            tokens: &[1, 2],
            positions: &[0],
            mask: &mask,
            logits: LogitsRows::All,
            head: Head::Full,
        }])
        .unwrap_err();
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
    let err = model
        .forward(&mut [SeqInput {
            cache: &mut c,
            tokens: &[1],
            positions: &[0],
            mask: &mask,
            logits: LogitsRows::All,
            head: Head::Full,
        }])
        .unwrap_err();
    assert!(matches!(err, ModelError::InvalidMask(_)), "{err}");
    // Restricted-vocabulary logits from a model that has no such head.
    let one = AttnMask::causal(1);
    let err = model.forward_head(&mut c, &[1], &[0], &one, LogitsRows::Last, Head::Draft).unwrap_err();
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
    let err = model.forward_causal(&mut c, &[], LogitsRows::All).unwrap_err();
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
}

#[test]
fn truncated_gguf_is_reported_as_truncated() {
    let src = std::fs::read(model_path("smollm2-135m")).unwrap();
    let p = tmp("truncated.gguf");
    std::fs::write(&p, &src[..src.len() / 2]).unwrap();
    let err = gguf::load(&p, &LoadOptions::default()).err().expect("must fail");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn corrupt_gguf_is_an_error() {
    for (name, bytes) in [("garbage.gguf", b"definitely not a gguf file".to_vec()), ("empty.gguf", vec![])] {
        let p = tmp(name);
        std::fs::write(&p, bytes).unwrap();
        let err = gguf::load(&p, &LoadOptions::default()).err().expect("must fail");
        assert!(matches!(err, ModelError::BadFile { .. }), "{name}: {err}");
    }
    let err = gguf::load(&tmp("does-not-exist.gguf"), &LoadOptions::default()).err().unwrap();
    assert!(matches!(err, ModelError::Io { .. }), "{err}");
}

#[test]
fn unknown_architecture_is_named() {
    let p = tmp("gptx.gguf");
    let emb =
        QTensor::quantize(&Tensor::zeros((8, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), GgmlDType::F32)
            .unwrap();
    let arch = gguf_file::Value::String("gptx".into());
    let mut f = std::fs::File::create(&p).unwrap();
    gguf_file::write(&mut f, &[("general.architecture", &arch)], &[("token_embd.weight", &emb)]).unwrap();
    f.flush().unwrap();
    let err = gguf::load(&p, &LoadOptions::default()).err().expect("must fail");
    assert!(matches!(&err, ModelError::UnsupportedArchitecture(a) if a == "gptx"), "{err}");
}

#[test]
fn wrong_hash_is_refused() {
    let err = models::verify_sha256(&model_path("smollm2-135m"), &"ab".repeat(32)).unwrap_err();
    assert!(matches!(err, models::ModelsError::HashMismatch { .. }), "{err}");
    let pinned = models::pinned("smollm2-135m").unwrap();
    models::verify_sha256(&model_path("smollm2-135m"), pinned.sha256).unwrap();
}
