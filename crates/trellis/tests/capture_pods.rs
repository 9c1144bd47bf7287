//! Transparent capture end to end, in real network namespaces: a control plane pod and three
//! captured pods (`productpage`, `reviews-v1`, `reviews-v2`) on one bridge, each captured pod
//! running its app (`trellis echo` on 0.0.0.0:9080) and a sidecar as UID 1337 with Trellis's
//! iptables rules, in secure mode (mutual TLS between sidecars). Unmodified clients in the
//! `productpage` pod — curl and a Python `requests` script — call `http://reviews:9080` by name
//! (`/etc/hosts` of the pod: there is no DNS proxy yet) and get the version a VirtualService
//! picks; the answer shows the server sidecar's `x-forwarded-client-cert` with the client
//! sidecar's identity, so the request went through both. A destination outside the mesh passes
//! through (`ALLOW_ANY`). Runs on both data planes: `trellis proxy` and Envoy via `trellis
//! agent`. Needs root, iptables, curl and python3 with `requests`; skipped otherwise.
//!
//! Everything it creates (namespaces, veths, the bridge, iptables rules inside the namespaces,
//! `/etc/netns/*`, processes) goes away when it ends, pass or fail: processes are ended by PID
//! first, then the pod network is dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use trellis_capture::{CaptureConfig, Family, PodNetwork, netns};
use trellis_testkit::mesh::Syncz;
use trellis_testkit::process::{ChildGuard, Spec, spawn_logged};

const TRELLIS: &str = env!("CARGO_BIN_EXE_trellis");
const STARTUP: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);
/// The UID and GID sidecars run as (Istio's), excluded from capture.
const PROXY_ID: &str = "1337";

/// The captured pods: (pod, service, version, host number on the pod network).
const WORKLOADS: [(&str, &str, &str, u8); 3] = [
    ("productpage", "productpage", "v1", 10),
    ("reviews-v1", "reviews", "v1", 11),
    ("reviews-v2", "reviews", "v2", 12),
];

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

#[derive(Clone, Copy, Debug)]
enum Dataplane {
    Trellis,
    Envoy,
}

fn can_run() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let iptables = works("iptables", &["--version"]);
    let curl = works("curl", &["--version"]);
    let requests = works("python3", &["-c", "import requests"]);
    let setpriv = works("setpriv", &["--version"]);
    let ok = root && iptables && curl && requests && setpriv;
    if !ok {
        eprintln!(
            "skipping: needs root, iptables, curl, setpriv and python3 with requests (root: \
             {root}, iptables: {iptables}, curl: {curl}, requests: {requests}, setpriv: {setpriv}; \
             scripts/install-deps.sh installs them)"
        );
    }
    ok
}

/// What the test made. Fields drop in order: processes first (by PID), then the pods
/// (namespaces, veths, bridge, iptables rules inside them, `/etc/netns/*`), then the files.
struct World {
    children: Vec<ChildGuard>,
    net: PodNetwork,
    dir: tempfile::TempDir,
    subnet: [u8; 2],
}

impl World {
    fn ip(&self, host: u8) -> String {
        format!("10.{}.{}.{host}", self.subnet[0], self.subnet[1])
    }

    fn ns(&self, pod: &str) -> String {
        self.net
            .pod(pod)
            .unwrap_or_else(|| panic!("no pod {pod}"))
            .netns()
            .name()
            .to_string()
    }

    fn spawn(&mut self, spec: &Spec, log: &str) {
        let guard = spawn_logged(spec, &self.dir.path().join(log))
            .unwrap_or_else(|e| panic!("starting {}: {e:#}", spec.name));
        self.children.push(guard);
    }

    /// `program args` inside `pod`'s namespace (with its /etc/hosts), as a [`Spec`].
    fn in_pod(&self, name: &str, pod: &str, program: &str) -> Spec {
        Spec::new(name, "ip")
            .arg("netns")
            .arg("exec")
            .arg(self.ns(pod))
            .arg(program)
    }

