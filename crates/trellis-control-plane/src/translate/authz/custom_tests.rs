//! CUSTOM → shadow RBAC + ext_authz (istiod's shape), the provider kinds and their fields, the
//! order before DENY and ALLOW, TCP chains, and failing closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{grpc_service, http_uri};
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkExtAuthz;
use envoy_types::pb::google::protobuf::Any;
use trellis_api::MeshConfig;

use super::*;
use crate::translate::test_support::{self, sidecar as node};

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9090, name: tcp, protocol: TCP}]
  resolution: STATIC
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: 127.0.9.10, labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-authz, namespace: default}
spec:
  hosts: [ext-authz.example.test]
  ports: [{number: 9000, name: grpc, protocol: GRPC}, {number: 8000, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.9.50}]
"#;

const MESH: &str = r#"
extensionProviders:
- name: grpc
  envoyExtAuthzGrpc:
    service: ext-authz.example.test
    port: 9000
    timeout: 2s
    failOpen: true
    statusOnError: "503"
    includeRequestBodyInCheck: {maxRequestBytes: 4096, allowPartialMessage: true}
- name: http
  envoyExtAuthzHttp:
    service: default/ext-authz
    port: 8000
    pathPrefix: /check
    includeRequestHeadersInCheck: [x-ext-authz, "x-prefix-*"]
    includeAdditionalHeadersInCheck: {x-added: yes}
    headersToUpstreamOnAllow: [x-ext-authz-check-result]
    headersToDownstreamOnDeny: [x-ext-authz-check-result, "*-reason"]
- name: zipkin
  zipkin: {service: ext-authz.example.test, port: 8000}
- name: hidden
  envoyExtAuthzGrpc: {service: nowhere.example.test, port: 9000}
"#;

fn ap(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n---\n"
    )
}

fn custom(provider: &str, rules: &str) -> String {
    ap(
        &format!("ext-{provider}"),
        &format!("  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules: {rules}"),
    )
}

fn model(policies: &str) -> MeshModel {
    let mesh = MeshConfig::parse(MESH).expect("mesh config");
    test_support::model(&format!("{SERVICES}---\n{policies}")).with_mesh_config(Arc::new(mesh))
}

fn http(policies: &str) -> Vec<HttpFilter> {
    let m = model(policies);
    let n = node("127.0.9.10", "default");
    super::super::http_filters(&m, &m.proxy_view(&n))
}

fn network(policies: &str) -> Vec<Filter> {
    let m = model(policies);
    let n = node("127.0.9.10", "default");
    super::super::network_filters(&m, &m.proxy_view(&n))
}

fn any_of(f: &HttpFilter) -> &Any {
    match &f.config_type {
        Some(http_filter::ConfigType::TypedConfig(any)) => any,
        other => panic!("typed config expected, got {other:?}"),
    }
}

fn rbac(f: &HttpFilter) -> HttpRbac {
    assert_eq!(f.name, HTTP_RBAC);
    HttpRbac::decode(any_of(f).value.as_slice()).unwrap()
}

fn ext_authz(f: &HttpFilter) -> http_authz::ExtAuthz {
    assert_eq!(f.name, HTTP_EXT_AUTHZ);
    assert_eq!(any_of(f).type_url, HTTP_EXT_AUTHZ_TYPE);
    http_authz::ExtAuthz::decode(any_of(f).value.as_slice()).unwrap()
}

fn sorted_names(r: &envoy_types::pb::envoy::config::rbac::v3::Rbac) -> Vec<String> {
    let mut n: Vec<String> = r.policies.keys().cloned().collect();
    n.sort();
    n
}

