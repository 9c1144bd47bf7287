//! AuthorizationPolicy `CUSTOM` → Envoy external authorization, in istiod's shape
//! (`pilot/pkg/security/authz/builder/extauthz.go`).
//!
//! The CUSTOM rules become an RBAC filter in *shadow* mode (`shadow_rules`, action DENY,
//! `shadow_rules_stat_prefix: istio_ext_authz_`): it never denies, it only records the matched
//! rule's name in its dynamic metadata (`istio_ext_authz_shadow_effective_policy_id`). The
//! `ext_authz` filter after it has `filter_enabled_metadata` on that key (prefix
//! `istio-ext-authz`, the rules' name prefix), so only requests a CUSTOM rule matches are sent
//! to the authorizer. Istio picked this over per-route `ExtAuthzPerRoute` because RBAC
//! matchers express every rule attribute (principals, IPs, JWT claims) and routes cannot; we
//! follow it.
//!
//! The provider is the MeshConfig `extensionProviders` entry the policy names:
//! `envoyExtAuthzGrpc` (HTTP and, for TCP ports, `envoy.filters.network.ext_authz`) or
//! `envoyExtAuthzHttp` (HTTP only: a TCP port gets nothing from it, as in istiod). Its
//! `service:port` is the mesh cluster `outbound|PORT||HOST` of a visible service (a
//! ServiceEntry or mesh service). Anything that cannot be resolved — an unknown provider, a
//! provider of another kind, a service the proxy cannot see, several different providers on
//! one workload — fails closed: the CUSTOM rules become an enforcing DENY filter instead, as
//! istiod's "bad CUSTOM action" does.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, GrpcService, HeaderValue, HttpUri, grpc_service, http_uri,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::rbac::v3::{Policy, rbac::Action};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3 as http_authz;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkExtAuthz;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListStringMatcher, MetadataMatcher, StringMatcher, ValueMatcher, metadata_matcher,
    string_matcher, value_matcher,
};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use prost::Message;
use trellis_api::mesh_config::{ExtAuthzGrpcProvider, ExtAuthzHttpProvider, ExtAuthzRequestBody};
use trellis_api::security::{AuthorizationAction, AuthorizationPolicy};
use trellis_api::{MeshConfig, Resource, Spec};
use trellis_xds::to_any;

use super::{HTTP_RBAC, HTTP_RBAC_TYPE, NETWORK_RBAC, NETWORK_RBAC_TYPE, encode, rule};
use crate::model::{MeshModel, Named, ProxyView};
use crate::translate::outbound_cluster_name;
use crate::translate::proto::duration;

/// The HTTP ext_authz filter's name.
pub const HTTP_EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
/// Its config type.
pub const HTTP_EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
/// The network ext_authz filter's name.
pub const NETWORK_EXT_AUTHZ: &str = "envoy.filters.network.ext_authz";
/// Its config type.
pub const NETWORK_EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz";
/// The shadow RBAC filter's stat (and metadata key) prefix, istiod's.
pub const SHADOW_STAT_PREFIX: &str = "istio_ext_authz_";
/// The metadata key the shadow filter sets to the matched rule's name.
pub const SHADOW_POLICY_ID_KEY: &str = "istio_ext_authz_shadow_effective_policy_id";
/// The prefix of CUSTOM rule names, which `filter_enabled_metadata` matches.
pub const RULE_PREFIX: &str = "istio-ext-authz";
/// Istio's default check timeout.
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A resolved provider: its kind's settings and the cluster that reaches it.
#[derive(Debug)]
enum Provider<'m> {
    Grpc {
        cluster: String,
        config: &'m ExtAuthzGrpcProvider,
    },
    Http {
        cluster: String,
        host: String,
        config: &'m ExtAuthzHttpProvider,
    },
}

