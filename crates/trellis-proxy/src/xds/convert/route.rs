//! `RouteConfiguration` → [`config::RouteTable`].

#![allow(deprecated)]

use std::collections::HashSet;

use envoy_types::pb::envoy::config::route::v3 as proto;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;

use super::{ConvertError, Cx, join, reject_unsupported};
use crate::config;

impl TryFrom<&proto::RouteConfiguration> for config::RouteTable {
    type Error = ConvertError;

    fn try_from(rc: &proto::RouteConfiguration) -> Result<Self, ConvertError> {
        let cx = Cx::new("RouteConfiguration", &rc.name);
        if rc.name.is_empty() {
            return Err(cx.missing("name"));
        }
        convert_route_table(&cx, "", rc)
    }
}

/// Converts a route table, standalone (RDS) or inline in a listener (`path` says where).
pub(crate) fn convert_route_table(
    cx: &Cx,
    path: &str,
    rc: &proto::RouteConfiguration,
) -> Result<config::RouteTable, ConvertError> {
    reject_unsupported!(cx, path, rc, proto::RouteConfiguration { name, virtual_hosts, validate_clusters }
        unsupported { vhds, internal_only_headers, response_headers_to_add, response_headers_to_remove, request_headers_to_add, request_headers_to_remove, most_specific_header_mutations_wins, max_direct_response_body_size_bytes, cluster_specifier_plugins, request_mirror_policies, ignore_port_in_host_matching, vhost_header, ignore_path_parameters_in_path_matching, typed_per_filter_config, metadata, route_specifiers });
    if rc.validate_clusters.as_ref().is_some_and(|v| v.value) {
        return Err(cx.unsupported_value(&join(path, "validate_clusters"), "true"));
    }
    let mut seen = HashSet::new();
    let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        let vpath = join(path, &format!("virtual_hosts[{i}]"));
        let vhost = convert_vhost(cx, &vpath, vh)?;
        for (j, domain) in vhost.domains.iter().enumerate() {
            if !seen.insert(domain.clone()) {
                return Err(cx.err(
                    &join(&vpath, &format!("domains[{j}]")),
                    format_args!("domain {domain:?} appears in more than one virtual host"),
                ));
            }
        }
        virtual_hosts.push(vhost);
    }
    Ok(config::RouteTable {
        name: rc.name.clone(),
        virtual_hosts,
    })
}

fn convert_vhost(
    cx: &Cx,
    path: &str,
    vh: &proto::VirtualHost,
) -> Result<config::VirtualHost, ConvertError> {
    reject_unsupported!(cx, path, vh, proto::VirtualHost { name, domains, routes }
        unsupported { matcher, require_tls, virtual_clusters, rate_limits, request_headers_to_add, request_headers_to_remove, response_headers_to_add, response_headers_to_remove, cors, typed_per_filter_config, include_request_attempt_count, include_attempt_count_in_response, retry_policy, retry_policy_typed_config, hedge_policy, include_is_timeout_retry_header, per_request_buffer_limit_bytes, request_body_buffer_limit, request_mirror_policies, metadata, route_specifiers });
    if vh.domains.is_empty() {
        return Err(cx.missing(&join(path, "domains")));
    }
    let mut domains = Vec::with_capacity(vh.domains.len());
    for (i, d) in vh.domains.iter().enumerate() {
        let valid = !d.is_empty()
            && (d == "*"
                || !d.contains('*')
                || (d.matches('*').count() == 1 && (d.starts_with('*') || d.ends_with('*'))));
        if !valid {
            return Err(cx.err(
                &join(path, &format!("domains[{i}]")),
                format_args!("{d:?} is not a domain, *.suffix, prefix.* or *"),
            ));
        }
        domains.push(d.to_ascii_lowercase());
    }
    let routes = vh
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| convert_route(cx, &join(path, &format!("routes[{i}]")), r))
        .collect::<Result<_, _>>()?;
    Ok(config::VirtualHost {
        name: vh.name.clone(),
        domains,
        routes,
    })
}

