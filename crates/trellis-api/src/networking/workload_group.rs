//! `WorkloadGroup`: a template for auto-registered WorkloadEntries (networking.istio.io).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::networking::WorkloadEntry;

/// The spec of a WorkloadGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadGroup {
    /// Metadata given to generated WorkloadEntries.
    pub metadata: Option<WorkloadGroupMetadata>,
    /// Template for generated WorkloadEntries (required).
    pub template: Option<WorkloadEntry>,
    /// Readiness probe.
    pub probe: Option<ReadinessProbe>,
}

/// Labels and annotations for generated WorkloadEntries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadGroupMetadata {
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Readiness probe of a WorkloadGroup: one of httpGet, tcpSocket, exec or grpc.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessProbe {
    /// Seconds before the first probe.
    pub initial_delay_seconds: Option<i32>,
    /// Probe timeout in seconds.
    pub timeout_seconds: Option<i32>,
    /// Seconds between probes.
    pub period_seconds: Option<i32>,
    /// Successes to become ready.
    pub success_threshold: Option<i32>,
    /// Failures to become unready.
    pub failure_threshold: Option<i32>,
    /// HTTP GET probe.
    pub http_get: Option<HttpHealthCheckConfig>,
    /// TCP connect probe.
    pub tcp_socket: Option<TcpHealthCheckConfig>,
    /// Command probe.
    pub exec: Option<ExecHealthCheckConfig>,
    /// gRPC health probe.
    pub grpc: Option<GrpcHealthCheckConfig>,
}

/// HTTP GET probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHealthCheckConfig {
    /// Path.
    pub path: Option<String>,
    /// Port (required).
    #[serde(default)]
    pub port: u32,
    /// Host.
    pub host: Option<String>,
    /// HTTP or HTTPS.
    pub scheme: Option<String>,
    /// Extra headers.
    #[serde(default)]
    pub http_headers: Vec<HttpHeader>,
}

/// A header sent by an HTTP probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    /// Header name.
    pub name: Option<String>,
    /// Header value.
    pub value: Option<String>,
}

/// TCP connect probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpHealthCheckConfig {
    /// Host.
    pub host: Option<String>,
    /// Port (required).
    #[serde(default)]
    pub port: u32,
}

/// Command probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecHealthCheckConfig {
    /// Command and arguments (required).
    #[serde(default)]
    pub command: Vec<String>,
}

/// gRPC health probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcHealthCheckConfig {
    /// Port.
    pub port: Option<u32>,
    /// Service name.
    pub service: Option<String>,
}
