//! The proxy's own configuration types. Everything past `xds::convert` speaks these types; no
//! protobuf message travels further. They serialize to JSON for `/config_dump`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};

mod capture;
mod cluster;
mod ext_authz;
mod jwt;
mod rbac;
mod route;
mod tls;
pub use capture::ListenerCapture;
pub use cluster::*;
pub use ext_authz::*;
pub use jwt::*;
pub use rbac::*;
pub use route::*;
pub use tls::*;

/// A listener: an address the proxy accepts HTTP connections on, and its filter chains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    /// The listener's name (`virtualOutbound`, `inbound|9080`, ...).
    pub name: String,
    /// The address to bind.
    pub address: SocketAddr,
    /// `listener_filters` has `envoy.filters.listener.tls_inspector`: a TLS ClientHello is
    /// detected so chains can match on `transport_protocol`.
    pub tls_inspector: bool,
    /// `listener_filters` has `envoy.filters.listener.http_inspector`: an HTTP/1.x request
    /// line or the HTTP/2 preface is detected so chains can match on `application_protocols`.
    pub http_inspector: bool,
    /// The filter chains; a connection uses the first whose match it satisfies.
    pub filter_chains: Vec<FilterChain>,
    /// Transparent capture: original destination handling and whether the address is bound.
    pub capture: ListenerCapture,
}

impl Listener {
    /// A listener with one plaintext filter chain (no match, no TLS).
    pub fn plain(
        name: impl Into<String>,
        address: SocketAddr,
        stat_prefix: impl Into<String>,
        routes: RouteSource,
        http_filters: HttpFilters,
    ) -> Self {
        Listener {
            name: name.into(),
            address,
            tls_inspector: false,
            http_inspector: false,
            capture: ListenerCapture::default(),
            filter_chains: vec![FilterChain {
                name: String::new(),
                destination_port: None,
                transport_protocol: None,
                server_names: Vec::new(),
                application_protocols: Vec::new(),
                tls: None,
                hcm: HttpConnectionManager {
                    stat_prefix: stat_prefix.into(),
                    routes,
                    http_filters,
                    forward_client_cert: ForwardClientCert::Sanitize,
                    access_log: Arc::default(),
                    tracing: None,
                    path_normalization: PathNormalization::default(),
                    upgrade_types: Vec::new(),
                    preserve_header_case: false,
                },
                tcp_proxy: None,
                network_rbac: Vec::new(),
                network_ext_authz: None,
            }],
        }
    }

    /// The chain a connection of `protocol` without SNI uses (see [`Listener::chain_for_sni`]).
    pub fn chain_for(&self, protocol: TransportProtocol) -> Option<(usize, &FilterChain)> {
        self.chain_for_sni(protocol, None)
    }

    /// The chain a connection uses, in Envoy's order of criteria, the most specific match
    /// winning at each: `server_names` (the exact SNI, else the longest `*.suffix` covering it,
    /// else the chains without names), then `transport_protocol` (the one naming the
    /// connection's, else the chains without one).
    pub fn chain_for_sni(
        &self,
        protocol: TransportProtocol,
        sni: Option<&str>,
    ) -> Option<(usize, &FilterChain)> {
        self.chain_for_destination(None, protocol, sni)
    }

    /// [`Listener::chain_for_sni`] for a connection to local (or original destination) port
    /// `port`: Envoy's first criterion is `destination_port`, the chains naming the port
    /// winning over those without one.
    pub fn chain_for_destination(
        &self,
        port: Option<u16>,
        protocol: TransportProtocol,
        sni: Option<&str>,
    ) -> Option<(usize, &FilterChain)> {
        self.chain_for_connection(port, protocol, sni, None)
    }

