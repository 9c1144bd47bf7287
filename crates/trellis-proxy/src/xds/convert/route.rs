//! `RouteConfiguration` → [`config::RouteTable`].

#![allow(deprecated)]

use std::collections::HashSet;

use envoy_types::pb::envoy::config::core::v3 as core;
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
    reject_unsupported!(cx, path, vh, proto::VirtualHost { name, domains, routes, include_request_attempt_count, include_attempt_count_in_response }
        unsupported { matcher, require_tls, virtual_clusters, rate_limits, request_headers_to_add, request_headers_to_remove, response_headers_to_add, response_headers_to_remove, cors, typed_per_filter_config, retry_policy, retry_policy_typed_config, hedge_policy, include_is_timeout_retry_header, per_request_buffer_limit_bytes, request_body_buffer_limit, request_mirror_policies, metadata, route_specifiers });
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
        include_request_attempt_count: vh.include_request_attempt_count,
        include_attempt_count_in_response: vh.include_attempt_count_in_response,
    })
}

fn convert_route(cx: &Cx, path: &str, r: &proto::Route) -> Result<config::Route, ConvertError> {
    reject_unsupported!(cx, path, r, proto::Route { name, r#match, action, typed_per_filter_config, request_headers_to_add, request_headers_to_remove, response_headers_to_add, response_headers_to_remove }
        unsupported { metadata, decorator, tracing, per_request_buffer_limit_bytes, stat_prefix, request_body_buffer_limit, route_specifiers });
    let m = r
        .r#match
        .as_ref()
        .ok_or_else(|| cx.missing(&join(path, "match")))?;
    let matcher = convert_match(cx, &join(path, "match"), m)?;
    use proto::route::Action as A;
    let action = match &r.action {
        Some(A::Route(ra)) => config::Action::Route(convert_action(cx, &join(path, "route"), ra)?),
        Some(A::Redirect(rd)) => {
            config::Action::Redirect(redirect(cx, &join(path, "redirect"), rd)?)
        }
        Some(A::DirectResponse(dr)) => {
            config::Action::DirectResponse(direct_response(cx, &join(path, "direct_response"), dr)?)
        }
        Some(A::FilterAction(_)) => return Err(cx.unsupported_field(&join(path, "filter_action"))),
        Some(A::NonForwardingAction(_)) => {
            return Err(cx.unsupported_field(&join(path, "non_forwarding_action")));
        }
        None => return Err(cx.missing(&join(path, "route"))),
    };
    let request_headers = header_mutations(
        cx,
        path,
        ("request_headers_to_add", &r.request_headers_to_add),
        ("request_headers_to_remove", &r.request_headers_to_remove),
    )?;
    let response_headers = header_mutations(
        cx,
        path,
        ("response_headers_to_add", &r.response_headers_to_add),
        ("response_headers_to_remove", &r.response_headers_to_remove),
    )?;
    let (fault, cors) = super::filters::per_filter_config(
        cx,
        &join(path, "typed_per_filter_config"),
        &r.typed_per_filter_config,
    )?;
    Ok(config::Route {
        name: r.name.clone(),
        matcher,
        action,
        request_headers,
        response_headers,
        fault,
        cors,
    })
}

fn convert_match(
    cx: &Cx,
    path: &str,
    m: &proto::RouteMatch,
) -> Result<config::RouteMatch, ConvertError> {
    reject_unsupported!(cx, path, m, proto::RouteMatch { case_sensitive, headers, path_specifier, query_parameters }
        unsupported { runtime_fraction, cookies, grpc, tls_context, dynamic_metadata, filter_state });
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
    let query_parameters = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| query_param(cx, &join(path, &format!("query_parameters[{i}]")), q))
        .collect::<Result<_, _>>()?;
    Ok(config::RouteMatch {
        path: path_match,
        case_sensitive: m.case_sensitive.as_ref().is_none_or(|b| b.value),
        headers,
        query_parameters,
    })
}