#[test]
fn grpc_provider_is_a_shadow_rbac_then_ext_authz() {
    let f = http(&custom(
        "grpc",
        "[{to: [{operation: {paths: [/admin]}}]}, {to: [{operation: {methods: [DELETE]}}]}]",
    ));
    assert_eq!(f.len(), 2);
    let shadow = rbac(&f[0]);
    assert!(shadow.rules.is_none(), "a shadow filter never enforces");
    assert_eq!(shadow.shadow_rules_stat_prefix, "istio_ext_authz_");
    let rules = shadow.shadow_rules.unwrap();
    assert_eq!(rules.action, Action::Deny as i32);
    assert_eq!(
        sorted_names(&rules),
        [
            "istio-ext-authz-ns[default]-policy[ext-grpc]-rule[0]",
            "istio-ext-authz-ns[default]-policy[ext-grpc]-rule[1]"
        ]
    );
    let e = ext_authz(&f[1]);
    assert_eq!(e.transport_api_version, ApiVersion::V3 as i32);
    assert!(e.failure_mode_allow);
    assert_eq!(e.status_on_error, Some(HttpStatus { code: 503 }));
    assert_eq!(
        e.with_request_body,
        Some(http_authz::BufferSettings {
            max_request_bytes: 4096,
            allow_partial_message: true,
            pack_as_bytes: false
        })
    );
    let enabled = e.filter_enabled_metadata.unwrap();
    assert_eq!(enabled.filter, HTTP_RBAC);
    assert_eq!(
        enabled.path[0].segment,
        Some(metadata_matcher::path_segment::Segment::Key(
            "istio_ext_authz_shadow_effective_policy_id".into()
        ))
    );
    let Some(http_authz::ext_authz::Services::GrpcService(g)) = e.services else {
        panic!("gRPC service expected");
    };
    assert_eq!(g.timeout, Some(duration(std::time::Duration::from_secs(2))));
    let Some(grpc_service::TargetSpecifier::EnvoyGrpc(target)) = g.target_specifier else {
        panic!("Envoy gRPC expected");
    };
    assert_eq!(target.cluster_name, "outbound|9000||ext-authz.example.test");
    assert_eq!(target.authority, "outbound_.9000_._.ext-authz.example.test");
}

#[test]
fn http_provider_fields() {
    let f = http(&custom("http", "[{}]"));
    assert_eq!(f.len(), 2);
    let e = ext_authz(&f[1]);
    assert!(!e.failure_mode_allow);
    assert_eq!(e.status_on_error, None, "Envoy's default 403");
    let allowed: Vec<_> = e
        .allowed_headers
        .unwrap()
        .patterns
        .into_iter()
        .map(|p| (p.match_pattern.unwrap(), p.ignore_case))
        .collect();
    assert_eq!(
        allowed,
        [
            (
                string_matcher::MatchPattern::Exact("x-ext-authz".into()),
                true
            ),
            (
                string_matcher::MatchPattern::Prefix("x-prefix-".into()),
                true
            ),
        ]
    );
    let Some(http_authz::ext_authz::Services::HttpService(s)) = e.services else {
        panic!("HTTP service expected");
    };
    assert_eq!(s.path_prefix, "/check");
    let uri = s.server_uri.unwrap();
    assert_eq!(uri.uri, "http://ext-authz.example.test");
    assert_eq!(
        uri.http_upstream_type,
        Some(http_uri::HttpUpstreamType::Cluster(
            "outbound|8000||ext-authz.example.test".into()
        ))
    );
    assert_eq!(uri.timeout, Some(duration(DEFAULT_TIMEOUT)));
    let added = s.authorization_request.unwrap().headers_to_add;
    assert_eq!(
        (added[0].key.as_str(), added[0].value.as_str()),
        ("x-added", "yes")
    );
    let response = s.authorization_response.unwrap();
    assert_eq!(response.allowed_upstream_headers.unwrap().patterns.len(), 1);
    let client = response.allowed_client_headers.unwrap().patterns;
    assert_eq!(
        client[1].match_pattern,
        Some(string_matcher::MatchPattern::Suffix("-reason".into()))
    );
    assert!(response.allowed_client_headers_on_success.is_none());
}

#[test]
fn custom_comes_before_audit_deny_and_allow() {
    let f = http(&format!(
        "{}{}{}{}",
        ap("allow", "  rules: [{}]"),
        ap(
            "deny",
            "  action: DENY\n  rules: [{to: [{operation: {paths: [/deny]}}]}]"
        ),
        ap("audit", "  action: AUDIT\n  rules: [{}]"),
        custom("grpc", "[{}]"),
    ));
    let kinds: Vec<(&str, Option<i32>)> = f
        .iter()
        .map(|x| match x.name.as_str() {
            HTTP_RBAC => (HTTP_RBAC, rbac(x).rules.map(|r| r.action)),
            other => (other, None),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (HTTP_RBAC, None),
            (HTTP_EXT_AUTHZ, None),
            (HTTP_RBAC, Some(Action::Log as i32)),
            (HTTP_RBAC, Some(Action::Deny as i32)),
            (HTTP_RBAC, Some(Action::Allow as i32)),
        ]
    );
}

