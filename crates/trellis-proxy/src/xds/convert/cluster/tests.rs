//! Cluster-level fields (issue 3 contract): accepted shapes and precise rejections.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster as PCluster, OutlierDetection as POutlier, circuit_breakers, cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    self as core, AggregatedConfigSource, ConfigSource, Http2ProtocolOptions, RuntimeDouble,
    SocketAddress, address, config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as PEndpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{Any, Duration as PDuration, UInt32Value, UInt64Value};
use trellis_xds::{to_any, type_url};

use crate::config::{self, Discovery, LbPolicy};

const NAME: &str = "outbound|80||echo.default.svc.cluster.local";

fn secs(s: i64) -> Option<PDuration> {
    Some(PDuration {
        seconds: s,
        nanos: 0,
    })
}

fn u32v(v: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value: v })
}

fn eds() -> PCluster {
    PCluster {
        name: NAME.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ConfigSource {
                config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                ..Default::default()
            }),
            service_name: NAME.into(),
        }),
        ..Default::default()
    }
}

fn ok(c: &PCluster) -> config::Cluster {
    config::Cluster::try_from(c).unwrap_or_else(|e| panic!("rejected: {e}"))
}

fn err(c: &PCluster) -> String {
    match config::Cluster::try_from(c) {
        Ok(c) => panic!("accepted {c:?}"),
        Err(e) => e.to_string().replace(&format!("Cluster {NAME}: "), ""),
    }
}

fn sock(host: &str, port: u32) -> core::Address {
    core::Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn lb_ep(host: &str, port: u32) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(PEndpoint {
            address: Some(sock(host, port)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn options(o: HttpProtocolOptions) -> HashMap<String, Any> {
    [(
        type_url::names::HTTP_PROTOCOL_OPTIONS.to_string(),
        to_any(type_url::HTTP_PROTOCOL_OPTIONS, &o),
    )]
    .into()
}

fn h2(h2: Http2ProtocolOptions, common: Option<core::HttpProtocolOptions>) -> HashMap<String, Any> {
    options(HttpProtocolOptions {
        common_http_protocol_options: common,
        upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(h2)),
            },
        )),
        ..Default::default()
    })
}

#[test]
fn defaults_are_envoys() {
    let c = ok(&eds());
    assert_eq!(c.circuit_breakers, config::CircuitBreakers::default());
    assert_eq!(c.circuit_breakers.max_retries, 3);
    assert_eq!(c.outlier_detection, None);
    assert_eq!(c.healthy_panic_threshold, 50.0);
    assert!(!c.locality_weighted);
    assert_eq!(
        c.connection_pool.idle_timeout,
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn consistent_hash_policies() {
    let mut c = eds();
    c.lb_policy = cluster::LbPolicy::RingHash as i32;
    assert_eq!(
        ok(&c).lb_policy,
        LbPolicy::RingHash {
            minimum_ring_size: 1024,
            maximum_ring_size: 8 << 20
        }
    );
    c.lb_config = Some(cluster::LbConfig::RingHashLbConfig(
        cluster::RingHashLbConfig {
            minimum_ring_size: Some(UInt64Value { value: 2048 }),
            ..Default::default()
        },
    ));
    assert_eq!(
        ok(&c).lb_policy,
        LbPolicy::RingHash {
            minimum_ring_size: 2048,
            maximum_ring_size: 8 << 20
        }
    );
    c.lb_config = Some(cluster::LbConfig::RingHashLbConfig(
        cluster::RingHashLbConfig {
            hash_function: cluster::ring_hash_lb_config::HashFunction::MurmurHash2 as i32,
            ..Default::default()
        },
    ));
    assert_eq!(
        err(&c),
        "ring_hash_lb_config.hash_function: MURMUR_HASH_2 is not supported"
    );

    let mut c = eds();
    c.lb_policy = cluster::LbPolicy::Maglev as i32;
    assert_eq!(ok(&c).lb_policy, LbPolicy::Maglev { table_size: 65537 });
    c.lb_config = Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
        table_size: Some(UInt64Value { value: 1031 }),
    }));
    assert_eq!(ok(&c).lb_policy, LbPolicy::Maglev { table_size: 1031 });
    c.lb_config = Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
        table_size: Some(UInt64Value { value: 1000 }),
    }));
    assert_eq!(
        err(&c),
        "maglev_lb_config.table_size: 1000 must be a prime no larger than 5000011"
    );
    // A config for another policy.
    c.lb_policy = cluster::LbPolicy::Random as i32;
    assert_eq!(
        err(&c),
        "maglev_lb_config: does not apply to lb_policy RANDOM"
    );
}

