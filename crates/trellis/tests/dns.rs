//! DNS proxying in captured pods (Istio's `ISTIO_META_DNS_CAPTURE`), end to end on both data
//! planes, through the pod-mesh launcher: every pod's resolv.conf names the mesh's resolver
//! (a test resolver in pod `cp`, standing in for a cluster's DNS), the capture rules send a
//! sidecar pod's port 53 to its DNS proxy (`trellis proxy --dns-capture`, or `trellis agent
//! --dns-capture` next to Envoy), which answers from the control plane's name table (NDS).
//!
//! Checked from the `client` pod with unmodified tools (Python's resolver, curl):
//! - a mesh service by its short name, `NAME.NS` and its full name → its ServiceEntry address;
//! - a ServiceEntry host with `addresses` → that address;
//! - a ServiceEntry host without addresses → an auto-allocated `240.240.0.0/16` address, and
//!   `curl` to it reaches the host's DNS-resolved endpoint (the `outside` pod) through the
//!   sidecar;
//! - a name outside the table → relayed to the mesh's resolver (its answer, TTL 60 s; the
//!   resolver saw the query); an unknown one → NXDOMAIN from there;
//! - malformed packets to the DNS proxy → FORMERR or nothing, and the proxy keeps answering
//!   (counted in `trellis_dns_requests_total{outcome="malformed"}`);
//! - `curl http://echo:9080/` answers through both sidecars.
//!
//! Needs root, iptables, setpriv, curl and python3; skipped otherwise.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use trellis_testkit::dns::{RecordType, ResponseCode, UPSTREAM_TTL, query_udp, send_raw_udp};
use trellis_testkit::mesh::{Dataplane, echo_mesh};
use trellis_testkit::pods::{CLIENT_POD, PodMesh, PodOptions, missing_requirements};

const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");
const DNS_PROXY: &str = "127.0.0.1:15053";

/// Prints the name's IPv4 address, or exits 2 when it does not resolve.
const RESOLVE: &str = r#"
import socket, sys
try:
    print(socket.gethostbyname(sys.argv[1]))
except socket.gaierror as e:
    print(e, file=sys.stderr)
    sys.exit(2)
"#;

fn can_run() -> bool {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut missing: Vec<String> = missing_requirements().into_iter().collect();
    if !works("curl", &["--version"]) {
        missing.push("curl".into());
    }
    if !works("python3", &["--version"]) {
        missing.push("python3".into());
    }
    if !missing.is_empty() {
        eprintln!(
            "skipping: {} (scripts/install-deps.sh installs them)",
            missing.join("; ")
        );
    }
    missing.is_empty()
}

/// A ServiceEntry with an address, and one without (DNS resolution: its endpoint is what the
/// mesh's resolver says `api.external.test` is, the outside pod).
fn extra_yaml() -> String {
    r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static-example, namespace: default}
spec:
  hosts: [static.example.test]
  addresses: [192.0.2.10]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 192.0.2.11}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-external, namespace: default}
spec:
  hosts: [api.external.test]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 9080, name: http, protocol: HTTP}]
"#
    .to_string()
}

/// Python's resolver in `pod`: the address, or the error.
fn resolve(mesh: &PodMesh, pod: &str, name: &str) -> Result<String, String> {
    let out = mesh
        .exec(pod, &["python3", "-c", RESOLVE, name])
        .map_err(|e| format!("{e:#}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{name} does not resolve: {stderr}"))
    }
}

