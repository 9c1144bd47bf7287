//! Cluster and endpoint config types.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

/// An upstream cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    /// The cluster's name (`outbound|80||echo.default.svc.cluster.local`, `inbound|9080||`).
    pub name: String,
    /// Where the cluster's endpoints come from.
    pub discovery: Discovery,
    /// How long a TCP connect to an endpoint may take.
    #[serde(serialize_with = "super::ser_duration")]
    pub connect_timeout: Duration,
    /// How an endpoint is picked per request.
    pub lb_policy: LbPolicy,
    /// The protocol spoken to endpoints.
    pub protocol: UpstreamProtocol,
    /// Circuit-breaker thresholds (priority DEFAULT).
    pub circuit_breakers: CircuitBreakers,
    /// Passive health checking; `None` disables it.
    pub outlier_detection: Option<OutlierDetection>,
    /// `common_lb_config.healthy_panic_threshold` in percent (Envoy's default 50; 0 disables).
    pub healthy_panic_threshold: f64,
    /// `common_lb_config.locality_weighted_lb_config` is set: localities are picked by weight.
    pub locality_weighted: bool,
    /// Slow start (round robin and least request only).
    pub slow_start: Option<SlowStart>,
    /// Connection-pool options.
    pub connection_pool: ConnectionPoolOptions,
    /// `transport_socket_matches`, in order.
    pub transport_socket_matches: Vec<super::TransportSocketMatch>,
    /// `transport_socket`: used by endpoints no match entry applies to.
    pub transport_socket: super::TransportSocket,
    /// `upstream_bind_config.source_address`: upstream connections are made from this address
    /// (captured mode's inbound clusters use `127.0.0.6`, which capture leaves alone).
    pub upstream_bind: Option<std::net::IpAddr>,
}

impl Cluster {
    /// The transport socket for an endpoint with this `envoy.transport_socket_match` metadata.
    pub fn transport_for(&self, metadata: &BTreeMap<String, String>) -> &super::TransportSocket {
        self.transport_socket_matches
            .iter()
            .find(|m| m.matcher.iter().all(|(k, v)| metadata.get(k) == Some(v)))
            .map_or(&self.transport_socket, |m| &m.socket)
    }
}

impl Cluster {
    /// A cluster with Envoy's defaults for everything but name, discovery, policy and protocol.
    pub fn with_defaults(
        name: impl Into<String>,
        discovery: Discovery,
        lb_policy: LbPolicy,
        protocol: UpstreamProtocol,
    ) -> Self {
        Cluster {
            name: name.into(),
            discovery,
            connect_timeout: Duration::from_secs(5),
            lb_policy,
            protocol,
            circuit_breakers: CircuitBreakers::default(),
            outlier_detection: None,
            healthy_panic_threshold: 50.0,
            locality_weighted: false,
            slow_start: None,
            connection_pool: ConnectionPoolOptions::default(),
            transport_socket_matches: Vec::new(),
            transport_socket: super::TransportSocket::RawBuffer,
            upstream_bind: None,
        }
    }
}

