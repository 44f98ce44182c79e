//! MiniCPM by exact equivalence.
//!
//! No MiniCPM weights can be had here, so SmolLM2 (Llama architecture, tied
//! embeddings like MiniCPM) is rewritten as a MiniCPM model that computes the
//! same function: embeddings divided by `scale_emb`, o_proj and down_proj
//! divided by the residual scale, and an untied head multiplied by the logit
//! scale. The MiniCPM code path must then reproduce the Llama path's logits,
//! from GGUF and from safetensors alike, and leaving out any one compensation
//! must break the match (which proves each scaling is really applied).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{safetensors, CausalLm, LogitsRows, Transformer};
use ouro_tests::{max_abs_diff, model_path, reference_prompts};

const SCALE_EMB: f64 = 12.0;
const SCALE_DEPTH: f64 = 1.4;
const DIM_MODEL_BASE: f64 = 256.0;

struct Source {
    ct: gguf_file::Content,
    tensors: HashMap<String, Tensor>,
    layers: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
}

fn source() -> Source {
    let path = model_path("smollm2-135m");
    let ct = gguf::read_content(&path).unwrap();
    let mut f = BufReader::new(File::open(&path).unwrap());
    let mut tensors = HashMap::new();
    for name in ct.tensor_infos.keys() {
        let t = ct.tensor(&mut f, name, &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
        tensors.insert(name.clone(), t);
    }
    let u = |k: &str| ct.metadata[k].to_u32().unwrap() as usize;
    let (layers, hidden, heads, kv_heads) = (
        u("llama.block_count"),
        u("llama.embedding_length"),
        u("llama.attention.head_count"),
        u("llama.attention.head_count_kv"),
    );
    Source { ct, tensors, layers, hidden, heads, kv_heads }
}

fn residual_scale(layers: usize) -> f64 {
    SCALE_DEPTH / (layers as f64).sqrt()
}

fn logit_scale(hidden: usize) -> f64 {
    hidden as f64 / DIM_MODEL_BASE
}

/// Which compensation to leave out, to show the test can fail.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Break {
    None,
    Embedding,
    Residual,
    Logit,
}

/// The MiniCPM-format tensors (GGUF names), rescaled per `brk`.
fn minicpm_tensors(s: &Source, brk: Break) -> HashMap<String, Tensor> {
    let rs = residual_scale(s.layers);
    let mut out = HashMap::new();
    for (name, t) in &s.tensors {
        let t = if name == "token_embd.weight" && brk != Break::Embedding {
            (t / SCALE_EMB).unwrap()
        } else if (name.ends_with("attn_output.weight") || name.ends_with("ffn_down.weight")) && brk != Break::Residual
        {
            (t / rs).unwrap()
        } else {
            t.clone()
        };
        out.insert(name.clone(), t);
    }
    let head = if brk == Break::Logit {
        s.tensors["token_embd.weight"].clone()
    } else {
        (&s.tensors["token_embd.weight"] * logit_scale(s.hidden)).unwrap()
    };
    out.insert("output.weight".into(), head);
    out
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ouro-minicpm-{}", std::process::id())).join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_gguf(path: &Path, metadata: &[(String, gguf_file::Value)], tensors: &HashMap<String, Tensor>) {
    let q: Vec<(String, QTensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), QTensor::quantize(t, GgmlDType::F32).unwrap())).collect();
    let md: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut f = File::create(path).unwrap();
    gguf_file::write(&mut f, &md, &ts).unwrap();
}

/// The f32 Llama reference: SmolLM2's own tensors, dequantized.
fn llama_f32_gguf(s: &Source) -> PathBuf {
    let p = dir("llama").join("model.gguf");
    let md: Vec<_> = s.ct.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    write_gguf(&p, &md, &s.tensors);
    p
}

fn minicpm_gguf(s: &Source) -> PathBuf {
    let p = dir("minicpm-gguf").join("model.gguf");
    let mut md: Vec<(String, gguf_file::Value)> =
        s.ct.metadata
            .iter()
            .map(|(k, v)| (k.strip_prefix("llama.").map_or(k.clone(), |r| format!("minicpm.{r}")), v.clone()))
            .collect();
    for (k, v) in md.iter_mut() {
        if k == "general.architecture" {
            *v = gguf_file::Value::String("minicpm".into());
        }
    }
    md.push(("minicpm.embedding_scale".into(), gguf_file::Value::F32(SCALE_EMB as f32)));
    md.push(("minicpm.residual_scale".into(), gguf_file::Value::F32(residual_scale(s.layers) as f32)));
    md.push(("minicpm.logit_scale".into(), gguf_file::Value::F32(logit_scale(s.hidden) as f32)));
    write_gguf(&p, &md, &minicpm_tensors(s, Break::None));
    p
}

