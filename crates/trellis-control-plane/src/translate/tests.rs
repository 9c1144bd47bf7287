//! Translation tests: Istio YAML in, decoded Envoy resources out.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route, route_action::ClusterSpecifier,
};
use trellis_xds::{NodeIdentity, type_url};

use super::generate;
use super::test_support::{self, decode, decode_any};
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
    test_support::model(MESH)
}

fn node(ip: &str, workload: &str) -> NodeIdentity {
    NodeIdentity {
        workload: workload.into(),
        app_ip: Some("127.0.9.110".parse().expect("ip")),
        ..test_support::sidecar(ip, "default")
    }
}

/// What a client sidecar (127.0.9.2) in `default` gets.
fn client_resources(model: &MeshModel) -> ProxyResources {
    generate(model, &node("127.0.9.2", "client"))
}

/// The cluster `name` in `out`.
fn cluster_named(out: &ProxyResources, name: &str) -> Cluster {
    decode(out, type_url::CLUSTER, name)
}

/// The `outbound` route table in `out`.
fn outbound_routes(out: &ProxyResources) -> RouteConfiguration {
    decode(out, type_url::ROUTE, "outbound")
}

#[test]
fn client_gets_outbound_clusters_for_every_service_port_and_subset() {
    let out = client_resources(&model());
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
    let cluster = cluster_named(&out, "outbound|80|v1|echo.default.svc.cluster.local");
    assert_eq!(
        cluster.lb_policy, 1,
        "LEAST_REQUEST from the DestinationRule"
    );
    let grpc = cluster_named(&out, "outbound|9000||grpc.default.svc.cluster.local");
    let options = &grpc.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
    let options = decode_any::<
        envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions,
    >(options);
    assert!(
        format!("{options:?}").contains("Http2ProtocolOptions"),
        "gRPC ports use HTTP/2 upstream"
    );
}

#[test]
fn subset_endpoints_are_filtered_by_labels() {
    let out = client_resources(&model());
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
    let out = client_resources(&model());
    let routes = outbound_routes(&out);
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
    let routes = outbound_routes(&out);
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
    let cluster = cluster_named(&out, "inbound|80||");
    assert!(
        format!("{:?}", cluster.load_assignment).contains("127.0.9.110"),
        "forwards to the app IP"
    );
    let client = client_resources(&model());
    assert_eq!(
        client.by_type[type_url::LISTENER].len(),
        1,
        "a client has only the outbound listener"
    );
}

// ---- traffic management (issue 3) ----

use envoy_types::pb::envoy::config::endpoint::v3::LocalityLbEndpoints;
use envoy_types::pb::envoy::config::route::v3::{
    Route, header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier,
};

const BASE: &str = r#"
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
spec: {address: 127.0.9.10, labels: {app: echo, version: v1}, locality: us-east/zone-a}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: default}
spec: {address: 127.0.9.11, labels: {app: echo, version: v2}, locality: eu-west/zone-b}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: default}
spec: {address: 127.0.9.2, labels: {app: client, role: tester}, locality: us-east/zone-a}
"#;

fn model_with(extra: &str) -> MeshModel {
    test_support::model(&format!("{BASE}---\n{extra}"))
}

fn echo_routes(model: &MeshModel) -> Vec<Route> {
    let out = client_resources(model);
    let routes = outbound_routes(&out);
    routes
        .virtual_hosts
        .into_iter()
        .find(|v| v.name == "echo.default.svc.cluster.local:9080")
        .expect("echo vhost")
        .routes
}

fn action(r: &Route) -> &envoy_types::pb::envoy::config::route::v3::RouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("route action expected, got {other:?}"),
    }
}

