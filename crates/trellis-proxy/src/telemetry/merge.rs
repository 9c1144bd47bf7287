//! Istio's merged metrics endpoint (`IP:15020/stats/prometheus`): the proxy's own metrics
//! followed by the application's, so one scrape target per workload covers both. Istio learns
//! the app's endpoint from the `prometheus.io/port` and `prometheus.io/path` annotations;
//! Trellis from `trellis proxy --app-metrics PORT[/PATH]` (path `/metrics` by default), scraped
//! on the application's IP.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long the app's metrics may take to answer (a slow app must not stall the scrape).
pub const APP_SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest app metrics body that is merged.
const MAX_APP_METRICS_BYTES: usize = 16 * 1024 * 1024;

/// Where the application exposes its own Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMetrics {
    /// The application's metrics port.
    pub port: u16,
    /// The path (`/metrics` by default).
    pub path: String,
}

/// `--app-metrics` values that are not `PORT[/PATH]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("app metrics {0:?} is not PORT or PORT/PATH (e.g. 9090/metrics)")]
pub struct AppMetricsParseError(String);

impl std::str::FromStr for AppMetrics {
    type Err = AppMetricsParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, path) = match s.find('/') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, "/metrics"),
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| AppMetricsParseError(s.to_string()))?;
        if path.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(AppMetricsParseError(s.to_string()));
        }
        Ok(AppMetrics {
            port,
            path: path.to_string(),
        })
    }
}

/// Why the app's metrics could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The URL could not be built.
    #[error("app metrics URL: {0}")]
    Url(String),
    /// The request failed.
    #[error("scraping the app at {url}: {reason}")]
    Scrape {
        /// The app's metrics URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// Fetches the app's metrics text from `app_ip:port/path`.
pub async fn fetch_app_metrics(
    app_ip: std::net::IpAddr,
    app: &AppMetrics,
) -> Result<String, MergeError> {
    let url = format!("http://{}{}", SocketAddr::new(app_ip, app.port), app.path);
    let uri: http::Uri = url.parse().map_err(|e| MergeError::Url(format!("{e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let scrape = |reason: String| MergeError::Scrape {
        url: url.clone(),
        reason,
    };
    let fetch = async {
        let resp = client.get(uri).await.map_err(|e| scrape(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(scrape(format!("status {}", resp.status())));
        }
        let body = Limited::new(resp.into_body(), MAX_APP_METRICS_BYTES)
            .collect()
            .await
            .map_err(|e| scrape(e.to_string()))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| scrape("not UTF-8".into()))
    };
    tokio::time::timeout(APP_SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| scrape(format!("no answer within {APP_SCRAPE_TIMEOUT:?}")))?
}

/// The proxy's exposition followed by the app's. The proxy's text ends with `# EOF` (OpenMetrics)
/// — that line is moved to the very end so the result stays one valid exposition.
pub fn merge(proxy: &str, app: &str) -> String {
    let proxy_body = proxy.trim_end().strip_suffix("# EOF").unwrap_or(proxy);
    let app_body = app
        .trim_end()
        .strip_suffix("# EOF")
        .unwrap_or(app)
        .trim_end();
    let mut out = String::with_capacity(proxy.len() + app.len() + 8);
    out.push_str(proxy_body.trim_end());
    out.push('\n');
    if !app_body.is_empty() {
        out.push_str(app_body);
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

/// What the metrics ports serve: the proxy's exposition, and where its app listens.
#[derive(Clone)]
struct PortState {
    source: std::sync::Arc<dyn crate::admin::AdminSource>,
    app_ip: std::net::IpAddr,
    app: Option<AppMetrics>,
}

/// Binds and serves Istio's metrics ports (15090: the proxy's metrics; 15020: merged with the
/// app's). A port that cannot be bound is logged and skipped: metrics must not keep a proxy
/// from serving traffic.
pub async fn serve_ports(
    config: &crate::MetricsConfig,
    app_ip: std::net::IpAddr,
    source: std::sync::Arc<dyn crate::admin::AdminSource>,
) -> Vec<tokio::task::JoinHandle<()>> {
    use axum::routing::get;
    let state = PortState {
        source,
        app_ip,
        app: config.app_metrics.clone(),
    };
    let mut tasks = Vec::new();
    let ports = [
        (config.prometheus_address, false),
        (config.merged_address, true),
    ];
    for (address, merged) in ports {
        let Some(address) = address else { continue };
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%address, error = %e, "cannot bind a metrics port; not serving it");
                continue;
            }
        };
        let router = if merged {
            axum::Router::new().route("/stats/prometheus", get(merged_metrics))
        } else {
            axum::Router::new().route("/stats/prometheus", get(proxy_metrics))
        }
        .with_state(state.clone());
        tracing::info!(%address, merged, "serving Prometheus metrics");
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "metrics port failed");
            }
        }));
    }
    tasks
}

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn proxy_metrics(
    axum::extract::State(s): axum::extract::State<PortState>,
) -> impl axum::response::IntoResponse {
    (
        [(http::header::CONTENT_TYPE, TEXT_FORMAT)],
        s.source.prometheus(),
    )
}

async fn merged_metrics(
    axum::extract::State(s): axum::extract::State<PortState>,
) -> impl axum::response::IntoResponse {
    let own = s.source.prometheus();
    let app = match &s.app {
        Some(app) => match fetch_app_metrics(s.app_ip, app).await {
            Ok(text) => text,
            Err(e) => {
                tracing::debug!(error = %e, "app metrics not merged");
                String::new()
            }
        },
        None => String::new(),
    };
    (
        [(http::header::CONTENT_TYPE, TEXT_FORMAT)],
        merge(&own, &app),
    )
}
