//! Conformance scenarios: the file format (data, not code) and the runner.
//!
//! ```yaml
//! name: traffic/weighted-split          # AREA/NAME, matches the file's path under scenarios/
//! description: 80/20 split between v1 and v2
//! services: [{name: echo, port: 9080, protocol: HTTP}]     # namespace defaults to default
//! workloads: [{service: echo, version: v1}, {service: echo, version: v2, instances: 1, calls: []}]
//! config: |                             # Istio YAML applied (and synced) before the first step
//!   apiVersion: networking.istio.io/v1
//!   kind: VirtualService
//!   ...
//! steps:
//!   - request: {authority: "echo:9080", path: /, count: 2000, concurrency: 8, protocol: http1, headers: {}}
//!     expect: {status: 200, split: {v1: 80, v2: 20}, tolerance: 3}
//!   - apply: {file: vs.yaml, content: "..."}      # then waits until every proxy ACKed
//!   - remove: {file: vs.yaml}                     # likewise
//!   - live_change:                                # traffic runs during the change
//!       apply: {file: vs.yaml, content: "..."}
//!       request: {authority: "echo:9080", concurrency: 4}
//!       expect_within_ms: 2000
//!       expect: {only_version: v2}
//! ```
//!
//! Expectations (`expect`): `status` (every response has it), `only_version` (every response
//! comes from that version), `split` (percent per version, summing to 100) with `tolerance`
//! (points, default 3), `protocol` (the protocol the echo app saw, e.g. `HTTP/2.0`), `failures`
//! (at most that many non-2xx or failed requests).
//!
//! A `live_change` passes when no request fails (or at most `expect.failures`) and no request
//! sent later than `expect_within_ms` after the change still sees the old routing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::client::{self, Outcome, RequestPlan, Summary, Traffic};
use crate::http::Protocol;
use crate::mesh::{Dataplane, EchoMode, Mesh, MeshOptions, MeshSpec, ServiceSpec, WorkloadSpec};

/// The default split tolerance, in percentage points.
pub const DEFAULT_TOLERANCE: f64 = 3.0;
/// The most requests one step may send.
pub const MAX_COUNT: usize = 100_000;
/// The most concurrent requests one step may have in flight.
pub const MAX_CONCURRENCY: usize = 64;
/// The file name the scenario's `config` is written to.
pub const CONFIG_FILE: &str = "scenario.yaml";

/// One scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// `AREA/NAME`.
    pub name: String,
    /// What it checks.
    #[serde(default)]
    pub description: String,
    /// The services of the mesh.
    pub services: Vec<ServiceDef>,
    /// The workloads of the mesh.
    pub workloads: Vec<WorkloadDef>,
    /// Istio YAML applied before the first step.
    #[serde(default)]
    pub config: Option<String>,
    /// What to do, in order.
    pub steps: Vec<Step>,
}

/// A service in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// Short name.
    pub name: String,
    /// Namespace (`default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Service port.
    pub port: u16,
    /// `HTTP` (default) or `HTTP2`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

/// Workloads of one service and version in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadDef {
    /// The service name.
    pub service: String,
    /// The `version` label.
    pub version: String,
    /// How many instances (1).
    #[serde(default = "one_u32")]
    pub instances: u32,
    /// URLs each instance's echo app calls on every request.
    #[serde(default)]
    pub calls: Vec<String>,
}

/// One step as written in the file: exactly one of `request` (with `expect`), `apply`,
/// `remove`, `live_change`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Send requests through the client sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestDef>,
    /// What the responses to `request` must look like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// Write a config file and wait until every proxy is up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<FileDef>,
    /// Remove a config file and wait until every proxy is up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<RemoveDef>,
    /// Apply a file under continuous traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_change: Option<LiveChange>,
}

