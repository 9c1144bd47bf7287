//! Envoy's lifecycle as pilot-agent runs it: the agent serves Istio's health port (15021,
//! `/healthz/ready`) by asking Envoy's admin API, and on shutdown drains Envoy before stopping
//! it, so a stock Envoy starts and stops like `trellis proxy`.
//!
//! Ready means: not draining, Envoy's `/ready` says `LIVE`, and Envoy has applied CDS and LDS
//! at least once (`cluster_manager.cds.update_success` and `listener_manager.lds.update_success`
//! above zero; Envoy goes `LIVE` without config once its initial fetch times out, which is why
//! pilot-agent checks these too).
//!
//! The drain: readiness turns `503`, `POST /drain_listeners?graceful` makes Envoy answer with
//! `Connection: close` / GOAWAY and close its listeners after its drain time, the agent waits
//! until no downstream connection is left (or the drain period ends), then sends Envoy SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

/// The path Istio's readiness probe asks on the health port.
pub const READY_PATH: &str = "/healthz/ready";
/// Envoy's `--drain-time-s` as the agent starts it: how long listeners keep accepting after a
/// graceful drain began.
pub const ENVOY_DRAIN_TIME: Duration = Duration::from_secs(1);
/// How long one admin API call may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the drain looks at Envoy's open connections.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Talking to Envoy's admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No connection.
    #[error("cannot reach Envoy's admin API at {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The HTTP exchange failed.
    #[error("Envoy's admin API at {0}: {1}")]
    Http(SocketAddr, hyper::Error),
    /// No answer in time.
    #[error("Envoy's admin API at {0} did not answer within {ADMIN_TIMEOUT:?}")]
    Timeout(SocketAddr),
}

/// Sends `method path` to Envoy's admin API; returns the status and body.
pub async fn admin_call(
    admin: SocketAddr,
    method: http::Method,
    path: &str,
) -> Result<(u16, String), AdminError> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| AdminError::Connect(admin, e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| AdminError::Http(admin, e))?;
        tokio::spawn(conn);
        let mut request = http::Request::new(Empty::<Bytes>::new());
        *request.method_mut() = method;
        *request.uri_mut() = http::Uri::try_from(path).unwrap_or_default();
        if let Ok(host) = http::HeaderValue::try_from(admin.to_string()) {
            request.headers_mut().insert(http::header::HOST, host);
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| AdminError::Http(admin, e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| AdminError::Http(admin, e))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(ADMIN_TIMEOUT, exchange)
        .await
        .map_err(|_| AdminError::Timeout(admin))?
}

/// The sum of the stats in Envoy's text `/stats` output whose names `keep` accepts.
fn stat_sum(stats: &str, keep: impl Fn(&str) -> bool) -> u64 {
    stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(name, _)| keep(name))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Whether Envoy should get traffic; `Err` says why not.
async fn envoy_ready(admin: SocketAddr) -> Result<(), String> {
    let (status, body) = admin_call(admin, http::Method::GET, "/ready")
        .await
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("Envoy is {}", body.trim()));
    }
    let (_, stats) = admin_call(
        admin,
        http::Method::GET,
        "/stats?filter=^(cluster_manager.cds|listener_manager.lds).update_success$",
    )
    .await
    .map_err(|e| e.to_string())?;
    for (stat, what) in [
        ("cluster_manager.cds.update_success", "CDS"),
        ("listener_manager.lds.update_success", "LDS"),
    ] {
        if stat_sum(&stats, |n| n == stat) == 0 {
            return Err(format!("waiting for {what}"));
        }
    }
    Ok(())
}

/// Envoy's open downstream connections (the admin API's own excluded).
async fn open_connections(admin: SocketAddr) -> Result<u64, AdminError> {
    let (_, stats) = admin_call(
        admin,
        http::Method::GET,
        "/stats?filter=^listener\\..*downstream_cx_active$",
    )
    .await?;
    Ok(stat_sum(&stats, is_listener_connections))
}

/// `listener.ADDRESS.downstream_cx_active` of a traffic listener (not the admin API's own,
/// nor the per-worker copies that repeat the listener's total).
fn is_listener_connections(name: &str) -> bool {
    name.starts_with("listener.")
        && !name.starts_with("listener.admin.")
        && name.ends_with(".downstream_cx_active")
        && !name.contains(".worker_")
}

/// The health port's state, shared with the drain.
#[derive(Debug)]
pub struct Health {
    admin: SocketAddr,
    draining: AtomicBool,
}

impl Health {
    /// Health for the Envoy whose admin API is at `admin`.
    pub fn new(admin: SocketAddr) -> Arc<Self> {
        Arc::new(Health {
            admin,
            draining: AtomicBool::new(false),
        })
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Serves `/healthz/ready` on `listener` (forever; abort the task to stop).
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>) -> std::io::Result<()> {
    let router = Router::new()
        .route(READY_PATH, get(ready))
        // The agent's own metrics (the DNS proxy's `trellis_dns_requests_total`); Envoy's are
        // on its 15090.
        .route(
            "/stats/prometheus",
            get(|| async { crate::dns::stats().render() }),
        )
        .with_state(health);
    axum::serve(listener, router).await
}

async fn ready(State(health): State<Arc<Health>>) -> Response {
    if health.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n").into_response();
    }
    match envoy_ready(health.admin).await {
        Ok(()) => (StatusCode::OK, "LIVE\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("PRE_INITIALIZING: {why}\n"),
        )
            .into_response(),
    }
}

/// Drains Envoy: readiness turns `503`, Envoy drains its listeners gracefully, and this waits
/// (at most `period`) until Envoy's listeners have closed and no downstream connection is left.
/// The caller then stops Envoy.
pub async fn drain(health: &Health, period: Duration) {
    let began = Instant::now();
    let deadline = began + period;
    health.draining.store(true, Ordering::Release);
    match admin_call(
        health.admin,
        http::Method::POST,
        "/drain_listeners?graceful",
    )
    .await
    {
        Ok((200, _)) => {}
        Ok((status, body)) => {
            tracing::warn!(status, body = %body.trim(), "Envoy refused to drain its listeners");
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "cannot drain Envoy's listeners");
            return;
        }
    }
    // Envoy's listeners accept for its drain time; a connection accepted then must finish too.
    tokio::time::sleep_until((began + ENVOY_DRAIN_TIME.min(period)).into()).await;
    loop {
        match open_connections(health.admin).await {
            Ok(0) => {
                tracing::info!(took = ?began.elapsed(), "Envoy drained: no connection left");
                return;
            }
            Ok(open) if Instant::now() + DRAIN_POLL >= deadline => {
                tracing::warn!(open, ?period, "drain period over: stopping Envoy");
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read Envoy's connections: stopping it");
                return;
            }
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_chosen_stats() {
        let stats = "cluster_manager.cds.update_success: 2\n\
                     listener.127.0.0.1_15001.downstream_cx_active: 3\n\
                     listener.127.0.0.1_15001.worker_0.downstream_cx_active: 3\n\
                     listener.admin.downstream_cx_active: 1\n\
                     listener.127.0.0.1_9080.downstream_cx_active: 1\n";
        assert_eq!(
            stat_sum(stats, |n| n == "cluster_manager.cds.update_success"),
            2
        );
        assert_eq!(
            stat_sum(stats, |n| n == "listener_manager.lds.update_success"),
            0
        );
        assert_eq!(stat_sum(stats, is_listener_connections), 4);
    }
}
