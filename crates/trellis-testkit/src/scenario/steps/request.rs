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
) -> anyhow::Result<String> {
    let counting = !expect.served.is_empty() || !expect.shadow.is_empty();
    let before = if counting {
        Some(mesh.app_counts().await?)
    } else {
        None
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
    if !problems.is_empty() {
        bail!("{} [{summary}]", problems.join("; "));
    }
    Ok(format!("{summary}{note}"))
}
