//! `WorkloadEntry`: a non-Kubernetes workload (VM, process) as an endpoint (networking.istio.io).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The spec of a WorkloadEntry, also used for ServiceEntry endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    /// IP, DNS name or `unix://` socket (required unless `network` is set).
    pub address: Option<String>,
    /// Port name → port number on this workload.
    #[serde(default)]
    pub ports: BTreeMap<String, u32>,
    /// Workload labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Network the workload is on.
    pub network: Option<String>,
    /// Locality (`region/zone/subzone`).
    pub locality: Option<String>,
    /// Load balancing weight.
    pub weight: Option<u32>,
    /// Service account of the workload.
    pub service_account: Option<String>,
}
