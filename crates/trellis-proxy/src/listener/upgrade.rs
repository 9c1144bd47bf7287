//! HTTP/1.1 upgrades (WebSocket): the request is routed like any other (route match, weighted
//! clusters, header changes, host rewrite), sent on a new upstream HTTP/1.1 connection of its
//! own, and once the upstream answers `101 Switching Protocols` both connections become one
//! byte tunnel until either side closes. Retries, timeouts and mirrors do not apply (as in
//! Envoy). Upgrade types the connection manager's `upgrade_configs` do not list get `403`.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::forward::Routed;
use super::http::{Outcome, ProxyBody, local_reply, local_reply_flags};
use crate::routing::rewrite;
use crate::upstream::{LbContext, UpstreamError};

/// The upgrade an HTTP/1.1 request asks for (`Connection: upgrade` + `Upgrade: TYPE`), lower
/// case. HTTP/2 requests never carry one.
pub(crate) fn requested<B>(req: &Request<B>) -> Option<String> {
    if req.version() != Version::HTTP_11 && req.version() != Version::HTTP_10 {
        return None;
    }
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let kind = req.headers().get(header::UPGRADE)?.to_str().ok()?.trim();
    (connection_upgrade && !kind.is_empty()).then(|| kind.to_ascii_lowercase())
}

/// The answer to an upgrade the listener does not allow (Envoy: `403`, `upgrade_failed`).
pub(crate) fn refused(kind: &str) -> (Response<ProxyBody>, Outcome) {
    (
        local_reply(
            StatusCode::FORBIDDEN,
            "-",
            &format!("upgrade_failed: upgrade {kind:?} is not enabled on this listener"),
        ),
        Outcome {
            cluster: None,
            flags: Vec::new(),
        },
    )
}

fn restore_upgrade_headers(headers: &mut HeaderMap, kind: &str) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(kind) {
        headers.insert(header::UPGRADE, v);
    }
}

/// Forwards an upgrade request and, on `101`, joins the two connections.
pub(crate) async fn forward(
    r: Routed<'_>,
    mut req: Request<Incoming>,
    kind: String,
) -> (Response<ProxyBody>, Outcome) {
    let (cluster_name, entry) = super::forward::pick_target(&r.action.target);
    let mut flags = r.flags;
    let fail = |flags: &[&'static str], status, cause: &str| {
        let (resp, mut outcome) = local_reply_flags(status, flags, cause);
        outcome.cluster = Some(cluster_name.to_string());
        (resp, outcome)
    };
    let Some(cluster) = r.shared.clusters.get(cluster_name) else {
        flags.push("NC");
        return fail(
            &flags,
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cluster {cluster_name} is not configured"),
        );
    };
    let ctx = LbContext {
        hash: None,
        exclude: &[],
        original_dst: None,
    };
    let Some(endpoint) = cluster.pick_with(&ctx) else {
        flags.push("UH");
        return fail(
            &flags,
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("no healthy endpoints in cluster {cluster_name}"),
        );
    };
    let downstream = hyper::upgrade::on(&mut req);
    let (mut parts, _body) = req.into_parts();
    super::http::prepare_upstream_headers(&mut parts.headers, r.scheme);
    restore_upgrade_headers(&mut parts.headers, &kind);
    if let Some(e) = entry {
        rewrite::apply_header_mutations(&mut parts.headers, &e.request_headers);
    }
    rewrite::apply_header_mutations(&mut parts.headers, &r.route.request_headers);
    let path = rewrite::rewrite_path(r.action, &r.route.matcher.path, &r.path_and_query)
        .unwrap_or(r.path_and_query.clone());
    let authority = r.action.host_rewrite.clone().unwrap_or(r.authority.clone());
    if let Ok(v) = HeaderValue::from_str(&authority) {
        parts.headers.insert(header::HOST, v);
    }

    let (io, slot, active) = match cluster.connect_tunnel(&endpoint).await {
        Ok(c) => c,
        Err(e @ UpstreamError::Overflow { .. }) => {
            flags.push("UO");
            return fail(&flags, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
        Err(e) => {
            flags.push("UF");
            return fail(&flags, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(h) => h,
        Err(e) => {
            flags.push("UF");
            return fail(&flags, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade upstream connection ended");
        }
    });
    let mut upstream_req = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = match path.parse() {
        Ok(u) => u,
        Err(_) => return fail(&flags, StatusCode::BAD_REQUEST, "invalid path"),
    };
    *upstream_req.headers_mut() = parts.headers;
    let mut resp = match sender.send_request(upstream_req).await {
        Ok(resp) => resp,
        Err(e) => {
            flags.push("UC");
            return fail(
                &flags,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "upstream connection to {} ended before the upgrade answer: {e}",
                    endpoint.address
                ),
            );
        }
    };
    cluster.report_outcome(
        &endpoint,
        crate::upstream::Outcome::Status(resp.status().as_u16()),
    );
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let _hold = (slot, active);
            match tokio::try_join!(downstream, upstream) {
                Ok((d, u)) => {
                    let mut d = TokioIo::new(d);
                    let mut u = TokioIo::new(u);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut d, &mut u).await {
                        tracing::debug!(error = %e, "upgraded tunnel ended");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    super::forward::finish_headers(
        &mut parts.headers,
        entry.map(|e| &e.response_headers),
        &r.route.response_headers,
        &r.cors,
    );
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        restore_upgrade_headers(&mut parts.headers, &kind);
    }
    let body: ProxyBody = body
        .map_err(|e| -> super::http::BoxError { Box::new(e) })
        .boxed();
    (
        Response::from_parts(parts, body),
        Outcome {
            cluster: Some(cluster_name.to_string()),
            flags,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/").version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_default()
    }

    #[test]
    fn only_connection_upgrade_with_a_type_is_an_upgrade() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ];
        assert_eq!(
            requested(&req(Version::HTTP_11, &ws)).as_deref(),
            Some("websocket")
        );
        assert_eq!(requested(&req(Version::HTTP_2, &ws)), None);
        assert_eq!(
            requested(&req(Version::HTTP_11, &[("upgrade", "websocket")])),
            None
        );
        assert_eq!(
            requested(&req(Version::HTTP_11, &[("connection", "upgrade")])),
            None
        );
        assert_eq!(
            requested(&req(
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", " ")]
            )),
            None
        );
    }
}
