//! Expectations: what the responses of a step (and the echo apps' counters) must look like,
//! and the checks that compare them with what happened.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{Outcome, Summary};

/// The default split tolerance, in percentage points.
pub const DEFAULT_TOLERANCE: f64 = 3.0;

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
    /// Every response has these response headers, each containing this text (e.g. the
    /// attributes of a generated `set-cookie`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers_contain: BTreeMap<String, String>,
    /// How many distinct values each response header took over the responses (absent ones
    /// not counted), e.g. the echo app's `x-echo-connection` for connections used upstream.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub distinct_headers: BTreeMap<String, Bound>,
    /// No response has these response headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_absent: Vec<String>,
    /// The echo app saw these request headers with these values on every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: BTreeMap<String, String>,
    /// The echo app saw these request headers, each containing this text, on every request
    /// (e.g. the peer's identity in `x-forwarded-client-cert`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers_contain: BTreeMap<String, String>,
    /// The echo app saw none of these request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_absent: Vec<String>,
    /// The echo app received each of these request header names in exactly this case, on every
    /// HTTP/1.1 request (its `header_names`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_header_names: Vec<String>,
    /// Every response had each of these header names in exactly this case (a request with
    /// `raw_header_case`, which keeps them as received).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_header_names: Vec<String>,
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
    /// How many requests got no HTTP response at all (refused, reset or closed connection,
    /// failed handshake): e.g. `{min: 20, max: 20}` for plaintext refused under STRICT mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_errors: Option<Bound>,
    /// gRPC: every call ended with this `grpc-status` (0 = OK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<i32>,
    /// gRPC: how many calls ended with each `grpc-status` (`{14: {max: 0}}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grpc_status_counts: BTreeMap<i32, Bound>,
    /// gRPC and WebSocket: every call received exactly this many reply messages (gRPC
    /// replies, WebSocket echoes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<usize>,
    /// Lines a sidecar's access log got during the step (see `scenario/access_log.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<super::access_log::AccessLogExpect>,
    /// Spans the scenario's Zipkin collector got during the step (see `scenario/trace.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<super::trace::TraceExpect>,
    /// How much proxies' Prometheus metrics grew during the step (see `scenario/metrics.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<super::metrics::MetricExpect>,
    /// `request` steps: the responses may take up to this long to meet `status`/per-response
    /// expectations (the requests are re-sent every 200 ms until they do), then one more round
    /// is judged. For changes that existing connections see late, such as Envoy draining
    /// connections of a replaced filter chain for `--drain-time-s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<u64>,
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
    if let Some(bound) = &expect.transport_errors {
        let n = count_where(&|o| o.status.is_none() && o.grpc_status.is_none());
        if !bound.holds(n) {
            let example = outcomes
                .iter()
                .find_map(|o| o.error.as_deref())
                .unwrap_or("none");
            problems.push(format!(
                "expected {bound} requests without a response, got {n} (e.g. {example})"
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
    if let Some(code) = expect.grpc_status {
        let bad: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.grpc_status != Some(code))
            .collect();
        if let Some(first) = bad.first() {
            problems.push(format!(
                "expected every call to end with grpc-status {code}, {} of {total} did not (e.g. grpc-status {:?}, {})",
                bad.len(),
                first.grpc_status,
                first.error.as_deref().unwrap_or("no error")
            ));
        }
    }
    for (code, bound) in &expect.grpc_status_counts {
        let n = count_where(&|o| o.grpc_status == Some(*code));
        if !bound.holds(n) {
            problems.push(format!(
                "expected {bound} calls with grpc-status {code}, got {n}"
            ));
        }
    }
    if let Some(n) = expect.messages {
        let bad = count_where(&|o| o.messages != n);
        if bad > 0 {
            problems.push(format!(
                "expected every call to receive {n} reply messages, {bad} of {total} did not"
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
    for (name, text) in &expect.headers_contain {
        every(
            format!("expected response header {name} containing {text:?}"),
            &|o| {
                o.headers
                    .get(name)
                    .is_some_and(|v| v.contains(text.as_str()))
            },
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
    for (name, text) in &expect.request_headers_contain {
        every(
            format!("expected the app to see request header {name} containing {text:?}"),
            &|o| {
                o.echo_headers
                    .get(name)
                    .is_some_and(|v| v.contains(text.as_str()))
            },
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
    for name in &expect.request_header_names {
        every(
            format!("expected the app to receive the header name {name:?} in this case"),
            &|o| o.echo_header_names.iter().any(|n| n == name),
            &|o| format!("names {:?}", o.echo_header_names),
        );
    }
    for name in &expect.response_header_names {
        every(
            format!("expected the response header name {name:?} in this case"),
            &|o| o.header_names.iter().any(|n| n == name),
            &|o| format!("names {:?}", o.header_names),
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
    for (name, bound) in &expect.distinct_headers {
        let distinct: std::collections::BTreeSet<&str> = outcomes
            .iter()
            .filter_map(|o| o.headers.get(name).map(String::as_str))
            .collect();
        if !bound.holds(distinct.len()) {
            problems.push(format!(
                "expected {bound} distinct values of response header {name}, got {} ({})",
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn response_header_substrings_and_distinct_values() {
        let answer = |connection: &str| crate::client::Outcome {
            status: Some(200),
            headers: BTreeMap::from([
                (
                    "set-cookie".to_string(),
                    "s=\"ab\"; Max-Age=60; HttpOnly".to_string(),
                ),
                ("x-echo-connection".to_string(), connection.to_string()),
            ]),
            ..Default::default()
        };
        let outcomes = [answer("1"), answer("1"), answer("2")];
        let mut e = Expect {
            headers_contain: BTreeMap::from([(
                "set-cookie".to_string(),
                "; Max-Age=60;".to_string(),
            )]),
            distinct_headers: BTreeMap::from([(
                "x-echo-connection".to_string(),
                Bound {
                    min: Some(2),
                    max: Some(2),
                },
            )]),
            ..Default::default()
        };
        assert!(check_outcomes(&e, &outcomes).is_empty());
        e.headers_contain
            .insert("set-cookie".to_string(), "Path=/".to_string());
        e.distinct_headers.insert(
            "x-echo-connection".to_string(),
            Bound {
                min: None,
                max: Some(1),
            },
        );
        let problems = check_outcomes(&e, &outcomes);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[1].contains("distinct values of response header x-echo-connection, got 2")
        );
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
}
