//! Conformance scenarios: the file format (data, not code) and the runner.
//!
//! ```yaml
//! name: traffic/weighted-split          # AREA/NAME, matches the file's path under scenarios/
//! description: 80/20 split between v1 and v2
//! services: [{name: echo, port: 9080, protocol: HTTP}]     # namespace defaults to default
//! workloads: [{service: echo, version: v1}, {service: echo, version: v2, instances: 1, calls: [],
//!              locality: us-east/zone-a, labels: {tier: gold}}]   # locality/labels: WorkloadEntry
//! client: {namespace: default, labels: {role: tester}, locality: us-east/zone-a}   # optional
//! externals: [{name: ext, port: 18091}]  # echo apps without sidecar on 127.0.0.1 (and [::1])
//! config: |                             # Istio YAML applied (and synced) before the first step
//!   apiVersion: networking.istio.io/v1
//!   kind: VirtualService
//!   ...
//! steps:
//!   - request: {authority: "echo:9080", path: /, count: 2000, concurrency: 8, protocol: http1, headers: {}}
//!     expect: {status: 200, split: {v1: 80, v2: 20}, tolerance: 3}
//!   - apply: {file: vs.yaml, content: "..."}      # then waits until every proxy ACKed
//!   - apply: {file: vs.yaml, content: "...", expect_warning: "is not defined by any DestinationRule"}
//!   - remove: {file: vs.yaml}                     # likewise
//!   - live_change:                                # traffic runs during the change
//!       apply: {file: vs.yaml, content: "..."}
//!       request: {authority: "echo:9080", concurrency: 4}
//!       expect_within_ms: 2000
//!       expect: {only_version: v2}
//!   - apply_invalid:                              # rejected: the last good config stays
//!       file: vs.yaml
//!       content: "..."
//!       expect_error: "weight 150 is out of range"
//!   - sleep_ms: 5000                              # e.g. until an ejection expires
//!   - restart_control_plane:                      # traffic runs while it is down
//!       down_ms: 1500
//!       request: {authority: "echo:9080", concurrency: 4}
//!       expect: {status: 200, only_version: v2}
//! ```
//!
//! An `apply` writes the file, waits until the control plane serves a newer generation and every
//! proxy is up to date with it, then checks that `/debug/config` shows no error for that file
//! (so an `apply` after an `apply_invalid` of the same file proves the file is fixed). With
//! `expect_warning`, a warning containing that text must also be listed in `/debug/config`
//! (`diagnostics.warnings`). `live_change.apply` takes `expect_warning` too.
//!
//! An `apply_invalid` writes content the control plane must reject, polls `/debug/config` until
//! an error containing `expect_error` is listed (preferably one that was not there before the
//! write), and checks that the generation served did not advance. The file stays in place: the
//! control plane keeps that file's last good content (if any) in force until a valid `apply` of
//! it (whose content must differ from the last good one, or the generation cannot advance).
//!
//! A `restart_control_plane` starts background traffic (as `live_change`; `count` is ignored),
//! kills the control plane (`SIGTERM`, `SIGKILL` after 5 s), leaves it down for `down_ms`, starts
//! a fresh one with the same flags and config directory, waits until every proxy has reconnected
//! and is up to date with it (the new control plane counts generations from 1 again), lets some
//! more traffic through, and stops the traffic. No request of the whole window may fail (at most
//! `expect.failures`), some must have been sent while the control plane was down, and the other
//! `expect` keys apply to all of them.
//!
//! Expectations (`expect`): `status` (every response has it), `only_version` (every response
//! comes from that version), `split` (percent per version, summing to 100) with `tolerance`
//! (points, default 3), `protocol` (the protocol the echo app saw, e.g. `HTTP/2.0`), `failures`
//! (at most that many non-2xx or failed requests).
//!
//! Per-response expectations (for proxies' own answers and header manipulation): `status_counts`
//! (`{503: {min: 1, max: 20}}`), `flags` (response flags such as `UO`: the first word of Trellis'
//! `x-trellis-reason`, or `UO` for Envoy's `x-envoy-overloaded`), `headers` / `headers_absent`
//! (response headers), `request_headers` / `request_headers_absent` and `echo_path` (what the echo
//! app saw), `location`, `body_contains`, `min_duration_ms` (a lower bound only, for delays and
//! timeouts: never an upper bound on speed), `instances` (how many distinct instances answered,
//! e.g. `{max: 1}` for consistent hashing). `served` and `shadow` count, per `VERSION`,
//! `SERVICE/VERSION` or instance, the requests the echo apps received during the step (read
//! from each app's `/_echo/stats`, so retries and mirrored copies the client never sees count).
//! The echo app's `fail_instance=ID` / `fail_version=V` query parameters limit `status` and
//! `delay_ms` to one instance or version, so one URL can make a single endpoint misbehave.
//!
//! A `live_change` passes when no request fails (or at most `expect.failures`) and no request
//! sent later than `expect_within_ms` after the change still sees the old routing.
//!
//! Every wait has a deadline: `RunOptions::sync_timeout` for config changes and validation
//! messages, `RunOptions::reconnect_timeout` for proxies to come back after a restart.

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
    /// The client sidecar's namespace, labels and locality.
    #[serde(default)]
    pub client: Option<ClientDef>,
    /// Echo apps outside the mesh (no sidecar), on `127.0.0.1:PORT`.
    #[serde(default)]
    pub externals: Vec<ExternalDef>,
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
    /// Locality (`region/zone/subzone`) of every instance's WorkloadEntry.
    #[serde(default)]
    pub locality: Option<String>,
    /// Extra labels (besides `app` and `version`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The client sidecar (where requests are sent from).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientDef {
    /// Its namespace (`default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Extra labels (besides `app: client`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its locality (`region/zone/subzone`).
    #[serde(default)]
    pub locality: Option<String>,
}

