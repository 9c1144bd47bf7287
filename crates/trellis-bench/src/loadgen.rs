//! The load generator: an open-loop, fixed-rate mode for latency (each request has an intended
//! send time on a fixed schedule and its latency is measured from that time, so a stalled
//! connection cannot hide the requests queued behind it: no coordinated omission), and a
//! closed-loop mode for maximum throughput.
//!
//! Requests go over N keep-alive connections, HTTP/1.1 (one request at a time per connection)
//! or HTTP/2 with prior knowledge (multiplexed); gRPC is unary calls of the testkit's echo
//! service (`trellis.echo.Echo/Unary`) over HTTP/2, a call succeeding on `grpc-status: 0`. The schedule is paced by a dedicated OS thread
//! (`nanosleep`, tens of microseconds of slack) rather than the async runtime's millisecond
//! timer; request `i` is handed to connection `i mod N`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;
use trellis_testkit::http as testkit_http;

use crate::stats::new_histogram;

/// How long one request may take before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// After the schedule ends, how long queued requests may still be sent and answered.
pub const DRAIN: Duration = Duration::from_secs(5);
/// The most requests in flight on one HTTP/2 connection in the open-loop mode.
pub const MAX_H2_IN_FLIGHT: usize = 256;

/// HTTP/1.1, HTTP/2 (h2c with prior knowledge) or unary gRPC (over h2c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// HTTP/1.1 keep-alive.
    Http1,
    /// HTTP/2 over cleartext.
    Http2,
    /// Unary gRPC calls over HTTP/2 cleartext.
    Grpc,
}

impl Protocol {
    /// `http1` / `http2` / `grpc`, as in `sidecar.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
        }
    }

    /// Whether the connections speak HTTP/2 (multiplexed).
    pub fn is_h2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

impl std::str::FromStr for Protocol {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "http1" => Ok(Protocol::Http1),
            "http2" => Ok(Protocol::Http2),
            "grpc" => Ok(Protocol::Grpc),
            other => bail!("unknown protocol {other:?} (expected http1, http2 or grpc)"),
        }
    }
}

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The TCP address connected to (an app, or a sidecar's outbound listener).
    pub addr: SocketAddr,
    /// The authority (`host:port`) of the requests.
    pub authority: String,
    /// The path and query (gRPC: the method path).
    pub path: String,
    /// The protocol spoken on the connections.
    pub protocol: Protocol,
    /// Whether `addr` is an HTTP proxy (HTTP/1.1 requests then use the absolute form).
    pub via_proxy: bool,
    /// The request body (gRPC: one length-prefixed message; HTTP: empty, a GET).
    pub body: Bytes,
}

impl Target {
    /// A GET request for this target (gRPC: a POST of [`Target::body`]).
    pub fn request(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let absolute = self.via_proxy || self.protocol.is_h2();
        let uri = if absolute {
            format!("http://{}{}", self.authority, self.path)
        } else {
            self.path.clone()
        };
        let mut b = Request::builder().uri(uri);
        match self.protocol {
            Protocol::Http1 => {
                b = b
                    .method("GET")
                    .header(http::header::HOST, self.authority.as_str())
            }
            Protocol::Http2 => b = b.method("GET"),
            Protocol::Grpc => {
                b = b
                    .method("POST")
                    .header(http::header::CONTENT_TYPE, "application/grpc")
                    .header(http::header::TE, "trailers")
            }
        }
        b.body(Full::new(self.body.clone()))
            .with_context(|| format!("building a request for {}{}", self.authority, self.path))
    }
}

