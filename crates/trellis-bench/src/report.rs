//! The benchmark's outputs: `sidecar.json`, `control-plane.json`, and markdown tables.

use serde::{Deserialize, Serialize};

/// One row of `target/bench/sidecar.json`. A latency row has `rate` and the percentiles (and the
/// proxies' CPU and memory during that run); a throughput row has `max_rps` and `rate: null`.
/// Fields that do not apply are `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarRun {
    /// `direct`, `trellis`, `envoy`, or the opt-in `trellis-notelemetry` / `envoy-notelemetry`
    /// (the same under a mesh-wide Telemetry turning metrics, access logs and tracing off).
    pub dataplane: String,
    /// `http1`, `http2` or `grpc`.
    pub protocol: String,
    /// The offered request rate (open loop), requests per second.
    pub rate: Option<u64>,
    /// Median latency (ms, from each request's intended send time).
    pub p50_ms: Option<f64>,
    /// 90th percentile latency (ms).
    pub p90_ms: Option<f64>,
    /// 99th percentile latency (ms).
    pub p99_ms: Option<f64>,
    /// 99.9th percentile latency (ms).
    pub p999_ms: Option<f64>,
    /// Closed-loop maximum throughput (requests per second).
    pub max_rps: Option<f64>,
    /// CPU seconds per 1000 requests, per proxy (mean of the client-side and server-side
    /// sidecars; every request passes through both).
    pub cpu_s_per_1k: Option<f64>,
    /// Resident memory per proxy (MiB, mean of the two sidecars on the path), after the run.
    pub rss_mb: Option<f64>,
}

/// `target/bench/sidecar.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SidecarReport {
    /// Every row.
    pub runs: Vec<SidecarRun>,
}

/// One row of `target/bench/control-plane.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlPlaneRun {
    /// Services (ServiceEntry + one WorkloadEntry each) in the config.
    pub services: u64,
    /// Simulated proxies (ADS clients).
    pub proxies: u64,
    /// Milliseconds from a config change until 99% of the proxies had ACKed it (median over
    /// the changes).
    pub ack99_ms: Option<f64>,
    /// The control plane's resident memory (MiB) once every proxy was synced.
    pub cp_rss_mb: Option<f64>,
    /// Control-plane CPU seconds over the run (initial sync, the changes and the resync).
    pub cp_cpu_s: Option<f64>,
    /// Seconds from starting a fresh control plane until every proxy had reconnected and
    /// ACKed its full config.
    pub resync_s: Option<f64>,
    /// Bytes of `DiscoveryResponse`s received by all proxies over the run.
    pub bytes_pushed: Option<u64>,
}

/// `target/bench/control-plane.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ControlPlaneReport {
    /// Every row.
    pub runs: Vec<ControlPlaneRun>,
}

/// A simple markdown table builder.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are left empty, extra cells dropped).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut r: Vec<String> = cells.into_iter().map(Into::into).collect();
        r.resize(self.header.len(), String::new());
        self.rows.push(r);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as GitHub markdown, columns padded for reading in a terminal.
    pub fn to_markdown(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count()).max(3);
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate().take(n) {
                s.push(' ');
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i].saturating_sub(c.chars().count())));
                s.push_str(" |");
            }
            s.push('\n');
            s
        };
        let mut out = line(&self.header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// Formats an optional number with `digits` decimals, `-` when absent.
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".to_string(),
    }
}

/// Formats a signed difference (`+0.123`), `-` when absent.
pub fn fmt_delta(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:+.digits$}"),
        _ => "-".to_string(),
    }
}

/// Writes `contents` to `path`, creating its directory.
pub fn write_file(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn sidecar_json_shape() -> anyhow::Result<()> {
        let report = SidecarReport {
            runs: vec![
                SidecarRun {
                    dataplane: "trellis".into(),
                    protocol: "http1".into(),
                    rate: Some(1000),
                    p50_ms: Some(0.5),
                    p90_ms: Some(0.7),
                    p99_ms: Some(1.5),
                    p999_ms: Some(3.0),
                    max_rps: None,
                    cpu_s_per_1k: Some(0.05),
                    rss_mb: Some(12.5),
                },
                SidecarRun {
                    dataplane: "direct".into(),
                    protocol: "http2".into(),
                    rate: None,
                    p50_ms: None,
                    p90_ms: None,
                    p99_ms: None,
                    p999_ms: None,
                    max_rps: Some(20000.0),
                    cpu_s_per_1k: None,
                    rss_mb: None,
                },
            ],
        };
        let v: Value = serde_json::to_value(&report)?;
        let keys = [
            "dataplane",
            "protocol",
            "rate",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_rps",
            "cpu_s_per_1k",
            "rss_mb",
        ];
        let obj = v
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("not an object"))?;
        assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["runs"]);
        for run in v["runs"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("runs is not an array"))?
        {
            let o = run.as_object().ok_or_else(|| anyhow::anyhow!("run"))?;
            let mut got: Vec<&str> = o.keys().map(String::as_str).collect();
            got.sort_unstable();
            let mut want = keys.to_vec();
            want.sort_unstable();
            assert_eq!(got, want);
        }
        assert_eq!(v["runs"][0]["rate"], json!(1000));
        assert_eq!(v["runs"][1]["rate"], Value::Null);
        assert_eq!(v["runs"][1]["p99_ms"], Value::Null);
        let back: SidecarReport = serde_json::from_value(v)?;
        assert_eq!(back, report);
        Ok(())
    }

    #[test]
    fn control_plane_json_shape() -> anyhow::Result<()> {
        let r = ControlPlaneReport {
            runs: vec![ControlPlaneRun {
                services: 1000,
                proxies: 2000,
                ack99_ms: Some(850.0),
                cp_rss_mb: Some(300.0),
                cp_cpu_s: Some(12.0),
                resync_s: Some(4.5),
                bytes_pushed: Some(123_456_789),
            }],
        };
        let v = serde_json::to_value(&r)?;
        assert_eq!(
            v,
            json!({"runs": [{"services": 1000, "proxies": 2000, "ack99_ms": 850.0, "cp_rss_mb": 300.0,
                "cp_cpu_s": 12.0, "resync_s": 4.5, "bytes_pushed": 123456789u64}]})
        );
        Ok(())
    }

    #[test]
    fn markdown_table() {
        let mut t = Table::new(["a", "long header"]);
        t.row(["1", "2"]);
        t.row(["wide cell", "x", "dropped"]);
        let md = t.to_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "| a         | long header |");
        assert_eq!(lines[1], "| --------- | ----------- |");
        assert!(lines[3].starts_with("| wide cell | x "));
        assert!(!md.contains("dropped"));
        assert_eq!(fmt_opt(None, 2), "-");
        assert_eq!(fmt_opt(Some(1.2345), 2), "1.23");
        assert_eq!(fmt_delta(Some(0.5), 3), "+0.500");
    }
}
