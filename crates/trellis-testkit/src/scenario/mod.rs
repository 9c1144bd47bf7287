//! Conformance scenarios: the file format (data, not code) and the runner.
//!
//! ```yaml
//! name: traffic/weighted-split          # AREA/NAME, matches the file's path under scenarios/
//! description: 80/20 split between v1 and v2
//! services: [{name: echo, port: 9080, protocol: HTTP}]     # namespace defaults to default;
//!                                       # protocol HTTP|HTTP2|GRPC|TCP|AUTO (AUTO: undeclared, sniffed)
//!                                       # port_name: web, app_protocol: http2 (the port's name
//!                                       # and appProtocol; with AUTO no protocol is written)
//! workloads: [{service: echo, version: v1}, {service: echo, version: v2, instances: 1, calls: [],
//!              locality: us-east/zone-a, labels: {tier: gold}}]   # locality/labels: WorkloadEntry
//! client: {namespace: default, labels: {role: tester}, locality: us-east/zone-a}   # optional
//! externals: [{name: ext, port: 18091}]  # echo apps without sidecar on 127.0.0.1 (and [::1])
//! mesh_config: |                        # Istio's MeshConfig for the control plane (--mesh-config)
//!   accessLogFile: /dev/stdout
//! zipkin: {port: 18411}                 # a trace collector (Zipkin JSON, OTLP) on 127.0.0.1:PORT
//! jwks_server: {port: 18443, keys: [rsa, ec]}   # the test JWT issuer's JWKS over HTTPS on 127.0.0.1
//! jwks_refresh_ms: 2000                 # control plane's --jwks-refresh-interval (remote JWKS)
//! mtls_server: {port: 18444}            # an HTTPS server requiring client certs, on 127.0.0.1
//! gateways: [{name: ingress, namespace: istio-system, labels: {istio: ingressgateway}}]
//! credentials: [{name: shop-cert, hosts: [shop.example.com]}]   # signed by the run's test CA
//! ext_authz_server: {grpc_port: 18500, http_port: 18501}   # the test external authorizer
//! config: |                             # Istio YAML applied (and synced) before the first step
//!   apiVersion: networking.istio.io/v1
//!   kind: VirtualService
//!   ...
//! steps:
//!   - request: {authority: "echo:9080", path: /, count: 2000, concurrency: 8, protocol: http1, headers: {},
//!               method: POST, body: "text sent with its content-length"}
//!     expect: {status: 200, split: {v1: 80, v2: 20}, tolerance: 3}
//!   - request: {authority: "grpcecho:9000", grpc: {method: server_stream, messages: 5},
//!               headers: {x-echo-grpc-status: "8"}}       # gRPC: headers are metadata
//!     expect: {grpc_status: 8, messages: 5}            # also grpc_status_counts: {14: {max: 0}}
//!   - request: {authority: "shop.example.com", via: gateway,
//!               gateway: {name: ingress, port: 8443, tls: {sni: shop.example.com, client_cert: true}}}
//!     expect: {status: 200}
//!   - request: {authority: "echo:9080", path: /chat, websocket: {messages: 20}}
//!     expect: {status: 101, messages: 20}
//!   - request: {authority: "db:9400", tcp: {port: 9400, send: "hello"}, count: 1000}
//!     expect: {status: 200, split: {v1: 80, v2: 20}}   # an intact echo counts as 200
//!   - request: {authority: "echo:9080", jwt: {sub: alice, aud: svc, claims: {groups: [a]}, expired: false,
//!               not_yet_valid: false, alg: RS256, key: rsa, kid: ..., forged: false, malformed: false,
//!               header: authorization, prefix: "Bearer ", param: ..., cookie: ...}}
//!     expect: {status: 401, body_contains: "Jwt is expired"}
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
//!   - jwks_keys: [ec]                             # the JWKS server serves these keys from now on
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
//! (response headers), `headers_contain` (a response header containing a text, in every
//! response), `distinct_headers` (`{x-echo-connection: {min: 2}}`: how many distinct values a
//! response header took; the echo app numbers its connections in `x-echo-connection`), `request_headers` / `request_headers_contain` (a substring, e.g. the peer
//! identity in `x-forwarded-client-cert`) / `request_headers_absent` and `echo_path` (what the
//! echo app saw), `location`, `body_contains`, `transport_errors` (how many requests got no HTTP
//! response at all: refused, reset, failed handshake), `min_duration_ms` (a lower bound only, for delays and
//! timeouts: never an upper bound on speed), `instances` (how many distinct instances answered,
//! e.g. `{max: 1}` for consistent hashing). `served` and `shadow` count, per `VERSION`,
//! `SERVICE/VERSION` or instance, the requests the echo apps received during the step (read
//! from each app's `/_echo/stats`, so retries and mirrored copies the client never sees count).
//! The echo app's `fail_instance=ID` / `fail_version=V` query parameters limit `status` and
//! `delay_ms` to one instance or version, so one URL can make a single endpoint misbehave.
//!
//! Header-name case: a request with `raw_header_case: true` is written byte for byte (`Host`
//! first, then `headers` with their names' case kept; one connection per request; plaintext
//! HTTP/1.1 only) and keeps the response's header names as received. `response_header_names`
//! (each name must appear in exactly that case in every response) and `request_header_names`
//! (likewise among the names the echo app received, which it reads from its connection's bytes:
//! its `header_names` field) check them; the echo app's `echo_header=NAME` query copies the
//! request's header `NAME` into the response, spelt as the request spelt it.
//!
//! Every mesh runs in secure mode, Istio's default: sidecars hold workload certificates from
//! the mesh CA and speak auto mTLS to each other (PERMISSIVE unless a PeerAuthentication says
//! otherwise); the client sidecar is `spiffe://cluster.local/ns/NAMESPACE/sa/client`, a
//! workload `.../ns/NAMESPACE/sa/SERVICE`. A request with `via: direct` skips the client
//! sidecar and goes in plaintext straight to the first workload of the authority's service (its
//! sidecar's inbound port): a client from outside the mesh.
//!
//! Gateways: `gateways` starts router proxies (`--type router`) on `BASE.(200+i)`, in secure
//! mode; `credentials` writes a test CA and a server certificate per entry to
//! `RUN_DIR/credentials/NAME/{tls.crt,tls.key,ca.crt}` (where the control plane resolves
//! `credentialName`s), plus a client certificate of the same CA. `via: gateway` sends a request
//! from outside the mesh to `gateway: {name, port}` (the first gateway when `name` is absent) in
//! origin form; with `tls: {sni, client_cert}` over HTTPS, trusting only the test CA and
//! verifying the certificate for `sni` (a wrong certificate is a transport error), presenting
//! the client certificate when `client_cert`.
//!
//! Telemetry expectations: `access_log` reads what a sidecar wrote to its output (access logs to
//! `/dev/stdout`) during the step: `{proxy: client | WORKLOAD, contains: [TEXT...], json: {KEY:
//! VALUE}, absent: [TEXT...]}`: each `contains` text is in some new line, some new JSON line has
//! every `json` field, and (checked last, after two flush intervals) no new line has an `absent`
//! text. Lines are polled for up to 10 s (Envoy flushes its logs every second). `trace` reads the
//! spans the `zipkin` collector got during the step: `{spans: BOUND, traces: BOUND, linked: true,
//! kinds: {SERVER: BOUND}, tags: [TAG], server_tags: [TAG], tag_values: {TAG: VALUE}, services:
//! [WORKLOAD.NAMESPACE], duration_ms: {SERVER: BOUND}, nested: true}` (`linked`: every parent is
//! in its trace, one root per trace; `services`: each recorded a SERVER and a CLIENT span;
//! `duration_ms`: every span of that kind lasted that many whole milliseconds; `nested`: every
//! span lies within its parent's interval, ±1 ms), polled for up to 20 s.
//!
//! `within_ms` (in a request step's `expect`): the requests are re-sent every 200 ms until their
//! responses meet the status and per-response expectations, for at most that long, then one
//! more round is judged with every expectation. For changes existing connections see late
//! (Envoy drains connections of a replaced filter chain: an AuthorizationPolicy change reaches
//! requests on pooled connections only once they are drained).
//!
//! `metrics` (a list) checks how much a sidecar's Prometheus metric (read from its admin
//! `/stats/prometheus`) grew during the step, summed over the series whose labels include the
//! given ones: `{proxy: client, name: istio_requests_total, labels: {reporter: source,
//! response_code: "503", response_flags: UH}, value: {min: 5, max: 5}}` (`proxy` is `client` or a
//! workload name; polled for up to 10 s, since a request is recorded when its response ends).
//! An entry with `dataplane: trellis|envoy` is only checked on that data plane (for metrics whose
//! names differ, e.g. Envoy's own stats next to Trellis's).
//!
//! `mode: capture` at the top level runs the mesh as pods with iptables capture and sends each
//! request with curl from the `client` pod (`via: direct`: from the `outside` pod, which has no
//! sidecar, to the service's first pod); an `outside` pod serves `outside:9080` outside the
//! mesh. Only `request` (HTTP/1.1, or h2c with `protocol: http2`), `apply`, `remove` and
//! `sleep_ms` steps and response expectations; needs root (skipped otherwise). See `capture.rs`.
//!
//! `dataplanes: [trellis]` at the top level limits a scenario to the data planes listed (both
//! when absent): only for what one of them cannot have, such as Istio's metric names (stock
//! Envoy lacks Istio's stats extension). The others' runs are reported as skipped.
//!
//! A `live_change` passes when no request fails (or at most `expect.failures`) and no request
//! sent later than `expect_within_ms` after the change still sees the old routing.
//!
//! JWT: a request's `jwt` mints one token with the test issuer (`crate::jwt`: fixed RSA and EC
//! test keys, `iss` `testing@trellis.test`, `sub` `tester`, `exp` in an hour unless `expired`)
//! and sends it in `Authorization: Bearer ` (or `header` with `prefix`, `param`, `cookie`). In the
//! config and applied files, `{{JWT_JWKS}}` expands to the issuer's JWKS and `{{JWT_CA_CERT}}` to
//! the CA certificate file of `jwks_server` (serving `https://jwks.trellis.test:PORT/jwks.json`,
//! also valid for `127.0.0.1`).
//!
//! JWKS rotation: `jwks_server.keys` chooses the test keys the server serves at first (`rsa`,
//! `ec`; both when absent), a `jwks_keys: [KEY...]` step changes them while the mesh runs (an
//! issuer rotating its signing keys), and `jwks_refresh_ms` sets how often the proxies fetch the
//! key set again (the control plane's `--jwks-refresh-interval`, emitted as the remote JWKS
//! `cache_duration`). A request step after a rotation uses `within_ms` (at least the refresh
//! interval): the proxies see the new key set at their next background fetch
//! (`security/jwt-jwks-rotation`).
//!
//! Mutual TLS origination: `mtls_server` starts an HTTPS server (`crate::jwt::mtls`, host
//! `mtls.trellis.test`, also valid for `127.0.0.1`) that requires a client certificate of its
//! client CA and answers `mtls ok: client certificate verified`. `{{MTLS_SERVER_CA}}` (the CA
//! of its certificate), `{{MTLS_CLIENT_CERT}}` / `{{MTLS_CLIENT_KEY}}` (a client certificate
//! it accepts), `{{MTLS_ROGUE_CERT}}` / `{{MTLS_ROGUE_KEY}}` (one of a CA it does not trust) and
//! `{{MTLS_ROGUE_CA}}` (that CA) expand to PEM file paths in the config and applied files.
//!
//! External authorization: `ext_authz_server` starts the test authorizer (`crate::ext_authz`:
//! gRPC `envoy.service.auth.v3.Authorization` and/or its HTTP variant) on `127.0.0.1` at the
//! ports given. Its rule is fixed: a request with `x-ext-authz: allow` is allowed (the app sees
//! `x-ext-authz-check-result: allowed` and `x-ext-authz-check-path`), any other is denied with
//! `403`, `x-ext-authz-check-result: denied` and the body `denied by the test ext_authz
//! server`. A request whose body contains `ext-authz=allow` is allowed too (the body reaches
//! the authorizer with the provider's `includeRequestBodyInCheck`); an allowed request also
//! carries `x-ext-authz-check-body-bytes` (the body length the authorizer got),
//! `x-ext-authz-check-body-kind` (`text`, `raw` for gRPC `raw_body`, `none`) and
//! `x-ext-authz-check-partial` (the check's `x-envoy-auth-partial-body`, or `none`). The
//! scenario declares it with a ServiceEntry (`127.0.0.1`, those ports) and names it
//! in `mesh_config`'s `extensionProviders`; `{{EXT_AUTHZ_GRPC_PORT}}` and
//! `{{EXT_AUTHZ_HTTP_PORT}}` expand to the ports in the config, applied files and mesh config.
//!
//! Every wait has a deadline: `RunOptions::sync_timeout` for config changes and validation
//! messages, `RunOptions::reconnect_timeout` for proxies to come back after a restart.
//!
//! Layout: this file holds the format's types; `parse` loads and validates files, `expect` checks
//! expectations, `run` drives a scenario on a mesh, and `steps/` has one file per step kind.