/// The kind of a step, once validated.
#[derive(Debug, Clone, Copy)]
pub enum StepKind<'a> {
    /// `request` + `expect`.
    Request(&'a RequestDef, &'a Expect),
    /// `apply`.
    Apply(&'a FileDef),
    /// `remove`.
    Remove(&'a RemoveDef),
    /// `live_change`.
    LiveChange(&'a LiveChange),
}

impl Step {
    /// Which kind of step this is (fails unless exactly one kind is given).
    pub fn kind(&self) -> anyhow::Result<StepKind<'_>> {
        let given = [
            self.request.is_some(),
            self.apply.is_some(),
            self.remove.is_some(),
            self.live_change.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            bail!(
                "a step needs exactly one of request, apply, remove, live_change ({given} given)"
            );
        }
        if self.expect.is_some() && self.request.is_none() {
            bail!("`expect` belongs to a `request` step (live_change has its own expect)");
        }
        Ok(
            match (&self.request, &self.apply, &self.remove, &self.live_change) {
                (Some(r), _, _, _) => StepKind::Request(
                    r,
                    self.expect
                        .as_ref()
                        .ok_or_else(|| anyhow!("a request step needs an `expect`"))?,
                ),
                (_, Some(a), _, _) => StepKind::Apply(a),
                (_, _, Some(r), _) => StepKind::Remove(r),
                (_, _, _, Some(l)) => StepKind::LiveChange(l),
                _ => bail!("empty step"),
            },
        )
    }
}

/// Requests to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    /// The authority, e.g. `echo:9080`.
    pub authority: String,
    /// Path and query (`/`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Method (`GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// How many requests (100; ignored by `live_change`).
    #[serde(default = "default_count")]
    pub count: usize,
    /// How many in flight (1).
    #[serde(default = "one_usize")]
    pub concurrency: usize,
    /// `http1` (default) or `http2` (h2c) between the client and its sidecar.
    #[serde(default)]
    pub protocol: Protocol,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// What responses must look like.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Every response has this status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Every response comes from this version.
    #[serde(default)]
    pub only_version: Option<String>,
    /// Percent of responses per version (sums to 100).
    #[serde(default)]
    pub split: Option<BTreeMap<String, f64>>,
    /// Allowed deviation from `split`, in percentage points.
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Every echo answer reports this protocol (`HTTP/1.1`, `HTTP/2.0`).
    #[serde(default)]
    pub protocol: Option<String>,
    /// At most this many requests fail (non-2xx or no response).
    #[serde(default)]
    pub failures: Option<usize>,
}

/// A config file to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    /// File name in the config directory (`*.yaml`).
    pub file: String,
    /// Istio YAML.
    pub content: String,
}

/// A config file to remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveDef {
    /// File name in the config directory.
    pub file: String,
}

/// A change made under continuous traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveChange {
    /// The file to write.
    pub apply: FileDef,
    /// The background traffic (`count` is ignored).
    pub request: RequestDef,
    /// Every request sent later than this after the change sees the new routing.
    pub expect_within_ms: u64,
    /// The new routing (`only_version`, optionally `status`, `failures`).
    pub expect: Expect,
}

fn default_namespace() -> String {
    "default".to_string()
}
fn default_protocol() -> String {
    "HTTP".to_string()
}
fn default_path() -> String {
    "/".to_string()
}
fn default_method() -> String {
    "GET".to_string()
}
fn default_count() -> usize {
    100
}
fn one_usize() -> usize {
    1
}
fn one_u32() -> u32 {
    1
}