/// Config errors of CUSTOM policies against the mesh config: naming a provider that is not an
/// ext_authz provider is an error on `spec.provider.name` (such a policy also fails closed). An
/// unknown name is not an error here: istiod accepts it and fails closed at translation.
pub fn provider_errors(resources: &[Resource], mesh: &MeshConfig) -> Vec<String> {
    resources
        .iter()
        .filter_map(|r| {
            let Spec::AuthorizationPolicy(ap) = &r.spec else {
                return None;
            };
            if ap.action != Some(AuthorizationAction::Custom) {
                return None;
            }
            let name = ap.provider.as_ref()?.name.as_deref()?;
            let provider = mesh.provider(name)?;
            if provider.envoy_ext_authz_grpc.is_some() || provider.envoy_ext_authz_http.is_some() {
                return None;
            }
            Some(format!(
                "{}: {}: spec.provider.name: extension provider {name:?} is not an envoyExtAuthzGrpc or envoyExtAuthzHttp provider (the policy fails closed)",
                r.source.file.display(),
                r.key()
            ))
        })
        .collect()
}

/// Warnings for CUSTOM policies that name different providers and can select the same workload
/// (same namespace, or one in the root namespace; selectors without a label of different
/// values). Istio allows one provider per workload: such a workload's CUSTOM rules fail closed
/// (istiod's "only 1 provider can be used per workload"), which this says before it happens.
/// Policies bound by `targetRef(s)` address gateways and are left out.
pub fn provider_conflicts(resources: &[Resource], root_namespace: &str) -> Vec<String> {
    let custom: Vec<(&Resource, &AuthorizationPolicy, &str)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::AuthorizationPolicy(ap)
                if ap.action == Some(AuthorizationAction::Custom)
                    && ap.target_ref.is_none()
                    && ap.target_refs.is_empty() =>
            {
                let name = ap.provider.as_ref()?.name.as_deref()?;
                Some((r, ap, name))
            }
            _ => None,
        })
        .collect();
    let labels = |ap: &AuthorizationPolicy| {
        ap.selector
            .as_ref()
            .map(|s| s.match_labels.clone())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (i, (ra, a, pa)) in custom.iter().enumerate() {
        for (rb, b, pb) in &custom[i + 1..] {
            let namespaces_meet = ra.meta.namespace == rb.meta.namespace
                || ra.meta.namespace == root_namespace
                || rb.meta.namespace == root_namespace;
            let (la, lb) = (labels(a), labels(b));
            let selectors_meet = la
                .iter()
                .all(|(k, v)| lb.get(k).is_none_or(|other| other == v));
            if pa != pb && namespaces_meet && selectors_meet {
                out.push(format!(
                    "{}: {}: CUSTOM with provider {pa:?} and {} with provider {pb:?} can select the same workload: only 1 provider can be used per workload, found multiple providers: [{}]; such a workload's CUSTOM rules deny (fail closed)",
                    ra.source.file.display(),
                    ra.key(),
                    rb.key(),
                    {
                        let mut names = [*pa, *pb];
                        names.sort_unstable();
                        names.join(" ")
                    }
                ));
            }
        }
    }
    out
}

/// The CUSTOM policies among `policies`.
fn custom<'m>(policies: &[&'m Named<AuthorizationPolicy>]) -> Vec<&'m Named<AuthorizationPolicy>> {
    policies
        .iter()
        .copied()
        .filter(|p| p.spec.action == Some(AuthorizationAction::Custom))
        .collect()
}

/// The HTTP filters for the CUSTOM policies among `policies`: the shadow RBAC filter and the
/// ext_authz filter, or the fail-closed DENY filter; none without CUSTOM policies.
pub fn http_filters(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    policies: &[&Named<AuthorizationPolicy>],
) -> Vec<HttpFilter> {
    let custom = custom(policies);
    if custom.is_empty() {
        return Vec::new();
    }
    let http_filter = |name: &str, any| HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any)),
        ..Default::default()
    };
    match resolve(model, proxy, &custom) {
        Ok(provider) => {
            let shadow = HttpRbac {
                shadow_rules_stat_prefix: SHADOW_STAT_PREFIX.to_string(),
                ..Default::default()
            }
            .encode_to_vec();
            let rules = encode::rules_bytes(Action::Deny as i32, &rules(&custom, false, true));
            vec![
                http_filter(HTTP_RBAC, encode::wrap(HTTP_RBAC_TYPE, 2, &rules, shadow)),
                http_filter(
                    HTTP_EXT_AUTHZ,
                    to_any(HTTP_EXT_AUTHZ_TYPE, &http_ext_authz(&provider)),
                ),
            ]
        }
        Err(why) => {
            tracing::warn!(proxy = %proxy.node.ip, reason = %why, "CUSTOM authorization fails closed");
            let rules = encode::rules_bytes(Action::Deny as i32, &rules(&custom, false, false));
            vec![http_filter(
                HTTP_RBAC,
                encode::wrap(HTTP_RBAC_TYPE, 1, &rules, Vec::new()),
            )]
        }
    }
}

