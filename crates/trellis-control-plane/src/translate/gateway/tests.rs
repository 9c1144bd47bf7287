//! Router nodes: listeners, chains by SNI, route configurations bound by `gateways:`.

use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use trellis_xds::{NodeIdentity, ProxyType, type_url};

use super::generate;
use crate::model::MeshModel;
use crate::translate::test_support::{decode, decode_any, model, sidecar};

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: 127.0.0.10, labels: {app: echo, version: v1}}
"#;

fn router(labels: &[(&str, &str)]) -> NodeIdentity {
    NodeIdentity {
        proxy_type: ProxyType::Router,
        workload: "ingress".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..sidecar("127.0.0.5", "istio-system")
    }
}

fn gateway_model(extra: &str, credentials: Option<&std::path::Path>) -> MeshModel {
    model(&format!("{SERVICES}\n---\n{extra}"))
        .with_credentials_dir(credentials.map(|p| p.to_path_buf()))
}

fn first_cluster(rc: &RouteConfiguration, host: &str) -> String {
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d == host))
        .unwrap_or_else(|| panic!("no virtual host for {host} in {rc:?}"));
    match vh.routes[0].action.as_ref() {
        Some(route::Action::Route(r)) => match r.cluster_specifier.as_ref() {
            Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

const HTTP_GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: echo, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: unbound, namespace: default}
spec:
  hosts: [other.example.com]
  http:
  - route: [{destination: {host: echo}}]
"#;

#[test]
fn http_servers_route_the_hosts_of_bound_virtual_services() {
    let m = gateway_model(HTTP_GATEWAY, None);
    let out = generate(&m, &router(&[("istio", "ingressgateway")]));
    let listener: Listener = decode(&out, type_url::LISTENER, "0.0.0.0_8080");
    let addr = listener.address.and_then(|a| match a.address {
        Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s)) => {
            Some(s)
        }
        _ => None,
    });
    assert_eq!(addr.map(|a| a.address), Some("127.0.0.5".to_string()));
    assert!(listener.listener_filters.is_empty());
    let rc: RouteConfiguration = decode(&out, type_url::ROUTE, "http.8080");
    assert_eq!(
        first_cluster(&rc, "shop.example.com"),
        "outbound|9080|v1|echo.default.svc.cluster.local"
    );
    // A VirtualService bound to the mesh only is not on the gateway.
    assert_eq!(rc.virtual_hosts.len(), 1, "{rc:?}");
    assert_eq!(
        rc.virtual_hosts[0].domains,
        vec!["shop.example.com", "shop.example.com:*"]
    );
    // Clusters of the mesh are there for the routes.
    assert!(
        out.by_type[type_url::CLUSTER]
            .contains_key("outbound|9080||echo.default.svc.cluster.local")
    );
}

#[test]
fn a_router_whose_labels_do_not_match_gets_no_listener() {
    let m = gateway_model(HTTP_GATEWAY, None);
    let out = generate(&m, &router(&[("istio", "egressgateway")]));
    assert!(out.by_type[type_url::LISTENER].is_empty());
}

#[test]
fn sidecars_ignore_virtual_services_bound_only_to_gateways() {
    let m = gateway_model(HTTP_GATEWAY, None);
    let out = crate::translate::generate(&m, &sidecar("127.0.0.2", "default"));
    let rc: RouteConfiguration = decode(&out, type_url::ROUTE, "outbound");
    // `front` would send to subset v1; the sidecar keeps the default route.
    assert_eq!(
        first_cluster(&rc, "echo.default.svc.cluster.local:9080"),
        "outbound|9080||echo.default.svc.cluster.local"
    );
}

