//! The proxy's own configuration types. Everything past `xds::convert` speaks these types; no
//! protobuf message travels further. They serialize to JSON for `/config_dump`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A listener: an address the proxy accepts HTTP connections on, and where its routes come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    /// The listener's name (`virtualOutbound`, `inbound|9080`, ...).
    pub name: String,
    /// The address to bind.
    pub address: SocketAddr,
    /// The HTTP connection manager's stat prefix.
    pub stat_prefix: String,
    /// Where the listener's routes come from.
    pub routes: RouteSource,
}

/// Where a listener's route table comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteSource {
    /// A route table delivered by RDS under this name.
    Rds(String),
    /// A route table carried inline in the listener.
    Inline(Arc<RouteTable>),
}

/// A route table (Envoy's `RouteConfiguration`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteTable {
    /// The table's name.
    pub name: String,
    /// Virtual hosts, in the order received.
    pub virtual_hosts: Vec<VirtualHost>,
}

/// A virtual host: a set of domains and the routes that apply to them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualHost {
    /// The virtual host's name.
    pub name: String,
    /// Domains, lowercased: exact names, `host:port`, `*.suffix`, `prefix.*` or `*`.
    pub domains: Vec<String>,
    /// Routes, matched first to last.
    pub routes: Vec<Route>,
}

/// A route: a match and what to do with matching requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// The route's name (may be empty).
    pub name: String,
    /// What requests the route applies to.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Where matching requests go.
    pub action: RouteAction,
}

/// What requests a route applies to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteMatch {
    /// How the path (without query) is matched.
    pub path: PathMatch,
    /// Whether `prefix` and `path` compare case-sensitively (regexes are unaffected).
    pub case_sensitive: bool,
    /// Header conditions; all must hold.
    pub headers: Vec<HeaderMatcher>,
}

/// How a route matches the request path.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// The path starts with this string.
    Prefix(String),
    /// The path equals this string.
    Path(String),
    /// The whole path matches this regex.
    SafeRegex(Pattern),
}

/// A header condition of a route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderMatcher {
    /// The header name, lowercased (pseudo-headers such as `:method` and `:authority` allowed).
    pub name: String,
    /// The condition on the header's value.
    pub kind: HeaderMatchKind,
    /// Whether the result is inverted.
    pub invert_match: bool,
}

/// The condition a [`HeaderMatcher`] puts on a header value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderMatchKind {
    /// The value equals this string.
    Exact(String),
    /// The value starts with this string.
    Prefix(String),
    /// The value ends with this string.
    Suffix(String),
    /// The whole value matches this regex.
    SafeRegex(Pattern),
    /// `true`: the header is present; `false`: it is absent.
    Present(bool),
}

/// A regular expression compiled for full matching; it serializes as its source.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source` so that it must match the whole input.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{source})$"))?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    /// Whether the whole of `input` matches.
    pub fn is_full_match(&self, input: &str) -> bool {
        self.regex.is_match(input)
    }

    /// The regex as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

/// Where a route sends requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteAction {
    /// The cluster (or weighted clusters) to send to.
    pub target: ClusterTarget,
    /// How long to wait for the upstream response; `None` waits forever.
    #[serde(serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
}

/// One cluster or a weighted choice among several.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterTarget {
    /// Always this cluster.
    Cluster(String),
    /// One of these clusters, picked by weight per request (total weight > 0).
    WeightedClusters(Vec<WeightedCluster>),
}

/// A cluster and its weight in a weighted choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightedCluster {
    /// The cluster's name.
    pub name: String,
    /// Its weight.
    pub weight: u32,
}

/// An upstream cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    /// The cluster's name (`outbound|80||echo.default.svc.cluster.local`, `inbound|9080||`).
    pub name: String,
    /// Where the cluster's endpoints come from.
    pub discovery: Discovery,
    /// How long a TCP connect to an endpoint may take.
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// How an endpoint is picked per request.
    pub lb_policy: LbPolicy,
    /// The protocol spoken to endpoints.
    pub protocol: UpstreamProtocol,
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
}

/// Load-balancing policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    /// Each endpoint in turn.
    RoundRobin,
    /// The less loaded of two random endpoints (power of two choices).
    LeastRequest,
    /// A random endpoint.
    Random,
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

/// An endpoint of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The load-balancing weight (1 when unset); unused by the current policies.
    pub weight: u32,
}

/// The endpoints EDS delivered for one service name (Envoy's `ClusterLoadAssignment`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoints {
    /// The service name (`cluster_name` in the proto).
    pub cluster_name: String,
    /// The endpoints, flattened over localities.
    pub endpoints: Vec<Endpoint>,
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs_f64()))
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}
