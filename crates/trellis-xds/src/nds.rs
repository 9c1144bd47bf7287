//! Istio's name table (NDS): the host names a proxy's DNS proxy answers for its workload, and
//! their addresses. The control plane sends it over ADS as
//! [`crate::type_url::NAME_TABLE`]; Envoy never asks for it, the DNS proxy does.
//!
//! These are hand-written prost messages mirroring `istio.networking.nds.v1.NameTable` (field
//! names and numbers as in Istio's `nds.proto`, minus the deprecated `alt_hosts`), so the wire
//! format is Istio's. The map is a `BTreeMap` so that equal tables encode to equal bytes.

use std::collections::BTreeMap;

/// Every name a proxy's workload may resolve through the DNS proxy.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameTable {
    /// Host name (fully qualified, no trailing dot) → what it resolves to.
    #[prost(btree_map = "string, message", tag = "1")]
    pub table: BTreeMap<String, NameInfo>,
}

/// What one host name resolves to.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameInfo {
    /// Its addresses (IPv4 and IPv6, as text).
    #[prost(string, repeated, tag = "1")]
    pub ips: Vec<String>,
    /// The registry the name comes from: [`REGISTRY_KUBERNETES`] for a Kubernetes-style
    /// service host (`NAME.NS.svc.DOMAIN`), whose short forms the DNS proxy also answers.
    #[prost(string, tag = "2")]
    pub registry: String,
    /// Kubernetes services: the service name (`reviews`).
    #[prost(string, tag = "3")]
    pub shortname: String,
    /// Kubernetes services: the service's namespace.
    #[prost(string, tag = "4")]
    pub namespace: String,
}

/// Istio's registry name for Kubernetes services: the DNS proxy expands their short names.
pub const REGISTRY_KUBERNETES: &str = "Kubernetes";
