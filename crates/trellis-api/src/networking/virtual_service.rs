//! `VirtualService`: how requests to a host are routed (networking.istio.io).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Duration, Percent, PortSelector, StringMatch, istio_enum};

/// The spec of a VirtualService: routing rules for a set of hosts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    /// Destination hosts the rules apply to (empty only for a delegate VirtualService).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways (and/or `mesh`) the rules apply to; empty means `mesh`.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Ordered HTTP routes.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// Ordered TLS (SNI) routes for unterminated TLS.
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    /// Ordered opaque TCP routes.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces this VirtualService is exported to.
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// One HTTP route: conditions and what to do with matching requests.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Name of the route, for debugging.
    pub name: Option<String>,
    /// Match conditions, ORed; empty matches everything.
    #[serde(default, rename = "match")]
    pub match_: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Redirect instead of forwarding.
    pub redirect: Option<HttpRedirect>,
    /// Answer directly instead of forwarding.
    pub direct_response: Option<HttpDirectResponse>,
    /// Hand routing over to another VirtualService.
    pub delegate: Option<Delegate>,
    /// Rewrite of URI/authority before forwarding.
    pub rewrite: Option<HttpRewrite>,
    /// Request timeout.
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    pub fault: Option<HttpFaultInjection>,
    /// Mirror (shadow) traffic to this destination.
    pub mirror: Option<Destination>,
    /// Multiple mirror destinations.
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Percentage of traffic mirrored.
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer mirror percentage.
    pub mirror_percent: Option<u32>,
    /// Deprecated integer mirror percentage, snake_case spelling.
    #[serde(rename = "mirror_percent")]
    pub mirror_percent_legacy: Option<u32>,
    /// CORS policy.
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation.
    pub headers: Option<Headers>,
}

/// Conditions a request must meet for an HTTP route to apply (ANDed).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Name of the match, appended to the route name.
    pub name: Option<String>,
    /// URI match.
    pub uri: Option<StringMatch>,
    /// URI scheme match.
    pub scheme: Option<StringMatch>,
    /// HTTP method match.
    pub method: Option<StringMatch>,
    /// Authority (Host) match.
    pub authority: Option<StringMatch>,
    /// Header matches, by lowercase header name.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    /// Port the request was addressed to.
    pub port: Option<u32>,
    /// Labels of the calling workload.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this match applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Query parameter matches.
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Case-insensitive URI matching.
    pub ignore_uri_case: Option<bool>,
    /// Headers that must not match.
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Namespace of the calling workload.
    pub source_namespace: Option<String>,
    /// Stat prefix for the route.
    pub stat_prefix: Option<String>,
}

/// A destination with its weight and header manipulation in an HTTP route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send the request.
    pub destination: Destination,
    /// Share of traffic, 0..=100.
    pub weight: Option<i32>,
    /// Header manipulation for this destination.
    pub headers: Option<Headers>,
}

/// A service (and optionally subset and port) requests are sent to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Service host name (short names resolve in the VirtualService's namespace).
    #[serde(default)]
    pub host: String,
    /// Subset defined by a DestinationRule.
    pub subset: Option<String>,
    /// Port on the host.
    pub port: Option<PortSelector>,
}

/// Request and response header manipulation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Changes to the request headers.
    pub request: Option<HeaderOperations>,
    /// Changes to the response headers.
    pub response: Option<HeaderOperations>,
}

/// Set/add/remove operations on headers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    /// Overwrite these headers.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append these headers.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default)]
    pub remove: Vec<String>,
}

istio_enum! {
    /// How a redirect derives its port.
    RedirectPortSelection { FromProtocolDefault = "FROM_PROTOCOL_DEFAULT", FromRequestPort = "FROM_REQUEST_PORT" }
}

/// An HTTP redirect answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// Replacement path.
    pub uri: Option<String>,
    /// Replacement authority.
    pub authority: Option<String>,
    /// Replacement port.
    pub port: Option<u32>,
    /// Port derived from the protocol or the request.
    pub derive_port: Option<RedirectPortSelection>,
    /// Replacement scheme.
    pub scheme: Option<String>,
    /// Status code (default 301).
    pub redirect_code: Option<u32>,
    /// Replacement for the matched prefix.
    pub prefix_rewrite: Option<String>,
}

