//! Protocol sniffing in captured pods, with a real server-first protocol: SSH (Debian's
//! `dropbear`, whose banner comes before any client byte). A control plane pod, a captured
//! `client` pod and a captured `mail` pod (`trellis echo` on 8080, dropbear on 2222 and 2223),
//! sidecars as UID 1337 in secure mode. The `mail` service declares 8080 as `web` and 2222 as
//! `ssh`, names without a known protocol prefix, so both are sniffed; 2223 is undeclared.
//!
//! - curl from `client` to `http://mail:8080/`: the client sidecar's `0.0.0.0_8080` sniffs
//!   HTTP/1.1 and routes it (HCM) over mutual TLS, the server sidecar's answer shows the
//!   client's identity; curl from the uncaptured control plane pod reaches the same port in
//!   plaintext, sniffed as HTTP inbound.
//! - An SSH client that waits for the banner: from the control plane pod to `mail:2222` (a
//!   sniffed inbound port, plaintext) and from `client` to `mail:2223` (passed through, then
//!   the undeclared port's catch-all in PERMISSIVE mode, where the TLS inspector used to wait).
//!   On the Trellis proxy the banner arrives within a bound well under any sniffing timeout,
//!   and the server sidecar counts `trellis_protocol_detection_total{protocol="tcp",
//!   reason="server_first"}`. Envoy, like Istio, waits for the client's first bytes before
//!   picking a chain: the test reports how long the banner took there (or that it never came)
//!   without failing on it — see docs/architecture.md.
//!
//! Needs root, iptables, curl, python3, setpriv and dropbear; skipped otherwise. Everything it
//! creates goes away when it ends, pass or fail.

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
const PROXY_ID: &str = "1337";
/// How long the banner may take through the Trellis sidecars: far below the 15 s a sniffing
/// listener would wait for a client that never speaks first, far above a loaded machine's
/// scheduling noise.
const BANNER_BOUND: Duration = Duration::from_secs(3);
/// How long the banner client waits at most (longer than Envoy's 15 s listener filter timeout).
const BANNER_WAIT: u64 = 20;

/// The captured pods: (pod, service account, host number).
const PODS: [(&str, &str, u8); 2] = [("client", "client", 10), ("mail", "mail", 11)];

/// Connects, sends nothing, and prints what the server sent first and after how long.
const BANNER_CLIENT: &str = r#"
import json, socket, sys, time
start = time.monotonic()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(float(sys.argv[3]))
try:
    data = s.recv(256)
except socket.timeout:
    data = None
print(json.dumps({"banner": None if data is None else data.decode("latin-1"),
                  "seconds": time.monotonic() - start}))
"#;

#[derive(Clone, Copy, Debug, PartialEq)]
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
    let tools = works("iptables", &["--version"])
        && works("curl", &["--version"])
        && works("python3", &["--version"])
        && works("setpriv", &["--version"]);
    let dropbear = Path::new("/usr/sbin/dropbear").exists()
        && Command::new("dropbearkey").arg("-h").output().is_ok();
    let ok = root && tools && dropbear;
    if !ok {
        eprintln!(
            "skipping: needs root, iptables, curl, python3, setpriv and dropbear (root: {root}, \
             dropbear: {dropbear}; scripts/install-deps.sh installs them)"
        );
    }
    ok
}