mod access_log;
pub mod capture;
mod expect;
pub mod metrics;
mod parse;
mod run;
mod steps;
mod trace;

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::http::Protocol;

pub use access_log::AccessLogExpect;
pub use expect::{
    Bound, DEFAULT_TOLERANCE, Expect, check_expect, check_outcomes, check_served, check_split,
};
pub use parse::check_istio_yaml;
pub use run::{RunOptions, RunReport, run};
pub use steps::live_change::judge_live_change;
pub use steps::restart_control_plane::{RestartWindow, judge_restart};
pub use trace::{TraceExpect, ZipkinDef};

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
    /// Run the test JWT issuer's JWKS server (HTTPS) on `127.0.0.1:PORT` for `jwksUri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_server: Option<JwksServerDef>,
    /// Run an external HTTPS server that requires client certificates (`crate::jwt::mtls`) on
    /// `127.0.0.1:PORT`, for DestinationRule `MUTUAL` origination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls_server: Option<ServerPortDef>,
    /// Istio's mesh config (`MeshConfig` YAML) the control plane starts with.
    #[serde(default)]
    pub mesh_config: Option<String>,
    /// Run the test external authorizer (`crate::ext_authz`) on `127.0.0.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_authz_server: Option<ExtAuthzServerDef>,
    /// A Zipkin v2 collector the runner starts on `127.0.0.1:PORT` for `trace` expectations.
    #[serde(default)]
    pub zipkin: Option<ZipkinDef>,
    /// How often the proxies fetch a `jwksUri` again, in milliseconds (whole seconds, at least
    /// 1000): the control plane's `--jwks-refresh-interval` (20 minutes when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_refresh_ms: Option<u64>,
    /// The workload certificate lifetime the sidecars ask for, in milliseconds (24 h when
    /// absent): short ones make `rotate_certificates` quick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ttl_ms: Option<u64>,
    /// What to do, in order.
    pub steps: Vec<Step>,
    /// Gateways: router proxies on `BASE.(200+i)` with these names, namespaces and labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<crate::mesh::GatewaySpec>,
    /// Server credentials for gateways (`credentialName`s), signed by the run's test CA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<crate::mesh::CredentialSpec>,
    /// `capture`: run the mesh as pods with transparent capture and send from a pod with curl
    /// (see [`capture`]); `explicit` (the default): loopback addresses, sidecars as HTTP proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ScenarioMode>,
    /// The data planes the scenario applies to (both when absent). Only for what one of them
    /// cannot have, such as Istio's metric names (stock Envoy lacks Istio's stats extension);
    /// the others' runs are reported as skipped, never as passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplanes: Option<Vec<crate::mesh::Dataplane>>,
}

