//! The mesh launcher shared by `trellis demo` and `cargo xtask conformance`.
//!
//! Given a [`MeshSpec`], [`Mesh::start`] runs a whole explicit-mode mesh on loopback addresses
//! inside one `/24` (`BASE` = `127.x.y.0`):
//!
//! | address | what |
//! | --- | --- |
//! | `BASE.1:15010`, `BASE.1:15014` | control plane: xDS, monitoring (`/ready`, `/debug/syncz`, `/debug/config`, `/metrics`) |
//! | `BASE.2` | the client sidecar (`--workload client`, no app): tests send to `BASE.2:15001` |
//! | `BASE.(10+i)` | workload `i`'s sidecar (admin on `:15000`, inbound on the service port) |
//! | `BASE.(110+i)` | workload `i`'s echo app, on the service port |
//!
//! The services and workloads are written as Istio `ServiceEntry` and `WorkloadEntry` resources
//! to `mesh.yaml` in the config directory the control plane watches. Every process logs to a file
//! in the run directory; errors name that directory.
//!
//! [`Mesh::restart_control_plane`] kills the control plane (by PID: `SIGTERM`, then `SIGKILL`
//! after a grace period), leaves it down for a while, starts a fresh one with the same flags and
//! config directory (its log is appended to `control-plane.log`), and waits until every proxy has
//! reconnected and is up to date. The new control plane numbers its generations from scratch, so
//! generations are only ever compared with the same control plane's.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::echo::EchoConfig;
use crate::http::{self, snippet};
use crate::process::{ChildGuard, Spec, log_tail, spawn_logged, terminate_all};

/// How often readiness and sync status are polled within a deadline.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a control plane being restarted gets between `SIGTERM` and `SIGKILL`.
pub const CONTROL_PLANE_STOP_GRACE: Duration = Duration::from_secs(5);
/// Port of the xDS server on `BASE.1`.
pub const XDS_PORT: u16 = 15010;
/// Port of the control plane's monitoring API on `BASE.1`.
pub const MONITORING_PORT: u16 = 15014;
/// Port of a proxy's admin API on its workload IP.
pub const ADMIN_PORT: u16 = 15000;
/// Port of a proxy's outbound HTTP-proxy listener on its workload IP.
pub const OUTBOUND_PORT: u16 = 15001;
/// The control plane's log file in the run directory (restarts append to it).
pub const CONTROL_PLANE_LOG: &str = "control-plane.log";
/// The name of the control plane's process.
const CONTROL_PLANE: &str = "control-plane";
/// The most workloads one `/24` holds (`.10`–`.99` for proxies, `.110`–`.199` for apps).
pub const MAX_WORKLOADS: usize = 90;

/// Which data plane the sidecars are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataplane {
    /// `trellis proxy`.
    Trellis,
    /// A stock Envoy supervised by `trellis agent`.
    Envoy,
}

impl Dataplane {
    /// Both data planes, Trellis first.
    pub const ALL: [Dataplane; 2] = [Dataplane::Trellis, Dataplane::Envoy];

    /// `trellis` or `envoy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dataplane::Trellis => "trellis",
            Dataplane::Envoy => "envoy",
        }
    }
}

impl fmt::Display for Dataplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dataplane {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "trellis" => Ok(Dataplane::Trellis),
            "envoy" => Ok(Dataplane::Envoy),
            other => bail!("unknown data plane {other:?} (expected trellis or envoy)"),
        }
    }
}

/// A service of the mesh: one `ServiceEntry` with one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The short name (`reviews`); the host is `NAME.NAMESPACE.svc.cluster.local`.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// The service port (also the port the apps listen on).
    pub port: u16,
    /// `HTTP` or `HTTP2`.
    pub protocol: String,
}

impl ServiceSpec {
    /// The fully qualified host name.
    pub fn host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }
}

/// One workload: an echo app plus its sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// The service (name) it belongs to.
    pub service: String,
    /// Its `version` label.
    pub version: String,
    /// Its index among the workloads of that service and version (0, 1, …).
    pub instance: u32,
    /// URLs the echo app calls on every request (through its sidecar).
    pub calls: Vec<String>,
}

/// How echo apps are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EchoMode {
    /// As `trellis echo` processes (closest to reality).
    #[default]
    Process,
    /// As tasks in the calling process.
    InProcess,
}

/// What mesh to run.
#[derive(Debug, Clone)]
pub struct MeshSpec {
    /// The `/24` to use: `127.x.y.0`.
    pub base: Ipv4Addr,
    /// Which data plane the sidecars are.
    pub dataplane: Dataplane,
    /// The services.
    pub services: Vec<ServiceSpec>,
    /// The workloads.
    pub workloads: Vec<WorkloadSpec>,
    /// More Istio YAML written to `extra.yaml` before the control plane starts (may be empty).
    pub extra_yaml: String,
}

/// How to run it.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// The `trellis` binary (the demo passes `current_exe()`).
    pub trellis_bin: PathBuf,
    /// Where the config directory and all logs go (created; an old `config/` in it is replaced).
    pub run_dir: PathBuf,
    /// The Envoy binary for [`Dataplane::Envoy`]; `None` finds it with [`crate::envoy::find_envoy`].
    pub envoy_bin: Option<PathBuf>,
    /// How long the whole mesh may take to come up and sync.
    pub startup_timeout: Duration,
    /// Echo apps as processes or in-process tasks.
    pub echo: EchoMode,
    /// The client sidecar's namespace.
    pub client_namespace: String,
    /// Extra labels of the client sidecar (besides `app=client`).
    pub client_labels: BTreeMap<String, String>,
    /// The client's locality (`region/zone/subzone`); when set or when `client_labels` are,
    /// the client gets a WorkloadEntry (selected by no service) carrying them.
    pub client_locality: Option<String>,
    /// Per workload name: its locality, written to its WorkloadEntry.
    pub workload_localities: BTreeMap<String, String>,
    /// Per workload name: extra labels for its WorkloadEntry and sidecar.
    pub workload_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Echo apps without a sidecar (outside the mesh), as `(name, version, listen address)`.
    pub externals: Vec<(String, String, SocketAddr)>,
}

