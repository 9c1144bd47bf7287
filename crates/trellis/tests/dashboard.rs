//! The dashboard as a user sees it: a real mesh with traffic through the client sidecar (some
//! of it failing), and the page at the control plane's `/dashboard` rendered by headless
//! Chromium must show the echo service, an edge into it with a non-zero request rate, a
//! non-zero error rate and a p99, and every proxy synced. A screenshot is saved to
//! `target/dashboard.png`.
//!
//! Skipped (with a message) when `chromium` is not installed, unless `CI` is set: then it
//! fails, since `scripts/install-deps.sh` installs it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use trellis_testkit::client::{RequestPlan, Traffic};
use trellis_testkit::mesh::{Dataplane, Mesh, MeshOptions, ServiceSpec, WorkloadSpec, echo_mesh};

/// The test's own loopback /24.
const BASE: Ipv4Addr = Ipv4Addr::new(127, 69, 1, 0);
/// The loopback /24 of the graph-naming test (per data plane: `.0` Trellis, `+1` Envoy).
const NAMING_BASE: Ipv4Addr = Ipv4Addr::new(127, 69, 2, 0);
/// The browser binary (Debian's package name).
const CHROMIUM: &str = "chromium";

fn chromium_installed() -> bool {
    std::process::Command::new(CHROMIUM)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs headless Chromium on `url` with `extra` flags; returns its stdout. Bounded by a
/// timeout; the browser is killed (by its PID, through `kill_on_drop`) if it overruns.
async fn chromium(profile: &Path, url: &str, extra: &[String]) -> anyhow::Result<String> {
    let child = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--virtual-time-budget=5000")
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting chromium")?;
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("chromium did not finish within 60 s")??;
    if !output.status.success() {
        bail!(
            "chromium failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The attributes of every element carrying `marker` (e.g. `data-edge`), from serialized HTML.
fn elements_with(dom: &str, marker: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for (start, _) in dom.match_indices(&format!(" {marker}=\"")) {
        let open = dom[..start].rfind('<').unwrap_or(0);
        let close = dom[start..].find('>').map_or(dom.len(), |i| start + i);
        let tag = &dom[open..close];
        let mut attrs = BTreeMap::new();
        let mut rest = tag;
        while let Some(eq) = rest.find("=\"") {
            let name = rest[..eq].rsplit(' ').next().unwrap_or("").to_string();
            let after = &rest[eq + 2..];
            let end = after.find('"').unwrap_or(after.len());
            attrs.insert(name, after[..end].replace("&gt;", ">"));
            rest = &after[(end + 1).min(after.len())..];
        }
        out.push(attrs);
    }
    out
}

fn number(attrs: &BTreeMap<String, String>, name: &str) -> f64 {
    attrs
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_mesh_in_a_real_browser() -> anyhow::Result<()> {
    if !chromium_installed() {
        if std::env::var_os("CI").is_some() {
            bail!("chromium is not installed (scripts/install-deps.sh installs it)");
        }
        eprintln!("chromium is not installed: skipped (scripts/install-deps.sh installs it)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let spec = echo_mesh(BASE, Dataplane::Trellis, &["v1"]);
    let mut options = MeshOptions::new(env!("CARGO_BIN_EXE_trellis"), dir.path().join("mesh"));
    options.startup_timeout = Duration::from_secs(90);
    let mesh = Mesh::start(spec, options).await?;
    let ok = Traffic::start(&RequestPlan {
        concurrency: 2,
        ..RequestPlan::new(mesh.client_outbound(), "echo:9080", "/?delay_ms=5", 0)
    });
    let failing = Traffic::start(&RequestPlan::new(
        mesh.client_outbound(),
        "echo:9080",
        "/?status=503",
        0,
    ));
    let result = check(&mesh, dir.path()).await;
    let sent = ok.completed() + failing.completed();
    ok.stop().await;
    failing.stop().await;
    mesh.shutdown().await;
    result.with_context(|| format!("{sent} requests sent"))
}

async fn check(mesh: &Mesh, dir: &Path) -> anyhow::Result<()> {
    let url = mesh.monitoring_url("/dashboard");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::from("no DOM yet");
    let edge = loop {
        if Instant::now() > deadline {
            bail!("the dashboard never showed traffic into echo; last DOM:\n{last}");
        }
        let dom = chromium(&dir.join("profile"), &url, &["--dump-dom".to_string()]).await?;
        let nodes = elements_with(&dom, "data-node");
        let edges = elements_with(&dom, "data-edge");
        let into_echo = edges.into_iter().find(|e| {
            e.get("data-edge").is_some_and(|n| n.ends_with("->echo"))
                && number(e, "data-rps") > 0.0
                && number(e, "data-error-rate") > 0.0
        });
        let has_echo = nodes
            .iter()
            .any(|n| n.get("data-node").is_some_and(|n| n == "echo"));
        match into_echo {
            Some(edge) if has_echo => break edge,
            _ => last = dom,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let error_rate = number(&edge, "data-error-rate");
    assert!(error_rate > 0.0 && error_rate < 1.0, "{edge:?}");
    let p99 = number(&edge, "data-p99-ms");
    assert!(p99.is_finite() && p99 > 0.0, "p99 shown: {edge:?}");

    // The JSON the page polls: every proxy is listed and synced.
    let api = trellis_testkit::http::get(
        &mesh.monitoring_url("/dashboard/api/mesh"),
        Duration::from_secs(5),
    )
    .await?;
    let body: serde_json::Value = serde_json::from_str(&api.text())?;
    let proxies = body["sync"]["proxies"].as_array().context("sync.proxies")?;
    assert_eq!(proxies.len(), mesh.proxies().len(), "{body}");
    assert!(proxies.iter().all(|p| p["synced"] == true), "{body}");
    assert!(
        body["graph"]["services"]["echo"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );

    let shot = target_dir().join("dashboard.png");
    chromium(
        &dir.join("profile"),
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,800".to_string(),
        ],
    )
    .await?;
    let png = std::fs::read(&shot).with_context(|| format!("reading {}", shot.display()))?;
    assert!(
        png.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        shot.display()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
    Ok(())
}

/// Both data planes name the graph alike: Trellis's edges come from Istio's metrics (the
/// caller's canonical service), Envoy's from its cluster stats with the scraped proxy's
/// canonical service as the caller — so the workload `front-v1-0` (app `front`) calling echo is
/// the edge `front -> echo` on both, never a workload or pod name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_edges_are_named_by_canonical_service_on_both_data_planes() -> anyhow::Result<()> {
    for (i, dataplane) in [Dataplane::Trellis, Dataplane::Envoy]
        .into_iter()
        .enumerate()
    {
        let [a, b, c, _] = NAMING_BASE.octets();
        let base = Ipv4Addr::new(a, b, c + i as u8, 0);
        let dir = tempfile::tempdir()?;
        let mut spec = echo_mesh(base, dataplane, &["v1"]);
        spec.services.push(ServiceSpec {
            name: "front".into(),
            ..spec.services[0].clone()
        });
        spec.workloads.push(WorkloadSpec {
            service: "front".into(),
            version: "v1".into(),
            instance: 0,
            calls: vec!["http://echo:9080/".into()],
        });
        let mut options = MeshOptions::new(env!("CARGO_BIN_EXE_trellis"), dir.path().join("mesh"));
        options.startup_timeout = Duration::from_secs(90);
        let mesh = Mesh::start(spec, options).await?;
        let traffic = Traffic::start(&RequestPlan::new(
            mesh.client_outbound(),
            "front:9080",
            "/",
            0,
        ));
        let result = edges_with_traffic(&mesh).await;
        traffic.stop().await;
        mesh.shutdown().await;
        let edges = result.with_context(|| format!("{dataplane:?}"))?;
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            edges,
            vec![pair("client", "front"), pair("front", "echo")],
            "{dataplane:?}"
        );
    }
    Ok(())
}

/// Polls the dashboard API (bounded) until two edges have traffic; returns those edges.
async fn edges_with_traffic(mesh: &Mesh) -> anyhow::Result<Vec<(String, String)>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        let api = trellis_testkit::http::get(
            &mesh.monitoring_url("/dashboard/api/mesh"),
            Duration::from_secs(5),
        )
        .await?;
        last = serde_json::from_str(&api.text())?;
        let edges: Vec<(String, String)> = last["graph"]["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["rps"].as_f64().is_some_and(|r| r > 0.0))
            .map(|e| {
                let name = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (name("source"), name("destination"))
            })
            .collect();
        if edges.len() >= 2 {
            return Ok(edges);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("fewer than two edges with traffic within 60 s; last answer: {last}")
}
