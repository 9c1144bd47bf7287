//! The pod-mesh launcher: a whole mesh in captured mode, each workload in a "pod" (a network
//! namespace on a bridge, see [`trellis_capture::PodNetwork`]) with its app and a sidecar that
//! runs as UID 1337 behind Istio's iptables rules, in secure mode (mutual TLS between sidecars).
//! Used by `trellis pods`, `trellis demo` as root, the `capture/*` conformance scenarios and
//! the capture tests. Needs root, iptables and `setpriv`.
//!
//! [`PodMesh::start`] takes the same [`MeshSpec`] as the explicit-mode [`crate::mesh::Mesh`]
//! (its base `127.x.y.0` picks the pod subnet `10.x.y.0/24`, see [`PodPlan`]) and
//! [`PodOptions`]; it starts the control plane in pod `cp`, one pod per workload named like the
//! workload (`reviews-v1-0`), a `client` pod with a sidecar and no app, and optionally an
//! `outside` pod with an echo app and no sidecar; then waits (polling, within a deadline) for
//! the control plane, every app, every sidecar's `/ready` and every sidecar to ACK its config.
//! Names resolve inside pods through DNS, as in a cluster with Istio's DNS proxying
//! ([`PodOptions::dns`], on by default): every pod's `/etc/resolv.conf` (`/etc/netns/NAME/
//! resolv.conf`, which `ip netns exec` mounts) names the mesh's resolver in pod `cp`
//! (`10.x.y.1:53`, a [`crate::dns::UpstreamDns`] that knows `outside` and
//! [`PodOptions::dns_records`], NXDOMAIN for the rest) and the search path
//! `NS.svc.cluster.local svc.cluster.local cluster.local`; the capture rules send a sidecar
//! pod's port 53 to its sidecar's DNS proxy (`--dns-capture`), which answers mesh names from
//! the control plane's name table and relays the rest to that resolver. Hosts files
//! (`/etc/netns/NAME/hosts`) are an opt-in fallback ([`PodOptions::hosts_files`]).
//!
//! Teardown, on drop and when the start fails: processes by PID (`SIGTERM`, then `SIGKILL`),
//! then whatever still runs in a pod's namespace, then the namespaces by name. Leftovers of a
//! crashed run go with [`cleanup::remove_prefix`].
//!
//! Layout: this file holds [`PodMesh`] and its accessors; `plan` the addresses, names and
//! `mesh.yaml`; `launch` bringing the pods up; `probe` HTTP from inside a pod; `cleanup`
//! removal by name.

pub mod cleanup;
mod launch;
mod plan;
mod probe;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use trellis_capture::{Netns, PodNetwork};

pub use plan::{
    CLIENT_POD, CONTROL_PLANE_POD, MAX_POD_SERVICES, MAX_POD_WORKLOADS, OUTSIDE_POD, PodPlan,
    service_names,
};

use crate::mesh::{MeshSpec, Syncz, metric_sum, write_atomic};
use crate::process::{ChildGuard, log_tail, terminate_all};

/// The UID and GID sidecars run as (Istio's): capture leaves their traffic alone.
pub const PROXY_UID: u32 = 1337;
/// The port apps listen on in the `outside` pod.
pub const OUTSIDE_PORT: u16 = 9080;
/// How often readiness and sync status are polled.
const POLL: Duration = Duration::from_millis(100);
/// The longest a single probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How to run a pod mesh.
#[derive(Debug, Clone)]
pub struct PodOptions {
    /// The `trellis` binary (must be readable and executable by UID 1337).
    pub trellis_bin: PathBuf,
    /// Where the config directory, certificates and logs go (made readable by UID 1337).
    pub run_dir: PathBuf,
    /// Namespace names are `PREFIX-POD`; at most 9 characters (veth names are limited).
    pub prefix: String,
    /// The Envoy binary for Envoy sidecars; `None` finds it.
    pub envoy_bin: Option<PathBuf>,
    /// How long the whole mesh may take to come up and sync.
    pub startup_timeout: Duration,
    /// Istio's mesh config (YAML) for the control plane; `None`: defaults.
    pub mesh_config: Option<String>,
    /// A directory of Istio YAML copied into the config directory before the start.
    pub config_from: Option<PathBuf>,
    /// Write `/etc/netns/POD/hosts` so service names resolve in pods without DNS (off by
    /// default: names come from DNS, see [`PodOptions::dns`]).
    pub hosts_files: bool,
    /// DNS as in a cluster with Istio's DNS proxying (on by default): each pod's resolv.conf
    /// names the mesh's resolver in pod `cp`, sidecars run their DNS proxy
    /// (`--dns-capture`) and the capture rules send the app's port 53 to it.
    pub dns: bool,
    /// Names the mesh's resolver in pod `cp` knows besides `outside` (lower case, no trailing
    /// dot): what "the rest of the world" resolves to.
    pub dns_records: BTreeMap<String, Vec<IpAddr>>,
    /// Start the `outside` pod: an echo app outside the mesh (no sidecar, no capture).
    pub outside: bool,
}

