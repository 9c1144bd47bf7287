//! End to end, cluster level: circuit breakers, outlier detection and priority failover through
//! the proxy, configured by an in-test ADS server (the harness is the one of `e2e.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, circuit_breakers, cluster,
};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::google::protobuf::{Any, Duration as PDuration, UInt32Value};
use trellis_xds::{to_any, type_url};

mod common;

use common::*;

async fn controlled_upstream(
    name: &'static str,
    default_status: u16,
    release: std::sync::Arc<tokio::sync::Semaphore>,
    arrivals: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> SocketAddr {
    serve_http(
        "upstream",
        move |req: http::Request<hyper::body::Incoming>| {
            let (release, arrivals) = (release.clone(), arrivals.clone());
            async move {
                arrivals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let path = req.uri().path().to_string();
                if path == "/slow"
                    && let Ok(p) = release.acquire().await
                {
                    p.forget();
                }
                let status = path
                    .strip_prefix("/status/")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(default_status);
                text_response(status, format!("upstream={name}"))
            }
        },
    )
    .await
}

fn simple_upstream(
    name: &'static str,
    status: u16,
) -> impl std::future::Future<Output = SocketAddr> {
    controlled_upstream(
        name,
        status,
        std::sync::Arc::new(tokio::sync::Semaphore::new(0)),
        Default::default(),
    )
}

fn cluster_with(name: &str, kind: cluster::DiscoveryType, f: impl FnOnce(&mut Cluster)) -> Any {
    let mut c = Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
        ..Default::default()
    };
    if kind == cluster::DiscoveryType::Eds {
        c.eds_cluster_config = Some(cluster::EdsClusterConfig {
            eds_config: Some(ads_source()),
            service_name: name.into(),
        });
    }
    f(&mut c);
    to_any(type_url::CLUSTER, &c)
}

fn outlier(
    consecutive_5xx: u32,
    base_ejection_secs: i64,
) -> envoy_types::pb::envoy::config::cluster::v3::OutlierDetection {
    envoy_types::pb::envoy::config::cluster::v3::OutlierDetection {
        consecutive_5xx: Some(UInt32Value {
            value: consecutive_5xx,
        }),
        base_ejection_time: Some(PDuration {
            seconds: base_ejection_secs,
            nanos: 0,
        }),
        interval: Some(PDuration {
            seconds: 1,
            nanos: 0,
        }),
        max_ejection_percent: Some(UInt32Value { value: 100 }),
        enforcing_success_rate: Some(UInt32Value { value: 0 }),
        ..Default::default()
    }
}