#[test]
fn https_servers_get_chains_by_sni_with_their_credentials() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, files) in [
        ("shop-cert", &["tls.crt", "tls.key"][..]),
        ("api-cert", &["tls.crt", "tls.key", "ca.crt"][..]),
    ] {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in files {
            std::fs::write(dir.join(f), "pem").expect("write");
        }
    }
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https-shop, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop-cert}
  - port: {number: 8443, name: https-api, protocol: HTTPS}
    hosts: [api.example.com]
    tls: {mode: MUTUAL, credentialName: api-cert}
  - port: {number: 8443, name: https-missing, protocol: HTTPS}
    hosts: [missing.example.com]
    tls: {mode: SIMPLE, credentialName: nowhere}
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: [shop.example.com]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: default}
spec:
  hosts: [shop.example.com, api.example.com]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: echo}}]
"#;
    let m = gateway_model(yaml, Some(tmp.path()));
    let out = generate(&m, &router(&[("istio", "ingressgateway")]));
    let listener: Listener = decode(&out, type_url::LISTENER, "0.0.0.0_8443");
    assert_eq!(listener.listener_filters.len(), 1);
    let names: Vec<Vec<String>> = listener
        .filter_chains
        .iter()
        .map(|c| {
            c.filter_chain_match
                .clone()
                .unwrap_or_default()
                .server_names
        })
        .collect();
    // The server whose credential does not resolve is left out.
    assert_eq!(
        names,
        vec![
            vec!["shop.example.com".to_string()],
            vec!["api.example.com".to_string()]
        ]
    );
    let tls_of = |i: usize| -> DownstreamTlsContext {
        let ts = listener.filter_chains[i]
            .transport_socket
            .clone()
            .expect("tls");
        match ts.config_type {
            Some(
                envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                    any,
                ),
            ) => decode_any(&any),
            None => panic!("no tls config"),
        }
    };
    let simple = tls_of(0);
    assert!(simple.require_client_certificate.is_none());
    let common = simple.common_tls_context.expect("common");
    assert!(common.validation_context_type.is_none());
    let cert = format!("{:?}", common.tls_certificates[0].certificate_chain);
    assert!(cert.contains("shop-cert/tls.crt"), "{cert}");
    let mutual = tls_of(1);
    assert_eq!(
        mutual.require_client_certificate.map(|b| b.value),
        Some(true)
    );
    let ca = format!(
        "{:?}",
        mutual
            .common_tls_context
            .expect("common")
            .validation_context_type
    );
    assert!(ca.contains("api-cert/ca.crt"), "{ca}");
    let rc: RouteConfiguration = decode(
        &out,
        type_url::ROUTE,
        "https.8443.https-shop.gw.istio-system",
    );
    assert_eq!(
        first_cluster(&rc, "shop.example.com"),
        "outbound|9080||echo.default.svc.cluster.local"
    );
    // httpsRedirect: a 301 to https on the plaintext port.
    let rc: RouteConfiguration = decode(&out, type_url::ROUTE, "http.8080");
    match rc.virtual_hosts[0].routes[0].action.as_ref() {
        Some(route::Action::Redirect(r)) => assert_eq!(r.response_code, 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn passthrough_servers_route_by_sni_to_tcp_proxies() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: tls, protocol: TLS}
    hosts: ["*.example.com"]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass, namespace: default}
spec:
  hosts: [secure.example.com]
  gateways: [istio-system/gw]
  tls:
  - match: [{sniHosts: [secure.example.com]}]
    route: [{destination: {host: echo, port: {number: 9080}}}]
"#;
    let m = gateway_model(yaml, None);
    let out = generate(&m, &router(&[("istio", "ingressgateway")]));
    let listener: Listener = decode(&out, type_url::LISTENER, "0.0.0.0_9443");
    assert_eq!(listener.filter_chains.len(), 1);
    let chain = &listener.filter_chains[0];
    assert_eq!(
        chain
            .filter_chain_match
            .clone()
            .unwrap_or_default()
            .server_names,
        vec!["secure.example.com"]
    );
    assert!(chain.transport_socket.is_none());
    assert_eq!(chain.filters[0].name, type_url::names::TCP_PROXY);
}
