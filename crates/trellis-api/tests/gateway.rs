//! Gateway servers' TLS: invalid combinations are rejected with the field path and reason.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use trellis_api::parse_documents;

fn gateway_errors(server: &str) -> Vec<(String, String)> {
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - {server}\n"
    );
    parse_documents(Path::new("gw.yaml"), &text)
        .errors
        .iter()
        .map(|e| (e.path.clone(), e.reason.clone()))
        .collect()
}

#[test]
fn terminating_tls_needs_a_certificate() {
    let errors = gateway_errors(
        "{port: {number: 8443, name: https, protocol: HTTPS}, hosts: [a.example.com], tls: {mode: SIMPLE}}",
    );
    assert_eq!(
        errors,
        vec![(
            "spec.servers[0].tls.credentialName".to_string(),
            "tls.mode SIMPLE needs credentialName, or serverCertificate and privateKey".to_string()
        )]
    );
}

#[test]
fn https_needs_tls_settings() {
    let errors = gateway_errors(
        "{port: {number: 8443, name: https, protocol: HTTPS}, hosts: [a.example.com]}",
    );
    assert_eq!(
        errors,
        vec![(
            "spec.servers[0].tls".to_string(),
            "a server with protocol HTTPS needs tls settings".to_string()
        )]
    );
}

#[test]
fn mutual_with_files_needs_ca_certificates() {
    let errors = gateway_errors(
        "{port: {number: 8443, name: https, protocol: HTTPS}, hosts: [a.example.com], tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}}",
    );
    assert_eq!(
        errors,
        vec![(
            "spec.servers[0].tls.caCertificates".to_string(),
            "MUTUAL needs caCertificates to verify client certificates".to_string()
        )]
    );
}

#[test]
fn istio_mutual_takes_no_credentials_and_valid_servers_pass() {
    let errors = gateway_errors(
        "{port: {number: 8443, name: https, protocol: HTTPS}, hosts: [a.example.com], tls: {mode: ISTIO_MUTUAL, credentialName: x}}",
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "spec.servers[0].tls.mode");
    for ok in [
        "{port: {number: 8443, name: https, protocol: HTTPS}, hosts: [a.example.com], tls: {mode: MUTUAL, credentialName: x}}",
        "{port: {number: 8443, name: tls, protocol: TLS}, hosts: [a.example.com], tls: {mode: PASSTHROUGH}}",
        "{port: {number: 8080, name: http, protocol: HTTP}, hosts: [a.example.com], tls: {httpsRedirect: true}}",
    ] {
        assert_eq!(gateway_errors(ok), Vec::<(String, String)>::new(), "{ok}");
    }
}