impl PodOptions {
    /// Defaults: 90 s startup, DNS (no hosts files), no `outside` pod.
    pub fn new(
        trellis_bin: impl Into<PathBuf>,
        run_dir: impl Into<PathBuf>,
        prefix: impl Into<String>,
    ) -> Self {
        PodOptions {
            trellis_bin: trellis_bin.into(),
            run_dir: run_dir.into(),
            prefix: prefix.into(),
            envoy_bin: None,
            startup_timeout: Duration::from_secs(90),
            mesh_config: None,
            config_from: None,
            hosts_files: false,
            dns: true,
            dns_records: BTreeMap::new(),
            outside: false,
        }
    }
}

/// A pod the mesh made.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// Its name (`reviews-v1-0`, `client`, `cp`, `outside`).
    pub name: String,
    /// Its address on the pod network.
    pub ip: Ipv4Addr,
    /// The service it serves, for workload pods.
    pub service: Option<String>,
    /// Whether a sidecar runs in it.
    pub sidecar: bool,
}

/// A running pod mesh. Dropping it tears everything down (see the module doc).
pub struct PodMesh {
    spec: MeshSpec,
    plan: PodPlan,
    prefix: String,
    run_dir: PathBuf,
    config_dir: PathBuf,
    pods: Vec<PodInfo>,
    /// Every process, in start order (control plane first).
    children: Vec<ChildGuard>,
    /// The mesh's resolver in pod `cp` (with [`PodOptions::dns`]).
    upstream_dns: Option<crate::dns::UpstreamDns>,
    /// Declared after `children`: namespaces go after the processes in them.
    net: PodNetwork,
    generation_before_apply: Option<u64>,
}

impl std::fmt::Debug for PodMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodMesh")
            .field("prefix", &self.prefix)
            .field("dataplane", &self.spec.dataplane)
            .field("run_dir", &self.run_dir)
            .finish()
    }
}

/// Why the launcher cannot run here, or `None` when it can: root, `iptables` and `setpriv`.
pub fn missing_requirements() -> Option<String> {
    let works = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root (network namespaces and iptables need it)");
    }
    if !works("iptables") {
        missing.push("iptables (apt-get install iptables)");
    }
    if !works("setpriv") {
        missing.push("setpriv (apt-get install util-linux)");
    }
    (!missing.is_empty()).then(|| format!("pods need {}", missing.join(", ")))
}

impl PodMesh {
    /// The pods, control plane first.
    pub fn pods(&self) -> &[PodInfo] {
        &self.pods
    }

    /// The pod named `name`, or the first pod of the service `name`.
    pub fn pod(&self, name: &str) -> anyhow::Result<&PodInfo> {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .or_else(|| {
                self.pods
                    .iter()
                    .find(|p| p.service.as_deref() == Some(name))
            })
            .ok_or_else(|| {
                let names: Vec<&str> = self.pods.iter().map(|p| p.name.as_str()).collect();
                anyhow!("no pod or service {name:?} (pods: {})", names.join(", "))
            })
    }

    /// The network namespace of pod (or service) `name`.
    pub fn netns_name(&self, name: &str) -> anyhow::Result<String> {
        Ok(format!("{}-{}", self.prefix, self.pod(name)?.name))
    }

    /// The namespace prefix (`trellis pods down --prefix` removes its leftovers).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The address plan.
    pub fn plan(&self) -> PodPlan {
        self.plan
    }

    /// The spec the mesh runs.
    pub fn spec(&self) -> &MeshSpec {
        &self.spec
    }

    /// Where logs, certificates and the config directory are.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The directory the control plane watches.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The control plane's monitoring address (reachable from inside pods only).
    pub fn monitoring_address(&self) -> SocketAddr {
        SocketAddr::new(self.plan.control_plane().into(), launch::MONITORING_PORT)
    }

    /// The mesh's resolver in pod `cp` (`10.x.y.1:53`), when the mesh runs with DNS.
    pub fn upstream_dns(&self) -> Option<&crate::dns::UpstreamDns> {
        self.upstream_dns.as_ref()
    }

    /// The virtual address of service `name`.
    pub fn service_vip(&self, name: &str) -> anyhow::Result<Ipv4Addr> {
        let j = self
            .spec
            .services
            .iter()
            .position(|s| s.name == name)
            .with_context(|| format!("no service {name:?}"))?;
        Ok(self.plan.service_vip(j))
    }

