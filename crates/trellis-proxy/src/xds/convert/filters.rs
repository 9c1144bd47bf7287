//! The HTTP filters the subset includes besides the router: `envoy.filters.http.fault` and
//! `envoy.filters.http.cors`, in the HCM chain and per route in `typed_per_filter_config`.

use std::collections::HashMap;

use envoy_types::pb::envoy::extensions::filters::common::fault::v3 as common_fault;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3 as cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as fault;
use envoy_types::pb::google::protobuf::Any;

use super::{ConvertError, Cx, decode_any, join, reject_unsupported};
use crate::config;

/// The fault filter's name.
pub const FAULT: &str = "envoy.filters.http.fault";
/// The CORS filter's name.
pub const CORS: &str = "envoy.filters.http.cors";
/// `HTTPFault`, in the HCM chain and per route.
pub const FAULT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
/// `Cors`, the CORS filter's (empty) config in the HCM chain.
pub const CORS_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
/// `CorsPolicy`, the CORS filter's per-route config.
pub const CORS_POLICY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";

/// A route's `typed_per_filter_config`: fault and CORS policies (keys in sorted order so the
/// first error is deterministic).
pub(crate) fn per_filter_config(
    cx: &Cx,
    path: &str,
    map: &HashMap<String, Any>,
) -> Result<(Option<config::FaultPolicy>, Option<config::CorsPolicy>), ConvertError> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let (mut fault_policy, mut cors_policy) = (None, None);
    for key in keys {
        let kpath = format!("{path}[{key:?}]");
        let any = &map[key];
        match key.as_str() {
            FAULT => {
                let f: fault::HttpFault = decode_any(cx, &kpath, any, FAULT_TYPE)?;
                fault_policy = Some(http_fault(cx, &kpath, &f)?);
            }
            CORS => {
                let c: cors::CorsPolicy = decode_any(cx, &kpath, any, CORS_POLICY_TYPE)?;
                cors_policy = Some(cors_policy_of(cx, &kpath, &c)?);
            }
            _ => return Err(cx.err(&kpath, "filter is not supported")),
        }
    }
    Ok((fault_policy, cors_policy))
}

/// The fault filter's config (per route, or empty in the HCM chain).
pub(crate) fn http_fault(
    cx: &Cx,
    path: &str,
    f: &fault::HttpFault,
) -> Result<config::FaultPolicy, ConvertError> {
    reject_unsupported!(cx, path, f, fault::HttpFault { delay, abort }
        unsupported { upstream_cluster, headers, downstream_nodes, max_active_faults, response_rate_limit, delay_percent_runtime, abort_percent_runtime, delay_duration_runtime, abort_http_status_runtime, max_active_faults_runtime, response_rate_limit_percent_runtime, abort_grpc_status_runtime, disable_downstream_cluster_stats, filter_metadata });
    let delay = match &f.delay {
        None => None,
        Some(d) => {
            let dpath = join(path, "delay");
            reject_unsupported!(cx, &dpath, d, common_fault::FaultDelay { percentage, fault_delay_secifier } unsupported {});
            use common_fault::fault_delay::FaultDelaySecifier as S;
            let duration = match &d.fault_delay_secifier {
                Some(S::FixedDelay(fd)) => super::duration(cx, &join(&dpath, "fixed_delay"), fd)?,
                Some(S::HeaderDelay(_)) => {
                    return Err(cx.unsupported_field(&join(&dpath, "header_delay")));
                }
                None => return Err(cx.missing(&join(&dpath, "fixed_delay"))),
            };
            Some(config::FaultDelay {
                duration,
                percentage: percentage(cx, &join(&dpath, "percentage"), d.percentage.as_ref())?,
            })
        }
    };
    let abort = match &f.abort {
        None => None,
        Some(a) => {
            let apath = join(path, "abort");
            reject_unsupported!(cx, &apath, a, fault::FaultAbort { percentage, error_type } unsupported { response_body });
            use fault::fault_abort::ErrorType as E;
            let kind = match &a.error_type {
                Some(E::HttpStatus(s)) if (200..600).contains(s) => {
                    config::AbortKind::HttpStatus(*s as u16)
                }
                Some(E::HttpStatus(s)) => {
                    return Err(cx.err(
                        &join(&apath, "http_status"),
                        format_args!("{s} is not between 200 and 599"),
                    ));
                }
                Some(E::GrpcStatus(s)) => config::AbortKind::GrpcStatus(*s),
                Some(E::HeaderAbort(_)) => {
                    return Err(cx.unsupported_field(&join(&apath, "header_abort")));
                }
                None => return Err(cx.missing(&join(&apath, "http_status"))),
            };
            Some(config::FaultAbort {
                kind,
                percentage: percentage(cx, &join(&apath, "percentage"), a.percentage.as_ref())?,
            })
        }
    };
    Ok(config::FaultPolicy { delay, abort })
}