impl Scenario {
    /// Parses and validates a scenario; `origin` (a file path) prefixes every error, and YAML
    /// errors name the field path and line.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Scenario> {
        let de = serde_yaml::Deserializer::from_str(text);
        let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path.is_empty() || path == "." {
                anyhow!("{origin}: {inner}")
            } else {
                anyhow!("{origin}: at {path}: {inner}")
            }
        })?;
        scenario
            .validate()
            .map_err(|e| anyhow!("{origin}: {e:#}"))?;
        Ok(scenario)
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Scenario::parse(&text, &path.display().to_string())
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        let parts: Vec<&str> = self.name.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            bail!(
                "name {:?} must be AREA/NAME, e.g. traffic/weighted-split",
                self.name
            );
        }
        if self.services.is_empty() {
            bail!("services: at least one service is needed");
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                bail!("services[{i}]: service {:?} is listed twice", s.name);
            }
            if !matches!(s.protocol.as_str(), "HTTP" | "HTTP2") {
                bail!(
                    "services[{i}].protocol: {:?} is not supported (HTTP or HTTP2)",
                    s.protocol
                );
            }
            if s.port == 0 || (15000..=15090).contains(&s.port) {
                bail!(
                    "services[{i}].port: {} is 0 or in the proxy's reserved range 15000-15090",
                    s.port
                );
            }
        }
        if self.workloads.is_empty() {
            bail!("workloads: at least one workload is needed");
        }
        for (i, w) in self.workloads.iter().enumerate() {
            if !names.contains(w.service.as_str()) {
                bail!(
                    "workloads[{i}].service: {:?} is not one of the services",
                    w.service
                );
            }
            if w.instances == 0 {
                bail!("workloads[{i}].instances must be at least 1");
            }
            for (j, c) in w.calls.iter().enumerate() {
                crate::http::parse_http_url(c)
                    .map_err(|e| anyhow!("workloads[{i}].calls[{j}]: {e:#}"))?;
            }
        }
        if let Some(config) = &self.config {
            check_istio_yaml(config).map_err(|e| anyhow!("config: {e:#}"))?;
        }
        if self.steps.is_empty() {
            bail!("steps: at least one step is needed");
        }
        for (i, step) in self.steps.iter().enumerate() {
            validate_step(step).map_err(|e| anyhow!("steps[{i}]: {e:#}"))?;
        }
        Ok(())
    }

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
}

fn validate_step(step: &Step) -> anyhow::Result<()> {
    match step.kind()? {
        StepKind::Request(r, e) => {
            validate_request(r, true).map_err(|err| anyhow!("request: {err:#}"))?;
            validate_expect(e).map_err(|err| anyhow!("expect: {err:#}"))?;
        }
        StepKind::Apply(f) => validate_file(f).map_err(|err| anyhow!("apply: {err:#}"))?,
        StepKind::Remove(r) => {
            check_file_name(&r.file).map_err(|err| anyhow!("remove.file: {err:#}"))?
        }
        StepKind::LiveChange(l) => {
            validate_file(&l.apply).map_err(|err| anyhow!("live_change.apply: {err:#}"))?;
            validate_request(&l.request, false)
                .map_err(|err| anyhow!("live_change.request: {err:#}"))?;
            validate_expect(&l.expect).map_err(|err| anyhow!("live_change.expect: {err:#}"))?;
            if l.expect.only_version.is_none() {
                bail!("live_change.expect needs only_version: the routing the change must lead to");
            }
            if l.expect.split.is_some() {
                bail!("live_change.expect: split is not supported, use only_version");
            }
            if l.expect_within_ms == 0 || l.expect_within_ms > 60_000 {
                bail!("live_change.expect_within_ms must be from 1 to 60000");
            }
        }
    }
    Ok(())
}

fn validate_request(r: &RequestDef, counted: bool) -> anyhow::Result<()> {
    if r.authority.is_empty() || r.authority.contains('/') {
        bail!("authority {:?} must be host or host:port", r.authority);
    }
    if !r.path.starts_with('/') {
        bail!("path {:?} must start with /", r.path);
    }
    http::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| anyhow!("method {:?} is not an HTTP method", r.method))?;
    if counted && (r.count == 0 || r.count > MAX_COUNT) {
        bail!("count must be from 1 to {MAX_COUNT}, not {}", r.count);
    }
    if r.concurrency == 0 || r.concurrency > MAX_CONCURRENCY {
        bail!(
            "concurrency must be from 1 to {MAX_CONCURRENCY}, not {}",
            r.concurrency
        );
    }
    for (k, v) in &r.headers {
        http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| anyhow!("headers: {k:?} is not a header name"))?;
        http::HeaderValue::from_str(v)
            .map_err(|_| anyhow!("headers.{k}: {v:?} is not a header value"))?;
    }
    Ok(())
}

