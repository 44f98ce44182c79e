//! `ouro-edge`: the edge side of ouro.

use clap::{Parser, Subcommand};

mod bench;
mod bench_ceiling;
mod bench_spec;
mod daemon;
mod generate;
mod local;

/// ouro's edge daemon and tools: runs the drafter on the device.
#[derive(Parser)]
#[command(name = "ouro-edge", version, about, long_about = None)]
struct Cli {
    /// CPU threads for the model (0 = all cores).
    #[arg(long, global = true, env = "OURO_THREADS", default_value_t = 0)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the local OpenAI-compatible API: drafts here, verified by the cloud (or the drafter alone).
    Serve(Box<daemon::config::ServeArgs>),
    /// Generate one answer, streamed to stdout with a summary line: verified by the cloud with
    /// `--cloud` (the daemon's engine), else from the local model alone.
    Generate(generate::GenerateArgs),
    /// Measure the model runtime: decode and prefill tokens/s, the verify-cost curve c(k) in wall and process CPU time, peak RSS
    /// (`OURO_KERNEL=portable|avx2|avx512` forces a kernel path; the default is the best the CPU has).
    BenchModel(bench::BenchArgs),
    /// Compare target-only decoding with speculative modes on Spec-Bench, in one process.
    BenchSpec(bench_spec::BenchSpecArgs),
    /// What speculation could gain at most with this drafter on this machine: the verifier's greedy
    /// answers to Spec-Bench ranked by the drafter and matched by the phrase pool, against c(k)
    /// measured in the same run (best fixed trees, oracle ceilings, confidence chains, the hybrid's
    /// rule, the eight-session bound).
    BenchCeiling(bench_ceiling::BenchCeilingArgs),
    /// List the pinned models and whether they are fetched.
    Models,
}

fn main() -> anyhow::Result<()> {
    ouro_config::memory::keep_freed_buffers();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("OURO_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli: Cli = ouro_config::file::parse(&["serve"])?;
    local::set_threads(cli.threads);
    match cli.command {
        Command::Serve(args) => daemon::run(*args),
        Command::Generate(args) => generate::run(args),
        Command::BenchModel(args) => bench::run(args),
        Command::BenchSpec(args) => bench_spec::run(args),
        Command::BenchCeiling(args) => bench_ceiling::run(args),
        Command::Models => {
            local::list_models();
            Ok(())
        }
    }
}
