//! `PeerAuthentication`: mutual TLS mode for inbound traffic (security.istio.io).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{LabelSelector, istio_enum};

/// The spec of a PeerAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthentication {
    /// Workloads this applies to (default: the namespace, or the mesh in the root namespace).
    pub selector: Option<LabelSelector>,
    /// Mutual TLS mode.
    pub mtls: Option<MutualTls>,
    /// Per-port mutual TLS modes, keyed by port number.
    #[serde(default)]
    pub port_level_mtls: BTreeMap<String, MutualTls>,
}

istio_enum! {
    /// Mutual TLS modes.
    MutualTlsMode { Unset = "UNSET", Disable = "DISABLE", Permissive = "PERMISSIVE", Strict = "STRICT" }
}

/// A mutual TLS setting.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MutualTls {
    /// The mode.
    pub mode: Option<MutualTlsMode>,
}
