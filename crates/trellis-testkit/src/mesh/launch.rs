//! Starting the mesh's processes (control plane, echo apps, sidecars) and stopping them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use super::addresses::{AddressPlan, MONITORING_PORT, OUTBOUND_PORT, SECURE_XDS_PORT, XDS_PORT};
use super::config_dir::write_atomic;
use super::spec::{
    Dataplane, EchoMode, MeshOptions, MeshSpec, mesh_yaml_with, service_of, validate, workload_name,
};
use super::{CONTROL_PLANE, CONTROL_PLANE_LOG, InProcessApp, Mesh, ProxyInfo};
use crate::echo::EchoConfig;
use crate::http::{self, snippet};
use crate::process::{ChildGuard, Spec, log_tail, spawn_logged, terminate_all};

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
            cert_ttl: options.cert_ttl,
            gateways: options.gateways.clone(),
            credentials: None,
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
        if options.gateways.len() > super::MAX_GATEWAYS {
            bail!("at most {} gateways per mesh", super::MAX_GATEWAYS);
        }
        if !options.gateways.is_empty() || !options.credentials.is_empty() {
            // Next to the config directory: where the control plane resolves credentialNames.
            let dir = self.run_dir.join(super::CREDENTIALS_DIR);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("clearing {}", dir.display()))?;
            }
            self.credentials = Some(super::TestCredentials::create(&dir, &options.credentials)?);
        }
        let cp = self.plan.control_plane();
        let xds = SocketAddr::new(cp.into(), XDS_PORT).to_string();
        let secure_xds = SocketAddr::new(cp.into(), SECURE_XDS_PORT).to_string();
        let ca_dir = self.run_dir.join("ca");
        let mut cp_spec = Spec::new(CONTROL_PLANE, bin)
            .arg("control-plane")
            .arg("--config-dir")
            .arg(self.config_dir.as_os_str())
            .arg("--xds-address")
            .arg(&xds)
            .arg("--monitoring-address")
            .arg(SocketAddr::new(cp.into(), MONITORING_PORT).to_string())
            // The mesh's own CA, kept across control-plane restarts within the run.
            .arg("--ca-dir")
            .arg(ca_dir.as_os_str())
            .arg("--mesh-config")
            .arg(
                super::mesh_config::write_mesh_config(
                    &self.run_dir,
                    options.mesh_config.as_deref(),
                )?
                .as_os_str(),
            );
        if let Some(refresh) = options.jwks_refresh {
            cp_spec = cp_spec
                .arg("--jwks-refresh-interval")
                .arg(format!("{}ms", refresh.as_millis()));
        }
        self.spawn(&cp_spec, CONTROL_PLANE_LOG)?;
        self.cp_spec = Some(cp_spec);
        let ready = self.monitoring_url("/ready");
        self.wait_ok(&ready, deadline).await?;

        // Apps.
        for (i, w) in self.spec.workloads.clone().iter().enumerate() {
            let s = service_of(&self.spec, w)?.clone();
            let name = workload_name(w);
            let listen = SocketAddr::new(self.plan.app(i).into(), s.port);
            let proxy = SocketAddr::new(self.plan.workload(i).into(), OUTBOUND_PORT);
            match options.echo {
                EchoMode::Process => {
                    let mut spec = echo_process(
                        format!("app {name}"),
                        bin,
                        listen,
                        &s.name,
                        &w.version,
                        &name,
                    )
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
                let spec = echo_process(
                    format!("external {name}{suffix}"),
                    bin,
                    address,
                    name,
                    version,
                    &format!("{name}-{version}-external"),
                );
                self.spawn(&spec, &format!("external-{name}{suffix}.log"))?;
            }
            self.externals
                .push((name.clone(), version.clone(), *listen));
        }
        for (_, _, listen) in &options.externals {
            let url = format!("http://{listen}/ready-check");
            self.wait_ok(&url, deadline).await?;
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
        for (i, g) in options.gateways.iter().enumerate() {
            sidecars.push((
                ProxyInfo {
                    workload: g.name.clone(),
                    ip: self.plan.gateway(i),
                },
                None,
                g.namespace.clone(),
                g.name.clone(),
                g.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
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
                .arg("--admin-address")
                .arg(info.admin().to_string());
            if options.gateways.iter().any(|g| g.name == info.workload) {
                spec = spec.arg("--type").arg("router");
            }
            if options.mtls {
                let token = super::mint_token(bin, &ca_dir, &namespace, &service_account).await?;
                spec = spec
                    .arg("--xds-address")
                    .arg(&secure_xds)
                    .arg("--root-cert")
                    .arg(ca_dir.join("root-cert.pem").as_os_str())
                    .env("TRELLIS_TOKEN", token);
                if let Some(ttl) = options.cert_ttl {
                    spec = spec.arg("--cert-ttl").arg(format!("{}ms", ttl.as_millis()));
                }
            } else {
                spec = spec.arg("--xds-address").arg(&xds);
            }
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
            self.wait_ok(&url, deadline).await?;
        }
        // Proxies are ready.
        for p in &self.proxies {
            let url = format!("http://{}/ready", p.admin());
            self.wait_ok(&url, deadline).await?;
        }
        self.wait_up_to_date(deadline, None).await?;
        Ok(())
    }

    fn spawn(&self, spec: &Spec, log: &str) -> anyhow::Result<()> {
        let guard = spawn_logged(spec, &self.run_dir.join(log))?;
        self.children()?.push(guard);
        Ok(())
    }

    /// Fails if any process of the mesh has exited (with the end of its log).
    pub fn check_processes(&self) -> anyhow::Result<()> {
        for c in self.children()?.iter_mut() {
            c.check_running()?;
        }
        for app in &self.in_process {
            if app.task.is_finished() {
                bail!("an in-process echo app stopped");
            }
        }
        Ok(())
    }

    /// Polls `url` until it answers `200`, checking meanwhile that no process died.
    pub(super) async fn wait_ok(&self, url: &str, deadline: Instant) -> anyhow::Result<()> {
        self.poll(
            deadline,
            async || {
                let per_try = deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_secs(2));
                Ok(match http::get(url, per_try).await {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("{} {}", r.status, snippet(&r.body))),
                    Err(e) => Err(format!("{e:#}")),
                })
            },
            |last| anyhow!("timed out waiting for {url}: last seen: {last}"),
        )
        .await
    }

    /// Stops everything and waits for the processes to exit.
    pub async fn shutdown(mut self) {
        let mut children = self.begin_stopping();
        for app in std::mem::take(&mut self.in_process) {
            let _ = app.task.await;
        }
        let _ = tokio::task::spawn_blocking(move || terminate_all(&mut children)).await;
    }

    /// Stops everything without waiting for in-process apps (on drop, or a failed start).
    fn stop_all(&mut self) {
        let mut children = self.begin_stopping();
        for app in &self.in_process {
            app.task.abort();
        }
        terminate_all(&mut children);
    }

    /// Tells every in-process app to stop and takes the processes, newest first (proxies, then
    /// apps, then the control plane), for terminating.
    fn begin_stopping(&mut self) -> Vec<ChildGuard> {
        for app in &mut self.in_process {
            if let Some(stop) = app.stop.take() {
                let _ = stop.send(());
            }
        }
        let mut children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        children.reverse();
        children
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

/// A `trellis echo` process listening on `listen`, answering as `service`/`version`/`instance`.
fn echo_process(
    label: String,
    bin: &Path,
    listen: SocketAddr,
    service: &str,
    version: &str,
    instance: &str,
) -> Spec {
    Spec::new(label, bin)
        .arg("echo")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--service")
        .arg(service)
        .arg("--version")
        .arg(version)
        .arg("--instance")
        .arg(instance)
}