#[test]
fn slow_start() {
    let mut c = eds();
    c.lb_config = Some(cluster::LbConfig::RoundRobinLbConfig(
        cluster::RoundRobinLbConfig {
            slow_start_config: Some(cluster::SlowStartConfig {
                slow_start_window: secs(60),
                aggression: Some(RuntimeDouble {
                    default_value: 1.0,
                    runtime_key: String::new(),
                }),
                min_weight_percent: Some(Percent { value: 20.0 }),
            }),
        },
    ));
    assert_eq!(
        ok(&c).slow_start,
        Some(config::SlowStart {
            window: Duration::from_secs(60),
            aggression: 1.0,
            min_weight_percent: 20.0
        })
    );
    c.lb_policy = cluster::LbPolicy::LeastRequest as i32;
    assert_eq!(
        err(&c),
        "round_robin_lb_config: does not apply to lb_policy LEAST_REQUEST"
    );
    c.lb_config = Some(cluster::LbConfig::LeastRequestLbConfig(
        cluster::LeastRequestLbConfig {
            slow_start_config: Some(cluster::SlowStartConfig {
                slow_start_window: secs(10),
                ..Default::default()
            }),
            ..Default::default()
        },
    ));
    assert_eq!(
        ok(&c)
            .slow_start
            .map(|s| (s.window, s.aggression, s.min_weight_percent)),
        Some((Duration::from_secs(10), 1.0, 10.0))
    );
    c.lb_config = Some(cluster::LbConfig::LeastRequestLbConfig(
        cluster::LeastRequestLbConfig {
            choice_count: u32v(3),
            ..Default::default()
        },
    ));
    assert_eq!(
        err(&c),
        "least_request_lb_config.choice_count: field is not supported"
    );
}

