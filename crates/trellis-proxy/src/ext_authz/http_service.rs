//! The HTTP variant of external authorization (`http_service`): the request itself (with the
//! buffered body when `with_request_body` is set, else without one) goes to the authorizer's cluster with the path under `path_prefix`; `200` allows
//! (the `allowed_upstream_headers` of the answer are set on the request), any other status
//! denies (the answer is what the client gets, with its `allowed_client_headers`).

use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};

use super::{Allowed, CheckContext, Decision, Denial, listed};
use crate::config::{ExtAuthz, ExtAuthzService};

/// The most of an authorizer's denial body passed to the client.
const MAX_BODY: usize = 64 * 1024;
/// Headers Envoy always sends to an HTTP authorizer (besides the allowed ones).
const ALWAYS_SENT: [&str; 2] = ["authorization", "content-length"];
/// Headers Envoy always passes to the client on a denial when a list is configured.
const ALWAYS_TO_CLIENT: [&str; 2] = ["www-authenticate", "location"];

/// Checks the request over HTTP (the caller bounds the time).
pub(super) async fn check(filter: &ExtAuthz, cx: &CheckContext<'_>) -> Decision {
    let ExtAuthzService::Http {
        cluster: cluster_name,
        uri,
        path_prefix,
        headers_to_add,
        allowed_upstream_headers,
        allowed_client_headers,
        allowed_client_headers_on_success,
        ..
    } = &filter.service
    else {
        return Decision::Error("not an HTTP service".to_string());
    };
    let Some(cluster) = cx.clusters.get(cluster_name) else {
        return Decision::Error(format!("unknown cluster {cluster_name}"));
    };
    let Some(endpoint) = cluster.pick() else {
        return Decision::Error(format!("no healthy upstream in {cluster_name}"));
    };
    let authority = uri
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| cluster_name.clone());
    let mut builder = Request::builder()
        .method(cx.method)
        .uri(format!("{path_prefix}{}", cx.path_and_query))
        .header(header::HOST, authority.as_str());
    for (name, value) in cx.headers {
        let name_str = name.as_str();
        if name == header::HOST
            || name_str == "content-length"
            || name_str == super::PARTIAL_BODY_HEADER
        {
            continue;
        }
        let allowed = ALWAYS_SENT.contains(&name_str)
            || filter
                .allowed_headers
                .as_deref()
                .is_some_and(|l| listed(l, name_str));
        if allowed {
            builder = builder.header(name, value);
        }
    }
    // The buffered body (`with_request_body`) is the check request's body.
    let body = cx.body.map(|b| b.bytes.clone()).unwrap_or_default();
    builder = builder.header(header::CONTENT_LENGTH, body.len());
    if let Some(b) = cx.body {
        builder = builder.header(super::PARTIAL_BODY_HEADER, b.partial.to_string());
    }
    for (name, value) in headers_to_add {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = match builder.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Decision::Error(format!("building the check request: {e}")),
    };
    let response = match cluster.send(endpoint, request, &authority).await {
        Ok(r) => r,
        Err(e) => return Decision::Error(format!("the check request failed: {e}")),
    };
    let (parts, body) = response.into_parts();
    let pick = |list: &Option<Vec<crate::config::StringMatch>>,
                default_all: bool,
                extra: &[&str]|
     -> Vec<(HeaderName, HeaderValue)> {
        parts
            .headers
            .iter()
            .filter(|(n, _)| {
                let n = n.as_str();
                match list {
                    Some(l) => listed(l, n) || extra.contains(&n),
                    None => default_all,
                }
            })
            .filter(|(n, _)| !is_framing(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    };
    if parts.status == StatusCode::OK {
        return Decision::Allowed(Allowed {
            set: pick(allowed_upstream_headers, false, &[]),
            response: pick(allowed_client_headers_on_success, false, &[]),
            ..Default::default()
        });
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Decision::Error(format!("reading the authorizer's answer: {e}")),
    };
    Decision::Denied(Denial {
        status: parts.status,
        headers: pick(allowed_client_headers, true, &ALWAYS_TO_CLIENT),
        body,
    })
}

/// Headers that describe the authorizer's own message, never copied.
fn is_framing(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "date"
            | "server"
    )
}