#[test]
fn every_match_field_is_translated() {
    let m = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match:
    - uri: {prefix: /Api}
      ignoreUriCase: true
      method: {exact: POST}
      scheme: {exact: http}
      authority: {prefix: echo}
      headers: {x-a: {regex: "[0-9]+"}, x-p: {prefix: ""}}
      withoutHeaders: {x-b: {exact: "no"}}
      queryParams: {q: {exact: "1"}}
    - port: 1234
    - sourceLabels: {role: other}
    - sourceNamespace: other
    - gateways: [ingress]
    route: [{destination: {host: echo}}]
"#,
    );
    let routes = echo_routes(&m);
    assert_eq!(
        routes.len(),
        1,
        "port, source and gateway matches do not apply here"
    );
    let rm = routes[0].r#match.as_ref().expect("match");
    assert_eq!(rm.case_sensitive, Some(BoolValue { value: false }));
    let names: Vec<&str> = rm.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [":method", ":scheme", ":authority", "x-a", "x-p", "x-b"]
    );
    assert!(rm.headers[5].invert_match);
    assert_eq!(
        rm.headers[4].header_match_specifier,
        Some(HeaderMatchSpecifier::PresentMatch(true))
    );
    assert_eq!(rm.query_parameters.len(), 1);
    assert!(matches!(
        rm.query_parameters[0].query_parameter_match_specifier,
        Some(QueryParameterMatchSpecifier::StringMatch(_))
    ));
    // No retries given: Istio's default policy.
    let retry = action(&routes[0])
        .retry_policy
        .as_ref()
        .expect("default retry policy");
    assert_eq!(retry.num_retries, Some(UInt32Value { value: 2 }));
    assert_eq!(retry.retriable_status_codes, [503]);
    assert!(retry.retry_on.contains("connect-failure"));
    assert_eq!(retry.retry_host_predicate.len(), 1);
}

use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

#[test]
fn source_labels_come_from_the_proxys_workload_entry() {
    let m = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{sourceLabels: {role: tester}}]
    directResponse: {status: 418}
  - route: [{destination: {host: echo}}]
"#,
    );
    let routes = echo_routes(&m);
    assert_eq!(routes.len(), 2);
    assert!(
        matches!(routes[0].action, Some(route::Action::DirectResponse(ref d)) if d.status == 418)
    );
}

#[test]
fn actions_redirect_rewrite_retries_fault_mirror_cors_headers() {
    let m = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: x.example.com, scheme: https, redirectCode: 308}
  - match: [{uri: {prefix: /r}}]
    rewrite: {uri: /s, authority: backend}
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 100ms, retryOn: "gateway-error,503"}
    fault:
      delay: {fixedDelay: 1s, percentage: {value: 12.5}}
      abort: {grpcStatus: UNAVAILABLE}
    mirror: {host: echo}
    mirrorPercentage: {value: 50}
    corsPolicy: {allowOrigins: [{exact: "https://a"}], allowMethods: [GET, POST], maxAge: 1m}
    headers: {request: {set: {x-s: "1"}, add: {x-a: "2"}, remove: [x-r]}}
    route:
    - {destination: {host: echo}, weight: 60, headers: {response: {set: {x-d: "1"}}}}
    - {destination: {host: echo}, weight: 40}
  - route: [{destination: {host: echo}}]
    retries: {attempts: 0}
"#,
    );
    let routes = echo_routes(&m);
    let Some(route::Action::Redirect(r)) = &routes[0].action else {
        panic!("redirect expected");
    };
    assert_eq!(
        (r.host_redirect.as_str(), r.response_code),
        ("x.example.com", 4)
    );
    let a = action(&routes[1]);
    assert_eq!(a.prefix_rewrite, "/s");
    assert_eq!(a.timeout.as_ref().map(|t| t.seconds), Some(2));
    let retry = a.retry_policy.as_ref().expect("retry policy");
    assert_eq!(retry.retry_on, "gateway-error,retriable-status-codes");
    assert_eq!(retry.retriable_status_codes, [503]);
    assert_eq!(retry.num_retries, Some(UInt32Value { value: 3 }));
    assert_eq!(a.request_mirror_policies.len(), 1);
    let fraction = a.request_mirror_policies[0]
        .runtime_fraction
        .as_ref()
        .and_then(|f| f.default_value.as_ref())
        .expect("fraction");
    assert_eq!(fraction.numerator, 500_000);
    let Some(ClusterSpecifier::WeightedClusters(w)) = &a.cluster_specifier else {
        panic!("weighted expected");
    };
    assert_eq!(w.clusters[0].response_headers_to_add.len(), 1);
    assert!(w.clusters[1].response_headers_to_add.is_empty());
    assert_eq!(routes[1].request_headers_to_add.len(), 2);
    assert_eq!(routes[1].request_headers_to_remove, ["x-r"]);
    let fault = &routes[1].typed_per_filter_config["envoy.filters.http.fault"];
    let fault = decode_any::<envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault>(
        fault,
    );
    assert_eq!(
        fault.delay.and_then(|d| d.percentage).map(|p| p.numerator),
        Some(125_000)
    );
    assert!(format!("{:?}", fault.abort).contains("GrpcStatus(14)"));
    assert!(
        routes[1]
            .typed_per_filter_config
            .contains_key("envoy.filters.http.cors")
    );
    assert!(
        action(&routes[2]).retry_policy.is_none(),
        "attempts 0: no retries"
    );
    // The listener's filter chain: fault, cors, router.
    let out = client_resources(&m);
    let listener: Listener = decode(&out, type_url::LISTENER, "virtualOutbound");
    let Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any)) =
        &listener.filter_chains[0].filters[0].config_type
    else {
        panic!("typed config expected");
    };
    let hcm = decode_any::<envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager>(any);
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.fault",
            "envoy.filters.http.cors",
            "envoy.filters.http.router"
        ]
    );
}

