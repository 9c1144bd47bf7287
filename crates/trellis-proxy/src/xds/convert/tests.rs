//! Conversion tests: accepted shapes, and the exact error for each rejected field.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, Cluster as PCluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    self as core, AggregatedConfigSource, ConfigSource, Http2ProtocolOptions, SocketAddress,
    address, config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener as PListener, ListenerFilter, filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    self as route, HeaderMatcher, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster, header_matcher, route_action, route_match, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{BoolValue, Duration as PDuration, UInt32Value};
use trellis_xds::{to_any, type_url};

use crate::config::{
    self, ClusterTarget, Discovery, HeaderMatchKind, LbPolicy, PathMatch, RouteSource,
    UpstreamProtocol,
};

const EDS_NAME: &str = "outbound|80||echo.default.svc.cluster.local";

fn addr(ip: &str, port: u32) -> core::Address {
    core::Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn eds_cluster() -> PCluster {
    PCluster {
        name: EDS_NAME.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: EDS_NAME.into(),
        }),
        connect_timeout: Some(PDuration {
            seconds: 2,
            nanos: 0,
        }),
        lb_policy: cluster::LbPolicy::LeastRequest as i32,
        ..Default::default()
    }
}

fn assignment(name: &str, eps: &[(&str, u32)]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: eps
                .iter()
                .map(|(ip, port)| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(
                        envoy_types::pb::envoy::config::endpoint::v3::Endpoint {
                            address: Some(addr(ip, *port)),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn h2_options(h2: Http2ProtocolOptions) -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(h2)),
            },
        )),
        ..Default::default()
    };
    [(
        type_url::names::HTTP_PROTOCOL_OPTIONS.to_string(),
        to_any(type_url::HTTP_PROTOCOL_OPTIONS, &options),
    )]
    .into()
}

fn static_cluster() -> PCluster {
    PCluster {
        name: "inbound|9080||".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(assignment("inbound|9080||", &[("127.0.10.102", 9080)])),
        typed_extension_protocol_options: h2_options(Http2ProtocolOptions::default()),
        ..Default::default()
    }
}

