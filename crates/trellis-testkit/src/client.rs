//! A load client for the mesh: sends requests to a proxy's outbound listener (as an application
//! with `HTTP_PROXY` would: absolute form over HTTP/1.1, or h2c with `:authority`), with bounded
//! concurrency, and summarises what the echo apps answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde::Serialize;

use crate::grpc::client::{CallResult, GrpcCall};
use crate::http::{Connection, Protocol};

/// The header the Trellis proxy sets on responses it generates itself (e.g. `no_route`).
pub const REASON_HEADER: &str = "x-trellis-reason";

/// What to send, where, and how much.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    /// The address to connect to (a proxy's outbound listener, e.g. `127.0.10.2:15001`).
    pub target: SocketAddr,
    /// The authority (`host[:port]`) of the requests, e.g. `reviews:9080`.
    pub authority: String,
    /// Path and query, e.g. `/api/v2?x=1`.
    pub path: String,
    /// The method (`GET` by default).
    pub method: http::Method,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The request body (empty by default).
    pub body: Bytes,
    /// HTTP/1.1 or h2c.
    pub protocol: Protocol,
    /// How many requests to send (ignored by [`Traffic`], which runs until stopped).
    pub count: usize,
    /// How many requests may be in flight at once (one connection per concurrent worker).
    pub concurrency: usize,
    /// How long one request may take.
    pub timeout: Duration,
    /// Make gRPC calls to the echo service instead (h2c, `headers` as metadata).
    pub grpc: Option<GrpcCall>,
    /// Open WebSocket sessions instead, exchanging this many messages each.
    pub websocket: Option<usize>,
    /// Open raw TCP sessions instead, to this port on `target`'s IP, sending this payload.
    pub tcp: Option<(u16, String)>,
    /// Speak TLS to `target` (a gateway's HTTPS server): `https` requests.
    pub tls: Option<crate::http::ClientTls>,
    /// Send HTTP/1.1 requests in origin form (`GET /path` + `Host`), as a client talking to
    /// the server itself rather than to a proxy.
    pub origin_form: bool,
    /// Write HTTP/1.1 requests byte for byte (header names in the case given, one connection
    /// per request) and keep the response's header names as received: for header-case checks.
    pub raw_header_case: bool,
}

impl RequestPlan {
    /// A plan for `count` GET requests to `authority` + `path` over HTTP/1.1, one at a time.
    pub fn new(
        target: SocketAddr,
        authority: impl Into<String>,
        path: impl Into<String>,
        count: usize,
    ) -> Self {
        RequestPlan {
            target,
            authority: authority.into(),
            path: path.into(),
            method: http::Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
            protocol: Protocol::Http1,
            count,
            concurrency: 1,
            timeout: Duration::from_secs(10),
            grpc: None,
            websocket: None,
            tcp: None,
            tls: None,
            origin_form: false,
            raw_header_case: false,
        }
    }

    fn build(&self) -> Result<Request<Full<Bytes>>, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let uri = if self.origin_form && self.protocol == Protocol::Http1 {
            self.path.clone()
        } else {
            format!("{scheme}://{}{}", self.authority, self.path)
        };
        let mut b = Request::builder().method(self.method.clone()).uri(uri);
        if self.protocol == Protocol::Http1 {
            b = b.header(http::header::HOST, self.authority.as_str());
        }
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(Full::new(self.body.clone()))
            .map_err(|e| format!("invalid request: {e}"))
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// The response status, if a response came back.
    pub status: Option<u16>,
    /// The echo app's `version` field, if the body was an echo answer.
    pub version: Option<String>,
    /// The echo app's `protocol` field (the protocol the app was reached with).
    pub protocol: Option<String>,
    /// The `x-trellis-reason` header of a non-2xx response.
    pub reason: Option<String>,
    /// The echo app's `instance` field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The response headers (lowercase names; repeated headers joined with `,`).
    #[serde(skip)]
    pub headers: BTreeMap<String, String>,
    /// The request headers the echo app saw (its `headers` field).
    #[serde(skip)]
    pub echo_headers: BTreeMap<String, String>,
    /// The path the echo app saw.
    #[serde(skip)]
    pub echo_path: Option<String>,
    /// The request header names the echo app received, in their case (HTTP/1.x only).
    #[serde(skip)]
    pub echo_header_names: Vec<String>,
    /// The response header names as received (only with [`RequestPlan::raw_header_case`]).
    #[serde(skip)]
    pub header_names: Vec<String>,
    /// The body (its first 4 KiB, lossy UTF-8).
    #[serde(skip)]
    pub body: String,
    /// The response flag, data-plane neutral: the first word of `x-trellis-reason`
    /// (Trellis), or `UO` for Envoy's `x-envoy-overloaded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// A transport error (connect, reset, timeout) when no response came back.
    pub error: Option<String>,
    /// gRPC calls: the final `grpc-status` (then `status` is 200 for OK and absent otherwise,
    /// and `error` names the code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<i32>,
    /// gRPC calls: how many reply messages came back.
    #[serde(skip)]
    pub messages: usize,
    /// When the request was started, since the client's epoch.
    pub sent_at: Duration,
    /// When it finished, since the client's epoch.
    pub done_at: Duration,
}