fn validate_expect(e: &Expect) -> anyhow::Result<()> {
    if *e == Expect::default() {
        bail!(
            "expect nothing? give at least one of status, only_version, split, protocol, failures"
        );
    }
    if let Some(s) = e.status
        && !(100..=599).contains(&s)
    {
        bail!("status {s} is not an HTTP status");
    }
    if e.split.is_some() && e.only_version.is_some() {
        bail!("give split or only_version, not both");
    }
    if let Some(split) = &e.split {
        if split.is_empty() {
            bail!("split is empty");
        }
        if let Some((v, p)) = split.iter().find(|(_, p)| !(0.0..=100.0).contains(*p)) {
            bail!("split.{v}: {p} is not a percentage from 0 to 100");
        }
        let sum: f64 = split.values().sum();
        if (sum - 100.0).abs() > 0.01 {
            bail!("split adds up to {sum}, not 100");
        }
    }
    if let Some(t) = e.tolerance {
        if e.split.is_none() {
            bail!("tolerance only applies to split");
        }
        if !(0.0..=50.0).contains(&t) {
            bail!("tolerance {t} must be from 0 to 50 points");
        }
    }
    if let Some(p) = &e.protocol
        && !matches!(p.as_str(), "HTTP/1.0" | "HTTP/1.1" | "HTTP/2.0")
    {
        bail!("protocol {p:?} must be HTTP/1.0, HTTP/1.1 or HTTP/2.0");
    }
    Ok(())
}

fn validate_file(f: &FileDef) -> anyhow::Result<()> {
    check_file_name(&f.file).map_err(|e| anyhow!("file: {e:#}"))?;
    check_istio_yaml(&f.content).map_err(|e| anyhow!("content: {e:#}"))
}

fn check_file_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || !(name.ends_with(".yaml") || name.ends_with(".yml"))
        || name == "mesh.yaml"
        || name == CONFIG_FILE
    {
        bail!(
            "{name:?} must be a plain file name ending in .yaml (not mesh.yaml or {CONFIG_FILE})"
        );
    }
    Ok(())
}

/// A light structural check of Istio YAML: every document is a mapping with `apiVersion`
/// (an Istio group), `kind`, `metadata.name` and `spec`. Full validation is the control plane's.
pub fn check_istio_yaml(text: &str) -> anyhow::Result<()> {
    let mut count = 0;
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            serde_yaml::Value::deserialize(doc).map_err(|e| anyhow!("document {}: {e}", i + 1))?;
        if value.is_null() {
            continue;
        }
        count += 1;
        let api = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let group = api.split('/').next().unwrap_or_default();
        if !matches!(
            group,
            "networking.istio.io" | "security.istio.io" | "telemetry.istio.io"
        ) {
            bail!(
                "document {}: apiVersion {api:?} is not an Istio API (networking.istio.io/v1, ...)",
                i + 1
            );
        }
        if value.get("kind").and_then(|v| v.as_str()).is_none() {
            bail!("document {}: no kind", i + 1);
        }
        if value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|v| v.as_str())
            .is_none()
        {
            bail!("document {}: no metadata.name", i + 1);
        }
        if value.get("spec").is_none() {
            bail!("document {}: no spec", i + 1);
        }
    }
    if count == 0 {
        bail!("no YAML document");
    }
    Ok(())
}

/// Checks a summary against an expectation; the error lists every violation.
pub fn check_expect(expect: &Expect, summary: &Summary) -> Result<(), String> {
    let mut problems = Vec::new();
    let total = summary.total;
    if total == 0 {
        return Err("no request was sent".to_string());
    }
    if let Some(status) = expect.status {
        let n = summary.by_status.get(&status).copied().unwrap_or(0);
        if n != total {
            problems.push(format!(
                "expected every response to be {status}, {n} of {total} were"
            ));
        }
    }
    if let Some(v) = &expect.only_version {
        let n = summary.by_version.get(v).copied().unwrap_or(0);
        if n != total {
            problems.push(format!(
                "expected every response from {v}, {n} of {total} were"
            ));
        }
    }
    if let Some(split) = &expect.split {
        let tolerance = expect.tolerance.unwrap_or(DEFAULT_TOLERANCE);
        if let Err(e) = check_split(split, tolerance, summary) {
            problems.push(e);
        }
    }
    if let Some(p) = &expect.protocol {
        let n = summary.by_protocol.get(p).copied().unwrap_or(0);
        if n != total {
            problems.push(format!(
                "expected the echo app to see {p} on every request, it did on {n} of {total}"
            ));
        }
    }
    if let Some(max) = expect.failures {
        let n = summary.failures();
        if n > max {
            problems.push(format!(
                "expected at most {max} failed requests, {n} failed"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} [{summary}]", problems.join("; ")))
    }
}

/// Checks that every version's share (versions not in `split` are expected at 0 %, responses
/// without a version count as version `-`) is within `tolerance` points of `split`.
pub fn check_split(
    split: &BTreeMap<String, f64>,
    tolerance: f64,
    summary: &Summary,
) -> Result<(), String> {
    let mut versions: Vec<&String> = split.keys().collect();
    versions.extend(
        summary
            .by_version
            .keys()
            .filter(|v| !split.contains_key(*v)),
    );
    let mut off = Vec::new();
    let mut seen = Vec::new();
    for v in versions {
        let want = split.get(v).copied().unwrap_or(0.0);
        let got = summary.percent(v);
        seen.push(format!("{v} {got:.1}%"));
        if (got - want).abs() > tolerance + 1e-9 {
            off.push(format!("{v} {got:.1}% (want {want}% ± {tolerance})"));
        }
    }
    if off.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "split off: {} (observed {})",
            off.join(", "),
            seen.join(", ")
        ))
    }
}

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
    /// How long a config change may take to reach every proxy.
    pub sync_timeout: Duration,
    /// How long the mesh may take to start.
    pub startup_timeout: Duration,
}