impl MeshOptions {
    /// Defaults: 60 s startup, echo apps as processes, client in `default`.
    pub fn new(trellis_bin: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        MeshOptions {
            trellis_bin: trellis_bin.into(),
            run_dir: run_dir.into(),
            envoy_bin: None,
            startup_timeout: Duration::from_secs(60),
            echo: EchoMode::Process,
            client_namespace: "default".to_string(),
            client_labels: BTreeMap::new(),
            client_locality: None,
            workload_localities: BTreeMap::new(),
            workload_labels: BTreeMap::new(),
            externals: Vec::new(),
        }
    }
}

/// The addresses of one `/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPlan {
    base: [u8; 4],
}

impl AddressPlan {
    /// Checks that `base` is `127.x.y.0`.
    pub fn new(base: Ipv4Addr) -> anyhow::Result<Self> {
        let o = base.octets();
        if o[0] != 127 || o[3] != 0 {
            bail!("mesh base address {base} must be of the form 127.x.y.0 (a loopback /24)");
        }
        Ok(AddressPlan { base: o })
    }

    fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.base[0], self.base[1], self.base[2], n)
    }

    /// `BASE.1`.
    pub fn control_plane(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// `BASE.2`.
    pub fn client(&self) -> Ipv4Addr {
        self.host(2)
    }

    /// `BASE.(10+i)`: workload `i`'s sidecar.
    pub fn workload(&self, i: usize) -> Ipv4Addr {
        self.host(10 + (i.min(MAX_WORKLOADS - 1)) as u8)
    }

    /// `BASE.(110+i)`: workload `i`'s app.
    pub fn app(&self, i: usize) -> Ipv4Addr {
        self.host(110 + (i.min(MAX_WORKLOADS - 1)) as u8)
    }
}

/// The control plane's `/debug/syncz` answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Syncz {
    /// The config generation being served.
    #[serde(default)]
    pub generation: u64,
    /// NACKs received since this control plane started.
    #[serde(default)]
    pub nacks_total: u64,
    /// Every connected proxy.
    #[serde(default)]
    pub proxies: Vec<ProxySync>,
}

/// One proxy in `/debug/syncz`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProxySync {
    /// The node id.
    #[serde(default)]
    pub id: String,
    /// The newest generation sent to it.
    #[serde(default)]
    pub generation: u64,
    /// Whether every subscribed type is ACKed at the version last sent.
    #[serde(default)]
    pub synced: bool,
    /// Per type URL.
    #[serde(default)]
    pub types: BTreeMap<String, TypeSync>,
}

/// One type of one proxy in `/debug/syncz`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TypeSync {
    /// The version last sent.
    #[serde(default)]
    pub sent: Option<String>,
    /// The version last ACKed.
    #[serde(default)]
    pub acked: Option<String>,
    /// The last NACK, if the proxy rejected the version sent.
    #[serde(default)]
    pub nack: Option<Nack>,
}

/// A rejected version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nack {
    /// The rejected version.
    #[serde(default)]
    pub version: String,
    /// The proxy's error detail.
    #[serde(default)]
    pub error: String,
}

impl Syncz {
    /// The entry for the proxy whose node id carries `ip` (`TYPE~IP~...`).
    pub fn proxy_for_ip(&self, ip: Ipv4Addr) -> Option<&ProxySync> {
        let needle = format!("~{ip}~");
        self.proxies.iter().find(|p| p.id.contains(&needle))
    }

    /// Every NACK currently shown: `(proxy id, type url, nack)`.
    pub fn nacks(&self) -> Vec<(String, String, Nack)> {
        let mut out = Vec::new();
        for p in &self.proxies {
            for (t, s) in &p.types {
                if let Some(n) = &s.nack {
                    out.push((p.id.clone(), t.clone(), n.clone()));
                }
            }
        }
        out
    }
}

/// The control plane's `/debug/config` answer: what is applied and what was rejected.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigReport {
    /// The generation the applied resources belong to.
    #[serde(default)]
    pub generation: u64,
    /// `Kind namespace/name (file)` of every applied resource.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Errors and warnings of the last reload.
    #[serde(default)]
    pub diagnostics: Diagnostics,
}

/// Validation messages in `/debug/config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Errors: the files they come from keep their last good content (or apply nothing).
    #[serde(default)]
    pub errors: Vec<String>,
    /// Warnings: applied, but probably not what the user meant.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// What [`Mesh::restart_control_plane`] did and when.
#[derive(Debug, Clone)]
pub struct Restart {
    /// When the old control plane was signalled.
    pub killed_at: Instant,
    /// When it had exited (and was reaped).
    pub down_at: Instant,
    /// How it exited (e.g. `signal: 15 (SIGTERM)`).
    pub exit: String,
    /// When the new control plane was started.
    pub started_at: Instant,
    /// When it answered `/ready`.
    pub ready_at: Instant,
    /// When every proxy had reconnected and was up to date.
    pub synced_at: Instant,
    /// `/debug/syncz` of the new control plane at that moment.
    pub syncz: Syncz,
}

/// A proxy the mesh started.
#[derive(Debug, Clone)]
pub struct ProxyInfo {
    /// Its workload name (`client`, `reviews-v2-0`).
    pub workload: String,
    /// Its IP.
    pub ip: Ipv4Addr,
}

impl ProxyInfo {
    /// Its admin address.
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::new(self.ip.into(), ADMIN_PORT)
    }
}