impl Outcome {
    /// Takes who answered and what it saw from the echo app's JSON (an HTTP body, a WebSocket
    /// hello or a TCP banner): `version`, `protocol`, `instance`, `path` and `headers`.
    pub(crate) fn set_echo_reply(&mut self, v: &serde_json::Value) {
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        self.version = text("version");
        self.protocol = text("protocol");
        self.instance = text("instance");
        self.echo_path = text("path");
        if let Some(names) = v.get("header_names").and_then(|h| h.as_array()) {
            self.echo_header_names = names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
        }
        if let Some(h) = v.get("headers").and_then(|h| h.as_object()) {
            self.echo_headers = h
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect();
        }
    }

    /// Whether a 2xx response (or a `101` WebSocket upgrade) came back.
    pub fn is_success(&self) -> bool {
        matches!(self.status, Some(s) if (200..300).contains(&s) || s == 101)
    }
}

/// Counts over a set of outcomes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// How many requests were sent.
    pub total: usize,
    /// Responses per status code.
    pub by_status: BTreeMap<u16, usize>,
    /// Echo answers per version (`-` for a response without a version).
    pub by_version: BTreeMap<String, usize>,
    /// Echo answers per protocol seen by the app.
    pub by_protocol: BTreeMap<String, usize>,
    /// `x-trellis-reason` values of failed responses.
    pub reasons: BTreeMap<String, usize>,
    /// Requests that got no response at all.
    pub transport_errors: usize,
    /// Up to five distinct transport error messages.
    pub error_samples: Vec<String>,
}

/// The version key used for responses without an echo `version`.
pub const NO_VERSION: &str = "-";

impl Summary {
    /// Summarises outcomes.
    pub fn from_outcomes(outcomes: &[Outcome]) -> Self {
        let mut s = Summary {
            total: outcomes.len(),
            ..Default::default()
        };
        for o in outcomes {
            if let Some(status) = o.status {
                *s.by_status.entry(status).or_default() += 1;
                let v = o.version.clone().unwrap_or_else(|| NO_VERSION.to_string());
                *s.by_version.entry(v).or_default() += 1;
                if let Some(p) = &o.protocol {
                    *s.by_protocol.entry(p.clone()).or_default() += 1;
                }
                if let Some(r) = &o.reason {
                    *s.reasons.entry(r.clone()).or_default() += 1;
                }
            }
            if let Some(e) = &o.error {
                s.transport_errors += 1;
                if s.error_samples.len() < 5 && !s.error_samples.contains(e) {
                    s.error_samples.push(e.clone());
                }
            }
        }
        s
    }

    /// Requests that did not get a 2xx response.
    pub fn failures(&self) -> usize {
        let ok: usize = self
            .by_status
            .iter()
            .filter(|(s, _)| (200..300).contains(*s) || **s == 101)
            .map(|(_, n)| n)
            .sum();
        self.total - ok
    }

    /// The share of all requests answered by `version`, in percent.
    pub fn percent(&self, version: &str) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let n = self.by_version.get(version).copied().unwrap_or(0);
        100.0 * n as f64 / self.total as f64
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests; status", self.total)?;
        for (s, n) in &self.by_status {
            write!(f, " {s}×{n}")?;
        }
        if self.transport_errors > 0 {
            write!(f, " error×{}", self.transport_errors)?;
        }
        f.write_str("; version")?;
        for (v, n) in &self.by_version {
            write!(f, " {v}×{n}")?;
        }
        if !self.by_protocol.is_empty() {
            f.write_str("; protocol")?;
            for (p, n) in &self.by_protocol {
                write!(f, " {p}×{n}")?;
            }
        }
        if !self.reasons.is_empty() {
            f.write_str("; x-trellis-reason")?;
            for (r, n) in &self.reasons {
                write!(f, " {r}×{n}")?;
            }
        }
        if !self.error_samples.is_empty() {
            write!(f, "; errors: {}", self.error_samples.join(" | "))?;
        }
        Ok(())
    }
}

