//! Clusters: one per outbound service port and subset, one per inbound port (STATIC). Outbound
//! clusters carry the DestinationRule's effective policy (see [`super::policy`]): load
//! balancer, connection pool (circuit breakers, protocol options), outlier detection.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier, UpstreamConnectionOptions,
    circuit_breakers::Thresholds,
    cluster::{
        ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbConfig, LbPolicy,
        LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig, RoundRobinLbConfig,
        SlowStartConfig, common_lb_config::LocalityConfigSpecifier,
        common_lb_config::LocalityWeightedLbConfig,
    },
};
use envoy_types::pb::envoy::config::core::v3::{
    Http2ProtocolOptions, HttpProtocolOptions as CommonHttpOptions, RuntimeDouble, TcpKeepalive,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options::ExplicitHttpConfig,
    http_protocol_options::UpstreamProtocolOptions,
    http_protocol_options::explicit_http_config::ProtocolConfig,
};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{UInt32Value, UInt64Value};
use trellis_api::mesh_config::MeshH2UpgradePolicy;
use trellis_api::networking::{
    H2UpgradePolicy, OutlierDetection, Resolution, SimpleLb, TrafficPolicy,
};
use trellis_xds::{NodeIdentity, to_any, type_url};

use super::policy;
use super::proto::{ads, duration, socket_address};
use super::{InboundPort, inbound_cluster_name, outbound_cluster_name};
use crate::model::{MeshModel, ProxyView};
use crate::registry::{Service, ServicePort};

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One outbound cluster to build: the service port, the subset (if any) and its policy.
pub struct OutboundCluster<'m> {
    /// The cluster name.
    pub name: String,
    /// The service.
    pub service: &'m Service,
    /// The port.
    pub port: &'m ServicePort,
    /// The subset's name, if a subset.
    pub subset_name: Option<&'m str>,
    /// The subset's labels, if a subset.
    pub subset_labels: Option<&'m std::collections::BTreeMap<String, String>>,
    /// The effective traffic policy.
    pub policy: Option<TrafficPolicy>,
}

impl OutboundCluster<'_> {
    /// Whether endpoints come over EDS (rather than DNS or the original destination).
    pub fn is_eds(&self) -> bool {
        !self.service.uses_dns() && !self.passthrough()
    }

    fn passthrough(&self) -> bool {
        simple_lb(self.policy.as_ref()) == Some(SimpleLb::Passthrough)
    }
}

/// Every outbound cluster of a proxy: the whole service and each subset, per port.
pub fn plan<'m>(
    model: &'m MeshModel,
    proxy: &ProxyView<'_>,
    services: &[(&'m Service, Vec<&'m ServicePort>)],
) -> Vec<OutboundCluster<'m>> {
    let mut out = Vec::new();
    for (service, ports) in services {
        let rule = model.destination_rule_for_proxy(&service.host, proxy);
        for port in ports {
            out.push(OutboundCluster {
                name: outbound_cluster_name(port.number, None, &service.host),
                service,
                port,
                subset_name: None,
                subset_labels: None,
                policy: policy::effective(rule.map(|r| &r.spec), None, port.number),
            });
            for subset in rule.iter().flat_map(|r| &r.spec.subsets) {
                out.push(OutboundCluster {
                    name: outbound_cluster_name(port.number, Some(&subset.name), &service.host),
                    service,
                    port,
                    subset_name: Some(&subset.name),
                    subset_labels: Some(&subset.labels),
                    policy: policy::effective(
                        rule.map(|r| &r.spec),
                        Some(&subset.name),
                        port.number,
                    ),
                });
            }
        }
    }
    out
}

