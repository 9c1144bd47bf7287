//! Captured mode (`INTERCEPTION_MODE: REDIRECT`): iptables sends the pod's outbound TCP to
//! 15001 and its inbound TCP to 15006, and the listeners take Istio's shape.
//!
//! - `virtualOutbound` on `0.0.0.0:15001` with `use_original_dst`: each connection is handed to
//!   the listener for its original destination (`0.0.0.0_PORT`, which never binds). Without
//!   one, its own chain passes it through to where it was going (`PassthroughCluster`, an
//!   ORIGINAL_DST cluster) under `ALLOW_ANY`, or closes it (`BlackHoleCluster`) under
//!   `REGISTRY_ONLY`. A connection made to 15001 itself goes to the black hole (no loops).
//! - `0.0.0.0_PORT` per visible service port, `bind_to_port: false`: an HTTP connection manager
//!   with the route configuration `PORT` (the services on that port, reachable by name with or
//!   without `:PORT`, then `allow_any` → `PassthroughCluster` or `block_all` → 502), or a TCP
//!   proxy for opaque ports (the first service by host name when several share a port; HTTP
//!   wins over TCP on a shared port).
//! - `virtualInbound` on `0.0.0.0:15006` with the `original_dst` listener filter: the served
//!   ports' chains of explicit mode (mutual TLS, authorization, authentication, telemetry),
//!   matched by `destination_port`; other ports pass through to the app
//!   (`InboundPassthroughCluster`), over mutual TLS and/or plaintext by the workload's
//!   PeerAuthentication mode. A connection made to 15006 itself goes to the black hole.
//! - Protocol sniffing, where no service declares a port's protocol (a name without a known
//!   prefix, no `protocol`): `0.0.0.0_PORT` gets the TLS and HTTP inspectors, an HTTP chain
//!   for plaintext `http/1.0`, `http/1.1` and `h2c` connections and TCP proxy chains for the
//!   rest; in `virtualInbound` the port's plaintext chain takes HTTP only and a TCP chain to
//!   the app the rest. Mutual TLS from another sidecar stays HTTP there (telling HTTP from TCP
//!   inside it needs the client to mark the ALPN, as Istio's `istio.alpn` filter does).
//! - Inbound clusters (`inbound|PORT||`, `InboundPassthroughCluster`) are ORIGINAL_DST (the
//!   app at the address the client dialled) bound to the source `127.0.0.6`, which the capture
//!   rules leave alone, so the proxy's connection to its own app is not captured again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy},
};
use envoy_types::pb::envoy::config::core::v3::{
    BindConfig, SocketAddress, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match::PathSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds,
    http_connection_manager::{CodecType, RouteSpecifier},
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use trellis_api::networking::OutboundTrafficMode;
use trellis_api::security::MutualTlsMode;
use trellis_xds::to_any;

use super::listeners::{
    OUTBOUND_PORT, TLS_INSPECTOR, TLS_INSPECTOR_TYPE, hcm_filter, inbound_listener,
};
use super::proto::{ads, duration, socket_address};
use super::telemetry::{self, HcmTelemetry, Side};
use super::{InboundPort, mtls, tcp};
use crate::model::{MeshModel, ProxyView};
use crate::registry::{Service, ServicePort};

/// Istio's port for captured inbound traffic.
pub const INBOUND_PORT: u32 = 15006;
/// Where outbound traffic to unknown destinations goes under `ALLOW_ANY` (Istio's name).
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// Where refused traffic goes: a cluster without endpoints (Istio's name).
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// Inbound traffic to ports no service declares goes to the app as it is.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The source address of the proxy's connections to its own app (Istio's): the capture rules
/// return it untouched, so the connection is not redirected to 15006 again.
pub const INBOUND_SOURCE_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
/// [`INBOUND_SOURCE_V4`] for IPv6 pods (Istio's `::6`).
pub const INBOUND_SOURCE_V6: Ipv6Addr = Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6);
/// The listener filter that restores a redirected connection's original destination.
const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";
const ORIGINAL_DST_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst";
/// The listener filter that detects HTTP/1.x and HTTP/2 prior knowledge (protocol sniffing).
const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
const HTTP_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";
/// The application protocols the HTTP inspector reports for HTTP: a sniffed port's HTTP chain.
const SNIFFED_HTTP: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];

