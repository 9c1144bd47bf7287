//! Captured-mode translation: Istio YAML in, the listeners, routes and clusters of a
//! `REDIRECT` sidecar out.

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster::ClusterDiscoveryType};
use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route, route_action::ClusterSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier as TcpTarget,
};
use trellis_xds::{InterceptionMode, NodeIdentity, type_url};

use super::super::generate;
use super::super::test_support::{self, decode, decode_any};
use super::{BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER};
use crate::xds::ProxyResources;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 10.9.0.11, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db, namespace: default}
spec: {address: 10.9.0.12, labels: {app: db}}
"#;

const REGISTRY_ONLY: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#;

fn captured(ip: &str, sds: bool) -> NodeIdentity {
    NodeIdentity {
        interception: InterceptionMode::Redirect,
        sds,
        ..test_support::sidecar(ip, "default")
    }
}

fn resources(yaml: &str, node: &NodeIdentity) -> ProxyResources {
    generate(&test_support::model(yaml), node)
}

fn listener(out: &ProxyResources, name: &str) -> Listener {
    decode(out, type_url::LISTENER, name)
}

fn cluster(out: &ProxyResources, name: &str) -> Cluster {
    decode(out, type_url::CLUSTER, name)
}

fn tcp_target(filter: &Filter) -> String {
    let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("filter {} has no typed config", filter.name);
    };
    match decode_any::<TcpProxy>(any).cluster_specifier {
        Some(TcpTarget::Cluster(c)) => c,
        other => panic!("unexpected tcp_proxy target {other:?}"),
    }
}

fn hcm(filter: &Filter) -> HttpConnectionManager {
    let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("filter {} has no typed config", filter.name);
    };
    decode_any(any)
}

fn discovery(c: &Cluster) -> Option<ClusterDiscoveryType> {
    c.cluster_discovery_type.clone()
}

#[test]
fn explicit_mode_is_unchanged_by_capture() {
    let node = test_support::sidecar("10.9.0.2", "default");
    let out = resources(MESH, &node);
    let names: Vec<&String> = out.by_type[type_url::LISTENER].keys().collect();
    assert!(
        names.iter().all(|n| !n.starts_with("virtualInbound")),
        "{names:?}"
    );
    assert!(out.by_type[type_url::ROUTE].contains_key("outbound"));
    assert!(!out.by_type[type_url::CLUSTER].contains_key(PASSTHROUGH_CLUSTER));
}

#[test]
fn virtual_outbound_hands_over_by_original_destination_and_passes_the_rest_through() {
    let out = resources(MESH, &captured("10.9.0.2", false));
    let names: Vec<&String> = out.by_type[type_url::LISTENER].keys().collect();
    assert_eq!(
        names,
        [
            "0.0.0.0_5432",
            "0.0.0.0_9080",
            "virtualInbound",
            "virtualOutbound"
        ]
    );
    let outbound = listener(&out, "virtualOutbound");
    assert_eq!(outbound.use_original_dst.map(|b| b.value), Some(true));
    assert!(format!("{:?}", outbound.address).contains("0.0.0.0"));
    assert_eq!(outbound.filter_chains.len(), 2);
    let blackhole = &outbound.filter_chains[0];
    assert_eq!(
        blackhole
            .filter_chain_match
            .as_ref()
            .and_then(|m| m.destination_port.as_ref())
            .map(|p| p.value),
        Some(15001),
        "a connection made to 15001 itself must not loop"
    );
    assert_eq!(tcp_target(&blackhole.filters[0]), BLACKHOLE_CLUSTER);
    assert_eq!(
        tcp_target(&outbound.filter_chains[1].filters[0]),
        PASSTHROUGH_CLUSTER
    );
    let passthrough = cluster(&out, PASSTHROUGH_CLUSTER);
    assert_eq!(
        discovery(&passthrough),
        Some(ClusterDiscoveryType::Type(
            envoy_types::pb::envoy::config::cluster::v3::cluster::DiscoveryType::OriginalDst as i32
        ))
    );
    assert!(passthrough.upstream_bind_config.is_none());
}