#[test]
fn delegates_are_merged_in_place_and_anded() {
    let m = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - match: [{uri: {prefix: /api}}]
    delegate: {name: api}
    timeout: 3s
  - route: [{destination: {host: echo}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  http:
  - match: [{uri: {prefix: /api/v2}}, {uri: {prefix: /other}}]
    route: [{destination: {host: echo}}]
  - match: [{headers: {x: {exact: "1"}}}]
    route: [{destination: {host: echo}}]
"#,
    );
    let routes = echo_routes(&m);
    // /api/v2 (and /other, which contradicts /api, is dropped); /api AND x: 1; the default.
    assert_eq!(routes.len(), 3, "{routes:#?}");
    assert!(format!("{:?}", routes[0].r#match).contains("/api/v2"));
    let second = routes[1].r#match.as_ref().expect("match");
    assert!(format!("{second:?}").contains("/api") && second.headers.len() == 1);
    assert_eq!(
        action(&routes[0]).timeout.as_ref().map(|t| t.seconds),
        Some(3),
        "inherited"
    );
}

#[test]
fn delegation_cycles_are_errors() {
    let text = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: loop, namespace: default}
spec:
  hosts: [loop.example.com]
  http:
  - delegate: {name: loop}
"#;
    let parsed = trellis_api::parse_documents(std::path::Path::new("x.yaml"), text);
    let errors = crate::model::delegation_errors(&parsed.resources);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].2.contains("delegates to itself"), "{errors:?}");
}

#[test]
fn destination_rule_policies_merge_subset_and_port() {
    let m = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 2s}
      http: {http1MaxPendingRequests: 5, maxRetries: 7, idleTimeout: 30s}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 5s, maxEjectionPercent: 100}
    loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: x-user}}
"#,
    );
    let out = client_resources(&m);
    let whole = cluster_named(&out, "outbound|9080||echo.default.svc.cluster.local");
    // Port-level settings replace the whole policy: only RANDOM remains.
    assert_eq!(whole.lb_policy, 3, "RANDOM");
    assert!(whole.outlier_detection.is_none());
    let thresholds = &whole.circuit_breakers.as_ref().expect("cb").thresholds[0];
    assert_eq!(
        thresholds.max_connections,
        Some(UInt32Value { value: u32::MAX })
    );
    let v1 = cluster_named(&out, "outbound|9080|v1|echo.default.svc.cluster.local");
    assert_eq!(v1.lb_policy, 2, "RING_HASH from the subset");
    // The subset route's hash policy follows the subset's consistent hash.
    let mv = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 2s}
      http: {http1MaxPendingRequests: 5, maxRetries: 7, idleTimeout: 30s}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 5s}
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
"#,
    );
    let out = client_resources(&mv);
    let c = cluster_named(&out, "outbound|9080||echo.default.svc.cluster.local");
    let t = &c.circuit_breakers.as_ref().expect("cb").thresholds[0];
    assert_eq!(t.max_connections, Some(UInt32Value { value: 10 }));
    assert_eq!(t.max_pending_requests, Some(UInt32Value { value: 5 }));
    assert_eq!(t.max_retries, Some(UInt32Value { value: 7 }));
    assert_eq!(c.connect_timeout.as_ref().map(|d| d.seconds), Some(2));
    let od = c.outlier_detection.as_ref().expect("outlier detection");
    assert_eq!(od.consecutive_5xx, Some(UInt32Value { value: 3 }));
    assert_eq!(
        od.enforcing_consecutive_5xx,
        Some(UInt32Value { value: 100 })
    );
    assert_eq!(
        c.common_lb_config
            .as_ref()
            .and_then(|l| l.healthy_panic_threshold.as_ref())
            .map(|p| p.value),
        Some(0.0)
    );
    let routes = echo_routes(&mv);
    assert_eq!(action(&routes[0]).hash_policy.len(), 1);
}