/// A gRPC unary request for the testkit echo service whose frame is about `bytes` long: the
/// 5-byte gRPC prefix (uncompressed, length) and an `EchoRequest` whose `message` pads it.
pub fn grpc_echo_frame(bytes: usize) -> Bytes {
    use prost::Message as _;
    let overhead = 5 + 3; // prefix + tag and a two-byte length of `message`
    let msg = trellis_testkit::grpc::proto::EchoRequest {
        message: "x".repeat(bytes.saturating_sub(overhead)),
        count: 0,
    };
    let encoded = msg.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + encoded.len());
    frame.push(0);
    frame.extend_from_slice(
        &u32::try_from(encoded.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(&encoded);
    Bytes::from(frame)
}

/// The `grpc-status` of an answer: from the trailers, or from the headers of a trailers-only
/// answer.
fn grpc_status(headers: &http::HeaderMap, trailers: Option<&http::HeaderMap>) -> Option<String> {
    trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// One client connection.
#[derive(Clone)]
pub enum Conn {
    /// HTTP/1.1 (one request at a time; not shared).
    H1(Arc<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>),
    /// HTTP/2 (multiplexed; clones share the connection).
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::H1(_) => "Conn::H1",
            Conn::H2(_) => "Conn::H2",
        })
    }
}

/// A completed exchange.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The body length in bytes.
    pub body_len: usize,
    /// The body (kept for probes; cheap to hold, it is reference counted).
    pub body: Bytes,
    /// The `grpc-status` (trailers, or headers of a trailers-only answer), if any.
    pub grpc_status: Option<String>,
}

impl Answer {
    /// Whether the exchange succeeded: a 2xx status, and for gRPC `grpc-status: 0`.
    pub fn is_ok(&self, protocol: Protocol) -> bool {
        self.status.is_success()
            && (protocol != Protocol::Grpc || self.grpc_status.as_deref() == Some("0"))
    }

    /// Why [`Answer::is_ok`] is false, for the report.
    pub fn failure(&self) -> String {
        match &self.grpc_status {
            Some(g) if self.status.is_success() => format!("grpc-status {g}"),
            _ => format!("status {}", self.status),
        }
    }
}

impl Conn {
    /// Connects to `addr` and performs the handshake (trellis-testkit's connection, with the
    /// HTTP/1.1 sender behind a lock so the connection can be shared).
    pub async fn connect(addr: SocketAddr, protocol: Protocol) -> anyhow::Result<Conn> {
        let protocol = match protocol {
            Protocol::Http1 => testkit_http::Protocol::Http1,
            Protocol::Http2 | Protocol::Grpc => testkit_http::Protocol::Http2,
        };
        Ok(
            match testkit_http::Connection::connect(addr, protocol).await? {
                testkit_http::Connection::Http1(send) => {
                    Conn::H1(Arc::new(tokio::sync::Mutex::new(send)))
                }
                testkit_http::Connection::Http2(send) => Conn::H2(send),
            },
        )
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        match self {
            Conn::H1(s) => s.try_lock().map(|s| s.is_closed()).unwrap_or(false),
            Conn::H2(s) => s.is_closed(),
        }
    }

    /// Sends a request and reads the whole answer, within [`REQUEST_TIMEOUT`].
    pub async fn send(&self, request: Request<Full<Bytes>>) -> anyhow::Result<Answer> {
        let exchange = async {
            let response = match self {
                Conn::H1(s) => {
                    let mut s = s.lock().await;
                    s.ready().await.context("connection closed")?;
                    s.send_request(request).await?
                }
                Conn::H2(s) => {
                    let mut s = s.clone();
                    s.ready().await.context("connection closed")?;
                    s.send_request(request).await?
                }
            };
            let (parts, body) = response.into_parts();
            let collected = body.collect().await.context("reading the body")?;
            let grpc_status = grpc_status(&parts.headers, collected.trailers());
            let body = collected.to_bytes();
            anyhow::Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body_len: body.len(),
                body,
                grpc_status,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow!("no answer within {REQUEST_TIMEOUT:?}"))?
    }
}

/// Sends one request on a fresh connection (for probes).
pub async fn fetch(target: &Target) -> anyhow::Result<Answer> {
    let conn = Conn::connect(target.addr, target.protocol).await?;
    conn.send(target.request()?).await
}

