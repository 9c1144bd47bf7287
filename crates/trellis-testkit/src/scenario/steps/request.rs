//! `request` + `expect`: send requests through the client sidecar and check the responses (and,
//! for `served`/`shadow`, the echo apps' own counters).

use std::time::{Duration, Instant};

use anyhow::bail;

use super::plan_for;
use crate::client::{self, Summary};
use crate::mesh::Mesh;
use crate::scenario::expect::{check_expect, check_outcomes, check_served};
use crate::scenario::{Expect, RequestDef};

/// Sends the requests and checks every expectation; the error lists every violation.
pub(in crate::scenario) async fn run(
    r: &RequestDef,
    expect: &Expect,
    mesh: &Mesh,
    zipkin: Option<std::net::SocketAddr>,
) -> anyhow::Result<String> {
    if let Some(ms) = expect.within_ms {
        settle(r, expect, mesh, Duration::from_millis(ms)).await?;
    }
    let spans_before = match (&expect.trace, zipkin) {
        (None, _) => None,
        (Some(_), None) => bail!("a `trace` expectation needs the scenario's `zipkin` collector"),
        (Some(_), Some(c)) => Some((c, crate::scenario::trace::fetch(c).await?.len())),
    };
    let counting = !expect.served.is_empty() || !expect.shadow.is_empty();
    let before = if counting {
        Some(mesh.app_counts().await?)
    } else {
        None
    };
    let log_from = expect
        .access_log
        .as_ref()
        .map(|e| crate::scenario::access_log::offset(mesh, e));
    let metrics_before = if expect.metrics.is_empty() {
        None
    } else {
        Some(crate::scenario::metrics::before(mesh, &expect.metrics).await?)
    };
    let outcomes = client::run_outcomes(&plan_for(r, mesh)?).await;
    let summary = Summary::from_outcomes(&outcomes);
    let mut problems = Vec::new();
    if let Err(e) = check_expect(expect, &summary) {
        problems.push(e);
    }
    problems.extend(check_outcomes(expect, &outcomes));
    let mut note = String::new();
    if let Some(before) = before {
        // Mirrored copies may land after the responses: settle, then re-read for up to 3 s
        // while a lower bound is not met yet.
        let deadline = Instant::now() + Duration::from_secs(3);
        tokio::time::sleep(Duration::from_millis(300)).await;
        loop {
            let after = mesh.app_counts().await?;
            let result = check_served(expect, &mesh.apps(), &before, &after);
            if result.is_ok() || Instant::now() >= deadline {
                match result {
                    Ok(n) => note = format!("; served {n}"),
                    Err(e) => problems.push(e),
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if let (Some(e), Some(from)) = (&expect.access_log, log_from)
        && let Err(error) = crate::scenario::access_log::check(mesh, e, from).await
    {
        problems.push(format!("{error:#}"));
    }
    if let Some(before) = metrics_before
        && let Err(error) = crate::scenario::metrics::check(mesh, &expect.metrics, &before).await
    {
        problems.push(format!("{error:#}"));
    }
    if let (Some(e), Some((collector, before))) = (&expect.trace, spans_before)
        && let Err(error) = crate::scenario::trace::check(collector, e, before).await
    {
        problems.push(format!("{error:#}"));
    }
    if !problems.is_empty() {
        bail!("{} [{summary}]", problems.join("; "));
    }
    Ok(format!("{summary}{note}"))
}

/// Re-sends the requests until their responses meet `expect` (status and per-response checks)
/// or `within` has passed.
async fn settle(
    r: &RequestDef,
    expect: &Expect,
    mesh: &Mesh,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let outcomes = client::run_outcomes(&plan_for(r, mesh)?).await;
        let summary = Summary::from_outcomes(&outcomes);
        let mut problems: Vec<String> = check_expect(expect, &summary).err().into_iter().collect();
        problems.extend(check_outcomes(expect, &outcomes));
        if problems.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "not within {}ms: {} [{summary}]",
                within.as_millis(),
                problems.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
