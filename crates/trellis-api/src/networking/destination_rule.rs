//! `DestinationRule`: policies applied after routing (networking.istio.io).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Duration, LabelSelector, PortSelector, istio_enum};

/// The spec of a DestinationRule: traffic policy and subsets for one host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRule {
    /// Service host (required; short names resolve in the rule's namespace).
    #[serde(default)]
    pub host: String,
    /// Default traffic policy for the host.
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named subsets (versions) of the service.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Namespaces this rule is exported to.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Workloads this rule applies to (in the rule's namespace).
    pub workload_selector: Option<LabelSelector>,
}

/// A named set of endpoints selected by labels, with an optional policy override.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// Subset name (required, unique in the rule).
    #[serde(default)]
    pub name: String,
    /// Endpoint labels selecting the subset.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Policy overriding the rule's.
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Load balancing, connection pool, outlier detection and TLS for upstream traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Load balancing.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of failing hosts.
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream TLS.
    pub tls: Option<ClientTlsSettings>,
    /// Per-port overrides.
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// HTTP CONNECT/POST tunnelling.
    pub tunnel: Option<TunnelSettings>,
    /// PROXY protocol towards upstream.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Retry budget.
    pub retry_budget: Option<RetryBudget>,
}

/// A traffic policy for one port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    /// The port it applies to.
    pub port: Option<PortSelector>,
    /// Load balancing.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of failing hosts.
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream TLS.
    pub tls: Option<ClientTlsSettings>,
}

istio_enum! {
    /// Istio's simple load balancing algorithms.
    SimpleLb {
        Unspecified = "UNSPECIFIED",
        LeastConn = "LEAST_CONN",
        Random = "RANDOM",
        Passthrough = "PASSTHROUGH",
        RoundRobin = "ROUND_ROBIN",
        LeastRequest = "LEAST_REQUEST",
    }
}

/// Load balancing settings: one of simple, consistentHash or backendUtilization.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    /// A simple algorithm.
    pub simple: Option<SimpleLb>,
    /// Consistent hashing.
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Client-side weighted round robin by backend utilization.
    pub backend_utilization: Option<BackendUtilizationLb>,
    /// Locality-aware load balancing.
    pub locality_lb_setting: Option<LocalityLbSetting>,
    /// Zone-aware load balancing.
    pub zone_aware_lb_setting: Option<ZoneAwareLbSetting>,
    /// Deprecated slow start window.
    pub warmup_duration_secs: Option<Duration>,
    /// Slow start.
    pub warmup: Option<WarmupConfiguration>,
}

/// Consistent hash load balancing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHashLb {
    /// Hash on this header.
    pub http_header_name: Option<String>,
    /// Hash on this cookie.
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the source IP.
    pub use_source_ip: Option<bool>,
    /// Hash on this query parameter.
    pub http_query_parameter_name: Option<String>,
    /// Ring hash.
    pub ring_hash: Option<RingHash>,
    /// Maglev.
    pub maglev: Option<MagLev>,
    /// Deprecated ring size.
    pub minimum_ring_size: Option<u64>,
}

/// Cookie used as hash key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookie {
    /// Cookie name (required).
    #[serde(default)]
    pub name: String,
    /// Cookie path.
    pub path: Option<String>,
    /// Cookie lifetime.
    pub ttl: Option<Duration>,
    /// Extra cookie attributes.
    #[serde(default)]
    pub attributes: Vec<CookieAttribute>,
}

/// One attribute of a hash cookie.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CookieAttribute {
    /// Attribute name (required).
    #[serde(default)]
    pub name: String,
    /// Attribute value.
    pub value: Option<String>,
}

/// Ring hash settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// Minimum ring size.
    pub minimum_ring_size: Option<u64>,
}

/// Maglev settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    /// Lookup table size (prime).
    pub table_size: Option<u64>,
}

/// Backend-utilization-based load balancing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendUtilizationLb {
    /// How long a weight stays valid.
    pub weight_expiration_period: Option<Duration>,
    /// Blackout after a host becomes available.
    pub weight_stabilization_period: Option<Duration>,
    /// How often weights are recomputed.
    pub weight_update_period: Option<Duration>,
    /// Penalty for error rate.
    pub error_utilization_penalty_percent: Option<u32>,
    /// Custom metric names for utilization.
    #[serde(default)]
    pub metric_names_for_computing_utilization: Vec<String>,
}

/// Locality-weighted load balancing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLbSetting {
    /// Explicit traffic distribution between localities.
    #[serde(default)]
    pub distribute: Vec<LocalityDistribute>,
    /// Failover between regions.
    #[serde(default)]
    pub failover: Vec<LocalityFailover>,
    /// Ordered labels for failover priority.
    #[serde(default)]
    pub failover_priority: Vec<String>,
    /// Enable locality load balancing.
    pub enabled: Option<bool>,
}

/// Traffic distribution from one locality to others.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityDistribute {
    /// Originating locality.
    pub from: Option<String>,
    /// Destination localities and weights.
    #[serde(default)]
    pub to: BTreeMap<String, u32>,
}

/// Failover from one region to another.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityFailover {
    /// Originating region.
    pub from: Option<String>,
    /// Failover region.
    pub to: Option<String>,
}

