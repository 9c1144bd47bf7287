//! Bringing a pod mesh up: the run directory, the pods and their capture rules, the control
//! plane, the apps and the sidecars, and the waits until all of it is ready and in sync.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use trellis_capture::{CaptureConfig, Family, PodNetwork};

use super::plan::{self, CLIENT_POD, CONTROL_PLANE_POD, OUTSIDE_POD, PodPlan};
use super::{
    OUTSIDE_PORT, POLL, PROBE_TIMEOUT, PROXY_UID, PodInfo, PodMesh, PodOptions, cleanup,
    exec_command, probe,
};
use crate::mesh::{Dataplane, MeshSpec, Syncz, workload_name};
use crate::process::{Spec, spawn_logged};

/// The control plane's plaintext xDS port.
const XDS_PORT: u16 = 15010;
/// The control plane's xDS + certificate port over TLS, which sidecars use.
const SECURE_XDS_PORT: u16 = 15012;
/// The control plane's monitoring port.
pub(super) const MONITORING_PORT: u16 = 15014;
/// A sidecar's admin address inside its pod.
const ADMIN: &str = "127.0.0.1:15000";
/// The longest namespace prefix: veth names (`v` + prefix + host + `s`) fit in 15 bytes.
const MAX_PREFIX: usize = 9;

impl PodMesh {
    /// Starts the mesh and waits until every sidecar is ready and in sync. On failure
    /// everything started so far is torn down and the error names the run directory.
    pub fn start(spec: MeshSpec, options: PodOptions) -> anyhow::Result<Self> {
        if let Some(missing) = super::missing_requirements() {
            bail!("{missing}");
        }
        plan::validate(&spec)?;
        check_prefix(&options.prefix)?;
        let plan = PodPlan::for_base(spec.base)?;
        let run_dir = std::path::absolute(&options.run_dir)
            .with_context(|| format!("{}", options.run_dir.display()))?;
        let config_dir = prepare_run_dir(&run_dir, &spec, &plan, &options)?;
        let (leftovers, _) = cleanup::remove_prefix(&options.prefix)?;
        if !leftovers.is_empty() {
            tracing::warn!(?leftovers, "removed namespaces left by an earlier run");
        }
        let net = PodNetwork::create(&options.prefix, plan.subnet())
            .context("creating the pod network")?;
        let mut mesh = PodMesh {
            spec,
            plan,
            prefix: options.prefix.clone(),
            run_dir: run_dir.clone(),
            config_dir,
            pods: Vec::new(),
            children: Vec::new(),
            upstream_dns: None,
            net,
            generation_before_apply: None,
        };
        let deadline = Instant::now() + options.startup_timeout;
        match mesh.bring_up(&options, deadline) {
            Ok(()) => Ok(mesh),
            Err(e) => {
                let tails = mesh.log_tails(20);
                drop(mesh);
                Err(e.context(format!(
                    "starting the pod mesh failed; logs in {}\n{tails}",
                    run_dir.display()
                )))
            }
        }
    }

