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
//!
//! Layout: this file holds the format's types; `parse` loads and validates files, `expect` checks
//! expectations, `run` drives a scenario on a mesh, and `steps/` has one file per step kind.

mod expect;
mod parse;
mod run;
mod steps;

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::http::Protocol;

pub use expect::{
    Bound, DEFAULT_TOLERANCE, Expect, check_expect, check_outcomes, check_served, check_split,
};
pub use parse::check_istio_yaml;
pub use run::{RunOptions, RunReport, run};
pub use steps::live_change::judge_live_change;
pub use steps::restart_control_plane::{RestartWindow, judge_restart};

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