struct InProcessApp {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A running mesh. Dropping it (or [`Mesh::shutdown`]) ends every process it started.
pub struct Mesh {
    spec: MeshSpec,
    plan: AddressPlan,
    run_dir: PathBuf,
    config_dir: PathBuf,
    /// Control plane first, then apps, then proxies.
    children: Mutex<Vec<ChildGuard>>,
    in_process: Vec<InProcessApp>,
    proxies: Vec<ProxyInfo>,
    generation_before_apply: Option<u64>,
    nacks_seen: Mutex<std::collections::BTreeSet<(String, String, Nack)>>,
    /// How the control plane is started (for restarts).
    cp_spec: Option<Spec>,
    /// NACKs counted by control planes that have since been restarted.
    nacks_of_old_control_planes: usize,
    /// Apps outside the mesh: `(name, version, address)`.
    externals: Vec<(String, String, SocketAddr)>,
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("base", &self.spec.base)
            .field("dataplane", &self.spec.dataplane)
            .field("run_dir", &self.run_dir)
            .finish()
    }
}

/// A Bookinfo-like mesh for the demo: `productpage` v1 calls `reviews`; `reviews` v1, v2, v3
/// (v2 and v3 call `ratings`); `ratings` v1. Every service is HTTP on port 9080 in `default`.
pub fn bookinfo(base: Ipv4Addr, dataplane: Dataplane) -> MeshSpec {
    let service = |name: &str| ServiceSpec {
        name: name.to_string(),
        namespace: "default".to_string(),
        port: 9080,
        protocol: "HTTP".to_string(),
    };
    let workload = |service: &str, version: &str, calls: &[&str]| WorkloadSpec {
        service: service.to_string(),
        version: version.to_string(),
        instance: 0,
        calls: calls.iter().map(|c| c.to_string()).collect(),
    };
    let reviews = "http://reviews.default.svc.cluster.local:9080/reviews/0";
    let ratings = "http://ratings.default.svc.cluster.local:9080/ratings/0";
    MeshSpec {
        base,
        dataplane,
        services: vec![
            service("productpage"),
            service("reviews"),
            service("ratings"),
        ],
        workloads: vec![
            workload("productpage", "v1", &[reviews]),
            workload("reviews", "v1", &[]),
            workload("reviews", "v2", &[ratings]),
            workload("reviews", "v3", &[ratings]),
            workload("ratings", "v1", &[]),
        ],
        extra_yaml: String::new(),
    }
}

/// The workload name of a workload: `SERVICE-VERSION-INSTANCE`.
pub fn workload_name(w: &WorkloadSpec) -> String {
    format!("{}-{}-{}", w.service, w.version, w.instance)
}

/// The Istio YAML (`ServiceEntry` per service, `WorkloadEntry` per workload) for a spec.
pub fn mesh_yaml(spec: &MeshSpec) -> anyhow::Result<String> {
    mesh_yaml_with(spec, &MeshOptions::new("trellis", "."))
}

/// [`mesh_yaml`] with the options' localities and labels (and a WorkloadEntry for the client
/// when it has a locality or extra labels).
pub fn mesh_yaml_with(spec: &MeshSpec, options: &MeshOptions) -> anyhow::Result<String> {
    let plan = AddressPlan::new(spec.base)?;
    let mut docs = Vec::new();
    for s in &spec.services {
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {
                "hosts": [s.host()],
                "location": "MESH_INTERNAL",
                "resolution": "STATIC",
                "ports": [{"number": s.port, "name": s.protocol.to_ascii_lowercase(), "protocol": s.protocol}],
                "workloadSelector": {"labels": {"app": s.name}},
            }
        }));
    }
    for (i, w) in spec.workloads.iter().enumerate() {
        let s = service_of(spec, w)?;
        let name = workload_name(w);
        let mut labels = BTreeMap::from([
            ("app".to_string(), s.name.clone()),
            ("version".to_string(), w.version.clone()),
        ]);
        labels.extend(
            options
                .workload_labels
                .get(&name)
                .cloned()
                .unwrap_or_default(),
        );
        let mut we = json!({
            "address": plan.workload(i).to_string(),
            "labels": labels,
            "serviceAccount": s.name,
        });
        if let Some(l) = options.workload_localities.get(&name) {
            we["locality"] = json!(l);
        }
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": name, "namespace": s.namespace},
            "spec": we,
        }));
    }
    if options.client_locality.is_some() || !options.client_labels.is_empty() {
        let mut labels = BTreeMap::from([("app".to_string(), "client".to_string())]);
        labels.extend(options.client_labels.clone());
        let mut we = json!({
            "address": plan.client().to_string(),
            "labels": labels,
            "serviceAccount": "client",
        });
        if let Some(l) = &options.client_locality {
            we["locality"] = json!(l);
        }
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": "client", "namespace": options.client_namespace},
            "spec": we,
        }));
    }
    let mut out =
        String::from("# Generated by trellis-testkit: the mesh's services and workloads.\n");
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&d).context("serializing mesh.yaml")?);
    }
    Ok(out)
}

fn service_of<'a>(spec: &'a MeshSpec, w: &WorkloadSpec) -> anyhow::Result<&'a ServiceSpec> {
    spec.services
        .iter()
        .find(|s| s.name == w.service)
        .ok_or_else(|| {
            anyhow!(
                "workload {} refers to unknown service {:?}",
                workload_name(w),
                w.service
            )
        })
}

