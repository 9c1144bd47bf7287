//! CA tests: certificates are parsed back with x509-parser and checked with the real openssl.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use super::*;
use crate::{SpiffeId, generate_csr};

fn reviews() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "reviews")
}

fn der_of(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    p.contents
}

fn uri_sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).expect("der");
    let san = cert
        .subject_alternative_name()
        .expect("parses")
        .expect("has SAN");
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

fn openssl_verify(dir: &Path, root: &str, chain: &[String]) -> String {
    std::fs::write(dir.join("root.pem"), root).expect("write");
    std::fs::write(dir.join("leaf.pem"), &chain[0]).expect("write");
    std::fs::write(dir.join("untrusted.pem"), chain[1..].concat()).expect("write");
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CAfile").arg(dir.join("root.pem"));
    if chain.len() > 1 {
        cmd.arg("-untrusted").arg(dir.join("untrusted.pem"));
    }
    let out = cmd
        .arg(dir.join("leaf.pem"))
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn self_signed_root_is_persisted_and_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = CertificateAuthority::load_or_create(dir.path(), "cluster.local").expect("create");
    let second = CertificateAuthority::load_or_create(dir.path(), "cluster.local").expect("reload");
    assert_eq!(
        first.root_cert(),
        second.root_cert(),
        "a restart keeps the same trust root"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("ca-key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the CA key is private");
}

#[test]
fn workload_certificate_carries_exactly_the_authenticated_spiffe_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(dir.path(), "cluster.local").expect("create");
    // A CSR asking for someone else's identity is refused.
    let other = generate_csr(&SpiffeId::new("cluster.local", "default", "admin")).expect("csr");
    let err = ca
        .sign(&other.csr_pem, &reviews(), Duration::from_secs(3600))
        .expect_err("mismatch");
    assert_eq!(
        err.to_string(),
        "the CSR asks for spiffe://cluster.local/ns/default/sa/admin but the caller is spiffe://cluster.local/ns/default/sa/reviews"
    );
    let key = generate_csr(&reviews()).expect("csr");
    let issued = ca
        .sign(&key.csr_pem, &reviews(), Duration::from_secs(3600))
        .expect("sign");
    assert_eq!(
        issued.cert_chain.len(),
        1,
        "a self-signed root has no intermediates"
    );
    let der = der_of(&issued.cert_chain[0]);
    assert_eq!(
        uri_sans(&der),
        ["spiffe://cluster.local/ns/default/sa/reviews"]
    );
    let (_, cert) = X509Certificate::from_der(&der).expect("der");
    assert!(!cert.is_ca());
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        (3600..=3600 + 120).contains(&lifetime),
        "lifetime {lifetime}s"
    );
    let root_der = der_of(&issued.root_cert);
    let (_, root) = X509Certificate::from_der(&root_der).expect("root");
    cert.verify_signature(Some(root.public_key()))
        .expect("signed by the root");
    let verdict = openssl_verify(dir.path(), &issued.root_cert, &issued.cert_chain);
    assert!(verdict.contains("OK"), "{verdict}");
}

#[test]
fn plugged_in_ca_with_an_intermediate_under_an_external_root() {
    // An operator's external root and an intermediate for the mesh, in Istio's cacerts layout.
    let root_key = KeyPair::generate().expect("key");
    let mut root_params = CertificateParams::default();
    root_params
        .distinguished_name
        .push(DnType::CommonName, "Example Corp root");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = root_params.self_signed(&root_key).expect("root");
    let mut mid_params = CertificateParams::default();
    mid_params
        .distinguished_name
        .push(DnType::CommonName, "mesh intermediate");
    mid_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    mid_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mid_key = KeyPair::generate().expect("key");
    let root_issuer = Issuer::new(root_params, root_key);
    let mid = mid_params
        .signed_by(&mid_key, &root_issuer)
        .expect("intermediate");

    let dir = tempfile::tempdir().expect("tempdir");
    let cacerts = dir.path().join("cacerts");
    std::fs::create_dir(&cacerts).expect("mkdir");
    std::fs::write(cacerts.join("ca-cert.pem"), mid.pem()).expect("write");
    std::fs::write(cacerts.join("ca-key.pem"), mid_key.serialize_pem()).expect("write");
    std::fs::write(cacerts.join("root-cert.pem"), root.pem()).expect("write");
    std::fs::write(
        cacerts.join("cert-chain.pem"),
        format!("{}{}", mid.pem(), root.pem()),
    )
    .expect("write");

    let ca = CertificateAuthority::load_or_create(&cacerts, "cluster.local").expect("load");
    assert_eq!(ca.root_cert().trim(), root.pem().trim());
    let key = generate_csr(&reviews()).expect("csr");
    let issued = ca
        .sign(&key.csr_pem, &reviews(), Duration::from_secs(600))
        .expect("sign");
    assert_eq!(
        issued.cert_chain.len(),
        2,
        "leaf then intermediate, root left out"
    );
    let verdict = openssl_verify(dir.path(), &issued.root_cert, &issued.cert_chain);
    assert!(verdict.contains("OK"), "{verdict}");
}

#[test]
fn lifetime_is_capped_by_the_signing_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(dir.path(), "cluster.local").expect("create");
    let key = generate_csr(&reviews()).expect("csr");
    let issued = ca
        .sign(
            &key.csr_pem,
            &reviews(),
            Duration::from_secs(100 * 365 * 24 * 3600),
        )
        .expect("sign");
    assert_eq!(issued.not_after, ca.issuer_not_after);
    assert!(matches!(
        ca.sign(&key.csr_pem, &reviews(), Duration::ZERO),
        Err(CaError::ZeroTtl)
    ));
}

#[test]
fn bad_inputs_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(dir.path(), "cluster.local").expect("create");
    let err = ca
        .sign("not a csr", &reviews(), Duration::from_secs(60))
        .expect_err("rejected");
    assert!(matches!(err, CaError::BadCsr(_)), "{err}");

    let partial = tempfile::tempdir().expect("tempdir");
    std::fs::write(partial.path().join("ca-cert.pem"), "x").expect("write");
    let err = CertificateAuthority::load_or_create(partial.path(), "cluster.local")
        .expect_err("incomplete");
    let text = err.to_string();
    assert!(
        text.contains("missing ca-key.pem, root-cert.pem, cert-chain.pem"),
        "{text}"
    );
}

#[test]
fn serving_certificate_names_the_control_plane_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(dir.path(), "cluster.local").expect("create");
    let id = SpiffeId::new("cluster.local", "istio-system", "istiod");
    let ip: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
    let serving = ca
        .serving_certificate(
            &id,
            &["istiod.istio-system.svc"],
            &[ip],
            Duration::from_secs(3600),
        )
        .expect("serving cert");
    let der = der_of(&serving.cert_chain_pem);
    let (_, cert) = X509Certificate::from_der(&der).expect("der");
    let san = cert.subject_alternative_name().expect("ok").expect("san");
    let names = format!("{:?}", san.value.general_names);
    assert!(
        names.contains("istiod.istio-system.svc")
            && names.contains("spiffe://cluster.local/ns/istio-system/sa/istiod"),
        "{names}"
    );
    let verdict = openssl_verify(
        dir.path(),
        ca.root_cert(),
        std::slice::from_ref(&serving.cert_chain_pem),
    );
    assert!(verdict.contains("OK"), "{verdict}");
    assert!(serving.key_pem.contains("PRIVATE KEY"));
}
