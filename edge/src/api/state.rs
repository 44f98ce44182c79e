//! What every route's handler shares.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use super::admission::Admission;
use super::backend::Backend;

#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn Backend>,
    pub metrics: Option<PrometheusHandle>,
    /// When the router was built: the `created` of the served model.
    pub started: u64,
    pub admission: Arc<Admission>,
    /// `ApiConfig::max_body_bytes`, for the 413's message.
    pub max_body_bytes: usize,
}
