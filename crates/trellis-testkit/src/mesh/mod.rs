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
//! | `BASE.(200+i)` | gateway `i`: a router proxy serving the Gateways that select its labels |
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
//!
//! Layout: this file holds [`Mesh`] and its accessors; `spec` what mesh to run (and its
//! `mesh.yaml`), `addresses` the `/24` plan and ports, `launch` starting and stopping processes,
//! `restart` the control plane restart, `config_dir` writing config files, and `syncz` the
//! control plane's debug endpoints and the waits on them.

mod addresses;
mod config_dir;
mod gateway;
mod launch;
mod mesh_config;
mod restart;
mod spec;
mod syncz;
mod token;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

pub use addresses::{
    ADMIN_PORT, AddressPlan, MAX_WORKLOADS, MONITORING_PORT, OUTBOUND_PORT, SECURE_XDS_PORT,
    XDS_PORT,
};
pub(crate) use config_dir::check_file_name;
pub use config_dir::write_atomic;
pub use gateway::{
    CLIENT_CREDENTIAL, CREDENTIALS_DIR, CredentialSpec, GatewaySpec, MAX_GATEWAYS, TestCredentials,
};
pub use restart::Restart;
pub use spec::{
    Dataplane, EchoMode, MeshOptions, MeshSpec, ServiceSpec, WorkloadSpec, bookinfo, echo_mesh,
    mesh_yaml, mesh_yaml_with, workload_name,
};
pub use syncz::{ConfigReport, Diagnostics, Nack, ProxySync, Syncz, TypeSync, metric_sum};
pub use token::{mint_token, mint_token_blocking};

use crate::http::{self, snippet};
use crate::process::{ChildGuard, Spec};
pub(crate) use spec::service_of;

/// How often readiness and sync status are polled within a deadline.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a control plane being restarted gets between `SIGTERM` and `SIGKILL`.
pub const CONTROL_PLANE_STOP_GRACE: Duration = Duration::from_secs(5);
/// The control plane's log file in the run directory (restarts append to it).
pub const CONTROL_PLANE_LOG: &str = "control-plane.log";
/// The name of the control plane's process.
const CONTROL_PLANE: &str = "control-plane";

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
    /// The workload certificate lifetime sidecars ask for (`None`: the default, 24 h).
    cert_ttl: Option<Duration>,
    /// The gateways (router proxies), in address order.
    gateways: Vec<GatewaySpec>,
    /// The gateways' test CA and credentials (when the mesh has gateways or credentials).
    credentials: Option<TestCredentials>,
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

impl Mesh {
    /// The list of processes the mesh started.
    fn children(&self) -> anyhow::Result<MutexGuard<'_, Vec<ChildGuard>>> {
        self.children
            .lock()
            .map_err(|_| anyhow!("mesh process list poisoned"))
    }

    /// Calls `attempt` every [`POLL_INTERVAL`] until it gives a value, failing at once if a
    /// process of the mesh died or `attempt` fails. `attempt` answers `Ok(Err(seen))` while the
    /// wait goes on; past `deadline`, `timed_out` turns the last `seen` into the error.
    async fn poll<T>(
        &self,
        deadline: Instant,
        mut attempt: impl AsyncFnMut() -> anyhow::Result<Result<T, String>>,
        timed_out: impl FnOnce(&str) -> anyhow::Error,
    ) -> anyhow::Result<T> {
        loop {
            self.check_processes()?;
            let last = match attempt().await? {
                Ok(value) => return Ok(value),
                Err(seen) => seen,
            };
            if Instant::now() + POLL_INTERVAL >= deadline {
                return Err(timed_out(&last));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// GETs `path` on the monitoring API (expecting `200`) and parses the JSON answer.
    async fn get_monitoring<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<T> {
        let url = self.monitoring_url(path);
        let r = http::get(&url, Duration::from_secs(5)).await?;
        if r.status != 200 {
            anyhow::bail!("GET {url}: {} {}", r.status, snippet(&r.body));
        }
        r.json().with_context(|| format!("GET {url}"))
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

    /// The inbound address of the first workload of the service an authority (`name:port`,
    /// `name.ns.svc...:port`) names: its sidecar's IP and the service port. Requests sent there
    /// come from outside the mesh.
    pub fn service_address(&self, authority: &str) -> anyhow::Result<SocketAddr> {
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ""));
        let name = host.split('.').next().unwrap_or(host);
        let (i, service) = self
            .spec
            .workloads
            .iter()
            .enumerate()
            .find_map(|(i, w)| {
                self.spec
                    .services
                    .iter()
                    .find(|s| s.name == w.service && s.name == name)
                    .map(|s| (i, s))
            })
            .ok_or_else(|| anyhow::anyhow!("no workload serves {authority:?}"))?;
        let port = port.parse().unwrap_or(service.port);
        Ok(SocketAddr::new(self.plan.workload(i).into(), port))
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

    /// The workload certificate lifetime the sidecars ask for (`None`: 24 h).
    pub fn cert_ttl(&self) -> Option<Duration> {
        self.cert_ttl
    }

    /// The data plane the sidecars run.
    pub fn dataplane(&self) -> Dataplane {
        self.spec.dataplane
    }

    /// Every sidecar started (the client first).
    pub fn proxies(&self) -> &[ProxyInfo] {
        &self.proxies
    }
}
