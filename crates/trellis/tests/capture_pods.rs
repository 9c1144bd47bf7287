//! Transparent capture end to end, in real network namespaces, through the pod-mesh launcher
//! ([`trellis_testkit::pods`]): a control plane pod, a `client` pod and three captured workload
//! pods (`productpage-v1-0`, `reviews-v1-0`, `reviews-v2-0`), each running its app (`trellis
//! echo` on 0.0.0.0:9080) and a sidecar as UID 1337 behind Istio's iptables rules, in secure mode
//! (mutual TLS between sidecars). Unmodified clients in the `productpage` pod — curl and a
//! Python `requests` script — call `http://reviews:9080` by name (DNS: the sidecar's DNS proxy
//! answers from the control plane's name table, see `tests/dns.rs`) and get
//! the version a VirtualService picks; the answer shows the server sidecar's
//! `x-forwarded-client-cert` with the client sidecar's identity, so the request went through
//! both. A destination outside the mesh passes through (`ALLOW_ANY`). Runs on both data planes:
//! `trellis proxy` and Envoy via `trellis agent`. Needs root, iptables, setpriv, curl and
//! python3 with `requests`; skipped otherwise.
//!
//! Everything the launcher creates (namespaces, veths, the bridge, iptables rules inside the
//! namespaces, `/etc/netns/*`, processes) goes away when the mesh drops, pass or fail; the test
//! checks that it did.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use trellis_testkit::mesh::{Dataplane, MeshSpec, ServiceSpec, WorkloadSpec};
use trellis_testkit::pods::{PodMesh, PodOptions, cleanup, missing_requirements};

const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");
const PRODUCTPAGE: &str = "productpage-v1-0";

const ROUTING: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#;

const PYTHON_CLIENT: &str = r#"
import sys, requests
headers = {"end-user": sys.argv[2]} if len(sys.argv) > 2 else {}
r = requests.get(sys.argv[1], headers=headers, timeout=10)
r.raise_for_status()
print(r.text)
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
    if !works("python3", &["-c", "import requests"]) {
        missing.push("python3 with requests".into());
    }
    if !missing.is_empty() {
        eprintln!(
            "skipping: {} (scripts/install-deps.sh installs them)",
            missing.join("; ")
        );
    }
    missing.is_empty()
}

fn spec(base: Ipv4Addr, dataplane: Dataplane) -> MeshSpec {
    let service = |name: &str| ServiceSpec {
        name: name.into(),
        namespace: "default".into(),
        port: 9080,
        protocol: "HTTP".into(),
    };
    let workload = |service: &str, version: &str| WorkloadSpec {
        service: service.into(),
        version: version.into(),
        instance: 0,
        calls: Vec::new(),
    };
    MeshSpec {
        base,
        dataplane,
        services: vec![service("productpage"), service("reviews")],
        workloads: vec![
            workload("productpage", "v1"),
            workload("reviews", "v1"),
            workload("reviews", "v2"),
        ],
        extra_yaml: ROUTING.to_string(),
    }
}

