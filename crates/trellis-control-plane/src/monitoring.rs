//! The monitoring port (Istio's 15014): readiness, sync status, the applied config with its
//! validation messages, and `/metrics` under istiod's metric names. Bound to localhost by default; it exposes config, not secrets.

use std::fmt::Write as _;
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
    /// Validation errors reported by every reload so far (a resource still invalid at the
    /// next reload counts again, as a re-submitted resource does in Istio's webhook):
    /// `galley_validation_failed`.
    #[serde(skip)]
    pub validation_failures: u64,
}

/// The monitoring router.
pub fn router(state: MonitoringState) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/debug/syncz", get(syncz))
        .route("/debug/config", get(config))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(crate::dashboard::router(state))
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
    let (errors, warnings, failures) = state
        .config
        .read()
        .map(|c| {
            (
                c.diagnostics.errors.len(),
                c.diagnostics.warnings.len(),
                c.validation_failures,
            )
        })
        .unwrap_or_default();
    let ca = &state.certificates;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let mut body = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            body,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "pilot_xds",
        "gauge",
        "Number of endpoints connected to this pilot using XDS.",
        report.proxies.len() as u64,
    );
    metric(
        "trellis_xds_proxies_synced",
        "gauge",
        "Connected proxies that have ACKed the config generation being served.",
        report
            .proxies
            .iter()
            .filter(|p| p.synced && p.generation == generation)
            .count() as u64,
    );
    metric(
        "trellis_config_generation",
        "gauge",
        "The config generation being served.",
        generation,
    );
    metric(
        "trellis_config_errors",
        "gauge",
        "Validation errors in the config source now.",
        errors as u64,
    );
    metric(
        "trellis_config_warnings",
        "gauge",
        "Validation warnings in the config source now.",
        warnings as u64,
    );
    metric(
        "galley_validation_failed",
        "counter",
        "Resource validation failed (every reload counts the invalid resources it rejected).",
        failures,
    );
    metric(
        "citadel_server_csr_count",
        "counter",
        "The number of CSRs received by Citadel server.",
        load(&ca.requests),
    );
    metric(
        "citadel_server_success_cert_issuance_count",
        "counter",
        "The number of certificates issuances that have succeeded.",
        load(&ca.issued),
    );
    metric(
        "citadel_server_csr_sign_error_count",
        "counter",
        "The number of errors occurred when signing the CSR.",
        load(&ca.sign_errors),
    );
    metric(
        "citadel_server_authentication_failure_count",
        "counter",
        "The number of authentication failures.",
        load(&ca.authentication_failures),
    );
    metric(
        "trellis_ca_refused_total",
        "counter",
        "Certificate requests refused (unauthenticated, wrong identity, bad CSR).",
        load(&ca.refused),
    );
    state.registry.metrics().encode(&mut body);
    ([("content-type", "text/plain; version=0.0.4")], body)
}