/// An echo app outside the mesh: no sidecar, no ServiceEntry (the scenario's config declares
/// one if it wants), listening on `127.0.0.1:port` (so `localhost` resolves to it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalDef {
    /// Its name (reported as `service`).
    pub name: String,
    /// Its version (`external`).
    #[serde(default = "default_external_version")]
    pub version: String,
    /// The port on 127.0.0.1 (pick one unlikely to be in use, e.g. 18000-19999).
    pub port: u16,
}

/// One step as written in the file: exactly one of `request` (with `expect`), `apply`,
/// `remove`, `live_change`, `apply_invalid`, `restart_control_plane`.
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
    /// Write a file the control plane must reject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_invalid: Option<InvalidFileDef>,
    /// Restart the control plane under continuous traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_control_plane: Option<RestartControlPlane>,
    /// Wait this many milliseconds (e.g. for an ejection to expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
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
    /// `apply_invalid`.
    ApplyInvalid(&'a InvalidFileDef),
    /// `restart_control_plane`.
    RestartControlPlane(&'a RestartControlPlane),
    /// `sleep_ms`.
    Sleep(u64),
}

impl Step {
    /// Which kind of step this is (fails unless exactly one kind is given).
    pub fn kind(&self) -> anyhow::Result<StepKind<'_>> {
        let given = [
            self.request.is_some(),
            self.apply.is_some(),
            self.remove.is_some(),
            self.live_change.is_some(),
            self.apply_invalid.is_some(),
            self.restart_control_plane.is_some(),
            self.sleep_ms.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            bail!(
                "a step needs exactly one of request, apply, remove, live_change, apply_invalid, restart_control_plane, sleep_ms ({given} given)"
            );
        }
        if self.expect.is_some() && self.request.is_none() {
            bail!(
                "`expect` belongs to a `request` step (live_change and restart_control_plane have their own expect)"
            );
        }
        if let Some(r) = &self.request {
            return Ok(StepKind::Request(
                r,
                self.expect
                    .as_ref()
                    .ok_or_else(|| anyhow!("a request step needs an `expect`"))?,
            ));
        }
        Ok(if let Some(a) = &self.apply {
            StepKind::Apply(a)
        } else if let Some(r) = &self.remove {
            StepKind::Remove(r)
        } else if let Some(l) = &self.live_change {
            StepKind::LiveChange(l)
        } else if let Some(a) = &self.apply_invalid {
            StepKind::ApplyInvalid(a)
        } else if let Some(r) = &self.restart_control_plane {
            StepKind::RestartControlPlane(r)
        } else if let Some(ms) = self.sleep_ms {
            StepKind::Sleep(ms)
        } else {
            bail!("empty step")
        })
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
    /// How many responses had each status (`{503: {min: 1}}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status_counts: BTreeMap<u16, Bound>,
    /// How many responses carried each response flag (`UO`, `FI`, `NR`, ...): the first word
    /// of Trellis' `x-trellis-reason`, or `UO` for Envoy's `x-envoy-overloaded`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flags: BTreeMap<String, Bound>,
    /// Every response has these response headers with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// No response has these response headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_absent: Vec<String>,
    /// The echo app saw these request headers with these values on every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: BTreeMap<String, String>,
    /// The echo app saw none of these request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_absent: Vec<String>,
    /// The echo app saw this path on every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_path: Option<String>,
    /// Every response has this `location` header (redirects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Every response body contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Every request took at least this long (a lower bound only: never a speed limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration_ms: Option<u64>,
    /// How many distinct echo instances answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Bound>,
    /// Requests the echo apps received during the step (read from each app directly, so it
    /// includes mirrored copies and retries the client never sees), by `VERSION`,
    /// `SERVICE/VERSION` or instance name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub served: BTreeMap<String, Bound>,
    /// Of `served`, the mirrored copies (Host ending in `-shadow`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shadow: BTreeMap<String, Bound>,
}

/// An inclusive range for a count; an absent end is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    /// At least this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<usize>,
    /// At most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
}