    fn bring_up(&mut self, options: &PodOptions, deadline: Instant) -> anyhow::Result<()> {
        self.create_pods(options)?;
        if options.dns {
            self.start_upstream_dns(options)?;
        }
        let bin = &options.trellis_bin;
        let cp = self.plan.control_plane();
        let ca_dir = self.run_dir.join("ca");
        let mut cp_spec = self
            .in_pod(CONTROL_PLANE_POD, "control-plane", None, bin)
            .arg("control-plane")
            .arg("--config-dir")
            .arg(&self.config_dir)
            .arg("--xds-address")
            .arg(SocketAddr::new(cp.into(), XDS_PORT).to_string())
            .arg("--monitoring-address")
            .arg(self.monitoring_address().to_string())
            .arg("--ca-dir")
            .arg(&ca_dir);
        if options.mesh_config.is_some() {
            cp_spec = cp_spec
                .arg("--mesh-config")
                .arg(self.run_dir.join("mesh-config.yaml"));
        }
        self.spawn(&cp_spec, "control-plane.log")?;
        let monitoring = self.monitoring_address();
        self.wait_http(CONTROL_PLANE_POD, monitoring, "/ready", deadline)?;
        // Sidecars (UID 1337) read the root certificate (and Envoy) from the run directory.
        let root_cert = self.run_dir.join("root-cert.pem");
        std::fs::copy(ca_dir.join("root-cert.pem"), &root_cert)
            .context("copying the mesh's root certificate")?;
        std::fs::set_permissions(&root_cert, std::fs::Permissions::from_mode(0o644))?;
        let envoy = match self.spec.dataplane {
            Dataplane::Envoy => Some(envoy_for_proxy_user(options, &self.run_dir)?),
            Dataplane::Trellis => None,
        };

        // Apps.
        for w in self.spec.workloads.clone() {
            let s = plan::service_of(&self.spec, &w)?.clone();
            let name = workload_name(&w);
            let mut app = self
                .in_pod(&name, &format!("app {name}"), None, bin)
                .arg("echo")
                .arg("--listen")
                .arg(format!("0.0.0.0:{}", s.port))
                .arg("--service")
                .arg(&s.name)
                .arg("--version")
                .arg(&w.version)
                .arg("--instance")
                .arg(&name);
            for call in &w.calls {
                app = app.arg("--call").arg(call);
            }
            self.spawn(&app, &format!("app-{name}.log"))?;
        }
        if options.outside {
            let app = self
                .in_pod(OUTSIDE_POD, "app outside", None, bin)
                .arg("echo")
                .arg("--listen")
                .arg(format!("0.0.0.0:{OUTSIDE_PORT}"))
                .arg("--service")
                .arg(OUTSIDE_POD)
                .arg("--version")
                .arg("v1")
                .arg("--instance")
                .arg(OUTSIDE_POD);
            self.spawn(&app, "app-outside.log")?;
        }

        // Sidecars: the client's, then one per workload.
        let mut sidecars = vec![(
            CLIENT_POD.to_string(),
            "default".to_string(),
            CLIENT_POD.to_string(),
            format!("app={CLIENT_POD}"),
        )];
        for w in &self.spec.workloads {
            let s = plan::service_of(&self.spec, w)?;
            sidecars.push((
                workload_name(w),
                s.namespace.clone(),
                s.name.clone(),
                format!("app={},version={}", s.name, w.version),
            ));
        }
        let secure_xds = SocketAddr::new(cp.into(), SECURE_XDS_PORT).to_string();
        for (pod, namespace, service_account, labels) in &sidecars {
            let ip = self.pod(pod)?.ip;
            let sub = match self.spec.dataplane {
                Dataplane::Trellis => "proxy",
                Dataplane::Envoy => "agent",
            };
            let token = crate::mesh::mint_token_blocking(bin, &ca_dir, namespace, service_account)?;
            let mut sidecar = self
                .in_pod(pod, &format!("sidecar {pod}"), Some(PROXY_UID), bin)
                .arg(sub)
                .arg("--capture")
                .arg("--ip")
                .arg(ip.to_string())
                .arg("--workload")
                .arg(pod)
                .arg("--namespace")
                .arg(namespace)
                .arg("--service-account")
                .arg(service_account)
                .arg("--labels")
                .arg(labels)
                .arg("--admin-address")
                .arg(ADMIN)
                .arg("--xds-address")
                .arg(&secure_xds)
                .arg("--root-cert")
                .arg(&root_cert)
                .env("TRELLIS_TOKEN", token);
            if options.dns {
                sidecar = sidecar.arg("--dns-capture");
            }
            if let Some(envoy) = &envoy {
                sidecar = sidecar
                    .arg("--envoy")
                    .arg(envoy)
                    .arg("--concurrency")
                    .arg("1");
            }
            self.spawn(&sidecar, &format!("sidecar-{pod}.log"))?;
        }

        // Everything answers.
        for w in self.spec.workloads.clone() {
            let s = plan::service_of(&self.spec, &w)?;
            let app = SocketAddr::from(([127, 0, 0, 1], s.port));
            self.wait_http(&workload_name(&w), app, "/ready-check", deadline)?;
        }
        if options.outside {
            let app = SocketAddr::from(([127, 0, 0, 1], OUTSIDE_PORT));
            self.wait_http(OUTSIDE_POD, app, "/ready-check", deadline)?;
        }
        let admin: SocketAddr = ADMIN.parse().context("admin address")?;
        for (pod, _, _, _) in &sidecars {
            self.wait_http(pod, admin, "/ready", deadline)?;
        }
        self.wait_up_to_date(deadline, None)?;
        Ok(())
    }

