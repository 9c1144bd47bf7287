//! `envoy.service.auth.v3.Authorization/Check` with tonic's generated client, over a
//! [`ClusterChannel`]: a tower service that sends each call through the proxy's own cluster
//! (endpoint choice, HTTP/2 connection pool, transport socket), as Envoy's `envoy_grpc` does.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderValueOption, SocketAddress, address, header_value_option, socket_address,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, attribute_context, check_response,
};
use envoy_types::pb::google::protobuf::Timestamp;
use http::{HeaderName, HeaderValue, StatusCode};

use super::{Allowed, CheckContext, Decision, Denial, check_headers};
use crate::config::ExtAuthz;
use crate::upstream::{BoxError, UpstreamCluster};

/// Envoy's denial status when the authorizer gives none.
const DEFAULT_DENIED: StatusCode = StatusCode::FORBIDDEN;

/// A tower service sending gRPC calls through one of the proxy's clusters.
#[derive(Clone)]
struct ClusterChannel {
    cluster: Arc<UpstreamCluster>,
    authority: String,
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for ClusterChannel {
    type Response = http::Response<crate::upstream::ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let cluster = self.cluster.clone();
        let authority = self.authority.clone();
        Box::pin(async move {
            let endpoint = cluster
                .pick()
                .ok_or_else(|| BoxError::from("no healthy upstream"))?;
            cluster
                .send(endpoint, req, &authority)
                .await
                .map_err(BoxError::from)
        })
    }
}

/// Checks the request over gRPC within `timeout`.
pub(super) async fn check(
    filter: &ExtAuthz,
    cx: &CheckContext<'_>,
    cluster_name: &str,
    authority: &str,
    timeout: Duration,
) -> Decision {
    let Some(cluster) = cx.clusters.get(cluster_name) else {
        return Decision::Error(format!("unknown cluster {cluster_name}"));
    };
    let authority = if authority.is_empty() {
        cluster_name.to_string()
    } else {
        authority.to_string()
    };
    let mut client = AuthorizationClient::new(ClusterChannel { cluster, authority });
    let mut request = tonic::Request::new(check_request(filter, cx));
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.check(request)).await {
        Err(_) => Decision::Error("the Check call timed out".to_string()),
        Ok(Err(status)) => Decision::Error(format!("the Check call failed: {status}")),
        Ok(Ok(response)) => decide(response.into_inner()),
    }
}

fn peer(address: Option<SocketAddr>, principal: Option<&str>) -> attribute_context::Peer {
    attribute_context::Peer {
        address: address.map(|a| Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: a.ip().to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                    a.port(),
                ))),
                ..Default::default()
            })),
        }),
        principal: principal.unwrap_or_default().to_string(),
        ..Default::default()
    }
}

/// The `CheckRequest` Envoy sends: source and destination peers, the HTTP request (headers
/// joined by `,` under lowercase names, as Envoy does), the TLS SNI.
fn check_request(filter: &ExtAuthz, cx: &CheckContext<'_>) -> CheckRequest {
    let mut headers: std::collections::HashMap<String, String> = Default::default();
    for (name, value) in check_headers(filter, cx.headers) {
        // A client's own partial-body header never reaches the authorizer (Envoy's rule).
        if name.as_str() == super::PARTIAL_BODY_HEADER {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    for (name, value) in [
        (":authority", cx.authority),
        (":method", cx.method),
        (":path", cx.path_and_query),
        (":scheme", cx.scheme),
    ] {
        headers.insert(name.to_string(), value.to_string());
    }
    let (body, raw_body) = match cx.body {
        None => (String::new(), Vec::new()),
        Some(b) => {
            headers.insert(
                super::PARTIAL_BODY_HEADER.to_string(),
                b.partial.to_string(),
            );
            if b.pack_as_bytes {
                (String::new(), b.bytes.to_vec())
            } else {
                (super::body::as_text(&b.bytes), Vec::new())
            }
        }
    };
    let (path, query) = cx
        .path_and_query
        .split_once('?')
        .unwrap_or((cx.path_and_query, ""));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let size = cx
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer(cx.peer, cx.peer_identity)),
            destination: Some(peer(cx.local, None)),
            // A TCP connection's check has no HTTP request.
            request: (!cx.method.is_empty()).then(|| attribute_context::Request {
                time: Some(Timestamp {
                    seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
                }),
                http: Some(attribute_context::HttpRequest {
                    id: cx
                        .headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string(),
                    method: cx.method.to_string(),
                    headers,
                    path: cx.path_and_query.to_string(),
                    host: cx.authority.to_string(),
                    scheme: cx.scheme.to_string(),
                    query: if path.is_empty() {
                        String::new()
                    } else {
                        query.to_string()
                    },
                    size,
                    protocol: cx.protocol.to_string(),
                    body,
                    raw_body,
                    ..Default::default()
                }),
            }),
            tls_session: cx.sni.map(|sni| attribute_context::TlsSession {
                sni: sni.to_string(),
            }),
            ..Default::default()
        }),
    }
}

/// A header option as (name, value, append?): Envoy's `append` (default false: overwrite) or
/// `append_action`.
fn header(h: &HeaderValueOption) -> Option<(HeaderName, HeaderValue, bool)> {
    let hv = h.header.as_ref()?;
    let name = HeaderName::from_bytes(hv.key.as_bytes()).ok()?;
    let value = if hv.raw_value.is_empty() {
        HeaderValue::from_str(&hv.value).ok()?
    } else {
        HeaderValue::from_bytes(&hv.raw_value).ok()?
    };
    #[allow(deprecated)]
    let append = match h.append {
        Some(b) => b.value,
        None => {
            h.append_action == header_value_option::HeaderAppendAction::AppendIfExistsOrAdd as i32
                && h.append_action != 0
        }
    };
    Some((name, value, append))
}

/// The answer → a decision: gRPC status OK allows (with `ok_response`'s header changes),
/// anything else denies (with `denied_response`'s status, headers and body).
fn decide(response: CheckResponse) -> Decision {
    let code = response.status.as_ref().map_or(0, |s| s.code);
    if code == 0 {
        let mut allowed = Allowed::default();
        if let Some(check_response::HttpResponse::OkResponse(ok)) = &response.http_response {
            for (name, value, append) in ok.headers.iter().filter_map(header) {
                if append {
                    allowed.append.push((name, value));
                } else {
                    allowed.set.push((name, value));
                }
            }
            allowed.remove = ok
                .headers_to_remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect();
            allowed.response = ok
                .response_headers_to_add
                .iter()
                .filter_map(header)
                .map(|(n, v, _)| (n, v))
                .collect();
        }
        return Decision::Allowed(allowed);
    }
    let mut denial = Denial {
        status: DEFAULT_DENIED,
        headers: Vec::new(),
        body: Bytes::new(),
    };
    if let Some(check_response::HttpResponse::DeniedResponse(d)) = &response.http_response {
        if let Some(s) = &d.status
            && let Ok(code) = u16::try_from(s.code)
            && let Ok(status) = StatusCode::from_u16(code)
            && code >= 200
        {
            denial.status = status;
        }
        denial.headers = d
            .headers
            .iter()
            .filter_map(header)
            .map(|(n, v, _)| (n, v))
            .collect();
        denial.body = Bytes::from(d.body.clone());
    }
    Decision::Denied(denial)
}
