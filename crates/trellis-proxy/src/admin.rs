//! The admin API: `/ready`, `/config_dump`, `/stats/prometheus`, `/listeners`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What the admin API shows; implemented by the running proxy.
pub trait AdminSource: Send + Sync + 'static {
    /// Whether the first CDS and LDS have been applied and every listener is bound.
    fn ready(&self) -> bool;
    /// The current config in the proxy's own types, with per-type xDS status.
    fn config_dump(&self) -> serde_json::Value;
    /// The Prometheus text exposition.
    fn prometheus(&self) -> String;
    /// The bound listeners (name, configured and actual address).
    fn listeners(&self) -> Pin<Box<dyn Future<Output = serde_json::Value> + Send + '_>>;
}

/// Admin errors.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The server failed.
    #[error("admin server: {0}")]
    Serve(#[from] std::io::Error),
}

type Source = Arc<dyn AdminSource>;

/// The admin router.
pub fn router(source: Source) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/config_dump", get(config_dump))
        .route("/stats/prometheus", get(prometheus))
        .route("/listeners", get(listeners))
        .with_state(source)
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Source,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    axum::serve(listener, router(source))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn ready(State(s): State<Source>) -> Response {
    if s.ready() {
        (StatusCode::OK, "LIVE\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "PRE_INITIALIZING\n").into_response()
    }
}

async fn config_dump(State(s): State<Source>) -> Response {
    axum::Json(s.config_dump()).into_response()
}

async fn prometheus(State(s): State<Source>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.prometheus(),
    )
        .into_response()
}

async fn listeners(State(s): State<Source>) -> Response {
    axum::Json(s.listeners().await).into_response()
}