/// How a scenario's mesh runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioMode {
    /// Loopback addresses; the client and apps use their sidecar as an HTTP proxy.
    Explicit,
    /// Pods in network namespaces with iptables capture; curl in a pod is the client (root).
    Capture,
}

impl Scenario {
    /// Why the scenario cannot run on this machine (a captured one needs root, iptables,
    /// setpriv and curl), if so: the run is reported as skipped.
    pub fn cannot_run_here(&self) -> Option<String> {
        (self.mode == Some(ScenarioMode::Capture))
            .then(capture::missing_requirements)
            .flatten()
    }

    /// Whether the scenario runs on `dataplane` (see [`Scenario::dataplanes`]).
    pub fn runs_on(&self, dataplane: crate::mesh::Dataplane) -> bool {
        self.dataplanes
            .as_ref()
            .is_none_or(|d| d.contains(&dataplane))
    }
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
    /// `HTTP` (default), `HTTP2`, `GRPC` or `TCP` (the port's name is the protocol in lower
    /// case); `AUTO` declares none (port name `auto`, no `protocol`): Istio sniffs it.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// The port's name instead of the protocol's (with `AUTO`, no `protocol` is written, so the
    /// name or `app_protocol` selects it, as Istio does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// The port's `appProtocol` (Trellis' ServiceEntry extension; see `trellis-api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl ServiceDef {
    /// Its ServiceEntry port: [`service_port_json`] with the scenario's name and appProtocol.
    pub fn port_json(&self) -> serde_json::Value {
        let mut port = service_port_json(self.port, &self.protocol);
        if let Some(name) = &self.port_name {
            port["name"] = serde_json::json!(name);
        }
        if let Some(app) = &self.app_protocol {
            port["appProtocol"] = serde_json::json!(app);
        }
        port
    }
}