fn validate(spec: &MeshSpec) -> anyhow::Result<()> {
    AddressPlan::new(spec.base)?;
    if spec.workloads.len() > MAX_WORKLOADS {
        bail!(
            "a mesh holds at most {MAX_WORKLOADS} workloads, not {}",
            spec.workloads.len()
        );
    }
    for s in &spec.services {
        if !matches!(s.protocol.as_str(), "HTTP" | "HTTP2") {
            bail!(
                "service {}: protocol {:?} is not supported (HTTP or HTTP2)",
                s.name,
                s.protocol
            );
        }
        if [ADMIN_PORT, OUTBOUND_PORT, 15006, 15021, 15090].contains(&s.port) || s.port == 0 {
            bail!(
                "service {}: port {} is reserved for the proxy",
                s.name,
                s.port
            );
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for w in &spec.workloads {
        service_of(spec, w)?;
        if !names.insert(workload_name(w)) {
            bail!("two workloads are named {}", workload_name(w));
        }
    }
    Ok(())
}

impl Mesh {
    /// Starts the mesh and waits (within `options.startup_timeout`) until every proxy is ready
    /// and up to date.
    pub async fn start(spec: MeshSpec, options: MeshOptions) -> anyhow::Result<Mesh> {
        validate(&spec)?;
        let plan = AddressPlan::new(spec.base)?;
        let deadline = Instant::now() + options.startup_timeout;
        let run_dir = options.run_dir.clone();
        let config_dir = run_dir.join("config");
        if config_dir.exists() {
            std::fs::remove_dir_all(&config_dir)
                .with_context(|| format!("clearing {}", config_dir.display()))?;
        }
        std::fs::create_dir_all(&config_dir)
            .with_context(|| format!("creating {}", config_dir.display()))?;
        write_atomic(
            &config_dir.join("mesh.yaml"),
            &mesh_yaml_with(&spec, &options)?,
        )?;
        if !spec.extra_yaml.trim().is_empty() {
            write_atomic(&config_dir.join("extra.yaml"), &spec.extra_yaml)?;
        }
        let envoy_bin = match (spec.dataplane, &options.envoy_bin) {
            (Dataplane::Envoy, Some(p)) => Some(p.clone()),
            (Dataplane::Envoy, None) => Some(crate::envoy::find_envoy()?),
            (Dataplane::Trellis, _) => None,
        };

        let mut mesh = Mesh {
            plan,
            run_dir: run_dir.clone(),
            config_dir: config_dir.clone(),
            children: Mutex::new(Vec::new()),
            in_process: Vec::new(),
            proxies: Vec::new(),
            generation_before_apply: None,
            nacks_seen: Mutex::new(Default::default()),
            cp_spec: None,
            nacks_of_old_control_planes: 0,
            externals: Vec::new(),
            spec,
        };
        let result = mesh
            .bring_up(&options, envoy_bin.as_deref(), deadline)
            .await;
        match result {
            Ok(()) => Ok(mesh),
            Err(e) => {
                mesh.stop_all();
                Err(e.context(format!(
                    "starting the mesh failed; logs in {}",
                    run_dir.display()
                )))
            }
        }
    }

    async fn bring_up(
        &mut self,
        options: &MeshOptions,
        envoy_bin: Option<&Path>,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let bin = &options.trellis_bin;
        let cp = self.plan.control_plane();
        let xds = SocketAddr::new(cp.into(), XDS_PORT).to_string();
        let cp_spec = Spec::new(CONTROL_PLANE, bin)
            .arg("control-plane")
            .arg("--config-dir")
            .arg(self.config_dir.as_os_str())
            .arg("--xds-address")
            .arg(&xds)
            .arg("--monitoring-address")
            .arg(SocketAddr::new(cp.into(), MONITORING_PORT).to_string());
        self.spawn(&cp_spec, CONTROL_PLANE_LOG)?;
        self.cp_spec = Some(cp_spec);
        let ready = self.monitoring_url("/ready");
        self.wait_http(&ready, deadline, |r| r.status == 200)
            .await?;

        // Apps.
        for (i, w) in self.spec.workloads.clone().iter().enumerate() {
            let s = service_of(&self.spec, w)?.clone();
            let name = workload_name(w);
            let listen = SocketAddr::new(self.plan.app(i).into(), s.port);
            let proxy = SocketAddr::new(self.plan.workload(i).into(), OUTBOUND_PORT);
            match options.echo {
                EchoMode::Process => {
                    let mut spec = Spec::new(format!("app {name}"), bin)
                        .arg("echo")
                        .arg("--listen")
                        .arg(listen.to_string())
                        .arg("--service")
                        .arg(&s.name)
                        .arg("--version")
                        .arg(&w.version)
                        .arg("--instance")
                        .arg(&name)
                        .env("HTTP_PROXY", format!("http://{proxy}"));
                    for c in &w.calls {
                        spec = spec.arg("--call").arg(c);
                    }
                    self.spawn(&spec, &format!("app-{name}.log"))?;
                }
                EchoMode::InProcess => {
                    let listener = tokio::net::TcpListener::bind(listen)
                        .await
                        .with_context(|| format!("app {name}: binding {listen}"))?;
                    let config = EchoConfig {
                        service: s.name.clone(),
                        version: w.version.clone(),
                        instance: name.clone(),
                        calls: w.calls.clone(),
                        http_proxy: Some(proxy),
                    };
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    let task = tokio::spawn(crate::echo::serve(listener, config, async {
                        let _ = rx.await;
                    }));
                    self.in_process.push(InProcessApp {
                        stop: Some(tx),
                        task,
                    });
                }
            }
        }

        // Apps outside the mesh. A loopback one also listens on [::1], since a resolver may
        // answer `localhost` with either family (Envoy's c-ares prefers ::1).
        for (name, version, listen) in &options.externals {
            let mut addresses = vec![(*listen, String::new())];
            if listen.ip().is_loopback() && listen.is_ipv4() {
                addresses.push((
                    SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], listen.port())),
                    "-v6".to_string(),
                ));
            }
            for (address, suffix) in addresses {
                let spec = Spec::new(format!("external {name}{suffix}"), bin)
                    .arg("echo")
                    .arg("--listen")
                    .arg(address.to_string())
                    .arg("--service")
                    .arg(name)
                    .arg("--version")
                    .arg(version)
                    .arg("--instance")
                    .arg(format!("{name}-{version}-external"));
                self.spawn(&spec, &format!("external-{name}{suffix}.log"))?;
            }
            self.externals
                .push((name.clone(), version.clone(), *listen));
        }
        for (_, _, listen) in &options.externals {
            let url = format!("http://{listen}/ready-check");
            self.wait_http(&url, deadline, |r| r.status == 200).await?;
        }

        // Sidecars: the client first, then one per workload.
        let label_text = |labels: &BTreeMap<String, String>| {
            labels
                .iter()
                .map(|(k, v)| format!(",{k}={v}"))
                .collect::<String>()
        };
        let mut sidecars = vec![(
            ProxyInfo {
                workload: "client".to_string(),
                ip: self.plan.client(),
            },
            None,
            options.client_namespace.clone(),
            "client".to_string(),
            format!("app=client{}", label_text(&options.client_labels)),
        )];
        for (i, w) in self.spec.workloads.iter().enumerate() {
            let s = service_of(&self.spec, w)?;
            sidecars.push((
                ProxyInfo {
                    workload: workload_name(w),
                    ip: self.plan.workload(i),
                },
                Some(self.plan.app(i)),
                s.namespace.clone(),
                s.name.clone(),
                format!(
                    "app={},version={}{}",
                    s.name,
                    w.version,
                    label_text(
                        &options
                            .workload_labels
                            .get(&workload_name(w))
                            .cloned()
                            .unwrap_or_default()
                    )
                ),
            ));
        }
        for (info, app_ip, namespace, service_account, labels) in sidecars {
            let (sub, kind) = match self.spec.dataplane {
                Dataplane::Trellis => ("proxy", "proxy"),
                Dataplane::Envoy => ("agent", "agent"),
            };
            let mut spec = Spec::new(format!("{kind} {}", info.workload), bin)
                .arg(sub)
                .arg("--ip")
                .arg(info.ip.to_string())
                .arg("--workload")
                .arg(&info.workload)
                .arg("--namespace")
                .arg(&namespace)
                .arg("--service-account")
                .arg(&service_account)
                .arg("--labels")
                .arg(&labels)
                .arg("--xds-address")
                .arg(&xds)
                .arg("--admin-address")
                .arg(info.admin().to_string());
            if let Some(app_ip) = app_ip {
                spec = spec.arg("--app-ip").arg(app_ip.to_string());
            }
            if let Some(envoy) = envoy_bin {
                spec = spec
                    .arg("--envoy")
                    .arg(envoy.as_os_str())
                    .arg("--bootstrap-out")
                    .arg(
                        self.run_dir
                            .join(format!("bootstrap-{}.json", info.workload))
                            .as_os_str(),
                    )
                    .arg("--concurrency")
                    .arg("1");
            }
            self.spawn(&spec, &format!("{kind}-{}.log", info.workload))?;
            self.proxies.push(info);
        }

        // Apps answer.
        for (i, w) in self.spec.workloads.iter().enumerate() {
            let s = service_of(&self.spec, w)?;
            let url = format!("http://{}:{}/ready-check", self.plan.app(i), s.port);
            self.wait_http(&url, deadline, |r| r.status == 200).await?;
        }
        // Proxies are ready.
        for p in &self.proxies {
            let url = format!("http://{}/ready", p.admin());
            self.wait_http(&url, deadline, |r| r.status == 200).await?;
        }
        self.wait_up_to_date(deadline, None).await?;
        Ok(())
    }

    fn spawn(&self, spec: &Spec, log: &str) -> anyhow::Result<()> {
        let guard = spawn_logged(spec, &self.run_dir.join(log))?;
        self.children
            .lock()
            .map_err(|_| anyhow!("mesh process list poisoned"))?
            .push(guard);
        Ok(())
    }

    /// Fails if any process of the mesh has exited (with the end of its log).
    pub fn check_processes(&self) -> anyhow::Result<()> {
        let mut children = self
            .children
            .lock()
            .map_err(|_| anyhow!("mesh process list poisoned"))?;
        for c in children.iter_mut() {
            c.check_running()?;
        }
        for app in &self.in_process {
            if app.task.is_finished() {
                bail!("an in-process echo app stopped");
            }
        }
        Ok(())
    }

    async fn wait_http(
        &self,
        url: &str,
        deadline: Instant,
        accept: impl Fn(&http::Response) -> bool,
    ) -> anyhow::Result<http::Response> {
        let mut last: String;
        loop {
            self.check_processes()?;
            let now = Instant::now();
            let per_try = deadline
                .saturating_duration_since(now)
                .min(Duration::from_secs(2));
            match http::get(url, per_try).await {
                Ok(r) if accept(&r) => return Ok(r),
                Ok(r) => last = format!("{} {}", r.status, snippet(&r.body)),
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() + POLL_INTERVAL >= deadline {
                bail!("timed out waiting for {url}: last seen: {last}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The mesh's spec.
    pub fn spec(&self) -> &MeshSpec {
        &self.spec
    }

    /// The address plan.
    pub fn addresses(&self) -> AddressPlan {
        self.plan
    }

    /// Where logs and the config directory are.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The directory the control plane watches.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Every echo app: `(service, version, instance, address)`, sidecar-less externals
    /// included (their instance is `NAME-VERSION-external`).
    pub fn apps(&self) -> Vec<(String, String, String, SocketAddr)> {
        let mut out: Vec<(String, String, String, SocketAddr)> = self
            .spec
            .workloads
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let s = service_of(&self.spec, w).ok()?;
                Some((
                    s.name.clone(),
                    w.version.clone(),
                    workload_name(w),
                    SocketAddr::new(self.plan.app(i).into(), s.port),
                ))
            })
            .collect();
        out.extend(
            self.externals
                .iter()
                .map(|(n, v, a)| (n.clone(), v.clone(), format!("{n}-{v}-external"), *a)),
        );
        out
    }

    /// Requests (and mirrored copies) every echo app has served so far, keyed by instance
    /// (see [`crate::echo::STATS_PATH`]).
    pub async fn app_counts(&self) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
        let mut out = BTreeMap::new();
        for (_, _, instance, addr) in self.apps() {
            let url = format!("http://{addr}{}", crate::echo::STATS_PATH);
            let r = http::get(&url, Duration::from_secs(5))
                .await
                .with_context(|| format!("reading {url}"))?;
            let v: serde_json::Value = serde_json::from_slice(&r.body)
                .with_context(|| format!("{url}: {}", snippet(&r.body)))?;
            let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            out.insert(instance, (n("requests"), n("shadow")));
        }
        Ok(out)
    }

    /// The client sidecar's outbound listener (`BASE.2:15001`): where tests send requests.
    pub fn client_outbound(&self) -> SocketAddr {
        SocketAddr::new(self.plan.client().into(), OUTBOUND_PORT)
    }

    /// The control plane's xDS address (`BASE.1:15010`).
    pub fn xds_address(&self) -> SocketAddr {
        SocketAddr::new(self.plan.control_plane().into(), XDS_PORT)
    }

    /// The control plane's monitoring address (`BASE.1:15014`).
    pub fn monitoring_address(&self) -> SocketAddr {
        SocketAddr::new(self.plan.control_plane().into(), MONITORING_PORT)
    }

    /// A URL on the monitoring API, e.g. `monitoring_url("/debug/syncz")`.
    pub fn monitoring_url(&self, path: &str) -> String {
        format!("http://{}{}", self.monitoring_address(), path)
    }

    /// The PIDs of every process the mesh started (each is also a process group id).
    pub fn pids(&self) -> Vec<u32> {
        self.children
            .lock()
            .map(|c| c.iter().filter_map(ChildGuard::pid).collect())
            .unwrap_or_default()
    }

    /// Every sidecar started (the client first).
    pub fn proxies(&self) -> &[ProxyInfo] {
        &self.proxies
    }

    /// Reads `/debug/syncz` once, remembering any NACK it shows.
    pub async fn syncz(&self) -> anyhow::Result<Syncz> {
        let url = self.monitoring_url("/debug/syncz");
        let r = http::get(&url, Duration::from_secs(5)).await?;
        if r.status != 200 {
            bail!("GET {url}: {} {}", r.status, snippet(&r.body));
        }
        let s: Syncz = r.json().with_context(|| format!("GET {url}"))?;
        if let Ok(mut seen) = self.nacks_seen.lock() {
            seen.extend(s.nacks());
        }
        Ok(s)
    }

    /// Writes (or replaces) `name` in the config directory (atomically: a hidden temporary file
    /// renamed into place), remembering the generation served before.
    pub async fn apply(&mut self, name: &str, yaml: &str) -> anyhow::Result<()> {
        check_file_name(name)?;
        let before = self
            .syncz()
            .await
            .context("reading the generation before the change")?;
        self.generation_before_apply = Some(before.generation);
        write_atomic(&self.config_dir.join(name), yaml)
    }

    /// Removes `name` from the config directory, remembering the generation served before.
    pub async fn remove(&mut self, name: &str) -> anyhow::Result<()> {
        check_file_name(name)?;
        let before = self
            .syncz()
            .await
            .context("reading the generation before the change")?;
        self.generation_before_apply = Some(before.generation);
        let path = self.config_dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
    }

    /// Waits until the control plane serves a generation newer than the one before the last
    /// [`Mesh::apply`]/[`Mesh::remove`] and every proxy of the mesh is up to date with it. Fails
    /// at once if a proxy NACKed, or if a process died.
    pub async fn wait_synced(&self, deadline: Instant) -> anyhow::Result<Syncz> {
        self.wait_up_to_date(deadline, self.generation_before_apply)
            .await
            .with_context(|| format!("logs in {}", self.run_dir.display()))
    }

    async fn wait_up_to_date(
        &self,
        deadline: Instant,
        newer_than: Option<u64>,
    ) -> anyhow::Result<Syncz> {
        let mut last: String;
        loop {
            self.check_processes()?;
            match self.syncz().await {
                Ok(s) => {
                    if let Some((id, type_url, nack)) = self
                        .proxies
                        .iter()
                        .filter_map(|p| s.proxy_for_ip(p.ip))
                        .flat_map(|p| {
                            p.types.iter().filter_map(|(t, ts)| {
                                ts.nack.clone().map(|n| (p.id.clone(), t.clone(), n))
                            })
                        })
                        .next()
                    {
                        bail!(
                            "proxy {id} NACKed {type_url} version {}: {}",
                            nack.version,
                            nack.error
                        );
                    }
                    match self.describe_lag(&s, newer_than) {
                        None => return Ok(s),
                        Some(d) => last = d,
                    }
                }
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() + POLL_INTERVAL >= deadline {
                bail!("timed out waiting for every proxy to be up to date: {last}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// `None` when up to date, else what is missing.
    fn describe_lag(&self, s: &Syncz, newer_than: Option<u64>) -> Option<String> {
        let mut problems = Vec::new();
        if let Some(g) = newer_than
            && s.generation <= g
        {
            problems.push(format!(
                "control plane still serves generation {} (was {g} before the change: was the file rejected? see control-plane.log)",
                s.generation
            ));
        }
        for p in &self.proxies {
            match s.proxy_for_ip(p.ip) {
                None => problems.push(format!("proxy {} ({}) is not connected", p.workload, p.ip)),
                Some(ps) if ps.generation != s.generation || !ps.synced => {
                    let types: Vec<String> = ps
                        .types
                        .iter()
                        .filter(|(_, t)| t.sent != t.acked)
                        .map(|(u, t)| format!("{u} sent {:?} acked {:?}", t.sent, t.acked))
                        .collect();
                    problems.push(format!(
                        "proxy {} at generation {}/{} synced={} {}",
                        ps.id,
                        ps.generation,
                        s.generation,
                        ps.synced,
                        types.join(", ")
                    ));
                }
                Some(_) => {}
            }
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// NACKs seen in `/debug/syncz` so far (distinct proxy, type and version).
    pub fn nacks_seen(&self) -> Vec<(String, String, Nack)> {
        self.nacks_seen
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The number of NACKs over the run: the larger of those seen in `/debug/syncz` and the
    /// control plane's `pilot_total_xds_rejects` metric (if it exports it).
    pub async fn nack_count(&self) -> usize {
        let _ = self.syncz().await;
        let seen = self.nacks_seen().len();
        let metric = match http::get(&self.monitoring_url("/metrics"), Duration::from_secs(5)).await
        {
            Ok(r) if r.status == 200 => metric_sum(&r.text(), "pilot_total_xds_rejects"),
            _ => 0.0,
        };
        seen.max(metric as usize + self.nacks_of_old_control_planes)
    }

    /// Reads `/debug/config` once.
    pub async fn debug_config(&self) -> anyhow::Result<ConfigReport> {
        let url = self.monitoring_url("/debug/config");
        let r = http::get(&url, Duration::from_secs(5)).await?;
        if r.status != 200 {
            bail!("GET {url}: {} {}", r.status, snippet(&r.body));
        }
        r.json().with_context(|| format!("GET {url}"))
    }

    /// Polls `/debug/config` until `accept` holds, within `deadline`; `what` names the wait in
    /// the error, which shows the last report seen.
    pub async fn wait_config(
        &self,
        deadline: Instant,
        what: &str,
        accept: impl Fn(&ConfigReport) -> bool,
    ) -> anyhow::Result<ConfigReport> {
        let mut last: String;
        loop {
            self.check_processes()?;
            match self.debug_config().await {
                Ok(c) if accept(&c) => return Ok(c),
                Ok(c) => {
                    last = format!(
                        "generation {}, errors {:?}, warnings {:?}",
                        c.generation, c.diagnostics.errors, c.diagnostics.warnings
                    )
                }
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() + POLL_INTERVAL >= deadline {
                bail!(
                    "timed out waiting for /debug/config to show {what}; last seen: {last} (logs in {})",
                    self.run_dir.display()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Kills the control plane by PID (`SIGTERM`, then `SIGKILL` after a grace period), keeps it
    /// down for `down`, starts a fresh one with the same flags and config directory, and waits
    /// (until `deadline`) for it to be ready and for every proxy to reconnect and be up to date
    /// with the new control plane's generation. Proxies keep serving their last config meanwhile.
    pub async fn restart_control_plane(
        &mut self,
        down: Duration,
        deadline: Instant,
    ) -> anyhow::Result<Restart> {
        let spec = self
            .cp_spec
            .clone()
            .ok_or_else(|| anyhow!("the mesh has no control plane to restart"))?;
        // What the old control plane counted would be lost with it.
        if let Ok(s) = self.syncz().await {
            self.nacks_of_old_control_planes += s.nacks_total as usize;
        }
        let mut old = {
            let mut children = self
                .children
                .lock()
                .map_err(|_| anyhow!("mesh process list poisoned"))?;
            let i = children
                .iter()
                .position(|c| c.name() == CONTROL_PLANE)
                .ok_or_else(|| anyhow!("the control plane is not running"))?;
            children.remove(i)
        };
        old.check_running()
            .context("the control plane had already exited before the restart")?;
        let pid = old
            .pid()
            .ok_or_else(|| anyhow!("the control plane has no PID"))?;
        old.set_grace(CONTROL_PLANE_STOP_GRACE);
        let killed_at = Instant::now();
        let status = tokio::task::spawn_blocking(move || old.terminate())
            .await
            .map_err(|e| anyhow!("stopping the control plane (PID {pid}): {e}"))?;
        let down_at = Instant::now();
        let exit = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "not reaped".to_string());
        self.generation_before_apply = None;
        // The outage itself: the point of the exercise, not a wait for readiness.
        tokio::time::sleep(down).await;
        let started_at = Instant::now();
        let guard = spawn_logged(&spec, &self.run_dir.join(CONTROL_PLANE_LOG))?;
        self.children
            .lock()
            .map_err(|_| anyhow!("mesh process list poisoned"))?
            .insert(0, guard);
        let ready = self.monitoring_url("/ready");
        self.wait_http(&ready, deadline, |r| r.status == 200)
            .await
            .with_context(|| {
                format!(
                    "the restarted control plane did not become ready (logs in {})",
                    self.run_dir.display()
                )
            })?;
        let ready_at = Instant::now();
        let syncz = self
            .wait_up_to_date(deadline, None)
            .await
            .with_context(|| {
                format!(
                    "proxies did not reconnect to the restarted control plane (logs in {})",
                    self.run_dir.display()
                )
            })?;
        Ok(Restart {
            killed_at,
            down_at,
            exit,
            started_at,
            ready_at,
            synced_at: Instant::now(),
            syncz,
        })
    }

    /// Stops everything and waits for the processes to exit.
    pub async fn shutdown(mut self) {
        for app in &mut self.in_process {
            if let Some(stop) = app.stop.take() {
                let _ = stop.send(());
            }
        }
        for app in std::mem::take(&mut self.in_process) {
            let _ = app.task.await;
        }
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            let mut children = children;
            children.reverse();
            terminate_all(&mut children);
        })
        .await;
    }

    fn stop_all(&mut self) {
        for app in &mut self.in_process {
            if let Some(stop) = app.stop.take() {
                let _ = stop.send(());
            }
            app.task.abort();
        }
        let mut children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        children.reverse();
        terminate_all(&mut children);
    }

    /// The last lines of every log in the run directory, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for c in children.iter() {
            out.push_str(&format!(
                "==> {} <==\n{}\n",
                c.log().display(),
                log_tail(c.log(), lines)
            ));
        }
        out
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn check_file_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.contains('\\')
        || !(name.ends_with(".yaml") || name.ends_with(".yml"))
        || name == "mesh.yaml"
    {
        bail!(
            "config file name {name:?} must be a plain file name ending in .yaml (and not mesh.yaml)"
        );
    }
    Ok(())
}

/// Writes a file atomically: a hidden temporary file (not `*.yaml`, so watchers skip it) in the
/// same directory, renamed into place.
pub fn write_atomic(path: &Path, contents: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", path.display()))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp~"));
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Sums every sample of a Prometheus metric (any labels) in a text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value_part = if let Some(r) = rest.strip_prefix('{') {
                r.split_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value_part.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MeshSpec {
        MeshSpec {
            base: Ipv4Addr::new(127, 0, 10, 0),
            dataplane: Dataplane::Trellis,
            services: vec![ServiceSpec {
                name: "reviews".into(),
                namespace: "default".into(),
                port: 9080,
                protocol: "HTTP".into(),
            }],
            workloads: vec![
                WorkloadSpec {
                    service: "reviews".into(),
                    version: "v1".into(),
                    instance: 0,
                    calls: vec![],
                },
                WorkloadSpec {
                    service: "reviews".into(),
                    version: "v2".into(),
                    instance: 0,
                    calls: vec![],
                },
            ],
            extra_yaml: String::new(),
        }
    }

    #[test]
    fn yaml_has_service_and_workload_entries() -> anyhow::Result<()> {
        let yaml = mesh_yaml(&spec())?;
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<_, _>>()?;
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["kind"], "ServiceEntry");
        assert_eq!(
            docs[0]["spec"]["hosts"][0],
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(docs[0]["spec"]["ports"][0]["number"], 9080);
        assert_eq!(
            docs[0]["spec"]["workloadSelector"]["labels"]["app"],
            "reviews"
        );
        assert_eq!(docs[2]["kind"], "WorkloadEntry");
        assert_eq!(docs[2]["metadata"]["name"], "reviews-v2-0");
        assert_eq!(docs[2]["spec"]["address"], "127.0.10.11");
        assert_eq!(docs[2]["spec"]["labels"]["version"], "v2");
        assert_eq!(docs[2]["spec"]["serviceAccount"], "reviews");
        Ok(())
    }

    #[test]
    fn validation() {
        let mut s = spec();
        s.base = Ipv4Addr::new(10, 0, 0, 0);
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.workloads[0].service = "nope".into();
        assert!(
            format!(
                "{:#}",
                validate(&s)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )
            .contains("nope")
        );
        let mut s = spec();
        s.services[0].protocol = "TCP".into();
        assert!(validate(&s).is_err());
        assert!(validate(&spec()).is_ok());
        assert!(validate(&bookinfo(Ipv4Addr::new(127, 0, 10, 0), Dataplane::Envoy)).is_ok());
    }

    #[test]
    fn addresses() -> anyhow::Result<()> {
        let p = AddressPlan::new(Ipv4Addr::new(127, 101, 3, 0))?;
        assert_eq!(p.control_plane(), Ipv4Addr::new(127, 101, 3, 1));
        assert_eq!(p.client(), Ipv4Addr::new(127, 101, 3, 2));
        assert_eq!(p.workload(0), Ipv4Addr::new(127, 101, 3, 10));
        assert_eq!(p.app(5), Ipv4Addr::new(127, 101, 3, 115));
        Ok(())
    }

    #[test]
    fn syncz_parsing_and_nacks() -> anyhow::Result<()> {
        let s: Syncz = serde_json::from_str(
            r#"{"generation": 4, "proxies": [
                {"id": "sidecar~127.0.10.2~client.default~default.svc.cluster.local", "generation": 4, "synced": true,
                 "types": {"type.googleapis.com/envoy.config.listener.v3.Listener": {"sent": "3", "acked": "3", "nack": null}}},
                {"id": "sidecar~127.0.10.10~reviews-v1-0.default~default.svc.cluster.local", "generation": 4, "synced": false,
                 "types": {"type.googleapis.com/envoy.config.cluster.v3.Cluster": {"sent": "5", "acked": "4", "nack": {"version": "5", "error": "bad field"}}}}
            ]}"#,
        )?;
        assert!(
            s.proxy_for_ip(Ipv4Addr::new(127, 0, 10, 2))
                .is_some_and(|p| p.synced)
        );
        assert!(s.proxy_for_ip(Ipv4Addr::new(127, 0, 10, 1)).is_none());
        let n = s.nacks();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].2.error, "bad field");
        Ok(())
    }

    #[test]
    fn metric_sums() {
        let text = "# HELP pilot_total_xds_rejects x\n# TYPE pilot_total_xds_rejects counter\n\
                    pilot_total_xds_rejects{type=\"cds\"} 2\npilot_total_xds_rejects{type=\"lds\"} 1\n\
                    pilot_total_xds_rejects_other 7\npilot_xds 3\n";
        assert_eq!(metric_sum(text, "pilot_total_xds_rejects"), 3.0);
        assert_eq!(
            metric_sum("pilot_total_xds_rejects 4\n", "pilot_total_xds_rejects"),
            4.0
        );
    }

    #[test]
    fn file_names() {
        assert!(check_file_name("vs.yaml").is_ok());
        assert!(check_file_name("../x.yaml").is_err());
        assert!(check_file_name("mesh.yaml").is_err());
        assert!(check_file_name("vs.json").is_err());
    }
}
