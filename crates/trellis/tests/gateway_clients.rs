//! An ingress gateway as real clients see it, on both data planes: a mesh with a router proxy
//! serving two HTTPS servers on one port (SIMPLE, one credential each, chosen by SNI) and a
//! MUTUAL server, with credentials resolved by the control plane from files. `curl --resolve`
//! reaches the echo service through the gateway and is shown the certificate of the name it
//! asked for (its CN and SAN checked); `openssl s_client` without a client certificate is
//! refused by the MUTUAL server and served with one.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;
use trellis_testkit::mesh::{
    CredentialSpec, Dataplane, GatewaySpec, Mesh, MeshOptions, MeshSpec, TestCredentials, echo_mesh,
};

const CONFIG: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https-shop, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop-cert}
  - port: {number: 8443, name: https-api, protocol: HTTPS}
    hosts: [api.example.com]
    tls: {mode: SIMPLE, credentialName: api-cert}
  - port: {number: 9443, name: https-partner, protocol: HTTPS}
    hosts: [partner.example.com]
    tls: {mode: MUTUAL, credentialName: partner-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: default}
spec:
  hosts: [shop.example.com, api.example.com, partner.example.com]
  gateways: [istio-system/public]
  http:
  - route: [{destination: {host: echo}}]
";

/// How long a client may keep retrying while the gateway's listeners come up.
const READY: Duration = Duration::from_secs(30);

async fn gateway_mesh(dataplane: Dataplane, n: u8, run_dir: &Path) -> anyhow::Result<Mesh> {
    let spec = MeshSpec {
        extra_yaml: CONFIG.into(),
        ..echo_mesh(Ipv4Addr::new(127, 71, n, 0), dataplane, &["v1"])
    };
    let mut options = MeshOptions::new(env!("CARGO_BIN_EXE_trellis"), run_dir);
    options.startup_timeout = Duration::from_secs(90);
    options.gateways = vec![GatewaySpec {
        name: "ingress".into(),
        namespace: "istio-system".into(),
        labels: [("istio".to_string(), "ingressgateway".to_string())].into(),
    }];
    options.credentials = [
        ("shop-cert", "shop.example.com"),
        ("api-cert", "api.example.com"),
        ("partner-cert", "partner.example.com"),
    ]
    .iter()
    .map(|(name, host)| CredentialSpec {
        name: name.to_string(),
        hosts: vec![host.to_string()],
    })
    .collect();
    Mesh::start(spec, options).await
}

/// `curl -v --resolve HOST:PORT:IP https://HOST:PORT/` trusting the test CA; returns the exit
/// status, the body and curl's verbose log (the TLS details).
async fn curl(
    host: &str,
    gateway: SocketAddr,
    ca: &Path,
) -> anyhow::Result<(bool, String, String)> {
    let port = gateway.port();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-v", "--max-time", "10", "--resolve"])
        .arg(format!("{host}:{port}:{}", gateway.ip()))
        .arg("--cacert")
        .arg(ca)
        .arg(format!("https://{host}:{port}/shop?x=1"))
        .kill_on_drop(true)
        .output()
        .await
        .context("running curl")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Retries `curl` until it succeeds (the gateway's listener may still be starting).
async fn curl_until_ok(
    host: &str,
    gateway: SocketAddr,
    ca: &Path,
) -> anyhow::Result<(String, String)> {
    let deadline = Instant::now() + READY;
    loop {
        let (ok, body, log) = curl(host, gateway, ca).await?;
        if ok {
            return Ok((body, log));
        }
        if Instant::now() >= deadline {
            bail!("curl {host} via {gateway} kept failing:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `openssl s_client` to the MUTUAL server, with the client certificate or without; one
/// HTTP request; stdout and stderr together.
async fn s_client(
    gateway: SocketAddr,
    credentials: &TestCredentials,
    with_cert: bool,
) -> anyhow::Result<String> {
    let mut command = tokio::process::Command::new("openssl");
    command
        .args(["s_client", "-connect", &gateway.to_string(), "-ign_eof"])
        .args(["-servername", "partner.example.com", "-CAfile"])
        .arg(&credentials.ca_cert);
    if with_cert {
        command
            .arg("-cert")
            .arg(&credentials.client_cert)
            .arg("-key")
            .arg(&credentials.client_key);
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running openssl")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A refused handshake may have closed the pipe already.
        let _ = stdin
            .write_all(b"GET / HTTP/1.1\r\nHost: partner.example.com\r\nConnection: close\r\n\r\n")
            .await;
    }
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await??;
    Ok(format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

async fn real_clients_through_the_gateway(dataplane: Dataplane, n: u8) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mesh = gateway_mesh(dataplane, n, &tmp.path().join("mesh")).await?;
    let result = check(&mesh).await;
    let logs = if result.is_err() {
        mesh.log_tails(30)
    } else {
        String::new()
    };
    mesh.shutdown().await;
    result.with_context(|| logs)
}

async fn check(mesh: &Mesh) -> anyhow::Result<()> {
    let credentials = mesh.credentials()?.clone();
    let https = mesh.gateway_address(Some("ingress"), 8443)?;
    for host in ["shop.example.com", "api.example.com"] {
        let (body, log) = curl_until_ok(host, https, &credentials.ca_cert).await?;
        // The echo app answered, and saw the request the gateway forwarded.
        let echo: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("echo JSON: {body}"))?;
        anyhow::ensure!(
            echo["service"] == "echo",
            "{host}: not the echo app: {body}"
        );
        anyhow::ensure!(
            log.contains(&format!("subject: CN={host}")),
            "{host}: the gateway presented another certificate:\n{log}"
        );
        anyhow::ensure!(
            log.contains(&format!("host \"{host}\" matched cert's \"{host}\"")),
            "{host}: the certificate's SAN does not name the host:\n{log}"
        );
    }
    let mutual = mesh.gateway_address(Some("ingress"), 9443)?;
    // With the client certificate (retried while the listener comes up): served.
    let deadline = Instant::now() + READY;
    loop {
        let out = s_client(mutual, &credentials, true).await?;
        if out.contains("HTTP/1.1 200") {
            anyhow::ensure!(out.contains("Verify return code: 0 (ok)"), "{out}");
            break;
        }
        if Instant::now() >= deadline {
            bail!("s_client with a client certificate was never served:\n{out}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Without one: the handshake is refused with an alert, nothing is served.
    let out = s_client(mutual, &credentials, false).await?;
    anyhow::ensure!(
        !out.contains("HTTP/1.1 200"),
        "served without a client certificate:\n{out}"
    );
    anyhow::ensure!(
        out.to_lowercase().contains("alert"),
        "no TLS alert without a client certificate:\n{out}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trellis_gateway_serves_real_clients_by_sni() -> anyhow::Result<()> {
    real_clients_through_the_gateway(Dataplane::Trellis, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_gateway_serves_real_clients_by_sni() -> anyhow::Result<()> {
    real_clients_through_the_gateway(Dataplane::Envoy, 2).await
}
