//! A real external authorizer for AuthorizationPolicy `CUSTOM` scenarios: Envoy's
//! `envoy.service.auth.v3.Authorization/Check` over gRPC (tonic) and the HTTP variant, started
//! per scenario on `127.0.0.1` like the JWKS server.
//!
//! The rule is fixed, so scenarios can state their expectations:
//! - a request carrying [`DECISION_HEADER`]` `: [`ALLOW`] is **allowed**; the authorizer adds
//!   [`RESULT_HEADER`]` `: `allowed` and [`PATH_HEADER`] (the path it was asked about: for the
//!   HTTP variant, the check request's own path, so `pathPrefix` is visible) to the request
//!   that goes on to the app;
//! - any other request is **denied** with `403`, [`RESULT_HEADER`]` `: `denied` and the body
//!   [`DENIED_BODY`];
//! - so is a request whose body (the buffered body the check carries, with the provider's
//!   `includeRequestBodyInCheck`) contains [`BODY_ALLOW`]; every allowed answer also says what
//!   body the authorizer got: [`BODY_BYTES_HEADER`] (its length), [`BODY_KIND_HEADER`] (`text`
//!   for gRPC `body` or the HTTP check's body, `raw` for gRPC `raw_body`, `none`) and
//!   [`PARTIAL_HEADER`] (the check's `x-envoy-auth-partial-body`, `none` when absent);
//! - a TCP connection's check (gRPC, no HTTP request in it) is allowed when the source
//!   principal ends with [`TCP_ALLOWED_SA`] (the scenarios' client), denied otherwise.
//!
//! Over gRPC the headers come in `OkHttpResponse.headers` / `DeniedHttpResponse`; over HTTP the
//! answer is the check response itself (`200` or `403` with those headers and body), of which
//! the proxy passes on what the provider's `headersToUpstreamOnAllow` /
//! `headersToDownstreamOnDeny` let through. Both count the checks they answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The request header the rule looks at.
pub const DECISION_HEADER: &str = "x-ext-authz";
/// Its value that allows a request.
pub const ALLOW: &str = "allow";
/// The header the authorizer sets: `allowed` (towards the app) or `denied` (to the client).
pub const RESULT_HEADER: &str = "x-ext-authz-check-result";
/// The header (towards the app) naming the path the authorizer was asked about.
pub const PATH_HEADER: &str = "x-ext-authz-check-path";
/// The text in a request body that allows it.
pub const BODY_ALLOW: &str = "ext-authz=allow";
/// The header (towards the app) with the length of the body the authorizer got.
pub const BODY_BYTES_HEADER: &str = "x-ext-authz-check-body-bytes";
/// The header (towards the app) saying how the body came: `text`, `raw` or `none`.
pub const BODY_KIND_HEADER: &str = "x-ext-authz-check-body-kind";
/// The header (towards the app) echoing the check's `x-envoy-auth-partial-body`.
pub const PARTIAL_HEADER: &str = "x-ext-authz-check-partial";
/// The check request header saying whether the body is partial (set by the proxy).
const PROXY_PARTIAL_HEADER: &str = "x-envoy-auth-partial-body";
/// The service account whose TCP connections are allowed.
pub const TCP_ALLOWED_SA: &str = "/sa/client";
/// The body of a denial.
pub const DENIED_BODY: &str = "denied by the test ext_authz server";

/// gRPC `PERMISSION_DENIED`.
const PERMISSION_DENIED: i32 = 7;

/// Where the scenario wants the authorizer.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The gRPC `Authorization` service's port on 127.0.0.1 (none: not started).
    pub grpc: Option<u16>,
    /// The HTTP variant's port on 127.0.0.1 (none: not started).
    pub http: Option<u16>,
}

/// The running authorizers; they stop when this is dropped.
#[derive(Debug)]
pub struct ExtAuthzServer {
    grpc: Option<SocketAddr>,
    http: Option<SocketAddr>,
    checks: Arc<AtomicUsize>,
    _stop: Vec<oneshot::Sender<()>>,
}