#[test]
fn service_ports_get_unbound_listeners_with_per_port_routes() {
    let out = resources(MESH, &captured("10.9.0.2", false));
    let http = listener(&out, "0.0.0.0_9080");
    assert_eq!(http.bind_to_port.map(|b| b.value), Some(false));
    let manager = hcm(&http.filter_chains[0].filters[0]);
    let Some(RouteSpecifier::Rds(rds)) = manager.route_specifier else {
        panic!("the HTTP listener uses RDS");
    };
    assert_eq!(rds.route_config_name, "9080");
    let routes: RouteConfiguration = decode(&out, type_url::ROUTE, "9080");
    let reviews = &routes.virtual_hosts[0];
    for domain in [
        "reviews",
        "reviews:9080",
        "reviews.default.svc.cluster.local",
    ] {
        assert!(
            reviews.domains.iter().any(|d| d == domain),
            "{domain} in {:?}",
            reviews.domains
        );
    }
    let last = routes.virtual_hosts.last().expect("catch-all");
    assert_eq!(last.name, "allow_any");
    let Some(route::Action::Route(action)) = &last.routes[0].action else {
        panic!("allow_any routes");
    };
    assert_eq!(
        action.cluster_specifier,
        Some(ClusterSpecifier::Cluster(PASSTHROUGH_CLUSTER.into()))
    );
    let tcp = listener(&out, "0.0.0.0_5432");
    assert_eq!(tcp.bind_to_port.map(|b| b.value), Some(false));
    assert_eq!(
        tcp_target(&tcp.filter_chains[0].filters[0]),
        "outbound|5432||db.default.svc.cluster.local"
    );
}

#[test]
fn registry_only_refuses_unknown_destinations() {
    let out = resources(
        &format!("{MESH}{REGISTRY_ONLY}"),
        &captured("10.9.0.2", false),
    );
    let outbound = listener(&out, "virtualOutbound");
    assert_eq!(
        tcp_target(&outbound.filter_chains[1].filters[0]),
        BLACKHOLE_CLUSTER
    );
    let routes: RouteConfiguration = decode(&out, type_url::ROUTE, "9080");
    let names: Vec<&str> = routes
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert!(names.contains(&"block_all"), "{names:?}");
    assert!(!names.contains(&"allow_any"), "{names:?}");
}

#[test]
fn virtual_inbound_matches_served_ports_and_reaches_the_app_from_127_0_0_6() {
    let node = NodeIdentity {
        labels: [("app".to_string(), "reviews".to_string())].into(),
        ..captured("10.9.0.11", true)
    };
    let out = resources(MESH, &node);
    let inbound = listener(&out, "virtualInbound");
    assert!(format!("{:?}", inbound.address).contains("15006"));
    let filters: Vec<&str> = inbound
        .listener_filters
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector"
        ]
    );
    // PERMISSIVE (the default): mutual TLS and plaintext chains for 9080, then the catch-alls.
    let chains: Vec<(Option<u32>, String, &str)> = inbound
        .filter_chains
        .iter()
        .map(|c| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            (
                m.destination_port.map(|p| p.value),
                m.transport_protocol,
                c.name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        chains,
        [
            (Some(15006), String::new(), "virtualInbound-blackhole"),
            (Some(9080), "tls".into(), "0.0.0.0_9080_tls"),
            (Some(9080), "raw_buffer".into(), "0.0.0.0_9080_plaintext"),
            (None, "tls".into(), "virtualInbound-catchall-tls"),
            (None, "raw_buffer".into(), "virtualInbound-catchall-tcp"),
        ]
    );
    assert!(inbound.filter_chains[1].transport_socket.is_some());
    let manager = hcm(&inbound.filter_chains[2].filters[0]);
    assert!(
        manager.forward_client_cert_details != 0,
        "the inbound HCM of explicit mode (XFCC, authz, telemetry) is reused"
    );
    for name in ["inbound|9080||", INBOUND_PASSTHROUGH_CLUSTER] {
        let c = cluster(&out, name);
        assert!(c.load_assignment.is_none(), "{name}: ORIGINAL_DST");
        let bind = c
            .upstream_bind_config
            .and_then(|b| b.source_address)
            .expect("upstream bind");
        assert_eq!(bind.address, "127.0.0.6", "{name}");
    }
}