impl RunOptions {
    /// Defaults: echo apps as processes, 20 s sync timeout, 60 s startup.
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
            startup_timeout: Duration::from_secs(60),
        }
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
    let started = Instant::now();
    let mut steps = Vec::new();
    let mut mesh_options = MeshOptions::new(options.trellis_bin.clone(), options.run_dir.clone());
    mesh_options.envoy_bin = options.envoy_bin.clone();
    mesh_options.echo = options.echo;
    mesh_options.startup_timeout = options.startup_timeout;
    let spec = scenario.mesh_spec(options.base, options.dataplane);
    let mut mesh = match Mesh::start(spec, mesh_options).await {
        Ok(m) => m,
        Err(e) => {
            return RunReport {
                passed: false,
                detail: format!("{e:#}"),
                nacks: 0,
                steps,
                elapsed: started.elapsed(),
            };
        }
    };
    progress(&format!(
        "mesh up in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    let result = run_steps(scenario, options, &mut mesh, &mut steps, &mut progress).await;
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

async fn run_steps(
    scenario: &Scenario,
    options: &RunOptions,
    mesh: &mut Mesh,
    lines: &mut Vec<String>,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<()> {
    if let Some(config) = &scenario.config {
        mesh.apply(CONFIG_FILE, config).await?;
        mesh.wait_synced(Instant::now() + options.sync_timeout)
            .await
            .context("applying the scenario's config")?;
        let line = "config applied and synced".to_string();
        progress(&line);
        lines.push(line);
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        let line = run_step(step, options, mesh)
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
        Err(e) => e.to_string(),
    }
}

fn plan_for(r: &RequestDef, mesh: &Mesh) -> anyhow::Result<RequestPlan> {
    let mut plan = RequestPlan::new(
        mesh.client_outbound(),
        r.authority.clone(),
        r.path.clone(),
        r.count,
    );
    plan.method = http::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| anyhow!("bad method {:?}", r.method))?;
    plan.concurrency = r.concurrency;
    plan.protocol = r.protocol;
    plan.headers = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(plan)
}

async fn run_step(step: &Step, options: &RunOptions, mesh: &mut Mesh) -> anyhow::Result<String> {
    match step.kind()? {
        StepKind::Request(r, expect) => {
            let summary = client::run(&plan_for(r, mesh)?).await;
            check_expect(expect, &summary).map_err(|e| anyhow!(e))?;
            Ok(summary.to_string())
        }
        StepKind::Apply(f) => {
            mesh.apply(&f.file, &f.content).await?;
            let s = mesh
                .wait_synced(Instant::now() + options.sync_timeout)
                .await?;
            Ok(format!("applied {}, generation {}", f.file, s.generation))
        }
        StepKind::Remove(r) => {
            mesh.remove(&r.file).await?;
            let s = mesh
                .wait_synced(Instant::now() + options.sync_timeout)
                .await?;
            Ok(format!("removed {}, generation {}", r.file, s.generation))
        }
        StepKind::LiveChange(l) => live_change(l, options, mesh).await,
    }
}

/// Polls `done` every few milliseconds until it holds or `deadline` passes.
async fn wait_for(
    deadline: Instant,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    while !done() {
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn live_change(
    l: &LiveChange,
    options: &RunOptions,
    mesh: &mut Mesh,
) -> anyhow::Result<String> {
    const WARMUP: usize = 20;
    const AFTER_SYNC: usize = 50;
    let plan = plan_for(&l.request, mesh)?;
    let traffic = Traffic::start(&plan);
    wait_for(
        Instant::now() + Duration::from_secs(10),
        "background traffic to flow",
        || traffic.completed() >= WARMUP,
    )
    .await?;
    let change_at = traffic.epoch().elapsed();
    mesh.apply(&l.apply.file, &l.apply.content).await?;
    let synced = mesh
        .wait_synced(Instant::now() + options.sync_timeout)
        .await;
    if let Err(e) = synced {
        let outcomes = traffic.stop().await;
        return Err(e.context(format!(
            "during traffic: {}",
            Summary::from_outcomes(&outcomes)
        )));
    }
    let synced_count = traffic.completed();
    let bound = Duration::from_millis(l.expect_within_ms);
    let epoch = traffic.epoch();
    wait_for(
        Instant::now() + bound + Duration::from_secs(10),
        "traffic after the change",
        || {
            traffic.completed() >= synced_count + AFTER_SYNC
                && epoch.elapsed() >= change_at + bound + Duration::from_millis(200)
        },
    )
    .await?;
    let outcomes = traffic.stop().await;
    judge_live_change(l, &outcomes, change_at)
}

/// Judges a live change from the outcomes of the background traffic (sorted by `sent_at`) and
/// the moment of the change (same epoch).
pub fn judge_live_change(
    l: &LiveChange,
    outcomes: &[Outcome],
    change_at: Duration,
) -> anyhow::Result<String> {
    let summary = Summary::from_outcomes(outcomes);
    let max_failures = l.expect.failures.unwrap_or(0);
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.is_success() || l.expect.status.is_some_and(|s| o.status != Some(s)))
        .collect();
    if failed.len() > max_failures {
        let first = failed
            .iter()
            .take(3)
            .map(|o| {
                format!(
                    "at +{}ms: {}",
                    o.sent_at.as_millis() as i128 - change_at.as_millis() as i128,
                    o.error
                        .clone()
                        .or_else(|| o.status.map(|s| format!(
                            "status {s}{}",
                            o.reason
                                .as_ref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        )))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        bail!(
            "{} requests failed during the change (at most {max_failures} allowed): {first} [{summary}]",
            failed.len()
        );
    }
    let want = l.expect.only_version.as_deref().unwrap_or_default();
    let last_old = outcomes
        .iter()
        .filter(|o| o.is_success() && o.version.as_deref() != Some(want))
        .map(|o| o.sent_at)
        .max();
    let converged = last_old
        .map(|t| t.saturating_sub(change_at))
        .unwrap_or_default();
    let bound = Duration::from_millis(l.expect_within_ms);
    if converged > bound {
        bail!(
            "a request sent {}ms after the change still did not reach {want} (bound {}ms) [{summary}]",
            converged.as_millis(),
            bound.as_millis()
        );
    }
    if !outcomes
        .iter()
        .any(|o| o.sent_at > change_at && o.version.as_deref() == Some(want))
    {
        bail!("no request after the change reached {want} [{summary}]");
    }
    Ok(format!(
        "new routing within {}ms (bound {}ms), {} failed; {summary}",
        converged.as_millis(),
        bound.as_millis(),
        failed.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: traffic/example
description: an example
services: [{name: echo, port: 9080, protocol: HTTP}]
workloads: [{service: echo, version: v1}, {service: echo, version: v2, instances: 2}]
config: |
  apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata:
    name: echo
  spec:
    hosts: [echo]
    http:
    - route:
      - destination: {host: echo}
steps:
  - request: {authority: "echo:9080", count: 10, headers: {end-user: jason}}
    expect: {status: 200, split: {v1: 50, v2: 50}, tolerance: 10}
  - apply:
      file: vs.yaml
      content: |
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: echo}
        spec: {host: echo}
  - remove: {file: vs.yaml}
  - live_change:
      apply: {file: vs.yaml, content: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo}\nspec: {hosts: [echo]}\n"}
      request: {authority: "echo:9080", concurrency: 4}
      expect_within_ms: 2000
      expect: {only_version: v2}
"#;

    fn err(text: &str) -> String {
        match Scenario::parse(text, "bad.yaml") {
            Ok(_) => String::from("(parsed)"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn parses_a_full_scenario() -> anyhow::Result<()> {
        let s = Scenario::parse(GOOD, "good.yaml")?;
        assert_eq!(s.name, "traffic/example");
        assert_eq!(s.services[0].namespace, "default");
        assert_eq!(s.steps.len(), 4);
        let spec = s.mesh_spec(Ipv4Addr::new(127, 100, 1, 0), Dataplane::Envoy);
        assert_eq!(spec.workloads.len(), 3);
        assert_eq!(spec.workloads[2].instance, 1);
        match s.steps[0].kind()? {
            StepKind::Request(r, e) => {
                assert_eq!(r.path, "/");
                assert_eq!(r.protocol, Protocol::Http1);
                assert_eq!(r.headers.get("end-user").map(String::as_str), Some("jason"));
                assert_eq!(e.tolerance, Some(10.0));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(s.steps[3].kind()?, StepKind::LiveChange(_)));
        Ok(())
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let e = err(&GOOD.replace("tolerance: 10", "tolerence: 10"));
        assert!(
            e.contains("bad.yaml") && e.contains("steps[0].expect") && e.contains("tolerence"),
            "{e}"
        );
        let e = err(&GOOD.replace("v2: 50}", "v2: 40}"));
        assert!(e.contains("adds up to 90"), "{e}");
        let e = err(&GOOD.replace("service: echo, version: v1", "service: ech0, version: v1"));
        assert!(
            e.contains("workloads[0].service") && e.contains("ech0"),
            "{e}"
        );
        let e = err(&GOOD.replace("protocol: HTTP}", "protocol: TCP}"));
        assert!(e.contains("TCP"), "{e}");
        let e = err(&GOOD.replace(
            "  - remove: {file: vs.yaml}\n",
            "  - remove: {file: vs.yaml}\n    apply: {file: a.yaml, content: x}\n",
        ));
        assert!(e.contains("steps[2]") && e.contains("exactly one"), "{e}");
        let e = err(&GOOD.replace("count: 10,", "count: ten,"));
        assert!(e.contains("steps[0].request.count"), "{e}");
        let e = err(&GOOD.replace("protocol: HTTP}", "protocol: HTTP}, {name: echo, port: 1}"));
        assert!(e.contains("twice"), "{e}");
        let e = err(&GOOD.replace("name: traffic/example", "name: example"));
        assert!(e.contains("AREA/NAME"), "{e}");
        let e = err(&GOOD.replace(
            "  apiVersion: networking.istio.io/v1\n  kind: VirtualService",
            "  apiVersion: v1\n  kind: VirtualService",
        ));
        assert!(
            e.contains("config") && e.contains("not an Istio API"),
            "{e}"
        );
        let e = err(&GOOD.replace("expect: {only_version: v2}", "expect: {status: 200}"));
        assert!(e.contains("only_version"), "{e}");
        let e = err(&GOOD.replace(
            "file: vs.yaml\n      content",
            "file: ../vs.yaml\n      content",
        ));
        assert!(
            e.contains("steps[1]") && e.contains("plain file name"),
            "{e}"
        );
        let e = err(&GOOD.replace("protocol: HTTP}", "protocol: HTTP, extra: 1}"));
        assert!(e.contains("services[0]") && e.contains("extra"), "{e}");
        let e = err("name: [");
        assert!(e.contains("bad.yaml"), "{e}");
    }

    fn summary(versions: &[(&str, usize)]) -> Summary {
        let mut s = Summary::default();
        for (v, n) in versions {
            s.total += n;
            s.by_version.insert(v.to_string(), *n);
            *s.by_status.entry(200).or_default() += n;
        }
        s
    }

    #[test]
    fn split_tolerance_math() {
        let split: BTreeMap<String, f64> =
            [("v1".to_string(), 80.0), ("v2".to_string(), 20.0)].into();
        assert!(check_split(&split, 3.0, &summary(&[("v1", 1600), ("v2", 400)])).is_ok());
        // 82.9 / 17.1: within 3 points.
        assert!(check_split(&split, 3.0, &summary(&[("v1", 1658), ("v2", 342)])).is_ok());
        // Exactly 3 points off is within.
        assert!(check_split(&split, 3.0, &summary(&[("v1", 1660), ("v2", 340)])).is_ok());
        // 83.05 / 16.95: out.
        let e = check_split(&split, 3.0, &summary(&[("v1", 1661), ("v2", 339)]))
            .err()
            .unwrap_or_default();
        assert!(e.contains("v1 83.0%") && e.contains("want 80% ± 3"), "{e}");
        // A version not in the split counts against it.
        let e = check_split(
            &split,
            3.0,
            &summary(&[("v1", 1500), ("v2", 400), ("v3", 100)]),
        )
        .err()
        .unwrap_or_default();
        assert!(e.contains("v3 5.0%"), "{e}");
        // Everything to one version.
        assert!(check_split(&split, 3.0, &summary(&[("v1", 2000)])).is_err());
    }

    #[test]
    fn expectations() {
        let s = summary(&[("v2", 10)]);
        let mut e = Expect {
            status: Some(200),
            only_version: Some("v2".into()),
            ..Default::default()
        };
        assert!(check_expect(&e, &s).is_ok());
        e.only_version = Some("v1".into());
        let msg = check_expect(&e, &s).err().unwrap_or_default();
        assert!(msg.contains("every response from v1, 0 of 10"), "{msg}");
        let e = Expect {
            protocol: Some("HTTP/2.0".into()),
            ..Default::default()
        };
        let mut s2 = s.clone();
        s2.by_protocol.insert("HTTP/2.0".into(), 10);
        assert!(check_expect(&e, &s2).is_ok());
        s2.by_protocol.insert("HTTP/2.0".into(), 9);
        assert!(check_expect(&e, &s2).is_err());
        let mut s3 = s.clone();
        s3.total += 1;
        s3.by_status.insert(503, 1);
        let e = Expect {
            failures: Some(0),
            ..Default::default()
        };
        assert!(check_expect(&e, &s3).is_err());
    }

    fn o(ms: u64, version: &str, status: u16) -> Outcome {
        Outcome {
            status: Some(status),
            version: Some(version.into()),
            protocol: None,
            reason: None,
            error: None,
            sent_at: Duration::from_millis(ms),
            done_at: Duration::from_millis(ms + 1),
        }
    }

    #[test]
    fn live_change_judgement() -> anyhow::Result<()> {
        let l = LiveChange {
            apply: FileDef {
                file: "vs.yaml".into(),
                content: String::new(),
            },
            request: RequestDef {
                authority: "echo".into(),
                path: "/".into(),
                method: "GET".into(),
                count: 1,
                concurrency: 1,
                protocol: Protocol::Http1,
                headers: BTreeMap::new(),
            },
            expect_within_ms: 2000,
            expect: Expect {
                only_version: Some("v2".into()),
                ..Default::default()
            },
        };
        let change = Duration::from_millis(1000);
        let good = vec![
            o(500, "v1", 200),
            o(1500, "v1", 200),
            o(1600, "v2", 200),
            o(3500, "v2", 200),
        ];
        let msg = judge_live_change(&l, &good, change)?;
        assert!(msg.contains("within 500ms"), "{msg}");
        let slow = vec![o(500, "v1", 200), o(3100, "v1", 200), o(3500, "v2", 200)];
        assert!(
            format!(
                "{:#}",
                judge_live_change(&l, &slow, change)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )
            .contains("2100ms")
        );
        let failing = vec![o(500, "v1", 200), o(1200, "-", 503), o(3500, "v2", 200)];
        let e = judge_live_change(&l, &failing, change)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("1 requests failed") && e.contains("+200ms"),
            "{e}"
        );
        let never = vec![o(500, "v1", 200)];
        assert!(judge_live_change(&l, &never, change).is_err());
        Ok(())
    }
}