/// Circuit-breaker thresholds of a cluster (Envoy's defaults: 1024, 1024, 1024, 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CircuitBreakers {
    /// Connections to all endpoints of the cluster.
    pub max_connections: u32,
    /// Requests waiting for a connection.
    pub max_pending_requests: u32,
    /// Requests in flight.
    pub max_requests: u32,
    /// Retries in flight.
    pub max_retries: u32,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        CircuitBreakers {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// Outlier detection (passive health checking), Envoy's consecutive-error detectors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierDetection {
    /// Consecutive 5xx (and, unless split, local-origin failures) before ejection (default 5).
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 (and, unless split, local-origin failures) (default 5).
    pub consecutive_gateway_failure: u32,
    /// Consecutive local-origin failures when split (default 5).
    pub consecutive_local_origin_failure: u32,
    /// Whether local-origin failures are counted apart from HTTP status codes.
    pub split_external_local_origin_errors: bool,
    /// The analysis interval: the ejection multiplier decays by one per interval (default 10 s).
    #[serde(serialize_with = "super::ser_duration")]
    pub interval: Duration,
    /// Ejection time = base × number of ejections (default 30 s).
    #[serde(serialize_with = "super::ser_duration")]
    pub base_ejection_time: Duration,
    /// Upper bound of an ejection (default 300 s).
    #[serde(serialize_with = "super::ser_duration")]
    pub max_ejection_time: Duration,
    /// At most this percentage of endpoints ejected at once (at least one always can be).
    pub max_ejection_percent: u32,
    /// Percent chance a consecutive-5xx ejection is enforced (default 100).
    pub enforcing_consecutive_5xx: u32,
    /// Percent chance a consecutive-gateway-failure ejection is enforced (default 0).
    pub enforcing_consecutive_gateway_failure: u32,
    /// Percent chance a consecutive-local-origin-failure ejection is enforced (default 100).
    pub enforcing_consecutive_local_origin_failure: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            consecutive_local_origin_failure: 5,
            split_external_local_origin_errors: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            enforcing_consecutive_5xx: 100,
            enforcing_consecutive_gateway_failure: 0,
            enforcing_consecutive_local_origin_failure: 100,
        }
    }
}

/// Slow start: a new endpoint's weight ramps up over `window`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowStart {
    /// How long the ramp lasts.
    #[serde(serialize_with = "super::ser_duration")]
    pub window: Duration,
    /// The ramp's shape: weight × (age / window)^(1 / aggression) (default 1.0: linear).
    pub aggression: f64,
    /// The lowest fraction of its weight an endpoint gets, in percent (default 10).
    pub min_weight_percent: f64,
}

/// TCP keepalive on upstream sockets; `None` fields use the OS defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dropped.
    pub probes: Option<u32>,
    /// Idle time before the first probe.
    #[serde(serialize_with = "super::ser_opt_duration")]
    pub time: Option<Duration>,
    /// Time between probes.
    #[serde(serialize_with = "super::ser_opt_duration")]
    pub interval: Option<Duration>,
}

/// Connection-pool options of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnectionPoolOptions {
    /// A connection with no requests for this long is closed (Envoy's default 1 h).
    #[serde(serialize_with = "super::ser_opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// A connection serves at most this many requests.
    pub max_requests_per_connection: Option<u32>,
    /// A connection takes no new requests after this long.
    #[serde(serialize_with = "super::ser_opt_duration")]
    pub max_connection_duration: Option<Duration>,
    /// HTTP/2: at most this many concurrent streams per connection.
    pub max_concurrent_streams: Option<u32>,
    /// TCP keepalive on upstream sockets.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// HTTP/1.1: header names are written with the case the downstream sent them in, and the
    /// response's are kept for the downstream (Envoy's `preserve_case` header formatter).
    pub preserve_header_case: bool,
}

impl Default for ConnectionPoolOptions {
    fn default() -> Self {
        ConnectionPoolOptions {
            idle_timeout: Some(Duration::from_secs(3600)),
            max_requests_per_connection: None,
            max_connection_duration: None,
            max_concurrent_streams: None,
            tcp_keepalive: None,
            preserve_header_case: false,
        }
    }
}

/// Where a cluster's endpoints come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// A fixed list carried in the cluster.
    Static(Vec<Endpoint>),
    /// EDS, under this service name.
    Eds {
        /// The `ClusterLoadAssignment` name to subscribe to.
        service_name: String,
    },
    /// STRICT_DNS / LOGICAL_DNS: host names resolved periodically.
    Dns {
        /// `true` for LOGICAL_DNS (only the first address of each name is used).
        logical: bool,
        /// Which address families are used (`dns_lookup_family`).
        lookup_family: DnsLookupFamily,
        /// How often names are re-resolved (`dns_refresh_rate`, default 5 s).
        #[serde(serialize_with = "super::ser_duration")]
        refresh_rate: Duration,
        /// The names to resolve, with the endpoint attributes each resolved address gets.
        hosts: Vec<DnsHost>,
    },
    /// ORIGINAL_DST: the endpoint is the request's original destination.
    OriginalDst {
        /// `original_dst_lb_config.use_http_header`: take it from `x-envoy-original-dst-host`
        /// when present and valid (else the connection's original destination).
        use_http_header: bool,
    },
}