    /// [`Listener::chain_for_destination`] with the application protocol the HTTP inspector
    /// detected (`http/1.1`, `h2c`, ...): Envoy's last criterion, after the transport
    /// protocol, the chains naming it winning over those with no `application_protocols`.
    pub fn chain_for_connection(
        &self,
        port: Option<u16>,
        protocol: TransportProtocol,
        sni: Option<&str>,
        application: Option<&str>,
    ) -> Option<(usize, &FilterChain)> {
        let port = port.filter(|p| {
            self.filter_chains
                .iter()
                .any(|c| c.destination_port == Some(*p))
        });
        let chains = || {
            self.filter_chains
                .iter()
                .enumerate()
                .filter(move |(_, c)| c.destination_port == port)
        };
        let sni = sni.map(str::to_ascii_lowercase);
        let named = |pick: &dyn Fn(&str) -> bool| -> Vec<(usize, &FilterChain)> {
            chains()
                .filter(|(_, c)| c.server_names.iter().any(|n| pick(n)))
                .collect()
        };
        let mut candidates = Vec::new();
        if let Some(sni) = sni.as_deref() {
            candidates = named(&|n| n == sni);
            if candidates.is_empty() {
                // The longest wildcard suffix that covers the name.
                let longest = chains()
                    .flat_map(|(_, c)| c.server_names.iter())
                    .filter_map(|n| n.strip_prefix('*'))
                    .filter(|suffix| sni.len() > suffix.len() && sni.ends_with(suffix))
                    .map(str::len)
                    .max();
                if let Some(len) = longest {
                    candidates = named(&|n| {
                        n.strip_prefix('*')
                            .is_some_and(|s| s.len() == len && sni.ends_with(s))
                    });
                }
            }
        }
        if candidates.is_empty() {
            candidates = chains()
                .filter(|(_, c)| c.server_names.is_empty())
                .collect();
        }
        let mut by_transport: Vec<(usize, &FilterChain)> = candidates
            .iter()
            .copied()
            .filter(|(_, c)| c.transport_protocol == Some(protocol))
            .collect();
        if by_transport.is_empty() {
            by_transport = candidates
                .iter()
                .copied()
                .filter(|(_, c)| c.transport_protocol.is_none())
                .collect();
        }
        by_transport
            .iter()
            .find(|(_, c)| {
                application.is_some_and(|a| c.application_protocols.iter().any(|p| p == a))
            })
            .or_else(|| {
                by_transport
                    .iter()
                    .find(|(_, c)| c.application_protocols.is_empty())
            })
            .copied()
    }

    /// Whether some chain is selected by SNI (connections then need their ClientHello read
    /// before a chain is picked).
    pub fn matches_server_names(&self) -> bool {
        self.filter_chains
            .iter()
            .any(|c| !c.server_names.is_empty())
    }
}

/// A filter chain: which connections it takes, their TLS, and the HTTP connection manager.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterChain {
    /// The chain's name (may be empty).
    pub name: String,
    /// `filter_chain_match.destination_port`: the chain takes only connections to this (local
    /// or original destination) port; `None` matches any port no chain names.
    pub destination_port: Option<u16>,
    /// `filter_chain_match.transport_protocol`; `None` matches any connection.
    pub transport_protocol: Option<TransportProtocol>,
    /// `filter_chain_match.server_names`: the SNI names (exact or `*.suffix`, lower case) the
    /// chain takes; empty matches any (or no) SNI.
    pub server_names: Vec<String>,
    /// `filter_chain_match.application_protocols`: the chain takes only connections whose
    /// detected application protocol (`http/1.0`, `http/1.1`, `h2c`) is listed; empty matches
    /// any.
    pub application_protocols: Vec<String>,
    /// TLS termination (`transport_socket` `DownstreamTlsContext`).
    pub tls: Option<DownstreamTls>,
    /// The chain's HTTP connection manager (unused, and empty, when `tcp_proxy` is set).
    pub hcm: HttpConnectionManager,
    /// `envoy.filters.network.tcp_proxy` instead of the HTTP connection manager: the chain
    /// proxies bytes.
    pub tcp_proxy: Option<TcpProxy>,
    /// `envoy.filters.network.rbac` before the TCP proxy: where TCP connections are
    /// authorized (a denied connection is closed).
    pub network_rbac: Vec<Arc<Rbac>>,
    /// `envoy.filters.network.ext_authz` (with its shadow RBAC filters) before the network
    /// RBAC filters: external authorization of TCP connections.
    pub network_ext_authz: Option<Arc<NetworkExtAuthz>>,
}

/// The TCP proxy network filter: one upstream connection per downstream connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpProxy {
    /// The stat prefix.
    pub stat_prefix: String,
    /// The cluster, or weighted clusters picked per connection.
    pub target: ClusterTarget,
    /// No bytes either way for this long closes both sides (Envoy's default 1 h; `None`: never).
    #[serde(serialize_with = "ser_opt_duration")]
    pub idle_timeout: Option<Duration>,
}