/// The network filters for the CUSTOM policies among `policies` on an inbound TCP chain: the
/// shadow RBAC filter and `envoy.filters.network.ext_authz` for a gRPC provider, nothing for
/// an HTTP provider (it cannot check a connection), or the fail-closed DENY filter.
pub fn network_filters(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    policies: &[&Named<AuthorizationPolicy>],
) -> Vec<Filter> {
    let custom = custom(policies);
    if custom.is_empty() {
        return Vec::new();
    }
    let network_filter = |name: &str, any| Filter {
        name: name.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(any)),
    };
    match resolve(model, proxy, &custom) {
        Ok(Provider::Grpc { cluster, config }) => {
            let shadow = NetworkRbac {
                stat_prefix: "tcp.".to_string(),
                shadow_rules_stat_prefix: SHADOW_STAT_PREFIX.to_string(),
                ..Default::default()
            }
            .encode_to_vec();
            let rules = encode::rules_bytes(Action::Deny as i32, &rules(&custom, true, true));
            let ext_authz = NetworkExtAuthz {
                stat_prefix: "tcp.".to_string(),
                grpc_service: Some(grpc_service(&cluster, config.timeout.map(|t| t.as_std()))),
                failure_mode_allow: config.fail_open.unwrap_or(false),
                transport_api_version: ApiVersion::V3 as i32,
                filter_enabled_metadata: Some(filter_enabled(NETWORK_RBAC)),
                ..Default::default()
            };
            vec![
                network_filter(
                    NETWORK_RBAC,
                    encode::wrap(NETWORK_RBAC_TYPE, 2, &rules, shadow),
                ),
                network_filter(
                    NETWORK_EXT_AUTHZ,
                    to_any(NETWORK_EXT_AUTHZ_TYPE, &ext_authz),
                ),
            ]
        }
        Ok(Provider::Http { .. }) => Vec::new(),
        Err(why) => {
            tracing::warn!(proxy = %proxy.node.ip, reason = %why, "CUSTOM authorization fails closed");
            let stat_prefix = NetworkRbac {
                stat_prefix: "tcp.".to_string(),
                ..Default::default()
            }
            .encode_to_vec();
            let rules = encode::rules_bytes(Action::Deny as i32, &rules(&custom, true, false));
            vec![network_filter(
                NETWORK_RBAC,
                encode::wrap(NETWORK_RBAC_TYPE, 1, &rules, stat_prefix),
            )]
        }
    }
}

/// The CUSTOM rules by name (`istio-ext-authz-ns[NS]-policy[NAME]-rule[i]` for the shadow
/// filter, the plain names when failing closed), built as DENY rules are (on TCP, HTTP-only
/// attributes are dropped, so a rule matches more).
fn rules(
    policies: &[&Named<AuthorizationPolicy>],
    for_tcp: bool,
    shadow: bool,
) -> BTreeMap<String, Policy> {
    let mut out = BTreeMap::new();
    for p in policies {
        let name = |i| {
            let plain = super::policy_name(&p.namespace, &p.name, i);
            if shadow {
                format!("{RULE_PREFIX}-{plain}")
            } else {
                plain
            }
        };
        if p.spec.rules.is_empty() {
            out.insert(name(0), rule::never());
            continue;
        }
        for (i, r) in p.spec.rules.iter().enumerate() {
            match rule::policy(r, &p.namespace, for_tcp, true) {
                Ok(policy) => {
                    out.insert(name(i), policy);
                }
                Err(e) => tracing::debug!(policy = %name(i), error = %e, "CUSTOM rule dropped"),
            }
        }
    }
    out
}