/// `dns_lookup_family`: which resolved addresses are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DnsLookupFamily {
    /// IPv6 addresses if there are any, else IPv4 (Envoy's default).
    Auto,
    /// IPv4 only.
    V4Only,
    /// IPv6 only.
    V6Only,
    /// IPv4 addresses if there are any, else IPv6.
    V4Preferred,
    /// Both.
    All,
}

impl DnsLookupFamily {
    /// Keeps the addresses this family uses, in order.
    pub fn filter(self, addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let (v4, v6): (Vec<_>, Vec<_>) = addrs.iter().partition(|a| a.is_ipv4());
        match self {
            DnsLookupFamily::All => addrs,
            DnsLookupFamily::V4Only => v4,
            DnsLookupFamily::V6Only => v6,
            DnsLookupFamily::Auto => {
                if v6.is_empty() {
                    v4
                } else {
                    v6
                }
            }
            DnsLookupFamily::V4Preferred => {
                if v4.is_empty() {
                    v6
                } else {
                    v4
                }
            }
        }
    }
}

/// A host name of a DNS cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsHost {
    /// The name to resolve.
    pub hostname: String,
    /// The port every resolved address gets.
    pub port: u16,
    /// Weight, locality, priority and health of the resolved endpoints (address unused).
    pub template: Endpoint,
}

/// Load-balancing policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    /// Each endpoint in turn (weighted when weights differ).
    RoundRobin,
    /// The less loaded of two random endpoints (power of two choices); weighted when weights
    /// differ.
    LeastRequest,
    /// A random endpoint.
    Random,
    /// Consistent hashing on a ring (Ketama).
    RingHash {
        /// Lower bound on the ring's entries (default 1024).
        minimum_ring_size: u64,
        /// Upper bound on the ring's entries (default 8M).
        maximum_ring_size: u64,
    },
    /// Maglev consistent hashing.
    Maglev {
        /// The lookup table's size, a prime (default 65537).
        table_size: u64,
    },
    /// CLUSTER_PROVIDED: the cluster picks (ORIGINAL_DST).
    ClusterProvided,
}

/// The protocol spoken to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive pooling.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// An endpoint's locality.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Locality {
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Sub-zone.
    pub sub_zone: String,
}

/// An endpoint of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The load-balancing weight (1 when unset).
    pub weight: u32,
    /// The endpoint's locality.
    pub locality: Locality,
    /// The priority of its locality (0 is the highest).
    pub priority: u32,
    /// The weight of its locality (used with locality-weighted load balancing; `None`: unset).
    pub locality_weight: Option<u32>,
    /// EDS health: `false` for UNHEALTHY, DRAINING and TIMEOUT.
    pub healthy: bool,
    /// `metadata.filter_metadata["envoy.transport_socket_match"]` (string values).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub transport_socket_match: BTreeMap<String, String>,
    /// `metadata.filter_metadata["istio"]["workload"]`: who the endpoint is, for metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<std::sync::Arc<crate::telemetry::PeerWorkload>>,
}

impl Endpoint {
    /// A healthy endpoint at priority 0 with weight 1 and no locality.
    pub fn new(address: SocketAddr) -> Self {
        Endpoint {
            address,
            weight: 1,
            locality: Locality::default(),
            priority: 0,
            locality_weight: None,
            healthy: true,
            transport_socket_match: BTreeMap::new(),
            workload: None,
        }
    }
}

/// The endpoints EDS delivered for one service name (Envoy's `ClusterLoadAssignment`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoints {
    /// The service name (`cluster_name` in the proto).
    pub cluster_name: String,
    /// The endpoints, flattened over localities (each carries its locality and priority).
    pub endpoints: Vec<Endpoint>,
}
