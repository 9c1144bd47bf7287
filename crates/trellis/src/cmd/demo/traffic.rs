//! The demo's traffic: requests to productpage through the client sidecar, counted by the
//! reviews version that answered somewhere down the call chain.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use trellis_testkit::http::{Connection, Protocol};

/// An expected share of traffic.
pub struct Split {
    version: &'static str,
    percent: f64,
}

impl Split {
    /// `percent` of the requests should reach reviews `version`.
    pub fn new(version: &'static str, percent: f64) -> Self {
        Split { version, percent }
    }
}

/// Counts requests by the reviews version that served them.
pub struct ReviewsCounter {
    target: SocketAddr,
    conn: Option<Connection>,
    by_version: BTreeMap<String, usize>,
    failures: usize,
    last_error: Option<String>,
}

impl ReviewsCounter {
    /// Sends through the client sidecar's outbound listener at `target`.
    pub fn new(target: SocketAddr) -> Self {
        ReviewsCounter {
            target,
            conn: None,
            by_version: BTreeMap::new(),
            failures: 0,
            last_error: None,
        }
    }

    /// A counter for answers recorded with [`ReviewsCounter::record`] (it sends nothing).
    pub fn tally() -> Self {
        Self::new(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Sends `count` requests one after the other.
    pub async fn send(&mut self, count: usize) {
        for _ in 0..count {
            self.one().await;
        }
    }

    /// Sends `per_second` requests per second for `window`, then describes that window in one
    /// line and starts counting afresh.
    pub async fn window(&mut self, window: Duration, per_second: u32) -> String {
        self.reset();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
        let end = Instant::now() + window;
        while Instant::now() < end {
            tick.tick().await;
            self.one().await;
        }
        self.summary()
    }

    /// Forgets what was counted (a new window starts).
    pub fn reset(&mut self) {
        self.by_version.clear();
        self.failures = 0;
    }

    /// Counts one answer of productpage that arrived some other way (e.g. curl in a pod).
    pub fn record(&mut self, status: u16, body: &str) {
        let version = if status == 200 {
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| reviews_version(&v))
                .ok_or_else(|| format!("no reviews answer in {}", body.trim()))
        } else {
            Err(format!("productpage answered {status}: {}", body.trim()))
        };
        match version {
            Ok(v) => *self.by_version.entry(v).or_default() += 1,
            Err(e) => {
                self.failures += 1;
                self.last_error = Some(e);
            }
        }
    }

    /// The current window in one line.
    pub fn summary(&mut self) -> String {
        let total = self.total();
        let mut line = String::from("reviews:");
        for (version, n) in &self.by_version {
            let _ = write!(line, " {version} {:>3.0}%", percent(*n, total));
        }
        let _ = write!(line, "  ({total} requests, {} failed)", self.failures);
        if let Some(error) = self.last_error.take().filter(|_| self.failures > 0) {
            let _ = write!(line, "  last error: {error}");
        }
        line
    }

    /// Requests that did not get a 200 with a reviews answer in it.
    pub fn failures(&self) -> usize {
        self.failures
    }

    fn total(&self) -> usize {
        self.by_version.values().sum::<usize>() + self.failures
    }

    /// The largest distance, in points, between observed and expected shares.
    pub fn worst_deviation(&self, expected: &[Split]) -> f64 {
        let total = self.total();
        let mut worst: f64 = 0.0;
        for split in expected {
            let seen = percent(
                self.by_version.get(split.version).copied().unwrap_or(0),
                total,
            );
            worst = worst.max((seen - split.percent).abs());
        }
        for (version, n) in &self.by_version {
            if !expected.iter().any(|s| s.version == version) {
                worst = worst.max(percent(*n, total));
            }
        }
        worst
    }

    /// A table of observed against expected shares.
    pub fn table(&self, expected: &[Split]) -> String {
        let total = self.total();
        let mut out = format!(
            "{:<16} {:>9} {:>9} {:>9}\n",
            "reviews version", "requests", "observed", "expected"
        );
        let mut versions: Vec<&str> = expected.iter().map(|s| s.version).collect();
        let unexpected: Vec<&str> = self
            .by_version
            .keys()
            .map(String::as_str)
            .filter(|v| !versions.contains(v))
            .collect();
        versions.extend(unexpected);
        for version in versions {
            let n = self.by_version.get(version).copied().unwrap_or(0);
            let want = expected
                .iter()
                .find(|s| s.version == version)
                .map_or(0.0, |s| s.percent);
            let _ = writeln!(
                out,
                "{version:<16} {n:>9} {:>8.1}% {want:>8.1}%",
                percent(n, total)
            );
        }
        let _ = write!(out, "{:<16} {:>9}", "failed", self.failures);
        out
    }

    async fn one(&mut self) {
        match self.exchange().await {
            Ok(version) => *self.by_version.entry(version).or_default() += 1,
            Err(error) => {
                self.conn = None;
                self.failures += 1;
                self.last_error = Some(error);
            }
        }
    }

    /// One request to productpage; the reviews version from its answer.
    async fn exchange(&mut self) -> Result<String, String> {
        if !self.conn.as_ref().is_some_and(Connection::is_open) {
            let conn = Connection::connect(self.target, Protocol::Http1)
                .await
                .map_err(|e| format!("{e:#}"))?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let request = http::Request::get("http://productpage:9080/productpage")
            .header(http::header::HOST, "productpage:9080")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(5), conn.send(request))
            .await
            .map_err(|_| "no answer within 5 s".to_string())?
            .map_err(|e| format!("{e:#}"))?;
        if response.status != http::StatusCode::OK {
            return Err(format!(
                "productpage answered {}: {}",
                response.status,
                response.text().trim()
            ));
        }
        let body: serde_json::Value = response.json().map_err(|e| format!("{e:#}"))?;
        reviews_version(&body).ok_or_else(|| format!("no reviews answer in {}", response.text()))
    }
}

/// Finds the answer of the reviews service among the (nested) upstream answers.
fn reviews_version(answer: &serde_json::Value) -> Option<String> {
    if answer.get("service").and_then(|s| s.as_str()) == Some("reviews") {
        return answer
            .get("version")
            .and_then(|v| v.as_str())
            .map(str::to_string);
    }
    answer
        .get("upstreams")?
        .as_array()?
        .iter()
        .find_map(reviews_version)
}

fn percent(n: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * n as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_reviews_in_nested_answers() {
        let answer = serde_json::json!({
            "service": "productpage", "version": "v1",
            "upstreams": [
                {"service": "details", "version": "v1", "upstreams": []},
                {"service": "reviews", "version": "v2", "upstreams": [{"service": "ratings", "version": "v1"}]}
            ]
        });
        assert_eq!(reviews_version(&answer).as_deref(), Some("v2"));
        assert_eq!(
            reviews_version(
                &serde_json::json!({"service": "productpage", "upstreams": [{"error": "x"}]})
            ),
            None
        );
    }

    #[test]
    fn deviation_counts_unexpected_versions_and_failures() {
        let mut counter = ReviewsCounter::new("127.0.0.1:1".parse().expect("addr"));
        counter.by_version.insert("v1".into(), 85);
        counter.by_version.insert("v2".into(), 10);
        counter.by_version.insert("v3".into(), 3);
        counter.failures = 2;
        let expected = [Split::new("v1", 90.0), Split::new("v2", 10.0)];
        assert!((counter.worst_deviation(&expected) - 5.0).abs() < 1e-9);
        let table = counter.table(&expected);
        assert!(table.contains("v3") && table.contains("failed"), "{table}");
    }
}