impl ExtAuthzServer {
    /// Binds the requested ports and serves until dropped.
    pub async fn start(ports: Ports) -> anyhow::Result<Self> {
        let checks = Arc::new(AtomicUsize::new(0));
        let mut stop = Vec::new();
        let grpc = match ports.grpc {
            Some(port) => {
                let (tx, rx) = oneshot::channel();
                stop.push(tx);
                Some(serve_grpc(port, checks.clone(), rx).await?)
            }
            None => None,
        };
        let http = match ports.http {
            Some(port) => {
                let (tx, rx) = oneshot::channel();
                stop.push(tx);
                Some(serve_http(port, checks.clone(), rx).await?)
            }
            None => None,
        };
        Ok(ExtAuthzServer {
            grpc,
            http,
            checks,
            _stop: stop,
        })
    }

    /// The gRPC service's address.
    pub fn grpc_address(&self) -> Option<SocketAddr> {
        self.grpc
    }

    /// The HTTP variant's address.
    pub fn http_address(&self) -> Option<SocketAddr> {
        self.http
    }

    /// How many checks were answered (both variants).
    pub fn checks(&self) -> usize {
        self.checks.load(Ordering::Relaxed)
    }
}

/// The fixed rule: allowed when the decision header says so, or the body.
fn allowed(value: Option<&str>, body: &[u8]) -> bool {
    value == Some(ALLOW)
        || body
            .windows(BODY_ALLOW.len())
            .any(|w| w == BODY_ALLOW.as_bytes())
}

/// What the authorizer says about the body it got (headers of an allowed answer).
fn body_report(body: &[u8], kind: &str, partial: Option<&str>) -> [(&'static str, String); 3] {
    [
        (BODY_BYTES_HEADER, body.len().to_string()),
        (BODY_KIND_HEADER, kind.to_string()),
        (PARTIAL_HEADER, partial.unwrap_or("none").to_string()),
    ]
}

/// The gRPC `Authorization` service.
#[derive(Debug, Clone)]
struct Checker {
    checks: Arc<AtomicUsize>,
}

fn header_option(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for Checker {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        let http = request
            .get_ref()
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let decision = http.and_then(|h| {
            h.headers.get(DECISION_HEADER).cloned().or_else(|| {
                h.header_map.as_ref().and_then(|m| {
                    m.headers
                        .iter()
                        .find(|x| x.key.eq_ignore_ascii_case(DECISION_HEADER))
                        .map(|x| String::from_utf8_lossy(&x.raw_value).into_owned())
                })
            })
        });
        let path = http.map_or("", |h| h.path.as_str());
        let source = request
            .get_ref()
            .attributes
            .as_ref()
            .and_then(|a| a.source.as_ref())
            .map_or("", |s| s.principal.as_str());
        let (body, kind): (&[u8], &str) = match http {
            Some(h) if !h.raw_body.is_empty() => (&h.raw_body, "raw"),
            Some(h) if !h.body.is_empty() => (h.body.as_bytes(), "text"),
            _ => (&[], "none"),
        };
        let partial = http.and_then(|h| h.headers.get(PROXY_PARTIAL_HEADER).map(String::as_str));
        let allow = match http {
            Some(_) => allowed(decision.as_deref(), body),
            None => source.ends_with(TCP_ALLOWED_SA),
        };
        let response = if allow {
            let mut headers = vec![
                header_option(RESULT_HEADER, "allowed"),
                header_option(PATH_HEADER, path),
            ];
            headers.extend(
                body_report(body, kind, partial)
                    .iter()
                    .map(|(k, v)| header_option(k, v)),
            );
            CheckResponse {
                status: Some(RpcStatus::default()),
                http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
                    headers,
                    ..Default::default()
                })),
                ..Default::default()
            }
        } else {
            CheckResponse {
                status: Some(RpcStatus {
                    code: PERMISSION_DENIED,
                    ..Default::default()
                }),
                http_response: Some(check_response::HttpResponse::DeniedResponse(
                    DeniedHttpResponse {
                        status: Some(HttpStatus { code: 403 }),
                        headers: vec![header_option(RESULT_HEADER, "denied")],
                        body: DENIED_BODY.to_string(),
                    },
                )),
                ..Default::default()
            }
        };
        Ok(tonic::Response::new(response))
    }
}

async fn bind(port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    crate::fixed_port::bind(address, &format!("{what} ext_authz server")).await
}

