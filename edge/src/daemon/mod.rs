//! `ouro-edge serve`: the edge daemon.
//!
//! - [`config`]: options (flags, environment, TOML);
//! - [`cloud`]: connecting to the verifier over gRPC or QUIC, with the handshake check;
//!
//! The engine behind the API is the library's [`ouro_edge::engine`].

pub mod cloud;
pub mod config;

use std::sync::Arc;

use anyhow::Context;

use crate::local::LoadLocal;
use ouro_common::model::gguf::LoadOptions;
use ouro_edge::engine::{EdgeBackend, LocalModel};

pub fn run(args: config::ServeArgs) -> anyhow::Result<()> {
    // The model drafts whenever the cloud is up, so it gets its restricted
    // vocabulary; its local fallback still decodes over every id.
    let local = Arc::new(LocalModel::load_with_vocab(&args.model, &LoadOptions::default(), Some(&args.link.vocab))?);
    let cloud = cloud::CloudConfig::from_args(&args.link)?.map(|c| c.expecting(&local));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
        let api = args.api_config()?;
        let opts = args.link.backend_options(api.max_concurrent)?;
        let backend = Arc::new(EdgeBackend::new(local, cloud, opts)?);
        if let Some(c) = &backend.cloud {
            // Refuse a mismatched cloud, or one that refuses our token, at
            // start-up rather than on the first request.
            match c.connect(None).await {
                Ok((_, info)) => println!("cloud: {} at {} ({})", info.model_id, c.endpoint, c.transport),
                Err(cloud::ConnectError::Mismatch(m)) => anyhow::bail!("{m}"),
                Err(e) if e.is_auth() => anyhow::bail!("the cloud at {} refused this edge's token: {e}", c.endpoint),
                Err(e) => eprintln!("WARNING: cloud unreachable at start ({e}); serving with the drafter alone"),
            }
            tokio::spawn(backend.clone().watch_cloud());
        }
        let app = ouro_edge::api::router_with(backend, Some(prometheus), api);
        let listener = ouro_config::listen::tcp(args.listen).with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("ouro-edge listening on http://{addr}");
        ouro_config::ready::Ready::new("ouro-edge", addr).announce()?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        anyhow::Ok(())
    })
}
