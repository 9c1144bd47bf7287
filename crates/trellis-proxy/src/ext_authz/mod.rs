//! Where requests are checked by an external authorizer: Envoy's `envoy.filters.http.ext_authz`
//! (Istio's AuthorizationPolicy `CUSTOM`), and the RBAC shadow filters that decide which
//! requests it checks.
//!
//! The shadow filters run first and record, as Envoy's dynamic metadata does, the first
//! matching policy under `<prefix>shadow_effective_policy_id` and the engine's result under
//! `<prefix>shadow_engine_result` ([`ShadowMetadata`], kept in the request's extensions). The
//! ext_authz filter checks a request only when its `filter_enabled_metadata` matches that
//! metadata; it then asks the authorizer (over gRPC, `grpc.rs`, or HTTP, `http_service.rs`)
//! through the named cluster (its endpoints, load balancing and TLS) and applies the answer:
//! allowed requests get the authorizer's headers, denied ones get its status, headers and
//! body; a failure (unreachable, timeout, a malformed answer) is `status_on_error` unless
//! `failure_mode_allow`. Counters are Envoy's (`stats.rs`).

mod body;
mod grpc;
mod http_service;
mod stats;
#[cfg(test)]
mod tests;

pub use body::{BufferError, CheckBody, PARTIAL_BODY_HEADER, buffer as buffer_body};
pub use stats::{CheckOutcome, ExtAuthzLabels, ExtAuthzStats};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::authz::RequestAttributes;
use crate::config::{ExtAuthz, ExtAuthzService, ShadowRbac, StringMatch};
use crate::upstream::ClusterManager;

/// The RBAC filter namespace of the shadow metadata (HTTP chains).
pub const RBAC_FILTER: &str = "envoy.filters.http.rbac";
/// The same on TCP chains.
pub const NETWORK_RBAC_FILTER: &str = "envoy.filters.network.rbac";

/// The dynamic metadata the shadow RBAC filters recorded (`envoy.filters.http.rbac`): key →
/// value, keys prefixed with each filter's `shadow_rules_stat_prefix`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShadowMetadata(pub BTreeMap<String, String>);

/// Runs the shadow filters in order (each records its own keys; none denies).
pub fn record_shadow(filters: &[Arc<ShadowRbac>], req: &RequestAttributes<'_>) -> ShadowMetadata {
    let mut out = ShadowMetadata::default();
    for f in filters {
        let matched = crate::authz::first_match(&f.rules, req);
        // Envoy's engine result: what the rules would have decided.
        let denied = match f.rules.action {
            crate::config::RbacAction::Allow => matched.is_none(),
            crate::config::RbacAction::Deny => matched.is_some(),
            crate::config::RbacAction::Log => false,
        };
        if let Some(name) = matched {
            out.0.insert(
                format!("{}shadow_effective_policy_id", f.stat_prefix),
                name.to_string(),
            );
        }
        out.0.insert(
            format!("{}shadow_engine_result", f.stat_prefix),
            if denied { "denied" } else { "allowed" }.to_string(),
        );
    }
    out
}

/// Whether the filter checks this request: `filter_enabled_metadata` (absent: always) against
/// the shadow metadata (the only dynamic metadata in `envoy.filters.http.rbac`).
pub fn enabled(filter: &ExtAuthz, shadow: Option<&ShadowMetadata>) -> bool {
    let Some(m) = &filter.filter_enabled_metadata else {
        return true;
    };
    let found = ((m.filter == RBAC_FILTER || m.filter == NETWORK_RBAC_FILTER) && m.path.len() == 1)
        .then(|| shadow.and_then(|s| s.0.get(&m.path[0])))
        .flatten()
        .map(|v| serde_json::Value::String(v.clone()));
    crate::authz::metadata_value_matches(m, found.as_ref())
}

/// What the check is about.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    /// The clusters (the authorizer is reached through one).
    pub clusters: &'a ClusterManager,
    /// The request's method.
    pub method: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// `:path` with the query.
    pub path_and_query: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The downstream peer.
    pub peer: Option<SocketAddr>,
    /// The address the connection arrived on.
    pub local: Option<SocketAddr>,
    /// The verified peer certificate's URI SAN.
    pub peer_identity: Option<&'a str>,
    /// The TLS SNI.
    pub sni: Option<&'a str>,
    /// The buffered body (`with_request_body`), when there was one.
    pub body: Option<&'a CheckBody>,
}

/// The authorizer's decision.
#[derive(Debug)]
pub enum Decision {
    /// Let through, with header changes for the request and the response.
    Allowed(Allowed),
    /// Stopped: the answer the client gets.
    Denied(Denial),
    /// The check failed: `status_on_error` applies unless `failure_mode_allow`.
    Error(String),
}

/// An allowed request's header changes.
#[derive(Debug, Default)]
pub struct Allowed {
    /// Set on the request (replacing what was there).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Appended to the request.
    pub append: Vec<(HeaderName, HeaderValue)>,
    /// Removed from the request.
    pub remove: Vec<HeaderName>,
    /// Added to the response.
    pub response: Vec<(HeaderName, HeaderValue)>,
}

/// A denial's answer.
#[derive(Debug)]
pub struct Denial {
    /// Its status (Envoy's default: 403).
    pub status: StatusCode,
    /// Its headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Its body.
    pub body: Bytes,
}

