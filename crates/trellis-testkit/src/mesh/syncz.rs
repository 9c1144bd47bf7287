//! The control plane's `/debug/syncz` and `/debug/config` answers, and the waits on them: every
//! proxy up to date, a config report showing what a step expects, NACKs counted over a run.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::Mesh;
use crate::http;

/// The control plane's `/debug/syncz` answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Syncz {
    /// The config generation being served.
    #[serde(default)]
    pub generation: u64,
    /// NACKs received since this control plane started.
    #[serde(default)]
    pub nacks_total: u64,
    /// Every connected proxy.
    #[serde(default)]
    pub proxies: Vec<ProxySync>,
}

/// One proxy in `/debug/syncz`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProxySync {
    /// The node id.
    #[serde(default)]
    pub id: String,
    /// The newest generation sent to it.
    #[serde(default)]
    pub generation: u64,
    /// Whether every subscribed type is ACKed at the version last sent.
    #[serde(default)]
    pub synced: bool,
    /// Per type URL.
    #[serde(default)]
    pub types: BTreeMap<String, TypeSync>,
}

/// One type of one proxy in `/debug/syncz`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TypeSync {
    /// The version last sent.
    #[serde(default)]
    pub sent: Option<String>,
    /// The version last ACKed.
    #[serde(default)]
    pub acked: Option<String>,
    /// The last NACK, if the proxy rejected the version sent.
    #[serde(default)]
    pub nack: Option<Nack>,
}

/// A rejected version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nack {
    /// The rejected version.
    #[serde(default)]
    pub version: String,
    /// The proxy's error detail.
    #[serde(default)]
    pub error: String,
}

impl Syncz {
    /// The entry for the proxy whose node id carries `ip` (`TYPE~IP~...`).
    pub fn proxy_for_ip(&self, ip: Ipv4Addr) -> Option<&ProxySync> {
        let needle = format!("~{ip}~");
        self.proxies.iter().find(|p| p.id.contains(&needle))
    }

    /// Every NACK currently shown: `(proxy id, type url, nack)`.
    pub fn nacks(&self) -> Vec<(String, String, Nack)> {
        let mut out = Vec::new();
        for p in &self.proxies {
            for (t, s) in &p.types {
                if let Some(n) = &s.nack {
                    out.push((p.id.clone(), t.clone(), n.clone()));
                }
            }
        }
        out
    }
}

/// The control plane's `/debug/config` answer: what is applied and what was rejected.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigReport {
    /// The generation the applied resources belong to.
    #[serde(default)]
    pub generation: u64,
    /// `Kind namespace/name (file)` of every applied resource.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Errors and warnings of the last reload.
    #[serde(default)]
    pub diagnostics: Diagnostics,
}

