//! Lets a stock Envoy be a Trellis data plane (≈ Istio's pilot-agent): writes an Envoy
//! bootstrap that points Envoy's ADS at the control plane with the workload's node identity,
//! finds the Envoy binary, and supervises Envoy so it never outlives the agent.

mod bootstrap;
pub mod dns;
mod envoy;
pub mod identity;
pub mod lifecycle;
pub mod sds;

pub use bootstrap::bootstrap;
pub use envoy::{AgentError, find_envoy, run_envoy};

use std::net::SocketAddr;
use std::path::PathBuf;

use trellis_xds::NodeIdentity;

/// How the agent runs Envoy.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Who the workload is.
    pub node: NodeIdentity,
    /// The control plane's ADS address.
    pub xds_address: SocketAddr,
    /// Envoy's admin address.
    pub admin_address: SocketAddr,
    /// The Envoy binary; found automatically when `None`.
    pub envoy: Option<PathBuf>,
    /// Where to write the bootstrap; a temporary file when `None`.
    pub bootstrap_out: Option<PathBuf>,
    /// Envoy worker threads.
    pub concurrency: u32,
    /// Secure mode: ADS over TLS to the control plane's secure port and a workload
    /// certificate from its CA, served to Envoy over SDS. `None` is plaintext ADS.
    pub security: Option<AgentSecurity>,
    /// Istio's health port (`IP:15021`, `/healthz/ready`), served by the agent from Envoy's
    /// state; `None`: not served.
    pub health_address: Option<SocketAddr>,
    /// How long a drain on shutdown waits for Envoy's connections before stopping it.
    pub drain_duration: std::time::Duration,
}

/// What the agent needs to get and serve a workload certificate.
#[derive(Debug, Clone)]
pub struct AgentSecurity {
    /// The mesh root (PEM file) that verifies the control plane.
    pub root_cert_file: PathBuf,
    /// The workload token (from `trellis token create`).
    pub token: String,
    /// The trust domain of the workload's identity.
    pub trust_domain: String,
    /// The workload certificate lifetime to ask for.
    pub cert_ttl: std::time::Duration,
    /// The Unix socket Envoy reads secrets from.
    pub sds_socket: PathBuf,
}
