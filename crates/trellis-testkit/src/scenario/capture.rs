//! Scenarios in captured mode (`mode: capture`): the mesh runs as pods (see [`crate::pods`]) and
//! requests are sent by an unmodified client — curl in the `client` pod, calling the authority
//! by name (`http://reviews:9080/path`), so the pod's iptables rules hand the connection to its
//! sidecar. `via: direct` sends from the `outside` pod (no sidecar) straight to the first
//! workload pod of the authority's service: a client outside the mesh meeting inbound capture.
//! Every captured scenario also gets the `outside` pod's echo app (`outside:9080`), a host the
//! mesh does not know. Requests are judged with the same expectations as explicit mode.
//!
//! Supported steps: `request` (`authority`, `path`, `method`, `headers`, `body`, `count`,
//! `protocol` — `http2` is curl's `--http2-prior-knowledge` —, `via: sidecar | direct`),
//! `apply`, `remove`, `sleep_ms`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::expect::{check_expect, check_outcomes};
use super::run::{RunOptions, RunReport};
use super::{RequestDef, Scenario, Step, StepKind, Via};
use crate::client::{Outcome, Summary};
use crate::pods::{CLIENT_POD, OUTSIDE_POD, PodMesh, PodOptions};

/// What curl prints after each response, to split the responses apart.
const MARKER: &str = "--trellis-capture-status ";
/// The most requests one captured step may send (curl runs them one after the other).
const MAX_CAPTURED_COUNT: usize = 2000;

/// Why captured scenarios cannot run here (not root, no iptables, setpriv or curl), if so.
pub fn missing_requirements() -> Option<String> {
    crate::pods::missing_requirements().or_else(|| {
        let curl = Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        (!curl).then(|| "captured scenarios need curl".to_string())
    })
}

/// Checks that every step is one captured mode supports.
pub(super) fn validate(scenario: &Scenario) -> anyhow::Result<()> {
    for (i, step) in scenario.steps.iter().enumerate() {
        match step.kind()? {
            StepKind::Request(r, e) => {
                check_request(r).with_context(|| format!("steps[{i}]"))?;
                if !e.served.is_empty()
                    || !e.shadow.is_empty()
                    || e.access_log.is_some()
                    || e.trace.is_some()
                    || !e.metrics.is_empty()
                    || e.within_ms.is_some()
                {
                    bail!(
                        "steps[{i}].expect: mode capture judges responses only (no served, \
                         shadow, access_log, trace, metrics or within_ms)"
                    );
                }
            }
            StepKind::Apply(_) | StepKind::Remove(_) | StepKind::Sleep(_) => {}
            _ => bail!("steps[{i}]: mode capture supports request, apply, remove and sleep_ms"),
        }
    }
    if !scenario.gateways.is_empty()
        || !scenario.externals.is_empty()
        || scenario.zipkin.is_some()
        || scenario.jwks_server.is_some()
        || scenario.ext_authz_server.is_some()
    {
        bail!(
            "mode capture does not support gateways, externals (use the `outside` pod), zipkin, \
             jwks_server or ext_authz_server"
        );
    }
    if scenario
        .services
        .iter()
        .any(|s| s.port_name.is_some() || s.app_protocol.is_some())
    {
        bail!(
            "mode capture names service ports after their protocol (no port_name or app_protocol)"
        );
    }
    Ok(())
}

fn check_request(r: &RequestDef) -> anyhow::Result<()> {
    if r.grpc.is_some() || r.websocket.is_some() || r.tcp.is_some() || r.jwt.is_some() {
        bail!("mode capture sends plain HTTP requests (no grpc, websocket, tcp or jwt)");
    }
    if matches!(r.via, Via::Gateway) {
        bail!("mode capture has no gateways");
    }
    if r.count > MAX_CAPTURED_COUNT {
        bail!("mode capture sends at most {MAX_CAPTURED_COUNT} requests per step");
    }
    Ok(())
}