    /// A command that runs in pod (or service) `pod`, as root or as `uid` (and the same GID):
    /// `ip netns exec NS [setpriv ...] PROGRAM`. Add the arguments and run it.
    pub fn command(&self, pod: &str, uid: Option<u32>, program: &str) -> anyhow::Result<Command> {
        let ns = self.netns_name(pod)?;
        Ok(exec_command(&ns, uid, program))
    }

    /// Runs `args` (program first) in pod `pod` as root and waits for it.
    pub fn exec(&self, pod: &str, args: &[&str]) -> anyhow::Result<Output> {
        let (program, rest) = args.split_first().context("no command to run")?;
        self.command(pod, None, program)?
            .args(rest)
            .output()
            .with_context(|| format!("running {program} in pod {pod}"))
    }

    /// The namespace of a pod, to run a closure in it (see [`Netns::run`]).
    pub fn netns(&self, pod: &str) -> anyhow::Result<&Netns> {
        let name = &self.pod(pod)?.name;
        self.net
            .pod(name)
            .map(|p| p.netns())
            .with_context(|| format!("no namespace for pod {name}"))
    }

    /// GETs `path` on the control plane's monitoring API (from inside its pod).
    pub fn monitoring_get(&self, path: &str) -> anyhow::Result<String> {
        let ns = self.netns(CONTROL_PLANE_POD)?;
        match probe::get(ns, self.monitoring_address(), path, Duration::from_secs(5)) {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => bail!("GET {path}: {status} {body:.300}"),
            Err(e) => bail!("GET {path}: {e}"),
        }
    }

    /// The control plane's `/debug/syncz`.
    pub fn syncz(&self) -> anyhow::Result<Syncz> {
        let body = self.monitoring_get("/debug/syncz")?;
        serde_json::from_str(&body).with_context(|| format!("/debug/syncz: {body:.300}"))
    }

    /// NACKs over the run: the larger of those `/debug/syncz` shows and the control plane's
    /// `pilot_total_xds_rejects`.
    pub fn nack_count(&self) -> usize {
        let shown = self.syncz().map(|s| s.nacks().len()).unwrap_or(0);
        let metric = self
            .monitoring_get("/metrics")
            .map(|m| metric_sum(&m, "pilot_total_xds_rejects"))
            .unwrap_or(0.0);
        shown.max(metric as usize)
    }

    /// Writes `name` (a `.yaml` file) into the config directory; [`PodMesh::wait_synced`]
    /// then waits for the change to reach every sidecar.
    pub fn apply(&mut self, name: &str, yaml: &str) -> anyhow::Result<()> {
        crate::mesh::check_file_name(name)?;
        self.generation_before_apply = Some(self.syncz()?.generation);
        write_atomic(&self.config_dir.join(name), yaml)
    }

    /// Removes `name` from the config directory; [`PodMesh::wait_synced`] then waits for the
    /// change to reach every sidecar.
    pub fn remove(&mut self, name: &str) -> anyhow::Result<()> {
        crate::mesh::check_file_name(name)?;
        self.generation_before_apply = Some(self.syncz()?.generation);
        let path = self.config_dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
    }

    /// Waits until every sidecar ACKed the newest generation (newer than the one before the
    /// last [`PodMesh::apply`]); fails at once on a NACK or a dead process.
    pub fn wait_synced(&mut self, deadline: Instant) -> anyhow::Result<Syncz> {
        let newer_than = self.generation_before_apply;
        self.wait_up_to_date(deadline, newer_than)
    }

    /// Fails if a process of the mesh has exited (with the end of its log).
    pub fn check_processes(&mut self) -> anyhow::Result<()> {
        for c in &mut self.children {
            c.check_running()?;
        }
        Ok(())
    }

    /// The PIDs of every process the mesh started.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(ChildGuard::pid).collect()
    }

    /// The last lines of every log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for c in &self.children {
            out.push_str(&format!(
                "==> {} <==\n{}\n",
                c.log().display(),
                log_tail(c.log(), lines)
            ));
        }
        out
    }

    /// Stops every process (by PID), then whatever is left in the pods' namespaces, then
    /// deletes the namespaces.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let mut children = std::mem::take(&mut self.children);
        children.reverse();
        terminate_all(&mut children);
        for pod in self.net.pods() {
            cleanup::pids_in(pod.netns().name())
                .into_iter()
                .for_each(|pid| {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                });
        }
    }
}

impl Drop for PodMesh {
    fn drop(&mut self) {
        self.stop();
        // `net` drops next: pods, then the switch.
    }
}

/// `ip netns exec NS [setpriv --reuid U --regid U --clear-groups --] PROGRAM`.
pub fn exec_command(netns: &str, uid: Option<u32>, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]);
    if let Some(uid) = uid {
        cmd.arg("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .args(["--clear-groups", "--"]);
    }
    cmd.arg(program);
    cmd
}
