//! Gateway listeners: one per server port on the router's IP, named as Istio's
//! (`0.0.0.0_PORT`). Plaintext HTTP servers share one chain (RDS `http.PORT`); each HTTPS
//! server gets a chain selected by SNI (`server_names` = its hosts) that terminates TLS and
//! routes with its own RDS; `PASSTHROUGH` servers get chains by the SNI hosts of the bound
//! VirtualServices' `tls` routes, each a TCP proxy to the destination, not decrypted.

use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds,
    http_connection_manager::{CodecType, RouteSpecifier},
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier, tcp_proxy::WeightedCluster,
    tcp_proxy::weighted_cluster::ClusterWeight,
};
use trellis_api::networking::RouteDestination;
use trellis_xds::{to_any, type_url};

use super::routes::{http_route_name, route_config};
use super::servers::{GatewayServer, Kind, intersect, names_gateway, namespace_admits};
use super::tls::downstream_socket;
use crate::model::{MeshModel, ProxyView};
use crate::translate::outbound_cluster_name;
use crate::translate::proto::{ads, socket_address};
use crate::translate::telemetry::HcmTelemetry;

const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
const TLS_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";

/// Istio's gateway listener name for a port.
pub fn listener_name(port: u32) -> String {
    format!("0.0.0.0_{port}")
}

/// The listener of one port and the route configurations its chains name (none when no
/// server of the port could be served).
pub fn port_listener(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    port: u32,
    servers: &[GatewayServer<'_>],
    telemetry: &HcmTelemetry,
) -> Option<(Listener, Vec<RouteConfiguration>)> {
    let mut chains = Vec::new();
    let mut route_configs = Vec::new();
    let tls = servers.first().is_some_and(|s| s.kind.is_tls());
    if !tls {
        let name = http_route_name(port);
        let all: Vec<&GatewayServer<'_>> = servers.iter().collect();
        route_configs.push(route_config(model, proxy, name.clone(), port, &all));
        chains.push(FilterChain {
            filters: vec![hcm(port, name, telemetry, &model.mesh)],
            ..Default::default()
        });
    } else {
        // SNI names already taken by an earlier server on the port (Istio: first wins).
        let mut taken: Vec<String> = Vec::new();
        for server in servers {
            match server.kind {
                Kind::Https(mode) => {
                    let socket =
                        match downstream_socket(model, proxy, mode, server.server.tls.as_ref()) {
                            Ok(s) => s,
                            Err(why) => {
                                tracing::warn!(gateway = %server.gateway_ref(), port,
                                    "gateway server not served: {why}");
                                continue;
                            }
                        };
                    let hosts: Vec<String> = server.hosts().into_iter().map(|(_, h)| h).collect();
                    let Some(server_names) = claim(&mut taken, &hosts) else {
                        continue;
                    };
                    let name = server.https_route_name();
                    route_configs.push(route_config(model, proxy, name.clone(), port, &[server]));
                    chains.push(FilterChain {
                        name: name.clone(),
                        filter_chain_match: match_names(server_names),
                        transport_socket: Some(socket),
                        filters: vec![hcm(port, name, telemetry, &model.mesh)],
                        ..Default::default()
                    });
                }
                Kind::Passthrough => {
                    for (sni, destinations) in passthrough_routes(model, proxy, server) {
                        let Some(server_names) = claim(&mut taken, &sni) else {
                            continue;
                        };
                        chains.push(FilterChain {
                            name: format!("passthrough.{port}.{}", sni.join(",")),
                            filter_chain_match: match_names(server_names),
                            filters: vec![tcp_proxy(port, &destinations)],
                            ..Default::default()
                        });
                    }
                }
                Kind::Http { .. } => {}
            }
        }
    }
    if chains.is_empty() {
        return None;
    }
    let listener_filters = if tls {
        vec![ListenerFilter {
            name: TLS_INSPECTOR.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
                TLS_INSPECTOR_TYPE,
                &TlsInspector::default(),
            ))),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    Some((
        Listener {
            name: listener_name(port),
            address: Some(socket_address(proxy.node.ip, port)),
            listener_filters,
            filter_chains: chains,
            ..Default::default()
        },
        route_configs,
    ))
}

/// The SNI names of a chain for `hosts`, minus those an earlier chain took; `Some(empty)` is
/// the catch-all (`*`) chain, taken at most once; `None` when nothing is left to match.
fn claim(taken: &mut Vec<String>, hosts: &[String]) -> Option<Vec<String>> {
    if hosts.iter().any(|h| h == "*") {
        if taken.iter().any(|t| t == "*") {
            return None;
        }
        taken.push("*".to_string());
        return Some(Vec::new());
    }
    let mut names: Vec<String> = hosts
        .iter()
        .filter(|h| !taken.contains(h))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return None;
    }
    taken.extend(names.iter().cloned());
    Some(names)
}