/// Asks the authorizer about the request.
pub async fn check(filter: &ExtAuthz, cx: &CheckContext<'_>) -> Decision {
    match &filter.service {
        ExtAuthzService::Grpc {
            cluster,
            authority,
            timeout,
        } => grpc::check(filter, cx, cluster, authority, *timeout).await,
        ExtAuthzService::Http { timeout, .. } => {
            match tokio::time::timeout(*timeout, http_service::check(filter, cx)).await {
                Ok(decision) => decision,
                Err(_) => Decision::Error("the authorization request timed out".to_string()),
            }
        }
    }
}

/// Whether a header name is allowed by a list of matchers (Envoy matches names lowercased).
fn listed(list: &[StringMatch], name: &str) -> bool {
    list.iter().any(|m| m.matches(name))
}

/// The request headers the check carries: all, or those `allowed_headers` lists.
fn check_headers<'h>(
    filter: &ExtAuthz,
    headers: &'h HeaderMap,
) -> impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)> {
    let allowed = filter.allowed_headers.clone();
    headers
        .iter()
        .filter(move |(name, _)| allowed.as_deref().is_none_or(|l| listed(l, name.as_str())))
}

/// A check that stops the request: the answer and why (for `x-trellis-reason`).
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// Headers of the answer.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Its body.
    pub body: Bytes,
    /// Why, for logs and `x-trellis-reason`.
    pub cause: String,
}

/// How the request's body is to be buffered for the check: `with_request_body`, when the
/// ext_authz filter checks this request (its `filter_enabled_metadata` matches what the shadow
/// filters record). Envoy decides this on the headers, before buffering.
pub fn body_settings(
    filters: &crate::config::HttpFilters,
    attributes: &RequestAttributes<'_>,
) -> Option<crate::config::BodySettings> {
    let filter = filters.ext_authz.as_ref()?;
    let settings = filter.with_request_body?;
    let shadow = record_shadow(&filters.shadow_rbac, attributes);
    enabled(filter, Some(&shadow)).then_some(settings)
}

/// Runs a connection manager's shadow RBAC filters and its ext_authz filter: `Ok(None)` when
/// the request was not checked, `Ok(Some(changes))` when it was allowed (or a failure was let
/// through), `Err(reply)` when it is stopped. Counts the outcome.
pub async fn run(
    filters: &crate::config::HttpFilters,
    stats: &ExtAuthzStats,
    stat_prefix: &str,
    attributes: &RequestAttributes<'_>,
    cx: &CheckContext<'_>,
) -> Result<Option<Allowed>, Reply> {
    let shadow = record_shadow(&filters.shadow_rbac, attributes);
    let Some(filter) = &filters.ext_authz else {
        return Ok(None);
    };
    if !enabled(filter, Some(&shadow)) {
        return Ok(None);
    }
    match check(filter, cx).await {
        Decision::Allowed(allowed) => {
            stats.record(stat_prefix, CheckOutcome::Ok);
            Ok(Some(allowed))
        }
        Decision::Denied(d) => {
            stats.record(stat_prefix, CheckOutcome::Denied);
            Err(Reply {
                status: d.status,
                headers: d.headers,
                body: d.body,
                cause: "denied by the external authorizer".to_string(),
            })
        }
        Decision::Error(why) if filter.failure_mode_allow => {
            tracing::debug!(reason = %why, "ext_authz failed; failure_mode_allow lets the request through");
            stats.record(stat_prefix, CheckOutcome::FailureModeAllowed);
            Ok(Some(Allowed::default()))
        }
        Decision::Error(why) => {
            stats.record(stat_prefix, CheckOutcome::Error);
            Err(Reply {
                status: StatusCode::from_u16(filter.status_on_error)
                    .unwrap_or(StatusCode::FORBIDDEN),
                headers: Vec::new(),
                body: Bytes::new(),
                cause: format!("external authorization failed: {why}"),
            })
        }
    }
}

/// `envoy.filters.network.ext_authz` for a TCP connection (`cx` with an empty method: the
/// check carries no HTTP request): `Err(why)` when the connection must be closed.
pub async fn check_connection(
    n: &crate::config::NetworkExtAuthz,
    attributes: &RequestAttributes<'_>,
    cx: &CheckContext<'_>,
) -> Result<(), String> {
    let shadow = record_shadow(&n.shadow_rbac, attributes);
    if !enabled(&n.ext_authz, Some(&shadow)) {
        return Ok(());
    }
    match check(&n.ext_authz, cx).await {
        Decision::Allowed(_) => Ok(()),
        Decision::Denied(_) => Err("denied by the external authorizer".to_string()),
        Decision::Error(why) if n.ext_authz.failure_mode_allow => {
            tracing::debug!(reason = %why, "network ext_authz failed; failure_mode_allow lets the connection through");
            Ok(())
        }
        Decision::Error(why) => Err(format!("external authorization failed: {why}")),
    }
}

/// Applies an allowed check's request header changes (removals, then replacements, then
/// additions, as Envoy does).
pub fn apply_to_request(allowed: &Allowed, headers: &mut HeaderMap) {
    for name in &allowed.remove {
        headers.remove(name);
    }
    for (name, value) in &allowed.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &allowed.append {
        headers.append(name.clone(), value.clone());
    }
}
