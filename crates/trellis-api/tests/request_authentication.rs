//! RequestAuthentication validation: each invalid field is rejected with its exact path and
//! reason; a full valid resource loads.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use trellis_api::parse_documents;

fn ra(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: jwt\nspec:\n{spec}"
    )
}

/// The errors of a document, as `path: reason`.
fn errors(spec: &str) -> Vec<String> {
    let out = parse_documents(Path::new("test.yaml"), &ra(spec));
    out.errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.reason))
        .collect()
}

fn one_error(spec: &str) -> String {
    let e = errors(spec);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:#?}");
    e[0].clone()
}

#[test]
fn a_complete_rule_is_valid() {
    let spec = r#"  selector: {matchLabels: {app: echo}}
  jwtRules:
  - issuer: issuer-a
    audiences: [svc]
    jwksUri: https://jwks.example.test:8443/keys.json
    fromHeaders: [{name: x-jwt, prefix: "Token "}]
    fromParams: [tok]
    fromCookies: [session]
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
    timeout: 3s
  - issuer: issuer-b
    jwks: '{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}'
"#;
    assert_eq!(errors(spec), Vec::<String>::new());
}

#[test]
fn issuer_is_required_and_unique() {
    assert_eq!(
        one_error("  jwtRules: [{jwksUri: 'https://a/k'}]\n"),
        "spec.jwtRules[0].issuer: issuer is required"
    );
    assert_eq!(
        one_error(
            "  jwtRules: [{issuer: a, jwksUri: 'https://a/k'}, {issuer: a, jwksUri: 'https://a/k'}]\n"
        ),
        "spec.jwtRules[1].issuer: issuer \"a\" is already configured by jwtRules[0]"
    );
}

#[test]
fn jwks_uri_must_be_an_http_url_with_a_host_and_port() {
    assert_eq!(
        one_error("  jwtRules: [{issuer: a, jwksUri: 'ftp://a/k'}]\n"),
        "spec.jwtRules[0].jwksUri: JWKS URI \"ftp://a/k\" must use http or https"
    );
    assert_eq!(
        one_error("  jwtRules: [{issuer: a, jwksUri: 'https:///k'}]\n"),
        "spec.jwtRules[0].jwksUri: JWKS URI \"https:///k\" has no host"
    );
    assert_eq!(
        one_error("  jwtRules: [{issuer: a, jwksUri: 'https://a:99999/k'}]\n"),
        "spec.jwtRules[0].jwksUri: JWKS URI \"https://a:99999/k\" has an invalid port \"99999\""
    );
}

#[test]
fn inline_jwks_must_be_a_key_set() {
    assert_eq!(
        one_error("  jwtRules: [{issuer: a, jwks: '{\"keys\": []}'}]\n"),
        "spec.jwtRules[0].jwks: jwks must be a JSON Web Key Set with at least one key in \"keys\""
    );
    assert!(
        one_error("  jwtRules: [{issuer: a, jwks: 'not json'}]\n")
            .starts_with("spec.jwtRules[0].jwks: jwks is not valid JSON")
    );
}

#[test]
fn output_headers_must_be_valid_names() {
    assert_eq!(
        one_error(
            "  jwtRules: [{issuer: a, jwks: '{\"keys\":[{}]}', outputPayloadToHeader: 'x payload'}]\n"
        ),
        "spec.jwtRules[0].outputPayloadToHeader: \"x payload\" is not a valid HTTP header name"
    );
    assert_eq!(
        one_error(
            "  jwtRules: [{issuer: a, jwks: '{\"keys\":[{}]}', outputClaimToHeaders: [{header: x-sub}]}]\n"
        ),
        "spec.jwtRules[0].outputClaimToHeaders[0].claim: claim is required"
    );
    assert_eq!(
        one_error(
            "  jwtRules: [{issuer: a, jwks: '{\"keys\":[{}]}', fromHeaders: [{name: ':authority'}]}]\n"
        ),
        "spec.jwtRules[0].fromHeaders[0].name: \":authority\" is not a valid HTTP header name"
    );
}

#[test]
fn timeout_must_be_positive() {
    assert_eq!(
        one_error("  jwtRules: [{issuer: a, jwksUri: 'https://a/k', timeout: 0s}]\n"),
        "spec.jwtRules[0].timeout: duration 0s must be at least 1ms"
    );
}
