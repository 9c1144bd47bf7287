//! The step kinds, one file each. What several of them share is here: turning a `request` into a
//! load-client plan, waiting on a condition, background traffic that runs during a change, and
//! judging the failures it saw.

pub(super) mod apply;
pub(super) mod apply_invalid;
pub(super) mod live_change;
pub(super) mod request;
pub(super) mod restart_control_plane;
pub(super) mod rotate_certificates;
pub(super) mod sleep;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::{Expect, RequestDef, Via};
use crate::client::{Outcome, RequestPlan, Summary, Traffic};
use crate::mesh::Mesh;

/// Requests background traffic completes before a change is made.
const WARMUP: usize = 20;
/// Requests background traffic completes after a change before it is judged.
const AFTER_SYNC: usize = 50;

/// The load client's plan for `r`, sent through the mesh's client sidecar.
fn plan_for(r: &RequestDef, mesh: &Mesh) -> anyhow::Result<RequestPlan> {
    let target = match r.via {
        Via::Sidecar => mesh.client_outbound(),
        Via::Direct => mesh.service_address(&r.authority)?,
        Via::Gateway => {
            let g = r
                .gateway
                .as_ref()
                .ok_or_else(|| anyhow!("`via: gateway` needs `gateway: {{port: N}}`"))?;
            mesh.gateway_address(g.name.as_deref(), g.port)?
        }
    };
    let mut plan = RequestPlan::new(target, r.authority.clone(), r.path.clone(), r.count);
    if let (Via::Gateway, Some(g)) = (r.via, &r.gateway) {
        plan.origin_form = true;
        if let Some(tls) = &g.tls {
            let alpn: &[&str] = match r.protocol {
                crate::http::Protocol::Http1 => &["http/1.1"],
                crate::http::Protocol::Http2 => &["h2"],
            };
            plan.tls = Some(crate::http::ClientTls {
                server_name: tls.sni.clone().unwrap_or_else(|| target.ip().to_string()),
                config: mesh.credentials()?.client_config(tls.client_cert, alpn)?,
            });
        }
    }
    if let Some(t) = &r.sidecar_tls {
        let alpn: &[&str] = match r.protocol {
            crate::http::Protocol::Http1 => &["http/1.1"],
            crate::http::Protocol::Http2 => &["h2"],
        };
        plan.target = std::net::SocketAddr::new(target.ip(), t.port);
        plan.origin_form = true;
        plan.tls = Some(crate::http::ClientTls {
            server_name: t.sni.clone(),
            config: mesh.credentials()?.client_config(false, alpn)?,
        });
    }
    plan.method = http::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| anyhow!("bad method {:?}", r.method))?;
    plan.concurrency = r.concurrency;
    plan.protocol = r.protocol;
    plan.grpc = r.grpc;
    plan.websocket = r.websocket.map(|w| w.messages);
    plan.tcp = r.tcp.as_ref().map(|t| (t.port, t.send.clone()));
    plan.raw_header_case = r.raw_header_case;
    plan.body = r.body.clone().map(bytes::Bytes::from).unwrap_or_default();
    plan.headers = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(jwt) = &r.jwt {
        match jwt.placement()? {
            crate::jwt::Placement::Header(name, value) => plan.headers.push((name, value)),
            crate::jwt::Placement::Param(name, token) => {
                let sep = if plan.path.contains('?') { '&' } else { '?' };
                plan.path = format!("{}{sep}{name}={token}", plan.path);
            }
        }
    }
    Ok(plan)
}

/// Polls `done` every few milliseconds until it holds or `deadline` passes.
async fn wait_for(
    deadline: Instant,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    while !done() {
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Starts background traffic for `r` (`count` is ignored) and waits until it flows.
async fn start_traffic(r: &RequestDef, mesh: &Mesh) -> anyhow::Result<Traffic> {
    let traffic = Traffic::start(&plan_for(r, mesh)?);
    wait_for(
        Instant::now() + Duration::from_secs(10),
        "background traffic to flow",
        || traffic.completed() >= WARMUP,
    )
    .await?;
    Ok(traffic)
}

/// Waits until background traffic has completed some more requests and has run for at least
/// `until` since its epoch.
async fn more_traffic(
    traffic: &Traffic,
    what: &str,
    until: Duration,
    deadline: Instant,
) -> anyhow::Result<()> {
    let from = traffic.completed();
    let epoch = traffic.epoch();
    wait_for(deadline, what, || {
        traffic.completed() >= from + AFTER_SYNC && epoch.elapsed() >= until
    })
    .await
}

/// Stops background traffic after the change it ran under failed, and adds what it saw to the
/// error.
async fn failed_during(traffic: Traffic, e: anyhow::Error) -> anyhow::Error {
    let outcomes = traffic.stop().await;
    e.context(format!(
        "during traffic: {}",
        Summary::from_outcomes(&outcomes)
    ))
}

/// The requests of background traffic that failed (no 2xx, or not `expect.status`); an error
/// when more than `expect.failures` (0) did, naming `when` and the first few failures with their
/// time relative to `reference` (`reference_note` says what that is, if not obvious).
fn failures_within_limit<'a>(
    expect: &Expect,
    outcomes: &'a [Outcome],
    summary: &Summary,
    when: &str,
    reference: Duration,
    reference_note: &str,
) -> anyhow::Result<Vec<&'a Outcome>> {
    let max_failures = expect.failures.unwrap_or(0);
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.is_success() || expect.status.is_some_and(|s| o.status != Some(s)))
        .collect();
    if failed.len() > max_failures {
        bail!(
            "{} requests failed {when} (at most {max_failures} allowed{reference_note}): {} [{summary}]",
            failed.len(),
            describe_failures(&failed, reference)
        );
    }
    Ok(failed)
}

/// The first few failed requests, with when they were sent relative to `reference`.
fn describe_failures(failed: &[&Outcome], reference: Duration) -> String {
    failed
        .iter()
        .take(3)
        .map(|o| {
            format!(
                "at {:+}ms: {}",
                o.sent_at.as_millis() as i128 - reference.as_millis() as i128,
                o.error
                    .clone()
                    .or_else(|| o.status.map(|s| format!(
                        "status {s}{}",
                        o.reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod test_support {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::client::Outcome;
    use crate::http::Protocol;
    use crate::scenario::RequestDef;

    /// A request definition for background traffic to `echo`.
    pub(super) fn background_request() -> RequestDef {
        RequestDef {
            authority: "echo".into(),
            path: "/".into(),
            method: "GET".into(),
            count: 1,
            concurrency: 1,
            protocol: Protocol::Http1,
            headers: BTreeMap::new(),
            body: None,
            grpc: None,
            websocket: None,
            tcp: None,
            jwt: None,
            gateway: None,
            via: Default::default(),
            raw_header_case: false,
            sidecar_tls: None,
        }
    }

    /// A response from `version` with `status`, sent `ms` after the epoch.
    pub(super) fn outcome(ms: u64, version: &str, status: u16) -> Outcome {
        Outcome {
            status: Some(status),
            version: Some(version.into()),
            sent_at: Duration::from_millis(ms),
            done_at: Duration::from_millis(ms + 1),
            ..Default::default()
        }
    }
}
