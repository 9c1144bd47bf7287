//! The runner: starts a mesh for a scenario, applies its `config`, runs its steps in order (each
//! kind in [`super::steps`]), and always tears the mesh down.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::steps;
use super::{CONFIG_FILE, Scenario, Step, StepKind};
use crate::mesh::{Dataplane, EchoMode, Mesh, MeshOptions, MeshSpec, ServiceSpec, WorkloadSpec};

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `trellis` binary.
    pub trellis_bin: PathBuf,
    /// The data plane.
    pub dataplane: Dataplane,
    /// The `/24` to use (`127.x.y.0`).
    pub base: Ipv4Addr,
    /// Where logs and config go.
    pub run_dir: PathBuf,
    /// The Envoy binary (found automatically when `None`).
    pub envoy_bin: Option<PathBuf>,
    /// How echo apps run.
    pub echo: EchoMode,
    /// How long a config change (or a validation message) may take to reach every proxy.
    pub sync_timeout: Duration,
    /// How long proxies may take to reconnect to a restarted control plane and be up to date.
    pub reconnect_timeout: Duration,
    /// How long the mesh may take to start.
    pub startup_timeout: Duration,
    /// The scenario's Zipkin collector, while it runs (set by [`run`] from `zipkin:`).
    pub zipkin: Option<SocketAddr>,
}

impl RunOptions {
    /// Defaults: echo apps as processes, 20 s sync timeout, 30 s reconnect timeout, 60 s startup.
    pub fn new(
        trellis_bin: PathBuf,
        dataplane: Dataplane,
        base: Ipv4Addr,
        run_dir: PathBuf,
    ) -> Self {
        RunOptions {
            trellis_bin,
            dataplane,
            base,
            run_dir,
            envoy_bin: None,
            echo: EchoMode::Process,
            sync_timeout: Duration::from_secs(20),
            reconnect_timeout: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(60),
            zipkin: None,
        }
    }

    /// The deadline for a config change (or a validation message) starting now.
    pub(super) fn sync_deadline(&self) -> Instant {
        Instant::now() + self.sync_timeout
    }
}

/// The result of one scenario on one data plane.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Whether every step passed.
    pub passed: bool,
    /// What failed (or a summary of what passed).
    pub detail: String,
    /// NACKs seen over the run.
    pub nacks: usize,
    /// One line per step.
    pub steps: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs a scenario: starts the mesh, applies `config`, runs the steps in order, stops at the
