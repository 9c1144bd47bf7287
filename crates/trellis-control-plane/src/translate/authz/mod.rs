//! AuthorizationPolicy → Envoy RBAC filters for a workload's inbound listeners, as istiod's
//! `pilot/pkg/security/authz/builder` builds them.
//!
//! Policies apply from the workload's namespace and from the root namespace (mesh-wide), when
//! their selector matches the workload's labels (none: every workload of the namespace). As in
//! Istio, a policy bound with `targetRef(s)` applies to gateways and waypoints only, never to a
//! sidecar (even one of the Service or ServiceEntry it names). They become up to three `envoy.filters.http.rbac` filters
//! in Istio's order: AUDIT (`action: LOG`), DENY, ALLOW, preceded by the CUSTOM policies'
//! external authorization filters (`custom.rs`). Each rule is the policy
//! `ns[NS]-policy[NAME]-rule[i]`; a policy without rules is one that never matches, so an ALLOW
//! policy without rules denies everything and no ALLOW policy at all allows everything.

pub mod custom;
mod encode;
pub mod rule;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::rbac::v3::{Policy, rbac::Action};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use trellis_api::security::{AuthorizationAction, AuthorizationPolicy};

use crate::model::{MeshModel, Named, ProxyView, ROOT_NAMESPACE};

/// The HTTP RBAC filter's name.
pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
/// Its config type.
pub const HTTP_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/// The network (TCP) RBAC filter's name.
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// Its config type.
pub const NETWORK_RBAC_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";

/// The policies that apply to `proxy`, root namespace first, then by namespace and name.
pub fn applicable<'m>(
    model: &'m MeshModel,
    proxy: &ProxyView<'_>,
) -> Vec<&'m Named<AuthorizationPolicy>> {
    let mut out: Vec<_> = model
        .authorization_policies
        .iter()
        .filter(|p| p.namespace == ROOT_NAMESPACE || p.namespace == proxy.namespace())
        // istiod's `ShouldAttachPolicy` for a sidecar: a policy bound with `targetRef(s)` is
        // for gateways and waypoints (Service and ServiceEntry kinds: waypoints only), so a
        // sidecar ignores it; validation warns about it.
        .filter(|p| p.spec.target_ref.is_none() && p.spec.target_refs.is_empty())
        .filter(|p| {
            p.spec
                .selector
                .as_ref()
                .is_none_or(|sel| proxy.has_labels(&sel.match_labels))
        })
        .collect();
    out.sort_by_key(|p| (p.namespace != ROOT_NAMESPACE, &p.namespace, &p.name));
    out
}

/// Warnings for the AuthorizationPolicies and RequestAuthentications bound with `targetRef(s)`:
/// sidecars ignore them (see [`applicable`]), so they apply to no Trellis proxy.
pub fn target_ref_warnings(resources: &[trellis_api::Resource]) -> Vec<String> {
    use trellis_api::Spec;
    resources
        .iter()
        .filter_map(|r| {
            let (one, many) = match &r.spec {
                Spec::AuthorizationPolicy(ap) => (ap.target_ref.as_ref(), &ap.target_refs),
                Spec::RequestAuthentication(ra) => (ra.target_ref.as_ref(), &ra.target_refs),
                _ => return None,
            };
            let (field, reason) = trellis_api::target_refs_ignored(one, many)?;
            Some(format!(
                "{}: {}: spec.{field}: {reason}",
                r.source.file.display(),
                r.key()
            ))
        })
        .collect()
}

/// The authorization HTTP filters for `proxy`'s inbound HTTP connection managers, in Istio's
/// order (CUSTOM's shadow RBAC and ext_authz, then RBAC for AUDIT, DENY, ALLOW); empty when no
/// policy applies.
pub fn http_filters(model: &MeshModel, proxy: &ProxyView<'_>) -> Vec<HttpFilter> {
    let policies = applicable(model, proxy);
    let mut filters = custom::http_filters(model, proxy, &policies);
    filters.extend(
        plan(&policies, false)
            .into_iter()
            .map(|(action, rules)| HttpFilter {
                name: HTTP_RBAC.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(encode::wrap(
                    HTTP_RBAC_TYPE,
                    1,
                    &encode::rules_bytes(action as i32, &rules),
                    Vec::new(),
                ))),
                ..Default::default()
            }),
    );
    filters
}