/// llama.cpp stores q/k rows permuted for adjacent-pair rotation; Hugging
/// Face checkpoints rotate halves. This undoes llama.cpp's `permute`.
fn unpermute(t: &Tensor, heads: usize) -> Tensor {
    let (out, inp) = t.dims2().unwrap();
    let d = out / heads;
    t.reshape((heads, d / 2, 2, inp))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((out, inp))
        .unwrap()
}

fn hf_name(gguf_name: &str) -> String {
    let map = [
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    match gguf_name {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        n => {
            let rest = n.strip_prefix("blk.").expect("a block tensor");
            let (layer, tail) = rest.split_once('.').unwrap();
            let (kind, suffix) = tail.split_once('.').unwrap();
            let hf = map.iter().find(|(g, _)| *g == kind).expect("known tensor").1;
            format!("model.layers.{layer}.{hf}.{suffix}")
        }
    }
}

fn write_hf(s: &Source, name: &str, model_type: &str, tensors: &HashMap<String, Tensor>) -> PathBuf {
    let d = dir(name);
    let mut hf = HashMap::new();
    for (n, t) in tensors {
        let t = if n.ends_with("attn_q.weight") {
            unpermute(t, s.heads)
        } else if n.ends_with("attn_k.weight") {
            unpermute(t, s.kv_heads)
        } else {
            t.clone()
        };
        hf.insert(hf_name(n), t);
    }
    candle_core::safetensors::save(&hf, d.join("model.safetensors")).unwrap();
    let md = &s.ct.metadata;
    let u = |k: &str| md[k].to_u32().unwrap();
    let config = serde_json::json!({
        "model_type": model_type,
        "vocab_size": s.tensors["token_embd.weight"].dims2().unwrap().0,
        "hidden_size": s.hidden,
        "intermediate_size": u("llama.feed_forward_length"),
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "rms_norm_eps": md["llama.attention.layer_norm_rms_epsilon"].to_f32().unwrap(),
        "rope_theta": md["llama.rope.freq_base"].to_f32().unwrap(),
        "max_position_embeddings": 2048,
        "tie_word_embeddings": !tensors.contains_key("output.weight"),
        "scale_emb": SCALE_EMB,
        "scale_depth": SCALE_DEPTH,
        "dim_model_base": DIM_MODEL_BASE,
    });
    std::fs::write(d.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    d
}

fn logits(model: &Transformer, prompt: &[u32]) -> Vec<f32> {
    let mut c = model.new_cache();
    model.forward_causal(&mut c, prompt, LogitsRows::All).unwrap().data
}

#[test]
fn minicpm_reproduces_llama_from_gguf_and_safetensors() {
    let s = source();
    let prompt: Vec<u32> = reference_prompts("smollm2-135m")[3].1.iter().take(48).copied().collect();
    let opts =
        LoadOptions { requantize_legacy: false, dequantize: false, max_context: Some(2048), ..LoadOptions::default() };

    let (llama, _) = gguf::load(&llama_f32_gguf(&s), &opts).unwrap();
    let reference = logits(&llama, &prompt);
    drop(llama);

    let check = |name: &str, model: Transformer| {
        let d = max_abs_diff(&reference, &logits(&model, &prompt));
        println!("{name}: max abs diff vs the Llama path over {} positions = {d:e}", prompt.len());
        d
    };

    let (m, _) = gguf::load(&minicpm_gguf(&s), &opts).unwrap();
    assert_eq!(m.config().arch.as_str(), "minicpm");
    assert!(check("minicpm gguf", m) < 1e-3);

    let mut plain = s.tensors.clone();
    plain.remove("output.weight");
    let llama_hf = safetensors::load(&write_hf(&s, "llama-hf", "llama", &plain), &opts).unwrap();
    assert!(check("llama safetensors", llama_hf) < 1e-3);

    let m =
        safetensors::load(&write_hf(&s, "minicpm-hf", "minicpm", &minicpm_tensors(&s, Break::None)), &opts).unwrap();
    assert!(check("minicpm safetensors", m) < 1e-3);

    for brk in [Break::Embedding, Break::Residual, Break::Logit] {
        let m =
            safetensors::load(&write_hf(&s, &format!("broken-{brk:?}"), "minicpm", &minicpm_tensors(&s, brk)), &opts)
                .unwrap();
        let d = check(&format!("minicpm with the {brk:?} scale uncompensated"), m);
        assert!(d > 1e-2, "leaving out the {brk:?} compensation went unnoticed (diff {d})");
    }
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("ouro-minicpm-{}", std::process::id())));
}