fn cluster_err(c: &PCluster) -> String {
    match config::Cluster::try_from(c) {
        Ok(c) => panic!("accepted {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn eds_and_static_clusters_convert() {
    let c = config::Cluster::try_from(&eds_cluster()).expect("eds cluster");
    assert_eq!(
        c.discovery,
        Discovery::Eds {
            service_name: EDS_NAME.into()
        }
    );
    assert_eq!(c.lb_policy, LbPolicy::LeastRequest);
    assert_eq!(c.connect_timeout, std::time::Duration::from_secs(2));
    assert_eq!(c.protocol, UpstreamProtocol::Http1);

    let c = config::Cluster::try_from(&static_cluster()).expect("static cluster");
    assert_eq!(c.protocol, UpstreamProtocol::Http2);
    let Discovery::Static(eps) = &c.discovery else {
        panic!("{c:?}")
    };
    assert_eq!(eps[0].address, "127.0.10.102:9080".parse().expect("addr"));
}

#[test]
fn unsupported_cluster_fields_are_named() {
    let mut c = eds_cluster();
    c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
        cluster::DiscoveryType::OriginalDst as i32,
    ));
    assert_eq!(
        cluster_err(&c),
        "Cluster outbound|80||echo.default.svc.cluster.local: eds_cluster_config: is only allowed with type: EDS"
    );
    c.eds_cluster_config = None;
    assert_eq!(
        cluster_err(&c),
        format!(
            "Cluster {EDS_NAME}: lb_policy: CLUSTER_PROVIDED goes with type: ORIGINAL_DST, and ORIGINAL_DST needs CLUSTER_PROVIDED"
        )
    );
    // PASSTHROUGH: ORIGINAL_DST with CLUSTER_PROVIDED (and optionally the header).
    c.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
    let ok = config::Cluster::try_from(&c).expect("original dst");
    assert_eq!(
        ok.discovery,
        Discovery::OriginalDst {
            use_http_header: false
        }
    );
    c.lb_config = Some(cluster::LbConfig::OriginalDstLbConfig(
        cluster::OriginalDstLbConfig {
            use_http_header: true,
            ..Default::default()
        },
    ));
    let ok = config::Cluster::try_from(&c).expect("original dst");
    assert_eq!(
        ok.discovery,
        Discovery::OriginalDst {
            use_http_header: true
        }
    );
    assert_eq!(ok.lb_policy, LbPolicy::ClusterProvided);
    c.lb_config = Some(cluster::LbConfig::OriginalDstLbConfig(
        cluster::OriginalDstLbConfig {
            http_header_name: "x-dst".into(),
            ..Default::default()
        },
    ));
    assert_eq!(
        cluster_err(&c),
        format!(
            "Cluster {EDS_NAME}: original_dst_lb_config.http_header_name: field is not supported"
        )
    );

    let mut c = eds_cluster();
    c.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
    assert_eq!(
        cluster_err(&c),
        format!(
            "Cluster {EDS_NAME}: lb_policy: CLUSTER_PROVIDED goes with type: ORIGINAL_DST, and ORIGINAL_DST needs CLUSTER_PROVIDED"
        )
    );

    let mut c = eds_cluster();
    c.circuit_breakers = Some(CircuitBreakers {
        per_host_thresholds: vec![Default::default()],
        ..Default::default()
    });
    assert_eq!(
        cluster_err(&c),
        format!("Cluster {EDS_NAME}: circuit_breakers.per_host_thresholds: field is not supported")
    );

    let mut c = eds_cluster();
    c.eds_cluster_config = Some(cluster::EdsClusterConfig {
        eds_config: Some(ConfigSource {
            config_source_specifier: Some(config_source::ConfigSourceSpecifier::Path("/x".into())),
            ..Default::default()
        }),
        service_name: String::new(),
    });
    assert_eq!(
        cluster_err(&c),
        format!("Cluster {EDS_NAME}: eds_cluster_config.eds_config.path: field is not supported")
    );

    let mut c = static_cluster();
    c.typed_extension_protocol_options = h2_options(Http2ProtocolOptions {
        initial_stream_window_size: Some(UInt32Value { value: 65535 }),
        ..Default::default()
    });
    assert_eq!(
        cluster_err(&c),
        "Cluster inbound|9080||: typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"].explicit_http_config.http2_protocol_options.initial_stream_window_size: field is not supported"
    );

    let mut c = static_cluster();
    if let Some(la) = c.load_assignment.as_mut() {
        la.endpoints[0].lb_endpoints[0].health_status = core::HealthStatus::Degraded as i32;
    }
    assert_eq!(
        cluster_err(&c),
        "Cluster inbound|9080||: load_assignment.endpoints[0].lb_endpoints[0].health_status: DEGRADED is not supported"
    );

    let mut c = static_cluster();
    if let Some(la) = c.load_assignment.as_mut() {
        la.endpoints[0].lb_endpoints[0] = LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(
                envoy_types::pb::envoy::config::endpoint::v3::Endpoint {
                    address: Some(addr("echo.local", 80)),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
    }
    assert_eq!(
        cluster_err(&c),
        "Cluster inbound|9080||: load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: \"echo.local\" is not an IP address"
    );
}

#[test]
fn endpoints_convert_and_reject_localities() {
    let e = config::Endpoints::try_from(&assignment(
        EDS_NAME,
        &[("127.0.0.1", 80), ("127.0.0.2", 81)],
    ))
    .expect("cla");
    assert_eq!(e.endpoints.len(), 2);
    assert_eq!(
        e.endpoints[1].address,
        "127.0.0.2:81".parse().expect("addr")
    );

    let mut la = assignment(EDS_NAME, &[("127.0.0.1", 80)]);
    la.endpoints[0].proximity = Some(UInt32Value { value: 1 });
    assert_eq!(
        config::Endpoints::try_from(&la).map_err(|e| e.to_string()),
        Err(format!(
            "ClusterLoadAssignment {EDS_NAME}: endpoints[0].proximity: field is not supported"
        ))
    );
}

fn router_filter() -> HttpFilter {
    HttpFilter {
        name: type_url::names::ROUTER.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(
            type_url::ROUTER,
            &envoy_types::pb::envoy::extensions::filters::http::router::v3::Router::default(),
        ))),
        ..Default::default()
    }
}