/// One worker's connection, reopened after a failure.
struct Worker {
    plan: Arc<RequestPlan>,
    conn: Option<Connection>,
    grpc: Option<tonic::transport::Channel>,
    epoch: Instant,
}

impl Worker {
    fn new(plan: Arc<RequestPlan>, epoch: Instant) -> Self {
        Worker {
            plan,
            conn: None,
            grpc: None,
            epoch,
        }
    }

    async fn one(&mut self) -> Outcome {
        if let Some(call) = self.plan.grpc {
            return self.one_grpc(call).await;
        }
        if let Some(messages) = self.plan.websocket {
            return self.one_websocket(messages).await;
        }
        if let Some((port, payload)) = self.plan.tcp.clone() {
            return self.one_tcp(port, &payload).await;
        }
        let sent = Instant::now();
        let result = tokio::time::timeout(self.plan.timeout, self.exchange()).await;
        let mut outcome = Outcome {
            sent_at: sent - self.epoch,
            ..Default::default()
        };
        match result {
            Ok(Ok((response, header_names))) => {
                let status = response.status.as_u16();
                outcome.status = Some(status);
                outcome.header_names = header_names;
                for (name, value) in &response.headers {
                    let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    outcome
                        .headers
                        .entry(name.as_str().to_string())
                        .and_modify(|e| {
                            e.push(',');
                            e.push_str(&v);
                        })
                        .or_insert(v);
                }
                let body = &response.body[..response.body.len().min(4096)];
                outcome.body = String::from_utf8_lossy(body).into_owned();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&response.body) {
                    outcome.set_echo_reply(&v);
                }
                outcome.flag = response
                    .headers
                    .get(REASON_HEADER)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_string)
                    .or_else(|| {
                        response
                            .headers
                            .contains_key("x-envoy-overloaded")
                            .then(|| "UO".to_string())
                    });
                if !(200..300).contains(&status) {
                    outcome.reason = response
                        .headers
                        .get(REASON_HEADER)
                        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
                }
            }
            Ok(Err(e)) => {
                self.conn = None;
                outcome.error = Some(e);
            }
            Err(_) => {
                self.conn = None;
                outcome.error = Some(format!("no response within {:?}", self.plan.timeout));
            }
        }
        outcome.done_at = Instant::now() - self.epoch;
        outcome
    }

    async fn one_grpc(&mut self, call: GrpcCall) -> Outcome {
        let sent = Instant::now();
        let mut outcome = Outcome {
            sent_at: sent - self.epoch,
            ..Default::default()
        };
        if self.grpc.is_none() {
            match crate::grpc::client::channel(
                self.plan.target,
                &self.plan.authority,
                self.plan.timeout,
            ) {
                Ok(c) => self.grpc = Some(c),
                Err(e) => {
                    outcome.error = Some(format!("{e:#}"));
                    outcome.done_at = Instant::now() - self.epoch;
                    return outcome;
                }
            }
        }
        let channel = self.grpc.clone();
        let result = match channel {
            Some(channel) => tokio::time::timeout(
                self.plan.timeout,
                crate::grpc::client::call(channel, call, &self.plan.headers),
            )
            .await
            .ok(),
            None => None,
        };
        match result {
            Some(result) => grpc_outcome(&mut outcome, result),
            None => {
                self.grpc = None;
                outcome.error = Some(format!("no response within {:?}", self.plan.timeout));
            }
        }
        outcome.done_at = Instant::now() - self.epoch;
        outcome
    }

    /// A TCP session that came back echoed counts as status 200; the banner says who answered.
    async fn one_tcp(&mut self, port: u16, payload: &str) -> Outcome {
        let sent = Instant::now();
        let mut outcome = Outcome {
            sent_at: sent - self.epoch,
            ..Default::default()
        };
        let target = SocketAddr::new(self.plan.target.ip(), port);
        match crate::tcp::session(target, payload, self.plan.timeout).await {
            Ok(s) => {
                outcome.status = Some(200);
                outcome.messages = usize::from(s.echoed);
                outcome.body = s.received;
                if let Some(v) = s.banner {
                    outcome.set_echo_reply(&v);
                }
            }
            Err(e) => outcome.error = Some(e),
        }
        outcome.done_at = Instant::now() - self.epoch;
        outcome
    }

    async fn one_websocket(&mut self, messages: usize) -> Outcome {
        let sent = Instant::now();
        let mut outcome = Outcome {
            sent_at: sent - self.epoch,
            ..Default::default()
        };
        let session = tokio::time::timeout(
            self.plan.timeout,
            crate::websocket::session(
                self.plan.target,
                &self.plan.authority,
                &self.plan.path,
                &self.plan.headers,
                messages,
            ),
        )
        .await;
        match session {
            Ok(Ok(s)) => {
                outcome.status = Some(s.status);
                outcome.messages = s.echoed;
                outcome.headers = s.headers.into_iter().collect();
                outcome.body = s.body;
                outcome.flag = outcome
                    .headers
                    .get(REASON_HEADER)
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_string);
                if s.status != 101 {
                    outcome.reason = outcome.headers.get(REASON_HEADER).cloned();
                }
                if let Some(v) = s.hello {
                    outcome.set_echo_reply(&v);
                }
            }
            Ok(Err(e)) => outcome.error = Some(e),
            Err(_) => outcome.error = Some(format!("no session within {:?}", self.plan.timeout)),
        }
        outcome.done_at = Instant::now() - self.epoch;
        outcome
    }

    /// One request and its response, with the response's raw header names when the plan asks
    /// for them.
    async fn exchange(&mut self) -> Result<(crate::http::Response, Vec<String>), String> {
        if self.plan.raw_header_case {
            let raw = self.exchange_raw().await?;
            return Ok((raw.response, raw.header_names));
        }
        let request = self.plan.build()?;
        if !self.conn.as_ref().is_some_and(Connection::is_open) {
            self.conn = Some(
                Connection::connect_with(
                    self.plan.target,
                    self.plan.protocol,
                    self.plan.tls.as_ref(),
                )
                .await
                .map_err(|e| format!("{e:#}"))?,
            );
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".to_string());
        };
        conn.send(request)
            .await
            .map(|r| (r, Vec::new()))
            .map_err(|e| format!("{e:#}"))
    }
}

