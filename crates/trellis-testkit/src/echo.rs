//! The echo application: an HTTP server (HTTP/1.1 and HTTP/2 with prior knowledge on the same
//! port) that answers every request with JSON describing who answered and what it saw:
//!
//! ```json
//! {"service":"reviews","version":"v2","instance":"reviews-v2-0","protocol":"HTTP/1.1",
//!  "method":"GET","path":"/reviews","query":"","headers":{"host":"reviews:9080"},"upstreams":[]}
//! ```
//!
//! Query parameters shape the answer: `status=N` (200–599), `delay_ms=N` (at most
//! [`MAX_DELAY_MS`]), `size=N` (adds a `padding` field of N bytes, at most [`MAX_SIZE`]). A bad
//! value gets `400` with `{"error": "..."}`. `fail_instance=ID` / `fail_version=V` limit
//! `status` and `delay_ms` to that instance or version (the others answer normally), so one
//! request URL can make a single endpoint misbehave (retries, outlier detection, failover).
//! `echo_header=NAME` copies the request's header `NAME` into the response, written (on
//! HTTP/1.1) in the case the request's name had. An HTTP/1.x answer also has `header_names`:
//! the request's header names exactly as they came over the wire (hyper lowercases them in
//! `headers`), to check that the mesh preserves their case.
//!
//! Every HTTP answer carries `x-echo-connection: N`: the number of the connection it came on
//! (1, 2, … in the order the app accepted them).
//!
//! `GET /_echo/stats` (sent to the app directly, not through the mesh) answers
//! `{"requests": N, "shadow": M}`: how many requests the app has served (stats and
//! `/ready-check` excluded), and how many of them were mirrored copies (Host ending in
//! `-shadow`, as Envoy marks them). Scenarios use it to see traffic the client never sees.
//!
//! For every URL in [`EchoConfig::calls`] the app calls that URL on every request it serves —
//! through [`EchoConfig::http_proxy`] if set, exactly like an application with `HTTP_PROXY`
//! pointing at its sidecar — forwarding `x-request-id`, `end-user` and the trace context
//! (B3, `traceparent`/`tracestate`), and embeds each answer in
//! `upstreams`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::http::{Connection, Protocol, parse_http_url, resolve, snippet};

/// The longest delay `?delay_ms=` accepts (60 s).
pub const MAX_DELAY_MS: u64 = 60_000;
/// The largest padding `?size=` accepts (10 MiB).
pub const MAX_SIZE: usize = 10 * 1024 * 1024;
/// The largest request body the echo app reads (1 MiB); larger bodies get `413`.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// How long one upstream call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Request headers forwarded to upstream calls.
pub const FORWARDED_HEADERS: &[&str] = &[
    "x-request-id",
    "end-user",
    // Trace context, as Istio asks applications to propagate it (B3 and W3C).
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
];

/// Errors of the echo app's response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The echo app's response body (JSON answers, gRPC streams).
pub type EchoBody = UnsyncBoxBody<Bytes, BoxError>;

/// Who the echo app is and whom it calls.
#[derive(Debug, Clone, Default)]
pub struct EchoConfig {
    /// The service name reported in answers (e.g. `reviews`).
    pub service: String,
    /// The version reported in answers (e.g. `v2`).
    pub version: String,
    /// The instance id reported in answers (e.g. `reviews-v2-0`).
    pub instance: String,
    /// URLs called on every request, e.g. `http://ratings.default.svc.cluster.local:9080/ratings`.
    pub calls: Vec<String>,
    /// The HTTP proxy the calls go through (the sidecar's outbound listener); `None` calls the
    /// URL's host directly.
    pub http_proxy: Option<SocketAddr>,
}

