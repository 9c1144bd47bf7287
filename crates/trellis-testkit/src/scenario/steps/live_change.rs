//! `live_change`: apply a file under continuous traffic; no request may fail and, after
//! `expect_within_ms`, every request must see the new routing.

use std::time::{Duration, Instant};

use anyhow::bail;

use super::apply::check_applied;
use super::{failed_during, failures_within_limit, more_traffic, start_traffic};
use crate::client::{Outcome, Summary};
use crate::mesh::Mesh;
use crate::scenario::LiveChange;
use crate::scenario::run::RunOptions;

/// Starts background traffic, applies the file, lets the traffic run past the bound, and judges
/// it; then checks the file's diagnostics as `apply` does.
pub(in crate::scenario) async fn run(
    l: &LiveChange,
    options: &RunOptions,
    mesh: &mut Mesh,
) -> anyhow::Result<String> {
    let traffic = start_traffic(&l.request, mesh).await?;
    let change_at = traffic.epoch().elapsed();
    mesh.apply(&l.apply.file, &l.apply.content).await?;
    if let Err(e) = mesh.wait_synced(options.sync_deadline()).await {
        return Err(failed_during(traffic, e).await);
    }
    let bound = Duration::from_millis(l.expect_within_ms);
    more_traffic(
        &traffic,
        "traffic after the change",
        change_at + bound + Duration::from_millis(200),
        Instant::now() + bound + Duration::from_secs(10),
    )
    .await?;
    let outcomes = traffic.stop().await;
    let line = judge_live_change(l, &outcomes, change_at)?;
    let note = check_applied(&l.apply, options, mesh).await?;
    Ok(format!("{line}{note}"))
}

/// Judges a live change from the outcomes of the background traffic (sorted by `sent_at`) and
/// the moment of the change (same epoch).
pub fn judge_live_change(
    l: &LiveChange,
    outcomes: &[Outcome],
    change_at: Duration,
) -> anyhow::Result<String> {
    let summary = Summary::from_outcomes(outcomes);
    let failed = failures_within_limit(
        &l.expect,
        outcomes,
        &summary,
        "during the change",
        change_at,
        "",
    )?;
    let want = l.expect.only_version.as_deref().unwrap_or_default();
    let last_old = outcomes
        .iter()
        .filter(|o| o.is_success() && o.version.as_deref() != Some(want))
        .map(|o| o.sent_at)
        .max();
    let converged = last_old
        .map(|t| t.saturating_sub(change_at))
        .unwrap_or_default();
    let bound = Duration::from_millis(l.expect_within_ms);
    if converged > bound {
        bail!(
            "a request sent {}ms after the change still did not reach {want} (bound {}ms) [{summary}]",
            converged.as_millis(),
            bound.as_millis()
        );
    }
    if !outcomes
        .iter()
        .any(|o| o.sent_at > change_at && o.version.as_deref() == Some(want))
    {
        bail!("no request after the change reached {want} [{summary}]");
    }
    Ok(format!(
        "new routing within {}ms (bound {}ms), {} failed; {summary}",
        converged.as_millis(),
        bound.as_millis(),
        failed.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{background_request, outcome as o};
    use super::*;
    use crate::scenario::{Expect, FileDef};

    #[test]
    fn live_change_judgement() -> anyhow::Result<()> {
        let l = LiveChange {
            apply: FileDef {
                file: "vs.yaml".into(),
                content: String::new(),
                expect_warning: None,
            },
            request: background_request(),
            expect_within_ms: 2000,
            expect: Expect {
                only_version: Some("v2".into()),
                ..Default::default()
            },
        };
        let change = Duration::from_millis(1000);
        let good = vec![
            o(500, "v1", 200),
            o(1500, "v1", 200),
            o(1600, "v2", 200),
            o(3500, "v2", 200),
        ];
        let msg = judge_live_change(&l, &good, change)?;
        assert!(msg.contains("within 500ms"), "{msg}");
        let slow = vec![o(500, "v1", 200), o(3100, "v1", 200), o(3500, "v2", 200)];
        assert!(
            format!(
                "{:#}",
                judge_live_change(&l, &slow, change)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )
            .contains("2100ms")
        );
        let failing = vec![o(500, "v1", 200), o(1200, "-", 503), o(3500, "v2", 200)];
        let e = judge_live_change(&l, &failing, change)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("1 requests failed") && e.contains("+200ms"),
            "{e}"
        );
        let never = vec![o(500, "v1", 200)];
        assert!(judge_live_change(&l, &never, change).is_err());
        Ok(())
    }
}
