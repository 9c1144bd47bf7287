//! Where requests are authorized: the `envoy.filters.http.rbac` filters of a connection
//! manager, evaluated in order before the request is routed, with Envoy's semantics.
//!
//! A policy matches when one of its permissions and one of its principals match. An `ALLOW`
//! filter lets a request through only if a policy matches; a `DENY` filter stops it if one
//! does; a `LOG` filter never stops anything. The first filter that denies decides: the
//! answer is Envoy's (`403`, body `RBAC: access denied`) plus `x-trellis-reason` naming the
//! matched policy (DENY) or the cause (ALLOW without a match).

mod stats;
#[cfg(test)]
mod tests;

pub use stats::{RbacLabels, RbacStats};

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use serde_json::Value;

use crate::authn::VerifiedJwt;
use crate::config::{
    HeaderValueMatch, MetadataMatcher, Permission, Principal, Rbac, RbacAction, RbacHeaderMatcher,
    ValueMatcher,
};

/// The body of Envoy's RBAC denial.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// What RBAC looks at in a request (the path already normalized by the connection manager).
#[derive(Debug, Clone, Copy)]
pub struct RequestAttributes<'a> {
    /// The request headers (pseudo-headers come from the fields below).
    pub headers: &'a HeaderMap,
    /// `:authority`.
    pub authority: &'a str,
    /// `:method`.
    pub method: &'a str,
    /// `:path`, with the query.
    pub path_and_query: &'a str,
    /// The address the connection arrived on.
    pub local: Option<SocketAddr>,
    /// The connection's peer.
    pub peer: Option<SocketAddr>,
    /// The verified peer certificate's URI SAN.
    pub peer_identity: Option<&'a str>,
    /// The TLS SNI the peer asked for.
    pub sni: Option<&'a str>,
    /// The verified JWT (the `jwt_authn` filter's dynamic metadata).
    pub jwt: Option<&'a VerifiedJwt>,
}

/// The outcome of a connection manager's RBAC filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every filter let the request through.
    Allowed,
    /// A filter denied it: why, for `x-trellis-reason` (after the `RBAC` flag).
    Denied(String),
}

/// Runs the filters in order; the first denial decides.
pub fn evaluate(filters: &[std::sync::Arc<Rbac>], req: &RequestAttributes<'_>) -> Verdict {
    decide(filters, req).0
}

/// [`evaluate`], with how many filters let the request through before the verdict: Envoy
/// counts each RBAC filter's decision (`rbac.allowed` once per filter passed, `rbac.denied`
/// once at the one that denies), and an AUDIT (`LOG`) filter always lets it through, so
/// audited requests count as allowed (Envoy 1.40 has no separate logged counter).
pub fn decide(filters: &[std::sync::Arc<Rbac>], req: &RequestAttributes<'_>) -> (Verdict, usize) {
    for (passed, rbac) in filters.iter().enumerate() {
        match check(rbac, req) {
            Verdict::Allowed => {}
            denied => return (denied, passed),
        }
    }
    (Verdict::Allowed, filters.len())
}

/// One filter's decision.
fn check(rbac: &Rbac, req: &RequestAttributes<'_>) -> Verdict {
    let matched = first_match(rbac, req);
    match (rbac.action, matched) {
        (RbacAction::Deny, Some(name)) => Verdict::Denied(format!("denied by {name}")),
        (RbacAction::Allow, None) if rbac.policies.is_empty() => {
            Verdict::Denied("denied: the ALLOW filter has no policy".to_string())
        }
        (RbacAction::Allow, None) => {
            let names: Vec<&str> = rbac.policies.iter().map(|p| p.name.as_str()).collect();
            Verdict::Denied(format!(
                "denied: no ALLOW policy matched ({})",
                names.join(", ")
            ))
        }
        (RbacAction::Log, Some(name)) => {
            tracing::debug!(policy = name, "RBAC audit policy matched");
            Verdict::Allowed
        }
        _ => Verdict::Allowed,
    }
}

/// The name of `rbac`'s first policy (by name) that matches: what a shadow filter records as
/// its effective policy.
pub fn first_match<'r>(rbac: &'r Rbac, req: &RequestAttributes<'_>) -> Option<&'r str> {
    rbac.policies
        .iter()
        .find(|p| {
            p.permissions.iter().any(|x| permission(x, req))
                && p.principals.iter().any(|x| principal(x, req))
        })
        .map(|p| p.name.as_str())
}

/// Whether a metadata matcher accepts `found` (the value at its path, if any), `invert`
/// included: for matchers on metadata other filters than `jwt_authn` set.
pub fn metadata_value_matches(m: &MetadataMatcher, found: Option<&Value>) -> bool {
    let result = match (&m.value, found) {
        (ValueMatcher::Present(present), v) => v.is_some() == *present,
        (matcher, Some(v)) => value_matches(matcher, v),
        (_, None) => false,
    };
    result != m.invert
}

