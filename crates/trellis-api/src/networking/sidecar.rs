//! `Sidecar`: limits what a sidecar proxy listens for and can reach (networking.istio.io).

use serde::{Deserialize, Serialize};

use crate::networking::{ConnectionPoolSettings, Destination, Port, ServerTlsSettings};
use crate::types::{WorkloadSelector, istio_enum};

/// The spec of a Sidecar resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Workloads this applies to (default: the whole namespace).
    pub workload_selector: Option<WorkloadSelector>,
    /// Inbound listeners.
    #[serde(default)]
    pub ingress: Vec<IstioIngressListener>,
    /// Outbound listeners and reachable hosts.
    #[serde(default)]
    pub egress: Vec<IstioEgressListener>,
    /// Inbound connection pool defaults.
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// Handling of traffic to unknown destinations.
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

istio_enum! {
    /// How traffic is captured into a listener.
    CaptureMode { Default = "DEFAULT", Iptables = "IPTABLES", None = "NONE" }
}

/// An inbound listener of a sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioIngressListener {
    /// Port (required).
    pub port: Option<Port>,
    /// Address to bind.
    pub bind: Option<String>,
    /// Capture mode.
    pub capture_mode: Option<CaptureMode>,
    /// Where the application listens.
    pub default_endpoint: Option<String>,
    /// TLS settings.
    pub tls: Option<ServerTlsSettings>,
    /// Connection pool.
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// An outbound listener of a sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioEgressListener {
    /// Port.
    pub port: Option<Port>,
    /// Address to bind.
    pub bind: Option<String>,
    /// Capture mode.
    pub capture_mode: Option<CaptureMode>,
    /// Reachable hosts as `namespace/dnsName` (required).
    #[serde(default)]
    pub hosts: Vec<String>,
}

istio_enum! {
    /// Outbound traffic modes.
    OutboundTrafficMode { RegistryOnly = "REGISTRY_ONLY", AllowAny = "ALLOW_ANY" }
}

/// Handling of traffic to destinations not in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// Mode.
    pub mode: Option<OutboundTrafficMode>,
    /// Egress proxy for unknown traffic.
    pub egress_proxy: Option<Destination>,
}