/// The one provider the workload's CUSTOM policies name, resolved; why not otherwise.
fn resolve<'m>(
    model: &'m MeshModel,
    proxy: &ProxyView<'_>,
    custom: &[&Named<AuthorizationPolicy>],
) -> Result<Provider<'m>, String> {
    let mut names: Vec<&str> = custom
        .iter()
        .map(|p| {
            p.spec
                .provider
                .as_ref()
                .and_then(|x| x.name.as_deref())
                .unwrap_or("")
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let [name] = names[..] else {
        return Err(format!(
            "only 1 provider can be used per workload, found multiple providers: {names:?}"
        ));
    };
    let provider = model
        .mesh
        .provider(name)
        .ok_or_else(|| format!("no extension provider named {name:?}"))?;
    if let Some(config) = &provider.envoy_ext_authz_grpc {
        status_on_error(config.status_on_error.as_deref())?;
        request_body_valid(config.include_request_body_in_check.as_ref())?;
        let (cluster, _) = cluster(model, proxy, &config.service, config.port)?;
        Ok(Provider::Grpc { cluster, config })
    } else if let Some(config) = &provider.envoy_ext_authz_http {
        status_on_error(config.status_on_error.as_deref())?;
        request_body_valid(config.include_request_body_in_check.as_ref())?;
        let (cluster, host) = cluster(model, proxy, &config.service, config.port)?;
        Ok(Provider::Http {
            cluster,
            host,
            config,
        })
    } else {
        Err(format!(
            "extension provider {name:?} is not an envoyExtAuthzGrpc or envoyExtAuthzHttp provider"
        ))
    }
}

/// `service` (a host name, or Istio's `NAMESPACE/NAME`) and `port` → the mesh cluster and the
/// service's host, if the proxy can see that service port.
fn cluster(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    service: &str,
    port: u32,
) -> Result<(String, String), String> {
    let by_name = service.split_once('/');
    crate::translate::scope::visible_services(model, proxy)
        .into_iter()
        .find(|(s, ports)| {
            let named = match by_name {
                Some((ns, name)) => s.namespace == ns && s.host.split('.').next() == Some(name),
                None => s.host == service,
            };
            named && ports.iter().any(|p| p.number == port)
        })
        .map(|(s, _)| (outbound_cluster_name(port, None, &s.host), s.host.clone()))
        .ok_or_else(|| format!("no visible service {service:?} with port {port}"))
}

/// `statusOnError` → Envoy's status (absent: Envoy's default 403); a code Envoy's enum does
/// not know is an error (Envoy would reject the config).
fn status_on_error(status: Option<&str>) -> Result<Option<HttpStatus>, String> {
    let Some(s) = status else {
        return Ok(None);
    };
    let code: i32 = s
        .parse()
        .map_err(|_| format!("statusOnError {s:?} is not a number"))?;
    StatusCode::try_from(code)
        .map_err(|_| format!("statusOnError {code} is not a status Envoy knows"))?;
    Ok(Some(HttpStatus { code }))
}

/// `filter_enabled_metadata`: the shadow filter recorded a CUSTOM rule's name.
fn filter_enabled(rbac_filter: &str) -> MetadataMatcher {
    MetadataMatcher {
        filter: rbac_filter.to_string(),
        path: vec![metadata_matcher::PathSegment {
            segment: Some(metadata_matcher::path_segment::Segment::Key(
                SHADOW_POLICY_ID_KEY.to_string(),
            )),
        }],
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::StringMatch(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Prefix(
                    RULE_PREFIX.to_string(),
                )),
                ..Default::default()
            })),
        }),
        invert: false,
    }
}

/// Envoy gRPC to the cluster; the authority is the cluster name with `|` (invalid there)
/// replaced, as istiod does.
fn grpc_service(cluster: &str, timeout: Option<std::time::Duration>) -> GrpcService {
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: cluster.to_string(),
                authority: cluster.replace('|', "_."),
                ..Default::default()
            },
        )),
        timeout: Some(duration(timeout.unwrap_or(DEFAULT_TIMEOUT))),
        ..Default::default()
    }
}

/// `includeRequestBodyInCheck` → Envoy's `with_request_body`. `packAsBytes` is passed for a
/// gRPC provider only: Istio documents it as having no effect on an HTTP provider (whose check
/// request carries the body as its own body either way).
fn with_request_body(
    body: Option<&ExtAuthzRequestBody>,
    grpc: bool,
) -> Option<http_authz::BufferSettings> {
    body.map(|b| http_authz::BufferSettings {
        max_request_bytes: b.max_request_bytes,
        allow_partial_message: b.allow_partial_message,
        pack_as_bytes: grpc && b.pack_as_bytes,
    })
}

