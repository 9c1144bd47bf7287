//! Istio `match` conditions → Envoy `RouteMatch`, which conditions apply to a proxy, and how a
//! delegate's conditions combine with its root's.

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier, route_match::PathSpecifier,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use envoy_types::pb::google::protobuf::BoolValue;
use trellis_api::StringMatch;
use trellis_api::networking::{HttpMatchRequest, HttpRoute};

use crate::model::ProxyView;

/// The matches of a rule that apply on this proxy for a (service or gateway server) port:
/// `port`, `sourceLabels`, `sourceNamespace` and `gateways` are decided here, as istiod does
/// when it builds a proxy's routes. `bound` says whether a match's non-empty `gateways` name
/// this proxy (`mesh` for sidecars, the gateway for routers).
pub fn applicable_to<'a>(
    matches: &'a [HttpMatchRequest],
    proxy: &ProxyView<'_>,
    port: u32,
    bound: &dyn Fn(&[String]) -> bool,
) -> Vec<&'a HttpMatchRequest> {
    matches
        .iter()
        .filter(|m| m.port.is_none_or(|p| p == port))
        .filter(|m| proxy.has_labels(&m.source_labels))
        .filter(|m| {
            m.source_namespace
                .as_deref()
                .is_none_or(|ns| ns == proxy.namespace())
        })
        .filter(|m| m.gateways.is_empty() || bound(&m.gateways))
        .collect()
}