/// The Envoy cluster for a planned outbound cluster; DNS clusters embed their endpoints.
pub fn outbound(c: &OutboundCluster<'_>, proxy: &ProxyView<'_>, model: &MeshModel) -> Cluster {
    let policy = c.policy.as_ref();
    let (transport_socket, transport_socket_matches) =
        super::mtls::outbound_sockets(c, proxy, model);
    let mut cluster = Cluster {
        name: c.name.clone(),
        connect_timeout: Some(duration(
            policy
                .and_then(|p| p.connection_pool.as_ref())
                .and_then(|cp| cp.tcp.as_ref())
                .and_then(|t| t.connect_timeout)
                .map_or(CONNECT_TIMEOUT, |d| d.as_std()),
        )),
        circuit_breakers: Some(circuit_breakers(policy)),
        upstream_connection_options: upstream_connection_options(policy),
        typed_extension_protocol_options: outbound_protocol_options(
            c.port,
            policy,
            model.mesh.h2_upgrade_policy,
        ),
        transport_socket,
        transport_socket_matches,
        ..Default::default()
    };
    if c.passthrough() {
        cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        ));
        cluster.lb_policy = LbPolicy::ClusterProvided as i32;
        return cluster;
    }
    if c.service.uses_dns() {
        let kind = if c.service.resolution == Resolution::DnsRoundRobin {
            DiscoveryType::LogicalDns
        } else {
            DiscoveryType::StrictDns
        };
        cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(kind as i32));
        let mut cla = super::endpoints::assignment(c, proxy, model);
        if kind == DiscoveryType::LogicalDns {
            // A logical DNS cluster has exactly one host name.
            for l in &mut cla.endpoints {
                l.lb_endpoints.truncate(1);
            }
            cla.endpoints.retain(|l| !l.lb_endpoints.is_empty());
            cla.endpoints.truncate(1);
        }
        cluster.load_assignment = Some(cla);
    } else {
        cluster.cluster_discovery_type =
            Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
        cluster.eds_cluster_config = Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: c.name.clone(),
        });
    }
    apply_load_balancer(&mut cluster, policy);
    if let Some(od) = policy.and_then(|p| p.outlier_detection.as_ref()) {
        cluster.outlier_detection = Some(outlier_detection(od));
        let common = cluster
            .common_lb_config
            .get_or_insert_with(Default::default);
        common.healthy_panic_threshold = Some(Percent {
            value: f64::from(od.min_health_percent.unwrap_or(0).max(0)),
        });
    }
    cluster
}

fn simple_lb(policy: Option<&TrafficPolicy>) -> Option<SimpleLb> {
    policy
        .and_then(|p| p.load_balancer.as_ref())
        .and_then(|lb| lb.simple)
}

fn apply_load_balancer(cluster: &mut Cluster, policy: Option<&TrafficPolicy>) {
    let lb = policy.and_then(|p| p.load_balancer.as_ref());
    if let Some(hash) = lb.and_then(|lb| lb.consistent_hash.as_ref()) {
        if let Some(maglev) = &hash.maglev {
            cluster.lb_policy = LbPolicy::Maglev as i32;
            if let Some(size) = maglev.table_size.filter(|s| *s > 0) {
                cluster.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                    table_size: Some(UInt64Value { value: size }),
                }));
            }
        } else {
            cluster.lb_policy = LbPolicy::RingHash as i32;
            let size = hash
                .ring_hash
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(hash.minimum_ring_size)
                .filter(|s| *s > 0)
                .unwrap_or(1024);
            cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                minimum_ring_size: Some(UInt64Value { value: size }),
                ..Default::default()
            }));
        }
    } else {
        let policy_kind = match lb.and_then(|lb| lb.simple) {
            Some(SimpleLb::LeastRequest | SimpleLb::LeastConn) => LbPolicy::LeastRequest,
            Some(SimpleLb::Random) => LbPolicy::Random,
            _ => LbPolicy::RoundRobin,
        };
        cluster.lb_policy = policy_kind as i32;
        let warmup = lb.and_then(|lb| {
            let w = lb.warmup.as_ref();
            let window = w.and_then(|w| w.duration).or(lb.warmup_duration_secs)?;
            Some(SlowStartConfig {
                slow_start_window: Some(duration(window.as_std())),
                aggression: w.and_then(|w| w.aggression).map(|a| RuntimeDouble {
                    default_value: a,
                    ..Default::default()
                }),
                min_weight_percent: w
                    .and_then(|w| w.minimum_percent)
                    .map(|value| Percent { value }),
            })
        });
        if let Some(slow_start_config) = warmup {
            cluster.lb_config = Some(match policy_kind {
                LbPolicy::LeastRequest => LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                    slow_start_config: Some(slow_start_config),
                    ..Default::default()
                }),
                _ => LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
                    slow_start_config: Some(slow_start_config),
                }),
            });
        }
    }
    if lb
        .and_then(|lb| lb.locality_lb_setting.as_ref())
        .is_some_and(|l| l.enabled != Some(false) && !l.distribute.is_empty())
    {
        cluster
            .common_lb_config
            .get_or_insert_with(Default::default)
            .locality_config_specifier = Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
            LocalityWeightedLbConfig {},
        ));
    }
}