/// Reads the HTTP proxy from `HTTP_PROXY` (or `http_proxy`), as an application would: a value
/// such as `http://127.0.10.2:15001` or `127.0.10.2:15001`. Unset or empty means no proxy.
pub fn http_proxy_from_env() -> anyhow::Result<Option<SocketAddr>> {
    let value = std::env::var("HTTP_PROXY")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var("http_proxy").ok().filter(|v| !v.is_empty()));
    value.map(|v| parse_proxy(&v)).transpose()
}

/// Parses an HTTP proxy setting: `http://IP:PORT[/]` or `IP:PORT`.
pub fn parse_proxy(value: &str) -> anyhow::Result<SocketAddr> {
    let trimmed = value.trim();
    let bare = trimmed
        .strip_prefix("http://")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    bare.parse().map_err(|_| {
        anyhow!("HTTP proxy {value:?} must be http://IP:PORT (an IP address and a port, e.g. http://127.0.10.2:15001)")
    })
}

/// Serves the echo app on `listener` until `shutdown` completes. Connections still open at
/// shutdown are closed.
pub async fn serve(
    listener: TcpListener,
    config: EchoConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    for url in &config.calls {
        parse_http_url(url).with_context(|| format!("echo --call {url}"))?;
    }
    let config = Arc::new(config);
    let counters = Arc::new(Counters::default());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Transient (e.g. EMFILE): log and keep serving.
                        tracing::warn!("echo: accept failed: {e}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let config = config.clone();
                let counters = counters.clone();
                let connection = counters
                    .connections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                connections.spawn(async move {
                    // Raw TCP (not HTTP) gets the TCP echo.
                    let mut first = [0u8; 4];
                    if let Ok(n) = stream.peek(&mut first).await
                        && n > 0
                        && !crate::tcp::looks_like_http(&first[..n])
                    {
                        counters.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Err(e) = crate::tcp::serve(stream, &config).await {
                            tracing::debug!("echo: tcp session ended: {e}");
                        }
                        return;
                    }
                    // The received bytes, for the header names' case (`header_names`).
                    let (stream, recording) = crate::raw_http1::Recorder::new(stream);
                    let service = service_fn(move |req: Request<Incoming>| {
                        let config = config.clone();
                        let counters = counters.clone();
                        let recording = recording.clone();
                        async move {
                            let response = if crate::websocket::is_websocket(&req) {
                                counters.count(&req);
                                let hello = crate::websocket::hello(&req, &config);
                                crate::websocket::accept(req, &config, hello)
                            } else if crate::grpc::is_grpc(&req) {
                                counters.count(&req);
                                crate::grpc::server::handle(req, &config).await
                            } else {
                                let mut response = handle(req, &config, &counters, &recording)
                                    .await
                                    .map(|b| b.map_err(|e| match e {}).boxed_unsync());
                                response
                                    .headers_mut()
                                    .insert(CONNECTION_HEADER, HeaderValue::from(connection));
                                response
                            };
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // Response headers named like request headers (`echo_header`) keep their case.
                    builder.http1().preserve_header_case(true);
                    if let Err(e) = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!("echo: connection ended: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// The path of the app's own counters.
pub const STATS_PATH: &str = "/_echo/stats";

/// Requests served, for `/_echo/stats`.
#[derive(Debug, Default)]
struct Counters {
    requests: std::sync::atomic::AtomicU64,
    shadow: std::sync::atomic::AtomicU64,
    /// Connections accepted so far (the last one's number is its `x-echo-connection`).
    connections: std::sync::atomic::AtomicU64,
}

/// The response header carrying the number of the connection a request came on (1, 2, … per
/// app), so scenarios can count the connections a proxy opened to the app.
pub const CONNECTION_HEADER: &str = "x-echo-connection";

impl Counters {
    /// Counts a request served (and whether it is a mirrored copy: Host ending in `-shadow`).
    fn count<B>(&self, req: &Request<B>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.requests.fetch_add(1, Relaxed);
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        if host.split(':').next().unwrap_or("").ends_with("-shadow") {
            self.shadow.fetch_add(1, Relaxed);
        }
    }
}

/// The query parameters the echo app understands, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EchoQuery {
    /// `fail_instance=ID`: `status`/`delay_ms` only apply on that instance.
    pub fail_instance: Option<String>,
    /// `fail_version=V`: `status`/`delay_ms` only apply on that version.
    pub fail_version: Option<String>,
    /// `status=N`.
    pub status: Option<u16>,
    /// `delay_ms=N`.
    pub delay_ms: Option<u64>,
    /// `size=N`.
    pub size: Option<usize>,
    /// `echo_header=NAME`: the response carries the request's header `NAME` (written, on
    /// HTTP/1.1, in the case the request's name had).
    pub echo_header: Option<String>,
}

/// Parses the query string; the error is the message sent back with `400`.
pub fn parse_query(query: &str) -> Result<EchoQuery, String> {
    let mut q = EchoQuery::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "status" => {
                let n: u16 = value
                    .parse()
                    .ok()
                    .filter(|n| (200..=599).contains(n))
                    .ok_or_else(|| {
                        format!("status={value:?}: expected an HTTP status code from 200 to 599")
                    })?;
                q.status = Some(n);
            }
            "delay_ms" => {
                let n: u64 = value
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_DELAY_MS)
                    .ok_or_else(|| {
                        format!(
                            "delay_ms={value:?}: expected milliseconds from 0 to {MAX_DELAY_MS}"
                        )
                    })?;
                q.delay_ms = Some(n);
            }
            "fail_instance" => q.fail_instance = Some(value.to_string()),
            "fail_version" => q.fail_version = Some(value.to_string()),
            "echo_header" => q.echo_header = Some(value.to_ascii_lowercase()),
            "size" => {
                let n: usize = value
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_SIZE)
                    .ok_or_else(|| {
                        format!("size={value:?}: expected a number of bytes from 0 to {MAX_SIZE}")
                    })?;
                q.size = Some(n);
            }
            _ => {}
        }
    }
    Ok(q)
}

pub(crate) fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "unknown",
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle(
    req: Request<Incoming>,
    config: &EchoConfig,
    counters: &Counters,
    recording: &crate::raw_http1::Recording,
) -> Response<Full<Bytes>> {
    use std::sync::atomic::Ordering::Relaxed;
    if req.uri().path() == STATS_PATH {
        return json_response(
            StatusCode::OK,
            &json!({
                "requests": counters.requests.load(Relaxed),
                "shadow": counters.shadow.load(Relaxed),
            }),
        );
    }
    if req.uri().path() != "/ready-check" {
        counters.count(&req);
    }
    let query_str = req.uri().query().unwrap_or("").to_string();
    let mut query = match parse_query(&query_str) {
        Ok(q) => q,
        Err(message) => {
            return json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }));
        }
    };
    let targeted = query
        .fail_instance
        .as_ref()
        .is_none_or(|i| *i == config.instance)
        && query
            .fail_version
            .as_ref()
            .is_none_or(|v| *v == config.version);
    if !targeted {
        query.status = None;
        query.delay_ms = None;
    }
    // HTTP/1.x: the header names as they came over the wire (hyper lowercases them).
    let header_names = (req.version() < Version::HTTP_2)
        .then(|| {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            crate::raw_http1::request_header_names(recording, req.method().as_str(), target)
        })
        .flatten();
    let (parts, body) = req.into_parts();
    let body_bytes = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(e) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({ "error": format!("request body rejected (limit {MAX_REQUEST_BODY} bytes): {e}") }),
            );
        }
    };
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&v);
            })
            .or_insert(v);
    }
    // HTTP/2 carries the authority in the URI, not in a Host header.
    if !headers.contains_key("host")
        && let Some(authority) = parts.uri.authority()
    {
        headers.insert("host".to_string(), authority.as_str().to_string());
    }

    let forwarded: Vec<(&str, HeaderValue)> = FORWARDED_HEADERS
        .iter()
        .filter_map(|name| parts.headers.get(*name).map(|v| (*name, v.clone())))
        .collect();
    let upstreams = futures::future::join_all(
        config
            .calls
            .iter()
            .map(|url| call_upstream(url, config.http_proxy, &forwarded)),
    )
    .await;

    if let Some(ms) = query.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut answer = json!({
        "service": config.service,
        "version": config.version,
        "instance": config.instance,
        "protocol": version_name(parts.version),
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": query_str,
        "headers": headers,
        "body_bytes": body_bytes,
        "upstreams": upstreams,
    });
    if let (Some(size), Some(obj)) = (query.size, answer.as_object_mut()) {
        obj.insert("padding".to_string(), Value::String("x".repeat(size)));
    }
    if let (Some(names), Some(obj)) = (header_names, answer.as_object_mut()) {
        obj.insert("header_names".to_string(), json!(names));
    }
    let status = query
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = json_response(status, &answer);
    if let Some(name) = &query.echo_header
        && let Ok(name) = http::HeaderName::from_bytes(name.as_bytes())
    {
        for value in parts.headers.get_all(&name) {
            response.headers_mut().append(name.clone(), value.clone());
        }
        // hyper's record of the request's header-name case: the response writes the same names
        // the same way.
        *response.extensions_mut() = parts.extensions.clone();
    }
    response
}

