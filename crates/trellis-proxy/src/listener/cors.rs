//! The CORS filter (`envoy.filters.http.cors`) with a route's `CorsPolicy`: preflight answers
//! and the response headers of allowed cross-origin requests, as Envoy does.

use http::header::{HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::config::CorsPolicy;

/// What the CORS filter decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsDecision {
    /// Not a CORS request, or the policy is not enforced: nothing to do.
    Pass,
    /// Answer the preflight with these headers (status 200).
    Preflight(Vec<(&'static str, HeaderValue)>),
    /// Forward; add these headers to the response.
    Simple(Vec<(&'static str, HeaderValue)>),
}

/// Decides for a request with `method` and `headers` under `policy` (`enabled` is the outcome of
/// `filter_enabled` sampling).
pub fn decide(
    policy: &CorsPolicy,
    enabled: bool,
    method: &Method,
    headers: &HeaderMap,
) -> CorsDecision {
    if !enabled {
        return CorsDecision::Pass;
    }
    let Some(origin) = headers.get(http::header::ORIGIN).filter(|o| !o.is_empty()) else {
        return CorsDecision::Pass;
    };
    let preflight = method == Method::OPTIONS
        && headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|m| !m.is_empty());
    let allowed = origin.to_str().is_ok_and(|o| {
        policy
            .allow_origins
            .iter()
            .any(|m| m.matches("*") || m.matches(o))
    });
    if !allowed {
        return if preflight && !policy.forward_not_matching_preflights {
            CorsDecision::Preflight(Vec::new())
        } else {
            CorsDecision::Pass
        };
    }
    let mut out = vec![("access-control-allow-origin", origin.clone())];
    if policy.allow_credentials {
        out.push((
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        ));
    }
    let mut push = |name: &'static str, value: &str| {
        if !value.is_empty()
            && let Ok(v) = HeaderValue::from_str(value)
        {
            out.push((name, v));
        }
    };
    if preflight {
        push("access-control-allow-methods", &policy.allow_methods);
        push("access-control-allow-headers", &policy.allow_headers);
        push("access-control-max-age", &policy.max_age);
        CorsDecision::Preflight(out)
    } else {
        push("access-control-expose-headers", &policy.expose_headers);
        CorsDecision::Simple(out)
    }
}

/// The status of a preflight answer.
pub const PREFLIGHT_STATUS: StatusCode = StatusCode::OK;

/// Sets the CORS headers on a response (replacing any the upstream set).
pub fn apply(headers: &mut HeaderMap, add: &[(&'static str, HeaderValue)]) {
    for (name, value) in add {
        headers.insert(*name, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StringMatch, StringMatchKind};

    fn policy() -> CorsPolicy {
        CorsPolicy {
            allow_origins: vec![StringMatch {
                kind: StringMatchKind::Exact("https://a.example".into()),
                ignore_case: false,
            }],
            allow_methods: "GET,POST".into(),
            allow_headers: "x-custom".into(),
            expose_headers: "x-exposed".into(),
            max_age: "600".into(),
            allow_credentials: true,
            filter_enabled: None,
            forward_not_matching_preflights: true,
        }
    }

    fn names(d: &CorsDecision) -> Vec<&'static str> {
        match d {
            CorsDecision::Preflight(h) | CorsDecision::Simple(h) => {
                h.iter().map(|(n, _)| *n).collect()
            }
            CorsDecision::Pass => vec![],
        }
    }

    #[test]
    fn preflight_and_simple_requests() {
        let mut h = HeaderMap::new();
        h.insert("origin", HeaderValue::from_static("https://a.example"));
        h.insert(
            "access-control-request-method",
            HeaderValue::from_static("POST"),
        );
        let d = decide(&policy(), true, &Method::OPTIONS, &h);
        assert!(matches!(d, CorsDecision::Preflight(_)));
        assert_eq!(
            names(&d),
            [
                "access-control-allow-origin",
                "access-control-allow-credentials",
                "access-control-allow-methods",
                "access-control-allow-headers",
                "access-control-max-age"
            ]
        );
        let d = decide(&policy(), true, &Method::GET, &h);
        assert!(matches!(d, CorsDecision::Simple(_)));
        assert!(names(&d).contains(&"access-control-expose-headers"));

        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert_eq!(
            decide(&policy(), true, &Method::OPTIONS, &h),
            CorsDecision::Pass
        );
        let mut strict = policy();
        strict.forward_not_matching_preflights = false;
        assert_eq!(
            decide(&strict, true, &Method::OPTIONS, &h),
            CorsDecision::Preflight(vec![])
        );
        assert_eq!(
            decide(&policy(), false, &Method::GET, &HeaderMap::new()),
            CorsDecision::Pass
        );
    }
}