    /// Runs a command in `pod` and returns (success, stdout, stderr).
    fn exec(&self, pod: &str, args: &[&str]) -> (bool, String, String) {
        let ns = self.ns(pod);
        let mut full = vec!["netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        let out = Command::new("ip").args(&full).output().expect("ip runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for c in &self.children {
            out.push_str(&format!(
                "==> {} <==\n{}\n",
                c.log().display(),
                trellis_testkit::process::log_tail(c.log(), 30)
            ));
        }
        out
    }

    /// Polls `check` until it returns `Ok`, failing with its last error and the logs.
    fn wait<T>(&mut self, what: &str, mut check: impl FnMut(&World) -> Result<T, String>) -> T {
        let deadline = Instant::now() + STARTUP;
        loop {
            for c in &mut self.children {
                if let Err(e) = c.check_running() {
                    panic!("while waiting for {what}: {e:#}\n{}", self.logs());
                }
            }
            match check(self) {
                Ok(v) => return v,
                Err(e) if Instant::now() >= deadline => {
                    panic!("timed out waiting for {what}: {e}\n{}", self.logs())
                }
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }

    fn curl(&self, pod: &str, url: &str, headers: &[&str]) -> Result<String, String> {
        let mut args = vec!["curl", "-sS", "--fail", "--max-time", "10"];
        for h in headers {
            args.extend(["-H", h]);
        }
        args.push(url);
        match self.exec(pod, &args) {
            (true, out, _) => Ok(out),
            (false, out, err) => {
                // Again with the response head, to show who answered.
                let mut verbose = vec!["curl", "-sS", "-i", "--max-time", "10"];
                for h in headers {
                    verbose.extend(["-H", h]);
                }
                verbose.push(url);
                let (_, response, _) = self.exec(pod, &verbose);
                Err(format!("curl {url}: {err}{out}\n{response}"))
            }
        }
    }

    fn syncz(&self) -> Result<Syncz, String> {
        let url = format!("http://{}:15014/debug/syncz", self.ip(1));
        let body = self.curl("cp", &url, &[])?;
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }
}

fn mesh_yaml(w: &World) -> String {
    let mut docs = Vec::new();
    for service in ["productpage", "reviews"] {
        docs.push(format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: {service}, namespace: default}}\n\
             spec:\n  hosts: [{service}.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  \
             resolution: STATIC\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  \
             workloadSelector: {{labels: {{app: {service}}}}}\n"
        ));
    }
    for (pod, service, version, host) in WORKLOADS {
        docs.push(format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
             metadata: {{name: {pod}, namespace: default}}\n\
             spec:\n  address: {}\n  serviceAccount: {service}\n  labels: {{app: {service}, \
             version: {version}, security.istio.io/tlsMode: istio}}\n",
            w.ip(host)
        ));
    }
    docs.push(ROUTING.trim().to_string());
    docs.join("---\n")
}

/// The Envoy binary where UID 1337 can run it (the Python package may live under /root).
fn envoy_for_proxy_user(dir: &Path) -> PathBuf {
    let source = trellis_testkit::envoy::find_envoy().expect("Envoy is installed");
    let target = dir.join("envoy");
    if std::fs::hard_link(&source, &target).is_err() {
        std::fs::copy(&source, &target).expect("copy envoy");
    }
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    target
}

fn token(ca_dir: &Path, service_account: &str) -> String {
    let out = Command::new(TRELLIS)
        .args([
            "token",
            "create",
            "--namespace",
            "default",
            "--service-account",
        ])
        .arg(service_account)
        .arg("--ca-dir")
        .arg(ca_dir)
        .output()
        .expect("trellis token create runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn answer(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not the echo's JSON ({e}): {body}"))
}