/// Calls one upstream URL (through `proxy` if given) and returns its JSON answer, or
/// `{"url", "error", "status"}` when the call failed or did not answer 2xx JSON.
pub async fn call_upstream(
    url: &str,
    proxy: Option<SocketAddr>,
    forwarded: &[(&str, HeaderValue)],
) -> Value {
    match tokio::time::timeout(CALL_TIMEOUT, call_upstream_inner(url, proxy, forwarded)).await {
        Ok(Ok(v)) => v,
        Ok(Err(CallError { status, message })) => {
            json!({ "url": url, "error": message, "status": status })
        }
        Err(_) => json!({
            "url": url,
            "error": format!("no answer within {CALL_TIMEOUT:?}"),
            "status": Value::Null,
        }),
    }
}

struct CallError {
    status: Option<u16>,
    message: String,
}

impl CallError {
    fn transport(e: impl std::fmt::Display) -> Self {
        CallError {
            status: None,
            message: e.to_string(),
        }
    }
}

async fn call_upstream_inner(
    url: &str,
    proxy: Option<SocketAddr>,
    forwarded: &[(&str, HeaderValue)],
) -> Result<Value, CallError> {
    let target = parse_http_url(url).map_err(|e| CallError::transport(format!("{e:#}")))?;
    let (addr, uri) = match proxy {
        // Absolute form, as an application with HTTP_PROXY sends it.
        Some(proxy) => (
            proxy,
            format!("http://{}{}", target.authority, target.path_and_query),
        ),
        None => (
            resolve(&target.host, target.port)
                .await
                .map_err(|e| CallError::transport(format!("{e:#}")))?,
            target.path_and_query.clone(),
        ),
    };
    let mut conn = Connection::connect(addr, Protocol::Http1)
        .await
        .map_err(|e| CallError::transport(format!("{e:#}")))?;
    let mut builder = Request::get(uri).header(http::header::HOST, target.authority.as_str());
    for (name, value) in forwarded {
        builder = builder.header(*name, value.clone());
    }
    let request = builder
        .body(Full::new(Bytes::new()))
        .map_err(CallError::transport)?;
    let response = conn
        .send(request)
        .await
        .map_err(|e| CallError::transport(format!("{e:#}")))?;
    let status = response.status.as_u16();
    if !response.status.is_success() {
        let reason = response
            .headers
            .get("x-trellis-reason")
            .map(|v| {
                format!(
                    " (x-trellis-reason: {})",
                    String::from_utf8_lossy(v.as_bytes())
                )
            })
            .unwrap_or_default();
        return Err(CallError {
            status: Some(status),
            message: format!(
                "upstream answered {status}{reason}: {}",
                snippet(&response.body)
            ),
        });
    }
    serde_json::from_slice(&response.body).map_err(|e| CallError {
        status: Some(status),
        message: format!(
            "upstream answer is not JSON ({e}): {}",
            snippet(&response.body)
        ),
    })
}