/// Runs a captured scenario; like [`super::run()`], it always tears the pods down.
pub(super) fn run(
    scenario: &Scenario,
    options: &RunOptions,
    progress: &mut dyn FnMut(&str),
) -> RunReport {
    let started = Instant::now();
    let mut report = RunReport {
        passed: false,
        detail: String::new(),
        nacks: 0,
        steps: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut spec = scenario.mesh_spec(options.base, options.dataplane);
    spec.extra_yaml = scenario.config.clone().unwrap_or_default();
    let o = options.base.octets();
    let prefix = format!("cs{}x{}", o[1], o[2]);
    let mut pod_options = PodOptions::new(&options.trellis_bin, &options.run_dir, prefix);
    pod_options.envoy_bin = options.envoy_bin.clone();
    pod_options.startup_timeout = options.startup_timeout;
    pod_options.mesh_config = scenario.mesh_config.clone();
    pod_options.outside = true;
    let mut mesh = match PodMesh::start(spec, pod_options) {
        Ok(m) => m,
        Err(e) => {
            report.detail = format!("{e:#}");
            report.elapsed = started.elapsed();
            return report;
        }
    };
    progress(&format!(
        "pods up in {:.1}s (config applied)",
        started.elapsed().as_secs_f64()
    ));
    let mut result = Ok(());
    for (i, step) in scenario.steps.iter().enumerate() {
        match run_step(step, options, &mut mesh) {
            Ok(line) => {
                let line = format!("step {}: {line}", i + 1);
                progress(&line);
                report.steps.push(line);
            }
            Err(e) => {
                result = Err(e.context(format!("step {}", i + 1)));
                break;
            }
        }
    }
    report.nacks = mesh.nack_count();
    let run_dir = mesh.run_dir().display().to_string();
    mesh.shutdown();
    match result {
        Ok(()) => {
            report.passed = true;
            report.detail = report.steps.last().cloned().unwrap_or_default();
        }
        Err(e) => report.detail = format!("{e:#} (logs in {run_dir})"),
    }
    report.elapsed = started.elapsed();
    report
}

fn run_step(step: &Step, options: &RunOptions, mesh: &mut PodMesh) -> anyhow::Result<String> {
    match step.kind()? {
        StepKind::Request(r, expect) => {
            let outcomes = send(mesh, r)?;
            let summary = Summary::from_outcomes(&outcomes);
            let mut problems: Vec<String> =
                check_expect(expect, &summary).err().into_iter().collect();
            problems.extend(check_outcomes(expect, &outcomes));
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            Ok(format!(
                "{} {}{} by curl: {summary}",
                r.method, r.authority, r.path
            ))
        }
        StepKind::Apply(f) => {
            mesh.apply(&f.file, &f.content)?;
            mesh.wait_synced(options.sync_deadline())?;
            Ok(format!("applied {} and synced", f.file))
        }
        StepKind::Remove(r) => {
            mesh.remove(&r.file)?;
            mesh.wait_synced(options.sync_deadline())?;
            Ok(format!("removed {} and synced", r.file))
        }
        StepKind::Sleep(ms) => {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(format!("slept {ms}ms"))
        }
        _ => bail!("not supported in mode capture"),
    }
}

/// Sends the request `count` times with one curl (URL globbing: one connection, one after the
/// other) and reads every response.
fn send(mesh: &PodMesh, r: &RequestDef) -> anyhow::Result<Vec<Outcome>> {
    let count = r.count.max(1);
    let mut path = if r.path.is_empty() {
        "/".to_string()
    } else {
        r.path.clone()
    };
    if count > 1 {
        // curl's globbing makes `count` distinct URLs; the echo app ignores the parameter.
        let sep = if path.contains('?') { '&' } else { '?' };
        path = format!("{path}{sep}curl_n=[1-{count}]");
    }
    let (pod, url, host) = match r.via {
        Via::Direct => {
            let (name, port) = r.authority.rsplit_once(':').unwrap_or((&r.authority, "80"));
            let service = name.split('.').next().unwrap_or(name);
            let target = mesh.pod(service)?;
            (
                OUTSIDE_POD,
                format!("http://{}:{port}{path}", target.ip),
                Some(r.authority.clone()),
            )
        }
        _ => (CLIENT_POD, format!("http://{}{path}", r.authority), None),
    };
    let mut cmd = mesh.command(pod, None, "curl")?;
    cmd.args(["-sS", "-i", "--max-time", "10", "-X", &r.method, "-w"])
        .arg(format!("\n{MARKER}%{{http_code}}\n"));
    if let Some(host) = host {
        cmd.arg("-H").arg(format!("host: {host}"));
    }
    for (k, v) in &r.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    if let Some(body) = &r.body {
        cmd.arg("--data-binary").arg(body);
    }
    if matches!(r.protocol, crate::http::Protocol::Http2) {
        cmd.arg("--http2-prior-knowledge");
    }
    let out = cmd.arg(&url).output().context("running curl in a pod")?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let outcomes = parse_responses(&String::from_utf8_lossy(&out.stdout), &stderr);
    if outcomes.len() != count {
        bail!(
            "curl {url} gave {} responses for {count} requests: {stderr}",
            outcomes.len()
        );
    }
    Ok(outcomes)
}

/// Splits curl's `-i` output (head, body, then the marker line) into outcomes.
fn parse_responses(text: &str, stderr: &str) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(MARKER) {
        let response = rest[..at].trim_start_matches(['\r', '\n']);
        let after = &rest[at + MARKER.len()..];
        let (code, tail) = after.split_once('\n').unwrap_or((after, ""));
        rest = tail;
        let mut outcome = Outcome::default();
        match code.trim().parse::<u16>() {
            Ok(status) if status > 0 => {
                outcome.status = Some(status);
                fill(&mut outcome, response);
            }
            _ => {
                outcome.error = Some(if stderr.is_empty() {
                    "no response".to_string()
                } else {
                    stderr.lines().next().unwrap_or_default().to_string()
                })
            }
        }
        out.push(outcome);
    }
    out
}

