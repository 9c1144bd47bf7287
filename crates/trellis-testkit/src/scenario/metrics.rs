//! The `metrics` expectation: how much a proxy's Prometheus metric grew during a step, summed
//! over the series whose labels include the given ones. Read from the proxy's admin
//! `/stats/prometheus` before and after the step; the proxies record a request when its
//! response ends, so the value is polled for within a deadline.
//!
//! ```yaml
//! expect:
//!   metrics:
//!     - proxy: client                       # or a workload name such as echo-v1-0
//!       name: istio_requests_total          # a sample name (histograms: NAME_count, NAME_bucket)
//!       labels: {reporter: source, destination_version: v1, response_code: "200"}
//!       value: {min: 100, max: 100}         # growth during the step, summed over matches
//!       dataplane: trellis                  # optional: only checked on this data plane
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Bound;
use crate::mesh::Mesh;

/// How long a metric may take to reach its bound.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);
/// How often the metrics are re-read.
const POLL: Duration = Duration::from_millis(200);

/// One entry of `metrics:` in an `expect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricExpect {
    /// Whose metrics: `client` (default) or a workload name.
    #[serde(default = "client")]
    pub proxy: String,
    /// The sample name, e.g. `istio_requests_total`.
    pub name: String,
    /// Labels every counted series has (others may have any value).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The growth during the step, summed over the matching series.
    pub value: Bound,
    /// Only checked on this data plane (its metric names differ, e.g. Envoy's own stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<crate::mesh::Dataplane>,
}

/// The expectations that apply to `mesh`'s data plane.
fn applicable<'a>(
    mesh: &Mesh,
    expects: &'a [MetricExpect],
) -> impl Iterator<Item = &'a MetricExpect> {
    let dataplane = mesh.dataplane();
    expects
        .iter()
        .filter(move |e| e.dataplane.is_none_or(|d| d == dataplane))
}

fn client() -> String {
    "client".to_string()
}

/// One sample of a text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Parses the samples of a Prometheus text exposition (comments and malformed lines skipped).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(i) if !line[..i].contains(' ') => {
            let (labels, rest) = parse_labels(&line[i + 1..])?;
            (&line[..i], labels, rest)
        }
        _ => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"} rest` → labels and `rest`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_string(), value);
        s = &rest[end + 1..];
    }
}

/// The sum of the samples named `name` whose labels include `labels`.
pub fn sum_matching(samples: &[Sample], name: &str, labels: &BTreeMap<String, String>) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

async fn scrape(mesh: &Mesh, proxy: &str) -> anyhow::Result<Vec<Sample>> {
    let info = mesh
        .proxies()
        .iter()
        .find(|p| p.workload == proxy)
        .with_context(|| format!("no sidecar named {proxy:?} in the mesh"))?;
    let url = format!("http://{}/stats/prometheus", info.admin());
    let response = crate::http::get(&url, Duration::from_secs(5)).await?;
    if response.status != 200 {
        bail!("GET {url}: status {}", response.status);
    }
    Ok(samples(&response.text()))
}

/// The values before the step, one per expectation.
pub(crate) async fn before(mesh: &Mesh, expects: &[MetricExpect]) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(expects.len());
    for e in applicable(mesh, expects) {
        out.push(sum_matching(
            &scrape(mesh, &e.proxy).await?,
            &e.name,
            &e.labels,
        ));
    }
    Ok(out)
}

/// Polls until every expectation's growth since `before` is within its bound, or the deadline.
pub(crate) async fn check(
    mesh: &Mesh,
    expects: &[MetricExpect],
    before: &[f64],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        let mut problems = Vec::new();
        for (e, base) in applicable(mesh, expects).zip(before) {
            let now = sum_matching(&scrape(mesh, &e.proxy).await?, &e.name, &e.labels);
            let grew = (now - base).max(0.0).round() as usize;
            if !e.value.holds(grew) {
                problems.push(format!(
                    "{} of {} with {:?} grew by {grew}, expected {}",
                    e.name, e.proxy, e.labels, e.value
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        if Instant::now() + POLL >= deadline {
            bail!("{}", problems.join("; "));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_escaped_labels() {
        let text = "# HELP x y\n# TYPE istio_requests counter\n\
            istio_requests_total{reporter=\"source\",path=\"a\\\"b,c}\",response_code=\"200\"} 7\n\
            istio_requests_total{reporter=\"destination\",response_code=\"200\"} 5\n\
            plain 2.5\n# EOF\n";
        let s = samples(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].labels["path"], "a\"b,c}");
        let want = BTreeMap::from([("response_code".to_string(), "200".to_string())]);
        assert_eq!(sum_matching(&s, "istio_requests_total", &want), 12.0);
        let want = BTreeMap::from([("reporter".to_string(), "source".to_string())]);
        assert_eq!(sum_matching(&s, "istio_requests_total", &want), 7.0);
        assert_eq!(sum_matching(&s, "plain", &BTreeMap::new()), 2.5);
    }
}