/// Envoy: an absent percentage is 0 % (the fault never fires).
fn percentage(
    cx: &Cx,
    path: &str,
    p: Option<&envoy_types::pb::envoy::r#type::v3::FractionalPercent>,
) -> Result<config::Fraction, ConvertError> {
    match p {
        Some(p) => super::route::fraction(cx, path, p),
        None => Ok(config::Fraction {
            numerator: 0,
            denominator: 100,
        }),
    }
}

fn cors_policy_of(
    cx: &Cx,
    path: &str,
    c: &cors::CorsPolicy,
) -> Result<config::CorsPolicy, ConvertError> {
    reject_unsupported!(cx, path, c, cors::CorsPolicy { allow_origin_string_match, allow_methods, allow_headers, expose_headers, max_age, allow_credentials, filter_enabled, forward_not_matching_preflights }
        unsupported { shadow_enabled, allow_private_network_access });
    let allow_origins = c
        .allow_origin_string_match
        .iter()
        .enumerate()
        .map(|(i, m)| {
            super::route::string_matcher(
                cx,
                &join(path, &format!("allow_origin_string_match[{i}]")),
                m,
            )
        })
        .collect::<Result<_, _>>()?;
    for (field, value) in [
        ("allow_methods", &c.allow_methods),
        ("allow_headers", &c.allow_headers),
        ("expose_headers", &c.expose_headers),
        ("max_age", &c.max_age),
    ] {
        if http::HeaderValue::from_str(value).is_err() {
            return Err(cx.err(
                &join(path, field),
                format_args!("{value:?} is not a valid header value"),
            ));
        }
    }
    let filter_enabled = c
        .filter_enabled
        .as_ref()
        .map(|f| super::route::runtime_fraction(cx, &join(path, "filter_enabled"), f))
        .transpose()?;
    Ok(config::CorsPolicy {
        allow_origins,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: c.max_age.clone(),
        allow_credentials: c.allow_credentials.as_ref().is_some_and(|b| b.value),
        filter_enabled,
        forward_not_matching_preflights: c
            .forward_not_matching_preflights
            .as_ref()
            .is_none_or(|b| b.value),
    })
}

/// The HCM-level CORS filter config must be the empty `Cors` message.
pub(crate) fn cors_filter(cx: &Cx, path: &str, any: &Any) -> Result<(), ConvertError> {
    let c: cors::Cors = decode_any(cx, path, any, CORS_TYPE)?;
    let cors::Cors {} = c;
    Ok(())
}

/// The HCM-level fault filter config must be an empty `HTTPFault` (faults come per route).
pub(crate) fn fault_filter(cx: &Cx, path: &str, any: &Any) -> Result<(), ConvertError> {
    let f: fault::HttpFault = decode_any(cx, path, any, FAULT_TYPE)?;
    if f != fault::HttpFault::default() {
        return Err(cx.err(
            path,
            "only an empty HTTPFault is supported in the filter chain (faults are configured per route)",
        ));
    }
    Ok(())
}