fn listener_with(hcm: HttpConnectionManager) -> PListener {
    PListener {
        name: "virtualOutbound".into(),
        address: Some(addr("127.0.10.2", 15001)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: type_url::names::HTTP_CONNECTION_MANAGER.into(),
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

fn rds_hcm() -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: "outbound_0.0.0.0_15001".into(),
        http_filters: vec![router_filter()],
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "outbound".into(),
        })),
        ..Default::default()
    }
}

fn listener_err(l: &PListener) -> String {
    match config::Listener::try_from(l) {
        Ok(l) => panic!("accepted {l:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn listeners_convert() {
    let l = config::Listener::try_from(&listener_with(rds_hcm())).expect("listener");
    assert_eq!(l.address, "127.0.10.2:15001".parse().expect("addr"));
    assert_eq!(l.filter_chains.len(), 1);
    assert_eq!(
        l.filter_chains[0].hcm.routes,
        RouteSource::Rds("outbound".into())
    );
    assert_eq!(l.filter_chains[0].hcm.stat_prefix, "outbound_0.0.0.0_15001");
    assert_eq!(
        l.filter_chains[0].hcm.forward_client_cert,
        config::ForwardClientCert::Sanitize
    );

    let mut hcm = rds_hcm();
    hcm.route_specifier = Some(http_connection_manager::RouteSpecifier::RouteConfig(
        route_config(),
    ));
    let l = config::Listener::try_from(&listener_with(hcm)).expect("listener");
    let RouteSource::Inline(table) = &l.filter_chains[0].hcm.routes else {
        panic!("{l:?}")
    };
    assert_eq!(table.virtual_hosts[0].domains, ["reviews", "reviews:9080"]);
}

#[test]
fn upstream_tls_is_converted_and_its_unsupported_fields_are_named() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
    let socket = |u: &tls::UpstreamTlsContext| core::TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(
            trellis_xds::to_any(super::tls::UPSTREAM_TLS_TYPE, u),
        )),
    };
    let file = |f: &str| core::DataSource {
        specifier: Some(core::data_source::Specifier::Filename(f.into())),
        ..Default::default()
    };
    let san = |t: tls::subject_alt_name_matcher::SanType| tls::SubjectAltNameMatcher {
        san_type: t as i32,
        matcher: Some(envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher {
            match_pattern: Some(
                envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(
                    "spiffe://cluster.local/ns/default/sa/reviews".into(),
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut u = tls::UpstreamTlsContext {
        sni: "reviews.default.svc.cluster.local".into(),
        common_tls_context: Some(tls::CommonTlsContext {
            tls_certificates: vec![tls::TlsCertificate {
                certificate_chain: Some(file("/certs/cert.pem")),
                private_key: Some(file("/certs/key.pem")),
                ..Default::default()
            }],
            validation_context_type: Some(
                tls::common_tls_context::ValidationContextType::ValidationContext(
                    tls::CertificateValidationContext {
                        trusted_ca: Some(file("/certs/root.pem")),
                        match_typed_subject_alt_names: vec![san(
                            tls::subject_alt_name_matcher::SanType::Uri,
                        )],
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut c = eds_cluster();
    c.transport_socket = Some(socket(&u));
    let ok = config::Cluster::try_from(&c).expect("MUTUAL origination");
    assert_eq!(
        ok.transport_socket,
        config::TransportSocket::Tls(config::UpstreamTls {
            sni: "reviews.default.svc.cluster.local".into(),
            certificate: Some(config::CertSource::Files {
                cert_chain: "/certs/cert.pem".into(),
                private_key: "/certs/key.pem".into(),
            }),
            validation: Some(config::TrustSource::File("/certs/root.pem".into())),
            match_sans: vec![config::SanMatch {
                kind: config::SanKind::Uri,
                value: "spiffe://cluster.local/ns/default/sa/reviews".into(),
            }],
            alpn_protocols: vec![],
        })
    );

    if let Some(common) = u.common_tls_context.as_mut()
        && let Some(tls::common_tls_context::ValidationContextType::ValidationContext(v)) =
            common.validation_context_type.as_mut()
    {
        v.match_typed_subject_alt_names = vec![san(tls::subject_alt_name_matcher::SanType::Email)];
    }
    c.transport_socket = Some(socket(&u));
    assert_eq!(
        cluster_err(&c),
        format!(
            "Cluster {EDS_NAME}: transport_socket.typed_config.common_tls_context.validation_context.match_typed_subject_alt_names[0].san_type: EMAIL is not supported"
        )
    );

    if let Some(common) = u.common_tls_context.as_mut() {
        common.tls_certificates.clear();
        common.tls_certificate_sds_secret_configs = vec![tls::SdsSecretConfig {
            name: "file-cert:/x".into(),
            sds_config: None,
        }];
    }
    c.transport_socket = Some(socket(&u));
    assert_eq!(
        cluster_err(&c),
        format!(
            "Cluster {EDS_NAME}: transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].name: \"file-cert:/x\" is not supported here (the proxy serves \"default\")"
        )
    );

    let mut c = eds_cluster();
    c.transport_socket = Some(socket(&tls::UpstreamTlsContext {
        max_session_keys: Some(envoy_types::pb::google::protobuf::UInt32Value { value: 1 }),
        ..Default::default()
    }));
    assert_eq!(
        cluster_err(&c),
        format!(
            "Cluster {EDS_NAME}: transport_socket.typed_config.max_session_keys: field is not supported"
        )
    );
}

#[test]
fn unsupported_listener_fields_are_named() {
    let mut l = listener_with(rds_hcm());
    l.traffic_direction = core::TrafficDirection::Outbound as i32;
    assert_eq!(
        listener_err(&l),
        "Listener virtualOutbound: traffic_direction: field is not supported"
    );

    let mut l = listener_with(rds_hcm());
    let chain = l.filter_chains[0].clone();
    l.filter_chains.push(chain);
    assert_eq!(
        listener_err(&l),
        "Listener virtualOutbound: filter_chains[1].filter_chain_match: matches the same connections as filter_chains[0]"
    );

    // mTLS: a chain matching "tls" needs the TLS inspector; other transport sockets and
    // matches are named.
    let mut l = listener_with(rds_hcm());
    l.filter_chains[0].filter_chain_match = Some(FilterChainMatch {
        transport_protocol: "tls".into(),
        ..Default::default()
    });
    assert_eq!(
        listener_err(&l),
        "Listener virtualOutbound: filter_chains[0].filter_chain_match.transport_protocol: \"tls\" needs the envoy.filters.listener.tls_inspector listener filter"
    );
    l.filter_chains[0].filter_chain_match = Some(FilterChainMatch {
        application_protocols: vec!["h2".into()],
        ..Default::default()
    });
    assert_eq!(
        listener_err(&l),
        "Listener virtualOutbound: filter_chains[0].filter_chain_match.application_protocols[0]: \"h2\" is not supported"
    );
    let mut l = listener_with(rds_hcm());
    l.listener_filters.push(ListenerFilter {
        name: "envoy.filters.listener.proxy_protocol".into(),
        ..Default::default()
    });
    assert_eq!(
        listener_err(&l),
        "Listener virtualOutbound: listener_filters[0].name: envoy.filters.listener.proxy_protocol is not supported"
    );
    let mut l = listener_with(rds_hcm());
    l.filter_chains[0].transport_socket = Some(core::TransportSocket {
        name: "envoy.transport_sockets.alts".into(),
        config_type: None,
    });
    assert_eq!(
        listener_err(&l),
        "Listener virtualOutbound: filter_chains[0].transport_socket.name: envoy.transport_sockets.alts is not supported"
    );
    let mut hcm = rds_hcm();
    hcm.forward_client_cert_details =
        http_connection_manager::ForwardClientCertDetails::AppendForward as i32;
    assert_eq!(
        listener_err(&listener_with(hcm)),
        "Listener virtualOutbound: filter_chains[0].filters[0].typed_config.forward_client_cert_details: APPEND_FORWARD is not supported"
    );

    let mut hcm = rds_hcm();
    hcm.http_filters.push(HttpFilter {
        name: "envoy.filters.http.fault".into(),
        ..Default::default()
    });
    assert_eq!(
        listener_err(&listener_with(hcm)),
        "Listener virtualOutbound: filter_chains[0].filters[0].typed_config.http_filters: filters must be an in-order subset of [envoy.filters.http.jwt_authn, envoy.filters.http.rbac (shadow_rules only), envoy.filters.http.ext_authz, envoy.filters.http.rbac, envoy.filters.http.fault, envoy.filters.http.cors, istio.stats, envoy.filters.http.router] ending with envoy.filters.http.router"
    );

    let mut hcm = rds_hcm();
    hcm.http_filters.insert(
        0,
        HttpFilter {
            name: "envoy.filters.http.lua".into(),
            ..Default::default()
        },
    );
    assert_eq!(
        listener_err(&listener_with(hcm)),
        "Listener virtualOutbound: filter_chains[0].filters[0].typed_config.http_filters[0].name: envoy.filters.http.lua is not supported"
    );

    let mut hcm = rds_hcm();
    hcm.codec_type = http_connection_manager::CodecType::Http2 as i32;
    assert_eq!(
        listener_err(&listener_with(hcm)),
        "Listener virtualOutbound: filter_chains[0].filters[0].typed_config.codec_type: HTTP2 is not supported"
    );

    let mut hcm = rds_hcm();
    hcm.use_remote_address = Some(BoolValue { value: true });
    assert_eq!(
        listener_err(&listener_with(hcm)),
        "Listener virtualOutbound: filter_chains[0].filters[0].typed_config.use_remote_address: field is not supported"
    );

    let mut hcm = rds_hcm();
    let mut rc = route_config();
    rc.virtual_hosts[0].routes[0].action =
        Some(route::route::Action::Redirect(route::RedirectAction {
            response_code: 42,
            ..Default::default()
        }));
    hcm.route_specifier = Some(http_connection_manager::RouteSpecifier::RouteConfig(rc));
    assert_eq!(
        listener_err(&listener_with(hcm)),
        "Listener virtualOutbound: filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].redirect.response_code: 42 is not supported"
    );
}

fn route_config() -> RouteConfiguration {
    let header = |name: &str, pattern| HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            StringMatcher {
                match_pattern: Some(pattern),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    RouteConfiguration {
        name: "outbound".into(),
        validate_clusters: Some(BoolValue { value: false }),
        virtual_hosts: vec![VirtualHost {
            name: "reviews:9080".into(),
            domains: vec!["reviews".into(), "Reviews:9080".into()],
            routes: vec![
                route::Route {
                    name: "canary".into(),
                    r#match: Some(RouteMatch {
                        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                        case_sensitive: Some(BoolValue { value: false }),
                        headers: vec![
                            header(
                                "end-user",
                                string_matcher::MatchPattern::Exact("jason".into()),
                            ),
                            header(
                                "x-id",
                                string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                                    regex: "[0-9]+".into(),
                                    ..Default::default()
                                }),
                            ),
                            HeaderMatcher {
                                name: "x-debug".into(),
                                header_match_specifier: Some(
                                    header_matcher::HeaderMatchSpecifier::PresentMatch(true),
                                ),
                                invert_match: true,
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    }),
                    action: Some(route::route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
                            WeightedCluster {
                                clusters: vec![
                                    ClusterWeight {
                                        name: "outbound|9080|v1|reviews".into(),
                                        weight: Some(UInt32Value { value: 90 }),
                                        ..Default::default()
                                    },
                                    ClusterWeight {
                                        name: "outbound|9080|v2|reviews".into(),
                                        weight: Some(UInt32Value { value: 10 }),
                                        ..Default::default()
                                    },
                                ],
                                ..Default::default()
                            },
                        )),
                        timeout: Some(PDuration {
                            seconds: 0,
                            nanos: 0,
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
                route::Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(route_match::PathSpecifier::SafeRegex(RegexMatcher {
                            regex: "/items/[0-9]+".into(),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }),
                    action: Some(route::route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                            "outbound|9080||reviews".into(),
                        )),
                        timeout: Some(PDuration {
                            seconds: 1,
                            nanos: 500_000_000,
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn route_action(a: &config::Action) -> &config::RouteAction {
    match a {
        config::Action::Route(r) => r,
        other => panic!("not a route action: {other:?}"),
    }
}

fn route_err(rc: &RouteConfiguration) -> String {
    match config::RouteTable::try_from(rc) {
        Ok(t) => panic!("accepted {t:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn route_tables_convert() {
    let t = config::RouteTable::try_from(&route_config()).expect("routes");
    let vh = &t.virtual_hosts[0];
    assert_eq!(
        vh.domains,
        ["reviews", "reviews:9080"],
        "domains are lowercased"
    );
    let canary = &vh.routes[0];
    assert!(!canary.matcher.case_sensitive);
    assert_eq!(
        route_action(&canary.action).timeout,
        None,
        "0s means no timeout"
    );
    assert_eq!(
        canary.matcher.headers[0].kind,
        HeaderMatchKind::Exact("jason".into())
    );
    assert_eq!(
        canary.matcher.headers[2].kind,
        HeaderMatchKind::Present(true)
    );
    assert!(canary.matcher.headers[2].invert_match);
    let ClusterTarget::WeightedClusters(w) = &route_action(&canary.action).target else {
        panic!("{canary:?}")
    };
    assert_eq!((w[0].weight, w[1].weight), (90, 10));
    let regex = &vh.routes[1];
    assert!(
        matches!(&regex.matcher.path, PathMatch::SafeRegex(p) if p.source() == "/items/[0-9]+")
    );
    assert_eq!(
        route_action(&regex.action).timeout,
        Some(std::time::Duration::from_millis(1500))
    );
}

#[test]
fn unsupported_route_fields_are_named() {
    let mut rc = route_config();
    rc.virtual_hosts[0].routes[0].r#match = Some(RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        headers: vec![HeaderMatcher {
            name: "end-user".into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact("jason".into())),
                    ignore_case: true,
                },
            )),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert_eq!(
        route_err(&rc),
        "RouteConfiguration outbound: virtual_hosts[0].routes[0].match.headers[0].string_match.ignore_case: field is not supported"
    );

    let mut rc = route_config();
    if let Some(route::route::Action::Route(a)) = rc.virtual_hosts[0].routes[1].action.as_mut() {
        a.retry_policy = Some(route::RetryPolicy {
            retry_on: "5xx,bogus".into(),
            ..Default::default()
        });
    }
    assert_eq!(
        route_err(&rc),
        "RouteConfiguration outbound: virtual_hosts[0].routes[1].route.retry_policy.retry_on: \"bogus\" is not supported"
    );

    let mut rc = route_config();
    rc.virtual_hosts[0].routes[1].r#match = Some(RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::SafeRegex(RegexMatcher {
            regex: "(".into(),
            ..Default::default()
        })),
        ..Default::default()
    });
    assert!(
        route_err(&rc).starts_with(
            "RouteConfiguration outbound: virtual_hosts[0].routes[1].match.safe_regex.regex: invalid regex \"(\""
        ),
        "{}",
        route_err(&rc)
    );

    let mut rc = route_config();
    let mut dup = rc.virtual_hosts[0].clone();
    dup.name = "dup".into();
    dup.domains = vec!["REVIEWS".into()];
    rc.virtual_hosts.push(dup);
    assert_eq!(
        route_err(&rc),
        "RouteConfiguration outbound: virtual_hosts[1].domains[0]: domain \"reviews\" appears in more than one virtual host"
    );

    let mut rc = route_config();
    if let Some(route::route::Action::Route(a)) = rc.virtual_hosts[0].routes[0].action.as_mut() {
        a.cluster_specifier = Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters: vec![ClusterWeight {
                    name: "a".into(),
                    weight: Some(UInt32Value { value: 0 }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ));
    }
    assert_eq!(
        route_err(&rc),
        format!(
            "RouteConfiguration outbound: virtual_hosts[0].routes[0].route.weighted_clusters.clusters: total weight must be between 1 and {}, got 0",
            u32::MAX
        )
    );

    let mut rc = route_config();
    rc.validate_clusters = Some(BoolValue { value: true });
    assert_eq!(
        route_err(&rc),
        "RouteConfiguration outbound: validate_clusters: true is not supported"
    );
}