/// What the test made; drops processes first (by PID), then the pods, then the files.
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

    fn in_pod(&self, name: &str, pod: &str, program: &str) -> Spec {
        Spec::new(name, "ip")
            .arg("netns")
            .arg("exec")
            .arg(self.ns(pod))
            .arg(program)
    }

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

    fn curl(&self, pod: &str, url: &str) -> Result<String, String> {
        match self.exec(pod, &["curl", "-sS", "--fail", "--max-time", "10", url]) {
            (true, out, _) => Ok(out),
            (false, out, err) => Err(format!("curl {url}: {err}{out}")),
        }
    }

    fn syncz(&self) -> Result<Syncz, String> {
        let url = format!("http://{}:15014/debug/syncz", self.ip(1));
        let body = self.curl("cp", &url)?;
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// The SSH banner `pod` gets from `ip:port` without sending anything, and how long it took
    /// (`None`: nothing within [`BANNER_WAIT`], or the connection closed empty).
    fn banner(&self, pod: &str, ip: &str, port: u16) -> (Option<String>, Duration) {
        let (ok, out, err) = self.exec(
            pod,
            &[
                "python3",
                "-c",
                BANNER_CLIENT,
                ip,
                &port.to_string(),
                &BANNER_WAIT.to_string(),
            ],
        );
        assert!(ok, "banner client in {pod}: {err}\n{}", self.logs());
        let v: Value = serde_json::from_str(out.trim()).expect("banner client JSON");
        let banner = v["banner"]
            .as_str()
            .filter(|b| !b.is_empty())
            .map(str::to_string);
        let seconds = v["seconds"].as_f64().unwrap_or(f64::MAX);
        (banner, Duration::from_secs_f64(seconds.min(1e6)))
    }
}

fn mesh_yaml(w: &World) -> String {
    let mut docs = vec![
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {name: mail, namespace: default}\n\
         spec:\n  hosts: [mail.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  \
         resolution: STATIC\n  ports: [{number: 8080, name: web}, {number: 2222, name: ssh}]\n  \
         workloadSelector: {labels: {app: mail}}\n"
            .to_string(),
    ];
    for (pod, account, host) in PODS {
        docs.push(format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
             metadata: {{name: {pod}, namespace: default}}\n\
             spec:\n  address: {}\n  serviceAccount: {account}\n  labels: {{app: {pod}, \
             security.istio.io/tlsMode: istio}}\n",
            w.ip(host)
        ));
    }
    docs.join("---\n")
}

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