fn permission(p: &Permission, req: &RequestAttributes<'_>) -> bool {
    match p {
        Permission::Any => true,
        Permission::And(all) => all.iter().all(|x| permission(x, req)),
        Permission::Or(any) => any.iter().any(|x| permission(x, req)),
        Permission::Not(inner) => !permission(inner, req),
        Permission::Header(h) => header(h, req),
        Permission::UrlPath(m) => {
            let path = req.path_and_query;
            let path = path.split(['?', '#']).next().unwrap_or(path);
            m.matches(path)
        }
        Permission::DestinationIp(c) => req.local.is_some_and(|a| c.contains(a.ip())),
        Permission::DestinationPort(port) => req.local.is_some_and(|a| a.port() == *port),
        Permission::RequestedServerName(m) => m.matches(req.sni.unwrap_or("")),
        Permission::Metadata(m) => metadata(m, req),
    }
}

fn principal(p: &Principal, req: &RequestAttributes<'_>) -> bool {
    match p {
        Principal::Any => true,
        Principal::And(all) => all.iter().all(|x| principal(x, req)),
        Principal::Or(any) => any.iter().any(|x| principal(x, req)),
        Principal::Not(inner) => !principal(inner, req),
        // Only a connection with a verified client certificate is authenticated.
        Principal::Authenticated(m) => match (req.peer_identity, m) {
            (Some(id), Some(m)) => m.matches(id),
            (Some(_), None) => true,
            (None, _) => false,
        },
        Principal::DirectRemoteIp(c) => req.peer.is_some_and(|a| c.contains(a.ip())),
        Principal::RemoteIp(c) => remote_ip(req).is_some_and(|ip| c.contains(ip)),
        Principal::Header(h) => header(h, req),
        Principal::Metadata(m) => metadata(m, req),
    }
}

/// Envoy's downstream remote address without `use_remote_address`: the last
/// `x-forwarded-for` entry when there is one, else the peer.
fn remote_ip(req: &RequestAttributes<'_>) -> Option<IpAddr> {
    let xff = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|s| !s.is_empty());
    match xff {
        Some(last) => last.parse().ok(),
        None => req.peer.map(|a| a.ip()),
    }
}

/// A header's value as Envoy's matchers see it: pseudo-headers from the request line, others
/// with every value joined by `,`; `None` when absent.
fn header_value<'a>(name: &str, req: &RequestAttributes<'a>) -> Option<Cow<'a, str>> {
    match name {
        ":authority" | "host" => return Some(Cow::Borrowed(req.authority)),
        ":method" => return Some(Cow::Borrowed(req.method)),
        ":path" => return Some(Cow::Borrowed(req.path_and_query)),
        _ => {}
    }
    let mut values = req
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or(""));
    let first = values.next()?;
    let mut joined: Option<String> = None;
    for v in values {
        let s = joined.get_or_insert_with(|| first.to_string());
        s.push(',');
        s.push_str(v);
    }
    Some(joined.map_or(Cow::Borrowed(first), Cow::Owned))
}

fn header(h: &RbacHeaderMatcher, req: &RequestAttributes<'_>) -> bool {
    let value = header_value(&h.name, req);
    let result = match (&h.kind, value) {
        (HeaderValueMatch::Present(present), v) => v.is_some() == *present,
        (HeaderValueMatch::String(m), Some(v)) => m.matches(&v),
        (HeaderValueMatch::String(_), None) => false,
    };
    result != h.invert_match
}

/// Dynamic metadata: only the JWT filter's verified payload exists.
fn metadata(m: &MetadataMatcher, req: &RequestAttributes<'_>) -> bool {
    let found = lookup(m, req);
    let result = match (&m.value, found) {
        (ValueMatcher::Present(present), v) => v.is_some() == *present,
        (matcher, Some(v)) => value_matches(matcher, v),
        (_, None) => false,
    };
    result != m.invert
}

fn lookup<'a>(m: &MetadataMatcher, req: &RequestAttributes<'a>) -> Option<&'a Value> {
    let jwt = req.jwt?;
    if m.filter != crate::xds::convert::jwt::JWT_AUTHN {
        return None;
    }
    let (first, rest) = m.path.split_first()?;
    if jwt.metadata_key.as_deref() != Some(first.as_str()) {
        return None;
    }
    let mut v = &jwt.payload;
    for key in rest {
        v = v.as_object()?.get(key)?;
    }
    Some(v)
}

fn value_matches(m: &ValueMatcher, v: &Value) -> bool {
    match m {
        ValueMatcher::String(s) => v.as_str().is_some_and(|x| s.matches(x)),
        ValueMatcher::Present(p) => *p,
        ValueMatcher::ListOneOf(inner) => v
            .as_array()
            .is_some_and(|items| items.iter().any(|x| value_matches(inner, x))),
        ValueMatcher::Or(any) => any.iter().any(|x| value_matches(x, v)),
    }
}