/// Headers and body of one response (its last head: curl prints `100 Continue` heads too).
fn fill(outcome: &mut Outcome, response: &str) {
    let mut response = response;
    while response.starts_with("HTTP/1.1 100") {
        response = response
            .split_once("\r\n\r\n")
            .map(|(_, r)| r)
            .unwrap_or_default();
    }
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    // The `-w` line starts with a newline curl adds after the body.
    let body = body.strip_suffix('\n').unwrap_or(body);
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let v = value.trim().to_string();
            outcome
                .headers
                .entry(name.trim().to_ascii_lowercase())
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(&v);
                })
                .or_insert(v);
        }
    }
    outcome.body = body.chars().take(4096).collect();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        outcome.set_echo_reply(&v);
    }
    let reason = outcome.headers.get("x-trellis-reason").cloned();
    outcome.flag = reason
        .as_deref()
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
        .or_else(|| {
            outcome
                .headers
                .contains_key("x-envoy-overloaded")
                .then(|| "UO".to_string())
        });
    if !outcome.status.is_some_and(|s| (200..300).contains(&s)) {
        outcome.reason = reason;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curl_output() {
        let text = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-a: 1\r\n\r\n{{\"version\":\"v2\",\"service\":\"echo\"}}\n{MARKER}200\n\
             HTTP/1.1 502 Bad Gateway\r\nx-trellis-reason: NR no route\r\n\r\n\n{MARKER}502\n\n{MARKER}000\n"
        );
        let o = parse_responses(&text, "curl: (7) Failed to connect");
        assert_eq!(o.len(), 3);
        assert_eq!(o[0].status, Some(200));
        assert_eq!(o[0].version.as_deref(), Some("v2"));
        assert_eq!(o[0].headers.get("x-a").map(String::as_str), Some("1"));
        assert_eq!(o[1].status, Some(502));
        assert_eq!(o[1].flag.as_deref(), Some("NR"));
        assert_eq!(o[2].status, None);
        assert!(o[2].error.as_deref().unwrap_or_default().contains("Failed"));
    }
}
