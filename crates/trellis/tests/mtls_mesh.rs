//! Mutual TLS as an outsider sees it, on both data planes: a mesh started with the testkit
//! (control plane, CA, sidecars with certificates) and a STRICT PeerAuthentication, probed with
//! `openssl s_client`. Without a client certificate, or with one from another trust domain's
//! CA, the handshake is refused; with a certificate from the mesh CA the request is served and
//! the sidecar presents the workload's SPIFFE identity.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use trellis_ca::{CertificateAuthority, SpiffeId, generate_csr};
use trellis_testkit::mesh::{Dataplane, Mesh, MeshOptions, MeshSpec, echo_mesh};

const STRICT: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
";

/// A mesh of one `echo` workload under STRICT mTLS, on its own loopback /24.
async fn strict_mesh(dataplane: Dataplane, n: u8, run_dir: &Path) -> anyhow::Result<Mesh> {
    let spec = MeshSpec {
        extra_yaml: STRICT.into(),
        ..echo_mesh(Ipv4Addr::new(127, 66, n, 0), dataplane, &["v1"])
    };
    let mut options = MeshOptions::new(env!("CARGO_BIN_EXE_trellis"), run_dir);
    options.startup_timeout = Duration::from_secs(90);
    Mesh::start(spec, options).await
}

/// Runs `openssl s_client` against `addr` trusting `root`, presenting `client` (certificate,
/// key) if given, and sending one HTTP request; returns stdout and stderr together.
async fn s_client(
    addr: SocketAddr,
    root: &Path,
    client: Option<&(PathBuf, PathBuf)>,
) -> anyhow::Result<String> {
    let mut command = tokio::process::Command::new("openssl");
    command
        .args(["s_client", "-connect", &addr.to_string(), "-showcerts"])
        .args(["-ign_eof", "-servername", "echo.default.svc.cluster.local"])
        .arg("-CAfile")
        .arg(root);
    if let Some((cert, key)) = client {
        command.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // openssl may already have given up (a refused handshake): a broken pipe is expected.
        let _ = stdin
            .write_all(b"GET / HTTP/1.1\r\nHost: echo:9080\r\nConnection: close\r\n\r\n")
            .await;
    }
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await??;
    Ok(format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A certificate and key for `ns/sa` signed by the CA in `ca_dir`, written under `dir`.
fn issue(ca_dir: &Path, trust_domain: &str, dir: &Path, sa: &str) -> (PathBuf, PathBuf) {
    let ca = CertificateAuthority::load_or_create(ca_dir, trust_domain).expect("CA loads");
    let id = SpiffeId::new(trust_domain, "default", sa);
    let key = generate_csr(&id).expect("csr");
    let issued = ca
        .sign(&key.csr_pem, &id, Duration::from_secs(3600))
        .expect("signs");
    let cert = dir.join(format!("{sa}-cert.pem"));
    let key_file = dir.join(format!("{sa}-key.pem"));
    std::fs::write(&cert, issued.cert_chain.concat()).expect("write cert");
    std::fs::write(&key_file, key.key_pem).expect("write key");
    (cert, key_file)
}

/// The URI SANs of the first certificate `s_client -showcerts` printed.
fn presented_uris(out: &str) -> Vec<String> {
    let Some(begin) = out.find("-----BEGIN CERTIFICATE-----") else {
        return Vec::new();
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&out.as_bytes()[begin..]) else {
        return Vec::new();
    };
    let Ok(cert) = pem.parse_x509() else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_string()),
            _ => None,
        })
        .collect()
}

/// The server aborted the handshake: no response, and openssl reports an alert.
fn assert_refused(out: &str, what: &str) {
    assert!(
        !out.contains("HTTP/1.1 200"),
        "{what}: served anyway\n{out}"
    );
    assert!(
        out.to_lowercase().contains("alert"),
        "{what}: no TLS alert\n{out}"
    );
}

async fn strict_port_needs_a_mesh_certificate(dataplane: Dataplane, n: u8) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run_dir = tmp.path().join("mesh");
    let mesh = strict_mesh(dataplane, n, &run_dir)
        .await
        .expect("mesh starts");
    let inbound = mesh.service_address("echo:9080").expect("echo address");
    let ca_dir = run_dir.join("ca");
    let root = ca_dir.join("root-cert.pem");

    let out = s_client(inbound, &root, None).await.expect("openssl");
    assert_refused(&out, "no client certificate");
    assert_eq!(
        presented_uris(&out),
        ["spiffe://cluster.local/ns/default/sa/echo"],
        "the sidecar presents the workload identity\n{out}"
    );

    let foreign = tmp.path().join("foreign-ca");
    let intruder = issue(&foreign, "example.org", tmp.path(), "intruder");
    let out = s_client(inbound, &root, Some(&intruder))
        .await
        .expect("openssl");
    assert_refused(&out, "a certificate of another trust domain");

    let probe = issue(&ca_dir, "cluster.local", tmp.path(), "probe");
    let out = s_client(inbound, &root, Some(&probe))
        .await
        .expect("openssl");
    assert!(out.contains("HTTP/1.1 200"), "a mesh certificate\n{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(
        out.contains("URI=spiffe://cluster.local/ns/default/sa/probe"),
        "the app sees the verified client identity\n{out}"
    );
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trellis_strict_port_needs_a_mesh_certificate() {
    strict_port_needs_a_mesh_certificate(Dataplane::Trellis, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_strict_port_needs_a_mesh_certificate() {
    strict_port_needs_a_mesh_certificate(Dataplane::Envoy, 2).await;
}