/// first failure, and always tears the mesh down. `progress` gets one line per step.
pub async fn run(
    scenario: &Scenario,
    options: &RunOptions,
    mut progress: impl FnMut(&str),
) -> RunReport {
    if scenario.mode == Some(super::ScenarioMode::Capture) {
        // The pod launcher is synchronous; nothing else runs on this task meanwhile.
        return super::capture::run(scenario, options, &mut progress);
    }
    let started = Instant::now();
    // Before the mesh is up, a failure ends the run without steps.
    let not_started = |e: anyhow::Error| RunReport {
        passed: false,
        detail: format!("{e:#}"),
        nacks: 0,
        steps: Vec::new(),
        elapsed: started.elapsed(),
    };
    // The collector outlives the mesh's proxies (they may still be exporting).
    let collector = match start_collector(scenario).await {
        Ok(c) => c,
        Err(e) => return not_started(e),
    };
    let mut with_collector = options.clone();
    with_collector.zipkin = collector.as_ref().map(crate::zipkin::Collector::address);
    let options = &with_collector;
    // The test JWT issuer's JWKS server, and `{{JWT_JWKS}}`/`{{JWT_CA_CERT}}` in the YAML.
    let ((jwks_server, _mtls_server), expanded) = match with_jwt_issuer(scenario, options).await {
        Ok(x) => x,
        Err(e) => return not_started(e),
    };
    // The test external authorizer, and `{{EXT_AUTHZ_*_PORT}}` in the YAML.
    let (_ext_authz, expanded) = match with_ext_authz(&expanded).await {
        Ok(x) => x,
        Err(e) => return not_started(e),
    };
    let scenario = &expanded;
    let mesh_options = scenario.mesh_options(options);
    let spec = scenario.mesh_spec(options.base, options.dataplane);
    let mut mesh = match Mesh::start(spec, mesh_options).await {
        Ok(m) => m,
        Err(e) => return not_started(e),
    };
    progress(&format!(
        "mesh up in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    let mut steps = Vec::new();
    let servers = TestServers {
        jwks: jwks_server.as_ref(),
    };
    let result = run_steps(
        scenario,
        options,
        &servers,
        &mut mesh,
        &mut steps,
        &mut progress,
    )
    .await;
    let nacks = mesh.nack_count().await;
    let run_dir = mesh.run_dir().display().to_string();
    mesh.shutdown().await;
    let (passed, detail) = match result {
        Ok(()) => (true, steps.last().cloned().unwrap_or_default()),
        Err(e) => (false, format!("{e:#} (logs in {run_dir})")),
    };
    RunReport {
        passed,
        detail,
        nacks,
        steps,
        elapsed: started.elapsed(),
    }
}

/// The scenario's Zipkin collector on `127.0.0.1:PORT`, if it has one.
async fn start_collector(scenario: &Scenario) -> anyhow::Result<Option<crate::zipkin::Collector>> {
    let Some(z) = &scenario.zipkin else {
        return Ok(None);
    };
    let address = SocketAddr::from(([127, 0, 0, 1], z.port));
    crate::zipkin::Collector::start(address)
        .await
        .map(Some)
        .with_context(|| format!("starting the Zipkin collector on {address}"))
}

/// The scenario's test servers that steps act on.
struct TestServers<'a> {
    /// `jwks_server` (for `jwks_keys` steps).
    jwks: Option<&'a crate::jwt::server::JwksServer>,
}

async fn run_steps(
    scenario: &Scenario,
    options: &RunOptions,
    servers: &TestServers<'_>,
    mesh: &mut Mesh,
    lines: &mut Vec<String>,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<()> {
    if let Some(config) = &scenario.config {
        mesh.apply(CONFIG_FILE, config).await?;
        mesh.wait_synced(options.sync_deadline())
            .await
            .context("applying the scenario's config")?;
        let line = "config applied and synced".to_string();
        progress(&line);
        lines.push(line);
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        let line = run_step(step, options, servers, mesh)
            .await
            .with_context(|| format!("step {} ({})", i + 1, describe_step(step)))?;
        let line = format!("step {}: {line}", i + 1);
        progress(&line);
        lines.push(line);
    }
    Ok(())
}

fn describe_step(step: &Step) -> String {
    match step.kind() {
        Ok(StepKind::Request(r, _)) => format!("request {} {}{}", r.method, r.authority, r.path),
        Ok(StepKind::Apply(f)) => format!("apply {}", f.file),
        Ok(StepKind::Remove(r)) => format!("remove {}", r.file),
        Ok(StepKind::LiveChange(l)) => format!("live_change {}", l.apply.file),
        Ok(StepKind::ApplyInvalid(a)) => format!("apply_invalid {}", a.file),
        Ok(StepKind::RestartControlPlane(r)) => {
            format!("restart_control_plane down {}ms", r.down_ms)
        }
        Ok(StepKind::Sleep(ms)) => format!("sleep {ms}ms"),
        Ok(StepKind::RotateCertificates(r)) => {
            format!("rotate_certificates ×{}", r.rotations)
        }
        Ok(StepKind::JwksKeys(keys)) => format!("jwks_keys {keys:?}"),
        Err(e) => e.to_string(),
    }
}

async fn run_step(
    step: &Step,
    options: &RunOptions,
    servers: &TestServers<'_>,
    mesh: &mut Mesh,
) -> anyhow::Result<String> {
    match step.kind()? {
        StepKind::Request(r, expect) => steps::request::run(r, expect, mesh, options.zipkin).await,
        StepKind::Apply(f) => steps::apply::apply(f, options, mesh).await,
        StepKind::Remove(r) => steps::apply::remove(r, options, mesh).await,
        StepKind::LiveChange(l) => steps::live_change::run(l, options, mesh).await,
        StepKind::ApplyInvalid(a) => steps::apply_invalid::run(a, options, mesh).await,
        StepKind::RestartControlPlane(r) => {
            steps::restart_control_plane::run(r, options, mesh).await
        }
        StepKind::Sleep(ms) => steps::sleep::run(ms).await,
        StepKind::RotateCertificates(r) => steps::rotate_certificates::run(r, mesh).await,
        StepKind::JwksKeys(keys) => {
            let server = servers
                .jwks
                .ok_or_else(|| anyhow::anyhow!("jwks_keys needs a jwks_server"))?;
            server.set_keys(keys)?;
            Ok(format!(
                "the JWKS server serves {keys:?} ({} fetches so far)",
                server.fetches()
            ))
        }
    }
}

impl Scenario {
    /// The mesh this scenario runs on.
    pub fn mesh_spec(&self, base: Ipv4Addr, dataplane: Dataplane) -> MeshSpec {
        MeshSpec {
            base,
            dataplane,
            services: self
                .services
                .iter()
                .map(|s| ServiceSpec {
                    name: s.name.clone(),
                    namespace: s.namespace.clone(),
                    port: s.port,
                    protocol: s.protocol.clone(),
                })
                .collect(),
            workloads: self
                .workloads
                .iter()
                .flat_map(|w| {
                    (0..w.instances).map(move |instance| WorkloadSpec {
                        service: w.service.clone(),
                        version: w.version.clone(),
                        instance,
                        calls: w.calls.clone(),
                    })
                })
                .collect(),
            extra_yaml: String::new(),
        }
    }

    /// The mesh options for this scenario: the client's namespace, labels and locality, each
    /// workload's locality and labels, and the external apps.
    fn mesh_options(&self, run: &RunOptions) -> MeshOptions {
        let mut mesh_options = MeshOptions::new(run.trellis_bin.clone(), run.run_dir.clone());
        mesh_options.envoy_bin = run.envoy_bin.clone();
        mesh_options.echo = run.echo;
        mesh_options.startup_timeout = run.startup_timeout;
        mesh_options.mesh_config = self.mesh_config.clone();
        mesh_options.cert_ttl = self.cert_ttl_ms.map(Duration::from_millis);
        mesh_options.jwks_refresh = self.jwks_refresh_ms.map(Duration::from_millis);
        if let Some(c) = &self.client {
            mesh_options.client_namespace = c.namespace.clone();
            mesh_options.client_labels = c.labels.clone();
            mesh_options.client_locality = c.locality.clone();
        }
        for w in &self.workloads {
            for instance in 0..w.instances {
                let name = format!("{}-{}-{instance}", w.service, w.version);
                if let Some(l) = &w.locality {
                    mesh_options
                        .workload_localities
                        .insert(name.clone(), l.clone());
                }
                if !w.labels.is_empty() {
                    mesh_options.workload_labels.insert(name, w.labels.clone());
                }
            }
        }
        mesh_options.gateways = self.gateways.clone();
        mesh_options.credentials = self.credentials.clone();
        mesh_options.service_ports = self
            .services
            .iter()
            .filter(|s| s.port_name.is_some() || s.app_protocol.is_some())
            .map(|s| (s.name.clone(), s.port_json()))
            .collect();
        mesh_options.externals = self
            .externals
            .iter()
            .map(|x| {
                (
                    x.name.clone(),
                    x.version.clone(),
                    SocketAddr::from(([127, 0, 0, 1], x.port)),
                )
            })
            .collect();
        mesh_options
    }
}

/// Starts the scenario's external authorizer (if any) and expands `{{EXT_AUTHZ_GRPC_PORT}}` and
/// `{{EXT_AUTHZ_HTTP_PORT}}` in its mesh config, config and applied files.
async fn with_ext_authz(
    scenario: &Scenario,
) -> anyhow::Result<(Option<crate::ext_authz::ExtAuthzServer>, Scenario)> {
    let Some(def) = &scenario.ext_authz_server else {
        return Ok((None, scenario.clone()));
    };
    let server = crate::ext_authz::ExtAuthzServer::start(crate::ext_authz::Ports {
        grpc: def.grpc_port,
        http: def.http_port,
    })
    .await
    .context("starting the ext_authz server")?;
    let ports = [
        ("{{EXT_AUTHZ_GRPC_PORT}}", def.grpc_port),
        ("{{EXT_AUTHZ_HTTP_PORT}}", def.http_port),
    ];
    let expand = |text: &mut String| {
        for (name, port) in ports {
            if let Some(port) = port {
                *text = text.replace(name, &port.to_string());
            }
        }
    };
    let mut out = scenario.clone();
    if let Some(mesh) = &mut out.mesh_config {
        expand(mesh);
    }
    if let Some(config) = &mut out.config {
        expand(config);
    }
    for step in &mut out.steps {
        if let Some(apply) = &mut step.apply {
            expand(&mut apply.content);
        }
        if let Some(change) = &mut step.live_change {
            expand(&mut change.apply.content);
        }
    }
    Ok((Some(server), out))
}

/// The scenario's HTTPS servers (JWKS, mTLS), kept running while it runs.
type TestIssuers = (
    Option<crate::jwt::server::JwksServer>,
    Option<crate::jwt::mtls::MtlsServer>,
);

/// Starts the scenario's JWKS and mTLS servers (if any) and expands `{{MTLS_*}}` and the test issuer's templates in its
/// config and applied files: `{{JWT_JWKS}}` (the JWKS text) and `{{JWT_CA_CERT}}` (the file of
/// the CA that signed the JWKS server's certificate).
async fn with_jwt_issuer(
    scenario: &Scenario,
    options: &RunOptions,
) -> anyhow::Result<(TestIssuers, Scenario)> {
    let server = match &scenario.jwks_server {
        None => None,
        Some(def) => Some(
            crate::jwt::server::JwksServer::start(
                SocketAddr::from(([127, 0, 0, 1], def.port)),
                &options.run_dir.join("jwks-server"),
                &def.keys,
            )
            .await
            .context("starting the JWKS server")?,
        ),
    };
    let mtls = match &scenario.mtls_server {
        None => None,
        Some(def) => Some(
            crate::jwt::mtls::MtlsServer::start(
                SocketAddr::from(([127, 0, 0, 1], def.port)),
                &options.run_dir.join("mtls-server"),
            )
            .await
            .context("starting the mTLS server")?,
        ),
    };
    let mut extra: Vec<(&str, String)> = server
        .iter()
        .map(|s| ("JWT_CA_CERT", s.ca_file().display().to_string()))
        .collect();
    if let Some(m) = &mtls {
        extra.extend(m.files().templates());
    }
    let expand = |text: &str| crate::jwt::expand(text, &extra);
    let mut out = scenario.clone();
    if let Some(config) = &mut out.config {
        *config = expand(config)?;
    }
    for step in &mut out.steps {
        if let Some(apply) = &mut step.apply {
            apply.content = expand(&apply.content)?;
        }
        if let Some(change) = &mut step.live_change {
            change.apply.content = expand(&change.apply.content)?;
        }
    }
    Ok(((server, mtls), out))
}
