//! The proxy's lifecycle end to end: readiness on the health port only after the first full
//! config, the drain on shutdown (unready, listeners closed, in-flight requests finish, idle
//! HTTP/1.1 connections close, busy ones end with `Connection: close`, HTTP/2 gets GOAWAY, the
//! drain period bounds it all), and a listener removed by LDS draining the same way.
//! Everything binds 127.0.0.1 port 0; waits poll with deadlines.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    Rds, http_connection_manager,
};
use envoy_types::pb::google::protobuf::Any;
use http_body_util::{BodyExt, Empty};
use tokio::sync::mpsc;
use trellis_proxy::lifecycle::LifecycleConfig;
use trellis_xds::{to_any, type_url};

mod common;

use common::*;

/// A proxy with a health port and the given drain period.
async fn start(drain_duration: Duration) -> Harness {
    Harness::start_lifecycle(
        node("echo-v1", "echo"),
        None,
        LifecycleConfig {
            health_address: Some("127.0.0.1:0".parse().expect("addr")),
            drain_duration,
            warm_listeners: false,
        },
    )
    .await
}

/// `GET /healthz/ready` on the health port: (status, body).
async fn health(h: &Harness) -> (u16, String) {
    let addr = h.health.expect("the harness serves a health port");
    let (status, _, body) = get(addr, "/healthz/ready")
        .await
        .expect("health port answers");
    (status, body)
}