/// A ServiceEntry port for a scenario service: named after its protocol, or undeclared for
/// `AUTO` (protocol detection).
pub fn service_port_json(port: u16, protocol: &str) -> serde_json::Value {
    if protocol.eq_ignore_ascii_case("AUTO") {
        serde_json::json!({"number": port, "name": "auto"})
    } else {
        serde_json::json!({"number": port, "name": protocol.to_ascii_lowercase(), "protocol": protocol})
    }
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
    /// Keep traffic flowing until every sidecar has rotated its certificate some times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_certificates: Option<RotateCertificates>,
    /// Make the `jwks_server` serve these test keys from now on (an issuer's key rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_keys: Option<Vec<crate::jwt::KeyKind>>,
}

/// Certificate rotation under continuous traffic: every sidecar's count of certificate updates
/// (Trellis: `trellis_cert_rotations_total`; Envoy: the versions of its SDS `default` secret,
/// `sds.default.version_text`, counted as they change) must grow by `rotations` while no
/// request fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateCertificates {
    /// How many rotations every sidecar must go through.
    pub rotations: u32,
    /// The background traffic (`count` is ignored).
    pub request: RequestDef,
    /// What every response of the window must look like (no failures unless `failures`).
    pub expect: Expect,
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
    /// `rotate_certificates`.
    RotateCertificates(&'a RotateCertificates),
    /// `jwks_keys`.
    JwksKeys(&'a [crate::jwt::KeyKind]),
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
            self.rotate_certificates.is_some(),
            self.jwks_keys.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            bail!(
                "a step needs exactly one of request, apply, remove, live_change, apply_invalid, restart_control_plane, sleep_ms, rotate_certificates, jwks_keys ({given} given)"
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
        } else if let Some(r) = &self.rotate_certificates {
            StepKind::RotateCertificates(r)
        } else if let Some(k) = &self.jwks_keys {
            StepKind::JwksKeys(k)
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
    /// Extra request headers (gRPC: request metadata).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body (HTTP requests; none by default), sent with its `content-length`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Make gRPC calls to the echo service instead of HTTP requests (h2c; `path`, `method`
    /// and `protocol` do not apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<crate::grpc::client::GrpcCall>,
    /// Open WebSocket sessions instead (HTTP/1.1 upgrade to `path`), each exchanging
    /// `messages` messages with the echo app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketDef>,
    /// Open raw TCP sessions instead, to `port` on the client sidecar's IP (its outbound TCP
    /// listener for that service port); `authority`, `path` and `headers` do not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpDef>,
    /// `sidecar` (default): through the client's sidecar. `direct`: plaintext straight to the
    /// sidecar of the first workload of the authority's service, on the service port, as a
    /// client outside the mesh would (no client certificate).
    #[serde(default)]
    pub via: Via,
    /// Mint a token with the test issuer and send it (see [`crate::jwt::JwtRequest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<crate::jwt::JwtRequest>,
    /// With `via: gateway`: which gateway, port and TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayRequest>,
    /// HTTP/1.1 written byte for byte: `headers` keep the case of their names (`Host` first),
    /// one connection per request, and the response's header names are kept as received (for
    /// `request_header_names` / `response_header_names`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_header_case: bool,
    /// An app that originates TLS itself: HTTPS (origin form) to the client sidecar's outbound
    /// listener on `port` (a TLS service port), sending SNI `sni` and verifying the server
    /// certificate for it against the run's test CA (`credentials`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_tls: Option<SidecarTls>,
}

/// TLS an app originates through its sidecar's outbound TLS listener (routed by SNI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarTls {
    /// The service port (the sidecar's outbound listener on its own IP).
    pub port: u16,
    /// The SNI sent, and the name the server certificate is verified for.
    pub sni: String,
}

/// Where a `via: gateway` request goes: a gateway's port, in plaintext or over TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRequest {
    /// The gateway (the scenario's first when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The server port.
    pub port: u16,
    /// Speak TLS (HTTPS) instead of plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTls>,
}