impl Bound {
    /// Whether `n` is within.
    pub fn holds(&self, n: usize) -> bool {
        self.min.is_none_or(|m| n >= m) && self.max.is_none_or(|m| n <= m)
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min, self.max) {
            (Some(a), Some(b)) => write!(f, "{a}..={b}"),
            (Some(a), None) => write!(f, ">= {a}"),
            (None, Some(b)) => write!(f, "<= {b}"),
            (None, None) => f.write_str("any"),
        }
    }
}

/// A config file to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    /// File name in the config directory (`*.yaml`).
    pub file: String,
    /// Istio YAML.
    pub content: String,
    /// Once applied, `/debug/config` lists a warning containing this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_warning: Option<String>,
}

/// A config file the control plane must reject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidFileDef {
    /// File name in the config directory (`*.yaml`).
    pub file: String,
    /// The invalid content (as a user would write it).
    pub content: String,
    /// `/debug/config` must list an error containing this text.
    pub expect_error: String,
}

/// A control plane restart under continuous traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartControlPlane {
    /// How long the control plane stays down, in milliseconds.
    pub down_ms: u64,
    /// The background traffic (`count` is ignored).
    pub request: RequestDef,
    /// What every response of the whole window must look like (no failures unless `failures`).
    pub expect: Expect,
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
fn default_external_version() -> String {
    "external".to_string()
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
        for (i, w) in self.workloads.iter().enumerate() {
            if let Some(l) = &w.locality
                && (l.is_empty() || l.split('/').count() > 3)
            {
                bail!("workloads[{i}].locality {l:?} must be region[/zone[/subzone]]");
            }
        }
        for (i, x) in self.externals.iter().enumerate() {
            if x.port < 1024 {
                bail!("externals[{i}].port {} must be 1024 or above", x.port);
            }
            if names.contains(x.name.as_str()) {
                bail!("externals[{i}].name {:?} is also a service", x.name);
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
        StepKind::ApplyInvalid(a) => {
            check_file_name(&a.file).map_err(|err| anyhow!("apply_invalid.file: {err:#}"))?;
            if a.content.trim().is_empty() {
                bail!("apply_invalid.content is empty");
            }
            if a.expect_error.trim().is_empty() {
                bail!("apply_invalid.expect_error is empty: give text the error must contain");
            }
        }
        StepKind::RestartControlPlane(r) => {
            if r.down_ms == 0 || r.down_ms > 60_000 {
                bail!("restart_control_plane.down_ms must be from 1 to 60000");
            }
            validate_request(&r.request, false)
                .map_err(|err| anyhow!("restart_control_plane.request: {err:#}"))?;
            validate_expect(&r.expect)
                .map_err(|err| anyhow!("restart_control_plane.expect: {err:#}"))?;
        }
        StepKind::Sleep(ms) => {
            if ms == 0 || ms > 120_000 {
                bail!("sleep_ms must be from 1 to 120000");
            }
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
            "expect nothing? give at least one of status, only_version, split, protocol, failures, status_counts, flags, headers, request_headers, location, body_contains, min_duration_ms, instances, served, ..."
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
    if f.expect_warning
        .as_ref()
        .is_some_and(|w| w.trim().is_empty())
    {
        bail!("expect_warning is empty: give text the warning must contain");
    }
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

/// The expectations that look at individual responses (headers, bodies, durations, flags,
/// instances); each problem is one string.
pub fn check_outcomes(expect: &Expect, outcomes: &[Outcome]) -> Vec<String> {
    let mut problems = Vec::new();
    let total = outcomes.len();
    let answered: Vec<&Outcome> = outcomes.iter().filter(|o| o.status.is_some()).collect();
    let count_where = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    for (status, bound) in &expect.status_counts {
        let n = count_where(&|o| o.status == Some(*status));
        if !bound.holds(n) {
            problems.push(format!(
                "expected {bound} responses with status {status}, got {n}"
            ));
        }
    }
    for (flag, bound) in &expect.flags {
        let n = count_where(&|o| o.flag.as_deref() == Some(flag.as_str()));
        if !bound.holds(n) {
            problems.push(format!(
                "expected {bound} responses with flag {flag}, got {n}"
            ));
        }
    }
    let mut every =
        |what: String, ok: &dyn Fn(&Outcome) -> bool, sample: &dyn Fn(&Outcome) -> String| {
            let bad: Vec<&&Outcome> = answered.iter().filter(|o| !ok(o)).collect();
            if answered.len() < total {
                problems.push(format!(
                    "{what}: {} of {total} requests got no response",
                    total - answered.len()
                ));
            } else if let Some(first) = bad.first() {
                problems.push(format!(
                    "{what}: {} of {total} responses do not (e.g. {})",
                    bad.len(),
                    sample(first)
                ));
            }
        };
    for (name, value) in &expect.headers {
        every(
            format!("expected response header {name}: {value}"),
            &|o| o.headers.get(name) == Some(value),
            &|o| format!("{name}: {:?}", o.headers.get(name)),
        );
    }
    for name in &expect.headers_absent {
        every(
            format!("expected no response header {name}"),
            &|o| !o.headers.contains_key(name),
            &|o| format!("{name}: {:?}", o.headers.get(name)),
        );
    }
    for (name, value) in &expect.request_headers {
        every(
            format!("expected the app to see request header {name}: {value}"),
            &|o| o.echo_headers.get(name) == Some(value),
            &|o| format!("{name}: {:?}", o.echo_headers.get(name)),
        );
    }
    for name in &expect.request_headers_absent {
        every(
            format!("expected the app not to see request header {name}"),
            &|o| o.version.is_some() && !o.echo_headers.contains_key(name),
            &|o| format!("{name}: {:?}", o.echo_headers.get(name)),
        );
    }
    if let Some(path) = &expect.echo_path {
        every(
            format!("expected the app to see path {path}"),
            &|o| o.echo_path.as_deref() == Some(path.as_str()),
            &|o| format!("path {:?}", o.echo_path),
        );
    }
    if let Some(location) = &expect.location {
        every(
            format!("expected location {location}"),
            &|o| o.headers.get("location") == Some(location),
            &|o| {
                format!(
                    "status {:?}, location {:?}",
                    o.status,
                    o.headers.get("location")
                )
            },
        );
    }
    if let Some(text) = &expect.body_contains {
        every(
            format!("expected the body to contain {text:?}"),
            &|o| o.body.contains(text.as_str()),
            &|o| format!("body {:?}", crate::http::snippet(o.body.as_bytes())),
        );
    }
    if let Some(ms) = expect.min_duration_ms {
        let min = Duration::from_millis(ms);
        let fast = outcomes
            .iter()
            .filter(|o| o.done_at.saturating_sub(o.sent_at) < min)
            .count();
        if fast > 0 {
            problems.push(format!(
                "expected every request to take at least {ms}ms, {fast} of {total} were faster"
            ));
        }
    }
    if let Some(bound) = &expect.instances {
        let distinct: std::collections::BTreeSet<&str> = outcomes
            .iter()
            .filter_map(|o| o.instance.as_deref())
            .collect();
        if !bound.holds(distinct.len()) {
            problems.push(format!(
                "expected {bound} distinct instances to answer, got {} ({})",
                distinct.len(),
                distinct.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    problems
}

/// Checks `served`/`shadow` against the apps' counters before and after a step; returns a
/// description of what was served.
pub fn check_served(
    expect: &Expect,
    apps: &[(String, String, String, std::net::SocketAddr)],
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
) -> Result<String, String> {
    let delta = |instance: &str| {
        let (a, b) = before.get(instance).copied().unwrap_or((0, 0));
        let (c, d) = after.get(instance).copied().unwrap_or((0, 0));
        (c.saturating_sub(a) as usize, d.saturating_sub(b) as usize)
    };
    let matching = |key: &str| {
        apps.iter()
            .filter(|(service, version, instance, _)| {
                key == version || key == instance || key == format!("{service}/{version}")
            })
            .map(|(_, _, instance, _)| delta(instance))
            .fold((0, 0), |acc, d| (acc.0 + d.0, acc.1 + d.1))
    };
    let mut problems = Vec::new();
    for (key, bound) in &expect.served {
        let (n, _) = matching(key);
        if !bound.holds(n) {
            problems.push(format!(
                "expected {key} to serve {bound} requests, it served {n}"
            ));
        }
    }
    for (key, bound) in &expect.shadow {
        let (_, n) = matching(key);
        if !bound.holds(n) {
            problems.push(format!(
                "expected {key} to receive {bound} mirrored requests, it received {n}"
            ));
        }
    }
    let seen: Vec<String> = apps
        .iter()
        .map(|(_, _, instance, _)| {
            let (n, m) = delta(instance);
            format!("{instance}×{n} (shadow {m})")
        })
        .collect();
    if problems.is_empty() {
        Ok(seen.join(" "))
    } else {
        Err(format!(
            "{} (served: {})",
            problems.join("; "),
            seen.join(" ")
        ))
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
    /// How long a config change (or a validation message) may take to reach every proxy.
    pub sync_timeout: Duration,
    /// How long proxies may take to reconnect to a restarted control plane and be up to date.
    pub reconnect_timeout: Duration,
    /// How long the mesh may take to start.
    pub startup_timeout: Duration,
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
    if let Some(c) = &scenario.client {
        mesh_options.client_namespace = c.namespace.clone();
        mesh_options.client_labels = c.labels.clone();
        mesh_options.client_locality = c.locality.clone();
    }
    for w in &scenario.workloads {
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
    mesh_options.externals = scenario
        .externals
        .iter()
        .map(|x| {
            (
                x.name.clone(),
                x.version.clone(),
                std::net::SocketAddr::from(([127, 0, 0, 1], x.port)),
            )
        })
        .collect();
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
        Ok(StepKind::ApplyInvalid(a)) => format!("apply_invalid {}", a.file),
        Ok(StepKind::RestartControlPlane(r)) => {
            format!("restart_control_plane down {}ms", r.down_ms)
        }
        Ok(StepKind::Sleep(ms)) => format!("sleep {ms}ms"),
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
            let counting = !expect.served.is_empty() || !expect.shadow.is_empty();
            let before = if counting {
                Some(mesh.app_counts().await?)
            } else {
                None
            };
            let outcomes = client::run_outcomes(&plan_for(r, mesh)?).await;
            let summary = Summary::from_outcomes(&outcomes);
            let mut problems = Vec::new();
            if let Err(e) = check_expect(expect, &summary) {
                problems.push(e);
            }
            problems.extend(check_outcomes(expect, &outcomes));
            let mut note = String::new();
            if let Some(before) = before {
                // Mirrored copies may land after the responses: settle, then re-read for up to
                // 3 s while a lower bound is not met yet.
                let deadline = Instant::now() + Duration::from_secs(3);
                tokio::time::sleep(Duration::from_millis(300)).await;
                loop {
                    let after = mesh.app_counts().await?;
                    let result = check_served(expect, &mesh.apps(), &before, &after);
                    if result.is_ok() || Instant::now() >= deadline {
                        match result {
                            Ok(n) => note = format!("; served {n}"),
                            Err(e) => problems.push(e),
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if !problems.is_empty() {
                bail!("{} [{summary}]", problems.join("; "));
            }
            Ok(format!("{summary}{note}"))
        }
        StepKind::Sleep(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(format!("slept {ms}ms"))
        }
        StepKind::Apply(f) => {
            mesh.apply(&f.file, &f.content).await?;
            let s = mesh
                .wait_synced(Instant::now() + options.sync_timeout)
                .await?;
            let note = check_applied(f, options, mesh).await?;
            Ok(format!(
                "applied {}, generation {}{note}",
                f.file, s.generation
            ))
        }
        StepKind::ApplyInvalid(a) => apply_invalid(a, options, mesh).await,
        StepKind::RestartControlPlane(r) => restart_control_plane(r, options, mesh).await,
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
    let line = judge_live_change(l, &outcomes, change_at)?;
    let note = check_applied(&l.apply, options, mesh).await?;
    Ok(format!("{line}{note}"))
}

/// Whether an error in `/debug/config` is about `file` (the control plane ends each error with
/// the path of the file it comes from).
fn error_names_file(error: &str, file: &str) -> bool {
    error.contains(&format!("/{file})")) || error.contains(&format!("/{file}:"))
}

/// After a valid file was applied and synced: `/debug/config` shows no error for it and, if
/// asked, the expected warning. Returns a note for the step's line.
async fn check_applied(f: &FileDef, options: &RunOptions, mesh: &Mesh) -> anyhow::Result<String> {
    let deadline = Instant::now() + options.sync_timeout;
    let file = f.file.as_str();
    mesh.wait_config(deadline, &format!("no error for {file}"), |c| {
        !c.diagnostics
            .errors
            .iter()
            .any(|e| error_names_file(e, file))
    })
    .await?;
    let Some(want) = &f.expect_warning else {
        return Ok(String::new());
    };
    let c = mesh
        .wait_config(deadline, &format!("a warning containing {want:?}"), |c| {
            c.diagnostics.warnings.iter().any(|w| w.contains(want))
        })
        .await?;
    let warning = c
        .diagnostics
        .warnings
        .iter()
        .find(|w| w.contains(want))
        .cloned()
        .unwrap_or_default();
    Ok(format!("; warning: {warning}"))
}

async fn apply_invalid(
    a: &InvalidFileDef,
    options: &RunOptions,
    mesh: &mut Mesh,
) -> anyhow::Result<String> {
    let before = mesh
        .debug_config()
        .await
        .context("reading /debug/config before the change")?;
    let served_before = mesh.syncz().await?.generation;
    let already: Vec<String> = before.diagnostics.errors.clone();
    let want = a.expect_error.as_str();
    mesh.apply(&a.file, &a.content).await?;
    let deadline = Instant::now() + options.sync_timeout;
    // An error that was not listed before the write proves the new content was read; an
    // identical error already listed (the same mistake written twice) only once nothing newer
    // came up by the deadline.
    let fresh = mesh
        .wait_config(deadline, &format!("a new error containing {want:?}"), |c| {
            c.diagnostics
                .errors
                .iter()
                .any(|e| e.contains(want) && !already.contains(e))
        })
        .await;
    let report = match fresh {
        Ok(c) => c,
        Err(e) if already.iter().any(|x| x.contains(want)) => mesh
            .debug_config()
            .await
            .ok()
            .filter(|c| c.diagnostics.errors.iter().any(|x| x.contains(want)))
            .ok_or(e)?,
        Err(e) => return Err(e.context(format!("{} was not rejected as expected", a.file))),
    };
    let error = report
        .diagnostics
        .errors
        .iter()
        .find(|e| e.contains(want))
        .cloned()
        .unwrap_or_default();
    if report.generation != before.generation {
        bail!(
            "the rejected {} changed the applied config: /debug/config generation {} -> {} (error: {error})",
            a.file,
            before.generation,
            report.generation
        );
    }
    let served = mesh.syncz().await?.generation;
    if served != served_before {
        bail!(
            "the rejected {} changed the served config: generation {served_before} -> {served} (error: {error})",
            a.file
        );
    }
    Ok(format!(
        "{} rejected, generation stays {served}: {error}",
        a.file
    ))
}

async fn restart_control_plane(
    r: &RestartControlPlane,
    options: &RunOptions,
    mesh: &mut Mesh,
) -> anyhow::Result<String> {
    const WARMUP: usize = 20;
    const AFTER_SYNC: usize = 50;
    let plan = plan_for(&r.request, mesh)?;
    let traffic = Traffic::start(&plan);
    wait_for(
        Instant::now() + Duration::from_secs(10),
        "background traffic to flow",
        || traffic.completed() >= WARMUP,
    )
    .await?;
    let restart = mesh
        .restart_control_plane(
            Duration::from_millis(r.down_ms),
            Instant::now() + options.reconnect_timeout,
        )
        .await;
    let restart = match restart {
        Ok(x) => x,
        Err(e) => {
            let outcomes = traffic.stop().await;
            return Err(e.context(format!(
                "during traffic: {}",
                Summary::from_outcomes(&outcomes)
            )));
        }
    };
    let synced_count = traffic.completed();
    wait_for(
        Instant::now() + Duration::from_secs(10),
        "traffic after the proxies reconnected",
        || traffic.completed() >= synced_count + AFTER_SYNC,
    )
    .await?;
    let epoch = traffic.epoch();
    let outcomes = traffic.stop().await;
    let window = RestartWindow {
        killed: restart.killed_at.saturating_duration_since(epoch),
        restarted: restart.started_at.saturating_duration_since(epoch),
    };
    let line = judge_restart(r, &outcomes, &window)?;
    Ok(format!(
        "control plane stopped in {}ms ({}), down {}ms, ready {}ms and every proxy up to date {}ms after the restart (generation {}); {line}",
        restart
            .down_at
            .saturating_duration_since(restart.killed_at)
            .as_millis(),
        restart.exit,
        restart
            .started_at
            .saturating_duration_since(restart.down_at)
            .as_millis(),
        restart
            .ready_at
            .saturating_duration_since(restart.started_at)
            .as_millis(),
        restart
            .synced_at
            .saturating_duration_since(restart.started_at)
            .as_millis(),
        restart.syncz.generation
    ))
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
        bail!(
            "{} requests failed during the change (at most {max_failures} allowed): {} [{summary}]",
            failed.len(),
            describe_failures(&failed, change_at)
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

/// The first few failed requests, with when they were sent relative to `reference`.
fn describe_failures(failed: &[&Outcome], reference: Duration) -> String {
    failed
        .iter()
        .take(3)
        .map(|o| {
            format!(
                "at {:+}ms: {}",
                o.sent_at.as_millis() as i128 - reference.as_millis() as i128,
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
        .join("; ")
}

/// When the control plane was killed and when its successor was started, measured from the
/// background traffic's epoch.
#[derive(Debug, Clone, Copy)]
pub struct RestartWindow {
    /// The old control plane was signalled.
    pub killed: Duration,
    /// The new one was started.
    pub restarted: Duration,
}

/// Judges a control plane restart from the outcomes of the background traffic (sorted by
/// `sent_at`): no request may fail (at most `expect.failures`), some must have been sent while
/// the control plane was down, and every other `expect` key applies to all of them.
pub fn judge_restart(
    r: &RestartControlPlane,
    outcomes: &[Outcome],
    window: &RestartWindow,
) -> anyhow::Result<String> {
    let summary = Summary::from_outcomes(outcomes);
    let max_failures = r.expect.failures.unwrap_or(0);
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.is_success() || r.expect.status.is_some_and(|s| o.status != Some(s)))
        .collect();
    if failed.len() > max_failures {
        bail!(
            "{} requests failed around the control plane restart (at most {max_failures} allowed; times relative to the kill): {} [{summary}]",
            failed.len(),
            describe_failures(&failed, window.killed)
        );
    }
    let while_down = outcomes
        .iter()
        .filter(|o| o.sent_at >= window.killed && o.sent_at < window.restarted)
        .count();
    if while_down == 0 {
        bail!("no request was sent while the control plane was down [{summary}]");
    }
    check_expect(&r.expect, &summary).map_err(|e| anyhow!(e))?;
    Ok(format!(
        "{while_down} requests sent while it was down, {} failed; {summary}",
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
  - apply_invalid:
      file: vs.yaml
      content: "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
      expect_error: "weight 150 is out of range"
  - restart_control_plane:
      down_ms: 1500
      request: {authority: "echo:9080", concurrency: 4}
      expect: {status: 200, only_version: v2}
  - apply:
      file: vs.yaml
      content: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo}\nspec: {hosts: [echo]}\n"
      expect_warning: "is not defined by any DestinationRule"
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
        assert_eq!(s.steps.len(), 7);
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
        match s.steps[4].kind()? {
            StepKind::ApplyInvalid(a) => {
                assert_eq!(a.file, "vs.yaml");
                assert_eq!(a.expect_error, "weight 150 is out of range");
            }
            other => panic!("unexpected {other:?}"),
        }
        match s.steps[5].kind()? {
            StepKind::RestartControlPlane(r) => {
                assert_eq!(r.down_ms, 1500);
                assert_eq!(r.request.concurrency, 4);
                assert_eq!(r.expect.only_version.as_deref(), Some("v2"));
            }
            other => panic!("unexpected {other:?}"),
        }
        match s.steps[6].kind()? {
            StepKind::Apply(f) => assert_eq!(
                f.expect_warning.as_deref(),
                Some("is not defined by any DestinationRule")
            ),
            other => panic!("unexpected {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn new_step_kinds_are_checked() {
        let e = err(&GOOD.replace("down_ms: 1500", "down_ms: 0"));
        assert!(e.contains("steps[5]") && e.contains("down_ms"), "{e}");
        let e = err(&GOOD.replace("down_ms: 1500", "down_ms: 1500\n      extra: 1"));
        assert!(
            e.contains("steps[5].restart_control_plane") && e.contains("extra"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "expect_error: \"weight 150 is out of range\"",
            "expect_error: \"\"",
        ));
        assert!(e.contains("steps[4]") && e.contains("expect_error"), "{e}");
        let e = err(&GOOD.replace("      expect_error: \"weight 150 is out of range\"\n", ""));
        assert!(e.contains("expect_error"), "{e}");
        let e = err(&GOOD.replace(
            "expect: {status: 200, only_version: v2}\n  - apply:",
            "expect: {}\n  - apply:",
        ));
        assert!(
            e.contains("steps[5]") && e.contains("expect nothing"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "expect_warning: \"is not defined by any DestinationRule\"",
            "expect_warning: \" \"",
        ));
        assert!(
            e.contains("steps[6]") && e.contains("expect_warning"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "  - restart_control_plane:\n",
            "  - restart_control_plane:\n      file: x.yaml\n",
        ));
        assert!(e.contains("file"), "{e}");
        // `expect` next to a restart step (rather than inside it) is a mistake.
        let e = err(&GOOD.replace(
            "  - apply_invalid:\n",
            "  - expect: {status: 200}\n    apply_invalid:\n",
        ));
        assert!(e.contains("steps[4]") && e.contains("`expect`"), "{e}");
        assert!(error_names_file(
            "VirtualService default/echo: bad (the file's last good content stays in force: /tmp/x/config/vs.yaml)",
            "vs.yaml"
        ));
        assert!(!error_names_file(
            "bad (nothing from this file is applied: /tmp/x/config/other-vs.yaml)",
            "vs.yaml"
        ));
    }

    #[test]
    fn restart_judgement() -> anyhow::Result<()> {
        let r = RestartControlPlane {
            down_ms: 1500,
            request: RequestDef {
                authority: "echo".into(),
                path: "/".into(),
                method: "GET".into(),
                count: 1,
                concurrency: 1,
                protocol: Protocol::Http1,
                headers: BTreeMap::new(),
            },
            expect: Expect {
                status: Some(200),
                only_version: Some("v2".into()),
                ..Default::default()
            },
        };
        let window = RestartWindow {
            killed: Duration::from_millis(1000),
            restarted: Duration::from_millis(2500),
        };
        let good = vec![
            o(500, "v2", 200),
            o(1200, "v2", 200),
            o(2000, "v2", 200),
            o(4000, "v2", 200),
        ];
        let msg = judge_restart(&r, &good, &window)?;
        assert!(msg.contains("2 requests sent while it was down"), "{msg}");
        let failing = vec![o(500, "v2", 200), o(1300, "-", 503), o(4000, "v2", 200)];
        let e = judge_restart(&r, &failing, &window)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("1 requests failed") && e.contains("+300ms"),
            "{e}"
        );
        let mut lenient = r.clone();
        lenient.expect.failures = Some(1);
        lenient.expect.status = None;
        lenient.expect.only_version = None;
        assert!(judge_restart(&lenient, &failing, &window).is_ok());
        // Nothing sent while it was down proves nothing.
        let idle = vec![o(500, "v2", 200), o(4000, "v2", 200)];
        let e = judge_restart(&r, &idle, &window)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("while the control plane was down"), "{e}");
        // The other expect keys apply to the whole window.
        let wrong = vec![o(500, "v2", 200), o(1200, "v1", 200), o(4000, "v2", 200)];
        let e = judge_restart(&r, &wrong, &window)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("every response from v2, 2 of 3"), "{e}");
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
            instance: None,
            headers: BTreeMap::new(),
            echo_headers: BTreeMap::new(),
            echo_path: None,
            body: String::new(),
            flag: None,
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
                expect_warning: None,
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
