//! `ouro-edge generate`: one prompt, streamed to stdout: verified by the
//! cloud when `--cloud` is given (the daemon's engine, without the HTTP
//! server), else from the local model alone.

use std::io::Write;
use std::ops::ControlFlow;

use clap::Args;
use ouro_common::generate::{generate, GenerateConfig};
use ouro_common::model::gguf::LoadOptions;
use ouro_common::sampling::SamplingParams;
use ouro_common::tokenizer::StreamDecoder;

use crate::daemon::cloud::CloudConfig;
use crate::daemon::config::LinkArgs;
use crate::local::{threads, LoadLocal};
use ouro_edge::api::{Backend, GenEvent, GenRequest};
use ouro_edge::engine::{EdgeBackend, LocalModel};

#[derive(Args)]
pub struct GenerateArgs {
    /// The prompt (a user turn, wrapped in the model's chat template unless --raw).
    pub prompt: String,
    /// A pinned model name (see `ouro-edge models`) or a GGUF path.
    #[arg(long, env = "OURO_MODEL", default_value = "smollm2-135m")]
    pub model: String,
    /// A system message for the chat template.
    #[arg(long)]
    pub system: Option<String>,
    /// Feed the prompt as raw text, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Maximum new tokens.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep only the k most likely tokens when sampling.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep Q4_0/Q4_1/Q5_1 tensors as they are instead of re-encoding them as Q8_0 (Q5_0 always runs on its own kernel).
    #[arg(long)]
    pub no_requantize: bool,
    #[command(flatten)]
    pub link: LinkArgs,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let opts = LoadOptions { requantize_legacy: !args.no_requantize, ..LoadOptions::default() };
    let t0 = std::time::Instant::now();
    // Only a model that drafts (for a cloud) needs a restricted head.
    let vocab = args.link.cloud.is_some().then_some(&args.link.vocab);
    let lm = LocalModel::load_with_vocab(&args.model, &opts, vocab)?;
    let load_secs = t0.elapsed().as_secs_f64();
    let prompt = lm.prompt_ids(&args.prompt, args.system.as_deref(), args.raw)?;
    if args.link.cloud.is_some() {
        return run_with_cloud(&args, lm, prompt);
    }
    let cfg = GenerateConfig {
        max_new_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        stop_ids: lm.tokenizer.info().stop_ids.clone(),
    };
    let mut out = std::io::stdout().lock();
    let mut decoder = StreamDecoder::new(&lm.tokenizer, true);
    let mut failure = None;
    let stats = generate(&lm.model, &prompt, &cfg, |t| {
        match decoder.push(t) {
            Ok(Some(text)) => {
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Ok(None) => {}
            Err(e) => {
                failure = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    if let Ok(Some(rest)) = decoder.flush() {
        let _ = out.write_all(rest.as_bytes());
    }
    writeln!(out)?;
    eprintln!(
        "[{}: {} prompt tokens, {} generated ({:?}); load {:.2}s, prefill {:.2}s ({:.1} tok/s), decode {:.1} tok/s, {} threads]",
        lm.name,
        stats.prompt_tokens,
        stats.generated,
        stats.finish,
        load_secs,
        stats.prefill_secs,
        stats.prompt_tokens as f64 / stats.prefill_secs.max(1e-9),
        stats.decode_tokens_per_sec(),
        threads(),
    );
    Ok(())
}

/// The daemon's engine for one request: speculative through the cloud, with
/// the same fallback policy, reported on stderr as the API reports it.
fn run_with_cloud(args: &GenerateArgs, lm: LocalModel, prompt: Vec<u32>) -> anyhow::Result<()> {
    anyhow::ensure!(args.top_k.is_none(), "--top-k is not supported with --cloud (the API takes top_p only)");
    let max_context = ouro_common::model::CausalLm::config(&lm.model).max_context;
    anyhow::ensure!(
        prompt.len() + args.max_tokens <= max_context,
        "{} prompt tokens + --max-tokens {} exceed the context of {max_context}",
        prompt.len(),
        args.max_tokens
    );
    let cloud = CloudConfig::from_args(&args.link)?.map(|c| c.expecting(&lm));
    let name = lm.name.clone();
    let backend = EdgeBackend::new(std::sync::Arc::new(lm), cloud, args.link.backend_options(1)?)?;
    let (prompt_tokens, t0) = (prompt.len(), std::time::Instant::now());
    let mut rx = backend.generate(GenRequest {
        prompt,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: Some(args.seed),
    });
    let mut out = std::io::stdout().lock();
    while let Some(event) = rx.blocking_recv() {
        match event {
            GenEvent::Text { text, .. } => {
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            GenEvent::Stats(_) => {}
            GenEvent::Error(e) => anyhow::bail!("{e}"),
            GenEvent::Busy { message, retry_after } => {
                anyhow::bail!("{message} (the cloud asks to retry after {retry_after:?})")
            }
            GenEvent::Done { finish_reason, completion_tokens, stats } => {
                writeln!(out)?;
                let secs = t0.elapsed().as_secs_f64();
                eprintln!(
                    "[{name} + cloud: mode {}, {prompt_tokens} prompt tokens, {completion_tokens} generated ({finish_reason:?}) in {secs:.2}s ({:.1} tok/s); {} rounds, {:.2} accepted/round, cloud RTT {}, {} local tokens]",
                    stats.mode,
                    completion_tokens as f64 / secs.max(1e-9),
                    stats.rounds,
                    stats.mean_accepted,
                    stats.cloud_rtt_ms.map_or("n/a".into(), |ms| format!("{ms:.1} ms")),
                    stats.local_tokens,
                );
                return Ok(());
            }
        }
    }
    anyhow::bail!("the engine stopped without finishing")
}
