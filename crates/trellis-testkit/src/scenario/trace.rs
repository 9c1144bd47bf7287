//! The `trace` expectation: spans the scenario's Zipkin collector (`zipkin:` key) received
//! during a step. Proxies export asynchronously (Envoy flushes every 5 s by default), so spans
//! are polled for within a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::expect::Bound;
use crate::zipkin::Span;

/// How long spans may take to arrive (Envoy's Zipkin flush interval is 5 s).
const ARRIVE_WITHIN: Duration = Duration::from_secs(20);
/// How often the collector is asked.
const POLL: Duration = Duration::from_millis(250);

/// `zipkin:` at the top of a scenario: a Zipkin v2 collector the runner starts on
/// `127.0.0.1:PORT` (the scenario's config declares it, e.g. as a `ServiceEntry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZipkinDef {
    /// Its port on 127.0.0.1 (pick one unlikely to be in use, e.g. 18000-19999).
    pub port: u16,
}

/// `trace:` in an `expect`: what the spans received during the step look like.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceExpect {
    /// How many spans arrive (waited for until the lower bound holds).
    pub spans: Bound,
    /// How many distinct trace ids (e.g. `{min: 1, max: 1}` for one request).
    #[serde(default)]
    pub traces: Option<Bound>,
    /// Every parent id names a span of the same trace, and each trace has exactly one root.
    #[serde(default)]
    pub linked: bool,
    /// Every span belongs to this trace (hex), e.g. one the request's B3 headers started.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// For `linked`: the caller's span the root continues (a span outside the mesh).
    #[serde(default)]
    pub external_parent: Option<String>,
    /// Spans per kind, e.g. `{SERVER: {min: 4}, CLIENT: {min: 4}}`.
    #[serde(default)]
    pub kinds: BTreeMap<String, Bound>,
    /// Tags every span carries.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Tags every `SERVER` span carries (Envoy puts the request's tags there only).
    #[serde(default)]
    pub server_tags: Vec<String>,
    /// Tags with a value some span carries (`{"http.method": "GET"}`).
    #[serde(default)]
    pub tag_values: BTreeMap<String, String>,
    /// Local service names (`WORKLOAD.NAMESPACE`) that recorded both a SERVER and a CLIENT span.
    #[serde(default)]
    pub services: Vec<String>,
    /// Duration of every span of a kind, in whole milliseconds (`{SERVER: {min: 300}}`): a span
    /// must last as long as the work it covers (e.g. an app's `delay_ms`), not end early.
    #[serde(default)]
    pub duration_ms: BTreeMap<String, Bound>,
    /// Every span has a start and a duration, and lies within its parent's interval (±1 ms):
    /// a hop's span covers the spans of the hops it called.
    #[serde(default)]
    pub nested: bool,
}

/// Slack for [`TraceExpect::nested`]: spans from different processes are rounded differently.
const NESTING_SLACK_US: u64 = 1_000;

/// All spans the collector holds.
pub(crate) async fn fetch(collector: SocketAddr) -> anyhow::Result<Vec<Span>> {
    let url = format!("http://{collector}{}", crate::zipkin::SPANS_PATH);
    let r = crate::http::get(&url, Duration::from_secs(5)).await?;
    serde_json::from_slice(&r.body).with_context(|| format!("GET {url}"))
}

fn problems(spans: &[Span], e: &TraceExpect) -> Vec<String> {
    let mut out = Vec::new();
    if !e.spans.holds(spans.len()) {
        out.push(format!("{} spans, expected {}", spans.len(), e.spans));
    }
    let mut by_trace: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in spans {
        by_trace.entry(s.trace_id.as_str()).or_default().push(s);
    }
    if let Some(b) = e.traces
        && !b.holds(by_trace.len())
    {
        out.push(format!("{} traces, expected {b}", by_trace.len()));
    }
    if e.linked {
        for (trace, members) in &by_trace {
            let ids: BTreeSet<&str> = members.iter().map(|s| s.id.as_str()).collect();
            let is_root = |s: &&&Span| {
                s.parent_id.is_none() || s.parent_id.as_deref() == e.external_parent.as_deref()
            };
            let roots = members.iter().filter(is_root).count();
            if roots != 1 {
                out.push(format!("trace {trace} has {roots} root spans, expected 1"));
            }
            for s in members {
                if let Some(p) = &s.parent_id
                    && !ids.contains(p.as_str())
                    && Some(p.as_str()) != e.external_parent.as_deref()
                {
                    out.push(format!(
                        "span {} ({}) of trace {trace} has parent {p}, which is not in the trace",
                        s.id, s.name
                    ));
                }
            }
        }
    }
    if let Some(t) = &e.trace_id
        && let Some(s) = spans.iter().find(|s| &s.trace_id != t)
    {
        out.push(format!(
            "span {} ({}) is in trace {}, expected {t}",
            s.id, s.name, s.trace_id
        ));
    }
    for (kind, bound) in &e.kinds {
        let n = spans
            .iter()
            .filter(|s| s.kind.as_deref() == Some(kind.as_str()))
            .count();
        if !bound.holds(n) {
            out.push(format!("{n} {kind} spans, expected {bound}"));
        }
    }
    for tag in &e.tags {
        if let Some(s) = spans.iter().find(|s| !s.tags.contains_key(tag)) {
            out.push(format!(
                "span {} ({}) has no tag {tag:?}: {:?}",
                s.id, s.name, s.tags
            ));
        }
    }
    for tag in &e.server_tags {
        if let Some(s) = spans
            .iter()
            .filter(|s| s.kind.as_deref() == Some("SERVER"))
            .find(|s| !s.tags.contains_key(tag))
        {
            out.push(format!(
                "SERVER span {} ({}) has no tag {tag:?}: {:?}",
                s.id, s.name, s.tags
            ));
        }
    }
    for (tag, value) in &e.tag_values {
        if !spans.iter().any(|s| s.tags.get(tag) == Some(value)) {
            out.push(format!("no span has tag {tag}={value:?}"));
        }
    }
    for (kind, bound) in &e.duration_ms {
        for span in spans
            .iter()
            .filter(|s| s.kind.as_deref() == Some(kind.as_str()))
        {
            let ms = span.duration.map(|us| (us / 1000) as usize);
            if !ms.is_some_and(|ms| bound.holds(ms)) {
                out.push(format!(
                    "{kind} span {} ({}) lasted {ms:?} ms, expected {bound}",
                    span.id, span.name
                ));
            }
        }
    }
    if e.nested {
        out.extend(nesting_problems(spans));
    }
    for service in &e.services {
        let kinds: BTreeSet<&str> = spans
            .iter()
            .filter(|s| {
                s.local_endpoint
                    .as_ref()
                    .and_then(|l| l.service_name.as_deref())
                    == Some(service.as_str())
            })
            .filter_map(|s| s.kind.as_deref())
            .collect();
        if !(kinds.contains("SERVER") && kinds.contains("CLIENT")) {
            out.push(format!(
                "service {service} recorded span kinds {kinds:?}, expected SERVER and CLIENT"
            ));
        }
    }
    out
}