async fn serve_grpc(
    port: u16,
    checks: Arc<AtomicUsize>,
    stop: oneshot::Receiver<()>,
) -> anyhow::Result<SocketAddr> {
    let listener = bind(port, "gRPC").await?;
    let address = listener.local_addr()?;
    // The accept stream ends (dropping the listener, freeing the port) as soon as `stop` fires;
    // tonic's graceful shutdown alone would hold the listener until every proxy connection closed.
    let incoming = futures::stream::unfold((listener, stop), |(l, mut stop)| async move {
        tokio::select! {
            _ = &mut stop => None,
            accepted = l.accept() => Some((accepted.map(|(stream, _)| stream), (l, stop))),
        }
    });
    let service = AuthorizationServer::new(Checker { checks });
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the gRPC ext_authz server stopped");
        }
    });
    Ok(address)
}

/// The HTTP variant's answer to one check request (its body is the buffered request body).
async fn http_check(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 1 << 20))
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let built = if allowed(header(DECISION_HEADER), &body) {
        let kind = if body.is_empty() { "none" } else { "text" };
        let mut b = Response::builder()
            .header(RESULT_HEADER, "allowed")
            .header(PATH_HEADER, parts.uri.path());
        for (k, v) in body_report(&body, kind, header(PROXY_PARTIAL_HEADER)) {
            b = b.header(k, v);
        }
        b.body(Full::new(Bytes::new()))
    } else {
        Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header(RESULT_HEADER, "denied")
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from_static(DENIED_BODY.as_bytes())))
    };
    built.unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn serve_http(
    port: u16,
    checks: Arc<AtomicUsize>,
    mut stop: oneshot::Receiver<()>,
) -> anyhow::Result<SocketAddr> {
    let listener = bind(port, "HTTP").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let checks = checks.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    checks.fetch_add(1, Ordering::Relaxed);
                    async move { Ok::<_, std::convert::Infallible>(http_check(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(address)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Request as AttrRequest,
    };
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

    fn check(path: &str, decision: Option<&str>) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(AttrRequest {
                    http: Some(HttpRequest {
                        path: path.to_string(),
                        headers: decision
                            .map(|d| (DECISION_HEADER.to_string(), d.to_string()))
                            .into_iter()
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[tokio::test]
    async fn grpc_rule_allows_on_the_header_and_denies_otherwise() {
        let server = ExtAuthzServer::start(Ports {
            grpc: Some(0),
            http: None,
        })
        .await
        .unwrap();
        let address = server.grpc_address().unwrap();
        let mut client = AuthorizationClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        let ok = client
            .check(check("/a", Some(ALLOW)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.status.unwrap().code, 0);
        let Some(check_response::HttpResponse::OkResponse(r)) = ok.http_response else {
            panic!("an OK response expected");
        };
        let headers: Vec<(String, String)> = r
            .headers
            .into_iter()
            .map(|h| h.header.unwrap())
            .map(|h| (h.key, h.value))
            .collect();
        assert_eq!(
            headers,
            [
                (RESULT_HEADER.to_string(), "allowed".to_string()),
                (PATH_HEADER.to_string(), "/a".to_string()),
                (BODY_BYTES_HEADER.to_string(), "0".to_string()),
                (BODY_KIND_HEADER.to_string(), "none".to_string()),
                (PARTIAL_HEADER.to_string(), "none".to_string()),
            ]
        );
        let denied = client
            .check(check("/a", Some("no")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(denied.status.unwrap().code, PERMISSION_DENIED);
        let Some(check_response::HttpResponse::DeniedResponse(d)) = denied.http_response else {
            panic!("a denied response expected");
        };
        assert_eq!(d.status.unwrap().code, 403);
        assert_eq!(d.body, DENIED_BODY);
        assert_eq!(server.checks(), 2);
    }

    #[tokio::test]
    async fn http_rule_answers_with_the_status_and_headers() {
        let server = ExtAuthzServer::start(Ports {
            grpc: None,
            http: Some(0),
        })
        .await
        .unwrap();
        let address = server.http_address().unwrap();
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let allow = Request::get("/check/a")
            .header(DECISION_HEADER, ALLOW)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let r = send.send_request(allow).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[PATH_HEADER], "/check/a");
        let deny = Request::get("/check/a")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let r = send.send_request(deny).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[RESULT_HEADER], "denied");
        assert_eq!(server.checks(), 2);
    }
}
