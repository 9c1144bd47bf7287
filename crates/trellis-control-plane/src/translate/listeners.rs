//! Listeners for explicit mode: `virtualOutbound` on `IP:15001` (the app's `HTTP_PROXY`) and
//! one `inbound|PORT` per served port on `IP:PORT`. An inbound port of a proxy with a workload
//! certificate gets Istio's TLS inspector and one filter chain per accepted transport (mutual
//! TLS and/or plaintext, by its PeerAuthentication mode).

use envoy_types::pb::envoy::config::core::v3::TransportSocket;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match::PathSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds,
    http_connection_manager::{
        CodecType, ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
    },
};
use trellis_api::security::MutualTlsMode;
use trellis_xds::{to_any, type_url};

use super::proto::{ads, duration, socket_address};
use super::telemetry::{self, HcmTelemetry, Side};
use super::{InboundPort, OUTBOUND_ROUTE_NAME, inbound_cluster_name, mtls};
use crate::model::{MeshModel, ProxyView};

/// Istio's port for captured (here: explicitly proxied) outbound traffic.
pub const OUTBOUND_PORT: u32 = 15001;
/// The TLS inspector listener filter (detects TLS and reads SNI/ALPN).
pub(super) const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub(super) const TLS_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";

/// All listeners of a sidecar.
pub fn all(model: &MeshModel, proxy: &ProxyView<'_>, inbound: &[InboundPort]) -> Vec<Listener> {
    let node = proxy.node;
    let telemetries = telemetry::applicable(model, proxy);
    let client = HcmTelemetry::of(model, proxy, &telemetries, Side::Client);
    let server = HcmTelemetry::of(model, proxy, &telemetries, Side::Server);
    let outbound = Listener {
        name: "virtualOutbound".to_string(),
        address: Some(socket_address(node.ip, OUTBOUND_PORT)),
        filter_chains: vec![FilterChain {
            filters: vec![hcm_filter(super::authz::normalized(
                &model.mesh,
                HttpConnectionManager {
                    stat_prefix: format!("outbound_0.0.0.0_{OUTBOUND_PORT}"),
                    codec_type: CodecType::Auto as i32,
                    route_specifier: Some(RouteSpecifier::Rds(Rds {
                        config_source: Some(ads()),
                        route_config_name: OUTBOUND_ROUTE_NAME.to_string(),
                    })),
                    http_filters: client.http_filters(super::routes::http_filters()),
                    upgrade_configs: super::routes::upgrade_configs(),
                    http_protocol_options: Some(super::header_case::http1_options()),
                    access_log: client.access_log,
                    tracing: client.tracing,
                    ..Default::default()
                },
            ))],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut listeners = vec![outbound];
    listeners.extend(
        inbound
            .iter()
            .map(|p| inbound_listener(model, proxy, p.port, p.tcp, &server)),
    );
    listeners
}

/// `inbound|PORT`: everything goes to the app on the same port. Without a workload
/// certificate, or under `DISABLE`, one plaintext chain; otherwise the TLS inspector and a
/// mutual TLS chain, plus a plaintext one under `PERMISSIVE`. Captured mode reuses its chains
/// in `virtualInbound` (see [`super::capture`]).
pub(super) fn inbound_listener(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    port: u32,
    tcp: bool,
    telemetry: &HcmTelemetry,
) -> Listener {
    let mode = if proxy.node.sds {
        mtls::inbound_mode(model, proxy.namespace(), &proxy.labels, port)
    } else {
        MutualTlsMode::Disable
    };
    // Opaque TCP ports: the same chains (mutual TLS and/or plaintext), a TCP proxy. TCP ports
    // are authorized by network RBAC filters before the proxy. Built once, shared by the chains.
    let filters = if tcp {
        let mut filters = super::authz::network_filters(model, proxy);
        filters.push(super::tcp::inbound_filter(port));
        filters
    } else {
        vec![hcm_filter(inbound_hcm(model, proxy, port, telemetry))]
    };
    let chain = |transport: Option<(&str, TransportSocket)>| {
        let (name, transport_protocol, transport_socket) = match transport {
            Some((protocol, socket)) => ("tls", protocol.to_string(), Some(socket)),
            None if mode == MutualTlsMode::Disable => ("plaintext", String::new(), None),
            None => ("plaintext", "raw_buffer".to_string(), None),
        };
        FilterChain {
            name: name.to_string(),
            filter_chain_match: (!transport_protocol.is_empty()).then(|| FilterChainMatch {
                transport_protocol,
                ..Default::default()
            }),
            transport_socket,
            filters: filters.clone(),
            ..Default::default()
        }
    };
    let mut filter_chains = Vec::new();
    if mode != MutualTlsMode::Disable {
        filter_chains.push(chain(Some(("tls", mtls::inbound_tls_socket()))));
    }
    if mode != MutualTlsMode::Strict {
        filter_chains.push(chain(None));
    }
    let listener_filters = if mode == MutualTlsMode::Disable {
        Vec::new()
    } else {
        vec![ListenerFilter {
            name: TLS_INSPECTOR.to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
                TLS_INSPECTOR_TYPE,
                &TlsInspector::default(),
            ))),
            ..Default::default()
        }]
    };
    Listener {
        name: format!("inbound|{port}"),
        address: Some(socket_address(proxy.node.ip, port)),
        listener_filters,
        filter_chains,
        ..Default::default()
    }
}

/// The inbound HTTP connection manager: routes to the app, and sets `x-forwarded-client-cert`
/// from a verified peer certificate (removing any the client sent), as Istio's inbound does.
/// Authorization (RBAC) filters come before the others; the path is normalized first (see
/// [`super::authz::path_normalization`]) so policies see the path the app will see.
fn inbound_hcm(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    port: u32,
    telemetry: &HcmTelemetry,
) -> HttpConnectionManager {
    // JWT authentication first (RequestAuthentication), then authorization, as istiod orders them.
    let mut http_filters: Vec<_> = super::authn::jwt_filter(model, proxy).into_iter().collect();
    http_filters.extend(super::authz::http_filters(model, proxy));
    http_filters.extend(super::routes::http_filters());
    let http_filters = telemetry.http_filters(http_filters);
    let (normalize_path, merge_slashes, path_with_escaped_slashes_action) =
        super::authz::path_normalization(&model.mesh);
    HttpConnectionManager {
        stat_prefix: format!("inbound_0.0.0.0_{port}"),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::RouteConfig(inbound_routes(port))),
        http_filters,
        normalize_path,
        merge_slashes,
        path_with_escaped_slashes_action,
        forward_client_cert_details: ForwardClientCertDetails::SanitizeSet as i32,
        set_current_client_cert_details: Some(SetCurrentClientCertDetails {
            uri: true,
            ..Default::default()
        }),
        upgrade_configs: super::routes::upgrade_configs(),
        http_protocol_options: Some(super::header_case::http1_options()),
        access_log: telemetry.access_log.clone(),
        tracing: telemetry.tracing.clone(),
        ..Default::default()
    }
}

pub(super) fn hcm_filter(hcm: HttpConnectionManager) -> Filter {
    Filter {
        name: type_url::names::HTTP_CONNECTION_MANAGER.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(
            type_url::HTTP_CONNECTION_MANAGER,
            &hcm,
        ))),
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