/// An in-process echo app on `127.0.0.1:0` for the crate's unit tests (HTTP, gRPC, WebSocket
/// and TCP clients all test against it).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) struct Running {
        pub(crate) addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    impl Running {
        /// Shuts the app down and returns how `serve` ended.
        pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
            if let Some(s) = self.stop.take() {
                let _ = s.send(());
            }
            self.task.await?
        }
    }

    pub(crate) async fn start(config: EchoConfig) -> anyhow::Result<Running> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config, async {
            let _ = rx.await;
        }));
        Ok(Running {
            addr,
            stop: Some(tx),
            task,
        })
    }

    /// Service `echo`, this version, instance `echo-VERSION-0`.
    pub(crate) fn config(version: &str) -> EchoConfig {
        EchoConfig {
            service: "echo".into(),
            version: version.into(),
            instance: format!("echo-{version}-0"),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{config, start};
    use super::*;
    use std::time::Instant;

    async fn request(
        addr: SocketAddr,
        protocol: Protocol,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<crate::http::Response> {
        let mut conn = Connection::connect(addr, protocol).await?;
        let uri = match protocol {
            Protocol::Http1 => path.to_string(),
            Protocol::Http2 => format!("http://echo{path}"),
        };
        let mut b = Request::get(uri);
        if protocol == Protocol::Http1 {
            b = b.header("host", "echo");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        conn.send(b.body(Full::new(Bytes::new()))?).await
    }

    #[tokio::test]
    async fn answers_json_over_http1_and_h2c() -> anyhow::Result<()> {
        let echo = start(config("v1")).await?;
        let r = request(
            echo.addr,
            Protocol::Http1,
            "/hello?x=1",
            &[("end-user", "jason")],
        )
        .await?;
        assert_eq!(r.status, 200);
        let v: Value = r.json()?;
        assert_eq!(v["service"], "echo");
        assert_eq!(v["version"], "v1");
        assert_eq!(v["instance"], "echo-v1-0");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/hello");
        assert_eq!(v["query"], "x=1");
        assert_eq!(v["headers"]["end-user"], "jason");
        assert_eq!(v["headers"]["host"], "echo");
        assert_eq!(v["upstreams"], json!([]));

        let r = request(echo.addr, Protocol::Http2, "/h2", &[]).await?;
        assert_eq!(r.status, 200);
        let v: Value = r.json()?;
        assert_eq!(v["protocol"], "HTTP/2.0");
        assert_eq!(v["path"], "/h2");
        assert_eq!(v["headers"]["host"], "echo");
        echo.stop().await
    }

    #[tokio::test]
    async fn status_delay_and_size() -> anyhow::Result<()> {
        let echo = start(config("v1")).await?;
        let r = request(echo.addr, Protocol::Http1, "/?status=503", &[]).await?;
        assert_eq!(r.status, 503);
        assert_eq!(r.json::<Value>()?["version"], "v1");

        let started = Instant::now();
        let r = request(echo.addr, Protocol::Http1, "/?delay_ms=200", &[]).await?;
        assert_eq!(r.status, 200);
        assert!(started.elapsed() >= Duration::from_millis(200));

        let small = request(echo.addr, Protocol::Http1, "/", &[]).await?;
        let big = request(echo.addr, Protocol::Http2, "/?size=100000", &[]).await?;
        assert!(
            big.body.len() >= 100_000 + small.body.len() - 20,
            "{}",
            big.body.len()
        );
        echo.stop().await
    }

    #[tokio::test]
    async fn bad_query_values_get_400() -> anyhow::Result<()> {
        let echo = start(config("v1")).await?;
        for (q, needle) in [
            ("status=abc", "status=\"abc\""),
            ("status=99", "200 to 599"),
            ("delay_ms=-1", "delay_ms"),
            ("delay_ms=600000", "60000"),
            ("size=99999999999", "size"),
        ] {
            let r = request(echo.addr, Protocol::Http1, &format!("/?{q}"), &[]).await?;
            assert_eq!(r.status, 400, "{q}");
            let v: Value = r.json()?;
            let msg = v["error"].as_str().unwrap_or_default();
            assert!(msg.contains(needle), "{q}: {msg}");
        }
        echo.stop().await
    }

    /// A fake sidecar outbound listener: records the request line it saw and answers from a
    /// real echo app (reviews v2) reached directly.
    #[tokio::test]
    async fn calls_go_through_the_http_proxy_with_forwarded_headers() -> anyhow::Result<()> {
        let upstream = start(config("v2")).await?;
        let upstream_addr = upstream.addr;
        let proxy_listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy_addr = proxy_listener.local_addr()?;
        let (seen_tx, mut seen_rx) =
            tokio::sync::mpsc::unbounded_channel::<(String, Option<String>)>();
        let proxy = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = proxy_listener.accept().await else {
                    return;
                };
                let seen_tx = seen_tx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let seen_tx = seen_tx.clone();
                        async move {
                            let uri = req.uri().to_string();
                            let user = req
                                .headers()
                                .get("end-user")
                                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                            let _ = seen_tx.send((uri.clone(), user));
                            let resp = if uri.contains("broken") {
                                let mut r = Response::new(Full::new(Bytes::from_static(
                                    b"no healthy upstream",
                                )));
                                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                                r
                            } else {
                                let path = req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default();
                                let url = format!("http://{upstream_addr}{path}");
                                let v = call_upstream(&url, None, &[]).await;
                                json_response(StatusCode::OK, &v)
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });

        let mut cfg = config("v1");
        cfg.service = "productpage".into();
        cfg.calls = vec![
            "http://reviews.default.svc.cluster.local:9080/reviews".into(),
            "http://broken:9080/".into(),
        ];
        cfg.http_proxy = Some(proxy_addr);
        let echo = start(cfg).await?;
        let r = request(
            echo.addr,
            Protocol::Http1,
            "/productpage",
            &[("end-user", "jason"), ("x-request-id", "abc")],
        )
        .await?;
        assert_eq!(r.status, 200);
        let v: Value = r.json()?;
        let ups = v["upstreams"].as_array().cloned().unwrap_or_default();
        assert_eq!(ups.len(), 2, "{v}");
        assert_eq!(ups[0]["version"], "v2");
        assert_eq!(ups[0]["path"], "/reviews");
        assert_eq!(ups[1]["status"], 503);
        assert!(
            ups[1]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("no healthy upstream"),
            "{v}"
        );

        let mut seen = Vec::new();
        while let Ok(s) = seen_rx.try_recv() {
            seen.push(s);
        }
        assert!(
            seen.contains(&(
                "http://reviews.default.svc.cluster.local:9080/reviews".to_string(),
                Some("jason".to_string())
            )),
            "{seen:?}"
        );
        proxy.abort();
        echo.stop().await?;
        upstream.stop().await
    }

    #[test]
    fn proxy_setting_parses() -> anyhow::Result<()> {
        assert_eq!(
            parse_proxy("http://127.0.10.2:15001")?,
            "127.0.10.2:15001".parse()?
        );
        assert_eq!(
            parse_proxy("127.0.10.2:15001/")?,
            "127.0.10.2:15001".parse()?
        );
        assert!(parse_proxy("http://proxy.local:3128").is_err());
        Ok(())
    }
}
