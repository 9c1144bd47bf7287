//! Istio's standard metrics as a user sees them: a real Prometheus scrapes every Trellis
//! sidecar's `IP:15090/stats/prometheus` (and the control plane's `/metrics`) every second, and
//! PromQL over what it stored must agree with the traffic the test sent: requests per
//! destination version (a 90/10 split), the error ratio (503s from the echo app), and the 99th
//! percentile of `istio_request_duration_milliseconds` in the buckets that the requests' known
//! delay puts it in.
//!
//! Skipped (with a message) when `prometheus` is not installed, unless `CI` is set: then it
//! fails, since `scripts/install-deps.sh` installs it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use trellis_testkit::client::{RequestPlan, run_outcomes};
use trellis_testkit::mesh::{Dataplane, Mesh, MeshOptions, MeshSpec, echo_mesh};

/// The test's own loopback /24.
const BASE: Ipv4Addr = Ipv4Addr::new(127, 68, 1, 0);
/// Prometheus' address: in the test's /24, away from the mesh's (.1, .2, .10+, .110+).
const PROMETHEUS: &str = "127.68.1.250:9090";
/// Every request asks the echo app to wait this long, so durations have a known floor.
const DELAY_MS: u64 = 30;
/// Istio's duration buckets (ms).
const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

const SPLIT: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: echo.default.svc.cluster.local, subset: v1}
      weight: 90
    - destination: {host: echo.default.svc.cluster.local, subset: v2}
      weight: 10
";

fn prometheus_binary() -> Option<&'static str> {
    std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some("prometheus")
}

fn scrape_config(mesh: &Mesh) -> String {
    let proxies: Vec<String> = mesh
        .proxies()
        .iter()
        .map(|p| format!("'{}:15090'", p.ip))
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n\
         - job_name: trellis-proxies\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: [{}]\n\
         - job_name: trellis-control-plane\n  metrics_path: /metrics\n  static_configs:\n  - targets: ['{}']\n",
        proxies.join(", "),
        mesh.monitoring_address()
    )
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant PromQL query; returns `(labels, value)` per series of the vector result.
async fn query(promql: &str) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
    let url = format!("http://{PROMETHEUS}/api/v1/query?query={}", encode(promql));
    let response = trellis_testkit::http::get(&url, Duration::from_secs(5)).await?;
    let body: serde_json::Value =
        serde_json::from_str(&response.text()).with_context(|| format!("query {promql}"))?;
    if body["status"] != "success" {
        bail!("query {promql}: {body}");
    }
    let mut out = Vec::new();
    for series in body["data"]["result"].as_array().into_iter().flatten() {
        let labels = series["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let value = series["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .context("a sample value")?;
        out.push((labels, value));
    }
    Ok(out)
}

/// Polls `promql` (bounded) until `accept` holds for its result; returns that result, or fails
/// with the last one seen.
async fn poll_query(
    promql: &str,
    deadline: Instant,
    accept: impl Fn(&[(BTreeMap<String, String>, f64)]) -> bool,
) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match query(promql).await {
            Ok(result) if accept(&result) => return Ok(result),
            Ok(result) => last = format!("{result:?}"),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("PromQL {promql}: timed out; last result: {last}")
}

/// Prometheus, ended by PID (SIGTERM, then SIGKILL) when dropped or stopped.
struct Prometheus {
    child: tokio::process::Child,
}

