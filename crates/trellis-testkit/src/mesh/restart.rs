//! Restarting the control plane under a running mesh.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use super::syncz::Syncz;
use super::{CONTROL_PLANE, CONTROL_PLANE_LOG, CONTROL_PLANE_STOP_GRACE, Mesh};
use crate::process::spawn_logged;

/// What [`Mesh::restart_control_plane`] did and when.
#[derive(Debug, Clone)]
pub struct Restart {
    /// When the old control plane was signalled.
    pub killed_at: Instant,
    /// When it had exited (and was reaped).
    pub down_at: Instant,
    /// How it exited (e.g. `signal: 15 (SIGTERM)`).
    pub exit: String,
    /// When the new control plane was started.
    pub started_at: Instant,
    /// When it answered `/ready`.
    pub ready_at: Instant,
    /// When every proxy had reconnected and was up to date.
    pub synced_at: Instant,
    /// `/debug/syncz` of the new control plane at that moment.
    pub syncz: Syncz,
}

impl Mesh {
    /// Kills the control plane by PID (`SIGTERM`, then `SIGKILL` after a grace period), keeps it
    /// down for `down`, starts a fresh one with the same flags and config directory, and waits
    /// (until `deadline`) for it to be ready and for every proxy to reconnect and be up to date
    /// with the new control plane's generation. Proxies keep serving their last config meanwhile.
    pub async fn restart_control_plane(
        &mut self,
        down: Duration,
        deadline: Instant,
    ) -> anyhow::Result<Restart> {
        let spec = self
            .cp_spec
            .clone()
            .ok_or_else(|| anyhow!("the mesh has no control plane to restart"))?;
        // What the old control plane counted would be lost with it.
        if let Ok(s) = self.syncz().await {
            self.nacks_of_old_control_planes += s.nacks_total as usize;
        }
        let mut old = {
            let mut children = self.children()?;
            let i = children
                .iter()
                .position(|c| c.name() == CONTROL_PLANE)
                .ok_or_else(|| anyhow!("the control plane is not running"))?;
            children.remove(i)
        };
        old.check_running()
            .context("the control plane had already exited before the restart")?;
        let pid = old
            .pid()
            .ok_or_else(|| anyhow!("the control plane has no PID"))?;
        old.set_grace(CONTROL_PLANE_STOP_GRACE);
        let killed_at = Instant::now();
        let status = tokio::task::spawn_blocking(move || old.terminate())
            .await
            .map_err(|e| anyhow!("stopping the control plane (PID {pid}): {e}"))?;
        let down_at = Instant::now();
        let exit = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "not reaped".to_string());
        self.generation_before_apply = None;
        // The outage itself: the point of the exercise, not a wait for readiness.
        tokio::time::sleep(down).await;
        let started_at = Instant::now();
        let guard = spawn_logged(&spec, &self.run_dir.join(CONTROL_PLANE_LOG))?;
        self.children()?.insert(0, guard);
        let ready = self.monitoring_url("/ready");
        self.wait_ok(&ready, deadline).await.with_context(|| {
            format!(
                "the restarted control plane did not become ready (logs in {})",
                self.run_dir.display()
            )
        })?;
        let ready_at = Instant::now();
        let syncz = self
            .wait_up_to_date(deadline, None)
            .await
            .with_context(|| {
                format!(
                    "proxies did not reconnect to the restarted control plane (logs in {})",
                    self.run_dir.display()
                )
            })?;
        Ok(Restart {
            killed_at,
            down_at,
            exit,
            started_at,
            ready_at,
            synced_at: Instant::now(),
            syncz,
        })
    }
}