impl HttpConnectionManager {
    /// The placeholder of a chain whose filter is a TCP proxy.
    pub fn none() -> Self {
        HttpConnectionManager {
            stat_prefix: String::new(),
            // Inline and empty: a TCP chain subscribes to no route table.
            routes: RouteSource::Inline(Arc::new(RouteTable {
                name: String::new(),
                virtual_hosts: Vec::new(),
            })),
            http_filters: HttpFilters::default(),
            forward_client_cert: ForwardClientCert::Sanitize,
            access_log: Arc::default(),
            tracing: None,
            path_normalization: PathNormalization::default(),
            upgrade_types: Vec::new(),
            preserve_header_case: false,
        }
    }
}

/// The HTTP connection manager of a filter chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpConnectionManager {
    /// The stat prefix.
    pub stat_prefix: String,
    /// Where the routes come from.
    pub routes: RouteSource,
    /// The optional HTTP filters before the router.
    pub http_filters: HttpFilters,
    /// What happens to `x-forwarded-client-cert`.
    pub forward_client_cert: ForwardClientCert,
    /// `access_log`: where and how each request is logged (empty: not logged).
    pub access_log: Arc<[crate::access_log::AccessLogConfig]>,
    /// `tracing`: spans for each request (`None`: not traced, the context passes through).
    pub tracing: Option<Arc<crate::trace::TracingConfig>>,
    /// How `:path` is normalized before the filters and routing.
    pub path_normalization: PathNormalization,
    /// `upgrade_configs`: the HTTP/1.1 upgrade types let through (`websocket`); any other
    /// upgrade request is answered `403`, as Envoy does.
    pub upgrade_types: Vec<String>,
    /// `http_protocol_options.header_key_format` is Envoy's `preserve_case` formatter: HTTP/1.1
    /// requests keep their header names' case on the way upstream (and responses on the way back).
    pub preserve_header_case: bool,
}

/// `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action`
/// (`KEEP_UNCHANGED` or `UNESCAPE_AND_FORWARD`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PathNormalization {
    /// RFC 3986 normalization: unreserved escapes decoded, dot segments removed.
    pub normalize_path: bool,
    /// Runs of `/` merged into one.
    pub merge_slashes: bool,
    /// `UNESCAPE_AND_FORWARD`: `%2F`/`%5C` decoded to `/` and `\` before the rest, and the
    /// decoded path forwarded.
    pub unescape_slashes: bool,
}

/// `forward_client_cert_details` (with `set_current_client_cert_details.uri`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ForwardClientCert {
    /// `SANITIZE` (Envoy's default): the header is removed.
    Sanitize,
    /// `SANITIZE_SET` with `uri: true`: removed, then set to `By=<own URI>;URI=<peer URI>` when
    /// the connection's peer presented a verified certificate.
    SanitizeSetUri,
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
    /// `include_request_attempt_count`: send `x-envoy-attempt-count` upstream.
    pub include_request_attempt_count: bool,
    /// `include_attempt_count_in_response`: return `x-envoy-attempt-count` downstream.
    pub include_attempt_count_in_response: bool,
}

/// A route: a match and what to do with matching requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// The route's name (may be empty).
    pub name: String,
    /// What requests the route applies to.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// What is done with matching requests.
    pub action: Action,
    /// Headers changed on the request before it is forwarded.
    pub request_headers: HeaderMutations,
    /// Headers changed on the response (upstream or redirect/direct) before it is returned.
    pub response_headers: HeaderMutations,
    /// `typed_per_filter_config["envoy.filters.http.fault"]`.
    pub fault: Option<FaultPolicy>,
    /// `typed_per_filter_config["envoy.filters.http.cors"]`.
    pub cors: Option<CorsPolicy>,
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
    /// Query-parameter conditions; all must hold.
    pub query_parameters: Vec<QueryParamMatcher>,
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
    /// Replaces the matched path prefix.
    pub prefix_rewrite: Option<String>,
    /// Rewrites the path by regex substitution.
    pub regex_rewrite: Option<RegexRewrite>,
    /// Replaces the authority.
    pub host_rewrite: Option<String>,
    /// Retries.
    pub retry_policy: Option<RetryPolicy>,
    /// Mirrors (shadows) of the request.
    pub mirrors: Vec<MirrorPolicy>,
    /// How requests are hashed for consistent-hash load balancing.
    pub hash_policy: Vec<HashPolicy>,
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
    /// Request headers changed when this cluster is picked (before the route's, as Envoy).
    pub request_headers: HeaderMutations,
    /// Response headers changed when this cluster is picked (before the route's, as Envoy).
    pub response_headers: HeaderMutations,
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
