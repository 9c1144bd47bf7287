//! AuthorizationPolicy validation: what istiod rejects is rejected with the exact field path and
//! reason; what it accepts loads.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use trellis_api::parse_documents;

fn ap(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: default}}\nspec:\n{spec}"
    )
}

/// The single error of a document, as (path, reason).
fn one_error(spec: &str) -> (String, String) {
    let out = parse_documents(Path::new("ap.yaml"), &ap(spec));
    assert_eq!(out.errors.len(), 1, "expected one error: {:#?}", out.errors);
    assert!(out.resources.is_empty());
    (out.errors[0].path.clone(), out.errors[0].reason.clone())
}

fn assert_error(spec: &str, path: &str, reason: &str) {
    let (p, r) = one_error(spec);
    assert_eq!(p, path, "reason was {r:?}");
    assert!(r.contains(reason), "{r:?} does not contain {reason:?}");
}

#[test]
fn a_full_policy_is_accepted() {
    let spec = r#"  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/client, "*-suffix"]
        notNamespaces: [other]
        ipBlocks: [10.0.0.0/8, 1.2.3.4]
        remoteIpBlocks: ["::1/128"]
        requestPrincipals: ["https://issuer/sub", "*"]
    to:
    - operation:
        hosts: [echo, "*.example.com"]
        ports: ["9080"]
        methods: [GET]
        paths: ["/admin", "/api/*", "/v1/{*}/items/{**}"]
    when:
    - {key: "request.headers[x-user]", values: [alice]}
    - {key: "request.auth.claims[groups][admin]", values: ["yes"]}
    - {key: source.ip, notValues: [10.1.0.0/16]}
    - {key: destination.port, values: ["9080"]}
    - {key: connection.sni, values: ["*.local"]}
    - {key: "experimental.envoy.filters.http.foo[bar]", values: [x]}
"#;
    let out = parse_documents(Path::new("ap.yaml"), &ap(spec));
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(out.resources.len(), 1);
}

#[test]
fn unknown_when_key_is_rejected() {
    assert_error(
        "  rules:\n  - when: [{key: request.method, values: [GET]}]\n",
        "spec.rules[0].when[0].key",
        "unknown attribute \"request.method\"",
    );
}

#[test]
fn header_key_without_name_is_rejected() {
    assert_error(
        "  rules:\n  - when: [{key: 'request.headers[]', values: [a]}]\n",
        "spec.rules[0].when[0].key",
        "the name in brackets must not be empty",
    );
    assert_error(
        "  rules:\n  - when: [{key: request.headers, values: [a]}]\n",
        "spec.rules[0].when[0].key",
        "must be in brackets",
    );
}

#[test]
fn nested_claim_with_empty_level_is_rejected() {
    assert_error(
        "  rules:\n  - when: [{key: 'request.auth.claims[a][]', values: [a]}]\n",
        "spec.rules[0].when[0].key",
        "must not be empty",
    );
}

#[test]
fn when_ip_values_must_be_cidrs() {
    assert_error(
        "  rules:\n  - when: [{key: remote.ip, notValues: [not-an-ip]}]\n",
        "spec.rules[0].when[0].notValues[0]",
        "is not an IP address or CIDR block",
    );
}

#[test]
fn when_destination_port_must_be_a_port() {
    assert_error(
        "  rules:\n  - when: [{key: destination.port, values: ['70000']}]\n",
        "spec.rules[0].when[0].values[0]",
        "out of range",
    );
}

#[test]
fn when_needs_values() {
    assert_error(
        "  rules:\n  - when: [{key: source.ip}]\n",
        "spec.rules[0].when[0]",
        "values or notValues is required",
    );
}

#[test]
fn empty_source_is_rejected() {
    assert_error(
        "  rules:\n  - from: [{source: {}}]\n",
        "spec.rules[0].from[0].source",
        "source must not be empty",
    );
}

#[test]
fn empty_operation_is_rejected() {
    assert_error(
        "  rules:\n  - to: [{operation: {}}]\n",
        "spec.rules[0].to[0].operation",
        "operation must not be empty",
    );
}

#[test]
fn empty_string_values_are_rejected() {
    assert_error(
        "  rules:\n  - to: [{operation: {paths: ['/a', '']}}]\n",
        "spec.rules[0].to[0].operation.paths[1]",
        "empty value is not allowed",
    );
    assert_error(
        "  rules:\n  - from: [{source: {principals: ['']}}]\n",
        "spec.rules[0].from[0].source.principals[0]",
        "empty value is not allowed",
    );
}

#[test]
fn bad_ip_block_is_rejected() {
    assert_error(
        "  rules:\n  - from: [{source: {ipBlocks: [10.0.0.0/40]}}]\n",
        "spec.rules[0].from[0].source.ipBlocks[0]",
        "invalid prefix length",
    );
}

#[test]
fn bad_port_is_rejected() {
    assert_error(
        "  rules:\n  - to: [{operation: {notPorts: ['http']}}]\n",
        "spec.rules[0].to[0].operation.notPorts[0]",
        "out of range",
    );
}

#[test]
fn bad_path_template_is_rejected() {
    assert_error(
        "  rules:\n  - to: [{operation: {paths: ['/a/{**}/b']}}]\n",
        "spec.rules[0].to[0].operation.paths[0]",
        "must be the last segment",
    );
    assert_error(
        "  rules:\n  - to: [{operation: {notPaths: ['/a/x{*}']}}]\n",
        "spec.rules[0].to[0].operation.notPaths[0]",
        "must be exactly {*} or {**}",
    );
}

#[test]
fn service_accounts_with_principals_are_rejected() {
    assert_error(
        "  rules:\n  - from: [{source: {serviceAccounts: [client], principals: [x]}}]\n",
        "spec.rules[0].from[0].source",
        "serviceAccounts cannot be combined",
    );
}

#[test]
fn custom_needs_a_provider_and_others_must_not_have_one() {
    assert_error(
        "  action: CUSTOM\n  rules: [{}]\n",
        "spec.provider.name",
        "requires a provider name",
    );
    assert_error(
        "  action: DENY\n  provider: {name: x}\n  rules: [{}]\n",
        "spec.provider",
        "only allowed with action CUSTOM",
    );
}

#[test]
fn selector_and_target_refs_are_exclusive() {
    let (path, reason) = one_error(
        "  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, name: a}]\n",
    );
    assert_eq!(path, "spec");
    assert!(reason.contains("selector"), "{reason}");
}

#[test]
fn target_refs_load_with_a_warning_that_sidecars_ignore_them() {
    let out = parse_documents(
        Path::new("ap.yaml"),
        &ap("  targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: a}]\n"),
    );
    assert!(out.errors.is_empty(), "{:#?}", out.errors);
    assert_eq!(out.resources.len(), 1);
    assert_eq!(out.warnings.len(), 1, "{:#?}", out.warnings);
    let w = out.warnings[0].to_string();
    assert!(w.contains("spec.targetRefs"), "{w}");
    assert!(w.contains("kind ServiceEntry"), "{w}");
    assert!(w.contains("sidecars ignore them"), "{w}");
}
