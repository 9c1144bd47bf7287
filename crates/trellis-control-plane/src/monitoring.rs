//! The monitoring port (Istio's 15014): readiness, sync status, and the applied config with its
//! validation messages. Bound to localhost by default; it exposes config, not secrets.

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::watch;

use crate::model::Snapshot;
use crate::store::Diagnostics;
use crate::xds::SyncRegistry;

/// What the debug API reads.
#[derive(Clone)]
pub struct MonitoringState {
    /// The snapshot being served.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Connected proxies.
    pub registry: SyncRegistry,
    /// The applied config and its messages.
    pub config: Arc<RwLock<ConfigReport>>,
    /// Certificates issued and refused by the CA.
    pub certificates: Arc<trellis_ca::IssuanceCounters>,
}

/// `/debug/config`: what is applied and what was rejected.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigReport {
    /// The generation these resources belong to.
    pub generation: u64,
    /// `Kind namespace/name (file)` of every applied resource.
    pub resources: Vec<String>,
    /// Errors and warnings of the last reload.
    pub diagnostics: Diagnostics,
}

/// The monitoring router.
pub fn router(state: MonitoringState) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/debug/syncz", get(syncz))
        .route("/debug/config", get(config))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ready(State(state): State<MonitoringState>) -> impl IntoResponse {
    if state.snapshots.borrow().generation > 0 {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no config loaded yet\n")
    }
}

async fn syncz(State(state): State<MonitoringState>) -> impl IntoResponse {
    let generation = state.snapshots.borrow().generation;
    Json(state.registry.report(generation))
}

async fn config(State(state): State<MonitoringState>) -> impl IntoResponse {
    let report = state.config.read().map(|r| r.clone()).unwrap_or_default();
    Json(report)
}

async fn metrics(State(state): State<MonitoringState>) -> impl IntoResponse {
    let generation = state.snapshots.borrow().generation;
    let report = state.registry.report(generation);
    let (errors, warnings) = state
        .config
        .read()
        .map(|c| (c.diagnostics.errors.len(), c.diagnostics.warnings.len()))
        .unwrap_or_default();
    let body = format!(
        "# HELP pilot_xds Number of endpoints connected to this pilot using XDS.\n# TYPE pilot_xds gauge\npilot_xds {}\n\
         # HELP pilot_total_xds_rejects Total number of XDS responses from pilot rejected by proxy.\n# TYPE pilot_total_xds_rejects counter\npilot_total_xds_rejects {}\n\
         # HELP pilot_xds_pushes Pilot build and send errors for lds, rds, cds and eds.\n# TYPE pilot_xds_pushes counter\npilot_xds_pushes {}\n\
         # HELP trellis_config_generation The config generation being served.\n# TYPE trellis_config_generation gauge\ntrellis_config_generation {}\n\
         # HELP trellis_config_errors Validation errors in the config source.\n# TYPE trellis_config_errors gauge\ntrellis_config_errors {}\n\
         # HELP trellis_config_warnings Validation warnings in the config source.\n# TYPE trellis_config_warnings gauge\ntrellis_config_warnings {}\n\
         # HELP citadel_server_success_cert_issuance_count The number of certificates issuances that have succeeded.\n# TYPE citadel_server_success_cert_issuance_count counter\ncitadel_server_success_cert_issuance_count {}\n\
         # HELP trellis_ca_refused_total Certificate requests refused (unauthenticated, wrong identity, bad CSR).\n# TYPE trellis_ca_refused_total counter\ntrellis_ca_refused_total {}\n",
        report.proxies.len(),
        report.nacks_total,
        state.registry.pushes_total(),
        generation,
        errors,
        warnings,
        state
            .certificates
            .issued
            .load(std::sync::atomic::Ordering::Relaxed),
        state
            .certificates
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    ([("content-type", "text/plain; version=0.0.4")], body)
}
