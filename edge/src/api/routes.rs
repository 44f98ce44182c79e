//! The router, and the small routes that do not generate.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;

use super::access::{self, Access};
use super::admission::Admission;
use super::backend::Backend;
use super::completions::{chat_completions, completions};
use super::config::ApiConfig;
use super::error::ApiError;
use super::reply::unix_now;
use super::state::AppState;
use super::types::{Health, ModelCard, ModelList};
use super::validate::MODEL_ALIAS;

/// The local OpenAI-compatible API:
///
/// - `POST /v1/chat/completions`, `POST /v1/completions` (optionally streamed)
/// - `GET /v1/models`, `GET /v1/models/{id}`
/// - `GET /health`
/// - `GET /metrics`: Prometheus text from `metrics`, 404 when it is `None`
///
/// Every error, including unknown routes and unparsable bodies, has an
/// OpenAI-style JSON body.
///
/// With [`ApiConfig::default`]: loopback host names only, no API key, 4
/// generations at once and 64 waiting, 1 MiB bodies.
pub fn router(backend: Arc<dyn Backend>, metrics: Option<PrometheusHandle>) -> Router {
    router_with(backend, metrics, ApiConfig::default())
}

/// [`router`] with the operator's access and admission settings. Every
/// route, the fallbacks included, is behind the `Host` check, and all but
/// `GET /health` behind the API key when keys are set.
pub fn router_with(backend: Arc<dyn Backend>, metrics: Option<PrometheusHandle>, config: ApiConfig) -> Router {
    let access = Arc::new(Access::new(&config));
    let state = AppState {
        backend,
        metrics,
        started: unix_now(),
        admission: Arc::new(Admission::new(config.max_concurrent, config.max_queue)),
        max_body_bytes: config.max_body_bytes,
    };
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(access, access::guard))
        .with_state(state)
}

fn card(state: &AppState) -> ModelCard {
    ModelCard { id: state.backend.model_id(), object: "model", created: state.started, owned_by: "ouro" }
}

async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList { object: "list", data: vec![card(&state)] })
}

async fn model(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ModelCard>, ApiError> {
    if id == state.backend.model_id() || id == MODEL_ALIAS {
        Ok(Json(card(&state)))
    } else {
        Err(ApiError::ModelNotFound(id))
    }
}

/// 200 while requests can be served; 503 when the engine says it cannot
/// (mode `unavailable`: the cloud is gone and the fallback is not local),
/// so a supervisor or load balancer sees it without reading the body.
async fn health(State(state): State<AppState>) -> Response {
    let mode = state.backend.current_mode();
    let (code, status) = if mode == "unavailable" {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else {
        (axum::http::StatusCode::OK, "ok")
    };
    (code, Json(Health { status, model: state.backend.model_id(), mode })).into_response()
}

async fn prometheus(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
        }
        None => ApiError::NotFound("metrics are not enabled on this daemon".into()).into_response(),
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
