//! Translation tests: Istio YAML in, decoded Envoy resources out.

use std::path::Path;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route, route_action::ClusterSpecifier,
};
use prost::Message;
use trellis_xds::{NodeIdentity, ProxyType, type_url};

use super::generate;
use crate::model::MeshModel;
use crate::xds::ProxyResources;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: grpc, namespace: default}
spec:
  hosts: [grpc.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: grpc}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: 127.0.9.10, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: default}
spec: {address: 127.0.9.11, labels: {app: echo, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{headers: {end-user: {exact: jason}}}, {uri: {prefix: /v2}}]
    route: [{destination: {host: echo, subset: v2}}]
  - route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
"#;

fn model() -> MeshModel {
    let parsed = trellis_api::parse_documents(Path::new("mesh.yaml"), MESH);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    MeshModel::build(&parsed.resources)
}

fn node(ip: &str, workload: &str) -> NodeIdentity {
    NodeIdentity {
        proxy_type: ProxyType::Sidecar,
        ip: ip.parse().expect("ip"),
        workload: workload.into(),
        namespace: "default".into(),
        service_account: "default".into(),
        labels: Default::default(),
        app_ip: Some("127.0.9.110".parse().expect("ip")),
    }
}

fn decode<M: Message + Default>(out: &ProxyResources, type_url: &str, name: &str) -> M {
    let any = out
        .by_type
        .get(type_url)
        .and_then(|m| m.get(name))
        .unwrap_or_else(|| panic!("no {type_url} named {name}"));
    M::decode(any.value.as_slice()).expect("decodes")
}

#[test]
fn client_gets_outbound_clusters_for_every_service_port_and_subset() {
    let out = generate(&model(), &node("127.0.9.2", "client"));
    let names: Vec<&String> = out.by_type[type_url::CLUSTER].keys().collect();
    assert_eq!(
        names,
        [
            "outbound|80|v1|echo.default.svc.cluster.local",
            "outbound|80|v2|echo.default.svc.cluster.local",
            "outbound|80||echo.default.svc.cluster.local",
            "outbound|9000||grpc.default.svc.cluster.local",
        ]
    );
    let cluster: Cluster = decode(
        &out,
        type_url::CLUSTER,
        "outbound|80|v1|echo.default.svc.cluster.local",
    );
    assert_eq!(
        cluster.lb_policy, 1,
        "LEAST_REQUEST from the DestinationRule"
    );
    let grpc: Cluster = decode(
        &out,
        type_url::CLUSTER,
        "outbound|9000||grpc.default.svc.cluster.local",
    );
    let options = &grpc.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    let options =
        envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions::decode(
            options.value.as_slice(),
        )
        .expect("decodes");
    assert!(
        format!("{options:?}").contains("Http2ProtocolOptions"),
        "gRPC ports use HTTP/2 upstream"
    );
}

#[test]
fn subset_endpoints_are_filtered_by_labels() {
    let out = generate(&model(), &node("127.0.9.2", "client"));
    let addresses = |name: &str| -> Vec<String> {
        let cla: ClusterLoadAssignment = decode(&out, type_url::ENDPOINT, name);
        cla.endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .filter_map(|e| match &e.host_identifier {
                Some(HostIdentifier::Endpoint(ep)) => Some(format!("{:?}", ep.address)),
                _ => None,
            })
            .collect()
    };
    let v1 = addresses("outbound|80|v1|echo.default.svc.cluster.local");
    assert_eq!(v1.len(), 1);
    assert!(
        v1[0].contains("127.0.9.10") && v1[0].contains("PortValue(80)"),
        "{v1:?}"
    );
    assert_eq!(
        addresses("outbound|80||echo.default.svc.cluster.local").len(),
        2
    );
    assert!(addresses("outbound|9000||grpc.default.svc.cluster.local").is_empty());
}

#[test]
fn virtual_service_rules_become_ordered_routes() {
    let out = generate(&model(), &node("127.0.9.2", "client"));
    let routes: RouteConfiguration = decode(&out, type_url::ROUTE, "outbound");
    let vhost = routes
        .virtual_hosts
        .iter()
        .find(|v| v.name == "echo.default.svc.cluster.local:80")
        .expect("echo vhost");
    for domain in [
        "echo",
        "echo:80",
        "echo.default",
        "echo.default.svc.cluster.local:80",
    ] {
        assert!(
            vhost.domains.iter().any(|d| d == domain),
            "missing {domain} in {:?}",
            vhost.domains
        );
    }
    // Two matches of the first rule (OR-ed) become two routes, then the weighted default.
    assert_eq!(vhost.routes.len(), 3);
    assert_eq!(
        vhost.routes[0].r#match.as_ref().map(|m| m.headers.len()),
        Some(1)
    );
    let Some(route::Action::Route(last)) = &vhost.routes[2].action else {
        panic!("route action expected");
    };
    let Some(ClusterSpecifier::WeightedClusters(weighted)) = &last.cluster_specifier else {
        panic!("weighted clusters expected");
    };
    let weights: Vec<(String, u32)> = weighted
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.weight.as_ref().map_or(0, |w| w.value)))
        .collect();
    assert_eq!(
        weights,
        [
            (
                "outbound|80|v1|echo.default.svc.cluster.local".to_string(),
                80
            ),
            (
                "outbound|80|v2|echo.default.svc.cluster.local".to_string(),
                20
            )
        ]
    );
}

#[test]
fn short_names_only_resolve_for_clients_in_the_same_namespace() {
    let mut other = node("127.0.9.3", "client");
    other.namespace = "other".into();
    let out = generate(&model(), &other);
    let routes: RouteConfiguration = decode(&out, type_url::ROUTE, "outbound");
    let vhost = &routes.virtual_hosts[0];
    assert!(
        !vhost.domains.iter().any(|d| d == "echo" || d == "echo:80"),
        "{:?}",
        vhost.domains
    );
    assert!(vhost.domains.iter().any(|d| d == "echo.default"));
}

#[test]
fn workload_gets_inbound_listener_and_cluster_to_its_app() {
    let out = generate(&model(), &node("127.0.9.10", "echo-v1"));
    let listener: Listener = decode(&out, type_url::LISTENER, "inbound|80");
    assert!(format!("{:?}", listener.address).contains("127.0.9.10"));
    let cluster: Cluster = decode(&out, type_url::CLUSTER, "inbound|80||");
    assert!(
        format!("{:?}", cluster.load_assignment).contains("127.0.9.110"),
        "forwards to the app IP"
    );
    let client = generate(&model(), &node("127.0.9.2", "client"));
    assert_eq!(
        client.by_type[type_url::LISTENER].len(),
        1,
        "a client has only the outbound listener"
    );
}