/// Istio's circuit breaker thresholds: unlimited unless the connection pool says otherwise.
fn circuit_breakers(policy: Option<&TrafficPolicy>) -> CircuitBreakers {
    let unlimited = || Some(UInt32Value { value: u32::MAX });
    let mut t = Thresholds {
        max_connections: unlimited(),
        max_pending_requests: unlimited(),
        max_requests: unlimited(),
        max_retries: unlimited(),
        ..Default::default()
    };
    let positive = |v: Option<i32>| {
        v.and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
            .map(|value| UInt32Value { value })
    };
    if let Some(cp) = policy.and_then(|p| p.connection_pool.as_ref()) {
        if let Some(tcp) = &cp.tcp
            && let Some(v) = positive(tcp.max_connections)
        {
            t.max_connections = Some(v);
        }
        if let Some(http) = &cp.http {
            if let Some(v) = positive(http.http1_max_pending_requests) {
                t.max_pending_requests = Some(v);
            }
            if let Some(v) = positive(http.http2_max_requests) {
                t.max_requests = Some(v);
            }
            if let Some(v) = positive(http.max_retries) {
                t.max_retries = Some(v);
            }
        }
    }
    CircuitBreakers {
        thresholds: vec![t],
        ..Default::default()
    }
}

/// Istio's outlier detection mapping (success-rate ejection off).
fn outlier_detection(od: &OutlierDetection) -> EnvoyOutlier {
    let u32v = |value: u32| Some(UInt32Value { value });
    let enforcing = |v: u32| u32v(if v > 0 { 100 } else { 0 });
    let mut out = EnvoyOutlier {
        enforcing_success_rate: u32v(0),
        ..Default::default()
    };
    if let Some(v) = od.consecutive_5xx_errors {
        out.consecutive_5xx = u32v(v);
        out.enforcing_consecutive_5xx = enforcing(v);
    }
    // The deprecated `consecutiveErrors` counted gateway errors.
    let gateway = od
        .consecutive_gateway_errors
        .or(od.consecutive_errors.and_then(|v| u32::try_from(v).ok()));
    if let Some(v) = gateway {
        out.consecutive_gateway_failure = u32v(v);
        out.enforcing_consecutive_gateway_failure = enforcing(v);
    }
    if let Some(i) = od.interval {
        out.interval = Some(duration(i.as_std()));
    }
    if let Some(b) = od.base_ejection_time {
        out.base_ejection_time = Some(duration(b.as_std()));
    }
    if let Some(p) = od.max_ejection_percent.filter(|p| *p > 0) {
        out.max_ejection_percent = u32v(u32::try_from(p).unwrap_or(100));
    }
    if od.split_external_local_origin_errors == Some(true) {
        out.split_external_local_origin_errors = true;
        if let Some(v) = od.consecutive_local_origin_failures.filter(|v| *v > 0) {
            out.consecutive_local_origin_failure = u32v(v);
            out.enforcing_consecutive_local_origin_failure = u32v(100);
        }
        out.enforcing_local_origin_success_rate = u32v(0);
    }
    out
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
                typed_extension_protocol_options: if p.tcp {
                    HashMap::new()
                } else {
                    protocol_options(p.http2, None, None)
                },
                ..Default::default()
            }
        })
        .collect()
}

/// Upstream protocol and HTTP connection settings of an outbound cluster.
fn outbound_protocol_options(
    port: &ServicePort,
    policy: Option<&TrafficPolicy>,
    mesh_h2: Option<MeshH2UpgradePolicy>,
) -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    if port.protocol.is_opaque() {
        // A TCP proxy's cluster: no HTTP settings.
        return HashMap::new();
    }
    let cp = policy.and_then(|p| p.connection_pool.as_ref());
    let http = cp.and_then(|cp| cp.http.as_ref());
    let tcp = cp.and_then(|cp| cp.tcp.as_ref());
    let http2 = port.protocol.is_http2()
        || h2_upgrade(port, http.and_then(|h| h.h2_upgrade_policy), mesh_h2);
    let mut common = CommonHttpOptions::default();
    let mut any = false;
    if let Some(t) = http.and_then(|h| h.idle_timeout) {
        common.idle_timeout = Some(duration(t.as_std()));
        any = true;
    }
    if let Some(d) = tcp.and_then(|t| t.max_connection_duration) {
        common.max_connection_duration = Some(duration(d.as_std()));
        any = true;
    }
    if let Some(n) = http
        .and_then(|h| h.max_requests_per_connection)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
    {
        common.max_requests_per_connection = Some(UInt32Value { value: n });
        any = true;
    }
    let streams = http
        .and_then(|h| h.max_concurrent_streams)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0);
    protocol_options(http2, any.then_some(common), streams)
}