/// Spans without timing, or outside their parent's `[start, end]` (with [`NESTING_SLACK_US`]).
fn nesting_problems(spans: &[Span]) -> Vec<String> {
    let interval = |s: &Span| Some((s.timestamp?, s.timestamp? + s.duration?));
    let mut out = Vec::new();
    for span in spans {
        let Some((start, end)) = interval(span) else {
            out.push(format!(
                "span {} ({}) has no timestamp or duration",
                span.id, span.name
            ));
            continue;
        };
        let parent = span.parent_id.as_deref().and_then(|p| {
            spans
                .iter()
                .find(|s| s.id == p && s.trace_id == span.trace_id)
        });
        if let Some((p_start, p_end)) = parent.and_then(interval)
            && (start + NESTING_SLACK_US < p_start || end > p_end + NESTING_SLACK_US)
        {
            out.push(format!(
                "span {} ({}) [{start}, {end}] µs is outside its parent's [{p_start}, {p_end}]",
                span.id, span.name
            ));
        }
    }
    out
}

/// Waits (within [`ARRIVE_WITHIN`]) for the spans that arrived after the first `before` ones to
/// satisfy `e`; then lets a last export interval pass so an upper bound is meaningful.
pub(crate) async fn check(
    collector: SocketAddr,
    e: &TraceExpect,
    before: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + ARRIVE_WITHIN;
    loop {
        let all = fetch(collector).await?;
        let fresh = all.get(before..).unwrap_or_default();
        let found = problems(fresh, e);
        if found.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("trace: {}", found.join("; "));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: &str, id: &str, parent: Option<&str>, kind: &str) -> Span {
        Span {
            trace_id: trace.into(),
            id: id.into(),
            parent_id: parent.map(str::to_string),
            name: "n".into(),
            kind: Some(kind.into()),
            timestamp: None,
            duration: None,
            local_endpoint: None,
            tags: [("node_id".to_string(), "x".to_string())].into(),
        }
    }

    #[test]
    fn linkage() {
        let e = TraceExpect {
            spans: Bound {
                min: Some(3),
                max: None,
            },
            traces: Some(Bound {
                min: Some(1),
                max: Some(1),
            }),
            linked: true,
            tags: vec!["node_id".into()],
            ..Default::default()
        };
        let good = [
            span("t", "a", None, "SERVER"),
            span("t", "b", Some("a"), "CLIENT"),
            span("t", "c", Some("b"), "SERVER"),
        ];
        assert!(problems(&good, &e).is_empty());
        let broken = [
            span("t", "a", None, "SERVER"),
            span("t", "b", Some("zz"), "CLIENT"),
            span("u", "c", None, "SERVER"),
        ];
        let p = problems(&broken, &e);
        assert!(p.iter().any(|p| p.contains("2 traces")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("parent zz")), "{p:?}");
    }

    fn timed(id: &str, parent: Option<&str>, kind: &str, start: u64, duration: u64) -> Span {
        Span {
            timestamp: Some(start),
            duration: Some(duration),
            ..span("t", id, parent, kind)
        }
    }

    #[test]
    fn durations_and_nesting() {
        let e = TraceExpect {
            duration_ms: [(
                "SERVER".to_string(),
                Bound {
                    min: Some(300),
                    max: Some(2000),
                },
            )]
            .into(),
            nested: true,
            ..Default::default()
        };
        let good = [
            timed("a", None, "SERVER", 1_000_000, 400_000),
            timed("b", Some("a"), "CLIENT", 1_010_000, 380_000),
            timed("c", Some("b"), "SERVER", 1_020_000, 360_500),
        ];
        assert!(problems(&good, &e).is_empty(), "{:?}", problems(&good, &e));
        // A server span that ended before the work it covers, and a child outliving its parent.
        let bad = [
            timed("a", None, "SERVER", 1_000_000, 400_000),
            timed("b", Some("a"), "CLIENT", 1_010_000, 500_000),
            timed("c", Some("b"), "SERVER", 1_020_000, 5_000),
            span("t", "d", Some("a"), "CLIENT"),
        ];
        let p = problems(&bad, &e);
        assert!(
            p.iter()
                .any(|p| p.contains("span c") && p.contains("lasted Some(5) ms")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("span b") && p.contains("outside")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("span d") && p.contains("no timestamp")),
            "{p:?}"
        );
    }
}
