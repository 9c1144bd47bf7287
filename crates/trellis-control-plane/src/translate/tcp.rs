//! Opaque TCP: `envoy.filters.network.tcp_proxy` filter chains.
//!
//! - Inbound, a port whose protocol is opaque (`TCP`, `MONGO`, `MYSQL`, `REDIS`, `TLS`, ...)
//!   gets a TCP proxy to `inbound|PORT||` instead of an HTTP connection manager, in the same
//!   chains as HTTP ports (the mutual TLS chain and/or the plaintext one).
//! - Outbound, explicit mode has no capture: an app reaches a TCP service through a listener on
//!   its sidecar's IP and the service port (Istio's answer for uncaptured workloads is a Sidecar
//!   egress listener with `port` and `bind`, whose default bind is "localhost" — here the
//!   workload's own IP). Every visible opaque service port gets such a listener automatically,
//!   unless the sidecar serves that port inbound (the inbound listener owns it). When several
//!   visible services share a port, explicit mode cannot tell them apart (no destination
//!   address): the first by host name gets the listener.
//! - VirtualService `tcp` routes pick the cluster (or weighted clusters) of that listener: the
//!   first route with a match that applies (`port`, `sourceLabels`, `sourceNamespace`,
//!   gateway `mesh`; a match with `destinationSubnets` or `sourceSubnet` never applies in
//!   explicit mode, where the destination is always the sidecar's own IP), else the service's
//!   default cluster.

use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
pub(super) use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::ClusterSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::WeightedCluster, tcp_proxy::weighted_cluster::ClusterWeight,
};
use trellis_api::networking::{L4MatchAttributes, RouteDestination};
use trellis_xds::{to_any, type_url};

use super::proto::socket_address;
use super::{InboundPort, inbound_cluster_name, outbound_cluster_name};
use crate::model::{MeshModel, ProxyView};
use crate::registry::{Service, ServicePort};

/// Ports an outbound TCP listener never takes (the proxy's own: admin, outbound, inbound, ...).
pub(super) const RESERVED: std::ops::RangeInclusive<u32> = 15000..=15090;

/// The TCP proxy filter of an inbound opaque port: to the app.
pub fn inbound_filter(port: u32) -> Filter {
    let cluster = inbound_cluster_name(port);
    tcp_filter(TcpProxy {
        stat_prefix: cluster.clone(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster)),
        ..Default::default()
    })
}

/// The outbound TCP listeners of a sidecar (see the module doc).
pub fn outbound_listeners(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    services: &[(&Service, Vec<&ServicePort>)],
    inbound: &[InboundPort],
) -> Vec<Listener> {
    let mut taken: Vec<u32> = inbound.iter().map(|p| p.port).collect();
    let mut sorted: Vec<&(&Service, Vec<&ServicePort>)> = services.iter().collect();
    sorted.sort_by(|a, b| a.0.host.cmp(&b.0.host));
    let mut listeners = Vec::new();
    for (service, ports) in sorted {
        for port in ports {
            if taken.contains(&port.number) || RESERVED.contains(&port.number) {
                continue;
            }
            taken.push(port.number);
            let filter = outbound_filter(model, proxy, service, port);
            // Every visible service on this port: TLS ones are told apart by SNI.
            let sharing: Vec<(&Service, &ServicePort)> = services
                .iter()
                .filter_map(|(s, ps)| {
                    ps.iter()
                        .find(|p| p.number == port.number)
                        .map(|p| (*s, *p))
                })
                .collect();
            let mut sharing = sharing;
            sharing.sort_by(|a, b| a.0.host.cmp(&b.0.host));
            let mut filter_chains = super::sni::chains(model, proxy, port.number, &sharing);
            let listener_filters = if filter_chains.is_empty() {
                Vec::new()
            } else {
                vec![tls_inspector()]
            };
            filter_chains.push(FilterChain {
                filters: vec![filter],
                ..Default::default()
            });
            listeners.push(Listener {
                name: format!("{}_{}", proxy.node.ip, port.number),
                address: Some(socket_address(proxy.node.ip, port.number)),
                listener_filters,
                filter_chains,
                ..Default::default()
            });
        }
    }
    listeners
}

/// The outbound TCP proxy filter for `service:port` (explicit mode's listener on the sidecar's
/// IP, captured mode's `0.0.0.0_PORT`).
pub(super) fn outbound_filter(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    service: &Service,
    port: &ServicePort,
) -> Filter {
    tcp_filter(TcpProxy {
        stat_prefix: outbound_cluster_name(port.number, None, &service.host),
        cluster_specifier: Some(target(model, proxy, service, port)),
        ..Default::default()
    })
}

/// A TCP proxy to one cluster (captured mode's passthrough and black hole chains).
pub(super) fn cluster_filter(stat_prefix: &str, cluster: &str) -> Filter {
    tcp_filter(TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    })
}

/// Where connections to `service:port` go: the first applicable `tcp` route of its
/// VirtualService, else the service's cluster.
fn target(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    service: &Service,
    port: &ServicePort,
) -> ClusterSpecifier {
    let default =
        || ClusterSpecifier::Cluster(outbound_cluster_name(port.number, None, &service.host));
    let Some(vs) = model.virtual_service_for_proxy(&service.host, proxy) else {
        return default();
    };
    let route =
        vs.spec.tcp.iter().find(|r| {
            r.match_.is_empty() || r.match_.iter().any(|m| applies(m, proxy, port.number))
        });
    match route {
        Some(r) if !r.route.is_empty() => destinations(&r.route, &vs.namespace, port),
        _ => default(),
    }
}

fn applies(m: &L4MatchAttributes, proxy: &ProxyView<'_>, port: u32) -> bool {
    m.port.is_none_or(|p| p == port)
        && m.destination_subnets.is_empty()
        && m.source_subnet.is_none()
        && proxy.has_labels(&m.source_labels)
        && m.source_namespace
            .as_deref()
            .is_none_or(|ns| ns == proxy.namespace())
        && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == "mesh"))
}

/// The TLS inspector listener filter (reads the SNI for chain selection).
fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: super::listeners::TLS_INSPECTOR.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
            super::listeners::TLS_INSPECTOR_TYPE,
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// The TCP proxy target of a route's destinations: one cluster, or weighted clusters.
pub(super) fn destinations(
    route: &[RouteDestination],
    namespace: &str,
    port: &ServicePort,
) -> ClusterSpecifier {
    let cluster = |d: &RouteDestination| {
        let host = trellis_api::resolve_host(&d.destination.host, namespace);
        let number = d
            .destination
            .port
            .as_ref()
            .and_then(|p| p.number)
            .unwrap_or(port.number);
        outbound_cluster_name(number, d.destination.subset.as_deref(), &host)
    };
    match route {
        [only] => ClusterSpecifier::Cluster(cluster(only)),
        many => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .filter(|d| d.weight.unwrap_or(0) > 0)
                .map(|d| ClusterWeight {
                    name: cluster(d),
                    weight: u32::try_from(d.weight.unwrap_or(0)).unwrap_or(0),
                    ..Default::default()
                })
                .collect(),
        }),
    }
}

pub(super) fn tcp_filter(t: TcpProxy) -> Filter {
    Filter {
        name: type_url::names::TCP_PROXY.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(
            type_url::TCP_PROXY,
            &t,
        ))),
    }
}
