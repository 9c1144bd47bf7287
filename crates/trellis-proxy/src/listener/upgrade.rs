//! HTTP/1.1 upgrades (WebSocket): the request is routed like any other (route match, weighted
//! clusters, header changes, host rewrite), sent on a new upstream connection of its own (an
//! HTTP/1.1 Upgrade, or an extended CONNECT (RFC 8441) to an HTTP/2 cluster, as Envoy does),
//! and once the upstream answers `101 Switching Protocols` (`200` to the CONNECT) both
//! connections become one byte tunnel until either side closes. Retries, timeouts and mirrors
//! do not apply (as in Envoy). Upgrade types the connection manager's `upgrade_configs` do not
//! list get `403`.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::forward::Routed;
use super::http::{Outcome, ProxyBody, local_reply, local_reply_flags};
use crate::config::UpstreamProtocol;
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
    let http2 = cluster.config().protocol == UpstreamProtocol::Http2;
    let sent = if http2 {
        extended_connect(io, parts.headers, r.scheme, &authority, &path, &kind).await
    } else {
        http1_upgrade(io, parts.method.clone(), parts.headers, &path).await
    };
    let mut resp = match sent {
        Ok(resp) => resp,
        Err(Failure::Handshake(e)) => {
            flags.push("UF");
            return fail(&flags, StatusCode::SERVICE_UNAVAILABLE, &e);
        }
        Err(Failure::InvalidPath) => {
            return fail(&flags, StatusCode::BAD_REQUEST, "invalid path");
        }
        Err(Failure::Send(e)) => {
            // A reset or closed connection before the answer (an HTTP/2 peer that does not
            // allow extended CONNECT resets it): Envoy reports `UC`
            // (`upstream_reset_before_response_started{connection_termination}`).
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

/// Why an upgrade could not be sent upstream.
enum Failure {
    /// The HTTP handshake on the new connection failed.
    Handshake(String),
    /// The (rewritten) path is not a valid request target.
    InvalidPath,
    /// The request was not answered (reset, connection closed).
    Send(String),
}

/// The upgrade as an HTTP/1.1 request on a connection of its own.
async fn http1_upgrade(
    io: crate::upstream::BoxIo,
    method: http::Method,
    headers: HeaderMap,
    path: &str,
) -> Result<Response<Incoming>, Failure> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::Handshake(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgrade upstream connection ended");
        }
    });
    let mut req = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
    *req.method_mut() = method;
    *req.uri_mut() = path.parse().map_err(|_| Failure::InvalidPath)?;
    *req.headers_mut() = headers;
    sender
        .send_request(req)
        .await
        .map_err(|e| Failure::Send(e.to_string()))
}

/// The upgrade to an HTTP/2 cluster, as Envoy sends it: an extended CONNECT (RFC 8441,
/// `:protocol` = the upgrade type) on an HTTP/2 connection of its own, without the HTTP/1.1
/// connection headers; a `200` answer is turned back into `101 Switching Protocols`. A peer that
/// does not allow extended CONNECT (Envoy without `allow_connect`, as Istio configures inbound
/// listeners) resets the stream.
async fn extended_connect(
    io: crate::upstream::BoxIo,
    mut headers: HeaderMap,
    scheme: &str,
    authority: &str,
    path: &str,
    kind: &str,
) -> Result<Response<Incoming>, Failure> {
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(io),
    )
    .await
    .map_err(|e| Failure::Handshake(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "extended CONNECT upstream connection ended");
        }
    });
    for name in [
        header::CONNECTION,
        header::UPGRADE,
        header::HOST,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
    let mut req = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
    *req.method_mut() = http::Method::CONNECT;
    *req.version_mut() = Version::HTTP_2;
    *req.uri_mut() = format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|_| Failure::InvalidPath)?;
    *req.headers_mut() = headers;
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from(kind));
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| Failure::Send(e.to_string()))?;
    if resp.status() == StatusCode::OK {
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    }
    Ok(resp)
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

    /// An HTTP/2 server on a loopback port that answers one request: `200` to an extended
    /// CONNECT when it allows them (reporting the method and `:protocol` it saw), else hyper's
    /// (h2's) refusal. Returns its address.
    async fn h2_server(allow_connect: bool) -> std::io::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let protocol = req
                    .extensions()
                    .get::<hyper::ext::Protocol>()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                let seen = format!("{} {protocol} {}", req.method(), req.uri().path());
                let mut resp = Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                if let Ok(v) = HeaderValue::from_str(&seen) {
                    resp.headers_mut().insert("x-seen", v);
                }
                Ok::<_, std::convert::Infallible>(resp)
            });
            let mut builder =
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
            if allow_connect {
                builder.enable_connect_protocol();
            }
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        Ok(addr)
    }

    async fn connect(addr: std::net::SocketAddr) -> Result<Response<Incoming>, Failure> {
        let io: crate::upstream::BoxIo = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => Box::new(s),
            Err(e) => return Err(Failure::Handshake(e.to_string())),
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::HOST, HeaderValue::from_static("echo:9080"));
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        extended_connect(io, headers, "http", "echo:9080", "/chat", "websocket").await
    }

    #[tokio::test]
    async fn upgrades_to_http2_clusters_are_extended_connects() -> std::io::Result<()> {
        let addr = h2_server(true).await?;
        let resp = match connect(addr).await {
            Ok(r) => r,
            Err(_) => panic!("the extended CONNECT was not answered"),
        };
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            resp.headers().get("x-seen").and_then(|v| v.to_str().ok()),
            Some("CONNECT websocket /chat")
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_peer_without_extended_connect_resets_the_stream() -> std::io::Result<()> {
        let addr = h2_server(false).await?;
        assert!(matches!(connect(addr).await, Err(Failure::Send(_))));
        Ok(())
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
