//! What a rule does: forward (destinations, rewrite, timeout, retries, mirrors, hash policy),
//! redirect, or answer directly.

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, RuntimeFractionalPercent, data_source::Specifier,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy, Route, RouteAction, WeightedCluster,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    retry_policy::{RetryHostPredicate, retry_host_predicate},
    route,
    route_action::{
        ClusterSpecifier, HashPolicy, HostRewriteSpecifier, RequestMirrorPolicy, hash_policy,
    },
    weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::google::protobuf::UInt32Value;
use trellis_api::networking::{Destination, HttpRetry, HttpRoute};
use trellis_xds::to_any;

use super::headers;
use super::matching::regex_matcher;
use crate::model::{MeshModel, ProxyView};
use crate::registry::ServicePort;
use crate::translate::outbound_cluster_name;
use crate::translate::policy;
use crate::translate::proto::{PREVIOUS_HOSTS, PREVIOUS_HOSTS_TYPE, duration, fraction};

/// Istio's default retry conditions (when a rule has no `retries`).
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// Sets the rule's action (and destination-level headers of a single destination) on `route`;
/// `false` when the rule has nothing to do on this port (every destination weighs 0).
pub fn apply(
    route: &mut Route,
    http: &HttpRoute,
    namespace: &str,
    port: &ServicePort,
    model: &MeshModel,
    proxy: &ProxyView<'_>,
) -> bool {
    if let Some(redirect) = &http.redirect {
        let response_code = match redirect.redirect_code.unwrap_or(301) {
            302 => RedirectResponseCode::Found,
            303 => RedirectResponseCode::SeeOther,
            307 => RedirectResponseCode::TemporaryRedirect,
            308 => RedirectResponseCode::PermanentRedirect,
            _ => RedirectResponseCode::MovedPermanently,
        };
        route.action = Some(route::Action::Redirect(RedirectAction {
            host_redirect: redirect.authority.clone().unwrap_or_default(),
            port_redirect: redirect.port.unwrap_or(0),
            response_code: response_code as i32,
            scheme_rewrite_specifier: redirect
                .scheme
                .clone()
                .map(SchemeRewriteSpecifier::SchemeRedirect),
            path_rewrite_specifier: redirect.uri.clone().map(PathRewriteSpecifier::PathRedirect),
            ..Default::default()
        }));
        return true;
    }
    if let Some(direct) = &http.direct_response {
        let body = direct
            .body
            .as_ref()
            .and_then(|b| match (&b.string, &b.bytes) {
                (Some(s), _) => Some(Specifier::InlineString(s.clone())),
                (None, Some(b64)) => base64_decode(b64).map(Specifier::InlineBytes),
                _ => None,
            })
            .map(|specifier| DataSource {
                specifier: Some(specifier),
                ..Default::default()
            });
        route.action = Some(route::Action::DirectResponse(DirectResponseAction {
            status: direct.status,
            body,
            ..Default::default()
        }));
        return true;
    }
    let mut clusters: Vec<(String, u32, &trellis_api::networking::HttpRouteDestination)> =
        Vec::new();
    let single = http.route.len() == 1;
    for destination in &http.route {
        let weight = match destination.weight {
            Some(w) => u32::try_from(w).unwrap_or(0),
            None if single => 100,
            None => 0,
        };
        if weight == 0 && !single {
            continue;
        }
        let (name, _) = cluster_of(&destination.destination, namespace, port, model);
        clusters.push((name, weight, destination));
    }
    let cluster_specifier = match clusters.as_slice() {
        [] => return false,
        [(name, _, destination)] => {
            headers::apply_route_headers(route, destination.headers.as_ref());
            ClusterSpecifier::Cluster(name.clone())
        }
        _ => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .iter()
                .map(|(name, weight, destination)| {
                    let mut cw = ClusterWeight {
                        name: name.clone(),
                        weight: Some(UInt32Value { value: *weight }),
                        ..Default::default()
                    };
                    headers::apply_cluster_headers(&mut cw, destination.headers.as_ref());
                    cw
                })
                .collect(),
            ..Default::default()
        }),
    };
    let timeout = http
        .timeout
        .map(|t| t.as_std())
        .unwrap_or(std::time::Duration::ZERO);
    let mut action = RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: Some(duration(timeout)),
        retry_policy: retry_policy(http.retries.as_ref()),
        request_mirror_policies: mirrors(http, namespace, port, model),
        ..Default::default()
    };
    // The hash policy of the destination's DestinationRule, when every destination agrees.
    let hashes: Vec<Vec<HashPolicy>> = clusters
        .iter()
        .map(|(_, _, d)| {
            let (_, (host, target_port)) = cluster_of(&d.destination, namespace, port, model);
            hash_policy(
                model,
                proxy,
                &host,
                d.destination.subset.as_deref(),
                target_port,
            )
        })
        .collect();
    if let Some(first) = hashes.first()
        && hashes.iter().all(|h| h == first)
    {
        action.hash_policy = first.clone();
    }
    if let Some(rewrite) = &http.rewrite {
        if let Some(rr) = &rewrite.uri_regex_rewrite {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex_matcher(&rr.match_)),
                substitution: rr.rewrite.clone(),
            });
        } else if let Some(uri) = rewrite.uri.as_ref().filter(|u| !u.is_empty()) {
            action.prefix_rewrite = uri.clone();
        }
        if let Some(authority) = rewrite.authority.as_ref().filter(|a| !a.is_empty()) {
            action.host_rewrite_specifier =
                Some(HostRewriteSpecifier::HostRewriteLiteral(authority.clone()));
        }
    }
    route.action = Some(route::Action::Route(action));
    true
}