fn convert_route(cx: &Cx, path: &str, r: &proto::Route) -> Result<config::Route, ConvertError> {
    reject_unsupported!(cx, path, r, proto::Route { name, r#match, action }
        unsupported { metadata, decorator, typed_per_filter_config, request_headers_to_add, request_headers_to_remove, response_headers_to_add, response_headers_to_remove, tracing, per_request_buffer_limit_bytes, stat_prefix, request_body_buffer_limit, route_specifiers });
    let m = r
        .r#match
        .as_ref()
        .ok_or_else(|| cx.missing(&join(path, "match")))?;
    let matcher = convert_match(cx, &join(path, "match"), m)?;
    use proto::route::Action as A;
    let action = match &r.action {
        Some(A::Route(ra)) => convert_action(cx, &join(path, "route"), ra)?,
        Some(A::Redirect(_)) => return Err(cx.unsupported_field(&join(path, "redirect"))),
        Some(A::DirectResponse(_)) => {
            return Err(cx.unsupported_field(&join(path, "direct_response")));
        }
        Some(A::FilterAction(_)) => return Err(cx.unsupported_field(&join(path, "filter_action"))),
        Some(A::NonForwardingAction(_)) => {
            return Err(cx.unsupported_field(&join(path, "non_forwarding_action")));
        }
        None => return Err(cx.missing(&join(path, "route"))),
    };
    Ok(config::Route {
        name: r.name.clone(),
        matcher,
        action,
    })
}

fn convert_match(
    cx: &Cx,
    path: &str,
    m: &proto::RouteMatch,
) -> Result<config::RouteMatch, ConvertError> {
    reject_unsupported!(cx, path, m, proto::RouteMatch { case_sensitive, headers, path_specifier }
        unsupported { runtime_fraction, query_parameters, cookies, grpc, tls_context, dynamic_metadata, filter_state });
    use proto::route_match::PathSpecifier as P;
    let path_match = match &m.path_specifier {
        Some(P::Prefix(p)) => config::PathMatch::Prefix(p.clone()),
        Some(P::Path(p)) => config::PathMatch::Path(p.clone()),
        Some(P::SafeRegex(re)) => {
            config::PathMatch::SafeRegex(regex(cx, &join(path, "safe_regex"), re)?)
        }
        Some(P::ConnectMatcher(_)) => {
            return Err(cx.unsupported_field(&join(path, "connect_matcher")));
        }
        Some(P::PathSeparatedPrefix(_)) => {
            return Err(cx.unsupported_field(&join(path, "path_separated_prefix")));
        }
        Some(P::PathMatchPolicy(_)) => {
            return Err(cx.unsupported_field(&join(path, "path_match_policy")));
        }
        None => return Err(cx.missing(&join(path, "prefix"))),
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| convert_header(cx, &join(path, &format!("headers[{i}]")), h))
        .collect::<Result<_, _>>()?;
    Ok(config::RouteMatch {
        path: path_match,
        case_sensitive: m.case_sensitive.as_ref().is_none_or(|b| b.value),
        headers,
    })
}

fn convert_header(
    cx: &Cx,
    path: &str,
    h: &proto::HeaderMatcher,
) -> Result<config::HeaderMatcher, ConvertError> {
    reject_unsupported!(cx, path, h, proto::HeaderMatcher { name, invert_match, header_match_specifier }
        unsupported { treat_missing_header_as_empty });
    if h.name.is_empty() {
        return Err(cx.missing(&join(path, "name")));
    }
    use proto::header_matcher::HeaderMatchSpecifier as H;
    let kind = match &h.header_match_specifier {
        Some(H::StringMatch(sm)) => string_match(cx, &join(path, "string_match"), sm)?,
        Some(H::PresentMatch(p)) => config::HeaderMatchKind::Present(*p),
        Some(H::ExactMatch(_)) => return Err(cx.unsupported_field(&join(path, "exact_match"))),
        Some(H::SafeRegexMatch(_)) => {
            return Err(cx.unsupported_field(&join(path, "safe_regex_match")));
        }
        Some(H::RangeMatch(_)) => return Err(cx.unsupported_field(&join(path, "range_match"))),
        Some(H::PrefixMatch(_)) => return Err(cx.unsupported_field(&join(path, "prefix_match"))),
        Some(H::SuffixMatch(_)) => return Err(cx.unsupported_field(&join(path, "suffix_match"))),
        Some(H::ContainsMatch(_)) => {
            return Err(cx.unsupported_field(&join(path, "contains_match")));
        }
        None => return Err(cx.missing(&join(path, "string_match"))),
    };
    Ok(config::HeaderMatcher {
        name: h.name.to_ascii_lowercase(),
        kind,
        invert_match: h.invert_match,
    })
}

fn string_match(
    cx: &Cx,
    path: &str,
    sm: &matcher::StringMatcher,
) -> Result<config::HeaderMatchKind, ConvertError> {
    reject_unsupported!(cx, path, sm, matcher::StringMatcher { match_pattern } unsupported { ignore_case });
    use matcher::string_matcher::MatchPattern as M;
    Ok(match &sm.match_pattern {
        Some(M::Exact(s)) => config::HeaderMatchKind::Exact(s.clone()),
        Some(M::Prefix(s)) => config::HeaderMatchKind::Prefix(s.clone()),
        Some(M::Suffix(s)) => config::HeaderMatchKind::Suffix(s.clone()),
        Some(M::SafeRegex(re)) => {
            config::HeaderMatchKind::SafeRegex(regex(cx, &join(path, "safe_regex"), re)?)
        }
        Some(M::Contains(_)) => return Err(cx.unsupported_field(&join(path, "contains"))),
        Some(M::Custom(_)) => return Err(cx.unsupported_field(&join(path, "custom"))),
        None => return Err(cx.missing(&join(path, "exact"))),
    })
}

fn regex(cx: &Cx, path: &str, re: &matcher::RegexMatcher) -> Result<config::Pattern, ConvertError> {
    reject_unsupported!(cx, path, re, matcher::RegexMatcher { regex } unsupported { engine_type });
    config::Pattern::new(&re.regex).map_err(|e| {
        cx.err(
            &join(path, "regex"),
            format_args!("invalid regex {:?}: {e}", re.regex),
        )
    })
}

fn convert_action(
    cx: &Cx,
    path: &str,
    ra: &proto::RouteAction,
) -> Result<config::RouteAction, ConvertError> {
    reject_unsupported!(cx, path, ra, proto::RouteAction { timeout, cluster_specifier }
        unsupported { cluster_not_found_response_code, metadata_match, prefix_rewrite, regex_rewrite, path_rewrite_policy, path_rewrite, append_x_forwarded_host, idle_timeout, flush_timeout, early_data_policy, retry_policy, retry_policy_typed_config, request_mirror_policies, priority, rate_limits, include_vh_rate_limits, hash_policy, cors, max_grpc_timeout, grpc_timeout_offset, upgrade_configs, internal_redirect_policy, internal_redirect_action, max_internal_redirects, hedge_policy, max_stream_duration, host_rewrite_specifier });
    use proto::route_action::ClusterSpecifier as C;
    let target = match &ra.cluster_specifier {
        Some(C::Cluster(name)) if !name.is_empty() => config::ClusterTarget::Cluster(name.clone()),
        Some(C::Cluster(_)) => return Err(cx.missing(&join(path, "cluster"))),
        Some(C::WeightedClusters(wc)) => weighted(cx, &join(path, "weighted_clusters"), wc)?,
        Some(C::ClusterHeader(_)) => {
            return Err(cx.unsupported_field(&join(path, "cluster_header")));
        }
        Some(C::ClusterSpecifierPlugin(_)) => {
            return Err(cx.unsupported_field(&join(path, "cluster_specifier_plugin")));
        }
        Some(C::InlineClusterSpecifierPlugin(_)) => {
            return Err(cx.unsupported_field(&join(path, "inline_cluster_specifier_plugin")));
        }
        None => return Err(cx.missing(&join(path, "cluster"))),
    };
    let timeout = match &ra.timeout {
        Some(d) => Some(super::duration(cx, &join(path, "timeout"), d)?).filter(|d| !d.is_zero()),
        None => None,
    };
    Ok(config::RouteAction { target, timeout })
}

fn weighted(
    cx: &Cx,
    path: &str,
    wc: &proto::WeightedCluster,
) -> Result<config::ClusterTarget, ConvertError> {
    reject_unsupported!(cx, path, wc, proto::WeightedCluster { clusters }
        unsupported { total_weight, runtime_key_prefix, random_value_specifier });
    let mut out = Vec::with_capacity(wc.clusters.len());
    let mut total: u64 = 0;
    for (i, c) in wc.clusters.iter().enumerate() {
        let cpath = join(path, &format!("clusters[{i}]"));
        reject_unsupported!(cx, &cpath, c, proto::weighted_cluster::ClusterWeight { name, weight }
            unsupported { cluster_header, metadata_match, request_headers_to_add, request_headers_to_remove, response_headers_to_add, response_headers_to_remove, typed_per_filter_config, host_rewrite_specifier });
        if c.name.is_empty() {
            return Err(cx.missing(&join(&cpath, "name")));
        }
        let weight = c.weight.as_ref().map_or(0, |w| w.value);
        total += u64::from(weight);
        out.push(config::WeightedCluster {
            name: c.name.clone(),
            weight,
        });
    }
    if total == 0 || total > u64::from(u32::MAX) {
        return Err(cx.err(
            &join(path, "clusters"),
            format_args!(
                "total weight must be between 1 and {}, got {total}",
                u32::MAX
            ),
        ));
    }
    Ok(config::ClusterTarget::WeightedClusters(out))
}
