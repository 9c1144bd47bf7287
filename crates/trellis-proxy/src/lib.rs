#![warn(missing_docs)]
//! The Trellis data plane: a sidecar/gateway proxy configured over Envoy's xDS v3 API (the subset
//! listed in `docs/xds-features.md`).
//!
//! Layout: `xds` (ADS client, proto → config conversion), `config` (the proxy's own types),
//! `listener` (accepting and serving HTTP/1.1 + h2c), `routing` (virtual hosts and routes),
//! `upstream` (clusters, load balancing, pools), `admin` and `stats`.

pub mod admin;
mod app;
pub mod config;
pub mod listener;
pub mod routing;
pub mod stats;
pub mod upstream;
pub mod xds;

use std::future::Future;
use std::net::SocketAddr;

pub use app::{ProxyHandle, start};

/// The proxy's bootstrap: who it is and where the control plane and admin API are.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The node identity presented to the control plane.
    pub node: trellis_xds::NodeIdentity,
    /// The control plane's ADS address (plaintext gRPC).
    pub xds_address: SocketAddr,
    /// Where to serve the admin API.
    pub admin_address: SocketAddr,
}

/// Runs the proxy until `shutdown` resolves.
pub async fn run(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    app::run(config, shutdown).await
}