fn curl(mesh: &PodMesh, pod: &str, url: &str) -> Result<Value, String> {
    let out = mesh
        .exec(pod, &["curl", "-sS", "--fail", "--max-time", "10", url])
        .map_err(|e| format!("{e:#}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl {url}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("curl {url}: not JSON: {e}"))
}

/// Polls `check` for up to 30 s (config reaches the name table shortly after the listeners),
/// failing with its last error and the logs.
fn wait<T>(mesh: &mut PodMesh, what: &str, check: impl FnMut(&PodMesh) -> Result<T, String>) -> T {
    mesh.wait_for(what, Duration::from_secs(30), check)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The DNS proxy's malformed-query count, from the sidecar's metrics in `pod`.
fn malformed_count(mesh: &PodMesh, pod: &str, dataplane: Dataplane) -> f64 {
    let ip = mesh.pod(pod).expect("pod").ip;
    // The Trellis proxy's own metrics (15090); the agent's next to Envoy's health (15021).
    let port = match dataplane {
        Dataplane::Trellis => 15090,
        Dataplane::Envoy => 15021,
    };
    let url = format!("http://{ip}:{port}/stats/prometheus");
    let out = mesh
        .exec(pod, &["curl", "-sS", "--max-time", "5", &url])
        .expect("curl metrics");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.starts_with("trellis_dns_requests_total{outcome=\"malformed\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn run(dataplane: Dataplane, tag: &str, base: Ipv4Addr) {
    let prefix = format!("dn{tag}{}", std::process::id() % 10000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = echo_mesh(base, dataplane, &["v1"]);
    spec.extra_yaml = extra_yaml();
    let mut options = PodOptions::new(TRELLIS, dir.path().join("run"), &prefix);
    options.outside = true;
    let outside_ip: IpAddr = Ipv4Addr::new(10, base.octets()[1], base.octets()[2], 3).into();
    options.dns_records = BTreeMap::from([
        ("api.external.test".to_string(), vec![outside_ip]),
        (
            "world.example.test".to_string(),
            vec!["192.0.2.99".parse().expect("ip")],
        ),
    ]);
    let mut mesh =
        PodMesh::start(spec, options).unwrap_or_else(|e| panic!("starting the pod mesh: {e:#}"));
    let echo_vip = mesh.service_vip("echo").expect("vip").to_string();

    // Mesh service names, answered by the DNS proxy from the name table.
    for name in ["echo", "echo.default", "echo.default.svc.cluster.local"] {
        let ip = wait(&mut mesh, &format!("{name} to resolve"), |m| {
            resolve(m, CLIENT_POD, name)
        });
        assert_eq!(ip, echo_vip, "{name}");
    }
    // ServiceEntry hosts: its address, and an auto-allocated one.
    let ip = wait(&mut mesh, "static.example.test to resolve", |m| {
        resolve(m, CLIENT_POD, "static.example.test")
    });
    assert_eq!(ip, "192.0.2.10");
    let allocated = wait(&mut mesh, "api.external.test to resolve", |m| {
        resolve(m, CLIENT_POD, "api.external.test")
    });
    assert!(allocated.starts_with("240.240."), "{allocated}");
    let proxy: SocketAddr = DNS_PROXY.parse().expect("addr");
    let client_ns = mesh.netns(CLIENT_POD).expect("netns");
    let direct = client_ns
        .run(move || {
            query_udp(
                proxy,
                "echo.default.svc.cluster.local.",
                RecordType::A,
                Duration::from_secs(5),
            )
        })
        .expect("netns")
        .expect("query");
    assert_eq!(
        direct.ttls,
        vec![30],
        "answered by the DNS proxy: {direct:?}"
    );

    // Other names go to the mesh's resolver.
    let upstream = mesh.upstream_dns().expect("the mesh runs with DNS");
    let before = upstream.queries();
    assert_eq!(
        resolve(&mesh, CLIENT_POD, "world.example.test").expect("relayed"),
        "192.0.2.99"
    );
    assert!(
        upstream.queries() > before,
        "the mesh's resolver saw the query"
    );
    let relayed = client_ns
        .run(move || {
            query_udp(
                proxy,
                "world.example.test.",
                RecordType::A,
                Duration::from_secs(5),
            )
        })
        .expect("netns")
        .expect("query");
    assert_eq!(
        relayed.ttls,
        vec![UPSTREAM_TTL],
        "the upstream's answer: {relayed:?}"
    );
    let unknown = client_ns
        .run(move || {
            query_udp(
                proxy,
                "nope.example.test.",
                RecordType::A,
                Duration::from_secs(5),
            )
        })
        .expect("netns")
        .expect("query");
    assert_eq!(unknown.code, ResponseCode::NXDomain);
    assert!(resolve(&mesh, CLIENT_POD, "nope.example.test").is_err());

    // Malformed packets: FORMERR or nothing, and the proxy goes on answering.
    let malformed_before = malformed_count(&mesh, CLIENT_POD, dataplane);
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xde, 0xad],
        vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
        ],
        vec![0xff; 600],
    ];
    for packet in garbage {
        let answer = client_ns
            .run(move || send_raw_udp(proxy, &packet, Duration::from_millis(500)))
            .expect("netns")
            .expect("send");
        if let Some(answer) = answer {
            assert!(
                answer.len() >= 4 && answer[3] & 0x0f == 1,
                "FORMERR: {answer:?}"
            );
        }
    }
    let still = client_ns
        .run(move || query_udp(proxy, "echo.", RecordType::A, Duration::from_secs(5)))
        .expect("netns")
        .expect("the DNS proxy still answers");
    assert_eq!(still.ips, vec![echo_vip.parse::<IpAddr>().expect("ip")]);
    let malformed_after = malformed_count(&mesh, CLIENT_POD, dataplane);
    assert!(
        malformed_after >= malformed_before + 3.0,
        "malformed queries counted: {malformed_before} → {malformed_after}"
    );

    // Unmodified curl by name: a mesh service through both sidecars, and a ServiceEntry host
    // without addresses through its auto-allocated address to its DNS endpoint.
    let echo = wait(&mut mesh, "curl http://echo:9080/", |m| {
        curl(m, CLIENT_POD, "http://echo:9080/dns")
    });
    assert_eq!(echo["service"], "echo", "{echo}");
    assert!(
        echo["headers"]["x-forwarded-client-cert"]
            .as_str()
            .unwrap_or_default()
            .contains("sa/client"),
        "through both sidecars: {echo}"
    );
    let external = wait(&mut mesh, "curl http://api.external.test:9080/", |m| {
        curl(m, CLIENT_POD, "http://api.external.test:9080/external")
    });
    assert_eq!(external["service"], "outside", "{external}");

    assert_eq!(
        mesh.nack_count(),
        0,
        "NACKs: {:?}",
        mesh.syncz().map(|s| s.nacks())
    );
}

#[test]
fn pods_resolve_mesh_names_through_the_trellis_dns_proxy() {
    if can_run() {
        run(Dataplane::Trellis, "t", Ipv4Addr::new(127, 236, 1, 0));
    }
}

#[test]
fn pods_resolve_mesh_names_through_the_agent_dns_proxy_next_to_envoy() {
    if can_run() {
        run(Dataplane::Envoy, "e", Ipv4Addr::new(127, 236, 2, 0));
    }
}
