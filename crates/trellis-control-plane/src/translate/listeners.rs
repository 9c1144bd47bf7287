//! Listeners for explicit mode: `virtualOutbound` on `IP:15001` (the app's `HTTP_PROXY`) and
//! one `inbound|PORT` per served port on `IP:PORT`.

use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match::PathSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager::CodecType,
    http_connection_manager::RouteSpecifier,
};
use trellis_xds::{NodeIdentity, to_any, type_url};

use super::proto::{ads, duration, socket_address};
use super::{InboundPort, OUTBOUND_ROUTE_NAME, inbound_cluster_name};

/// Istio's port for captured (here: explicitly proxied) outbound traffic.
pub const OUTBOUND_PORT: u32 = 15001;

/// All listeners of a sidecar.
pub fn all(node: &NodeIdentity, inbound: &[InboundPort]) -> Vec<Listener> {
    let outbound = http_listener(
        "virtualOutbound".to_string(),
        node,
        OUTBOUND_PORT,
        format!("outbound_0.0.0.0_{OUTBOUND_PORT}"),
        RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: OUTBOUND_ROUTE_NAME.to_string(),
        }),
    );
    let mut listeners = vec![outbound];
    listeners.extend(inbound.iter().map(|p| {
        http_listener(
            format!("inbound|{}", p.port),
            node,
            p.port,
            format!("inbound_0.0.0.0_{}", p.port),
            RouteSpecifier::RouteConfig(inbound_routes(p.port)),
        )
    }));
    listeners
}

fn http_listener(
    name: String,
    node: &NodeIdentity,
    port: u32,
    stat_prefix: String,
    routes: RouteSpecifier,
) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix,
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(routes),
        http_filters: super::routes::http_filters(),
        ..Default::default()
    };
    Listener {
        name,
        address: Some(socket_address(node.ip, port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: type_url::names::HTTP_CONNECTION_MANAGER.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(to_any(
                    type_url::HTTP_CONNECTION_MANAGER,
                    &hcm,
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Everything arriving on an inbound port goes to the local app on the same port.
fn inbound_routes(port: u32) -> RouteConfiguration {
    let name = format!("inbound|{port}");
    RouteConfiguration {
        name: name.clone(),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{port}"),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        inbound_cluster_name(port),
                    )),
                    timeout: Some(duration(std::time::Duration::ZERO)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}
