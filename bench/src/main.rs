//! `ouro-bench`: ouro's benchmarks, each against a baseline measured in the
//! same run on the same machine.

mod cloud;
mod cluster;
mod compare;
mod workload;

use clap::{Parser, Subcommand};

/// ouro's benchmarks: real processes, side by side, ratios against a baseline from the same run.
#[derive(Parser)]
#[command(name = "ouro-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The cloud verifier's cost: verified tokens per cloud CPU-second for
    /// speculative sessions against `Generate`, at several concurrencies.
    Cloud(cloud::CloudArgs),
    /// Verifier replicas behind the proxy (`deploy/cluster.sh`), or any
    /// running endpoint (`--cloud ADDR`): concurrent sessions with one
    /// affinity key each; tokens/s, TTFT and ITL percentiles, cloud CPU
    /// per token with the proxy's counted.
    Cluster(Box<cluster::ClusterArgs>),
    /// Every mode side by side (cloud-only, edge-only, sd-chain, ouroboros,
    /// ouroboros over QUIC) through an emulated link, with results.json, a
    /// Markdown report and SVG plots.
    Run(Box<compare::RunArgs>),
    /// `run` at several round-trip times in one go (tokens/s against RTT).
    Sweep(Box<compare::SweepArgs>),
    /// Bounded load on one real server on loopback (`cloud`: speculative
    /// sessions against ouro-cloud; `edge`: HTTP clients against ouro-edge
    /// serve): every answer checked, refusals timed, RSS watched. Stops by
    /// itself; fails on a mismatch, a failed request, a late or wrong
    /// refusal, or RSS growth after warm-up.
    Soak(Box<ouro_bench::soak::SoakArgs>),
}

fn main() -> anyhow::Result<()> {
    ouro_config::memory::keep_freed_buffers();
    match Cli::parse().command {
        Command::Cloud(args) => cloud::run(args),
        Command::Cluster(args) => cluster::run(*args),
        Command::Run(args) => compare::run(*args),
        Command::Sweep(args) => compare::sweep(*args),
        Command::Soak(args) => soak(&args),
    }
}

fn soak(args: &ouro_bench::soak::SoakArgs) -> anyhow::Result<()> {
    let report = ouro_bench::soak::run(args)?;
    println!("{}", report.markdown());
    println!("results.json, report.md and rss.csv in {}", args.out_dir().display());
    if !report.passed {
        anyhow::bail!("the soak run failed: {}", report.failures.join("; "));
    }
    Ok(())
}
