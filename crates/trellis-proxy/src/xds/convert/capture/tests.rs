//! Captured mode's listener and cluster fields convert, and nothing beyond them.

use envoy_types::pb::envoy::config::cluster::v3::{Cluster as PCluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, BindConfig, SocketAddress, address, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener as PListener, ListenerFilter, filter,
    listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy::ClusterSpecifier,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use trellis_xds::{to_any, type_url};

use super::{ORIGINAL_DST, ORIGINAL_DST_TYPE};
use crate::config;

fn socket(ip: &str, port: u32) -> SocketAddress {
    SocketAddress {
        address: ip.into(),
        port_specifier: Some(PortSpecifier::PortValue(port)),
        ..Default::default()
    }
}

fn addr(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(socket(ip, port))),
    }
}

fn tcp_chain(port: Option<u32>, cluster: &str) -> FilterChain {
    FilterChain {
        filter_chain_match: port.map(|p| FilterChainMatch {
            destination_port: Some(UInt32Value { value: p }),
            ..Default::default()
        }),
        filters: vec![Filter {
            name: type_url::names::TCP_PROXY.into(),
            config_type: Some(filter::ConfigType::TypedConfig(to_any(
                type_url::TCP_PROXY,
                &TcpProxy {
                    stat_prefix: cluster.into(),
                    cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
                    ..Default::default()
                },
            ))),
        }],
        ..Default::default()
    }
}

fn virtual_inbound() -> PListener {
    PListener {
        name: "virtualInbound".into(),
        address: Some(addr("0.0.0.0", 15006)),
        listener_filters: vec![ListenerFilter {
            name: ORIGINAL_DST.into(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(
                ORIGINAL_DST_TYPE,
                &OriginalDst {},
            ))),
            ..Default::default()
        }],
        filter_chains: vec![
            tcp_chain(Some(15006), "BlackHoleCluster"),
            tcp_chain(Some(5432), "inbound|5432||"),
            tcp_chain(None, "InboundPassthroughCluster"),
        ],
        ..Default::default()
    }
}