    /// Creates the pods (control plane, client, outside, one per workload), their hosts files
    /// and the capture rules of those with a sidecar.
    fn create_pods(&mut self, options: &PodOptions) -> anyhow::Result<()> {
        let mut pods = vec![
            PodInfo {
                name: CONTROL_PLANE_POD.into(),
                ip: self.plan.host(1),
                service: None,
                sidecar: false,
            },
            PodInfo {
                name: CLIENT_POD.into(),
                ip: self.plan.host(2),
                service: None,
                sidecar: true,
            },
        ];
        if options.outside {
            pods.push(PodInfo {
                name: OUTSIDE_POD.into(),
                ip: self.plan.host(3),
                service: None,
                sidecar: false,
            });
        }
        for (i, w) in self.spec.workloads.iter().enumerate() {
            pods.push(PodInfo {
                name: workload_name(w),
                ip: self.plan.host(self.plan.workload_host(i)),
                service: Some(w.service.clone()),
                sidecar: true,
            });
        }
        let hosts = plan::hosts_entries(&self.spec, &self.plan, options.outside);
        let capture = CaptureConfig {
            dns_port: options
                .dns
                .then_some(trellis_capture::iptables::DNS_PROXY_PORT),
            ..CaptureConfig::default()
        };
        for info in &pods {
            let host = info.ip.octets()[3];
            self.net
                .add_pod(&info.name, host)
                .with_context(|| format!("creating pod {}", info.name))?;
            let pod = self
                .net
                .pod_mut(&info.name)
                .ok_or_else(|| anyhow!("pod {} vanished", info.name))?;
            if options.hosts_files {
                pod.write_hosts(&hosts)?;
            }
            if options.dns {
                let namespace = match &info.service {
                    Some(service) => plan::namespace_of(&self.spec, service),
                    None => "default".to_string(),
                };
                pod.write_resolv_conf(
                    &[self.plan.control_plane().into()],
                    &plan::search_domains(&namespace),
                )?;
            }
            if info.sidecar {
                let capture = capture.clone();
                pod.netns()
                    .run(move || capture.apply(Family::V4))?
                    .with_context(|| format!("capture rules in pod {}", info.name))?;
            }
            self.pods.push(info.clone());
        }
        Ok(())
    }

    /// Starts the mesh's resolver on `10.x.y.1:53` in pod `cp`: `outside` (with the outside
    /// pod) and the options' records.
    fn start_upstream_dns(&mut self, options: &PodOptions) -> anyhow::Result<()> {
        let mut records = options.dns_records.clone();
        if options.outside {
            records.insert(OUTSIDE_POD.to_string(), vec![self.plan.host(3).into()]);
        }
        let address = SocketAddr::new(self.plan.control_plane().into(), 53);
        let (udp, tcp) = self
            .netns(CONTROL_PLANE_POD)?
            .run(move || {
                let udp = std::net::UdpSocket::bind(address)?;
                let tcp = std::net::TcpListener::bind(address)?;
                Ok::<_, std::io::Error>((udp, tcp))
            })?
            .with_context(|| format!("binding the mesh's resolver on {address} in pod cp"))?;
        self.upstream_dns = Some(crate::dns::UpstreamDns::serve(udp, tcp, records)?);
        Ok(())
    }

    /// A [`Spec`] running `program` in `pod` (as `uid` when given).
    fn in_pod(&self, pod: &str, label: &str, uid: Option<u32>, program: &Path) -> Spec {
        let ns = format!("{}-{pod}", self.prefix);
        let cmd = exec_command(&ns, uid, &program.to_string_lossy());
        let mut spec = Spec::new(label, cmd.get_program());
        for a in cmd.get_args() {
            spec = spec.arg(a);
        }
        spec
    }

    fn spawn(&mut self, spec: &Spec, log: &str) -> anyhow::Result<()> {
        let guard = spawn_logged(spec, &self.run_dir.join(log))?;
        self.children.push(guard);
        Ok(())
    }