impl Worker {
    /// One request written byte for byte on its own connection (see
    /// [`RequestPlan::raw_header_case`]); `Host` comes first, as the plan's authority.
    async fn exchange_raw(&self) -> Result<crate::raw_http1::RawResponse, String> {
        let plan = &self.plan;
        if plan.protocol != Protocol::Http1 || plan.tls.is_some() {
            return Err("raw_header_case needs plaintext HTTP/1.1".to_string());
        }
        let target = if plan.origin_form {
            plan.path.clone()
        } else {
            format!("http://{}{}", plan.authority, plan.path)
        };
        let mut headers = vec![("Host".to_string(), plan.authority.clone())];
        headers.extend(plan.headers.iter().cloned());
        crate::raw_http1::exchange(
            plan.target,
            plan.method.as_str(),
            &target,
            &headers,
            &plan.body,
            plan.timeout,
        )
        .await
    }
}

/// Fills an outcome from a gRPC call: who answered (the first reply; every reply of one call
/// must come from the same instance), the status, and the flag of a proxy-generated failure.
fn grpc_outcome(outcome: &mut Outcome, result: CallResult) {
    outcome.grpc_status = Some(result.code);
    outcome.messages = result.replies.len();
    if let Some(first) = result.replies.first() {
        outcome.version = Some(first.version.clone());
        outcome.protocol = Some(first.protocol.clone());
        outcome.instance = Some(first.instance.clone());
        outcome.echo_headers = first.metadata.clone();
        if let Some(other) = result.replies.iter().find(|r| r.instance != first.instance) {
            outcome.error = Some(format!(
                "one call answered by two instances: {} and {}",
                first.instance, other.instance
            ));
            return;
        }
    }
    outcome.headers = result.metadata.iter().cloned().collect();
    outcome.flag = outcome
        .headers
        .get(REASON_HEADER)
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
        .or_else(|| {
            outcome
                .headers
                .contains_key("x-envoy-overloaded")
                .then(|| "UO".to_string())
        });
    if result.code == 0 {
        outcome.status = Some(200);
    } else {
        outcome.reason = outcome.headers.get(REASON_HEADER).cloned();
        let reason = outcome
            .reason
            .as_ref()
            .map(|r| format!(" ({REASON_HEADER}: {r})"))
            .unwrap_or_default();
        outcome.error = Some(format!(
            "grpc-status {}: {}{reason}",
            result.code, result.message
        ));
    }
}