/// The RBAC network filters for `proxy`'s inbound TCP filter chains (stat prefix `tcp.`, as
/// istiod), in the same order. HTTP-only attributes never match on TCP: an ALLOW rule using
/// them is dropped, a DENY rule ignores them (so it denies more).
pub fn network_filters(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
) -> Vec<envoy_types::pb::envoy::config::listener::v3::Filter> {
    use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
    use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
    use prost::Message;
    let policies = applicable(model, proxy);
    let mut filters = custom::network_filters(model, proxy, &policies);
    filters.extend(plan(&policies, true).into_iter().map(|(action, rules)| {
        let stat_prefix = NetworkRbac {
            stat_prefix: "tcp.".to_string(),
            ..Default::default()
        }
        .encode_to_vec();
        Filter {
            name: NETWORK_RBAC.to_string(),
            config_type: Some(filter::ConfigType::TypedConfig(encode::wrap(
                NETWORK_RBAC_TYPE,
                1,
                &encode::rules_bytes(action as i32, &rules),
                stat_prefix,
            ))),
        }
    }));
    filters
}

/// The RBAC configs (action, policies by name) for the filter chain kind, in filter order.
fn plan(
    policies: &[&Named<AuthorizationPolicy>],
    for_tcp: bool,
) -> Vec<(Action, BTreeMap<String, Policy>)> {
    let of = |kinds: &[AuthorizationAction]| -> Vec<&Named<AuthorizationPolicy>> {
        policies
            .iter()
            .copied()
            .filter(|p| kinds.contains(&p.spec.action.unwrap_or(AuthorizationAction::Allow)))
            .collect()
    };
    let mut out = Vec::new();
    for (kinds, action) in [
        (&[AuthorizationAction::Audit][..], Action::Log),
        (&[AuthorizationAction::Deny][..], Action::Deny),
        (&[AuthorizationAction::Allow][..], Action::Allow),
    ] {
        let selected = of(kinds);
        if selected.is_empty() {
            continue;
        }
        out.push((action, rules(&selected, for_tcp, action)));
    }
    out
}

/// The inbound HCM's path normalization for the mesh's `pathNormalization`, as istiod sets
/// it: `NONE` leaves the path alone (`normalize_path: false`); `BASE` (the default) is RFC 3986
/// normalization (unreserved escapes decoded, dot segments removed) without merging slashes
/// (`//admin` stays `//admin`); `MERGE_SLASHES` adds `merge_slashes`; and
/// `DECODE_AND_MERGE_SLASHES` also decodes `%2F`/`%5C` first (`UNESCAPE_AND_FORWARD`), so
/// `/%2Fadmin` is `/admin`. Escaped slashes are otherwise kept unchanged.
pub fn path_normalization(
    mesh: &trellis_api::mesh_config::MeshConfig,
) -> (
    Option<envoy_types::pb::google::protobuf::BoolValue>,
    bool,
    i32,
) {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::PathWithEscapedSlashesAction as Action;
    use envoy_types::pb::google::protobuf::BoolValue;
    use trellis_api::mesh_config::PathNormalizationType as N;
    let normalize = |value| Some(BoolValue { value });
    match mesh.path_normalization() {
        N::None => (normalize(false), false, Action::KeepUnchanged as i32),
        N::Default | N::Base => (normalize(true), false, Action::KeepUnchanged as i32),
        N::MergeSlashes => (normalize(true), true, Action::KeepUnchanged as i32),
        N::DecodeAndMergeSlashes => (normalize(true), true, Action::UnescapeAndForward as i32),
    }
}

/// `hcm` with the mesh's path normalization ([`path_normalization`]): istiod sets it on every
/// connection manager it builds (inbound, outbound and gateway), so routes match the path the
/// upstream will see.
pub fn normalized(
    mesh: &trellis_api::mesh_config::MeshConfig,
    hcm: envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager,
) -> envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager{
    let (normalize_path, merge_slashes, path_with_escaped_slashes_action) =
        path_normalization(mesh);
    envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager {
        normalize_path,
        merge_slashes,
        path_with_escaped_slashes_action,
        ..hcm
    }
}

/// Istio's policy name for rule `i`.
pub fn policy_name(namespace: &str, name: &str, i: usize) -> String {
    format!("ns[{namespace}]-policy[{name}]-rule[{i}]")
}

fn rules(
    policies: &[&Named<AuthorizationPolicy>],
    for_tcp: bool,
    action: Action,
) -> BTreeMap<String, Policy> {
    let mut out = BTreeMap::new();
    for p in policies {
        let name = |i| policy_name(&p.namespace, &p.name, i);
        if p.spec.rules.is_empty() {
            out.insert(name(0), rule::never());
            continue;
        }
        for (i, r) in p.spec.rules.iter().enumerate() {
            let skip_http_only = action != Action::Allow;
            match rule::policy(r, &p.namespace, for_tcp, skip_http_only) {
                Ok(policy) => {
                    out.insert(name(i), policy);
                }
                Err(e) => {
                    tracing::debug!(policy = %name(i), error = %e, "rule dropped for TCP");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
