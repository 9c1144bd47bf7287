//! The Envoy bootstrap: node identity, admin, and ADS to the control plane. Everything else
//! arrives over xDS, exactly as for the Trellis proxy.

use serde_json::json;

use crate::AgentConfig;

/// The name of the static cluster that reaches the control plane.
const XDS_CLUSTER: &str = "xds-grpc";
/// The name of the static cluster that reaches the agent's SDS server.
pub const SDS_CLUSTER: &str = "sds-grpc";

/// Istio's bootstrap regex for the `cluster_name` stats tag (mesh hosts keep their domain).
const CLUSTER_NAME_TAG: &str = r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)";

/// The bootstrap JSON for `config`.
pub fn bootstrap(config: &AgentConfig) -> serde_json::Value {
    let node = &config.node;
    let socket = |addr: std::net::SocketAddr| json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}});
    let http2 = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    });
    let mut xds_cluster = json!({
        "name": XDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": http2,
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(config.xds_address)}}]}],
        },
    });
    let mut clusters = Vec::new();
    if let Some(security) = &config.security {
        xds_cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": crate::identity::CONTROL_PLANE_SNI,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": {"filename": security.root_cert_file.display().to_string()},
                        "match_typed_subject_alt_names": [{
                            "san_type": "DNS",
                            "matcher": {"exact": crate::identity::CONTROL_PLANE_SNI},
                        }],
                    },
                },
            },
        });
        clusters.push(json!({
            "name": SDS_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": http2,
            "load_assignment": {
                "cluster_name": SDS_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": security.sds_socket.display().to_string()}}}}]}],
            },
        }));
    }
    clusters.insert(0, xds_cluster);
    json!({
        "node": {
            "id": node.node_id(),
            "cluster": format!("{}.{}", node.workload, node.namespace),
            "metadata": node.metadata_json(),
        },
        "admin": {"address": socket(config.admin_address)},
        // Istio's cluster-name tag: Envoy's default one stops at the first dot, which splits
        // `outbound|9080||reviews.default.svc.cluster.local` into a bogus name and metric.
        "stats_config": {
            "stats_tags": [{"tag_name": "envoy.cluster_name", "regex": CLUSTER_NAME_TAG}],
            "allow_default_tag_overrides": true,
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": true,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": clusters},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_xds::{NodeIdentity, ProxyType};

    #[test]
    fn bootstrap_carries_node_identity_and_ads() {
        let config = AgentConfig {
            node: NodeIdentity {
                proxy_type: ProxyType::Sidecar,
                ip: "127.0.10.2".parse().expect("ip"),
                workload: "echo-v1".into(),
                namespace: "default".into(),
                service_account: "echo".into(),
                labels: [("app".to_string(), "echo".to_string())].into(),
                app_ip: Some("127.0.10.102".parse().expect("ip")),
                sds: false,
                interception: trellis_xds::InterceptionMode::None,
            },
            xds_address: "127.0.10.1:15010".parse().expect("addr"),
            admin_address: "127.0.10.2:15000".parse().expect("addr"),
            envoy: None,
            bootstrap_out: None,
            concurrency: 1,
            security: None,
            health_address: None,
            drain_duration: std::time::Duration::from_secs(5),
        };
        let b = bootstrap(&config);
        assert_eq!(
            b["node"]["id"],
            "sidecar~127.0.10.2~echo-v1.default~default.svc.cluster.local"
        );
        assert_eq!(b["node"]["metadata"]["TRELLIS_APP_IP"], "127.0.10.102");
        assert_eq!(b["node"]["metadata"]["LABELS"]["app"], "echo");
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 15000);
        let xds = &b["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
            [0];
        assert_eq!(
            xds["endpoint"]["address"]["socket_address"]["address"],
            "127.0.10.1"
        );
        assert_eq!(
            xds["endpoint"]["address"]["socket_address"]["port_value"],
            15010
        );
    }
}
