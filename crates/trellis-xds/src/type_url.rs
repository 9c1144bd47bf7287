//! Envoy v3 type URLs for the resources and extensions Trellis sends.

/// Listener discovery (LDS).
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Route discovery (RDS).
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Cluster discovery (CDS).
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Endpoint discovery (EDS).
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Name table discovery (NDS, Istio's DNS proxying): asked for by the DNS proxy on a stream
/// of its own, never by Envoy. See [`crate::nds`].
pub const NAME_TABLE: &str = "type.googleapis.com/istio.networking.nds.v1.NameTable";
/// Secret discovery (SDS).
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The HTTP connection manager network filter.
pub const HTTP_CONNECTION_MANAGER: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/// The TCP proxy network filter's config.
pub const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
/// The router HTTP filter.
pub const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
/// Upstream HTTP protocol options (HTTP/1.1 vs HTTP/2 to the upstream).
pub const HTTP_PROTOCOL_OPTIONS: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Extension names, as Envoy knows them.
pub mod names {
    /// Network filter name of the HTTP connection manager.
    pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
    /// The TCP proxy network filter.
    pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
    /// HTTP filter name of the router.
    pub const ROUTER: &str = "envoy.filters.http.router";
    /// Key of the upstream HTTP protocol options in `typed_extension_protocol_options`.
    pub const HTTP_PROTOCOL_OPTIONS: &str =
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
}

/// The order in which an ADS server pushes types, so that a proxy never sees a reference to a
/// resource it has not received yet (Envoy's documented "make before break" order).
pub const PUSH_ORDER: [&str; 4] = [CLUSTER, ENDPOINT, LISTENER, ROUTE];

/// A short name for logs and tables ("CDS", "EDS", ...).
pub fn short_name(type_url: &str) -> &'static str {
    match type_url {
        LISTENER => "LDS",
        ROUTE => "RDS",
        CLUSTER => "CDS",
        ENDPOINT => "EDS",
        SECRET => "SDS",
        _ => "unknown",
    }
}