/// Runs a command in `pod`: (success, stdout, stderr).
fn exec(mesh: &PodMesh, pod: &str, args: &[&str]) -> (bool, String, String) {
    let out = mesh.exec(pod, args).expect("ip netns exec runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn curl(mesh: &PodMesh, pod: &str, url: &str, headers: &[&str]) -> Result<String, String> {
    let mut args = vec!["curl", "-sS", "--fail", "--max-time", "10"];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(url);
    match exec(mesh, pod, &args) {
        (true, out, _) => Ok(out),
        (false, out, err) => {
            // Again with the response head, to show who answered.
            args[2] = "-i";
            let (_, response, _) = exec(mesh, pod, &args);
            Err(format!("curl {url}: {err}{out}\n{response}"))
        }
    }
}

/// Polls `check` for up to 30 s, failing with its last error and the logs.
fn wait<T>(mesh: &mut PodMesh, what: &str, check: impl FnMut(&PodMesh) -> Result<T, String>) -> T {
    mesh.wait_for(what, Duration::from_secs(30), check)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn answer(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not the echo's JSON ({e}): {body}"))
}

fn xfcc_of(v: &Value) -> String {
    v["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn run(dataplane: Dataplane, tag: &str, base: Ipv4Addr) {
    let prefix = format!("cp{tag}{}", std::process::id() % 10000);
    let dir = tempfile::tempdir().expect("tempdir");
    let options = PodOptions::new(TRELLIS, dir.path().join("run"), &prefix);
    let mut mesh = PodMesh::start(spec(base, dataplane), options)
        .unwrap_or_else(|e| panic!("starting the pod mesh: {e:#}"));
    assert_eq!(
        mesh.nack_count(),
        0,
        "NACKs: {:?}",
        mesh.syncz().map(|s| s.nacks())
    );

    // curl by name: the default route goes to v1, `end-user: jason` to v2, through both
    // sidecars (the server sidecar saw the client sidecar's certificate).
    let reviews = "http://reviews:9080/reviews";
    let first = wait(
        &mut mesh,
        "curl http://reviews:9080 from productpage",
        |m| curl(m, PRODUCTPAGE, reviews, &[]),
    );
    let first = answer(&first);
    assert!(
        xfcc_of(&first).contains("URI=spiffe://cluster.local/ns/default/sa/productpage"),
        "the server sidecar terminated the client sidecar's mutual TLS: {first}"
    );
    for _ in 0..5 {
        let v1 = answer(&curl(&mesh, PRODUCTPAGE, reviews, &[]).expect("curl"));
        assert_eq!(v1["version"], "v1", "{v1}");
        assert_eq!(v1["headers"]["host"], "reviews:9080", "{v1}");
        let v2 = answer(&curl(&mesh, PRODUCTPAGE, reviews, &["end-user: jason"]).expect("curl"));
        assert_eq!(v2["version"], "v2", "{v2}");
        assert!(xfcc_of(&v2).contains("sa/productpage"), "{v2}");
    }
    // The full name works as well, and so does the service name for the pod.
    let fqdn = answer(
        &curl(
            &mesh,
            "productpage",
            "http://reviews.default.svc.cluster.local:9080/fqdn",
            &[],
        )
        .expect("curl fqdn"),
    );
    assert_eq!(fqdn["service"], "reviews", "{fqdn}");

    // An unmodified Python client (requests).
    for (user, version) in [("", "v1"), ("jason", "v2")] {
        let mut args = vec!["python3", "-c", PYTHON_CLIENT, "http://reviews:9080/python"];
        if !user.is_empty() {
            args.push(user);
        }
        let (ok, out, err) = exec(&mesh, PRODUCTPAGE, &args);
        assert!(ok, "python client failed: {err}\n{}", mesh.log_tails(30));
        let v = answer(out.trim());
        assert_eq!(v["version"], version, "{v}");
        assert!(xfcc_of(&v).contains("sa/productpage"), "{v}");
    }

    // Outside the mesh (the control plane's monitoring port): passed through under ALLOW_ANY.
    let ready = format!("http://{}/ready", mesh.monitoring_address());
    let outside = curl(&mesh, PRODUCTPAGE, &ready, &[])
        .unwrap_or_else(|e| panic!("passthrough: {e}\n{}", mesh.log_tails(30)));
    assert!(!outside.is_empty());
    assert_eq!(
        mesh.nack_count(),
        0,
        "NACKs: {:?}",
        mesh.syncz().map(|s| s.nacks())
    );

    let namespaces: Vec<String> = mesh
        .pods()
        .iter()
        .map(|p| format!("{prefix}-{}", p.name))
        .collect();
    let pids = mesh.pids();
    drop(mesh);
    let left = cleanup::namespaces_with_prefix(&prefix).expect("ip netns list");
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    for ns in namespaces {
        assert!(
            !Path::new("/etc/netns").join(&ns).exists(),
            "/etc/netns/{ns} left behind"
        );
    }
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still runs"
        );
    }
}

#[test]
fn captured_pods_call_services_by_name_through_trellis_sidecars() {
    if can_run() {
        run(Dataplane::Trellis, "t", Ipv4Addr::new(127, 235, 1, 0));
    }
}

#[test]
fn captured_pods_call_services_by_name_through_envoy_sidecars() {
    if can_run() {
        run(Dataplane::Envoy, "e", Ipv4Addr::new(127, 235, 2, 0));
    }
}