    /// Polls `GET path` at `addr` from inside `pod` until it answers 200.
    fn wait_http(
        &mut self,
        pod: &str,
        addr: SocketAddr,
        path: &str,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        self.poll(deadline, &format!("{addr}{path} in pod {pod}"), |mesh| {
            let ns = mesh.netns(pod)?;
            Ok(match probe::get(ns, addr, path, PROBE_TIMEOUT) {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("{status} {body:.200}")),
                Err(e) => Err(e),
            })
        })
    }

    /// Polls `/debug/syncz` until every sidecar ACKed the served generation (newer than
    /// `newer_than`); fails at once on a NACK.
    pub(super) fn wait_up_to_date(
        &mut self,
        deadline: Instant,
        newer_than: Option<u64>,
    ) -> anyhow::Result<Syncz> {
        let sidecars: Vec<(String, std::net::Ipv4Addr)> = self
            .pods
            .iter()
            .filter(|p| p.sidecar)
            .map(|p| (p.name.clone(), p.ip))
            .collect();
        self.poll(deadline, "every sidecar to ACK its config", |mesh| {
            let s = match mesh.syncz() {
                Ok(s) => s,
                Err(e) => return Ok(Err(format!("{e:#}"))),
            };
            if let Some((id, type_url, nack)) = s.nacks().into_iter().next() {
                bail!(
                    "proxy {id} NACKed {type_url} version {}: {}",
                    nack.version,
                    nack.error
                );
            }
            let mut lag = Vec::new();
            if let Some(g) = newer_than
                && s.generation <= g
            {
                lag.push(format!("control plane still serves generation {g}"));
            }
            for (name, ip) in &sidecars {
                match s.proxy_for_ip(*ip) {
                    None => lag.push(format!("{name} is not connected")),
                    Some(p) if p.generation != s.generation || !p.synced => lag.push(format!(
                        "{name} at generation {}/{} synced={}",
                        p.generation, s.generation, p.synced
                    )),
                    Some(_) => {}
                }
            }
            Ok(if lag.is_empty() {
                Ok(s)
            } else {
                Err(lag.join("; "))
            })
        })
    }

    /// Polls `check` for up to `within`, failing early if a pod's process died: how tests wait
    /// for a condition inside the pods. The error carries the last failure and the logs' tails.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        within: std::time::Duration,
        mut check: impl FnMut(&PodMesh) -> Result<T, String>,
    ) -> anyhow::Result<T> {
        let waited = self.poll(Instant::now() + within, what, |m| Ok(check(m)));
        waited.map_err(|e| anyhow!("{e:#}\n{}", self.log_tails(30)))
    }

    /// Calls `attempt` every [`POLL`] until it gives a value, failing at once if a process
    /// died or `attempt` fails; `Ok(Err(seen))` means "not yet".
    fn poll<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        mut attempt: impl FnMut(&PodMesh) -> anyhow::Result<Result<T, String>>,
    ) -> anyhow::Result<T> {
        loop {
            self.check_processes()?;
            let seen = match attempt(self)? {
                Ok(v) => return Ok(v),
                Err(seen) => seen,
            };
            if Instant::now() + POLL >= deadline {
                bail!("timed out waiting for {what}: last seen: {seen}");
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Prefixes are short and plain: they name namespaces and (truncated) veths.
fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        bail!("pod prefix {prefix:?} must be 1 to {MAX_PREFIX} lowercase letters or digits");
    }
    Ok(())
}

/// Creates the run directory (readable by the sidecars' UID) and the config directory with the
/// mesh's `mesh.yaml`, `extra.yaml`, the user's files and the mesh config.
fn prepare_run_dir(
    run_dir: &Path,
    spec: &MeshSpec,
    plan: &PodPlan,
    options: &PodOptions,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", run_dir.display()))?;
    let config_dir = run_dir.join("config");
    if config_dir.exists() {
        std::fs::remove_dir_all(&config_dir)
            .with_context(|| format!("clearing {}", config_dir.display()))?;
    }
    std::fs::create_dir_all(&config_dir)?;
    if let Some(from) = &options.config_from {
        copy_yaml(from, &config_dir)?;
    }
    crate::mesh::write_atomic(&config_dir.join("mesh.yaml"), &plan::mesh_yaml(spec, plan)?)?;
    if !spec.extra_yaml.trim().is_empty() {
        crate::mesh::write_atomic(&config_dir.join("extra.yaml"), &spec.extra_yaml)?;
    }
    if let Some(mesh_config) = &options.mesh_config {
        std::fs::write(run_dir.join("mesh-config.yaml"), mesh_config)?;
    }
    Ok(config_dir)
}

/// Copies the `.yaml`/`.yml` files of `from` (not recursively); a user's `mesh.yaml` becomes
/// `user-mesh.yaml`, since the launcher owns that name.
fn copy_yaml(from: &Path, to: &Path) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(from)
        .with_context(|| format!("reading config directory {}", from.display()))?;
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) || !path.is_file() {
            continue;
        }
        let target = if name == "mesh.yaml" {
            "user-mesh.yaml".to_string()
        } else {
            name.to_string()
        };
        std::fs::copy(&path, to.join(&target))
            .with_context(|| format!("copying {}", path.display()))?;
    }
    Ok(())
}

/// The Envoy binary where UID 1337 can run it (the Python package may live under `/root`).
fn envoy_for_proxy_user(options: &PodOptions, run_dir: &Path) -> anyhow::Result<PathBuf> {
    let source = match &options.envoy_bin {
        Some(p) => p.clone(),
        None => crate::envoy::find_envoy()?,
    };
    let target = run_dir.join("envoy");
    let _ = std::fs::remove_file(&target);
    if std::fs::hard_link(&source, &target).is_err() {
        std::fs::copy(&source, &target)
            .with_context(|| format!("copying {} for the sidecars", source.display()))?;
    }
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_fit_interface_names() {
        assert!(check_prefix("trellis").is_ok());
        assert!(check_prefix("cpt1234").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("much-too-long").is_err());
        assert!(check_prefix("Upper").is_err());
    }
}