/// What a captured sidecar gets instead of explicit mode's listeners, routes and inbound
/// clusters.
#[derive(Debug, Default)]
pub struct Captured {
    /// `virtualOutbound`, `0.0.0.0_PORT` per service port, `virtualInbound`.
    pub listeners: Vec<Listener>,
    /// Passthrough, black hole and inbound clusters.
    pub clusters: Vec<Cluster>,
    /// One route configuration per outbound HTTP port, named by the port.
    pub routes: Vec<RouteConfiguration>,
}

/// Everything captured-mode-specific for `proxy` (see the module doc). `http` and `tcp` are the
/// visible services with their HTTP and opaque ports, `inbound` the ports the workload serves.
pub fn generate(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    http: &[(&Service, Vec<&ServicePort>)],
    tcp: &[(&Service, Vec<&ServicePort>)],
    inbound: &[InboundPort],
) -> Captured {
    let mode = super::scope::outbound_mode(model, proxy);
    let any = wildcard(proxy.node.ip);
    let telemetries = telemetry::applicable(model, proxy);
    let client = HcmTelemetry::of(model, proxy, &telemetries, Side::Client);
    let server = HcmTelemetry::of(model, proxy, &telemetries, Side::Server);

    let mut out = Captured::default();
    out.listeners.push(virtual_outbound(any, mode));
    let mut http_ports: Vec<u32> = http
        .iter()
        .flat_map(|(_, ports)| ports.iter().map(|p| p.number))
        .filter(|p| !tcp::RESERVED.contains(p))
        .collect();
    http_ports.sort_unstable();
    http_ports.dedup();
    for &port in &http_ports {
        let listener = outbound_http_listener(any, port, &client, &model.mesh);
        let listener = match sniffed_service(http, port) {
            Some(service) => sniffing_outbound(model, proxy, listener, service, port),
            None => listener,
        };
        out.listeners.push(listener);
        out.routes
            .push(outbound_routes(model, proxy, http, port, mode));
    }
    out.listeners
        .extend(outbound_tcp_listeners(model, proxy, any, tcp, &http_ports));
    out.listeners
        .push(virtual_inbound(model, proxy, any, inbound, &server));
    out.clusters = clusters(proxy, inbound);
    out
}

/// `0.0.0.0`, or `::` for an IPv6 workload.
fn wildcard(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

fn virtual_outbound(any: IpAddr, mode: OutboundTrafficMode) -> Listener {
    let catch_all = match mode {
        OutboundTrafficMode::RegistryOnly => BLACKHOLE_CLUSTER,
        _ => PASSTHROUGH_CLUSTER,
    };
    Listener {
        name: "virtualOutbound".to_string(),
        address: Some(socket_address(any, OUTBOUND_PORT)),
        use_original_dst: Some(BoolValue { value: true }),
        filter_chains: vec![
            blackhole_chain("virtualOutbound-blackhole", OUTBOUND_PORT),
            FilterChain {
                name: "virtualOutbound-catchall-tcp".to_string(),
                filters: vec![tcp::cluster_filter(catch_all, catch_all)],
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// Connections made to the capture port itself (not redirected) would loop: closed.
fn blackhole_chain(name: &str, port: u32) -> FilterChain {
    FilterChain {
        name: name.to_string(),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value { value: port }),
            ..Default::default()
        }),
        filters: vec![tcp::cluster_filter(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER)],
        ..Default::default()
    }
}

/// `0.0.0.0_PORT`: what `virtualOutbound` hands HTTP connections for `PORT` to.
fn outbound_http_listener(
    any: IpAddr,
    port: u32,
    telemetry: &HcmTelemetry,
    mesh: &trellis_api::mesh_config::MeshConfig,
) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: format!("outbound_0.0.0.0_{port}"),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: port.to_string(),
        })),
        http_filters: telemetry.http_filters(super::routes::http_filters()),
        upgrade_configs: super::routes::upgrade_configs(),
        http_protocol_options: Some(super::header_case::http1_options()),
        access_log: telemetry.access_log.clone(),
        tracing: telemetry.tracing.clone(),
        ..Default::default()
    };
    let hcm = super::authz::normalized(mesh, hcm);
    unbound_listener(any, port, vec![hcm_filter(hcm)])
}

