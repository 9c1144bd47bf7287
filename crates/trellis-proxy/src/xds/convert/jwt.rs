//! `envoy.filters.http.jwt_authn` (`JwtAuthentication`) → [`config::JwtAuthentication`]: the
//! fields the control plane emits for Istio's RequestAuthentication, nothing else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3 as route;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use envoy_types::pb::google::protobuf::Any;

use super::{ConvertError, Cx, decode_any, join, reject_unsupported};
use crate::config;

/// The JWT filter's name.
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// Its config type.
pub const JWT_AUTHN_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";

/// Envoy's default `clock_skew_seconds`.
const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Envoy's default `remote_jwks.cache_duration`.
const DEFAULT_CACHE_DURATION: Duration = Duration::from_secs(600);
/// Envoy's default `async_fetch.failed_refetch_duration`.
const DEFAULT_FAILED_REFETCH: Duration = Duration::from_secs(1);
/// `http_uri.timeout` is required by Envoy; this is used only if it is zero.
const MIN_FETCH_TIMEOUT: Duration = Duration::from_millis(1);

/// The filter's `typed_config`.
pub(crate) fn jwt_authentication(
    cx: &Cx,
    path: &str,
    any: &Any,
) -> Result<config::JwtAuthentication, ConvertError> {
    let a: jwt::JwtAuthentication = decode_any(cx, path, any, JWT_AUTHN_TYPE)?;
    reject_unsupported!(cx, path, &a, jwt::JwtAuthentication { providers, rules, bypass_cors_preflight }
        unsupported { filter_state_rules, requirement_map, strip_failure_response, stat_prefix });
    let mut names: Vec<&String> = a.providers.keys().collect();
    names.sort();
    let mut providers = BTreeMap::new();
    for name in names {
        let ppath = join(path, &format!("providers[{name:?}]"));
        providers.insert(name.clone(), provider(cx, &ppath, &a.providers[name])?);
    }
    let mut rules = Vec::with_capacity(a.rules.len());
    for (i, r) in a.rules.iter().enumerate() {
        let rpath = join(path, &format!("rules[{i}]"));
        reject_unsupported!(cx, &rpath, r, jwt::RequirementRule { r#match, requirement_type } unsupported {});
        let prefix = rule_prefix(cx, &join(&rpath, "match"), r.r#match.as_ref())?;
        use jwt::requirement_rule::RequirementType as T;
        let requires = match &r.requirement_type {
            Some(T::Requires(req)) => requirement(cx, &join(&rpath, "requires"), req, &providers)?,
            Some(T::RequirementName(_)) => {
                return Err(cx.unsupported_field(&join(&rpath, "requirement_name")));
            }
            None => return Err(cx.missing(&join(&rpath, "requires"))),
        };
        rules.push(config::RequirementRule { prefix, requires });
    }
    Ok(config::JwtAuthentication {
        providers,
        rules,
        bypass_cors_preflight: a.bypass_cors_preflight,
    })
}

/// A rule's match: `prefix` only.
fn rule_prefix(cx: &Cx, path: &str, m: Option<&route::RouteMatch>) -> Result<String, ConvertError> {
    let m = m.ok_or_else(|| cx.missing(path))?;
    reject_unsupported!(cx, path, m, route::RouteMatch { path_specifier }
        unsupported { case_sensitive, runtime_fraction, headers, query_parameters, grpc, tls_context, dynamic_metadata, filter_state, cookies });
    match &m.path_specifier {
        Some(route::route_match::PathSpecifier::Prefix(p)) => Ok(p.clone()),
        Some(_) => Err(cx.err(path, "only a prefix match is supported")),
        None => Err(cx.missing(&join(path, "prefix"))),
    }
}

fn requirement(
    cx: &Cx,
    path: &str,
    r: &jwt::JwtRequirement,
    providers: &BTreeMap<String, config::JwtProvider>,
) -> Result<config::JwtRequirement, ConvertError> {
    use jwt::jwt_requirement::RequiresType as T;
    Ok(match &r.requires_type {
        Some(T::ProviderName(name)) => {
            if !providers.contains_key(name) {
                return Err(cx.err(
                    &join(path, "provider_name"),
                    format_args!("provider {name:?} is not defined"),
                ));
            }
            config::JwtRequirement::ProviderName(name.clone())
        }
        Some(T::AllowMissing(_)) => config::JwtRequirement::AllowMissing,
        Some(T::AllowMissingOrFailed(_)) => config::JwtRequirement::AllowMissingOrFailed,
        Some(T::RequiresAny(list)) => config::JwtRequirement::RequiresAny(requirements(
            cx,
            &join(path, "requires_any"),
            &list.requirements,
            providers,
        )?),
        Some(T::RequiresAll(list)) => config::JwtRequirement::RequiresAll(requirements(
            cx,
            &join(path, "requires_all"),
            &list.requirements,
            providers,
        )?),
        Some(T::ProviderAndAudiences(_)) => {
            return Err(cx.unsupported_field(&join(path, "provider_and_audiences")));
        }
        Some(_) => return Err(cx.err(path, "requirement type is not supported")),
        None => return Err(cx.missing(&join(path, "provider_name"))),
    })
}

fn requirements(
    cx: &Cx,
    path: &str,
    list: &[jwt::JwtRequirement],
    providers: &BTreeMap<String, config::JwtProvider>,
) -> Result<Vec<config::JwtRequirement>, ConvertError> {
    if list.len() < 2 {
        return Err(cx.err(
            &join(path, "requirements"),
            "needs at least two requirements",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, r)| requirement(cx, &join(path, &format!("requirements[{i}]")), r, providers))
        .collect()
}

fn provider(
    cx: &Cx,
    path: &str,
    p: &jwt::JwtProvider,
) -> Result<config::JwtProvider, ConvertError> {
    reject_unsupported!(cx, path, p, jwt::JwtProvider { issuer, audiences, forward, from_headers, from_params, from_cookies, forward_payload_header, payload_in_metadata, clock_skew_seconds, claim_to_headers, jwks_source_specifier, normalize_payload_in_metadata }
        unsupported { subjects, require_expiration, max_lifetime, pad_forward_payload_header, header_in_metadata, failed_status_in_metadata, jwt_cache_config, clear_route_cache });
    use jwt::jwt_provider::JwksSourceSpecifier as S;
    let jwks = match &p.jwks_source_specifier {
        Some(S::LocalJwks(ds)) => local_jwks(cx, &join(path, "local_jwks"), ds)?,
        Some(S::RemoteJwks(r)) => remote_jwks(cx, &join(path, "remote_jwks"), r)?,
        None => return Err(cx.missing(&join(path, "local_jwks"))),
    };
    let mut from_headers = Vec::with_capacity(p.from_headers.len());
    for (i, h) in p.from_headers.iter().enumerate() {
        let hpath = join(path, &format!("from_headers[{i}]"));
        reject_unsupported!(cx, &hpath, h, jwt::JwtHeader { name, value_prefix } unsupported {});
        from_headers.push(config::JwtHeader {
            name: header_name(cx, &join(&hpath, "name"), &h.name)?,
            value_prefix: h.value_prefix.clone(),
        });
    }
    let mut claim_to_headers = Vec::with_capacity(p.claim_to_headers.len());
    for (i, c) in p.claim_to_headers.iter().enumerate() {
        let cpath = join(path, &format!("claim_to_headers[{i}]"));
        reject_unsupported!(cx, &cpath, c, jwt::JwtClaimToHeader { header_name, claim_name }
            unsupported { claim_path });
        if c.claim_name.is_empty() {
            return Err(cx.missing(&join(&cpath, "claim_name")));
        }
        claim_to_headers.push(config::ClaimToHeader {
            header_name: header_name(cx, &join(&cpath, "header_name"), &c.header_name)?,
            claim_name: c.claim_name.clone(),
        });
    }
    let forward_payload_header = if p.forward_payload_header.is_empty() {
        None
    } else {
        Some(header_name(
            cx,
            &join(path, "forward_payload_header"),
            &p.forward_payload_header,
        )?)
    };
    Ok(config::JwtProvider {
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        jwks,
        from_headers,
        from_params: p.from_params.clone(),
        from_cookies: p.from_cookies.clone(),
        forward: p.forward,
        forward_payload_header,
        claim_to_headers,
        payload_in_metadata: (!p.payload_in_metadata.is_empty())
            .then(|| p.payload_in_metadata.clone()),
        clock_skew: if p.clock_skew_seconds == 0 {
            DEFAULT_CLOCK_SKEW
        } else {
            Duration::from_secs(u64::from(p.clock_skew_seconds))
        },
        space_delimited_claims: match &p.normalize_payload_in_metadata {
            Some(n) => {
                let npath = join(path, "normalize_payload_in_metadata");
                reject_unsupported!(cx, &npath, n, jwt::jwt_provider::NormalizePayload { space_delimited_claims } unsupported {});
                if n.space_delimited_claims.iter().any(String::is_empty) {
                    return Err(cx.err(
                        &join(&npath, "space_delimited_claims"),
                        "claim names must not be empty",
                    ));
                }
                n.space_delimited_claims.clone()
            }
            None => Vec::new(),
        },
    })
}

fn header_name(cx: &Cx, path: &str, name: &str) -> Result<String, ConvertError> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(|n| n.as_str().to_string())
        .map_err(|_| cx.err(path, format_args!("{name:?} is not a valid header name")))
}

/// `local_jwks.inline_string`, parsed now: a JWKS without a usable key is rejected (Envoy
/// rejects it too).
fn local_jwks(
    cx: &Cx,
    path: &str,
    ds: &core::DataSource,
) -> Result<config::JwksSource, ConvertError> {
    reject_unsupported!(cx, path, ds, core::DataSource { specifier } unsupported { watched_directory });
    use core::data_source::Specifier as S;
    let text = match &ds.specifier {
        Some(S::InlineString(s)) => s.clone(),
        Some(S::Filename(_)) => return Err(cx.unsupported_field(&join(path, "filename"))),
        Some(S::InlineBytes(_)) => return Err(cx.unsupported_field(&join(path, "inline_bytes"))),
        Some(S::EnvironmentVariable(_)) => {
            return Err(cx.unsupported_field(&join(path, "environment_variable")));
        }
        None => return Err(cx.missing(&join(path, "inline_string"))),
    };
    let keys = crate::authn::token::parse_jwks(&text).ok_or_else(|| {
        cx.err(
            &join(path, "inline_string"),
            "is not a JWKS with at least one supported key",
        )
    })?;
    Ok(config::JwksSource::Local(Arc::new(config::Jwks {
        text,
        keys,
    })))
}

/// `remote_jwks`: `http_uri{uri, cluster, timeout}`, `cache_duration`, `async_fetch` with
/// `failed_refetch_duration` (keys are fetched on first use, then kept fresh in the background;
/// `fast_listener` is accepted, as the listener never waits for them).
fn remote_jwks(
    cx: &Cx,
    path: &str,
    r: &jwt::RemoteJwks,
) -> Result<config::JwksSource, ConvertError> {
    reject_unsupported!(cx, path, r, jwt::RemoteJwks { http_uri, cache_duration, async_fetch }
        unsupported { retry_policy });
    let async_fetch = match &r.async_fetch {
        Some(a) => {
            let apath = join(path, "async_fetch");
            reject_unsupported!(cx, &apath, a, jwt::JwksAsyncFetch { fast_listener, failed_refetch_duration }
                unsupported {});
            let failed_refetch = match &a.failed_refetch_duration {
                Some(d) => super::duration(cx, &join(&apath, "failed_refetch_duration"), d)?
                    .max(MIN_FETCH_TIMEOUT),
                None => DEFAULT_FAILED_REFETCH,
            };
            Some(config::JwksAsyncFetch { failed_refetch })
        }
        None => None,
    };
    let upath = join(path, "http_uri");
    let u = r.http_uri.as_ref().ok_or_else(|| cx.missing(&upath))?;
    reject_unsupported!(cx, &upath, u, core::HttpUri { uri, timeout, http_upstream_type } unsupported {});
    let parsed: http::Uri = u.uri.parse().map_err(|_| {
        cx.err(
            &join(&upath, "uri"),
            format_args!("{:?} is not a URI", u.uri),
        )
    })?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.authority().is_none() {
        return Err(cx.err(
            &join(&upath, "uri"),
            format_args!("{:?} is not an absolute http(s) URL", u.uri),
        ));
    }
    let cluster = match &u.http_upstream_type {
        Some(core::http_uri::HttpUpstreamType::Cluster(c)) if !c.is_empty() => c.clone(),
        _ => return Err(cx.missing(&join(&upath, "cluster"))),
    };
    let timeout = match &u.timeout {
        Some(t) => super::duration(cx, &join(&upath, "timeout"), t)?.max(MIN_FETCH_TIMEOUT),
        None => return Err(cx.missing(&join(&upath, "timeout"))),
    };
    let cache_duration = match &r.cache_duration {
        Some(d) => super::duration(cx, &join(path, "cache_duration"), d)?,
        None => DEFAULT_CACHE_DURATION,
    };
    Ok(config::JwksSource::Remote(config::RemoteJwks {
        uri: u.uri.clone(),
        cluster,
        timeout,
        cache_duration,
        async_fetch,
    }))
}
