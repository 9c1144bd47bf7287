//! The dashboard (issue #6) on the monitoring port: `/dashboard` serves one self-contained
//! page (inline JS/CSS, no external fetches) that polls `/dashboard/api/mesh` for proxies and
//! their sync status, the applied config with its validation messages, and a mesh graph whose
//! edge signals the control plane computes by scraping every connected proxy.

pub mod graph;
pub mod prom;
pub mod scrape;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::monitoring::{ConfigReport, MonitoringState};
use crate::xds::SynczReport;

/// The page, served as is.
const PAGE: &str = include_str!("page.html");
/// History kept: 5 minutes of scrape rounds.
const HISTORY_ROUNDS: usize = (300 / scrape::INTERVAL.as_secs()) as usize;
/// Rounds the current edge signals are averaged over (10 s).
const WINDOW_ROUNDS: usize = 5;

#[derive(Clone)]
struct DashboardState {
    monitoring: MonitoringState,
    scraped: Arc<scrape::Shared>,
}

/// `/dashboard/api/mesh`: everything the page shows.
#[derive(Debug, Serialize)]
pub struct MeshReport {
    /// Proxies and their sync status (as `/debug/syncz`).
    pub sync: SynczReport,
    /// The applied config and its messages (as `/debug/config`).
    pub config: ConfigReport,
    /// The graph and per-service history.
    pub graph: graph::GraphView,
    /// Per proxy id: why its last scrape failed.
    pub scrape_errors: BTreeMap<String, String>,
    /// Seconds between scrapes.
    pub scrape_interval_seconds: u64,
}

/// The dashboard's routes; starts the scrape loop on the current runtime, which stops once
/// the router is dropped.
pub fn router(monitoring: MonitoringState) -> Router {
    let scraped = scrape::start(monitoring.registry.clone(), HISTORY_ROUNDS);
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/api/mesh", get(mesh))
        .with_state(DashboardState {
            monitoring,
            scraped,
        })
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

async fn mesh(State(state): State<DashboardState>) -> Json<MeshReport> {
    let generation = state.monitoring.snapshots.borrow().generation;
    let graph = state
        .scraped
        .history
        .read()
        .map(|h| h.view(WINDOW_ROUNDS))
        .unwrap_or_default();
    Json(MeshReport {
        sync: state.monitoring.registry.report(generation),
        config: state
            .monitoring
            .config
            .read()
            .map(|c| c.clone())
            .unwrap_or_default(),
        graph,
        scrape_errors: state
            .scraped
            .errors
            .read()
            .map(|e| e.clone())
            .unwrap_or_default(),
        scrape_interval_seconds: scrape::INTERVAL.as_secs(),
    })
}
