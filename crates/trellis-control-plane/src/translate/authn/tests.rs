//! RequestAuthentication → `jwt_authn`: which policies apply to a workload, istiod's provider
//! and requirement shape, and how `jwksUri` resolves to a mesh cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::jwt_provider::JwksSourceSpecifier;
use prost::Message;

use super::*;
use crate::model::MeshModel;
use crate::translate::test_support::{self, sidecar as node};

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: jwks, namespace: default}
spec:
  hosts: [jwks.example.test]
  location: MESH_EXTERNAL
  ports: [{number: 8443, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: 127.0.9.10, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other, namespace: other}
spec: {address: 127.0.9.11, labels: {app: other}}
"#;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis","y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}]}"#;

fn model(policies: &str) -> MeshModel {
    test_support::model(&format!("{SERVICES}---\n{policies}"))
}

fn config_for(policies: &str, ip: &str, ns: &str) -> Option<JwtAuthentication> {
    let m = model(policies);
    let n = node(ip, ns);
    let proxy = m.proxy_view(&n);
    let filter = jwt_filter(&m, &proxy)?;
    assert_eq!(filter.name, JWT_AUTHN);
    let Some(http_filter::ConfigType::TypedConfig(any)) = filter.config_type else {
        panic!("typed config expected");
    };
    assert_eq!(any.type_url, JWT_AUTHN_TYPE);
    Some(JwtAuthentication::decode(any.value.as_slice()).unwrap())
}

fn ra(name: &str, ns: &str, selector: &str, rules: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{selector}  jwtRules:\n{rules}---\n"
    )
}

fn inline_rule(issuer: &str) -> String {
    format!("  - issuer: {issuer}\n    jwks: '{JWKS}'\n")
}

#[test]
fn one_rule_is_provider_or_missing_with_istios_defaults() {
    let cfg = config_for(
        &ra("jwt", "default", "", &inline_rule("issuer-a")),
        "127.0.9.10",
        "default",
    )
    .expect("filter");
    let p = &cfg.providers["origins-0"];
    assert_eq!(p.issuer, "issuer-a");
    assert!(!p.forward, "Istio strips the token by default");
    assert_eq!(p.payload_in_metadata, PAYLOAD_METADATA_KEY);
    assert!(matches!(
        &p.jwks_source_specifier,
        Some(JwksSourceSpecifier::LocalJwks(_))
    ));
    assert!(cfg.bypass_cors_preflight);
    let rule = &cfg.rules[0];
    let Some(requirement_rule::RequirementType::Requires(req)) = &rule.requirement_type else {
        panic!("requires expected");
    };
    let Some(RequiresType::RequiresAny(any)) = &req.requires_type else {
        panic!("requires_any expected");
    };
    assert_eq!(
        any.requirements[0].requires_type,
        Some(RequiresType::ProviderName("origins-0".into()))
    );
    assert_eq!(
        any.requirements[1].requires_type,
        Some(RequiresType::AllowMissing(Empty {}))
    );
}

#[test]
fn several_rules_are_sorted_by_issuer_and_combined_as_istiod_does() {
    let rules = format!("{}{}", inline_rule("zeta"), inline_rule("alpha"));
    let cfg =
        config_for(&ra("jwt", "default", "", &rules), "127.0.9.10", "default").expect("filter");
    assert_eq!(cfg.providers["origins-0"].issuer, "alpha");
    assert_eq!(cfg.providers["origins-1"].issuer, "zeta");
    let Some(requirement_rule::RequirementType::Requires(req)) = &cfg.rules[0].requirement_type
    else {
        panic!("requires expected");
    };
    let Some(RequiresType::RequiresAny(any)) = &req.requires_type else {
        panic!("requires_any expected");
    };
    // origins-0, origins-1, then all of (each provider or missing).
    assert_eq!(any.requirements.len(), 3);
    assert!(
        matches!(&any.requirements[2].requires_type, Some(RequiresType::RequiresAll(all)) if all.requirements.len() == 2)
    );
}

#[test]
fn required_presence_drops_allow_missing_and_space_delimited_claims_normalize() {
    let rule = format!(
        "{}    presence: REQUIRED\n    spaceDelimitedClaims: [scope, roles]\n",
        inline_rule("issuer-a")
    );
    let cfg =
        config_for(&ra("jwt", "default", "", &rule), "127.0.9.10", "default").expect("filter");
    let Some(requirement_rule::RequirementType::Requires(req)) = &cfg.rules[0].requirement_type
    else {
        panic!("requires expected");
    };
    assert_eq!(
        req.requires_type,
        Some(RequiresType::ProviderName("origins-0".into())),
        "a required token may not be missing"
    );
    let normalize = cfg.providers["origins-0"]
        .normalize_payload_in_metadata
        .as_ref()
        .expect("normalize");
    assert_eq!(normalize.space_delimited_claims, ["scope", "roles"]);
    // Without them: no normalization.
    let plain = config_for(
        &ra("jwt", "default", "", &inline_rule("issuer-a")),
        "127.0.9.10",
        "default",
    )
    .expect("filter");
    assert!(
        plain.providers["origins-0"]
            .normalize_payload_in_metadata
            .is_none()
    );
}