/// Zone-aware load balancing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneAwareLbSetting {
    /// Enable it.
    pub enabled: Option<bool>,
    /// Failover between regions.
    #[serde(default)]
    pub failover: Vec<LocalityFailover>,
    /// Ordered labels for failover priority.
    #[serde(default)]
    pub failover_priority: Vec<String>,
    /// Minimum cluster size for zone-aware routing.
    pub min_cluster_size: Option<u32>,
}

/// Slow start.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupConfiguration {
    /// Warmup window (required).
    pub duration: Option<Duration>,
    /// Starting percentage of traffic.
    pub minimum_percent: Option<f64>,
    /// Non-linearity of the ramp.
    pub aggression: Option<f64>,
}

/// Connection pool limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// TCP limits.
    pub tcp: Option<TcpSettings>,
    /// HTTP limits.
    pub http: Option<HttpSettings>,
}

/// TCP connection pool limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    /// Maximum connections.
    pub max_connections: Option<i32>,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
    /// TCP keepalive.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Maximum connection lifetime.
    pub max_connection_duration: Option<Duration>,
    /// Idle timeout.
    pub idle_timeout: Option<Duration>,
}

/// TCP keepalive settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Unanswered probes before dropping.
    pub probes: Option<u32>,
    /// Idle time before probing.
    pub time: Option<Duration>,
    /// Interval between probes.
    pub interval: Option<Duration>,
}

istio_enum! {
    /// Whether HTTP/1.1 connections are upgraded to HTTP/2.
    H2UpgradePolicy { Default = "DEFAULT", DoNotUpgrade = "DO_NOT_UPGRADE", Upgrade = "UPGRADE" }
}

/// HTTP connection pool limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Maximum pending HTTP/1 requests.
    pub http1_max_pending_requests: Option<i32>,
    /// Maximum active requests.
    pub http2_max_requests: Option<i32>,
    /// Maximum requests per connection.
    pub max_requests_per_connection: Option<i32>,
    /// Maximum outstanding retries.
    pub max_retries: Option<i32>,
    /// Idle timeout.
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 upgrade policy.
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Use the client's protocol upstream.
    pub use_client_protocol: Option<bool>,
    /// Maximum concurrent HTTP/2 streams.
    pub max_concurrent_streams: Option<i32>,
    /// HTTP/2 keepalive.
    pub http2_keep_alive: Option<Http2KeepAlive>,
}

/// HTTP/2 keepalive pings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http2KeepAlive {
    /// Ping interval.
    pub interval: Option<Duration>,
    /// Ping timeout.
    pub timeout: Option<Duration>,
}

/// Outlier detection (circuit breaking on errors).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Deprecated consecutive errors.
    pub consecutive_errors: Option<i32>,
    /// Separate local-origin errors.
    pub split_external_local_origin_errors: Option<bool>,
    /// Consecutive local-origin failures.
    pub consecutive_local_origin_failures: Option<u32>,
    /// Consecutive gateway errors.
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive 5xx errors.
    pub consecutive_5xx_errors: Option<u32>,
    /// Analysis interval.
    pub interval: Option<Duration>,
    /// Minimum ejection duration.
    pub base_ejection_time: Option<Duration>,
    /// Maximum share of hosts ejected.
    pub max_ejection_percent: Option<i32>,
    /// Minimum healthy share to keep detection on.
    pub min_health_percent: Option<i32>,
    /// Status codes counted as errors.
    #[serde(default)]
    pub outlier_detection_http_error_codes: Vec<u32>,
}

istio_enum! {
    /// Upstream TLS modes.
    ClientTlsMode { Disable = "DISABLE", Simple = "SIMPLE", Mutual = "MUTUAL", IstioMutual = "ISTIO_MUTUAL" }
}

/// Upstream TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// TLS mode.
    pub mode: Option<ClientTlsMode>,
    /// Client certificate file (MUTUAL).
    pub client_certificate: Option<String>,
    /// Private key file (MUTUAL).
    pub private_key: Option<String>,
    /// CA certificates file.
    pub ca_certificates: Option<String>,
    /// Secret holding the credentials.
    pub credential_name: Option<String>,
    /// Expected server SANs.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// SNI to present.
    pub sni: Option<String>,
    /// Skip server verification.
    pub insecure_skip_verify: Option<bool>,
    /// Certificate revocation list file.
    pub ca_crl: Option<String>,
}

/// HTTP tunnelling of TCP to a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSettings {
    /// CONNECT or POST.
    pub protocol: Option<String>,
    /// Host to tunnel to (required).
    #[serde(default)]
    pub target_host: String,
    /// Port to tunnel to (required).
    #[serde(default)]
    pub target_port: u32,
}

istio_enum! {
    /// PROXY protocol versions.
    ProxyProtocolVersion { V1 = "V1", V2 = "V2" }
}

/// PROXY protocol towards upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// Protocol version.
    pub version: Option<ProxyProtocolVersion>,
}

/// Retry budget.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Percentage of active requests that may be retries.
    pub percent: Option<f64>,
    /// Minimum concurrent retries allowed.
    pub min_retry_concurrency: Option<u32>,
    /// Window for the budget.
    pub budget_interval: Option<Duration>,
}
