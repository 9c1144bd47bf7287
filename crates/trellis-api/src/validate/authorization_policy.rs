//! `AuthorizationPolicy` checks, following istiod's `ValidateAuthorizationPolicy` and
//! `security.ValidateAttribute`: what Istio rejects is rejected here, with the field path.

use super::Findings;
use super::common::{cidr, required};
use super::others::selector_and_targets;
use crate::security::{AuthorizationAction, AuthorizationPolicy, Condition, Operation, Source};

/// The warning for a security policy bound with `targetRef(s)`: istiod attaches such a policy
/// only to gateways and waypoints (`WorkloadPolicyMatcher::ShouldAttachPolicy`): a sidecar
/// ignores it even when it names the sidecar's Service or ServiceEntry (those kinds are for
/// waypoints). Trellis has no waypoints and its gateways do not enforce these policies, so the
/// policy applies to no proxy: said once, at the field, rather than silently.
pub(super) fn warn_targets_ignored(
    target_ref: Option<&crate::types::PolicyTargetReference>,
    target_refs: &[crate::types::PolicyTargetReference],
    p: &str,
    f: &mut Findings,
) {
    if let Some((field, reason)) = target_refs_ignored(target_ref, target_refs) {
        f.warn(format!("{p}.{field}"), reason);
    }
}

/// The field (`targetRef` or `targetRefs`) and the reason a security policy bound with it
/// applies to no Trellis proxy (see `warn_targets_ignored`), `None` without target refs: shared
/// by validation and the control plane's diagnostics.
pub fn target_refs_ignored(
    target_ref: Option<&crate::types::PolicyTargetReference>,
    target_refs: &[crate::types::PolicyTargetReference],
) -> Option<(&'static str, String)> {
    let field = if target_ref.is_some() {
        "targetRef"
    } else if !target_refs.is_empty() {
        "targetRefs"
    } else {
        return None;
    };
    let kinds: Vec<&str> = target_ref
        .into_iter()
        .chain(target_refs)
        .map(|r| r.kind.as_str())
        .collect();
    Some((
        field,
        format!(
            "policies bound with {field} (kind {}) apply to gateways and waypoints only: \
             sidecars ignore them, as Istio's do, so this policy applies to no Trellis proxy \
             (select workloads with a selector)",
            kinds.join(", ")
        ),
    ))
}

/// The `when` keys Istio knows whose values are free-form strings.
const PLAIN_KEYS: [&str; 6] = [
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "connection.sni",
];
/// The `when` keys whose values must be IPs or CIDRs.
const IP_KEYS: [&str; 3] = ["source.ip", "remote.ip", "destination.ip"];
/// The `when` keys with a name in brackets: `request.headers[x-user]`.
const MAP_KEYS: [&str; 3] = [
    "request.headers",
    "request.auth.claims",
    "experimental.envoy.filters.",
];