async fn wait_health(h: &Harness, want: u16, body_starts: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = health(h).await;
        if status == want && body.starts_with(body_starts) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {status} {body:?}, wanted {want} {body_starts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream answering `/slow/MS` after MS milliseconds (reporting each such request on
/// `started` when it arrives) and anything else at once.
async fn slow_upstream(started: mpsc::UnboundedSender<String>) -> SocketAddr {
    serve_http(
        "upstream",
        move |req: http::Request<hyper::body::Incoming>| {
            let started = started.clone();
            async move {
                let path = req.uri().path().to_string();
                if let Some(ms) = path
                    .strip_prefix("/slow/")
                    .and_then(|ms| ms.parse::<u64>().ok())
                {
                    let _ = started.send(path.clone());
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                text_response(200, format!("served {path}"))
            }
        },
    )
    .await
}

/// CDS with a static cluster to `upstream`, LDS with the named inline-routed listeners; waits
/// for readiness and returns the listeners' addresses.
async fn configure(h: &mut Harness, upstream: SocketAddr, names: &[&str]) -> Vec<SocketAddr> {
    let nonce = h.push(
        type_url::CLUSTER,
        "1",
        vec![static_cluster("app", upstream)],
    );
    h.reply_to(type_url::CLUSTER, &nonce).await;
    push_listeners(h, "1", names).await;
    h.wait_ready().await;
    let mut out = Vec::new();
    for name in names {
        out.push(h.listener_port(name).await);
    }
    out
}

async fn push_listeners(h: &mut Harness, version: &str, names: &[&str]) {
    let listeners = names
        .iter()
        .map(|n| listener(n, inline(route_table(n, vec![route_to("/", "app")]))))
        .collect();
    let nonce = h.push(type_url::LISTENER, version, listeners);
    let ack = h.reply_to(type_url::LISTENER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
}

fn eds_cluster(name: &str) -> Any {
    to_any(
        type_url::CLUSTER,
        &Cluster {
            name: name.into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(cluster::EdsClusterConfig {
                eds_config: Some(ads_source()),
                service_name: name.into(),
            }),
            ..Default::default()
        },
    )
}

/// An HTTP/1.1 keep-alive connection; the handle ends when the server closes it.
async fn http1(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("http1 handshake");
    (
        sender,
        tokio::spawn(async move {
            let _ = conn.await;
        }),
    )
}

fn request(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri(format!("http://test{path}"))
        .header("host", "test")
        .body(Empty::new())
        .expect("request")
}

/// Sends `path` and returns (status, `connection` header, body).
async fn send<S>(sender: &mut S, path: &str) -> (u16, Option<String>, String)
where
    S: Sender,
{
    let response = sender.send(request(path)).await;
    let connection = response
        .headers()
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        connection,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// HTTP/1.1 and HTTP/2 client connections alike.
trait Sender {
    async fn send(
        &mut self,
        request: http::Request<Empty<Bytes>>,
    ) -> http::Response<hyper::body::Incoming>;
}

impl Sender for hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    async fn send(
        &mut self,
        request: http::Request<Empty<Bytes>>,
    ) -> http::Response<hyper::body::Incoming> {
        self.ready().await.expect("connection ready");
        self.send_request(request).await.expect("response")
    }
}

impl Sender for hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    async fn send(
        &mut self,
        request: http::Request<Empty<Bytes>>,
    ) -> http::Response<hyper::body::Incoming> {
        self.ready().await.expect("connection ready");
        self.send_request(request).await.expect("response")
    }
}

/// Polls until connecting to `addr` is refused.
async fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            other => assert!(
                Instant::now() < deadline,
                "{addr} still accepts connections: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `n` slow requests to have reached the upstream.
async fn arrived(started: &mut mpsc::UnboundedReceiver<String>, n: usize) {
    for _ in 0..n {
        tokio::time::timeout(DEADLINE, started.recv())
            .await
            .expect("the slow request reaches the upstream")
            .expect("upstream alive");
    }
}

async fn ends(conn: tokio::task::JoinHandle<()>, what: &str) {
    tokio::time::timeout(DEADLINE, conn)
        .await
        .unwrap_or_else(|_| panic!("{what}: the proxy kept the connection open"))
        .expect("connection task");
}

// ---------------------------------------------------------------- readiness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_port_is_ready_only_after_the_first_full_config() {
    let mut h = start(Duration::from_secs(5)).await;
    let name = "outbound|80||echo.default.svc.cluster.local";
    let upstream = {
        let (tx, _rx) = mpsc::unbounded_channel();
        slow_upstream(tx).await
    };
    wait_health(&h, 503, "PRE_INITIALIZING: waiting for CDS").await;

    let nonce = h.push(type_url::CLUSTER, "c1", vec![eds_cluster(name)]);
    h.reply_to(type_url::CLUSTER, &nonce).await;
    wait_health(&h, 503, "PRE_INITIALIZING: waiting for LDS").await;

    let rds = http_connection_manager::RouteSpecifier::Rds(Rds {
        config_source: Some(ads_source()),
        route_config_name: "outbound".into(),
    });
    let nonce = h.push(
        type_url::LISTENER,
        "l1",
        vec![listener("virtualOutbound", rds)],
    );
    h.reply_to(type_url::LISTENER, &nonce).await;
    wait_health(
        &h,
        503,
        &format!("PRE_INITIALIZING: waiting for EDS {name}"),
    )
    .await;
    let (admin_status, _, _) = get(h.admin, "/ready").await.expect("admin /ready");
    assert_eq!(admin_status, 503, "the admin API agrees");

    let nonce = h.push(
        type_url::ENDPOINT,
        "e1",
        vec![to_any(type_url::ENDPOINT, &assignment(name, &[upstream]))],
    );
    h.reply_to(type_url::ENDPOINT, &nonce).await;
    wait_health(&h, 503, "PRE_INITIALIZING: waiting for RDS outbound").await;

    let nonce = h.push(
        type_url::ROUTE,
        "r1",
        vec![to_any(
            type_url::ROUTE,
            &route_table("outbound", vec![route_to("/", name)]),
        )],
    );
    h.reply_to(type_url::ROUTE, &nonce).await;
    wait_health(&h, 200, "LIVE").await;
    h.wait_ready().await;

    // A later cluster whose endpoints are still on their way does not make it unready.
    let nonce = h.push(
        type_url::CLUSTER,
        "c2",
        vec![eds_cluster(name), eds_cluster("outbound|81||other")],
    );
    h.reply_to(type_url::CLUSTER, &nonce).await;
    assert_eq!(health(&h).await, (200, "LIVE\n".to_string()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_waits_for_the_certificate_too() {
    let mesh = TestMesh::new("cluster.local");
    let mut h = Harness::start_lifecycle(
        node("echo-v1", "echo"),
        Some((&mesh, Duration::from_secs(3600))),
        LifecycleConfig {
            health_address: Some("127.0.0.1:0".parse().expect("addr")),
            drain_duration: Duration::from_secs(5),
            warm_listeners: true,
        },
    )
    .await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let upstream = slow_upstream(tx).await;
    configure(&mut h, upstream, &["inbound|8080"]).await;
    // `configure` waited for the admin `/ready`, which includes the certificate.
    assert_eq!(health(&h).await, (200, "LIVE\n".to_string()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_warm_until_the_first_full_config() {
    let mut h = Harness::start_lifecycle(
        node("echo-v1", "echo"),
        None,
        LifecycleConfig {
            health_address: Some("127.0.0.1:0".parse().expect("addr")),
            drain_duration: Duration::from_secs(5),
            warm_listeners: true,
        },
    )
    .await;
    let name = "outbound|80||echo.default.svc.cluster.local";
    let (tx, _rx) = mpsc::unbounded_channel();
    let upstream = slow_upstream(tx).await;
    let nonce = h.push(type_url::CLUSTER, "c1", vec![eds_cluster(name)]);
    h.reply_to(type_url::CLUSTER, &nonce).await;
    let rds = http_connection_manager::RouteSpecifier::Rds(Rds {
        config_source: Some(ads_source()),
        route_config_name: "outbound".into(),
    });
    let nonce = h.push(
        type_url::LISTENER,
        "l1",
        vec![listener("virtualOutbound", rds)],
    );
    let ack = h.reply_to(type_url::LISTENER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    // Accepted, but not bound while EDS and RDS are missing.
    let (_, _, bound) = get(h.admin, "/listeners").await.expect("admin /listeners");
    assert_eq!(bound.trim(), "[]");
    wait_health(&h, 503, "PRE_INITIALIZING: waiting for EDS").await;

    let nonce = h.push(
        type_url::ENDPOINT,
        "e1",
        vec![to_any(type_url::ENDPOINT, &assignment(name, &[upstream]))],
    );
    h.reply_to(type_url::ENDPOINT, &nonce).await;
    let nonce = h.push(
        type_url::ROUTE,
        "r1",
        vec![to_any(
            type_url::ROUTE,
            &route_table("outbound", vec![route_to("/", name)]),
        )],
    );
    h.reply_to(type_url::ROUTE, &nonce).await;
    wait_health(&h, 200, "LIVE").await;
    // Ready means bound, with everything it needs: the first request is served.
    let addr = h.listener_port("virtualOutbound").await;
    let (status, _, body) = get(addr, "/first").await.expect("response");
    assert_eq!((status, body.as_str()), (200, "served /first"));
    h.stop().await;
}

// ---------------------------------------------------------------- drain

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_requests_and_refuses_new_connections() {
    let period = Duration::from_secs(20);
    let mut h = start(period).await;
    let (tx, mut started) = mpsc::unbounded_channel();
    let upstream = slow_upstream(tx).await;
    let addr = configure(&mut h, upstream, &["inbound|8080"]).await[0];
    wait_health(&h, 200, "LIVE").await;

    // An idle keep-alive connection, a busy HTTP/1.1 one, and a busy HTTP/2 one.
    let (mut idle, idle_conn) = http1(addr).await;
    assert_eq!(send(&mut idle, "/warm").await.0, 200);
    let (mut busy, busy_conn) = http1(addr).await;
    let busy_request = tokio::spawn(async move { send(&mut busy, "/slow/1500").await });
    let mut h2 = h2c::<Empty<Bytes>>(addr).await;
    let mut h2_probe = h2.clone();
    let h2_request = tokio::spawn(async move { send(&mut h2, "/slow/1500").await });
    arrived(&mut started, 2).await;

    let proxy = h.proxy.take().expect("proxy");
    let began = Instant::now();
    let drain = tokio::spawn(proxy.drain());
    wait_health(&h, 503, "DRAINING").await;
    wait_refused(addr).await;
    ends(idle_conn, "idle HTTP/1.1").await;

    let (status, connection, body) = busy_request.await.expect("task");
    assert_eq!((status, body.as_str()), (200, "served /slow/1500"));
    assert_eq!(connection.as_deref(), Some("close"));
    ends(busy_conn, "busy HTTP/1.1").await;
    let (status, _, body) = h2_request.await.expect("task");
    assert_eq!((status, body.as_str()), (200, "served /slow/1500"));
    // GOAWAY: the HTTP/2 connection takes no new stream.
    let refused = h2_probe.send_request(request("/after")).await;
    assert!(refused.is_err(), "a new stream after GOAWAY: {refused:?}");

    tokio::time::timeout(DEADLINE, drain)
        .await
        .expect("the drain ends once the connections are done")
        .expect("drain task");
    assert!(
        began.elapsed() < period,
        "the drain waited for its whole period although every connection had finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_period_bounds_a_request_that_outlives_it() {
    let mut h = start(Duration::from_millis(300)).await;
    let (tx, mut started) = mpsc::unbounded_channel();
    let upstream = slow_upstream(tx).await;
    let addr = configure(&mut h, upstream, &["inbound|8080"]).await[0];
    let (mut stuck, stuck_conn) = http1(addr).await;
    let stuck_request = tokio::spawn(async move {
        stuck.ready().await.expect("ready");
        stuck.send_request(request("/slow/60000")).await
    });
    arrived(&mut started, 1).await;
    let proxy = h.proxy.take().expect("proxy");
    tokio::time::timeout(DEADLINE, proxy.drain())
        .await
        .expect("the drain ends with its period");
    // The proxy is gone: the request that outlived the drain period is cut.
    let cut = tokio::time::timeout(DEADLINE, stuck_request)
        .await
        .expect("the request ends")
        .expect("task");
    assert!(cut.is_err(), "{cut:?}");
    ends(stuck_conn, "stuck HTTP/1.1").await;
}

// ---------------------------------------------------------------- listener removal

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_listener_drains() {
    let mut h = start(Duration::from_secs(5)).await;
    let (tx, mut started) = mpsc::unbounded_channel();
    let upstream = slow_upstream(tx).await;
    let addrs = configure(&mut h, upstream, &["inbound|8080", "inbound|9090"]).await;
    let (gone, kept) = (addrs[0], addrs[1]);

    let (mut busy, busy_conn) = http1(gone).await;
    let in_flight = tokio::spawn(async move { send(&mut busy, "/slow/1000").await });
    let mut h2 = h2c::<Empty<Bytes>>(gone).await;
    let h2_in_flight = tokio::spawn(async move { send(&mut h2, "/slow/1000").await });
    arrived(&mut started, 2).await;

    push_listeners(&mut h, "2", &["inbound|9090"]).await;
    wait_refused(gone).await;
    let (status, connection, body) = in_flight.await.expect("task");
    assert_eq!((status, body.as_str()), (200, "served /slow/1000"));
    assert_eq!(connection.as_deref(), Some("close"));
    ends(busy_conn, "HTTP/1.1 on the removed listener").await;
    let (status, _, body) = h2_in_flight.await.expect("task");
    assert_eq!((status, body.as_str()), (200, "served /slow/1000"));

    // The other listener serves on, and the proxy stays ready.
    let (status, _, body) = get(kept, "/still").await.expect("response");
    assert_eq!((status, body.as_str()), (200, "served /still"));
    assert_eq!(health(&h).await, (200, "LIVE\n".to_string()));
    h.stop().await;
}