#[test]
fn locality_failover_priorities_are_per_proxy() {
    let m = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3}
"#,
    );
    let priorities = |ip: &str| -> Vec<(String, u32)> {
        let out = generate(&m, &node(ip, "x"));
        let cla: ClusterLoadAssignment = decode(
            &out,
            type_url::ENDPOINT,
            "outbound|9080||echo.default.svc.cluster.local",
        );
        cla.endpoints
            .iter()
            .map(|l: &LocalityLbEndpoints| {
                (
                    l.locality
                        .as_ref()
                        .map(|x| x.region.clone())
                        .unwrap_or_default(),
                    l.priority,
                )
            })
            .collect()
    };
    let mut p = priorities("127.0.9.2");
    p.sort();
    assert_eq!(p, [("eu-west".to_string(), 1), ("us-east".to_string(), 0)]);
    // A proxy without a known locality gets no priorities.
    assert!(priorities("127.0.9.3").iter().all(|(_, p)| *p == 0));
}

#[test]
fn dns_service_entries_become_dns_clusters() {
    let m = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.test]
  location: MESH_EXTERNAL
  resolution: DNS_ROUND_ROBIN
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: localhost}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext2, namespace: default}
spec:
  hosts: [www.example.test]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
"#,
    );
    let out = client_resources(&m);
    let c = cluster_named(&out, "outbound|80||api.example.test");
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    let kind = |c: &Cluster| match c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => t,
        _ => -1,
    };
    assert_eq!(kind(&c), DiscoveryType::LogicalDns as i32);
    assert!(format!("{:?}", c.load_assignment).contains("localhost"));
    let c = cluster_named(&out, "outbound|80||www.example.test");
    assert_eq!(kind(&c), DiscoveryType::StrictDns as i32);
    assert!(format!("{:?}", c.load_assignment).contains("www.example.test"));
    assert!(!out.by_type[type_url::ENDPOINT].contains_key("outbound|80||www.example.test"));
}

#[test]
fn sidecar_egress_export_to_and_registry_only() {
    let m = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: other, namespace: default}
spec:
  hosts: [other.example.test]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: team}
spec:
  hosts: [private.example.test]
  exportTo: ["."]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
"#,
    );
    let clusters = |m: &MeshModel| -> Vec<String> {
        let out = client_resources(m);
        out.by_type[type_url::CLUSTER].keys().cloned().collect()
    };
    let all = clusters(&m);
    assert!(all.iter().any(|c| c.contains("other.example.test")));
    assert!(
        !all.iter().any(|c| c.contains("private.example.test")),
        "exportTo ."
    );
    let scoped = model_with(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: other, namespace: default}
spec:
  hosts: [other.example.test]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["./echo.default.svc.cluster.local"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#,
    );
    let names = clusters(&scoped);
    assert!(
        !names.iter().any(|c| c.contains("other.example.test")),
        "{names:?}"
    );
    let out = client_resources(&scoped);
    let routes = outbound_routes(&out);
    let last = routes.virtual_hosts.last().expect("vhosts");
    assert_eq!(
        (last.name.as_str(), last.domains.as_slice()),
        ("block_all", ["*".to_string()].as_slice())
    );
}