#[test]
fn strict_mtls_refuses_plaintext_to_undeclared_ports() {
    let strict = r#"
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
"#;
    let out = resources(&format!("{MESH}{strict}"), &captured("10.9.0.11", true));
    let inbound = listener(&out, "virtualInbound");
    let names: Vec<&str> = inbound
        .filter_chains
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert!(names.contains(&"virtualInbound-catchall-tls"), "{names:?}");
    assert!(!names.contains(&"virtualInbound-catchall-tcp"), "{names:?}");
}

const SNIFFED: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mail, namespace: default}
spec:
  hosts: [mail.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 2525, name: smtp}]
  workloadSelector: {labels: {app: mail}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: mail, namespace: default}
spec: {address: 10.9.0.13, labels: {app: mail}}
"#;

fn inspectors(l: &Listener) -> Vec<String> {
    l.listener_filters.iter().map(|f| f.name.clone()).collect()
}

#[test]
fn a_port_without_a_declared_protocol_is_sniffed_outbound() {
    let out = resources(&format!("{MESH}{SNIFFED}"), &captured("10.9.0.10", true));
    let l = listener(&out, "0.0.0.0_2525");
    assert_eq!(
        inspectors(&l),
        [
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    let matches: Vec<_> = l
        .filter_chains
        .iter()
        .map(|c| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            (m.transport_protocol, m.application_protocols)
        })
        .collect();
    assert_eq!(
        matches,
        [
            (
                "raw_buffer".to_string(),
                vec!["http/1.0".to_string(), "http/1.1".into(), "h2c".into()]
            ),
            ("raw_buffer".to_string(), vec![]),
            (String::new(), vec![]),
        ]
    );
    assert_eq!(
        hcm(&l.filter_chains[0].filters[0]).route_specifier,
        Some(RouteSpecifier::Rds(
            envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds {
                config_source: Some(super::super::proto::ads()),
                route_config_name: "2525".into(),
            }
        ))
    );
    for chain in &l.filter_chains[1..] {
        assert_eq!(
            tcp_target(&chain.filters[0]),
            "outbound|2525||mail.default.svc.cluster.local"
        );
    }
    // A declared HTTP port is not sniffed.
    assert!(inspectors(&listener(&out, "0.0.0.0_9080")).is_empty());
}

#[test]
fn a_served_port_without_a_declared_protocol_is_sniffed_inbound() {
    let out = resources(&format!("{MESH}{SNIFFED}"), &captured("10.9.0.13", true));
    let l = listener(&out, "virtualInbound");
    assert_eq!(
        inspectors(&l),
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    let on_port: Vec<_> = l
        .filter_chains
        .iter()
        .filter(|c| {
            c.filter_chain_match
                .as_ref()
                .and_then(|m| m.destination_port.as_ref())
                .is_some_and(|p| p.value == 2525)
        })
        .map(|c| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            (
                c.name.clone(),
                m.transport_protocol,
                m.application_protocols.len(),
            )
        })
        .collect();
    assert_eq!(
        on_port,
        [
            ("0.0.0.0_2525_tls".to_string(), "tls".to_string(), 0),
            ("0.0.0.0_2525_plaintext".to_string(), "raw_buffer".into(), 3),
            (
                "0.0.0.0_2525_plaintext-tcp".to_string(),
                "raw_buffer".into(),
                0
            ),
        ]
    );
    let tcp = l
        .filter_chains
        .iter()
        .find(|c| c.name == "0.0.0.0_2525_plaintext-tcp")
        .expect("tcp chain");
    assert_eq!(
        tcp_target(tcp.filters.last().expect("filter")),
        "inbound|2525||"
    );
}