impl Prometheus {
    async fn start(config: &str, dir: &Path) -> anyhow::Result<Self> {
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config)?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting prometheus")?;
        let p = Prometheus { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        trellis_testkit::http::poll_until(
            &format!("http://{PROMETHEUS}/-/ready"),
            deadline,
            Duration::from_millis(200),
            |r| r.status == 200,
        )
        .await
        .with_context(|| {
            format!(
                "prometheus did not become ready; its log:\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            )
        })?;
        Ok(p)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_istio_metrics_that_match_the_traffic() -> anyhow::Result<()> {
    if prometheus_binary().is_none() {
        if std::env::var_os("CI").is_some() {
            bail!("prometheus is not installed (scripts/install-deps.sh installs it)");
        }
        eprintln!("prometheus is not installed: skipped (scripts/install-deps.sh installs it)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let spec = MeshSpec {
        extra_yaml: SPLIT.into(),
        ..echo_mesh(BASE, Dataplane::Trellis, &["v1", "v2"])
    };
    let mut options = MeshOptions::new(env!("CARGO_BIN_EXE_trellis"), dir.path().join("mesh"));
    options.startup_timeout = Duration::from_secs(90);
    let mesh = Mesh::start(spec, options).await?;
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir)?;
    let prometheus = Prometheus::start(&scrape_config(&mesh), &prom_dir).await?;
    let result = check(&mesh).await;
    prometheus.stop().await;
    mesh.shutdown().await;
    result
}

async fn check(mesh: &Mesh) -> anyhow::Result<()> {
    // Traffic: 400 successes split 90/10, then 40 errors (the app answers 503).
    let ok = RequestPlan {
        concurrency: 4,
        ..RequestPlan::new(
            mesh.client_outbound(),
            "echo:9080",
            format!("/?delay_ms={DELAY_MS}"),
            400,
        )
    };
    let failing = RequestPlan::new(mesh.client_outbound(), "echo:9080", "/?status=503", 40);
    let mut sent: BTreeMap<String, f64> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let mut errors = 0.0;
    for plan in [&ok, &failing] {
        for o in run_outcomes(plan).await {
            let version = o
                .version
                .clone()
                .with_context(|| format!("an echo answer, got {o:?}"))?;
            *sent.entry(version).or_default() += 1.0;
            if o.status == Some(503) {
                errors += 1.0;
            } else if o.status != Some(200) {
                bail!("unexpected outcome {o:?}");
            }
            if plan.path.contains("delay_ms") {
                slowest = slowest.max(o.done_at.saturating_sub(o.sent_at));
            }
        }
    }
    let total: f64 = sent.values().sum();
    assert_eq!(total, 440.0);
    assert!(sent.get("v2").is_some_and(|n| *n > 0.0), "{sent:?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    // Requests per destination version, as the client's sidecar reported them.
    let by_version = poll_query(
        "sum by (destination_version)(istio_requests_total{reporter=\"source\"})",
        deadline,
        |r| {
            r.iter().map(|(_, v)| v).sum::<f64>() == total
                && r.iter().all(|(l, v)| {
                    l.get("destination_version")
                        .and_then(|d| sent.get(d))
                        .is_some_and(|n| n == v)
                })
        },
    )
    .await?;
    assert_eq!(by_version.len(), sent.len(), "{by_version:?}");

    // The successes as the servers' sidecars saw them (the 503s were retried by Istio's
    // default retry policy, so the servers saw more of those than the client sent).
    poll_query(
        "sum(istio_requests_total{reporter=\"destination\",source_workload=\"client\",connection_security_policy=\"mutual_tls\",response_code=\"200\"})",
        deadline,
        |r| r.first().is_some_and(|(_, v)| *v == total - errors),
    )
    .await?;

    // The error ratio.
    let ratio = poll_query(
        "sum(istio_requests_total{reporter=\"source\",response_code=~\"5..\"}) / sum(istio_requests_total{reporter=\"source\"})",
        deadline,
        |r| r.first().is_some_and(|(_, v)| (*v - errors / total).abs() < 1e-9),
    )
    .await?;
    assert_eq!(ratio.len(), 1);

    // p99 of the delayed requests: at least the bucket holding the delay (the proxy measures
    // no less than the app waited), at most the upper bound of the bucket holding the slowest
    // duration the client saw (the proxy measures no more than the client did).
    let floor = BUCKETS
        .iter()
        .rev()
        .copied()
        .find(|b| *b <= DELAY_MS as f64)
        .unwrap_or(0.0);
    let slowest_ms = slowest.as_secs_f64() * 1000.0;
    let ceiling = BUCKETS
        .iter()
        .copied()
        .find(|b| *b >= slowest_ms)
        .unwrap_or(f64::INFINITY);
    let p99 = poll_query(
        "histogram_quantile(0.99, sum by (le)(istio_request_duration_milliseconds_bucket{reporter=\"source\",response_code=\"200\"}))",
        deadline,
        |r| r.first().is_some_and(|(_, v)| v.is_finite()),
    )
    .await?;
    let p99 = p99.first().map_or(f64::NAN, |(_, v)| *v);
    assert!(
        p99 >= floor && p99 <= ceiling,
        "p99 {p99} ms outside [{floor}, {ceiling}] (delay {DELAY_MS} ms, slowest seen {slowest_ms:.1} ms)"
    );

    // The control plane is scraped too: its proxies are connected and nothing was rejected.
    poll_query("pilot_xds", deadline, |r| {
        r.first()
            .is_some_and(|(_, v)| *v == mesh.proxies().len() as f64)
    })
    .await?;
    poll_query("sum(pilot_total_xds_rejects)", deadline, |r| {
        r.first().is_some_and(|(_, v)| *v == 0.0)
    })
    .await?;
    Ok(())
}