fn run(dataplane: Dataplane, tag: &str, subnet: [u8; 2]) {
    let prefix = format!("cp{tag}{}", std::process::id() % 10000);
    let dir = tempfile::tempdir().expect("tempdir");
    // Sidecars run as UID 1337: they read the root certificate (and Envoy) from here.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut w = World {
        children: Vec::new(),
        net: PodNetwork::create(&prefix, subnet).expect("pod network"),
        dir,
        subnet,
    };
    w.net.add_pod("cp", 1).expect("control plane pod");
    let names = |service: &str| {
        vec![
            service.to_string(),
            format!("{service}.default"),
            format!("{service}.default.svc.cluster.local"),
        ]
    };
    // Service names resolve to addresses of their own; capture sends every port-9080
    // connection to the sidecar, which routes by Host.
    let hosts = vec![
        (w.ip(200).parse().expect("ip"), names("reviews")),
        (w.ip(201).parse().expect("ip"), names("productpage")),
    ];
    for (pod, _, _, host) in WORKLOADS {
        w.net.add_pod(pod, host).expect("pod");
        let p = w.net.pod_mut(pod).expect("pod");
        p.write_hosts(&hosts).expect("hosts");
        p.netns()
            .run(|| CaptureConfig::default().apply(Family::V4))
            .expect("enter pod")
            .expect("capture rules");
    }

    let config_dir = w.dir.path().join("config");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    std::fs::write(config_dir.join("mesh.yaml"), mesh_yaml(&w)).expect("mesh.yaml");
    let ca_dir = w.dir.path().join("ca");
    let cp = w
        .in_pod("control-plane", "cp", TRELLIS)
        .arg("control-plane")
        .arg("--config-dir")
        .arg(&config_dir)
        .arg("--xds-address")
        .arg(format!("{}:15010", w.ip(1)))
        .arg("--monitoring-address")
        .arg(format!("{}:15014", w.ip(1)))
        .arg("--ca-dir")
        .arg(&ca_dir);
    w.spawn(&cp, "control-plane.log");
    let ready = format!("http://{}:15014/ready", w.ip(1));
    w.wait("the control plane", |w| w.curl("cp", &ready, &[]));
    let root_cert = w.dir.path().join("root-cert.pem");
    std::fs::copy(ca_dir.join("root-cert.pem"), &root_cert).expect("root cert");
    std::fs::set_permissions(&root_cert, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let envoy = match dataplane {
        Dataplane::Envoy => Some(envoy_for_proxy_user(w.dir.path())),
        Dataplane::Trellis => None,
    };

    for (pod, service, version, host) in WORKLOADS {
        let app = w
            .in_pod(&format!("app {pod}"), pod, TRELLIS)
            .arg("echo")
            .arg("--listen")
            .arg("0.0.0.0:9080")
            .arg("--service")
            .arg(service)
            .arg("--version")
            .arg(version)
            .arg("--instance")
            .arg(pod);
        w.spawn(&app, &format!("app-{pod}.log"));
        let sub = match dataplane {
            Dataplane::Trellis => "proxy",
            Dataplane::Envoy => "agent",
        };
        let mut sidecar = w
            .in_pod(&format!("sidecar {pod}"), pod, "setpriv")
            .arg(format!("--reuid={PROXY_ID}"))
            .arg(format!("--regid={PROXY_ID}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(TRELLIS)
            .arg(sub)
            .arg("--capture")
            .arg("--ip")
            .arg(w.ip(host))
            .arg("--workload")
            .arg(pod)
            .arg("--namespace")
            .arg("default")
            .arg("--service-account")
            .arg(service)
            .arg("--labels")
            .arg(format!("app={service},version={version}"))
            .arg("--admin-address")
            .arg("127.0.0.1:15000")
            .arg("--xds-address")
            .arg(format!("{}:15012", w.ip(1)))
            .arg("--root-cert")
            .arg(&root_cert)
            .env("TRELLIS_TOKEN", token(&ca_dir, service));
        if let Some(envoy) = &envoy {
            sidecar = sidecar
                .arg("--envoy")
                .arg(envoy)
                .arg("--concurrency")
                .arg("1");
        }
        w.spawn(&sidecar, &format!("sidecar-{pod}.log"));
    }
    for (pod, _, _, _) in WORKLOADS {
        w.wait(&format!("the sidecar of {pod}"), |w| {
            w.curl(pod, "http://127.0.0.1:15000/ready", &[])
        });
    }
    let syncz = w.wait("every sidecar to ACK its config", |w| {
        let s = w.syncz()?;
        let synced = s.proxies.iter().filter(|p| p.synced).count();
        if s.nacks_total > 0 || !s.nacks().is_empty() {
            return Ok(s);
        }
        if synced == WORKLOADS.len() {
            Ok(s)
        } else {
            Err(format!("{synced} of {} synced", WORKLOADS.len()))
        }
    });
    assert_eq!(syncz.nacks_total, 0, "NACKs: {:?}", syncz.nacks());

    // curl by name: the default route goes to v1, `end-user: jason` to v2, through both
    // sidecars (the server sidecar saw the client sidecar's certificate).
    let reviews = "http://reviews:9080/reviews";
    let first = w.wait("curl http://reviews:9080 from productpage", |w| {
        w.curl("productpage", reviews, &[])
    });
    let xfcc_of = |v: &Value| {
        v["headers"]["x-forwarded-client-cert"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let first = answer(&first);
    assert!(
        xfcc_of(&first).contains("URI=spiffe://cluster.local/ns/default/sa/productpage"),
        "the server sidecar terminated the client sidecar's mutual TLS: {first}"
    );
    for _ in 0..5 {
        let v1 = answer(&w.curl("productpage", reviews, &[]).expect("curl"));
        assert_eq!(v1["version"], "v1", "{v1}");
        assert_eq!(v1["headers"]["host"], "reviews:9080", "{v1}");
        let v2 = answer(
            &w.curl("productpage", reviews, &["end-user: jason"])
                .expect("curl"),
        );
        assert_eq!(v2["version"], "v2", "{v2}");
        assert!(xfcc_of(&v2).contains("sa/productpage"), "{v2}");
    }
    // The full name works as well.
    let fqdn = answer(
        &w.curl(
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
        let (ok, out, err) = w.exec("productpage", &args);
        assert!(ok, "python client failed: {err}\n{}", w.logs());
        let v = answer(out.trim());
        assert_eq!(v["version"], version, "{v}");
        assert!(xfcc_of(&v).contains("sa/productpage"), "{v}");
    }

    // Outside the mesh (the control plane's monitoring port): passed through under ALLOW_ANY.
    let outside = w
        .curl("productpage", &ready, &[])
        .unwrap_or_else(|e| panic!("passthrough: {e}\n{}", w.logs()));
    assert!(!outside.is_empty());

    let syncz = w.syncz().expect("syncz");
    assert_eq!(syncz.nacks_total, 0, "NACKs: {:?}", syncz.nacks());

    let namespaces: Vec<String> = w
        .net
        .pods()
        .iter()
        .map(|p| p.netns().name().to_string())
        .collect();
    drop(w);
    let left = netns::run("ip", &["netns", "list"]).expect("ip netns list");
    assert!(!left.contains(&prefix), "namespaces left behind: {left}");
    for ns in namespaces {
        assert!(
            !Path::new("/etc/netns").join(&ns).exists(),
            "/etc/netns/{ns} left behind"
        );
    }
}

#[test]
fn captured_pods_call_services_by_name_through_trellis_sidecars() {
    if can_run() {
        run(Dataplane::Trellis, "t", [235, 1]);
    }
}

#[test]
fn captured_pods_call_services_by_name_through_envoy_sidecars() {
    if can_run() {
        run(Dataplane::Envoy, "e", [235, 2]);
    }
}
