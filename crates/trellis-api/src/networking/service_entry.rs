//! `ServiceEntry`: services added to the mesh's registry (networking.istio.io).

use serde::{Deserialize, Serialize};

use crate::networking::WorkloadEntry;
use crate::types::{WorkloadSelector, istio_enum};

istio_enum! {
    /// Whether a service is inside or outside the mesh.
    Location { MeshExternal = "MESH_EXTERNAL", MeshInternal = "MESH_INTERNAL" }
}

istio_enum! {
    /// How a service's endpoints are found.
    Resolution {
        None = "NONE",
        Static = "STATIC",
        Dns = "DNS",
        DnsRoundRobin = "DNS_ROUND_ROBIN",
        DynamicDns = "DYNAMIC_DNS",
    }
}

/// The spec of a ServiceEntry: hosts, ports and where their endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// Hosts of the service (required).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs of the service.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Ports of the service.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh.
    pub location: Option<Location>,
    /// Endpoint discovery mode (default NONE).
    pub resolution: Option<Resolution>,
    /// Static endpoints.
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
    /// WorkloadEntries (and pods) selected as endpoints.
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces this entry is exported to.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// SANs accepted from the service's certificates.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

impl ServiceEntry {
    /// The resolution, with Istio's default (NONE) applied.
    pub fn resolution_or_default(&self) -> Resolution {
        self.resolution.unwrap_or(Resolution::None)
    }
}

/// A port of a ServiceEntry or Gateway/Sidecar listener.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Port number (required, 1..=65535).
    #[serde(default)]
    pub number: u32,
    /// Protocol (HTTP, HTTPS, GRPC, HTTP2, TCP, TLS, ...).
    pub protocol: Option<String>,
    /// Port name (required).
    #[serde(default)]
    pub name: String,
    /// Port on the endpoints.
    pub target_port: Option<u32>,
    /// The application protocol, as on a Kubernetes Service port (`http2`, `tcp`,
    /// `kubernetes.io/h2c`, ...): a Trellis extension, since ServiceEntry plays the Service's part
    /// in universal mode. It takes precedence over the name's prefix; `protocol` over both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}
