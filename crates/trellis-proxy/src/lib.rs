#![warn(missing_docs)]
//! The Trellis data plane: a sidecar/gateway proxy configured over Envoy's xDS v3 API (the subset
//! listed in `docs/xds-features.md`).
//!
//! Layout: `xds` (ADS client, proto → config conversion), `config` (the proxy's own types),
//! `listener` (accepting and serving HTTP/1.1 + h2c), `routing` (virtual hosts and routes),
//! `upstream` (clusters, load balancing, pools), `admin`, `stats` and `telemetry` (Istio's
//! standard metrics and the metadata exchange).

pub mod access_log;
pub mod admin;
mod app;
pub mod authn;
pub mod authz;
pub mod config;
pub mod ext_authz;
pub mod identity;
pub mod lifecycle;
pub mod listener;
pub mod routing;
pub mod stats;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod xds;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub use app::{ProxyHandle, start};

/// The name the control plane's serving certificate carries (the proxy's SNI and verified name).
pub const CONTROL_PLANE_SNI: &str = trellis_agent::identity::CONTROL_PLANE_SNI;

/// The proxy's bootstrap: who it is and where the control plane and admin API are.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The node identity presented to the control plane.
    pub node: trellis_xds::NodeIdentity,
    /// The control plane's plaintext ADS address (unused when `security` is set).
    pub xds_address: SocketAddr,
    /// Where to serve the admin API.
    pub admin_address: SocketAddr,
    /// Secure mode: `None` is plaintext ADS and no workload certificate.
    pub security: Option<ProxySecurity>,
    /// Where Prometheus scrapes the proxy (15090, 15020) and the app's own metrics.
    pub metrics: MetricsConfig,
    /// Readiness on the health port (15021) and the drain period on shutdown.
    pub lifecycle: lifecycle::LifecycleConfig,
}

/// The Prometheus endpoints besides the admin API's `/stats/prometheus`: Istio's proxy port
/// (15090) and merged port (15020, the proxy's metrics followed by the app's).
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// `IP:15090`: `/stats/prometheus`, the proxy's metrics. `None`: not served.
    pub prometheus_address: Option<SocketAddr>,
    /// `IP:15020`: `/stats/prometheus`, merged with the app's. `None`: not served.
    pub merged_address: Option<SocketAddr>,
    /// Where the app exposes its metrics (on its IP); `None`: the merged endpoint has only
    /// the proxy's.
    pub app_metrics: Option<telemetry::merge::AppMetrics>,
}

impl MetricsConfig {
    /// Istio's ports on the workload IP: `IP:15090` and `IP:15020`.
    pub fn istio_ports(
        ip: std::net::IpAddr,
        app_metrics: Option<telemetry::merge::AppMetrics>,
    ) -> Self {
        MetricsConfig {
            prometheus_address: Some(SocketAddr::new(ip, 15090)),
            merged_address: Some(SocketAddr::new(ip, 15020)),
            app_metrics,
        }
    }
}

/// Secure mode: ADS over TLS to the control plane's secure port, and a workload certificate
/// from its CA (served internally as the SDS secrets `default` and `ROOTCA`).
#[derive(Debug, Clone)]
pub struct ProxySecurity {
    /// The control plane's secure port (15012): CA and ADS, over TLS verified against
    /// `root_cert_pem` with the name [`CONTROL_PLANE_SNI`].
    pub ca_address: SocketAddr,
    /// The mesh root (PEM), e.g. the contents of `--root-cert FILE`.
    pub root_cert_pem: String,
    /// The workload token (from `trellis token create`).
    pub token: String,
    /// The trust domain of the workload's identity (`cluster.local`).
    pub trust_domain: String,
    /// The certificate lifetime to ask for (the CA may cap it).
    pub cert_ttl: Duration,
}

impl ProxySecurity {
    /// Reads the root from `root_cert_file`; the other fields as given.
    pub fn from_root_file(
        ca_address: SocketAddr,
        root_cert_file: &std::path::Path,
        token: String,
        trust_domain: String,
        cert_ttl: Duration,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let root_cert_pem = std::fs::read_to_string(root_cert_file).with_context(|| {
            format!("reading the root certificate {}", root_cert_file.display())
        })?;
        Ok(ProxySecurity {
            ca_address,
            root_cert_pem,
            token,
            trust_domain,
            cert_ttl,
        })
    }
}

/// Runs the proxy until `shutdown` resolves, then drains it (see [`lifecycle::drain`]).
pub async fn run(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    app::run(config, shutdown).await
}