/// Validation messages in `/debug/config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Errors: the files they come from keep their last good content (or apply nothing).
    #[serde(default)]
    pub errors: Vec<String>,
    /// Warnings: applied, but probably not what the user meant.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl Mesh {
    /// Reads `/debug/syncz` once, remembering any NACK it shows.
    pub async fn syncz(&self) -> anyhow::Result<Syncz> {
        let s: Syncz = self.get_monitoring("/debug/syncz").await?;
        if let Ok(mut seen) = self.nacks_seen.lock() {
            seen.extend(s.nacks());
        }
        Ok(s)
    }

    /// Reads `/debug/config` once.
    pub async fn debug_config(&self) -> anyhow::Result<ConfigReport> {
        self.get_monitoring("/debug/config").await
    }

    /// Waits until the control plane serves a generation newer than the one before the last
    /// [`Mesh::apply`]/[`Mesh::remove`] and every proxy of the mesh is up to date with it. Fails
    /// at once if a proxy NACKed, or if a process died.
    pub async fn wait_synced(&self, deadline: Instant) -> anyhow::Result<Syncz> {
        self.wait_up_to_date(deadline, self.generation_before_apply)
            .await
            .with_context(|| format!("logs in {}", self.run_dir.display()))
    }

    /// Waits until every proxy of the mesh is up to date with the generation served (newer than
    /// `newer_than`, if given); fails at once if a proxy NACKed.
    pub(super) async fn wait_up_to_date(
        &self,
        deadline: Instant,
        newer_than: Option<u64>,
    ) -> anyhow::Result<Syncz> {
        self.poll(
            deadline,
            async || {
                let s = match self.syncz().await {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(format!("{e:#}"))),
                };
                if let Some((id, type_url, nack)) = self
                    .proxies
                    .iter()
                    .filter_map(|p| s.proxy_for_ip(p.ip))
                    .flat_map(|p| {
                        p.types.iter().filter_map(|(t, ts)| {
                            ts.nack.clone().map(|n| (p.id.clone(), t.clone(), n))
                        })
                    })
                    .next()
                {
                    bail!(
                        "proxy {id} NACKed {type_url} version {}: {}",
                        nack.version,
                        nack.error
                    );
                }
                Ok(match self.describe_lag(&s, newer_than) {
                    None => Ok(s),
                    Some(lag) => Err(lag),
                })
            },
            |last| anyhow!("timed out waiting for every proxy to be up to date: {last}"),
        )
        .await
    }

    /// `None` when up to date, else what is missing.
    fn describe_lag(&self, s: &Syncz, newer_than: Option<u64>) -> Option<String> {
        let mut problems = Vec::new();
        if let Some(g) = newer_than
            && s.generation <= g
        {
            problems.push(format!(
                "control plane still serves generation {} (was {g} before the change: was the file rejected? see control-plane.log)",
                s.generation
            ));
        }
        for p in &self.proxies {
            match s.proxy_for_ip(p.ip) {
                None => problems.push(format!("proxy {} ({}) is not connected", p.workload, p.ip)),
                Some(ps) if ps.generation != s.generation || !ps.synced => {
                    let types: Vec<String> = ps
                        .types
                        .iter()
                        .filter(|(_, t)| t.sent != t.acked)
                        .map(|(u, t)| format!("{u} sent {:?} acked {:?}", t.sent, t.acked))
                        .collect();
                    problems.push(format!(
                        "proxy {} at generation {}/{} synced={} {}",
                        ps.id,
                        ps.generation,
                        s.generation,
                        ps.synced,
                        types.join(", ")
                    ));
                }
                Some(_) => {}
            }
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// NACKs seen in `/debug/syncz` so far (distinct proxy, type and version).
    pub fn nacks_seen(&self) -> Vec<(String, String, Nack)> {
        self.nacks_seen
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The number of NACKs over the run: the larger of those seen in `/debug/syncz` and the
    /// control plane's `pilot_total_xds_rejects` metric (if it exports it).
    pub async fn nack_count(&self) -> usize {
        let _ = self.syncz().await;
        let seen = self.nacks_seen().len();
        let metric = match http::get(&self.monitoring_url("/metrics"), Duration::from_secs(5)).await
        {
            Ok(r) if r.status == 200 => metric_sum(&r.text(), "pilot_total_xds_rejects"),
            _ => 0.0,
        };
        seen.max(metric as usize + self.nacks_of_old_control_planes)
    }

    /// Polls `/debug/config` until `accept` holds, within `deadline`; `what` names the wait in
    /// the error, which shows the last report seen.
    pub async fn wait_config(
        &self,
        deadline: Instant,
        what: &str,
        accept: impl Fn(&ConfigReport) -> bool,
    ) -> anyhow::Result<ConfigReport> {
        self.poll(
            deadline,
            async || {
                Ok(match self.debug_config().await {
                    Ok(c) if accept(&c) => Ok(c),
                    Ok(c) => Err(format!(
                        "generation {}, errors {:?}, warnings {:?}",
                        c.generation, c.diagnostics.errors, c.diagnostics.warnings
                    )),
                    Err(e) => Err(format!("{e:#}")),
                })
            },
            |last| {
                anyhow!(
                    "timed out waiting for /debug/config to show {what}; last seen: {last} (logs in {})",
                    self.run_dir.display()
                )
            },
        )
        .await
    }
}

/// Sums every sample of a Prometheus metric (any labels) in a text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value_part = if let Some(r) = rest.strip_prefix('{') {
                r.split_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value_part.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncz_parsing_and_nacks() -> anyhow::Result<()> {
        let s: Syncz = serde_json::from_str(
            r#"{"generation": 4, "proxies": [
                {"id": "sidecar~127.0.10.2~client.default~default.svc.cluster.local", "generation": 4, "synced": true,
                 "types": {"type.googleapis.com/envoy.config.listener.v3.Listener": {"sent": "3", "acked": "3", "nack": null}}},
                {"id": "sidecar~127.0.10.10~reviews-v1-0.default~default.svc.cluster.local", "generation": 4, "synced": false,
                 "types": {"type.googleapis.com/envoy.config.cluster.v3.Cluster": {"sent": "5", "acked": "4", "nack": {"version": "5", "error": "bad field"}}}}
            ]}"#,
        )?;
        assert!(
            s.proxy_for_ip(Ipv4Addr::new(127, 0, 10, 2))
                .is_some_and(|p| p.synced)
        );
        assert!(s.proxy_for_ip(Ipv4Addr::new(127, 0, 10, 1)).is_none());
        let n = s.nacks();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].2.error, "bad field");
        Ok(())
    }

    #[test]
    fn metric_sums() {
        let text = "# HELP pilot_total_xds_rejects x\n# TYPE pilot_total_xds_rejects counter\n\
                    pilot_total_xds_rejects{type=\"cds\"} 2\npilot_total_xds_rejects{type=\"lds\"} 1\n\
                    pilot_total_xds_rejects_other 7\npilot_xds 3\n";
        assert_eq!(metric_sum(text, "pilot_total_xds_rejects"), 3.0);
        assert_eq!(
            metric_sum("pilot_total_xds_rejects 4\n", "pilot_total_xds_rejects"),
            4.0
        );
    }
}