/// The service whose TCP proxy a sniffed port's non-HTTP connections take (the first by host
/// name), when every service on `port` leaves the protocol to detection.
fn sniffed_service<'a>(
    http: &[(&'a Service, Vec<&ServicePort>)],
    port: u32,
) -> Option<&'a Service> {
    let mut on_port: Vec<&(&Service, Vec<&ServicePort>)> = http
        .iter()
        .filter(|(_, ports)| ports.iter().any(|p| p.number == port))
        .collect();
    let all_unknown = on_port.iter().all(|(_, ports)| {
        ports
            .iter()
            .filter(|p| p.number == port)
            .all(|p| p.protocol == crate::registry::Protocol::Unknown)
    });
    on_port.sort_by(|a, b| a.0.host.cmp(&b.0.host));
    on_port.first().filter(|_| all_unknown).map(|(s, _)| *s)
}

/// The TLS and HTTP inspectors (the HTTP one alone with `tls: false`).
fn inspectors(tls: bool) -> Vec<ListenerFilter> {
    let mut filters = Vec::new();
    if tls {
        filters.push(ListenerFilter {
            name: TLS_INSPECTOR.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
                TLS_INSPECTOR_TYPE,
                &TlsInspector::default(),
            ))),
            ..Default::default()
        });
    }
    filters.push(ListenerFilter {
        name: HTTP_INSPECTOR.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
            HTTP_INSPECTOR_TYPE,
            &HttpInspector::default(),
        ))),
        ..Default::default()
    });
    filters
}

/// A sniffed `0.0.0.0_PORT`: plaintext HTTP (as the inspectors report it) to the HTTP
/// connection manager, other plaintext and TLS to `service`'s TCP proxy.
fn sniffing_outbound(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    mut listener: Listener,
    service: &Service,
    port: u32,
) -> Listener {
    let Some(port_spec) = service.ports.iter().find(|p| p.number == port) else {
        return listener;
    };
    let tcp_filter = tcp::outbound_filter(model, proxy, service, port_spec);
    let raw = |application_protocols: Vec<String>| {
        Some(FilterChainMatch {
            transport_protocol: "raw_buffer".to_string(),
            application_protocols,
            ..Default::default()
        })
    };
    let mut chains = std::mem::take(&mut listener.filter_chains);
    for chain in &mut chains {
        chain.name = format!("{}_{port}-http", wildcard_name(&listener));
        chain.filter_chain_match = raw(SNIFFED_HTTP.iter().map(|p| p.to_string()).collect());
    }
    chains.push(FilterChain {
        name: format!("{}_{port}-tcp", wildcard_name(&listener)),
        filter_chain_match: raw(Vec::new()),
        filters: vec![tcp_filter.clone()],
        ..Default::default()
    });
    chains.push(FilterChain {
        name: format!("{}_{port}-tls", wildcard_name(&listener)),
        filters: vec![tcp_filter],
        ..Default::default()
    });
    listener.filter_chains = chains;
    listener.listener_filters = inspectors(true);
    listener
}

/// `0.0.0.0` of `0.0.0.0_PORT`.
fn wildcard_name(listener: &Listener) -> &str {
    listener
        .name
        .rsplit_once('_')
        .map_or(listener.name.as_str(), |(ip, _)| ip)
}