/// The client side of TLS to a gateway: the server certificate must chain to the run's test
/// CA and carry the SNI name (so a wrongly selected certificate fails the handshake).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayTls {
    /// The SNI sent (none when absent: the certificate must then be valid for the IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Present the run's client certificate (for `MUTUAL` servers).
    #[serde(default)]
    pub client_cert: bool,
}

/// A raw TCP session per request: send `send`, half-close, read the echo app's banner, the echo
/// and its byte count until it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpDef {
    /// The port on the client sidecar's IP.
    pub port: u16,
    /// What to send (`ping`).
    #[serde(default = "default_tcp_payload")]
    pub send: String,
}

fn default_tcp_payload() -> String {
    "ping".to_string()
}

/// A WebSocket session per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketDef {
    /// Messages sent (and expected back) per session.
    pub messages: usize,
}

/// The test issuer's JWKS server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksServerDef {
    /// The port on 127.0.0.1 (pick one unlikely to be in use, e.g. 18000-19999).
    pub port: u16,
    /// The test keys it serves at first (both when absent); a `jwks_keys` step changes them.
    #[serde(default = "all_test_keys")]
    pub keys: Vec<crate::jwt::KeyKind>,
}

fn all_test_keys() -> Vec<crate::jwt::KeyKind> {
    vec![crate::jwt::KeyKind::Rsa, crate::jwt::KeyKind::Ec]
}

/// A test server on a fixed port of 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPortDef {
    /// The port on 127.0.0.1 (pick one unlikely to be in use, e.g. 18000-19999).
    pub port: u16,
}

/// The test external authorizer: which variants run, on which ports of 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtAuthzServerDef {
    /// The gRPC `Authorization` service's port.
    #[serde(default)]
    pub grpc_port: Option<u16>,
    /// The HTTP variant's port.
    #[serde(default)]
    pub http_port: Option<u16>,
}

/// Where a scenario's requests enter the mesh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Through the client sidecar (`HTTP_PROXY`), as a workload of the mesh.
    #[default]
    Sidecar,
    /// Straight to the destination workload's sidecar, from outside the mesh.
    Direct,
    /// To a gateway (`gateway: {name, port, tls}`), from outside the mesh.
    Gateway,
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