/// The value of `trellis_protocol_detection_total{protocol, reason}` on `pod`'s sidecar.
fn detections(w: &World, pod: &str, protocol: &str, reason: &str) -> u64 {
    let metrics = w
        .curl(pod, "http://127.0.0.1:15000/stats/prometheus")
        .unwrap_or_default();
    let wanted =
        format!("trellis_protocol_detection_total{{protocol=\"{protocol}\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&wanted))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The pods, their apps and sidecars, running and synced with no NACK.
fn start(dataplane: Dataplane, tag: &str, subnet: [u8; 2]) -> World {
    let prefix = format!("sn{tag}{}", std::process::id() % 10000);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut w = World {
        children: Vec::new(),
        net: PodNetwork::create(&prefix, subnet).expect("pod network"),
        dir,
        subnet,
    };
    w.net.add_pod("cp", 1).expect("control plane pod");
    let names = vec![
        "mail".to_string(),
        "mail.default".to_string(),
        "mail.default.svc.cluster.local".to_string(),
    ];
    let hosts = vec![(w.ip(200).parse().expect("ip"), names)];
    for (pod, _, host) in PODS {
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
    w.wait("the control plane", |w| w.curl("cp", &ready));
    let root_cert = w.dir.path().join("root-cert.pem");
    std::fs::copy(ca_dir.join("root-cert.pem"), &root_cert).expect("root cert");
    std::fs::set_permissions(&root_cert, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let envoy = (dataplane == Dataplane::Envoy).then(|| envoy_for_proxy_user(w.dir.path()));

    // The mail pod's apps: the echo server, and dropbear on a declared and an undeclared port.
    let echo = w
        .in_pod("app mail", "mail", TRELLIS)
        .arg("echo")
        .arg("--listen")
        .arg("0.0.0.0:8080")
        .arg("--service")
        .arg("mail")
        .arg("--instance")
        .arg("mail");
    w.spawn(&echo, "app-mail.log");
    let key = w.dir.path().join("ssh_host_ed25519_key");
    let made = Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(&key)
        .output()
        .expect("dropbearkey runs");
    assert!(made.status.success(), "dropbearkey: {made:?}");
    let sshd = w
        .in_pod("sshd mail", "mail", "/usr/sbin/dropbear")
        .arg("-F")
        .arg("-E")
        .arg("-r")
        .arg(&key)
        .arg("-P")
        .arg(w.dir.path().join("dropbear.pid"))
        .arg("-p")
        .arg("0.0.0.0:2222")
        .arg("-p")
        .arg("0.0.0.0:2223");
    w.spawn(&sshd, "sshd-mail.log");

    for (pod, account, host) in PODS {
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
            .arg(account)
            .arg("--labels")
            .arg(format!("app={pod}"))
            .arg("--admin-address")
            .arg("127.0.0.1:15000")
            .arg("--xds-address")
            .arg(format!("{}:15012", w.ip(1)))
            .arg("--root-cert")
            .arg(&root_cert)
            .env("TRELLIS_TOKEN", token(&ca_dir, account));
        if let Some(envoy) = &envoy {
            sidecar = sidecar
                .arg("--envoy")
                .arg(envoy)
                .arg("--concurrency")
                .arg("1");
        }
        w.spawn(&sidecar, &format!("sidecar-{pod}.log"));
    }
    for (pod, _, _) in PODS {
        w.wait(&format!("the sidecar of {pod}"), |w| {
            w.curl(pod, "http://127.0.0.1:15000/ready")
        });
    }
    let syncz = w.wait("every sidecar to ACK its config", |w| {
        let s = w.syncz()?;
        let synced = s.proxies.iter().filter(|p| p.synced).count();
        if s.nacks_total > 0 || !s.nacks().is_empty() || synced == PODS.len() {
            Ok(s)
        } else {
            Err(format!("{synced} of {} synced", PODS.len()))
        }
    });
    assert_eq!(syncz.nacks_total, 0, "NACKs: {:?}", syncz.nacks());
    w
}

fn run(dataplane: Dataplane, tag: &str, subnet: [u8; 2]) {
    let w = start(dataplane, tag, subnet);
    let mut w = w;
    let mail = w.ip(11);

    // HTTP on a sniffed port, through both sidecars (mutual TLS: the client's identity).
    let body = w.wait("curl http://mail:8080 from client", |w| {
        w.curl("client", "http://mail:8080/sniffed")
    });
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(
        v["headers"]["x-forwarded-client-cert"]
            .as_str()
            .is_some_and(|x| x.contains("sa/client")),
        "HTTP sniffed on both sides, over mutual TLS: {v}"
    );
    // Plaintext from outside the mesh to the sniffed inbound port: HTTP as well.
    let direct = w
        .curl("cp", &format!("http://{mail}:8080/plain"))
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert!(direct.contains("\"service\""), "{direct}");

    // The server-first protocol: the client sends nothing until it has the banner.
    let cases = [
        ("cp", 2222, "sniffed inbound port"),
        ("client", 2223, "undeclared port, PERMISSIVE catch-all"),
    ];
    for (pod, port, what) in cases {
        let (banner, took) = w.banner(pod, &mail, port);
        match dataplane {
            Dataplane::Trellis => {
                let banner = banner.unwrap_or_else(|| {
                    panic!("no SSH banner on the {what} after {took:?}\n{}", w.logs())
                });
                assert!(banner.starts_with("SSH-2.0-"), "{what}: {banner:?}");
                assert!(
                    took < BANNER_BOUND,
                    "the banner on the {what} took {took:?} (bound {BANNER_BOUND:?})"
                );
            }
            Dataplane::Envoy => eprintln!(
                "Envoy, {what} ({pod} -> {mail}:{port}): banner {banner:?} after {took:?} \
                 (Envoy waits for the client's first bytes before picking a chain)"
            ),
        }
    }
    if dataplane == Dataplane::Trellis {
        let server_first = detections(&w, "mail", "tcp", "server_first");
        assert!(server_first >= 2, "server_first detections: {server_first}");
        let http = detections(&w, "client", "http1", "client_first");
        assert!(http >= 1, "client sidecar http1 detections: {http}");
    }

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
    for ns in namespaces {
        assert!(!left.contains(&ns), "namespace {ns} left behind: {left}");
    }
}

#[test]
fn server_first_ssh_banner_is_not_delayed_by_trellis_sniffing() {
    if can_run() {
        run(Dataplane::Trellis, "t", [241, 1]);
    }
}

#[test]
fn sniffing_through_envoy_sidecars_and_its_server_first_delay() {
    if can_run() {
        run(Dataplane::Envoy, "e", [241, 2]);
    }
}