/// One Istio match as an Envoy route match.
pub fn route_match(m: &HttpMatchRequest) -> RouteMatch {
    let path_specifier = match &m.uri {
        None => PathSpecifier::Prefix("/".to_string()),
        Some(StringMatch::Exact(path)) => PathSpecifier::Path(path.clone()),
        Some(StringMatch::Prefix(prefix)) => PathSpecifier::Prefix(prefix.clone()),
        Some(StringMatch::Regex(regex)) => PathSpecifier::SafeRegex(regex_matcher(regex)),
    };
    let mut headers = Vec::new();
    for (name, value) in [
        (":method", &m.method),
        (":scheme", &m.scheme),
        (":authority", &m.authority),
    ] {
        if let Some(v) = value {
            headers.push(header_matcher(name, v, false));
        }
    }
    headers.extend(
        m.headers
            .iter()
            .map(|(name, value)| header_matcher(name, value, false)),
    );
    headers.extend(
        m.without_headers
            .iter()
            .map(|(name, value)| header_matcher(name, value, true)),
    );
    let query_parameters = m
        .query_params
        .iter()
        .map(|(name, value)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match value {
                StringMatch::Prefix(p) if p.is_empty() => {
                    QueryParameterMatchSpecifier::PresentMatch(true)
                }
                other => QueryParameterMatchSpecifier::StringMatch(string_matcher(other)),
            }),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path_specifier),
        case_sensitive: m
            .ignore_uri_case
            .filter(|i| *i)
            .map(|_| BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

/// A header condition; an empty prefix (which Envoy rejects) means "present", as in Istio.
fn header_matcher(name: &str, value: &StringMatch, invert: bool) -> HeaderMatcher {
    let specifier = match value {
        StringMatch::Prefix(p) if p.is_empty() => HeaderMatchSpecifier::PresentMatch(true),
        other => HeaderMatchSpecifier::StringMatch(string_matcher(other)),
    };
    HeaderMatcher {
        name: name.to_ascii_lowercase(),
        header_match_specifier: Some(specifier),
        invert_match: invert,
        ..Default::default()
    }
}

/// An Istio string match as an Envoy string matcher.
pub fn string_matcher(m: &StringMatch) -> StringMatcher {
    let pattern = match m {
        StringMatch::Exact(s) => MatchPattern::Exact(s.clone()),
        StringMatch::Prefix(s) => MatchPattern::Prefix(s.clone()),
        StringMatch::Regex(s) => MatchPattern::SafeRegex(regex_matcher(s)),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}

/// An RE2 regex matcher.
pub fn regex_matcher(regex: &str) -> RegexMatcher {
    RegexMatcher {
        regex: regex.to_string(),
        ..Default::default()
    }
}

/// A delegate rule merged into its root rule, as Istio does: settings the delegate leaves
/// unset come from the root; matches are AND-ed pairwise (root × delegate), dropping pairs
/// that contradict; `None` when no pair survives.
pub fn merge_delegate(root: &HttpRoute, leaf: &HttpRoute) -> Option<HttpRoute> {
    let matches = if root.match_.is_empty() {
        leaf.match_.clone()
    } else if leaf.match_.is_empty() {
        root.match_.clone()
    } else {
        let merged: Vec<HttpMatchRequest> = root
            .match_
            .iter()
            .flat_map(|r| leaf.match_.iter().filter_map(move |l| merge_match(r, l)))
            .collect();
        if merged.is_empty() {
            return None;
        }
        merged
    };
    let mut out = leaf.clone();
    out.match_ = matches;
    out.delegate = None;
    out.name = match (&root.name, &leaf.name) {
        (Some(r), Some(l)) => Some(format!("{r}--{l}")),
        (r, l) => l.clone().or_else(|| r.clone()),
    };
    if out.rewrite.is_none() {
        out.rewrite = root.rewrite.clone();
    }
    if out.timeout.is_none() {
        out.timeout = root.timeout;
    }
    if out.retries.is_none() {
        out.retries = root.retries.clone();
    }
    if out.fault.is_none() {
        out.fault = root.fault.clone();
    }
    if out.mirror.is_none() {
        out.mirror = root.mirror.clone();
    }
    if out.mirrors.is_empty() {
        out.mirrors = root.mirrors.clone();
    }
    if out.mirror_percentage.is_none() {
        out.mirror_percentage = root.mirror_percentage;
    }
    if out.mirror_percent.is_none() {
        out.mirror_percent = root.mirror_percent;
    }
    if out.cors_policy.is_none() {
        out.cors_policy = root.cors_policy.clone();
    }
    if out.headers.is_none() {
        out.headers = root.headers.clone();
    }
    Some(out)
}

/// One root match AND one delegate match, or `None` when they contradict: the delegate's URI
/// must lie within the root's, and a condition both set must agree.
fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> Option<HttpMatchRequest> {
    let mut out = leaf.clone();
    match (&root.uri, &leaf.uri) {
        (Some(r), None) => {
            out.uri = Some(r.clone());
            out.ignore_uri_case = root.ignore_uri_case;
        }
        (Some(r), Some(l)) if !uri_within(r, l) => return None,
        _ => {}
    }
    for (mine, theirs) in [
        (&mut out.scheme, &root.scheme),
        (&mut out.method, &root.method),
        (&mut out.authority, &root.authority),
    ] {
        match (mine.as_ref(), theirs) {
            (None, Some(t)) => *mine = Some(t.clone()),
            (Some(m), Some(t)) if m != t => return None,
            _ => {}
        }
    }
    for (mine, theirs) in [
        (&mut out.headers, &root.headers),
        (&mut out.without_headers, &root.without_headers),
        (&mut out.query_params, &root.query_params),
    ] {
        for (k, v) in theirs {
            match mine.get(k) {
                Some(existing) if existing != v => return None,
                _ => {
                    mine.insert(k.clone(), v.clone());
                }
            }
        }
    }
    match (out.port, root.port) {
        (None, Some(p)) => out.port = Some(p),
        (Some(a), Some(b)) if a != b => return None,
        _ => {}
    }
    for (k, v) in &root.source_labels {
        match out.source_labels.get(k) {
            Some(existing) if existing != v => return None,
            _ => {
                out.source_labels.insert(k.clone(), v.clone());
            }
        }
    }
    match (&out.source_namespace, &root.source_namespace) {
        (None, Some(ns)) => out.source_namespace = Some(ns.clone()),
        (Some(a), Some(b)) if a != b => return None,
        _ => {}
    }
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    out.name = match (&root.name, &leaf.name) {
        (Some(r), Some(l)) => Some(format!("{r}--{l}")),
        (r, l) => l.clone().or_else(|| r.clone()),
    };
    Some(out)
}

/// Whether the delegate's URI condition is narrower than (or equal to) the root's.
fn uri_within(root: &StringMatch, leaf: &StringMatch) -> bool {
    match (root, leaf) {
        (StringMatch::Prefix(r), StringMatch::Prefix(l) | StringMatch::Exact(l)) => {
            l.starts_with(r.as_str())
        }
        (StringMatch::Exact(r), StringMatch::Exact(l)) => r == l,
        (r, l) => r == l,
    }
}