#[test]
fn unresolvable_providers_fail_closed_with_the_rules() {
    for provider in ["nope", "zipkin", "hidden"] {
        let f = http(&custom(provider, "[{to: [{operation: {paths: [/x]}}]}]"));
        assert_eq!(f.len(), 1, "{provider}");
        let rules = rbac(&f[0]).rules.expect("an enforcing filter");
        assert_eq!(rules.action, Action::Deny as i32);
        assert_eq!(
            sorted_names(&rules),
            [format!("ns[default]-policy[ext-{provider}]-rule[0]")]
        );
    }
    // Two different providers on one workload: both fail closed (istiod's default).
    let f = http(&format!(
        "{}{}",
        custom("grpc", "[{}]"),
        custom("http", "[{}]")
    ));
    assert_eq!(f.len(), 1);
    assert_eq!(sorted_names(&rbac(&f[0]).rules.unwrap()).len(), 2);
}

#[test]
fn tcp_chains_get_network_ext_authz_for_grpc_only() {
    let f = network(&custom(
        "grpc",
        "[{to: [{operation: {ports: [\"9090\"]}}]}]",
    ));
    let names: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, [NETWORK_RBAC, NETWORK_EXT_AUTHZ]);
    let Some(filter::ConfigType::TypedConfig(any)) = &f[0].config_type else {
        panic!("typed config expected");
    };
    let shadow = NetworkRbac::decode(any.value.as_slice()).unwrap();
    assert_eq!(shadow.stat_prefix, "tcp.");
    assert_eq!(shadow.shadow_rules_stat_prefix, SHADOW_STAT_PREFIX);
    assert!(shadow.rules.is_none());
    let Some(filter::ConfigType::TypedConfig(any)) = &f[1].config_type else {
        panic!("typed config expected");
    };
    assert_eq!(any.type_url, NETWORK_EXT_AUTHZ_TYPE);
    let e = NetworkExtAuthz::decode(any.value.as_slice()).unwrap();
    assert_eq!(e.filter_enabled_metadata.unwrap().filter, NETWORK_RBAC);
    assert!(e.failure_mode_allow);
    assert!(network(&custom("http", "[{}]")).is_empty());
}

#[test]
fn a_provider_of_another_kind_is_a_config_error_naming_the_field() {
    let mesh = MeshConfig::parse(MESH).expect("mesh config");
    let yaml = format!(
        "{}{}{}",
        custom("zipkin", "[{}]"),
        custom("nope", "[{}]"),
        custom("grpc", "[{}]")
    );
    let parsed = trellis_api::parse_documents(std::path::Path::new("p.yaml"), &yaml);
    let errors = provider_errors(&parsed.resources, &mesh);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("AuthorizationPolicy default/ext-zipkin: spec.provider.name"),
        "{errors:?}"
    );
}

#[test]
fn different_providers_that_can_meet_on_a_workload_are_warned_about() {
    let selected = |name: &str, provider: &str, labels: &str| {
        ap(
            name,
            &format!(
                "  selector: {{matchLabels: {labels}}}\n  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules: [{{}}]"
            ),
        )
    };
    let yaml = [
        selected("a", "grpc", "{app: echo}"),
        // Same provider: no conflict.
        selected("b", "grpc", "{app: echo, version: v1}"),
        // Another provider on a disjoint selector: no conflict.
        selected("c", "http", "{app: other}"),
        // Another provider that can select app=echo workloads: a conflict with a and b.
        selected("d", "http", "{version: v1}"),
    ]
    .concat();
    let parsed = trellis_api::parse_documents(std::path::Path::new("p.yaml"), &yaml);
    let warnings = provider_conflicts(&parsed.resources, "istio-system");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("AuthorizationPolicy default/a")
            && warnings[0].contains("AuthorizationPolicy default/d")
            && warnings[0].contains("found multiple providers: [grpc http]"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("AuthorizationPolicy default/b"),
        "{warnings:?}"
    );
}