pub(crate) fn validate(ap: &AuthorizationPolicy, p: &str, f: &mut Findings) {
    selector_and_targets(
        ap.selector.as_ref(),
        ap.target_ref.as_ref(),
        &ap.target_refs,
        p,
        f,
    );
    warn_targets_ignored(ap.target_ref.as_ref(), &ap.target_refs, p, f);
    let custom = ap.action == Some(AuthorizationAction::Custom);
    if custom
        && ap
            .provider
            .as_ref()
            .and_then(|pr| pr.name.as_deref())
            .unwrap_or("")
            .is_empty()
    {
        f.error(
            format!("{p}.provider.name"),
            "action CUSTOM requires a provider name",
        );
    }
    if !custom && ap.provider.is_some() {
        f.error(
            format!("{p}.provider"),
            "provider is only allowed with action CUSTOM",
        );
    }
    for (i, rule) in ap.rules.iter().enumerate() {
        let rp = format!("{p}.rules[{i}]");
        for (j, from) in rule.from.iter().enumerate() {
            let sp = format!("{rp}.from[{j}].source");
            match &from.source {
                Some(src) => source(src, &sp, f),
                None => f.error(sp, "source is required"),
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let op = format!("{rp}.to[{j}].operation");
            match &to.operation {
                Some(o) => operation(o, &op, f),
                None => f.error(op, "operation is required"),
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            condition(c, &format!("{rp}.when[{j}]"), f);
        }
    }
}

/// A `from.source`: not empty, no empty strings, CIDRs that parse, and `serviceAccounts` alone.
fn source(src: &Source, sp: &str, f: &mut Findings) {
    let lists: [(&str, &Vec<String>); 14] = [
        ("principals", &src.principals),
        ("notPrincipals", &src.not_principals),
        ("requestPrincipals", &src.request_principals),
        ("notRequestPrincipals", &src.not_request_principals),
        ("namespaces", &src.namespaces),
        ("notNamespaces", &src.not_namespaces),
        ("serviceAccounts", &src.service_accounts),
        ("notServiceAccounts", &src.not_service_accounts),
        ("ipBlocks", &src.ip_blocks),
        ("notIpBlocks", &src.not_ip_blocks),
        ("remoteIpBlocks", &src.remote_ip_blocks),
        ("notRemoteIpBlocks", &src.not_remote_ip_blocks),
        ("trustDomains", &src.trust_domains),
        ("notTrustDomains", &src.not_trust_domains),
    ];
    if lists.iter().all(|(_, l)| l.is_empty()) {
        f.error(sp, "source must not be empty");
    }
    for (field, values) in lists {
        no_empty_values(f, &format!("{sp}.{field}"), values);
    }
    for (field, blocks) in [
        ("ipBlocks", &src.ip_blocks),
        ("notIpBlocks", &src.not_ip_blocks),
        ("remoteIpBlocks", &src.remote_ip_blocks),
        ("notRemoteIpBlocks", &src.not_remote_ip_blocks),
    ] {
        for (k, b) in blocks.iter().enumerate() {
            cidr(f, &format!("{sp}.{field}[{k}]"), b);
        }
    }
    let accounts = !src.service_accounts.is_empty() || !src.not_service_accounts.is_empty();
    let others = !src.principals.is_empty()
        || !src.not_principals.is_empty()
        || !src.namespaces.is_empty()
        || !src.not_namespaces.is_empty();
    if accounts && others {
        f.error(
            sp,
            "serviceAccounts cannot be combined with principals or namespaces",
        );
    }
    for (field, values) in [
        ("serviceAccounts", &src.service_accounts),
        ("notServiceAccounts", &src.not_service_accounts),
    ] {
        for (k, v) in values.iter().enumerate() {
            if v.contains('*') || v.matches('/').count() > 1 {
                f.error(
                    format!("{sp}.{field}[{k}]"),
                    format!(
                        "service account {v:?} must be NAME or NAMESPACE/NAME, without wildcards"
                    ),
                );
            }
        }
    }
}

/// A `to.operation`: not empty, no empty strings, ports in range, well-formed path templates.
fn operation(o: &Operation, op: &str, f: &mut Findings) {
    let lists: [(&str, &Vec<String>); 8] = [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("ports", &o.ports),
        ("notPorts", &o.not_ports),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
        ("paths", &o.paths),
        ("notPaths", &o.not_paths),
    ];
    if lists.iter().all(|(_, l)| l.is_empty()) {
        f.error(op, "operation must not be empty");
    }
    for (field, values) in lists {
        no_empty_values(f, &format!("{op}.{field}"), values);
    }
    for (field, ports) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for (k, pt) in ports.iter().enumerate() {
            port_value(f, &format!("{op}.{field}[{k}]"), pt);
        }
    }
    for (field, paths) in [("paths", &o.paths), ("notPaths", &o.not_paths)] {
        for (k, path) in paths.iter().enumerate() {
            if let Err(e) = path_template(path) {
                f.error(format!("{op}.{field}[{k}]"), e);
            }
        }
    }
}

/// A `when` condition: a key Istio knows, values that fit it.
fn condition(c: &Condition, cp: &str, f: &mut Findings) {
    required(f, &format!("{cp}.key"), "key", &c.key);
    if c.values.is_empty() && c.not_values.is_empty() {
        f.error(cp, "values or notValues is required");
    }
    no_empty_values(f, &format!("{cp}.values"), &c.values);
    no_empty_values(f, &format!("{cp}.notValues"), &c.not_values);
    let key = c.key.as_str();
    if key.is_empty() {
        return;
    }
    let all = || {
        c.values
            .iter()
            .enumerate()
            .map(|(k, v)| (format!("{cp}.values[{k}]"), v))
            .chain(
                c.not_values
                    .iter()
                    .enumerate()
                    .map(|(k, v)| (format!("{cp}.notValues[{k}]"), v)),
            )
    };
    if PLAIN_KEYS.contains(&key) {
        return;
    }
    if IP_KEYS.contains(&key) {
        for (path, v) in all() {
            cidr(f, &path, v);
        }
        return;
    }
    if key == "destination.port" {
        for (path, v) in all() {
            port_value(f, &path, v);
        }
        return;
    }
    if let Some(prefix) = MAP_KEYS.iter().find(|m| key.starts_with(**m)) {
        if let Err(e) = map_key(&key[prefix.len()..], *prefix == "request.auth.claims") {
            f.error(format!("{cp}.key"), format!("{key:?}: {e}"));
        }
        return;
    }
    f.error(format!("{cp}.key"), format!("unknown attribute {key:?}"));
}

/// The bracketed part of a map key: `[name]`, or for claims `[a][b]...` (nested claims).
fn map_key(rest: &str, nested: bool) -> Result<(), String> {
    let rest = if let Some(r) = rest.strip_prefix('[') {
        r
    } else {
        // `experimental.envoy.filters.a.b[c]`: the filter name comes first.
        match rest.split_once('[') {
            Some((_, r)) => r,
            None => return Err("the name must be in brackets, e.g. [name]".into()),
        }
    };
    let Some(inner) = rest.strip_suffix(']') else {
        return Err("the name must be in brackets, e.g. [name]".into());
    };
    let names: Vec<&str> = if nested {
        inner.split("][").collect()
    } else {
        vec![inner]
    };
    if names
        .iter()
        .any(|n| n.is_empty() || n.contains('[') || n.contains(']'))
    {
        return Err("the name in brackets must not be empty".into());
    }
    Ok(())
}

/// A port given as a string (Istio's `ports`/`destination.port`): 1..=65535.
fn port_value(f: &mut Findings, path: &str, value: &str) {
    if !value.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)) {
        f.error(path, format!("port {value:?} is out of range 1..=65535"));
    }
}

/// Istio rejects empty strings in value lists.
fn no_empty_values(f: &mut Findings, path: &str, values: &[String]) {
    for (k, v) in values.iter().enumerate() {
        if v.is_empty() {
            f.error(format!("{path}[{k}]"), "empty value is not allowed");
        }
    }
}

/// Istio's path templates: `{*}` (one segment) and `{**}` (the rest, last only), each a whole
/// segment; with a template, no other `*` or brace is allowed.
pub(crate) fn path_template(path: &str) -> Result<(), String> {
    if !path.contains('{') && !path.contains('}') {
        return Ok(());
    }
    if !path.starts_with('/') {
        return Err(format!("path template {path:?} must start with /"));
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        match *s {
            "{*}" => {}
            "{**}" if i + 1 == segments.len() => {}
            "{**}" => {
                return Err(format!(
                    "path template {path:?}: {{**}} must be the last segment"
                ));
            }
            other if other.contains(['{', '}', '*']) => {
                return Err(format!(
                    "path template {path:?}: segment {other:?} must be exactly {{*}} or {{**}}"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