/// The outbound cluster of a destination, with its host and port: the destination's port, else
/// the service's only port, else the port of the virtual host being built.
fn cluster_of(
    destination: &Destination,
    namespace: &str,
    port: &ServicePort,
    model: &MeshModel,
) -> (String, (String, u32)) {
    let host = trellis_api::resolve_host(&destination.host, namespace);
    let target_port = destination
        .port
        .as_ref()
        .and_then(|p| p.number)
        .or_else(|| {
            let service = model.registry.service(&host)?;
            match service.ports.as_slice() {
                [only] => Some(only.number),
                _ => service
                    .ports
                    .iter()
                    .find(|p| p.number == port.number)
                    .map(|p| p.number),
            }
        })
        .unwrap_or(port.number);
    (
        outbound_cluster_name(target_port, destination.subset.as_deref(), &host),
        (host, target_port),
    )
}

/// Istio's retry policy: its default when `retries` is absent, none for `attempts: 0`.
pub fn retry_policy(retries: Option<&HttpRetry>) -> Option<RetryPolicy> {
    let mut policy = RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.to_string(),
        num_retries: Some(UInt32Value { value: 2 }),
        retriable_status_codes: vec![503],
        ..Default::default()
    };
    let mut ignore_previous = true;
    if let Some(r) = retries {
        let attempts = r.attempts.unwrap_or(0);
        if attempts <= 0 {
            return None;
        }
        policy.num_retries = Some(UInt32Value {
            value: u32::try_from(attempts).unwrap_or(0),
        });
        if let Some(on) = r.retry_on.as_deref().filter(|s| !s.trim().is_empty()) {
            let mut conditions = Vec::new();
            let mut codes = Vec::new();
            for item in on.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match item.parse::<u32>() {
                    Ok(code) => codes.push(code),
                    Err(_) => conditions.push(item.to_string()),
                }
            }
            if !codes.is_empty() && !conditions.iter().any(|c| c == "retriable-status-codes") {
                conditions.push("retriable-status-codes".to_string());
            }
            policy.retry_on = conditions.join(",");
            policy.retriable_status_codes = codes;
        }
        if let Some(t) = r.per_try_timeout {
            policy.per_try_timeout = Some(duration(t.as_std()));
        }
        ignore_previous = r.retry_ignore_previous_hosts.unwrap_or(true);
    }
    if ignore_previous {
        policy.retry_host_predicate = vec![RetryHostPredicate {
            name: PREVIOUS_HOSTS.to_string(),
            config_type: Some(retry_host_predicate::ConfigType::TypedConfig(to_any(
                PREVIOUS_HOSTS_TYPE,
                &PreviousHostsPredicate::default(),
            ))),
        }];
        policy.host_selection_retry_max_attempts = 5;
    }
    Some(policy)
}

/// `mirror`/`mirrors` with their percentages (100 % when unset).
fn mirrors(
    http: &HttpRoute,
    namespace: &str,
    port: &ServicePort,
    model: &MeshModel,
) -> Vec<RequestMirrorPolicy> {
    let mut out = Vec::new();
    let mut push = |d: &Destination, percent: f64| {
        let (cluster, _) = cluster_of(d, namespace, port, model);
        out.push(RequestMirrorPolicy {
            cluster,
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(fraction(percent)),
                ..Default::default()
            }),
            ..Default::default()
        });
    };
    if let Some(m) = &http.mirror {
        let percent = http
            .mirror_percentage
            .map(|p| p.value)
            .or(http.mirror_percent.map(f64::from))
            .or(http.mirror_percent_legacy.map(f64::from))
            .unwrap_or(100.0);
        push(m, percent);
    }
    for m in &http.mirrors {
        push(&m.destination, m.percentage.map_or(100.0, |p| p.value));
    }
    out
}

/// The route's hash policy from the destination's `consistentHash`, if any.
pub fn hash_policy(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    host: &str,
    subset: Option<&str>,
    port: u32,
) -> Vec<HashPolicy> {
    let rule = model.destination_rule_for_proxy(host, proxy);
    let Some(policy) = policy::effective(rule.map(|r| &r.spec), subset, port) else {
        return Vec::new();
    };
    let Some(hash) = policy
        .load_balancer
        .as_ref()
        .and_then(|lb| lb.consistent_hash.as_ref())
    else {
        return Vec::new();
    };
    let specifier = if let Some(h) = &hash.http_header_name {
        hash_policy::PolicySpecifier::Header(hash_policy::Header {
            header_name: h.clone(),
            ..Default::default()
        })
    } else if let Some(c) = &hash.http_cookie {
        hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
            name: c.name.clone(),
            ttl: c.ttl.map(|t| duration(t.as_std())),
            path: c.path.clone().unwrap_or_default(),
            ..Default::default()
        })
    } else if hash.use_source_ip == Some(true) {
        hash_policy::PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
            source_ip: true,
        })
    } else if let Some(q) = &hash.http_query_parameter_name {
        hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter {
            name: q.clone(),
        })
    } else {
        return Vec::new();
    };
    vec![HashPolicy {
        policy_specifier: Some(specifier),
        ..Default::default()
    }]
}

/// Standard base64 (with or without padding); `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}
