//! A trace collector for tests: accepts Zipkin v2 JSON (`POST /api/v2/spans`, as Envoy's
//! Zipkin tracer and the Trellis proxy send it) and OTLP (`TraceService/Export` over gRPC and
//! `POST /v1/traces` protobuf over HTTP, as Envoy's OpenTelemetry tracer sends it) on one port,
//! and keeps every span in Zipkin's shape (OTLP spans are translated: hex ids, kind, the
//! resource's `service.name` as the local endpoint, string attributes as tags), so a test checks
//! traces end to end the same way whatever the wire. `GET /api/v2/spans` answers every span it
//! holds, as a JSON array.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;

mod otlp;

/// The path spans are posted to.
pub const SPANS_PATH: &str = "/api/v2/spans";
/// The largest batch accepted (bytes).
const MAX_BODY: usize = 16 << 20;
/// The most spans kept (older ones are forgotten beyond).
const MAX_SPANS: usize = 100_000;

/// One span as Zipkin v2 JSON carries it (the fields tests look at).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// Hex trace id.
    pub trace_id: String,
    /// Hex span id.
    pub id: String,
    /// Hex parent id.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Operation name.
    #[serde(default)]
    pub name: String,
    /// `SERVER`, `CLIENT`, ...
    #[serde(default)]
    pub kind: Option<String>,
    /// Start, microseconds since the epoch.
    #[serde(default)]
    pub timestamp: Option<u64>,
    /// Length, microseconds.
    #[serde(default)]
    pub duration: Option<u64>,
    /// Who recorded it.
    #[serde(default)]
    pub local_endpoint: Option<Endpoint>,
    /// Tags.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

/// A Zipkin endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Service name.
    #[serde(default)]
    pub service_name: Option<String>,
}

/// A running collector; dropping it stops the server.
#[derive(Debug)]
pub struct Collector {
    address: SocketAddr,
    spans: Arc<Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    /// Listens on `address` (port 0 picks one). A previous collector on the same port may
    /// still be shutting down (its task is aborted asynchronously): binding is retried for up
    /// to [`crate::fixed_port::BIND_WITHIN`].
    pub async fn start(address: SocketAddr) -> anyhow::Result<Collector> {
        let listener = crate::fixed_port::bind(address, "Zipkin collector").await?;
        let address = listener.local_addr()?;
        let spans: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let store = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, store.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Collector {
            address,
            spans,
            task,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans
            .lock()
            .map(|s| s.iter().filter_map(|v| Span::deserialize(v).ok()).collect())
            .unwrap_or_default()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn keep(store: &Mutex<Vec<serde_json::Value>>, spans: Vec<serde_json::Value>) {
    if let Ok(mut s) = store.lock() {
        s.extend(spans);
        let excess = s.len().saturating_sub(MAX_SPANS);
        s.drain(..excess);
    }
}

async fn handle(
    req: Request<Incoming>,
    store: Arc<Mutex<Vec<serde_json::Value>>>,
) -> Result<Response<Body>, Infallible> {
    let answer = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
        *r.status_mut() = status;
        Ok(r)
    };
    let path = req.uri().path();
    if path == otlp::GRPC_PATH || path == otlp::HTTP_PATH {
        let grpc = path == otlp::GRPC_PATH;
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return answer(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        let message = if grpc {
            otlp::unframe(&body)
        } else {
            Ok(body.as_ref())
        };
        return match message.and_then(otlp::spans) {
            Ok(spans) => {
                keep(&store, spans);
                Ok(if grpc {
                    otlp::grpc_ok()
                } else {
                    otlp::http_ok()
                })
            }
            Err(e) if grpc => Ok(otlp::grpc_error(&e)),
            Err(e) => answer(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
    }
    if path != SPANS_PATH {
        return answer(StatusCode::NOT_FOUND, "not found\n".into());
    }
    if req.method() == Method::GET {
        let all = store.lock().map(|s| s.clone()).unwrap_or_default();
        return answer(StatusCode::OK, serde_json::Value::Array(all).to_string());
    }
    if req.method() != Method::POST {
        return answer(StatusCode::METHOD_NOT_ALLOWED, "POST spans\n".into());
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return answer(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let parsed = serde_json::from_slice::<Vec<serde_json::Value>>(&body).and_then(|values| {
        for v in &values {
            Span::deserialize(v)?;
        }
        Ok(values)
    });
    match parsed {
        Ok(spans) => {
            keep(&store, spans);
            answer(StatusCode::ACCEPTED, String::new())
        }
        Err(e) => answer(
            StatusCode::BAD_REQUEST,
            format!("not Zipkin v2 JSON: {e}\n"),
        ),
    }
}