/// Envoy rejects `max_request_bytes: 0` (it must be positive): such a provider cannot be used
/// and its policies fail closed rather than have the listener NACKed.
fn request_body_valid(body: Option<&ExtAuthzRequestBody>) -> Result<(), String> {
    match body {
        Some(b) if b.max_request_bytes == 0 => Err(
            "includeRequestBodyInCheck.maxRequestBytes must be greater than 0 (Envoy rejects 0)"
                .to_string(),
        ),
        _ => Ok(()),
    }
}

/// Istio's header lists: `*x` → suffix, `x*` → prefix, else exact; all case-insensitive.
fn headers(list: &[String]) -> Option<ListStringMatcher> {
    if list.is_empty() {
        return None;
    }
    let patterns = list
        .iter()
        .map(|h| {
            let pattern = if let Some(suffix) = h.strip_prefix('*') {
                string_matcher::MatchPattern::Suffix(suffix.to_string())
            } else if let Some(prefix) = h.strip_suffix('*') {
                string_matcher::MatchPattern::Prefix(prefix.to_string())
            } else {
                string_matcher::MatchPattern::Exact(h.clone())
            };
            StringMatcher {
                match_pattern: Some(pattern),
                ignore_case: true,
            }
        })
        .collect();
    Some(ListStringMatcher { patterns })
}

/// The HTTP ext_authz filter's config for `provider`.
fn http_ext_authz(provider: &Provider<'_>) -> http_authz::ExtAuthz {
    let filter_enabled_metadata = Some(filter_enabled(HTTP_RBAC));
    match provider {
        Provider::Grpc { cluster, config } => http_authz::ExtAuthz {
            transport_api_version: ApiVersion::V3 as i32,
            failure_mode_allow: config.fail_open.unwrap_or(false),
            status_on_error: status_on_error(config.status_on_error.as_deref())
                .ok()
                .flatten(),
            with_request_body: with_request_body(
                config.include_request_body_in_check.as_ref(),
                true,
            ),
            filter_enabled_metadata,
            services: Some(http_authz::ext_authz::Services::GrpcService(grpc_service(
                cluster,
                config.timeout.map(|t| t.as_std()),
            ))),
            ..Default::default()
        },
        Provider::Http {
            cluster,
            host,
            config,
        } => {
            let headers_to_add: Vec<HeaderValue> = config
                .include_additional_headers_in_check
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: k.clone(),
                    value: v.clone(),
                    ..Default::default()
                })
                .collect();
            let upstream = headers(&config.headers_to_upstream_on_allow);
            let client = headers(&config.headers_to_downstream_on_deny);
            let client_on_success = headers(&config.headers_to_downstream_on_allow);
            let authorization_response = (upstream.is_some()
                || client.is_some()
                || client_on_success.is_some())
            .then(|| http_authz::AuthorizationResponse {
                allowed_upstream_headers: upstream,
                allowed_client_headers: client,
                allowed_client_headers_on_success: client_on_success,
                ..Default::default()
            });
            let service = http_authz::HttpService {
                server_uri: Some(HttpUri {
                    uri: format!("http://{host}"),
                    http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster.clone())),
                    timeout: Some(duration(
                        config.timeout.map_or(DEFAULT_TIMEOUT, |t| t.as_std()),
                    )),
                }),
                path_prefix: config.path_prefix.clone().unwrap_or_default(),
                authorization_request: (!headers_to_add.is_empty()).then(|| {
                    http_authz::AuthorizationRequest {
                        headers_to_add,
                        ..Default::default()
                    }
                }),
                authorization_response,
                ..Default::default()
            };
            http_authz::ExtAuthz {
                transport_api_version: ApiVersion::V3 as i32,
                failure_mode_allow: config.fail_open.unwrap_or(false),
                status_on_error: status_on_error(config.status_on_error.as_deref())
                    .ok()
                    .flatten(),
                with_request_body: with_request_body(
                    config.include_request_body_in_check.as_ref(),
                    false,
                ),
                filter_enabled_metadata,
                allowed_headers: headers(&config.include_request_headers_in_check),
                services: Some(http_authz::ext_authz::Services::HttpService(service)),
                ..Default::default()
            }
        }
    }
}

#[cfg(test)]
#[path = "custom_tests.rs"]
mod tests;