/// A listener that only receives connections handed over by `virtualOutbound`.
fn unbound_listener(any: IpAddr, port: u32, filters: Vec<Filter>) -> Listener {
    Listener {
        name: format!("{any}_{port}"),
        address: Some(socket_address(any, port)),
        bind_to_port: Some(BoolValue { value: false }),
        filter_chains: vec![FilterChain {
            filters,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The route configuration `PORT`: explicit mode's virtual hosts of the services on `port`,
/// each also reachable without `:PORT` (the port is known here), then the catch-all.
fn outbound_routes(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    http: &[(&Service, Vec<&ServicePort>)],
    port: u32,
    mode: OutboundTrafficMode,
) -> RouteConfiguration {
    let on_port: Vec<(&Service, Vec<&ServicePort>)> = http
        .iter()
        .filter_map(|(service, ports)| {
            let ports: Vec<&ServicePort> =
                ports.iter().copied().filter(|p| p.number == port).collect();
            (!ports.is_empty()).then_some((*service, ports))
        })
        .collect();
    let mut config = super::routes::outbound(model, proxy, &on_port, mode);
    config.name = port.to_string();
    let mut seen = std::collections::HashSet::new();
    for vhost in &mut config.virtual_hosts {
        let mut domains = Vec::new();
        for domain in std::mem::take(&mut vhost.domains) {
            let bare = domain.strip_suffix(&format!(":{port}")).map(str::to_string);
            for d in std::iter::once(domain).chain(bare) {
                if seen.insert(d.clone()) {
                    domains.push(d);
                }
            }
        }
        vhost.domains = domains;
    }
    if mode != OutboundTrafficMode::RegistryOnly {
        config.virtual_hosts.push(VirtualHost {
            name: "allow_any".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        PASSTHROUGH_CLUSTER.to_string(),
                    )),
                    timeout: Some(duration(std::time::Duration::ZERO)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    config
}

/// `0.0.0.0_PORT` TCP proxies for opaque service ports no HTTP service uses.
fn outbound_tcp_listeners(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    any: IpAddr,
    tcp: &[(&Service, Vec<&ServicePort>)],
    http_ports: &[u32],
) -> Vec<Listener> {
    let mut sorted: Vec<&(&Service, Vec<&ServicePort>)> = tcp.iter().collect();
    sorted.sort_by(|a, b| a.0.host.cmp(&b.0.host));
    let mut taken: Vec<u32> = http_ports.to_vec();
    let mut listeners = Vec::new();
    for (service, ports) in sorted {
        for port in ports {
            if taken.contains(&port.number) || tcp::RESERVED.contains(&port.number) {
                continue;
            }
            taken.push(port.number);
            let filter = tcp::outbound_filter(model, proxy, service, port);
            listeners.push(unbound_listener(any, port.number, vec![filter]));
        }
    }
    listeners
}

fn virtual_inbound(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    any: IpAddr,
    inbound: &[InboundPort],
    telemetry: &HcmTelemetry,
) -> Listener {
    let mut filter_chains = vec![blackhole_chain("virtualInbound-blackhole", INBOUND_PORT)];
    for p in inbound {
        let explicit = inbound_listener(model, proxy, p.port, p.tcp, telemetry);
        // Sniffed: the plaintext chain takes HTTP only, a TCP chain to the app the rest.
        let opaque = if p.sniff {
            inbound_listener(model, proxy, p.port, true, telemetry)
                .filter_chains
                .into_iter()
                .filter(|c| c.transport_socket.is_none())
                .map(|mut c| {
                    c.name = format!("{}-tcp", c.name);
                    c
                })
                .collect()
        } else {
            Vec::new()
        };
        for mut chain in explicit.filter_chains.into_iter().chain(opaque) {
            let sniffed_http =
                p.sniff && chain.transport_socket.is_none() && !chain.name.ends_with("-tcp");
            chain.name = format!("{}_{}_{}", any, p.port, chain.name);
            let m = chain
                .filter_chain_match
                .get_or_insert_with(Default::default);
            m.destination_port = Some(UInt32Value { value: p.port });
            if sniffed_http {
                m.application_protocols = SNIFFED_HTTP.iter().map(|p| p.to_string()).collect();
            }
            filter_chains.push(chain);
        }
    }
    filter_chains.extend(passthrough_chains(model, proxy));
    let mut listener_filters = vec![ListenerFilter {
        name: ORIGINAL_DST.to_string(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
            ORIGINAL_DST_TYPE,
            &OriginalDst::default(),
        ))),
        ..Default::default()
    }];
    let inspects_tls = filter_chains.iter().any(|c| {
        c.filter_chain_match
            .as_ref()
            .is_some_and(|m| !m.transport_protocol.is_empty())
    });
    let sniffs = filter_chains.iter().any(|c| {
        c.filter_chain_match
            .as_ref()
            .is_some_and(|m| !m.application_protocols.is_empty())
    });
    if sniffs {
        listener_filters.extend(inspectors(inspects_tls));
    } else if inspects_tls {
        listener_filters.push(ListenerFilter {
            name: TLS_INSPECTOR.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
                TLS_INSPECTOR_TYPE,
                &TlsInspector::default(),
            ))),
            ..Default::default()
        });
    }
    Listener {
        name: "virtualInbound".to_string(),
        address: Some(socket_address(any, INBOUND_PORT)),
        listener_filters,
        filter_chains,
        ..Default::default()
    }
}

/// Ports no service declares: to the app as they are, over mutual TLS and/or plaintext by the
/// workload-wide PeerAuthentication mode (Istio's `virtualInbound-catchall-*`).
fn passthrough_chains(model: &MeshModel, proxy: &ProxyView<'_>) -> Vec<FilterChain> {
    let mode = if proxy.node.sds {
        mtls::inbound_mode(model, proxy.namespace(), &proxy.labels, 0)
    } else {
        MutualTlsMode::Disable
    };
    let mut filters = super::authz::network_filters(model, proxy);
    filters.push(tcp::cluster_filter(
        INBOUND_PASSTHROUGH_CLUSTER,
        INBOUND_PASSTHROUGH_CLUSTER,
    ));
    let mut chains = Vec::new();
    if mode != MutualTlsMode::Disable {
        chains.push(FilterChain {
            name: "virtualInbound-catchall-tls".to_string(),
            filter_chain_match: Some(FilterChainMatch {
                transport_protocol: "tls".to_string(),
                ..Default::default()
            }),
            transport_socket: Some(mtls::inbound_tls_socket()),
            filters: filters.clone(),
            ..Default::default()
        });
    }
    if mode != MutualTlsMode::Strict {
        chains.push(FilterChain {
            name: "virtualInbound-catchall-tcp".to_string(),
            filter_chain_match: (mode != MutualTlsMode::Disable).then(|| FilterChainMatch {
                transport_protocol: "raw_buffer".to_string(),
                ..Default::default()
            }),
            filters,
            ..Default::default()
        });
    }
    chains
}

/// Passthrough, black hole, and the inbound clusters (ORIGINAL_DST from `127.0.0.6`).
fn clusters(proxy: &ProxyView<'_>, inbound: &[InboundPort]) -> Vec<Cluster> {
    let source = match proxy.node.ip {
        IpAddr::V4(_) => IpAddr::V4(INBOUND_SOURCE_V4),
        IpAddr::V6(_) => IpAddr::V6(INBOUND_SOURCE_V6),
    };
    let bind = BindConfig {
        source_address: Some(SocketAddress {
            address: source.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(0)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let original_dst = |mut c: Cluster| {
        c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        ));
        c.lb_policy = LbPolicy::ClusterProvided as i32;
        c.load_assignment = None;
        c
    };
    let named = |name: &str| Cluster {
        name: name.to_string(),
        connect_timeout: Some(duration(std::time::Duration::from_secs(10))),
        ..Default::default()
    };
    let mut out = vec![
        original_dst(named(PASSTHROUGH_CLUSTER)),
        Cluster {
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
            ..named(BLACKHOLE_CLUSTER)
        },
        Cluster {
            upstream_bind_config: Some(bind.clone()),
            ..original_dst(named(INBOUND_PASSTHROUGH_CLUSTER))
        },
    ];
    for c in super::clusters::inbound(proxy.node, inbound) {
        out.push(Cluster {
            upstream_bind_config: Some(bind.clone()),
            ..original_dst(c)
        });
    }
    out
}

#[cfg(test)]
mod tests;