/// A fixed response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// Status code.
    #[serde(default)]
    pub status: u32,
    /// Response body.
    pub body: Option<HttpBody>,
}

/// A direct response body: text or base64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBody {
    /// Body as text.
    pub string: Option<String>,
    /// Body as base64-encoded bytes.
    pub bytes: Option<String>,
}

/// Reference to a delegate VirtualService.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delegate {
    /// Name of the delegate VirtualService.
    #[serde(default)]
    pub name: String,
    /// Its namespace (defaults to this one).
    pub namespace: Option<String>,
}

/// URI/authority rewrite before forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replacement for the matched URI or prefix.
    pub uri: Option<String>,
    /// Replacement authority.
    pub authority: Option<String>,
    /// Regex-based URI rewrite.
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// A regex and its replacement.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 regex to match.
    #[serde(default, rename = "match")]
    pub match_: String,
    /// Replacement, may use capture groups.
    #[serde(default)]
    pub rewrite: String,
}

/// Retry policy of an HTTP route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Number of retries.
    pub attempts: Option<i32>,
    /// Timeout per attempt.
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated retry conditions.
    pub retry_on: Option<String>,
    /// Retry in other localities.
    pub retry_remote_localities: Option<bool>,
    /// Avoid previously tried hosts.
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base backoff interval.
    pub backoff: Option<Duration>,
}

/// Fault injection on an HTTP route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay requests.
    pub delay: Option<Delay>,
    /// Abort requests.
    pub abort: Option<Abort>,
}

/// An injected delay.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delay {
    /// Fixed delay.
    pub fixed_delay: Option<Duration>,
    /// Exponential delay.
    pub exponential_delay: Option<Duration>,
    /// Share of requests delayed.
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    pub percent: Option<i32>,
}

/// An injected abort.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Abort {
    /// HTTP status to answer.
    pub http_status: Option<i32>,
    /// gRPC status to answer.
    pub grpc_status: Option<String>,
    /// HTTP/2 error to answer.
    pub http2_error: Option<String>,
    /// Share of requests aborted.
    pub percentage: Option<Percent>,
}

/// One mirror destination with its percentage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Where mirrored traffic goes.
    pub destination: Destination,
    /// Share of traffic mirrored.
    pub percentage: Option<Percent>,
}

istio_enum! {
    /// What to do with CORS preflights that match no origin.
    UnmatchedPreflights { Unspecified = "UNSPECIFIED", Forward = "FORWARD", Ignore = "IGNORE" }
}

/// CORS policy of an HTTP route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Deprecated exact origins.
    #[serde(default)]
    pub allow_origin: Vec<String>,
    /// Allowed origins.
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    /// Allowed methods.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Exposed response headers.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache duration.
    pub max_age: Option<Duration>,
    /// Allow credentials.
    pub allow_credentials: Option<bool>,
    /// Handling of unmatched preflights.
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

/// A TLS route, matched on SNI.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Match conditions (required).
    #[serde(default, rename = "match")]
    pub match_: Vec<TlsMatchAttributes>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// Conditions of a TLS route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI values to match (required).
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    /// Destination IP subnets.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    pub port: Option<u32>,
    /// Labels of the calling workload.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this match applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    pub source_namespace: Option<String>,
}

/// An opaque TCP route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Match conditions.
    #[serde(default, rename = "match")]
    pub match_: Vec<L4MatchAttributes>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// Conditions of a TCP route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination IP subnets.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    pub port: Option<u32>,
    /// Source IP subnet.
    pub source_subnet: Option<String>,
    /// Labels of the calling workload.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this match applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    pub source_namespace: Option<String>,
}

/// A weighted destination of a TCP or TLS route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to send the connection.
    pub destination: Destination,
    /// Share of traffic, 0..=100.
    pub weight: Option<i32>,
}
