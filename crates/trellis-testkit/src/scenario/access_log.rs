//! The `access_log` expectation: lines a sidecar wrote to its output (where access logs to
//! `/dev/stdout` go) while a step ran. Both Envoy and Trellis buffer access logs (Envoy flushes
//! every second), so lines are polled for within a deadline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::mesh::Mesh;

/// How long lines may take to appear (Envoy's flush interval is 1 s).
const APPEAR_WITHIN: Duration = Duration::from_secs(10);
/// How long an `absent` check waits for lines that should never come (two flush intervals).
const ABSENT_FOR: Duration = Duration::from_millis(2500);
/// How often the log is re-read.
const POLL: Duration = Duration::from_millis(100);

/// `access_log:` in an `expect`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogExpect {
    /// Whose log: `client` (default) or a workload name such as `echo-v1-0`.
    #[serde(default = "client")]
    pub proxy: String,
    /// Each text appears in some line written during the step.
    #[serde(default)]
    pub contains: Vec<String>,
    /// Some JSON line written during the step has all these fields with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub json: BTreeMap<String, serde_json::Value>,
    /// No line written during the step contains any of these texts (checked after the others
    /// hold, and after waiting out two flush intervals).
    #[serde(default)]
    pub absent: Vec<String>,
}

fn client() -> String {
    "client".to_string()
}

/// Where the step's lines start: the log's length before it.
pub(crate) fn offset(mesh: &Mesh, e: &AccessLogExpect) -> u64 {
    std::fs::metadata(mesh.proxy_log_path(&e.proxy))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn new_lines(path: &Path, from: u64) -> anyhow::Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[start..])
        .lines()
        .map(str::to_string)
        .collect())
}

fn json_matches(line: &str, fields: &BTreeMap<String, serde_json::Value>) -> bool {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(line) else {
        return false;
    };
    fields.iter().all(|(k, v)| o.get(k) == Some(v))
}

fn missing(lines: &[String], e: &AccessLogExpect) -> Vec<String> {
    let mut out: Vec<String> = e
        .contains
        .iter()
        .filter(|t| !lines.iter().any(|l| l.contains(t.as_str())))
        .map(|t| format!("no line contains {t:?}"))
        .collect();
    if !e.json.is_empty() && !lines.iter().any(|l| json_matches(l, &e.json)) {
        out.push(format!(
            "no JSON line has {}",
            serde_json::to_string(&e.json).unwrap_or_default()
        ));
    }
    out
}

/// Checks the expectation against what the proxy wrote since `from`.
pub(crate) async fn check(mesh: &Mesh, e: &AccessLogExpect, from: u64) -> anyhow::Result<()> {
    let path = mesh.proxy_log_path(&e.proxy);
    let deadline = Instant::now() + APPEAR_WITHIN;
    loop {
        let lines = new_lines(&path, from)?;
        let problems = missing(&lines, e);
        if problems.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "access log of {} ({}): {}; its new lines: {:?}",
                e.proxy,
                path.display(),
                problems.join("; "),
                lines.iter().rev().take(5).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    if !e.absent.is_empty() {
        tokio::time::sleep(ABSENT_FOR).await;
        let lines = new_lines(&path, from)?;
        for t in &e.absent {
            if let Some(l) = lines.iter().find(|l| l.contains(t.as_str())) {
                bail!("access log of {}: a line contains {t:?}: {l}", e.proxy);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let e = AccessLogExpect {
            contains: vec!["\" 503 UH".into()],
            json: [("response_code".to_string(), serde_json::json!(503))].into(),
            ..Default::default()
        };
        let lines = vec![
            "\"GET / HTTP/1.1\" 503 UH no_healthy_upstream".to_string(),
            r#"{"response_code":503,"path":"/"}"#.to_string(),
        ];
        assert!(missing(&lines, &e).is_empty());
        assert_eq!(missing(&lines[..1], &e).len(), 1);
    }
}
