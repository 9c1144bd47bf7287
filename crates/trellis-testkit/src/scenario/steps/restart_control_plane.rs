//! `restart_control_plane`: kill and restart the control plane under continuous traffic; no
//! request may fail, and some must have been sent while it was down.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::{failed_during, failures_within_limit, more_traffic, start_traffic};
use crate::client::{Outcome, Summary};
use crate::mesh::Mesh;
use crate::scenario::RestartControlPlane;
use crate::scenario::expect::check_expect;
use crate::scenario::run::RunOptions;

/// Starts background traffic, restarts the control plane, lets some more traffic through once
/// every proxy is back, and judges the whole window.
pub(in crate::scenario) async fn run(
    r: &RestartControlPlane,
    options: &RunOptions,
    mesh: &mut Mesh,
) -> anyhow::Result<String> {
    let traffic = start_traffic(&r.request, mesh).await?;
    let restart = mesh
        .restart_control_plane(
            Duration::from_millis(r.down_ms),
            Instant::now() + options.reconnect_timeout,
        )
        .await;
    let restart = match restart {
        Ok(x) => x,
        Err(e) => return Err(failed_during(traffic, e).await),
    };
    more_traffic(
        &traffic,
        "traffic after the proxies reconnected",
        Duration::ZERO,
        Instant::now() + Duration::from_secs(10),
    )
    .await?;
    let epoch = traffic.epoch();
    let outcomes = traffic.stop().await;
    let window = RestartWindow {
        killed: restart.killed_at.saturating_duration_since(epoch),
        restarted: restart.started_at.saturating_duration_since(epoch),
    };
    let line = judge_restart(r, &outcomes, &window)?;
    Ok(format!(
        "control plane stopped in {}ms ({}), down {}ms, ready {}ms and every proxy up to date {}ms after the restart (generation {}); {line}",
        restart
            .down_at
            .saturating_duration_since(restart.killed_at)
            .as_millis(),
        restart.exit,
        restart
            .started_at
            .saturating_duration_since(restart.down_at)
            .as_millis(),
        restart
            .ready_at
            .saturating_duration_since(restart.started_at)
            .as_millis(),
        restart
            .synced_at
            .saturating_duration_since(restart.started_at)
            .as_millis(),
        restart.syncz.generation
    ))
}

/// When the control plane was killed and when its successor was started, measured from the
/// background traffic's epoch.
#[derive(Debug, Clone, Copy)]
pub struct RestartWindow {
    /// The old control plane was signalled.
    pub killed: Duration,
    /// The new one was started.
    pub restarted: Duration,
}

/// Judges a control plane restart from the outcomes of the background traffic (sorted by
/// `sent_at`): no request may fail (at most `expect.failures`), some must have been sent while
/// the control plane was down, and every other `expect` key applies to all of them.
pub fn judge_restart(
    r: &RestartControlPlane,
    outcomes: &[Outcome],
    window: &RestartWindow,
) -> anyhow::Result<String> {
    let summary = Summary::from_outcomes(outcomes);
    let failed = failures_within_limit(
        &r.expect,
        outcomes,
        &summary,
        "around the control plane restart",
        window.killed,
        "; times relative to the kill",
    )?;
    let while_down = outcomes
        .iter()
        .filter(|o| o.sent_at >= window.killed && o.sent_at < window.restarted)
        .count();
    if while_down == 0 {
        bail!("no request was sent while the control plane was down [{summary}]");
    }
    check_expect(&r.expect, &summary).map_err(|e| anyhow!(e))?;
    Ok(format!(
        "{while_down} requests sent while it was down, {} failed; {summary}",
        failed.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{background_request, outcome as o};
    use super::*;
    use crate::scenario::Expect;

    #[test]
    fn restart_judgement() -> anyhow::Result<()> {
        let r = RestartControlPlane {
            down_ms: 1500,
            request: background_request(),
            expect: Expect {
                status: Some(200),
                only_version: Some("v2".into()),
                ..Default::default()
            },
        };
        let window = RestartWindow {
            killed: Duration::from_millis(1000),
            restarted: Duration::from_millis(2500),
        };
        let good = vec![
            o(500, "v2", 200),
            o(1200, "v2", 200),
            o(2000, "v2", 200),
            o(4000, "v2", 200),
        ];
        let msg = judge_restart(&r, &good, &window)?;
        assert!(msg.contains("2 requests sent while it was down"), "{msg}");
        let failing = vec![o(500, "v2", 200), o(1300, "-", 503), o(4000, "v2", 200)];
        let e = judge_restart(&r, &failing, &window)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("1 requests failed") && e.contains("+300ms"),
            "{e}"
        );
        let mut lenient = r.clone();
        lenient.expect.failures = Some(1);
        lenient.expect.status = None;
        lenient.expect.only_version = None;
        assert!(judge_restart(&lenient, &failing, &window).is_ok());
        // Nothing sent while it was down proves nothing.
        let idle = vec![o(500, "v2", 200), o(4000, "v2", 200)];
        let e = judge_restart(&r, &idle, &window)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("while the control plane was down"), "{e}");
        // The other expect keys apply to the whole window.
        let wrong = vec![o(500, "v2", 200), o(1200, "v1", 200), o(4000, "v2", 200)];
        let e = judge_restart(&r, &wrong, &window)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("every response from v2, 2 of 3"), "{e}");
        Ok(())
    }
}
