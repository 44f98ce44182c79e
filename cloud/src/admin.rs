//! The operator's HTTP port, apart from the gRPC traffic: Prometheus'
//! `GET /metrics` and, with operator tokens, the `/admin` endpoints.

use std::sync::Arc;

use metrics::gauge;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenSet;
use crate::service::Shared;
use crate::telemetry::{evicted, rejected, sessions_open, INFLIGHT_BYTES, KV_CACHE_BYTES};

/// Serves `GET /metrics` on its own port, apart from the gRPC traffic, and,
/// when operator tokens are configured, the operator's
/// `POST /admin/evict/{session}` and `POST /admin/evict-idle` behind them.
/// Without operator tokens the admin routes do not exist.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    sessions: Arc<Shared>,
    operators: Option<TokenSet>,
) -> std::io::Result<()> {
    axum::serve(listener, router(handle, sessions, operators)).await
}

fn router(handle: PrometheusHandle, sessions: Arc<Shared>, operators: Option<TokenSet>) -> axum::Router {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    let metrics = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |State(shared): State<Arc<Shared>>| {
            gauge!(KV_CACHE_BYTES).set(shared.sessions.bytes() as f64);
            gauge!(INFLIGHT_BYTES).set(shared.sessions.inflight_bytes() as f64);
            std::future::ready(handle.render())
        }),
    );
    let Some(operators) = operators else {
        return metrics.with_state(sessions);
    };
    let admin = axum::Router::new()
        .route(
            "/admin/evict/{session}",
            axum::routing::post(|State(shared): State<Arc<Shared>>, Path(id): Path<String>| async move {
                if shared.sessions.evict(&id) {
                    evicted("operator", 1);
                    sessions_open(shared.sessions.len());
                    (StatusCode::OK, format!("evicted {id}\n"))
                } else {
                    (StatusCode::NOT_FOUND, format!("no idle session {id}\n"))
                }
            }),
        )
        .route(
            "/admin/evict-idle",
            axum::routing::post(|State(shared): State<Arc<Shared>>| async move {
                let n = shared.sessions.evict_all_idle();
                evicted("operator", n);
                sessions_open(shared.sessions.len());
                format!("evicted {n}\n")
            }),
        )
        .route_layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let allowed = req
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(crate::auth::bearer)
                .is_some_and(|t| operators.contains(t));
            async move {
                if allowed {
                    next.run(req).await
                } else {
                    rejected("admin_unauthenticated");
                    use axum::response::IntoResponse;
                    (
                        StatusCode::UNAUTHORIZED,
                        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                        "admin endpoints need `authorization: Bearer <operator token>`\n",
                    )
                        .into_response()
                }
            }
        }));
    metrics.merge(admin).with_state(sessions)
}