/// Pushes CDS (then EDS when given) and an inline-routed listener `/` → `name`; returns the
/// listener's address.
async fn configure(
    h: &mut Harness,
    cluster: Any,
    name: &str,
    eds: Option<ClusterLoadAssignment>,
) -> SocketAddr {
    h.request_where(type_url::CLUSTER, |_| true).await;
    let nonce = h.push(type_url::CLUSTER, "1", vec![cluster]);
    let ack = h.reply_to(type_url::CLUSTER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    if let Some(la) = eds {
        h.request_where(type_url::ENDPOINT, |r| !r.resource_names.is_empty())
            .await;
        let nonce = h.push(
            type_url::ENDPOINT,
            "1",
            vec![to_any(type_url::ENDPOINT, &la)],
        );
        let ack = h.reply_to(type_url::ENDPOINT, &nonce).await;
        assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    }
    let table = route_table("inbound|8080", vec![route_to("/", name)]);
    let nonce = h.push(
        type_url::LISTENER,
        "1",
        vec![listener("inbound|8080", inline(table))],
    );
    let ack = h.reply_to(type_url::LISTENER, &nonce).await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    h.wait_ready().await;
    h.listener_port("inbound|8080").await
}

/// Body of a GET (status, reason header, body).
async fn fetch(proxy: SocketAddr, path: &str) -> (u16, String, String) {
    let (status, headers, body) = get(proxy, path).await.expect("response");
    (
        status,
        trellis_reason(&headers).unwrap_or_default().to_string(),
        body,
    )
}

/// Sends `/slow` in the background and waits until the upstream holds it.
async fn start_slow(
    proxy: SocketAddr,
    arrivals: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<(u16, String, String)> {
    let slow = tokio::spawn(fetch(proxy, "/slow"));
    poll(|| {
        let a = arrivals.clone();
        async move { a.load(std::sync::atomic::Ordering::SeqCst) == 1 }
    })
    .await;
    slow
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_overflow_is_503_uo_while_a_slow_request_holds_the_only_connection() {
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let arrivals = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let upstream = controlled_upstream("app", 200, release.clone(), arrivals.clone()).await;
    let mut h = Harness::start().await;
    let name = "inbound|8080||";
    let cluster = cluster_with(name, cluster::DiscoveryType::Static, |c| {
        c.load_assignment = Some(assignment(name, &[upstream]));
        c.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_connections: Some(UInt32Value { value: 1 }),
                max_pending_requests: Some(UInt32Value { value: 1 }),
                ..Default::default()
            }],
            ..Default::default()
        });
    });
    let proxy = configure(&mut h, cluster, name, None).await;

    let slow = start_slow(proxy, &arrivals).await;
    // The only connection is busy: one request may wait (pending), the other overflows.
    let a = tokio::spawn(fetch(proxy, "/fast"));
    let b = tokio::spawn(fetch(proxy, "/fast"));
    poll(|| {
        let done = a.is_finished() || b.is_finished();
        async move { done }
    })
    .await;
    let (first, waiter) = if a.is_finished() { (a, b) } else { (b, a) };
    let overflowed = first.await.expect("task");
    assert_eq!(overflowed.0, 503, "{overflowed:?}");
    assert!(
        overflowed.1.starts_with("UO ")
            && overflowed.1.contains("max_pending_requests")
            && overflowed.1.contains(&format!("cluster {name}")),
        "{overflowed:?}"
    );
    release.add_permits(1);
    let slow = slow.await.expect("slow task");
    assert_eq!(slow.0, 200, "{slow:?}");
    let waited = waiter.await.expect("task");
    assert_eq!(
        waited.0, 200,
        "the pending request got the connection: {waited:?}"
    );
    // The slot is free again.
    assert_eq!(fetch(proxy, "/fast").await.0, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_overflow_on_http2() {
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let arrivals = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let upstream = controlled_upstream("h2app", 200, release.clone(), arrivals.clone()).await;
    let mut h = Harness::start().await;
    let name = "inbound|8080||";
    let cluster = cluster_with(name, cluster::DiscoveryType::Static, |c| {
        c.load_assignment = Some(assignment(name, &[upstream]));
        c.typed_extension_protocol_options = h2_options();
        c.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_requests: Some(UInt32Value { value: 1 }),
                ..Default::default()
            }],
            ..Default::default()
        });
    });
    let proxy = configure(&mut h, cluster, name, None).await;
    let slow = start_slow(proxy, &arrivals).await;
    let (status, reason, _) = fetch(proxy, "/fast").await;
    assert_eq!(status, 503);
    assert!(
        reason.starts_with("UO ") && reason.contains("max_requests") && reason.contains(name),
        "{reason}"
    );
    release.add_permits(1);
    assert_eq!(slow.await.expect("slow").0, 200);
    assert_eq!(fetch(proxy, "/fast").await.0, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_ejected_then_comes_back() {
    let bad = simple_upstream("bad", 503).await;
    let good = simple_upstream("good", 200).await;
    let mut h = Harness::start().await;
    let name = "outbound|80||echo.default.svc.cluster.local";
    let cluster = cluster_with(name, cluster::DiscoveryType::Eds, |c| {
        c.outlier_detection = Some(outlier(2, 1));
    });
    let proxy = configure(&mut h, cluster, name, Some(assignment(name, &[bad, good]))).await;

    // Round robin alternates until the bad endpoint has failed twice in a row.
    let mut bad_seen = 0;
    for _ in 0..4 {
        let (status, _, body) = fetch(proxy, "/").await;
        if body.contains("upstream=bad") {
            assert_eq!(status, 503);
            bad_seen += 1;
        }
    }
    assert_eq!(bad_seen, 2);
    // Ejected: everything goes to the good one.
    for _ in 0..10 {
        let (status, _, body) = fetch(proxy, "/").await;
        assert_eq!((status, body.as_str()), (200, "upstream=good"));
    }
    // After base_ejection_time (1 s) it gets traffic again.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, _, body) = fetch(proxy, "/").await;
        if body.contains("upstream=bad") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bad endpoint never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}

fn prioritized(name: &str, levels: &[(&[SocketAddr], u32, i32)]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: levels
            .iter()
            .map(|(eps, priority, health)| LocalityLbEndpoints {
                priority: *priority,
                lb_endpoints: eps
                    .iter()
                    .map(|a| LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(sock(*a)),
                            ..Default::default()
                        })),
                        health_status: *health,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_priority_1_when_priority_0_has_no_healthy_endpoint() {
    let primary = simple_upstream("primary", 503).await;
    let secondary = simple_upstream("secondary", 200).await;
    let mut h = Harness::start().await;
    let name = "outbound|80||echo.default.svc.cluster.local";
    let cluster = cluster_with(name, cluster::DiscoveryType::Eds, |c| {
        c.outlier_detection = Some(outlier(1, 60));
    });
    let unknown = core::HealthStatus::Unknown as i32;
    let la = prioritized(
        name,
        &[(&[primary], 0, unknown), (&[secondary], 1, unknown)],
    );
    let proxy = configure(&mut h, cluster, name, Some(la)).await;

    // Priority 0 is healthy: it takes everything (and fails once, which ejects it).
    let (status, _, body) = fetch(proxy, "/").await;
    assert_eq!((status, body.as_str()), (503, "upstream=primary"));
    for _ in 0..5 {
        let (status, _, body) = fetch(proxy, "/").await;
        assert_eq!((status, body.as_str()), (200, "upstream=secondary"));
    }

    // EDS health works the same way: a new primary marked UNHEALTHY gets nothing.
    let fresh = simple_upstream("fresh", 200).await;
    let la = prioritized(
        name,
        &[
            (&[fresh], 0, core::HealthStatus::Unhealthy as i32),
            (&[secondary], 1, core::HealthStatus::Healthy as i32),
        ],
    );
    let nonce = h.push(
        type_url::ENDPOINT,
        "2",
        vec![to_any(type_url::ENDPOINT, &la)],
    );
    h.reply_to(type_url::ENDPOINT, &nonce).await;
    for _ in 0..5 {
        let (status, _, body) = fetch(proxy, "/").await;
        assert_eq!((status, body.as_str()), (200, "upstream=secondary"));
    }
    // Marked healthy, priority 0 takes everything back.
    let la = prioritized(name, &[(&[fresh], 0, unknown), (&[secondary], 1, unknown)]);
    let nonce = h.push(
        type_url::ENDPOINT,
        "3",
        vec![to_any(type_url::ENDPOINT, &la)],
    );
    h.reply_to(type_url::ENDPOINT, &nonce).await;
    for _ in 0..5 {
        let (status, _, body) = fetch(proxy, "/").await;
        assert_eq!((status, body.as_str()), (200, "upstream=fresh"));
    }
    h.stop().await;
}