fn convert_header(
    cx: &Cx,
    path: &str,
    h: &proto::HeaderMatcher,
) -> Result<config::HeaderMatcher, ConvertError> {
    let (name, kind, invert_match) = header_matcher_parts(
        cx,
        path,
        h,
        |spath, sm| string_match(cx, spath, sm),
        config::HeaderMatchKind::Present,
    )?;
    Ok(config::HeaderMatcher {
        name,
        kind,
        invert_match,
    })
}

/// A `HeaderMatcher`'s name (lowercased), condition and `invert_match` (route and RBAC
/// matchers alike): the condition is `string_match` (converted by `string`, given its path) or
/// `present_match` (by `present`); the other specifiers are rejected.
pub(super) fn header_matcher_parts<K>(
    cx: &Cx,
    path: &str,
    h: &proto::HeaderMatcher,
    string: impl FnOnce(&str, &matcher::StringMatcher) -> Result<K, ConvertError>,
    present: impl FnOnce(bool) -> K,
) -> Result<(String, K, bool), ConvertError> {
    reject_unsupported!(cx, path, h, proto::HeaderMatcher { name, invert_match, header_match_specifier }
        unsupported { treat_missing_header_as_empty });
    if h.name.is_empty() {
        return Err(cx.missing(&join(path, "name")));
    }
    use proto::header_matcher::HeaderMatchSpecifier as H;
    let kind = match &h.header_match_specifier {
        Some(H::StringMatch(sm)) => string(&join(path, "string_match"), sm)?,
        Some(H::PresentMatch(p)) => present(*p),
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
    Ok((h.name.to_ascii_lowercase(), kind, h.invert_match))
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
    reject_unsupported!(cx, path, ra, proto::RouteAction { timeout, cluster_specifier, prefix_rewrite, regex_rewrite, retry_policy, request_mirror_policies, hash_policy, host_rewrite_specifier }
        unsupported { cluster_not_found_response_code, metadata_match, path_rewrite_policy, path_rewrite, append_x_forwarded_host, idle_timeout, flush_timeout, early_data_policy, retry_policy_typed_config, priority, rate_limits, include_vh_rate_limits, cors, max_grpc_timeout, grpc_timeout_offset, upgrade_configs, internal_redirect_policy, internal_redirect_action, max_internal_redirects, hedge_policy, max_stream_duration });
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
    if !ra.prefix_rewrite.is_empty() && ra.regex_rewrite.is_some() {
        return Err(cx.err(
            &join(path, "regex_rewrite"),
            "cannot be set together with prefix_rewrite",
        ));
    }
    let prefix_rewrite = Some(ra.prefix_rewrite.clone()).filter(|p| !p.is_empty());
    let regex_rewrite = ra
        .regex_rewrite
        .as_ref()
        .map(|r| regex_substitute(cx, &join(path, "regex_rewrite"), r))
        .transpose()?;
    use proto::route_action::HostRewriteSpecifier as H;
    let host_rewrite = match &ra.host_rewrite_specifier {
        None => None,
        Some(H::HostRewriteLiteral(h)) if h.is_empty() => None,
        Some(H::HostRewriteLiteral(h)) => {
            http::HeaderValue::from_str(h).map_err(|_| {
                cx.err(
                    &join(path, "host_rewrite_literal"),
                    format_args!("{h:?} is not a valid authority"),
                )
            })?;
            Some(h.clone())
        }
        Some(H::AutoHostRewrite(_)) => {
            return Err(cx.unsupported_field(&join(path, "auto_host_rewrite")));
        }
        Some(H::HostRewriteHeader(_)) => {
            return Err(cx.unsupported_field(&join(path, "host_rewrite_header")));
        }
        Some(H::HostRewritePathRegex(_)) => {
            return Err(cx.unsupported_field(&join(path, "host_rewrite_path_regex")));
        }
        Some(H::HostRewrite(_)) => return Err(cx.unsupported_field(&join(path, "host_rewrite"))),
    };
    let retry_policy = ra
        .retry_policy
        .as_ref()
        .map(|r| retry_policy(cx, &join(path, "retry_policy"), r))
        .transpose()?;
    let mirrors = ra
        .request_mirror_policies
        .iter()
        .enumerate()
        .map(|(i, m)| mirror(cx, &join(path, &format!("request_mirror_policies[{i}]")), m))
        .collect::<Result<_, _>>()?;
    let hash_policy = ra
        .hash_policy
        .iter()
        .enumerate()
        .map(|(i, h)| hash_policy(cx, &join(path, &format!("hash_policy[{i}]")), h))
        .collect::<Result<_, _>>()?;
    Ok(config::RouteAction {
        target,
        timeout,
        prefix_rewrite,
        regex_rewrite,
        host_rewrite,
        retry_policy,
        mirrors,
        hash_policy,
    })
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
        reject_unsupported!(cx, &cpath, c, proto::weighted_cluster::ClusterWeight { name, weight, request_headers_to_add, request_headers_to_remove, response_headers_to_add, response_headers_to_remove }
            unsupported { cluster_header, metadata_match, typed_per_filter_config, host_rewrite_specifier });
        if c.name.is_empty() {
            return Err(cx.missing(&join(&cpath, "name")));
        }
        let weight = c.weight.as_ref().map_or(0, |w| w.value);
        total += u64::from(weight);
        let request_headers = header_mutations(
            cx,
            &cpath,
            ("request_headers_to_add", &c.request_headers_to_add),
            ("request_headers_to_remove", &c.request_headers_to_remove),
        )?;
        let response_headers = header_mutations(
            cx,
            &cpath,
            ("response_headers_to_add", &c.response_headers_to_add),
            ("response_headers_to_remove", &c.response_headers_to_remove),
        )?;
        out.push(config::WeightedCluster {
            name: c.name.clone(),
            weight,
            request_headers,
            response_headers,
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

fn query_param(
    cx: &Cx,
    path: &str,
    q: &proto::QueryParameterMatcher,
) -> Result<config::QueryParamMatcher, ConvertError> {
    reject_unsupported!(cx, path, q, proto::QueryParameterMatcher { name, query_parameter_match_specifier } unsupported {});
    if q.name.is_empty() {
        return Err(cx.missing(&join(path, "name")));
    }
    use proto::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
    let kind = match &q.query_parameter_match_specifier {
        Some(Q::StringMatch(sm)) => config::QueryParamMatchKind::String(string_matcher(
            cx,
            &join(path, "string_match"),
            sm,
        )?),
        Some(Q::PresentMatch(p)) => config::QueryParamMatchKind::Present(*p),
        // Envoy: no condition means "present".
        None => config::QueryParamMatchKind::Present(true),
    };
    Ok(config::QueryParamMatcher {
        name: q.name.clone(),
        kind,
    })
}

/// A full `StringMatcher` (with `ignore_case`), for query parameters and CORS origins.
pub(crate) fn string_matcher(
    cx: &Cx,
    path: &str,
    sm: &matcher::StringMatcher,
) -> Result<config::StringMatch, ConvertError> {
    reject_unsupported!(cx, path, sm, matcher::StringMatcher { match_pattern, ignore_case } unsupported {});
    use matcher::string_matcher::MatchPattern as M;
    let kind = match &sm.match_pattern {
        Some(M::Exact(s)) => config::StringMatchKind::Exact(s.clone()),
        Some(M::Prefix(s)) => config::StringMatchKind::Prefix(s.clone()),
        Some(M::Suffix(s)) => config::StringMatchKind::Suffix(s.clone()),
        Some(M::Contains(s)) => config::StringMatchKind::Contains(s.clone()),
        Some(M::SafeRegex(re)) => {
            config::StringMatchKind::SafeRegex(regex(cx, &join(path, "safe_regex"), re)?)
        }
        Some(M::Custom(_)) => return Err(cx.unsupported_field(&join(path, "custom"))),
        None => return Err(cx.missing(&join(path, "exact"))),
    };
    Ok(config::StringMatch {
        kind,
        ignore_case: sm.ignore_case,
    })
}

fn regex_substitute(
    cx: &Cx,
    path: &str,
    r: &matcher::RegexMatchAndSubstitute,
) -> Result<config::RegexRewrite, ConvertError> {
    reject_unsupported!(cx, path, r, matcher::RegexMatchAndSubstitute { pattern, substitution } unsupported {});
    let ppath = join(path, "pattern");
    let pattern = r.pattern.as_ref().ok_or_else(|| cx.missing(&ppath))?;
    reject_unsupported!(cx, &ppath, pattern, matcher::RegexMatcher { regex } unsupported { engine_type });
    let re = regex::Regex::new(&pattern.regex).map_err(|e| {
        cx.err(
            &join(&ppath, "regex"),
            format_args!("invalid regex {:?}: {e}", pattern.regex),
        )
    })?;
    Ok(config::RegexRewrite {
        pattern: config::UnanchoredPattern(re),
        substitution: r.substitution.clone(),
    })
}

fn header_mutations(
    cx: &Cx,
    path: &str,
    (add_field, add): (&str, &[core::HeaderValueOption]),
    (remove_field, remove): (&str, &[String]),
) -> Result<config::HeaderMutations, ConvertError> {
    use core::header_value_option::HeaderAppendAction as A;
    let mut out = config::HeaderMutations::default();
    for (i, o) in add.iter().enumerate() {
        let opath = join(path, &format!("{add_field}[{i}]"));
        reject_unsupported!(cx, &opath, o, core::HeaderValueOption { header, append, append_action }
            unsupported { keep_empty_value });
        let hpath = join(&opath, "header");
        let h = o.header.as_ref().ok_or_else(|| cx.missing(&hpath))?;
        reject_unsupported!(cx, &hpath, h, core::HeaderValue { key, value } unsupported { raw_value });
        let name = header_name(cx, &join(&hpath, "key"), &h.key)?;
        if http::HeaderValue::from_str(&h.value).is_err() {
            return Err(cx.err(
                &join(&hpath, "value"),
                format_args!("{:?} is not a valid header value", h.value),
            ));
        }
        let action = match (o.append.as_ref(), A::try_from(o.append_action)) {
            (Some(_), _) if o.append_action != A::AppendIfExistsOrAdd as i32 => {
                return Err(cx.err(
                    &join(&opath, "append"),
                    "cannot be set together with append_action",
                ));
            }
            (Some(b), _) if b.value => config::AppendAction::AppendIfExistsOrAdd,
            (Some(_), _) => config::AppendAction::OverwriteIfExistsOrAdd,
            (None, Ok(A::AppendIfExistsOrAdd)) => config::AppendAction::AppendIfExistsOrAdd,
            (None, Ok(A::AddIfAbsent)) => config::AppendAction::AddIfAbsent,
            (None, Ok(A::OverwriteIfExistsOrAdd)) => config::AppendAction::OverwriteIfExistsOrAdd,
            (None, Ok(A::OverwriteIfExists)) => config::AppendAction::OverwriteIfExists,
            (None, Err(_)) => {
                return Err(cx.unsupported_value(&join(&opath, "append_action"), o.append_action));
            }
        };
        out.add.push(config::HeaderAdd {
            name,
            value: h.value.clone(),
            action,
        });
    }
    for (i, name) in remove.iter().enumerate() {
        let rpath = join(path, &format!("{remove_field}[{i}]"));
        let name = header_name(cx, &rpath, name)?;
        if name == "host" {
            return Err(cx.unsupported_value(&rpath, "host"));
        }
        out.remove.push(name);
    }
    Ok(out)
}

/// A header name to add or remove: valid, lowercased; pseudo-headers are not supported.
fn header_name(cx: &Cx, path: &str, name: &str) -> Result<String, ConvertError> {
    if name.is_empty() {
        return Err(cx.missing(path));
    }
    if name.starts_with(':') {
        return Err(cx.err(
            path,
            format_args!("pseudo-header {name:?} cannot be added or removed"),
        ));
    }
    let lower = name.to_ascii_lowercase();
    http::HeaderName::from_bytes(lower.as_bytes())
        .map_err(|_| cx.err(path, format_args!("{name:?} is not a valid header name")))?;
    Ok(lower)
}

fn redirect(
    cx: &Cx,
    path: &str,
    rd: &proto::RedirectAction,
) -> Result<config::Redirect, ConvertError> {
    reject_unsupported!(cx, path, rd, proto::RedirectAction { host_redirect, port_redirect, response_code, strip_query, scheme_rewrite_specifier, path_rewrite_specifier } unsupported {});
    use proto::redirect_action::{
        PathRewriteSpecifier as P, RedirectResponseCode as Code, SchemeRewriteSpecifier as S,
    };
    let scheme = match &rd.scheme_rewrite_specifier {
        None | Some(S::HttpsRedirect(false)) => None,
        Some(S::HttpsRedirect(true)) => Some("https".to_string()),
        Some(S::SchemeRedirect(s)) if s.is_empty() => None,
        Some(S::SchemeRedirect(s)) => {
            let lower = s.to_ascii_lowercase();
            if !lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            {
                return Err(cx.err(
                    &join(path, "scheme_redirect"),
                    format_args!("{s:?} is not a URI scheme"),
                ));
            }
            Some(lower)
        }
    };
    let path_redirect = match &rd.path_rewrite_specifier {
        None => None,
        Some(P::PathRedirect(p)) if p.is_empty() => None,
        Some(P::PathRedirect(p)) => Some(config::PathRedirect::Path(p.clone())),
        Some(P::PrefixRewrite(p)) => Some(config::PathRedirect::Prefix(p.clone())),
        Some(P::RegexRewrite(_)) => return Err(cx.unsupported_field(&join(path, "regex_rewrite"))),
        Some(P::PathRewrite(_)) => return Err(cx.unsupported_field(&join(path, "path_rewrite"))),
    };
    let port = match rd.port_redirect {
        0 => None,
        p => Some(u16::try_from(p).map_err(|_| {
            cx.err(
                &join(path, "port_redirect"),
                format_args!("{p} is not a port"),
            )
        })?),
    };
    if !rd.host_redirect.is_empty()
        && http::uri::Authority::try_from(rd.host_redirect.as_str()).is_err()
    {
        return Err(cx.err(
            &join(path, "host_redirect"),
            format_args!("{:?} is not a host", rd.host_redirect),
        ));
    }
    let response_code = match Code::try_from(rd.response_code) {
        Ok(Code::MovedPermanently) => 301,
        Ok(Code::Found) => 302,
        Ok(Code::SeeOther) => 303,
        Ok(Code::TemporaryRedirect) => 307,
        Ok(Code::PermanentRedirect) => 308,
        Err(_) => {
            return Err(cx.unsupported_value(&join(path, "response_code"), rd.response_code));
        }
    };
    Ok(config::Redirect {
        scheme,
        host: Some(rd.host_redirect.clone()).filter(|h| !h.is_empty()),
        port,
        path: path_redirect,
        strip_query: rd.strip_query,
        response_code,
    })
}

fn direct_response(
    cx: &Cx,
    path: &str,
    dr: &proto::DirectResponseAction,
) -> Result<config::DirectResponse, ConvertError> {
    reject_unsupported!(cx, path, dr, proto::DirectResponseAction { status, body } unsupported { body_format });
    if !(200..600).contains(&dr.status) {
        return Err(cx.err(
            &join(path, "status"),
            format_args!("{} is not between 200 and 599", dr.status),
        ));
    }
    use core::data_source::Specifier as D;
    let body = match &dr.body {
        None => None,
        Some(ds) => {
            let bpath = join(path, "body");
            reject_unsupported!(cx, &bpath, ds, core::DataSource { specifier } unsupported { watched_directory });
            match &ds.specifier {
                Some(D::InlineString(s)) => Some(bytes::Bytes::from(s.clone())),
                Some(D::InlineBytes(b)) => Some(bytes::Bytes::from(b.clone())),
                Some(D::Filename(_)) => {
                    return Err(cx.unsupported_field(&join(&bpath, "filename")));
                }
                Some(D::EnvironmentVariable(_)) => {
                    return Err(cx.unsupported_field(&join(&bpath, "environment_variable")));
                }
                None => None,
            }
        }
    };
    Ok(config::DirectResponse {
        status: dr.status as u16,
        body,
    })
}

/// `envoy.retry_host_predicates.previous_hosts` and its config type.
pub(crate) const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
/// The type URL of `PreviousHostsPredicate`.
pub(crate) const PREVIOUS_HOSTS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";

fn retry_policy(
    cx: &Cx,
    path: &str,
    r: &proto::RetryPolicy,
) -> Result<config::RetryPolicy, ConvertError> {
    reject_unsupported!(cx, path, r, proto::RetryPolicy { retry_on, num_retries, per_try_timeout, retriable_status_codes, retry_host_predicate, host_selection_retry_max_attempts }
        unsupported { per_try_idle_timeout, retry_priority, retry_options_predicates, retry_back_off, rate_limited_retry_back_off, retriable_headers, retriable_request_headers, refresh_cluster_on_retry });
    let mut retry_on = Vec::new();
    for item in r
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let on = config::RetryOn::parse(item).ok_or_else(|| {
            cx.unsupported_value(&join(path, "retry_on"), format_args!("{item:?}"))
        })?;
        if !retry_on.contains(&on) {
            retry_on.push(on);
        }
    }
    let mut codes = Vec::with_capacity(r.retriable_status_codes.len());
    for (i, c) in r.retriable_status_codes.iter().enumerate() {
        if !(100..600).contains(c) {
            return Err(cx.err(
                &join(path, &format!("retriable_status_codes[{i}]")),
                format_args!("{c} is not an HTTP status"),
            ));
        }
        codes.push(*c as u16);
    }
    let mut previous_hosts = false;
    for (i, p) in r.retry_host_predicate.iter().enumerate() {
        let ppath = join(path, &format!("retry_host_predicate[{i}]"));
        reject_unsupported!(cx, &ppath, p, proto::retry_policy::RetryHostPredicate { name, config_type } unsupported {});
        if p.name != PREVIOUS_HOSTS {
            return Err(cx.unsupported_value(&join(&ppath, "name"), &p.name));
        }
        if let Some(proto::retry_policy::retry_host_predicate::ConfigType::TypedConfig(any)) =
            &p.config_type
        {
            let _: envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate =
                super::decode_any(cx, &join(&ppath, "typed_config"), any, PREVIOUS_HOSTS_TYPE)?;
        }
        previous_hosts = true;
    }
    let per_try_timeout = match &r.per_try_timeout {
        Some(d) => {
            Some(super::duration(cx, &join(path, "per_try_timeout"), d)?).filter(|d| !d.is_zero())
        }
        None => None,
    };
    let host_selection_max_attempts = match r.host_selection_retry_max_attempts {
        n if n <= 0 => 1,
        n => u32::try_from(n.min(1000)).unwrap_or(1000),
    };
    Ok(config::RetryPolicy {
        retry_on,
        // Envoy: one retry when unset.
        num_retries: r.num_retries.as_ref().map_or(1, |n| n.value),
        per_try_timeout,
        retriable_status_codes: codes,
        previous_hosts,
        host_selection_max_attempts,
    })
}

/// Converts a `FractionalPercent`.
pub(crate) fn fraction(
    cx: &Cx,
    path: &str,
    f: &envoy_types::pb::envoy::r#type::v3::FractionalPercent,
) -> Result<config::Fraction, ConvertError> {
    use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType as D;
    let denominator = match D::try_from(f.denominator) {
        Ok(D::Hundred) => 100,
        Ok(D::TenThousand) => 10_000,
        Ok(D::Million) => 1_000_000,
        Err(_) => return Err(cx.unsupported_value(&join(path, "denominator"), f.denominator)),
    };
    Ok(config::Fraction {
        numerator: f.numerator.min(denominator),
        denominator,
    })
}

/// A `RuntimeFractionalPercent` without runtime: its `default_value`.
pub(crate) fn runtime_fraction(
    cx: &Cx,
    path: &str,
    f: &core::RuntimeFractionalPercent,
) -> Result<config::Fraction, ConvertError> {
    reject_unsupported!(cx, path, f, core::RuntimeFractionalPercent { default_value } unsupported { runtime_key });
    let dpath = join(path, "default_value");
    let d = f.default_value.as_ref().ok_or_else(|| cx.missing(&dpath))?;
    fraction(cx, &dpath, d)
}

fn mirror(
    cx: &Cx,
    path: &str,
    m: &proto::route_action::RequestMirrorPolicy,
) -> Result<config::MirrorPolicy, ConvertError> {
    reject_unsupported!(cx, path, m, proto::route_action::RequestMirrorPolicy { cluster, runtime_fraction, trace_sampled, disable_shadow_host_suffix_append }
        unsupported { cluster_header, request_headers_mutations, host_rewrite_literal });
    if m.cluster.is_empty() {
        return Err(cx.missing(&join(path, "cluster")));
    }
    let fraction = m
        .runtime_fraction
        .as_ref()
        .map(|f| runtime_fraction(cx, &join(path, "runtime_fraction"), f))
        .transpose()?;
    Ok(config::MirrorPolicy {
        cluster: m.cluster.clone(),
        fraction,
        disable_shadow_host_suffix: m.disable_shadow_host_suffix_append,
    })
}

fn hash_policy(
    cx: &Cx,
    path: &str,
    h: &proto::route_action::HashPolicy,
) -> Result<config::HashPolicy, ConvertError> {
    use proto::route_action::hash_policy::{self as hp, PolicySpecifier as P};
    reject_unsupported!(cx, path, h, proto::route_action::HashPolicy { policy_specifier } unsupported { terminal });
    Ok(match &h.policy_specifier {
        Some(P::Header(x)) => {
            let p = join(path, "header");
            reject_unsupported!(cx, &p, x, hp::Header { header_name } unsupported { regex_rewrite });
            if x.header_name.is_empty() {
                return Err(cx.missing(&join(&p, "header_name")));
            }
            config::HashPolicy::Header {
                name: x.header_name.to_ascii_lowercase(),
            }
        }
        Some(P::Cookie(x)) => {
            let p = join(path, "cookie");
            reject_unsupported!(cx, &p, x, hp::Cookie { name, ttl, path } unsupported { attributes });
            if x.name.is_empty() {
                return Err(cx.missing(&join(&p, "name")));
            }
            let ttl = x
                .ttl
                .as_ref()
                .map(|d| super::duration(cx, &join(&p, "ttl"), d))
                .transpose()?;
            config::HashPolicy::Cookie {
                name: x.name.clone(),
                ttl,
                path: Some(x.path.clone()).filter(|p| !p.is_empty()),
            }
        }
        Some(P::ConnectionProperties(x)) => {
            let p = join(path, "connection_properties");
            if !x.source_ip {
                return Err(cx.err(&join(&p, "source_ip"), "must be true"));
            }
            config::HashPolicy::SourceIp
        }
        Some(P::QueryParameter(x)) => {
            let p = join(path, "query_parameter");
            if x.name.is_empty() {
                return Err(cx.missing(&join(&p, "name")));
            }
            config::HashPolicy::QueryParameter {
                name: x.name.clone(),
            }
        }
        Some(P::FilterState(_)) => return Err(cx.unsupported_field(&join(path, "filter_state"))),
        None => return Err(cx.missing(&join(path, "header"))),
    })
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