/// An open-loop run.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    /// Requests per second, on a fixed schedule.
    pub rate: f64,
    /// Keep-alive connections.
    pub connections: usize,
    /// The first part of the schedule, sent but not recorded.
    pub warmup: Duration,
    /// The recorded part of the schedule.
    pub duration: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Latencies (µs, from intended send time) of successful requests in the recorded part.
    pub histogram: Histogram<u64>,
    /// Successful requests in the recorded part.
    pub ok_measured: u64,
    /// Successful requests in total (warm-up included).
    pub ok_total: u64,
    /// Failed requests (transport errors, timeouts, non-2xx).
    pub errors: u64,
    /// Scheduled requests never sent because the run's hard stop came first.
    pub not_sent: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// The body length of the last successful answer.
    pub body_len: usize,
}

impl LoadResult {
    fn empty() -> Self {
        LoadResult {
            histogram: new_histogram(),
            ok_measured: 0,
            ok_total: 0,
            errors: 0,
            not_sent: 0,
            first_error: None,
            body_len: 0,
        }
    }

    fn merge(&mut self, other: LoadResult) {
        let _ = self.histogram.add(&other.histogram);
        self.ok_measured += other.ok_measured;
        self.ok_total += other.ok_total;
        self.errors += other.errors;
        self.not_sent += other.not_sent;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if other.body_len > 0 {
            self.body_len = other.body_len;
        }
    }

    fn fail(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Runs the open-loop schedule against `target`: `rate × (warmup + duration)` requests, request
/// `i` intended at `start + i / rate`. Returns when every scheduled request has been answered,
/// failed, or given up at the hard stop (`DRAIN` after the schedule ends).
pub async fn open_loop(target: &Target, cfg: OpenLoop) -> anyhow::Result<LoadResult> {
    if cfg.rate.is_nan() || cfg.rate <= 0.0 || cfg.connections == 0 {
        bail!("open loop needs a positive rate and at least one connection");
    }
    let mut conns = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        conns.push(Conn::connect(target.addr, target.protocol).await?);
    }
    let total = ((cfg.warmup + cfg.duration).as_secs_f64() * cfg.rate).round() as u64;
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + cfg.warmup;
    let hard_stop = start + cfg.warmup + cfg.duration + DRAIN;
    let mut senders = Vec::with_capacity(cfg.connections);
    let mut tasks = Vec::with_capacity(cfg.connections);
    for conn in conns {
        let (tx, rx) = mpsc::unbounded_channel::<Instant>();
        senders.push(tx);
        let target = target.clone();
        tasks.push(tokio::spawn(connection_task(
            conn,
            rx,
            target,
            measure_from,
            hard_stop,
        )));
    }
    let rate = cfg.rate;
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            let n = senders.len();
            for i in 0..total {
                let intended = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                let _ = senders[(i as usize) % n].send(intended);
            }
        })
        .context("starting the pacing thread")?;
    let mut result = LoadResult::empty();
    for t in tasks {
        match t.await {
            Ok(r) => result.merge(r),
            Err(e) => result.fail(format!("connection task failed: {e}")),
        }
    }
    tokio::task::spawn_blocking(move || pacer.join())
        .await
        .map_err(|e| anyhow!("joining the pacing thread: {e}"))?
        .map_err(|_| anyhow!("the pacing thread panicked"))?;
    Ok(result)
}

async fn connection_task(
    conn: Conn,
    mut rx: mpsc::UnboundedReceiver<Instant>,
    target: Target,
    measure_from: Instant,
    hard_stop: Instant,
) -> LoadResult {
    let mut r = LoadResult::empty();
    let mut conn = Some(conn);
    let mut in_flight = FuturesUnordered::new();
    let max_in_flight = match target.protocol {
        Protocol::Http1 => 1,
        Protocol::Http2 | Protocol::Grpc => MAX_H2_IN_FLIGHT,
    };
    let mut open = true;
    loop {
        tokio::select! {
            ticket = rx.recv(), if open && in_flight.len() < max_in_flight => {
                let Some(intended) = ticket else {
                    open = false;
                    continue;
                };
                if Instant::now() >= hard_stop {
                    r.not_sent += 1;
                    continue;
                }
                let c = match conn.take().filter(|c| !c.is_closed()) {
                    Some(c) => c,
                    None => match Conn::connect(target.addr, target.protocol).await {
                        Ok(c) => c,
                        Err(e) => {
                            r.fail(format!("{e:#}"));
                            continue;
                        }
                    },
                };
                conn = Some(c.clone());
                let request = target.request();
                in_flight.push(async move {
                    let answer = match request {
                        Ok(req) => c.send(req).await,
                        Err(e) => Err(e),
                    };
                    (intended, answer, Instant::now())
                });
            }
            Some((intended, answer, done)) = in_flight.next(), if !in_flight.is_empty() => {
                match answer {
                    Ok(a) if a.is_ok(target.protocol) => {
                        r.ok_total += 1;
                        r.body_len = a.body_len;
                        if intended >= measure_from {
                            r.ok_measured += 1;
                            r.histogram.saturating_record(micros(done - intended));
                        }
                    }
                    Ok(a) => r.fail(a.failure()),
                    Err(e) => {
                        r.fail(format!("{e:#}"));
                        conn = None;
                    }
                }
            }
            else => break,
        }
    }
    r
}

