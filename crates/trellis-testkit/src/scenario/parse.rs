//! Loading and validating scenario files: YAML errors name the field path, and every check
//! the types cannot express names the offending field (`steps[2].apply.file: ...`).

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

use super::{
    CONFIG_FILE, Expect, FileDef, MAX_CONCURRENCY, MAX_COUNT, RequestDef, Scenario, Step, StepKind,
};

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
        if self.mode == Some(super::ScenarioMode::Capture) {
            super::capture::validate(self)?;
        }
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
            if !matches!(
                s.protocol.as_str(),
                "HTTP" | "HTTP2" | "GRPC" | "TCP" | "AUTO"
            ) {
                bail!(
                    "services[{i}].protocol: {:?} is not supported (HTTP, HTTP2, GRPC, TCP or AUTO)",
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
        self.validate_gateways()?;
        self.validate_jwks()?;
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
}

impl Scenario {
    /// `jwks_refresh_ms` is whole seconds (Envoy counts `cache_duration` in seconds) from 1 s
    /// to 10 min, and `jwks_keys` steps have a `jwks_server` and at least one key.
    fn validate_jwks(&self) -> anyhow::Result<()> {
        if let Some(ms) = self.jwks_refresh_ms
            && (ms == 0 || ms % 1000 != 0 || ms > 600_000)
        {
            bail!("jwks_refresh_ms must be whole seconds from 1000 to 600000");
        }
        if self.jwks_server.as_ref().is_some_and(|j| j.keys.is_empty()) {
            bail!("jwks_server.keys: at least one key (rsa, ec)");
        }
        for (i, step) in self.steps.iter().enumerate() {
            if let Some(keys) = &step.jwks_keys {
                if self.jwks_server.is_none() {
                    bail!("steps[{i}].jwks_keys needs a jwks_server");
                }
                if keys.is_empty() {
                    bail!("steps[{i}].jwks_keys: at least one key (rsa, ec)");
                }
            }
        }
        Ok(())
    }

    /// `gateways` and `credentials` are well formed, and every `via: gateway` request names a
    /// port (and a gateway that exists).
    fn validate_gateways(&self) -> anyhow::Result<()> {
        if self.gateways.len() > crate::mesh::MAX_GATEWAYS {
            bail!(
                "gateways: at most {} per scenario",
                crate::mesh::MAX_GATEWAYS
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, g) in self.gateways.iter().enumerate() {
            if g.name.is_empty() || !seen.insert(g.name.as_str()) {
                bail!("gateways[{i}].name {:?} is empty or listed twice", g.name);
            }
        }
        for (i, c) in self.credentials.iter().enumerate() {
            if c.name.is_empty() || c.name.contains('/') || c.hosts.is_empty() {
                bail!("credentials[{i}]: needs a name (no `/`) and at least one host");
            }
        }
        let requests = self.steps.iter().filter_map(|s| {
            s.request
                .as_ref()
                .or(s.live_change.as_ref().map(|l| &l.request))
                .or(s.restart_control_plane.as_ref().map(|r| &r.request))
                .or(s.rotate_certificates.as_ref().map(|r| &r.request))
        });
        for (i, r) in requests.enumerate() {
            match (r.via, &r.gateway) {
                (super::Via::Gateway, None) => {
                    bail!("request {i}: `via: gateway` needs `gateway: {{port: N}}`")
                }
                (super::Via::Gateway, Some(g)) => {
                    if self.gateways.is_empty()
                        || g.name
                            .as_ref()
                            .is_some_and(|n| !self.gateways.iter().any(|x| &x.name == n))
                    {
                        bail!("request {i}: gateway {:?} is not one of `gateways`", g.name);
                    }
                    if g.port == 0 {
                        bail!("request {i}: gateway.port must not be 0");
                    }
                }
                (_, Some(_)) => bail!("request {i}: `gateway` needs `via: gateway`"),
                (_, None) => {}
            }
        }
        Ok(())
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
        StepKind::RotateCertificates(r) => {
            if r.rotations == 0 || r.rotations > 10 {
                bail!("rotate_certificates.rotations must be from 1 to 10");
            }
            validate_request(&r.request, false)
                .map_err(|err| anyhow!("rotate_certificates.request: {err:#}"))?;
            validate_expect(&r.expect)
                .map_err(|err| anyhow!("rotate_certificates.expect: {err:#}"))?;
        }
        StepKind::JwksKeys(_) => {}
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
    if [r.grpc.is_some(), r.websocket.is_some(), r.tcp.is_some()]
        .iter()
        .filter(|b| **b)
        .count()
        > 1
    {
        bail!("give at most one of grpc, websocket, tcp");
    }
    if let Some(t) = &r.tcp
        && (t.send.is_empty() || t.port == 0)
    {
        bail!("tcp needs a port and a non-empty `send`");
    }
    if let Some(w) = &r.websocket
        && (w.messages == 0 || w.messages > 1000)
    {
        bail!(
            "websocket.messages must be from 1 to 1000, not {}",
            w.messages
        );
    }
    if let Some(g) = &r.grpc
        && (g.messages == 0 || g.messages > crate::grpc::MAX_STREAM_REPLIES)
    {
        bail!(
            "grpc.messages must be from 1 to {}, not {}",
            crate::grpc::MAX_STREAM_REPLIES,
            g.messages
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
    if let Some(c) = e.grpc_status
        && !(0..=16).contains(&c)
    {
        bail!("grpc_status {c} is not a gRPC status code (0-16)");
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

/// A name [`Mesh::apply`](crate::mesh::Mesh::apply) accepts, other than the scenario's own
/// [`CONFIG_FILE`].
fn check_file_name(name: &str) -> anyhow::Result<()> {
    if name == CONFIG_FILE || crate::mesh::check_file_name(name).is_err() {
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::http::Protocol;
    use crate::mesh::Dataplane;

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
        let e = err(&GOOD.replace("protocol: HTTP}", "protocol: UDP}"));
        assert!(e.contains("UDP"), "{e}");
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

    #[test]
    fn gateway_requests_need_a_declared_gateway_and_port() {
        let with_gateway = |request: &str| {
            GOOD.replace(
                "workloads: [",
                "gateways: [{name: ingress, labels: {istio: ingressgateway}}]\nworkloads: [",
            )
            .replace("count: 10,", &format!("count: 10, {request}"))
        };
        let ok = with_gateway("via: gateway, gateway: {port: 8443, tls: {sni: a.example.com}},");
        assert_eq!(err(&ok), "(parsed)");
        let e = err(&with_gateway("via: gateway,"));
        assert!(e.contains("needs `gateway: {port: N}`"), "{e}");
        let e = err(&with_gateway(
            "via: gateway, gateway: {name: egress, port: 80},",
        ));
        assert!(
            e.contains("\"egress\"") && e.contains("not one of `gateways`"),
            "{e}"
        );
        let e = err(&with_gateway("gateway: {port: 80},"));
        assert!(e.contains("`gateway` needs `via: gateway`"), "{e}");
    }
}