/// Sends `plan.count` requests with at most `plan.concurrency` in flight and returns every
/// outcome, in completion order per worker.
pub async fn run_outcomes(plan: &RequestPlan) -> Vec<Outcome> {
    let plan = Arc::new(plan.clone());
    let epoch = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers = plan.concurrency.clamp(1, plan.count.max(1));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let plan = plan.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut worker = Worker::new(plan.clone(), epoch);
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < plan.count {
                out.push(worker.one().await);
            }
            out
        }));
    }
    let mut all = Vec::with_capacity(plan.count);
    for t in tasks {
        if let Ok(mut v) = t.await {
            all.append(&mut v);
        }
    }
    all
}

/// Sends `plan.count` requests and summarises them.
pub async fn run(plan: &RequestPlan) -> Summary {
    Summary::from_outcomes(&run_outcomes(plan).await)
}

/// Continuous background traffic: `plan.concurrency` workers sending requests back to back
/// until [`Traffic::stop`].
pub struct Traffic {
    epoch: Instant,
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("completed", &self.completed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Traffic {
    /// Starts the workers.
    pub fn start(plan: &RequestPlan) -> Self {
        let plan = Arc::new(plan.clone());
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicUsize::new(0));
        let tasks = (0..plan.concurrency.max(1))
            .map(|_| {
                let plan = plan.clone();
                let stop = stop.clone();
                let completed = completed.clone();
                tokio::spawn(async move {
                    let mut worker = Worker::new(plan, epoch);
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        out.push(worker.one().await);
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    out
                })
            })
            .collect();
        Traffic {
            epoch,
            stop,
            completed,
            tasks,
        }
    }

    /// The instant outcomes' `sent_at`/`done_at` are measured from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// How many requests have completed so far.
    pub fn completed(&self) -> usize {
        self.completed.load(Ordering::Relaxed)
    }

    /// Stops the workers (each finishes its request in flight) and returns all outcomes,
    /// sorted by `sent_at`.
    pub async fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in std::mem::take(&mut self.tasks) {
            if let Ok(mut v) = t.await {
                all.append(&mut v);
            }
        }
        all.sort_by_key(|o| o.sent_at);
        all
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::testing::{config, start};

    fn outcome(status: Option<u16>, version: Option<&str>) -> Outcome {
        Outcome {
            status,
            version: version.map(str::to_string),
            error: status.is_none().then(|| "reset".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn summary_counts() {
        let s = Summary::from_outcomes(&[
            outcome(Some(200), Some("v1")),
            outcome(Some(200), Some("v1")),
            outcome(Some(200), Some("v2")),
            outcome(Some(503), None),
            outcome(None, None),
        ]);
        assert_eq!(s.total, 5);
        assert_eq!(s.failures(), 2);
        assert_eq!(s.transport_errors, 1);
        assert!((s.percent("v1") - 40.0).abs() < 1e-9);
        assert_eq!(s.by_version.get(NO_VERSION), Some(&1));
        let text = s.to_string();
        assert!(text.contains("503×1") && text.contains("error×1"), "{text}");
    }

    #[tokio::test]
    async fn drives_an_echo_app_with_concurrency() -> anyhow::Result<()> {
        let echo = start(config("v1")).await?;
        let addr = echo.addr;
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let mut plan = RequestPlan::new(addr, "echo:9080", "/x", 50);
            plan.concurrency = 4;
            plan.protocol = protocol;
            let s = run(&plan).await;
            assert_eq!(s.total, 50);
            assert_eq!(s.by_version.get("v1"), Some(&50), "{s}");
            assert_eq!(s.failures(), 0, "{s}");
            let expected = if protocol == Protocol::Http1 {
                "HTTP/1.1"
            } else {
                "HTTP/2.0"
            };
            assert_eq!(s.by_protocol.get(expected), Some(&50), "{s}");
        }
        let mut plan = RequestPlan::new(addr, "echo", "/", 0);
        plan.concurrency = 2;
        let traffic = Traffic::start(&plan);
        let deadline = Instant::now() + Duration::from_secs(10);
        while traffic.completed() < 20 {
            assert!(
                Instant::now() < deadline,
                "background traffic made no progress"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let outcomes = traffic.stop().await;
        assert!(outcomes.len() >= 20);
        assert!(outcomes.iter().all(Outcome::is_success));
        echo.stop().await
    }
}
