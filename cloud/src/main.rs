//! `ouro-cloud`: the verifier side of ouro.
//!
//! The serving loop (sessions, batched verification, auth, metrics) is
//! issue 4; what exists today is the handshake description a verifier gives
//! its edges, built from the model file exactly as the service will.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ouro_common::model::gguf::{self, LoadOptions};
use ouro_common::model::{registry, CausalLm};
use ouro_common::tokenizer::Tokenizer;
use ouro_proto::v1::ModelInfo;

/// ouro's cloud verifier.
#[derive(Parser)]
#[command(name = "ouro-cloud", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the handshake model info (architecture, tokenizer identity, limits) as JSON.
    Info {
        /// A pinned model name or a GGUF path.
        #[arg(long, env = "OURO_VERIFIER_MODEL", default_value = "qwen2.5-coder-1.5b")]
        model: String,
    },
}

fn model_info(name: &str) -> anyhow::Result<ModelInfo> {
    let path = registry::resolve(name)?;
    let (model, ct) =
        gguf::load(&path, &LoadOptions::default()).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&ct)?;
    let cfg = model.config();
    Ok(ModelInfo {
        model_id: name.to_string(),
        architecture: cfg.arch.as_str().to_string(),
        tokenizer_hash: tokenizer.info().identity.clone(),
        vocab_size: cfg.vocab_size as u32,
        max_context: cfg.max_context as u32,
    })
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Info { model } => {
            let info = model_info(&model)?;
            let json = serde_json::json!({
                "model_id": info.model_id,
                "architecture": info.architecture,
                "tokenizer_hash": info.tokenizer_hash,
                "vocab_size": info.vocab_size,
                "max_context": info.max_context,
                "encoded_bytes": prost::Message::encoded_len(&info),
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
    }
    Ok(())
}
