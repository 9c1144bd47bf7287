//! Clusters: one per outbound service port and subset (EDS), one per inbound port (STATIC).

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster, cluster::ClusterDiscoveryType, cluster::DiscoveryType, cluster::EdsClusterConfig,
    cluster::LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::{Http1ProtocolOptions, Http2ProtocolOptions};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options::ExplicitHttpConfig,
    http_protocol_options::UpstreamProtocolOptions,
    http_protocol_options::explicit_http_config::ProtocolConfig,
};
use trellis_api::networking::{SimpleLb, TrafficPolicy};
use trellis_xds::{NodeIdentity, to_any, type_url};

use super::proto::{ads, duration, socket_address};
use super::{InboundPort, inbound_cluster_name, outbound_cluster_name};
use crate::model::MeshModel;
use crate::registry::{Service, ServicePort};

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Outbound clusters for every visible service port, plus one per DestinationRule subset.
pub fn outbound(model: &MeshModel, services: &[(&Service, Vec<&ServicePort>)]) -> Vec<Cluster> {
    let mut clusters = Vec::new();
    for (service, ports) in services {
        let rule = model.destination_rule_for(&service.host);
        let policy = rule.and_then(|r| r.spec.traffic_policy.as_ref());
        for port in ports {
            clusters.push(eds_cluster(
                outbound_cluster_name(port.number, None, &service.host),
                port,
                policy,
            ));
            for subset in rule.iter().flat_map(|r| &r.spec.subsets) {
                let policy = subset.traffic_policy.as_ref().or(policy);
                let name = outbound_cluster_name(port.number, Some(&subset.name), &service.host);
                clusters.push(eds_cluster(name, port, policy));
            }
        }
    }
    clusters
}

/// Inbound clusters: each forwards to the application on the same port.
pub fn inbound(node: &NodeIdentity, ports: &[InboundPort]) -> Vec<Cluster> {
    ports
        .iter()
        .map(|p| {
            let name = inbound_cluster_name(p.port);
            let endpoint = LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket_address(node.app_ip(), p.port)),
                    ..Default::default()
                })),
                ..Default::default()
            };
            Cluster {
                name: name.clone(),
                cluster_discovery_type: Some(ClusterDiscoveryType::Type(
                    DiscoveryType::Static as i32,
                )),
                connect_timeout: Some(duration(CONNECT_TIMEOUT)),
                load_assignment: Some(ClusterLoadAssignment {
                    cluster_name: name,
                    endpoints: vec![LocalityLbEndpoints {
                        lb_endpoints: vec![endpoint],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                typed_extension_protocol_options: protocol_options(p.http2),
                ..Default::default()
            }
        })
        .collect()
}

fn eds_cluster(name: String, port: &ServicePort, policy: Option<&TrafficPolicy>) -> Cluster {
    Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name,
        }),
        connect_timeout: Some(duration(CONNECT_TIMEOUT)),
        lb_policy: lb_policy(policy) as i32,
        typed_extension_protocol_options: protocol_options(port.protocol.is_http2()),
        ..Default::default()
    }
}

fn lb_policy(policy: Option<&TrafficPolicy>) -> LbPolicy {
    let simple = policy
        .and_then(|p| p.load_balancer.as_ref())
        .and_then(|lb| lb.simple);
    match simple {
        Some(SimpleLb::LeastRequest | SimpleLb::LeastConn) => LbPolicy::LeastRequest,
        Some(SimpleLb::Random) => LbPolicy::Random,
        _ => LbPolicy::RoundRobin,
    }
}

/// Explicit HTTP/1.1 or HTTP/2 (prior knowledge) to the upstream.
fn protocol_options(http2: bool) -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    let config = if http2 {
        ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default())
    } else {
        ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default())
    };
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(config),
            },
        )),
        ..Default::default()
    };
    HashMap::from([(
        type_url::names::HTTP_PROTOCOL_OPTIONS.to_string(),
        to_any(type_url::HTTP_PROTOCOL_OPTIONS, &options),
    )])
}