/// What a closed-loop run measured.
#[derive(Debug, Clone)]
pub struct ClosedResult {
    /// Successful requests per second in the recorded part.
    pub rps: f64,
    /// Successful requests in the recorded part.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
}

/// Closed loop: `concurrency` workers each send the next request as soon as the previous one is
/// answered (HTTP/1.1: one connection per worker; HTTP/2: `streams_per_connection` workers
/// share a connection), for `warmup + duration`; counts answers completed in the recorded part.
pub async fn closed_loop(
    target: &Target,
    concurrency: usize,
    streams_per_connection: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<ClosedResult> {
    let per_conn = match target.protocol {
        Protocol::Http1 => 1,
        Protocol::Http2 | Protocol::Grpc => streams_per_connection.max(1),
    };
    let n_conns = concurrency.max(1).div_ceil(per_conn);
    let mut workers = Vec::new();
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    for _ in 0..n_conns {
        let conn = Conn::connect(target.addr, target.protocol).await?;
        for _ in 0..per_conn {
            let conn = conn.clone();
            let target = target.clone();
            workers.push(tokio::spawn(async move {
                let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None::<String>);
                let mut conn = Some(conn);
                while Instant::now() < end {
                    let c = match conn.take().filter(|c| !c.is_closed()) {
                        Some(c) => c,
                        None => match Conn::connect(target.addr, target.protocol).await {
                            Ok(c) => c,
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert(format!("{e:#}"));
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    let answer = match target.request() {
                        Ok(req) => c.send(req).await,
                        Err(e) => Err(e),
                    };
                    conn = Some(c);
                    let done = Instant::now();
                    match answer {
                        Ok(a) if a.is_ok(target.protocol) => {
                            if done >= measure_from && done <= end {
                                ok += 1;
                            }
                        }
                        Ok(a) => {
                            errors += 1;
                            first_error.get_or_insert(a.failure());
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(format!("{e:#}"));
                            conn = None;
                        }
                    }
                }
                (ok, errors, first_error)
            }));
        }
    }
    let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None::<String>);
    for w in workers {
        match w.await {
            Ok((o, e, f)) => {
                ok += o;
                errors += e;
                if first_error.is_none() {
                    first_error = f;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("worker failed: {e}"));
            }
        }
    }
    Ok(ClosedResult {
        rps: ok as f64 / duration.as_secs_f64().max(1e-9),
        ok,
        errors,
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    use hyper_util::rt::{TokioExecutor, TokioIo};

    /// A local HTTP/1.1 + HTTP/2 server answering 1 KiB after `delay`.
    async fn server(delay: Duration) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(vec![
                            b'x';
                            1024
                        ]))))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(addr)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_counts_every_scheduled_request() -> anyhow::Result<()> {
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let addr = server(Duration::ZERO).await?;
            let target = Target {
                addr,
                authority: "bench:8080".into(),
                path: "/".into(),
                protocol,
                via_proxy: false,
                body: Bytes::new(),
            };
            let r = open_loop(
                &target,
                OpenLoop {
                    rate: 500.0,
                    connections: 4,
                    warmup: Duration::from_millis(100),
                    duration: Duration::from_millis(400),
                },
            )
            .await?;
            assert_eq!(r.errors, 0, "{:?}", r.first_error);
            assert_eq!(r.ok_total + r.not_sent, 250);
            assert_eq!(r.ok_measured, r.histogram.len());
            assert!((195..=205).contains(&r.ok_measured), "{}", r.ok_measured);
            assert_eq!(r.body_len, 1024);
        }
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_charges_queueing_to_latency() -> anyhow::Result<()> {
        // One connection, 20 ms service time, 100 req/s offered: the server can do 50/s, so
        // requests queue and latency from the intended time grows far beyond 20 ms.
        let addr = server(Duration::from_millis(20)).await?;
        let target = Target {
            addr,
            authority: "bench:8080".into(),
            path: "/".into(),
            protocol: Protocol::Http1,
            via_proxy: false,
            body: Bytes::new(),
        };
        let r = open_loop(
            &target,
            OpenLoop {
                rate: 100.0,
                connections: 1,
                warmup: Duration::ZERO,
                duration: Duration::from_millis(500),
            },
        )
        .await?;
        let max_ms = r.histogram.max() as f64 / 1000.0;
        assert!(max_ms > 100.0, "max {max_ms} ms: queueing was hidden");
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_measures_throughput() -> anyhow::Result<()> {
        let addr = server(Duration::ZERO).await?;
        let target = Target {
            addr,
            authority: "bench:8080".into(),
            path: "/".into(),
            protocol: Protocol::Http2,
            via_proxy: false,
            body: Bytes::new(),
        };
        let r = closed_loop(
            &target,
            4,
            4,
            Duration::from_millis(50),
            Duration::from_millis(300),
        )
        .await?;
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert!(r.rps > 100.0, "{}", r.rps);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_calls_the_testkit_echo_service() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let config = trellis_testkit::echo::EchoConfig {
            service: "bench-grpc".into(),
            version: "v1".into(),
            instance: "bench-grpc-v1-0".into(),
            calls: vec![],
            http_proxy: None,
        };
        let server = tokio::spawn(trellis_testkit::echo::serve(
            listener,
            config,
            std::future::pending(),
        ));
        let frame = grpc_echo_frame(1024);
        assert_eq!(frame.len(), 1024);
        let mut target = Target {
            addr,
            authority: "bench-grpc:8082".into(),
            path: trellis_testkit::grpc::Method::Unary.path().into(),
            protocol: Protocol::Grpc,
            via_proxy: false,
            body: frame,
        };
        let a = fetch(&target).await?;
        assert!(a.is_ok(Protocol::Grpc), "{}", a.failure());
        assert!(
            a.body_len > 1024,
            "the reply echoes the message: {}",
            a.body_len
        );
        let r = closed_loop(
            &target,
            4,
            4,
            Duration::from_millis(50),
            Duration::from_millis(200),
        )
        .await?;
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert!(r.ok > 0);
        // An unknown method ends with a non-zero grpc-status, which counts as a failure.
        target.path = "/trellis.echo.Echo/Nope".into();
        let a = fetch(&target).await?;
        assert!(!a.is_ok(Protocol::Grpc), "{:?}", a.grpc_status);
        server.abort();
        Ok(())
    }

    #[test]
    fn requests_use_the_right_form() -> anyhow::Result<()> {
        let mut t = Target {
            addr: "127.0.0.1:1".parse()?,
            authority: "bench.default.svc.cluster.local:8080".into(),
            path: "/x?size=1".into(),
            protocol: Protocol::Http1,
            via_proxy: true,
            body: Bytes::new(),
        };
        assert_eq!(
            t.request()?.uri().to_string(),
            "http://bench.default.svc.cluster.local:8080/x?size=1"
        );
        t.via_proxy = false;
        let r = t.request()?;
        assert_eq!(r.uri().to_string(), "/x?size=1");
        assert_eq!(
            r.headers().get("host").and_then(|h| h.to_str().ok()),
            Some("bench.default.svc.cluster.local:8080")
        );
        assert_eq!("grpc".parse::<Protocol>()?, Protocol::Grpc);
        assert!("h3".parse::<Protocol>().is_err());
        Ok(())
    }
}