#[test]
fn selection_by_namespace_root_namespace_and_selector() {
    let policies = format!(
        "{}{}{}",
        ra("mesh", "istio-system", "", &inline_rule("mesh-issuer")),
        ra("ns", "default", "", &inline_rule("ns-issuer")),
        ra(
            "sel",
            "default",
            "  selector: {matchLabels: {app: other}}\n",
            &inline_rule("selected-issuer")
        ),
    );
    let echo = config_for(&policies, "127.0.9.10", "default").expect("filter");
    let mut issuers: Vec<_> = echo.providers.values().map(|p| p.issuer.clone()).collect();
    issuers.sort();
    assert_eq!(issuers, ["mesh-issuer", "ns-issuer"]);
    let other = config_for(&policies, "127.0.9.11", "other").expect("filter");
    let issuers: Vec<_> = other.providers.values().map(|p| p.issuer.clone()).collect();
    assert_eq!(
        issuers,
        ["mesh-issuer"],
        "another namespace sees only the mesh-wide one"
    );
    assert!(config_for("", "127.0.9.10", "default").is_none());
}

#[test]
fn rule_fields_map_to_provider_fields() {
    let rule = format!(
        "{}    audiences: [svc]\n    fromHeaders: [{{name: x-jwt, prefix: 'Token '}}]\n    fromParams: [tok]\n    fromCookies: [session]\n    forwardOriginalToken: true\n    outputPayloadToHeader: x-payload\n    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]\n",
        inline_rule("issuer-a")
    );
    let cfg =
        config_for(&ra("jwt", "default", "", &rule), "127.0.9.10", "default").expect("filter");
    let p = &cfg.providers["origins-0"];
    assert_eq!(p.audiences, ["svc"]);
    assert_eq!(p.from_headers[0].name, "x-jwt");
    assert_eq!(p.from_headers[0].value_prefix, "Token ");
    assert_eq!(p.from_params, ["tok"]);
    assert_eq!(p.from_cookies, ["session"]);
    assert!(p.forward);
    assert_eq!(p.forward_payload_header, "x-payload");
    assert_eq!(p.claim_to_headers[0].header_name, "x-sub");
    assert_eq!(p.claim_to_headers[0].claim_name, "sub");
}

#[test]
fn jwks_uri_uses_the_mesh_cluster_of_its_host_and_port() {
    let rule =
        "  - issuer: a\n    jwksUri: https://jwks.example.test:8443/keys.json\n    timeout: 2s\n";
    let cfg = config_for(&ra("jwt", "default", "", rule), "127.0.9.10", "default").expect("filter");
    let Some(JwksSourceSpecifier::RemoteJwks(remote)) =
        &cfg.providers["origins-0"].jwks_source_specifier
    else {
        panic!("remote_jwks expected");
    };
    let uri = remote.http_uri.as_ref().expect("http_uri");
    assert_eq!(uri.uri, "https://jwks.example.test:8443/keys.json");
    assert_eq!(
        uri.http_upstream_type,
        Some(http_uri::HttpUpstreamType::Cluster(
            "outbound|8443||jwks.example.test".into()
        ))
    );
    assert_eq!(uri.timeout.as_ref().map(|d| d.seconds), Some(2));
    // istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL default, refetched in the background.
    assert_eq!(
        remote.cache_duration.as_ref().map(|d| d.seconds),
        Some(1200)
    );
    assert!(remote.async_fetch.is_some());
    // A host no service declares: a key set no token matches.
    let rule = "  - issuer: a\n    jwksUri: https://unknown.example.test/keys.json\n";
    let cfg = config_for(&ra("jwt", "default", "", rule), "127.0.9.10", "default").expect("filter");
    let Some(JwksSourceSpecifier::LocalJwks(ds)) =
        &cfg.providers["origins-0"].jwks_source_specifier
    else {
        panic!("local_jwks expected");
    };
    assert_eq!(
        ds.specifier,
        Some(data_source::Specifier::InlineString(
            UNREACHABLE_JWKS.into()
        ))
    );
}
