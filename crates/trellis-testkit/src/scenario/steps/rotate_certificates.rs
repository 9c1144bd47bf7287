//! `rotate_certificates`: keep traffic flowing until every sidecar has replaced its workload
//! certificate `rotations` times (read from its own metrics), and fail if any request did.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{failed_during, failures_within_limit, start_traffic};
use crate::client::Summary;
use crate::http;
use crate::mesh::{Dataplane, Mesh};
use crate::scenario::RotateCertificates;
use crate::scenario::expect::{check_expect, check_outcomes};

/// How often the sidecars' counters are read.
const POLL: Duration = Duration::from_millis(250);

/// Runs the step; the window ends as soon as every sidecar has rotated often enough.
pub(in crate::scenario) async fn run(
    r: &RotateCertificates,
    mesh: &Mesh,
) -> anyhow::Result<String> {
    // A rotation happens at ~80 % of the lifetime: allow two lifetimes per rotation, plus slack.
    let ttl = mesh.cert_ttl().unwrap_or(Duration::from_secs(24 * 3600));
    let deadline = Instant::now() + ttl * 2 * r.rotations + Duration::from_secs(20);
    let mut counters: Vec<Rotations> = Vec::new();
    for p in mesh.proxies() {
        let mut c = Rotations::new(&p.workload);
        c.observe(mesh, p.admin()).await?;
        counters.push(c);
    }
    let traffic = start_traffic(&r.request, mesh).await?;
    let done = loop {
        for (c, p) in counters.iter_mut().zip(mesh.proxies()) {
            if let Err(e) = c.observe(mesh, p.admin()).await {
                return Err(failed_during(traffic, e).await);
            }
        }
        let behind: Vec<String> = counters
            .iter()
            .filter(|c| c.rotations() < f64::from(r.rotations))
            .map(|c| format!("{} rotated {}", c.workload, c.rotations()))
            .collect();
        if behind.is_empty() {
            break Ok(());
        }
        if Instant::now() >= deadline {
            break Err(behind);
        }
        tokio::time::sleep(POLL).await;
    };
    let outcomes = traffic.stop().await;
    let summary = Summary::from_outcomes(&outcomes);
    if let Err(behind) = done {
        bail!(
            "not every sidecar rotated its certificate {} times in time: {} [{summary}]",
            r.rotations,
            behind.join(", ")
        );
    }
    failures_within_limit(
        &r.expect,
        &outcomes,
        &summary,
        "while certificates rotated",
        Duration::ZERO,
        " since the traffic started",
    )?;
    check_expect(&r.expect, &summary).map_err(anyhow::Error::msg)?;
    let problems = check_outcomes(&r.expect, &outcomes);
    if !problems.is_empty() {
        bail!("{} [{summary}]", problems.join("; "));
    }
    let rotated: Vec<String> = counters
        .iter()
        .map(|c| format!("{} {}", c.workload, c.rotations()))
        .collect();
    Ok(format!("rotations: {}; {summary}", rotated.join(", ")))
}

/// One sidecar's certificate rotations as its metrics show them. Trellis counts them
/// (`trellis_cert_rotations_total`); Envoy exposes the version of its SDS `default` secret
/// (`sds.default.version_text`), which changes with every update the agent pushes, so the
/// distinct versions seen (polled far more often than certificates rotate) count them.
struct Rotations {
    workload: String,
    first_count: Option<f64>,
    last_count: f64,
    versions: std::collections::BTreeSet<String>,
}

impl Rotations {
    fn new(workload: &str) -> Self {
        Rotations {
            workload: workload.to_string(),
            first_count: None,
            last_count: 0.0,
            versions: Default::default(),
        }
    }

    fn rotations(&self) -> f64 {
        match self.first_count {
            Some(first) => self.last_count - first,
            None => self.versions.len().saturating_sub(1) as f64,
        }
    }

    async fn observe(&mut self, mesh: &Mesh, admin: std::net::SocketAddr) -> anyhow::Result<()> {
        match mesh.dataplane() {
            Dataplane::Trellis => {
                let url = format!("http://{admin}/stats/prometheus");
                let text = read(&url).await?;
                let n = sample(&text, "trellis_cert_rotations_total").unwrap_or(0.0);
                self.first_count.get_or_insert(n);
                self.last_count = n;
            }
            Dataplane::Envoy => {
                let url =
                    format!("http://{admin}/stats?filter=%5Esds%5C.default%5C.version_text%24");
                let text = read(&url).await?;
                if let Some(v) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("sds.default.version_text: "))
                {
                    self.versions.insert(v.trim().to_string());
                }
            }
        }
        Ok(())
    }
}

async fn read(url: &str) -> anyhow::Result<String> {
    let r = http::get(url, Duration::from_secs(2))
        .await
        .with_context(|| format!("reading {url}"))?;
    Ok(String::from_utf8_lossy(&r.body).into_owned())
}

/// The sum of the samples of `metric` (any labels) in a Prometheus text exposition.
fn sample(text: &str, metric: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let bare = name.split('{').next()?;
            (bare == metric).then(|| value.trim().parse::<f64>().ok())?
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn samples_are_summed_across_labels() {
        let text = "# TYPE x counter\nx_total 2\nx_total{a=\"b\"} 3\nxy_total 7\n";
        assert_eq!(sample(text, "x_total"), Some(5.0));
        assert_eq!(sample(text, "absent"), None);
    }
}