fn match_names(server_names: Vec<String>) -> Option<FilterChainMatch> {
    (!server_names.is_empty()).then(|| FilterChainMatch {
        server_names,
        ..Default::default()
    })
}

/// The gateway's HTTP connection manager for a chain: routes over RDS `route_name`, with the
/// mesh's path normalization.
fn hcm(
    port: u32,
    route_name: String,
    telemetry: &HcmTelemetry,
    mesh: &trellis_api::mesh_config::MeshConfig,
) -> Filter {
    let manager = HttpConnectionManager {
        stat_prefix: format!("outbound_0.0.0.0_{port}"),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_name,
        })),
        http_filters: telemetry.http_filters(crate::translate::routes::http_filters()),
        upgrade_configs: crate::translate::routes::upgrade_configs(),
        http_protocol_options: Some(crate::translate::header_case::http1_options()),
        access_log: telemetry.access_log.clone(),
        tracing: telemetry.tracing.clone(),
        ..Default::default()
    };
    let manager = crate::translate::authz::normalized(mesh, manager);
    Filter {
        name: type_url::names::HTTP_CONNECTION_MANAGER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(
            type_url::HTTP_CONNECTION_MANAGER,
            &manager,
        ))),
    }
}

/// For a `PASSTHROUGH` server: per `tls` route match of the bound VirtualServices (in order),
/// its SNI hosts within the server's hosts and its destinations.
fn passthrough_routes(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    server: &GatewayServer<'_>,
) -> Vec<(Vec<String>, Destinations)> {
    let gateway_ref = server.gateway_ref();
    let mut out = Vec::new();
    for vs in model.virtual_services.iter().filter(|vs| server.binds(vs)) {
        let server_hosts: Vec<String> = server
            .hosts()
            .into_iter()
            .filter(|(ns, _)| namespace_admits(ns, &vs.namespace))
            .map(|(_, h)| h)
            .collect();
        for route in &vs.spec.tls {
            let destinations = destinations(&route.route, &vs.namespace, model);
            if destinations.is_empty() {
                continue;
            }
            for m in &route.match_ {
                let applies = m.port.is_none_or(|p| p == server.port)
                    && proxy.has_labels(&m.source_labels)
                    && (m.gateways.is_empty()
                        || names_gateway(&m.gateways, &vs.namespace, &gateway_ref));
                if !applies {
                    continue;
                }
                let sni: Vec<String> = m
                    .sni_hosts
                    .iter()
                    .flat_map(|h| server_hosts.iter().filter_map(|s| intersect(s, h)))
                    .collect();
                if !sni.is_empty() {
                    out.push((sni, destinations.clone()));
                }
            }
        }
    }
    out
}

/// `(cluster, weight)` of each destination of a route.
type Destinations = Vec<(String, u32)>;

/// `(cluster, weight)` of each destination with a weight (one destination: weight 100).
fn destinations(route: &[RouteDestination], namespace: &str, model: &MeshModel) -> Destinations {
    let single = route.len() == 1;
    route
        .iter()
        .filter_map(|d| {
            let weight = match d.weight {
                Some(w) => u32::try_from(w).unwrap_or(0),
                None if single => 100,
                None => 0,
            };
            let dest = &d.destination;
            let host = trellis_api::resolve_host(&dest.host, namespace);
            let port = dest.port.as_ref().and_then(|p| p.number).or_else(|| {
                match model.registry.service(&host)?.ports.as_slice() {
                    [only] => Some(only.number),
                    _ => None,
                }
            })?;
            (weight > 0).then(|| {
                (
                    outbound_cluster_name(port, dest.subset.as_deref(), &host),
                    weight,
                )
            })
        })
        .collect()
}

fn tcp_proxy(port: u32, destinations: &[(String, u32)]) -> Filter {
    let cluster_specifier = match destinations {
        [(cluster, _)] => ClusterSpecifier::Cluster(cluster.clone()),
        _ => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: destinations
                .iter()
                .map(|(name, weight)| ClusterWeight {
                    name: name.clone(),
                    weight: *weight,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    let t = TcpProxy {
        stat_prefix: format!("outbound_0.0.0.0_{port}"),
        cluster_specifier: Some(cluster_specifier),
        ..Default::default()
    };
    Filter {
        name: type_url::names::TCP_PROXY.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(
            type_url::TCP_PROXY,
            &t,
        ))),
    }
}