/// Istio's `shouldH2Upgrade`: the DestinationRule's `UPGRADE` / `DO_NOT_UPGRADE` decides;
/// otherwise (`DEFAULT` or absent) the mesh-wide policy does, and only for ports declared HTTP
/// (an undeclared, sniffed port keeps the client's protocol).
fn h2_upgrade(
    port: &ServicePort,
    rule: Option<H2UpgradePolicy>,
    mesh: Option<MeshH2UpgradePolicy>,
) -> bool {
    match rule {
        Some(H2UpgradePolicy::Upgrade) => true,
        Some(H2UpgradePolicy::DoNotUpgrade) => false,
        Some(H2UpgradePolicy::Default) | None => {
            mesh == Some(MeshH2UpgradePolicy::Upgrade)
                && port.protocol.is_http()
                && port.protocol != crate::registry::Protocol::Unknown
        }
    }
}

/// Explicit HTTP/1.1 or HTTP/2 (prior knowledge) to the upstream.
fn protocol_options(
    http2: bool,
    common: Option<CommonHttpOptions>,
    max_concurrent_streams: Option<u32>,
) -> HashMap<String, envoy_types::pb::google::protobuf::Any> {
    let config = if http2 {
        ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions {
            max_concurrent_streams: max_concurrent_streams.map(|value| UInt32Value { value }),
            ..Default::default()
        })
    } else {
        ProtocolConfig::HttpProtocolOptions(super::header_case::http1_options())
    };
    let options = HttpProtocolOptions {
        common_http_protocol_options: common,
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

/// TCP keepalive of the connection pool, if configured.
pub fn upstream_connection_options(
    policy: Option<&TrafficPolicy>,
) -> Option<UpstreamConnectionOptions> {
    let ka = policy?
        .connection_pool
        .as_ref()?
        .tcp
        .as_ref()?
        .tcp_keepalive
        .as_ref()?;
    let secs = |d: trellis_api::Duration| {
        Some(UInt32Value {
            value: u32::try_from(d.as_std().as_secs()).unwrap_or(u32::MAX),
        })
    };
    Some(UpstreamConnectionOptions {
        tcp_keepalive: Some(TcpKeepalive {
            keepalive_probes: ka.probes.map(|value| UInt32Value { value }),
            keepalive_time: ka.time.and_then(secs),
            keepalive_interval: ka.interval.and_then(secs),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Protocol;

    fn port(protocol: Protocol) -> ServicePort {
        ServicePort {
            number: 9080,
            name: "p".into(),
            protocol,
            target_port: None,
        }
    }

    #[test]
    fn mesh_wide_upgrade_applies_to_declared_http_ports_unless_the_rule_says_otherwise() {
        let mesh = Some(MeshH2UpgradePolicy::Upgrade);
        let http = port(Protocol::Http);
        assert!(h2_upgrade(&http, None, mesh));
        assert!(h2_upgrade(&http, Some(H2UpgradePolicy::Default), mesh));
        assert!(!h2_upgrade(
            &http,
            Some(H2UpgradePolicy::DoNotUpgrade),
            mesh
        ));
        assert!(!h2_upgrade(&http, None, None));
        assert!(!h2_upgrade(
            &http,
            None,
            Some(MeshH2UpgradePolicy::DoNotUpgrade)
        ));
        // An undeclared (sniffed) port keeps the client's protocol, unless the rule upgrades.
        let sniffed = port(Protocol::Unknown);
        assert!(!h2_upgrade(&sniffed, None, mesh));
        assert!(h2_upgrade(&sniffed, Some(H2UpgradePolicy::Upgrade), None));
    }
}