#[test]
fn circuit_breakers() {
    let mut c = eds();
    c.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![circuit_breakers::Thresholds {
            max_connections: u32v(1),
            max_pending_requests: u32v(2),
            max_requests: u32v(3),
            max_retries: u32v(4),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert_eq!(
        ok(&c).circuit_breakers,
        config::CircuitBreakers {
            max_connections: 1,
            max_pending_requests: 2,
            max_requests: 3,
            max_retries: 4
        }
    );
    if let Some(cb) = c.circuit_breakers.as_mut() {
        cb.thresholds[0].priority = core::RoutingPriority::High as i32;
    }
    assert_eq!(
        err(&c),
        "circuit_breakers.thresholds[0].priority: HIGH is not supported"
    );
    if let Some(cb) = c.circuit_breakers.as_mut() {
        cb.thresholds[0].priority = 0;
        cb.thresholds[0].track_remaining = true;
    }
    assert_eq!(
        err(&c),
        "circuit_breakers.thresholds[0].track_remaining: field is not supported"
    );
}

#[test]
fn outlier_detection() {
    let mut c = eds();
    c.outlier_detection = Some(POutlier {
        consecutive_5xx: u32v(7),
        consecutive_gateway_failure: u32v(3),
        enforcing_consecutive_gateway_failure: u32v(100),
        consecutive_local_origin_failure: u32v(2),
        enforcing_consecutive_local_origin_failure: u32v(50),
        split_external_local_origin_errors: true,
        interval: secs(5),
        base_ejection_time: secs(15),
        max_ejection_percent: u32v(100),
        enforcing_consecutive_5xx: u32v(90),
        enforcing_success_rate: u32v(0),
        enforcing_local_origin_success_rate: u32v(0),
        ..Default::default()
    });
    assert_eq!(
        ok(&c).outlier_detection,
        Some(config::OutlierDetection {
            consecutive_5xx: 7,
            consecutive_gateway_failure: 3,
            consecutive_local_origin_failure: 2,
            split_external_local_origin_errors: true,
            interval: Duration::from_secs(5),
            base_ejection_time: Duration::from_secs(15),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 100,
            enforcing_consecutive_5xx: 90,
            enforcing_consecutive_gateway_failure: 100,
            enforcing_consecutive_local_origin_failure: 50,
        })
    );
    let bad = |f: fn(&mut POutlier)| {
        let mut c = eds();
        let mut o = POutlier::default();
        f(&mut o);
        c.outlier_detection = Some(o);
        err(&c)
    };
    assert_eq!(
        bad(|o| o.enforcing_success_rate = u32v(100)),
        "outlier_detection.enforcing_success_rate: only 0 is supported (success-rate ejection is not implemented)"
    );
    assert_eq!(
        bad(|o| o.enforcing_local_origin_success_rate = u32v(100)),
        "outlier_detection.enforcing_local_origin_success_rate: only 0 is supported (success-rate ejection is not implemented)"
    );
    assert_eq!(
        bad(|o| o.max_ejection_percent = u32v(101)),
        "outlier_detection.max_ejection_percent: must be at most 100"
    );
    assert_eq!(
        bad(|o| o.failure_percentage_threshold = u32v(5)),
        "outlier_detection.failure_percentage_threshold: field is not supported"
    );
}

#[test]
fn common_lb_config_and_connection_options() {
    let mut c = eds();
    c.common_lb_config = Some(cluster::CommonLbConfig {
        healthy_panic_threshold: Some(Percent { value: 0.0 }),
        locality_config_specifier: Some(
            cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                Default::default(),
            ),
        ),
        ..Default::default()
    });
    c.upstream_connection_options = Some(
        envoy_types::pb::envoy::config::cluster::v3::UpstreamConnectionOptions {
            tcp_keepalive: Some(core::TcpKeepalive {
                keepalive_probes: u32v(3),
                keepalive_time: u32v(30),
                keepalive_interval: u32v(5),
            }),
            ..Default::default()
        },
    );
    c.typed_extension_protocol_options = h2(
        Http2ProtocolOptions {
            max_concurrent_streams: u32v(10),
            ..Default::default()
        },
        Some(core::HttpProtocolOptions {
            idle_timeout: secs(0),
            max_requests_per_connection: u32v(5),
            max_connection_duration: secs(60),
            ..Default::default()
        }),
    );
    let out = ok(&c);
    assert_eq!(out.healthy_panic_threshold, 0.0);
    assert!(out.locality_weighted);
    assert_eq!(out.protocol, config::UpstreamProtocol::Http2);
    assert_eq!(
        out.connection_pool,
        config::ConnectionPoolOptions {
            idle_timeout: None,
            max_requests_per_connection: Some(5),
            max_connection_duration: Some(Duration::from_secs(60)),
            max_concurrent_streams: Some(10),
            tcp_keepalive: Some(config::TcpKeepalive {
                probes: Some(3),
                time: Some(Duration::from_secs(30)),
                interval: Some(Duration::from_secs(5)),
            }),
            preserve_header_case: false,
        }
    );

    let mut c = eds();
    c.common_lb_config = Some(cluster::CommonLbConfig {
        locality_config_specifier: Some(
            cluster::common_lb_config::LocalityConfigSpecifier::ZoneAwareLbConfig(
                Default::default(),
            ),
        ),
        ..Default::default()
    });
    assert_eq!(
        err(&c),
        "common_lb_config.zone_aware_lb_config: field is not supported"
    );
    let mut c = eds();
    c.typed_extension_protocol_options = h2(
        Http2ProtocolOptions::default(),
        Some(core::HttpProtocolOptions {
            max_stream_duration: secs(1),
            ..Default::default()
        }),
    );
    assert_eq!(
        err(&c),
        "typed_extension_protocol_options[\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\"].common_http_protocol_options.max_stream_duration: field is not supported"
    );
}

fn dns(kind: cluster::DiscoveryType, eps: Vec<LbEndpoint>) -> PCluster {
    PCluster {
        name: NAME.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
        dns_refresh_rate: secs(30),
        dns_lookup_family: cluster::DnsLookupFamily::V4Only as i32,
        respect_dns_ttl: true,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: NAME.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: eps,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn dns_clusters() {
    let c = ok(&dns(
        cluster::DiscoveryType::StrictDns,
        vec![lb_ep("example.com", 443), lb_ep("127.0.0.1", 80)],
    ));
    let Discovery::Dns {
        logical,
        lookup_family,
        refresh_rate,
        hosts,
    } = c.discovery
    else {
        panic!("{:?}", c.discovery)
    };
    assert!(!logical);
    assert_eq!(lookup_family, config::DnsLookupFamily::V4Only);
    assert_eq!(refresh_rate, Duration::from_secs(30));
    assert_eq!(
        hosts
            .iter()
            .map(|h| (h.hostname.as_str(), h.port))
            .collect::<Vec<_>>(),
        [("example.com", 443), ("127.0.0.1", 80)]
    );
    assert_eq!(
        err(&dns(
            cluster::DiscoveryType::LogicalDns,
            vec![lb_ep("a.example", 80), lb_ep("b.example", 80)],
        )),
        "load_assignment: LOGICAL_DNS needs exactly one endpoint"
    );
    let mut c = dns(
        cluster::DiscoveryType::LogicalDns,
        vec![lb_ep("a.example", 80)],
    );
    assert!(matches!(
        ok(&c).discovery,
        Discovery::Dns { logical: true, .. }
    ));
    c.dns_jitter = secs(1);
    assert_eq!(err(&c), "dns_jitter: field is not supported");
    let mut c = eds();
    c.dns_refresh_rate = secs(1);
    assert_eq!(
        err(&c),
        "dns_refresh_rate: is only allowed with type: STRICT_DNS or LOGICAL_DNS"
    );
}

#[test]
fn eds_localities_priorities_and_health() {
    let mut la = ClusterLoadAssignment {
        cluster_name: NAME.into(),
        endpoints: vec![
            LocalityLbEndpoints {
                locality: Some(core::Locality {
                    region: "us".into(),
                    zone: "us-a".into(),
                    sub_zone: "rack1".into(),
                }),
                load_balancing_weight: u32v(80),
                lb_endpoints: vec![lb_ep("10.0.0.1", 80)],
                ..Default::default()
            },
            LocalityLbEndpoints {
                priority: 1,
                lb_endpoints: vec![LbEndpoint {
                    health_status: core::HealthStatus::Unhealthy as i32,
                    load_balancing_weight: u32v(3),
                    ..lb_ep("10.0.0.2", 80)
                }],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let e = config::Endpoints::try_from(&la).expect("cla");
    assert_eq!(
        e.endpoints[0],
        config::Endpoint {
            address: "10.0.0.1:80".parse().expect("addr"),
            weight: 1,
            locality: config::Locality {
                region: "us".into(),
                zone: "us-a".into(),
                sub_zone: "rack1".into()
            },
            priority: 0,
            transport_socket_match: Default::default(),
            locality_weight: Some(80),
            healthy: true,
            workload: None,
        }
    );
    assert_eq!(
        (
            e.endpoints[1].priority,
            e.endpoints[1].weight,
            e.endpoints[1].healthy
        ),
        (1, 3, false)
    );
    la.endpoints[1].lb_endpoints[0].health_status = core::HealthStatus::Healthy as i32;
    assert!(config::Endpoints::try_from(&la).expect("cla").endpoints[1].healthy);
    la.endpoints[0].load_balancing_weight = u32v(0);
    assert_eq!(
        config::Endpoints::try_from(&la).map_err(|e| e.to_string()),
        Err(format!(
            "ClusterLoadAssignment {NAME}: endpoints[0].load_balancing_weight: must be at least 1"
        ))
    );
}