fn chain_cluster(l: &config::Listener, port: Option<u16>) -> String {
    let (_, chain) = l
        .chain_for_destination(port, config::TransportProtocol::RawBuffer, None)
        .expect("a chain");
    match &chain.tcp_proxy.as_ref().expect("tcp proxy").target {
        config::ClusterTarget::Cluster(c) => c.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn capture_listeners_convert_and_chains_match_the_destination_port() {
    let l = config::Listener::try_from(&virtual_inbound()).expect("converts");
    assert_eq!(
        l.capture,
        config::ListenerCapture {
            use_original_dst: false,
            original_dst_filter: true,
            bind_to_port: true,
        }
    );
    assert_eq!(chain_cluster(&l, Some(5432)), "inbound|5432||");
    assert_eq!(chain_cluster(&l, Some(15006)), "BlackHoleCluster");
    assert_eq!(chain_cluster(&l, Some(8080)), "InboundPassthroughCluster");
    assert_eq!(chain_cluster(&l, None), "InboundPassthroughCluster");

    let outbound = PListener {
        name: "virtualOutbound".into(),
        address: Some(addr("0.0.0.0", 15001)),
        use_original_dst: Some(BoolValue { value: true }),
        filter_chains: vec![tcp_chain(None, "PassthroughCluster")],
        ..Default::default()
    };
    let l = config::Listener::try_from(&outbound).expect("converts");
    assert!(l.capture.use_original_dst && l.capture.bind_to_port);
    let unbound = PListener {
        name: "0.0.0.0_5432".into(),
        bind_to_port: Some(BoolValue { value: false }),
        ..outbound
    };
    let l = config::Listener::try_from(&unbound).expect("converts");
    assert!(!l.capture.bind_to_port);
}

#[test]
fn same_port_and_protocol_twice_is_an_overlap_and_port_zero_is_refused() {
    let mut l = virtual_inbound();
    l.filter_chains.push(tcp_chain(Some(5432), "other"));
    let err = config::Listener::try_from(&l)
        .expect_err("overlap")
        .to_string();
    assert!(err.contains("filter_chains[3].filter_chain_match"), "{err}");
    let mut l = virtual_inbound();
    l.filter_chains[1] = tcp_chain(Some(70000), "x");
    let err = config::Listener::try_from(&l)
        .expect_err("port")
        .to_string();
    assert!(
        err.contains("filter_chains[1].filter_chain_match.destination_port"),
        "{err}"
    );
}

#[test]
fn original_dst_clusters_take_an_upstream_source_address() {
    let c = PCluster {
        name: "inbound|9080||".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        upstream_bind_config: Some(BindConfig {
            source_address: Some(socket("127.0.0.6", 0)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let converted = config::Cluster::try_from(&c).expect("converts");
    assert_eq!(
        converted.upstream_bind,
        Some("127.0.0.6".parse().expect("ip"))
    );
    let mut bad = c.clone();
    bad.upstream_bind_config = Some(BindConfig {
        source_address: Some(socket("127.0.0.6", 40000)),
        ..Default::default()
    });
    let err = config::Cluster::try_from(&bad)
        .expect_err("port")
        .to_string();
    assert!(
        err.contains("upstream_bind_config.source_address.port_value"),
        "{err}"
    );
    let mut bad = c;
    bad.upstream_bind_config = Some(BindConfig {
        source_address: Some(socket("127.0.0.6", 0)),
        freebind: Some(BoolValue { value: true }),
        ..Default::default()
    });
    let err = config::Cluster::try_from(&bad)
        .expect_err("freebind")
        .to_string();
    assert!(err.contains("upstream_bind_config.freebind"), "{err}");
}

/// A sniffed port: the HTTP inspector, TCP chains told apart by `application_protocols`.
fn sniffed(inspector: bool, protocols: &[&str]) -> PListener {
    let mut http = tcp_chain(None, "http");
    http.filter_chain_match = Some(FilterChainMatch {
        transport_protocol: "raw_buffer".into(),
        application_protocols: protocols.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    });
    let mut raw = tcp_chain(None, "tcp");
    raw.filter_chain_match = Some(FilterChainMatch {
        transport_protocol: "raw_buffer".into(),
        ..Default::default()
    });
    PListener {
        name: "0.0.0.0_2525".into(),
        address: Some(addr("0.0.0.0", 2525)),
        bind_to_port: Some(BoolValue { value: false }),
        listener_filters: inspector
            .then(|| ListenerFilter {
                name: super::super::listener::HTTP_INSPECTOR.into(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(
                    envoy_types::pb::google::protobuf::Any {
                        type_url: super::super::listener::HTTP_INSPECTOR_TYPE.into(),
                        value: Vec::new(),
                    },
                )),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        filter_chains: vec![http, raw, tcp_chain(None, "tls")],
        ..Default::default()
    }
}

#[test]
fn application_protocols_pick_the_sniffed_chain_in_envoys_order() {
    let l = config::Listener::try_from(&sniffed(true, &["http/1.0", "http/1.1", "h2c"]))
        .expect("converts");
    assert!(l.http_inspector);
    let pick = |transport, app| {
        let (i, _) = l
            .chain_for_connection(Some(2525), transport, None, app)
            .expect("a chain");
        i
    };
    use config::TransportProtocol::{RawBuffer, Tls};
    assert_eq!(pick(RawBuffer, Some("http/1.1")), 0);
    assert_eq!(pick(RawBuffer, Some("h2c")), 0);
    assert_eq!(pick(RawBuffer, None), 1);
    assert_eq!(pick(Tls, None), 2);
}

#[test]
fn application_protocols_need_the_inspector_and_its_values() {
    let err = config::Listener::try_from(&sniffed(false, &["http/1.1"])).expect_err("no inspector");
    assert!(
        err.to_string()
            .contains("filter_chains[0].filter_chain_match.application_protocols"),
        "{err}"
    );
    let err =
        config::Listener::try_from(&sniffed(true, &["istio-http/1.1"])).expect_err("an ALPN value");
    assert!(
        err.to_string().contains("application_protocols[0]"),
        "{err}"
    );
}
