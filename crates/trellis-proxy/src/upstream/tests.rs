//! Cluster runtime tests: endpoint updates, outlier detection, priorities, panic, localities,
//! weights and slow start. Time-dependent ones run on Tokio's paused clock.

use super::*;
use crate::config::{LbPolicy, OutlierDetection, SlowStart, UpstreamProtocol};
use std::time::Duration;

fn eds_cluster(name: &str) -> Cluster {
    Cluster::with_defaults(
        name,
        Discovery::Eds {
            service_name: name.into(),
        },
        LbPolicy::RoundRobin,
        UpstreamProtocol::Http1,
    )
}

fn ep(port: u16) -> Endpoint {
    Endpoint::new(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn static_cluster(mut c: Cluster, eps: Vec<Endpoint>) -> Arc<UpstreamCluster> {
    c.discovery = Discovery::Static(eps);
    let cm = ClusterManager::new();
    cm.apply_clusters(std::slice::from_ref(&c));
    cm.get(&c.name).expect("cluster")
}

/// Ports picked over `n` picks.
fn picks(c: &UpstreamCluster, n: usize) -> HashMap<u16, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        if let Some(e) = c.pick() {
            *m.entry(e.address.port()).or_default() += 1;
        }
    }
    m
}

#[test]
fn eds_endpoints_arrive_before_or_after_the_cluster() {
    let cm = ClusterManager::new();
    cm.apply_endpoints(&[Endpoints {
        cluster_name: "a".into(),
        endpoints: vec![ep(1)],
    }]);
    cm.apply_clusters(&[eds_cluster("a"), eds_cluster("b")]);
    assert_eq!(cm.get("a").map(|c| c.endpoint_count()), Some(1));
    assert_eq!(cm.get("b").map(|c| c.endpoint_count()), Some(0));
    cm.apply_endpoints(&[
        Endpoints {
            cluster_name: "a".into(),
            endpoints: vec![ep(1), ep(2)],
        },
        Endpoints {
            cluster_name: "b".into(),
            endpoints: vec![ep(3)],
        },
    ]);
    assert_eq!(cm.get("a").map(|c| c.endpoint_count()), Some(2));
    assert_eq!(cm.get("b").map(|c| c.endpoint_count()), Some(1));
    let before = cm.get("a").map(|c| Arc::as_ptr(&c));
    cm.apply_clusters(&[eds_cluster("a")]);
    assert_eq!(
        cm.get("a").map(|c| Arc::as_ptr(&c)),
        before,
        "unchanged cluster is kept"
    );
    assert!(cm.get("b").is_none());
}

#[test]
fn endpoint_state_survives_updates_that_keep_the_address() {
    let cm = ClusterManager::new();
    let mut c = eds_cluster("a");
    c.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 1,
        max_ejection_percent: 100,
        ..Default::default()
    });
    cm.apply_clusters(&[c]);
    cm.apply_endpoints(&[Endpoints {
        cluster_name: "a".into(),
        endpoints: vec![ep(1), ep(2)],
    }]);
    let cluster = cm.get("a").expect("a");
    let first = cluster.endpoints()[0].clone();
    cluster.report_outcome(&first, Outcome::Status(500));
    assert!(first.is_ejected());
    let mut heavier = ep(1);
    heavier.weight = 5;
    cm.apply_endpoints(&[Endpoints {
        cluster_name: "a".into(),
        endpoints: vec![heavier, ep(3)],
    }]);
    let now = cluster.endpoints();
    assert_eq!(now[0].weight, 5);
    assert!(now[0].is_ejected(), "ejection kept across a weight change");
    assert!(!now[1].is_ejected());
}

fn outlier_cluster(od: OutlierDetection, n: u16) -> Arc<UpstreamCluster> {
    let mut c = eds_cluster("od");
    c.outlier_detection = Some(od);
    static_cluster(c, (1..=n).map(ep).collect())
}

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_ejects_for_base_time_times_ejections_then_returns() {
    let od = OutlierDetection {
        consecutive_5xx: 3,
        base_ejection_time: Duration::from_secs(30),
        interval: Duration::from_secs(10),
        max_ejection_percent: 100,
        ..Default::default()
    };
    let c = outlier_cluster(od, 2);
    let bad = c.endpoints()[0].clone();
    c.report_outcome(&bad, Outcome::Status(503));
    c.report_outcome(&bad, Outcome::Status(500));
    // A success in between restarts the count.
    c.report_outcome(&bad, Outcome::Status(200));
    c.report_outcome(&bad, Outcome::Status(500));
    c.report_outcome(&bad, Outcome::Status(500));
    assert!(!bad.is_ejected());
    c.report_outcome(&bad, Outcome::Status(500));
    assert!(bad.is_ejected());
    assert_eq!(
        picks(&c, 20).get(&1),
        None,
        "ejected endpoint gets no traffic"
    );

    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(bad.is_ejected());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(!bad.is_ejected(), "back after base_ejection_time");
    assert_eq!(picks(&c, 20).get(&1), Some(&10));

    // Ejected again right away: twice the base time.
    for _ in 0..3 {
        c.report_outcome(&bad, Outcome::Status(500));
    }
    assert!(bad.is_ejected());
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(bad.is_ejected());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(!bad.is_ejected());

    // Healthy long enough, the multiplier decays back to 1.
    tokio::time::advance(Duration::from_secs(100)).await;
    for _ in 0..3 {
        c.report_outcome(&bad, Outcome::Status(500));
    }
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(!bad.is_ejected());
}

#[tokio::test(start_paused = true)]
async fn gateway_errors_and_local_origin_failures() {
    // Gateway failures eject only when enforced (Envoy's default enforcement is 0).
    let c = outlier_cluster(
        OutlierDetection {
            consecutive_5xx: 0,
            consecutive_gateway_failure: 2,
            enforcing_consecutive_gateway_failure: 100,
            max_ejection_percent: 100,
            ..Default::default()
        },
        2,
    );
    let e = c.endpoints()[0].clone();
    c.report_outcome(&e, Outcome::Status(500));
    c.report_outcome(&e, Outcome::Status(502));
    assert!(!e.is_ejected(), "500 is not a gateway error");
    c.report_outcome(&e, Outcome::ConnectFailure);
    assert!(e.is_ejected(), "unsplit local failures count as 503");

    // Split: local-origin failures have their own counter; 5xx do not touch it.
    let c = outlier_cluster(
        OutlierDetection {
            split_external_local_origin_errors: true,
            consecutive_local_origin_failure: 2,
            consecutive_5xx: 5,
            max_ejection_percent: 100,
            ..Default::default()
        },
        2,
    );
    let e = c.endpoints()[0].clone();
    c.report_outcome(&e, Outcome::Timeout);
    c.report_outcome(&e, Outcome::Connected);
    c.report_outcome(&e, Outcome::Reset);
    c.report_outcome(&e, Outcome::Status(500));
    assert!(!e.is_ejected());
    c.report_outcome(&e, Outcome::Reset);
    assert!(e.is_ejected());
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_bounds_ejections_but_one_always_can_be() {
    let od = OutlierDetection {
        consecutive_5xx: 1,
        max_ejection_percent: 50,
        ..Default::default()
    };
    let c = outlier_cluster(od.clone(), 4);
    let eps = c.endpoints();
    for e in eps.iter() {
        c.report_outcome(e, Outcome::Status(500));
    }
    assert_eq!(eps.iter().filter(|e| e.is_ejected()).count(), 2);

    let c = outlier_cluster(
        OutlierDetection {
            max_ejection_percent: 10,
            ..od
        },
        3,
    );
    let eps = c.endpoints();
    for e in eps.iter() {
        c.report_outcome(e, Outcome::Status(500));
    }
    assert_eq!(
        eps.iter().filter(|e| e.is_ejected()).count(),
        1,
        "one ejection is always allowed"
    );
}

fn with_priority(port: u16, priority: u32) -> Endpoint {
    Endpoint {
        priority,
        ..ep(port)
    }
}

#[tokio::test(start_paused = true)]
async fn priority_failover_and_overprovisioning() {
    let mut c = eds_cluster("p");
    c.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 1,
        max_ejection_percent: 100,
        ..Default::default()
    });
    let eps: Vec<Endpoint> = (1..=5)
        .map(|p| with_priority(p, 0))
        .chain([with_priority(10, 1)])
        .collect();
    let c = static_cluster(c, eps);
    assert_eq!(picks(&c, 100).get(&10), None, "all of priority 0 healthy");

    // 4 of 5 healthy: 80% × 1.4 ≥ 100%, no spill-over.
    let p0 = c.endpoints();
    c.report_outcome(&p0[0], Outcome::Status(500));
    assert_eq!(picks(&c, 200).get(&10), None);

    // 2 of 5 healthy: priority 0 takes 56%, priority 1 the rest.
    c.report_outcome(&p0[1], Outcome::Status(500));
    c.report_outcome(&p0[2], Outcome::Status(500));
    let to_p1 = picks(&c, 2000).get(&10).copied().unwrap_or(0);
    assert!((780..=980).contains(&to_p1), "{to_p1}");

    // None healthy in priority 0: everything fails over.
    c.report_outcome(&p0[3], Outcome::Status(500));
    c.report_outcome(&p0[4], Outcome::Status(500));
    assert_eq!(picks(&c, 50).get(&10), Some(&50));

    // After the ejection time, traffic returns to priority 0.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(picks(&c, 50).get(&10), None);
}

#[test]
fn eds_unhealthy_endpoints_are_skipped_and_panic_routes_to_all() {
    let mut unhealthy = ep(2);
    unhealthy.healthy = false;
    let c = static_cluster(eds_cluster("h"), vec![ep(1), unhealthy.clone(), ep(3)]);
    // 2 of 3 healthy (67% > 50% panic threshold): only healthy ones.
    assert_eq!(picks(&c, 30).get(&2), None);

    // 1 of 3 healthy (33% < 50%): panic, every endpoint gets traffic.
    let mut u3 = ep(3);
    u3.healthy = false;
    let c = static_cluster(eds_cluster("h"), vec![ep(1), unhealthy.clone(), u3.clone()]);
    assert_eq!(picks(&c, 30).get(&2), Some(&10));

    // Panic disabled (threshold 0): only the healthy one.
    let mut no_panic = eds_cluster("h");
    no_panic.healthy_panic_threshold = 0.0;
    let c = static_cluster(no_panic.clone(), vec![ep(1), unhealthy.clone(), u3.clone()]);
    assert_eq!(picks(&c, 30).get(&1), Some(&30));
    // Nothing healthy and panic disabled: no endpoint.
    let mut u1 = ep(1);
    u1.healthy = false;
    let c = static_cluster(no_panic, vec![u1, unhealthy]);
    assert!(c.pick().is_none());
}

#[test]
fn weighted_round_robin_and_exclusions() {
    let mut heavy = ep(2);
    heavy.weight = 3;
    let c = static_cluster(eds_cluster("w"), vec![ep(1), heavy]);
    let m = picks(&c, 400);
    assert_eq!((m.get(&1), m.get(&2)), (Some(&100), Some(&300)));

    let exclude = [SocketAddr::from(([127, 0, 0, 1], 2))];
    let ctx = LbContext {
        hash: None,
        exclude: &exclude,
        original_dst: None,
    };
    for _ in 0..10 {
        assert_eq!(c.pick_with(&ctx).map(|e| e.address.port()), Some(1));
    }
}

#[test]
fn locality_weights_split_traffic() {
    let mut c = eds_cluster("l");
    c.locality_weighted = true;
    c.lb_policy = LbPolicy::Random;
    let in_zone = |port, zone: &str, w| Endpoint {
        locality: crate::config::Locality {
            region: "r".into(),
            zone: zone.into(),
            sub_zone: String::new(),
        },
        locality_weight: Some(w),
        ..ep(port)
    };
    let c = static_cluster(
        c,
        vec![
            in_zone(1, "a", 80),
            in_zone(2, "b", 20),
            in_zone(3, "b", 20),
        ],
    );
    let m = picks(&c, 4000);
    let a = m.get(&1).copied().unwrap_or(0);
    assert!((3000..=3400).contains(&a), "{m:?}");
}

#[test]
fn consistent_hash_clusters_are_sticky() {
    for policy in [
        LbPolicy::RingHash {
            minimum_ring_size: 1024,
            maximum_ring_size: 8 << 20,
        },
        LbPolicy::Maglev { table_size: 65537 },
    ] {
        let mut c = eds_cluster("hash");
        c.lb_policy = policy;
        let c = static_cluster(c, (1..=5).map(ep).collect());
        let mut seen = std::collections::HashSet::new();
        for key in 0..50u64 {
            let ctx = LbContext {
                hash: Some(hash::hash64(&key.to_be_bytes())),
                exclude: &[],
                original_dst: None,
            };
            let first = c.pick_with(&ctx).map(|e| e.address);
            for _ in 0..5 {
                assert_eq!(c.pick_with(&ctx).map(|e| e.address), first, "{policy:?}");
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 5, "keys spread over every host ({policy:?})");
    }
}

#[tokio::test(start_paused = true)]
async fn ejected_host_keys_move_and_come_back_with_ring_hash() {
    let mut c = eds_cluster("hash");
    c.lb_policy = LbPolicy::RingHash {
        minimum_ring_size: 1024,
        maximum_ring_size: 8 << 20,
    };
    c.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 1,
        max_ejection_percent: 100,
        ..Default::default()
    });
    let c = static_cluster(c, (1..=4).map(ep).collect());
    let ctx = |k: u64| LbContext {
        hash: Some(hash::hash64(&k.to_be_bytes())),
        exclude: &[],
        original_dst: None,
    };
    let before: Vec<_> = (0..200)
        .map(|k| c.pick_with(&ctx(k)).map(|e| e.address))
        .collect();
    let victim = c.endpoints()[0].clone();
    c.report_outcome(&victim, Outcome::Status(500));
    let (mut others, mut stayed) = (0, 0);
    for (k, b) in before.iter().enumerate() {
        let now = c.pick_with(&ctx(k as u64)).map(|e| e.address);
        assert_ne!(now, Some(victim.address));
        if *b != Some(victim.address) {
            others += 1;
            stayed += usize::from(now == *b);
        }
    }
    // The ring is rebuilt over the healthy hosts (as Envoy does), so a few other keys move.
    assert!(
        stayed * 10 >= others * 8,
        "{stayed}/{others} other keys stayed"
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    let after: Vec<_> = (0..200)
        .map(|k| c.pick_with(&ctx(k)).map(|e| e.address))
        .collect();
    assert_eq!(before, after);
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_new_endpoints_up() {
    let mut c = eds_cluster("ss");
    c.slow_start = Some(SlowStart {
        window: Duration::from_secs(100),
        aggression: 1.0,
        min_weight_percent: 10.0,
    });
    let cm = ClusterManager::new();
    cm.apply_clusters(&[c]);
    cm.apply_endpoints(&[Endpoints {
        cluster_name: "ss".into(),
        endpoints: vec![ep(1)],
    }]);
    tokio::time::advance(Duration::from_secs(200)).await;
    cm.apply_endpoints(&[Endpoints {
        cluster_name: "ss".into(),
        endpoints: vec![ep(1), ep(2)],
    }]);
    let c = cm.get("ss").expect("ss");
    // New endpoint at age ~0: 10% of its weight → about 1/11 of the traffic.
    let young = picks(&c, 4000).get(&2).copied().unwrap_or(0);
    assert!((250..=480).contains(&young), "{young}");
    tokio::time::advance(Duration::from_secs(50)).await;
    // Half-way: weight 0.5 → a third.
    let half = picks(&c, 4000).get(&2).copied().unwrap_or(0);
    assert!((1200..=1470).contains(&half), "{half}");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        picks(&c, 100).get(&2),
        Some(&50),
        "ramp over: plain round robin"
    );
}

#[test]
fn retry_budget_is_the_max_retries_breaker() {
    let mut c = eds_cluster("r");
    c.circuit_breakers.max_retries = 1;
    let c = static_cluster(c, vec![ep(1)]);
    let first = c.try_acquire_retry().expect("one retry");
    assert!(c.try_acquire_retry().is_none());
    drop(first);
    assert!(c.try_acquire_retry().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_dns_clusters_resolve_names() {
    let mut c = eds_cluster("dns");
    c.discovery = Discovery::Dns {
        logical: false,
        lookup_family: crate::config::DnsLookupFamily::V4Only,
        refresh_rate: Duration::from_millis(50),
        hosts: vec![crate::config::DnsHost {
            hostname: "localhost".into(),
            port: 1234,
            template: ep(0),
        }],
    };
    let cm = ClusterManager::new();
    cm.apply_clusters(&[c]);
    let cluster = cm.get("dns").expect("dns");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.endpoint_count() == 0 {
        assert!(Instant::now() < deadline, "localhost never resolved");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let eps = cluster.endpoints();
    assert!(
        eps.iter()
            .all(|e| e.address.port() == 1234 && e.address.ip().is_loopback()),
        "{eps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pool_limits_and_reuse() {
    // An HTTP/1.1 upstream counting connections.
    let (addr, conns) = counting_upstream(false).await;
    let run = |max_requests_per_connection: Option<u32>| {
        let mut c = eds_cluster("pool");
        c.connection_pool.max_requests_per_connection = max_requests_per_connection;
        c.connection_pool.tcp_keepalive = Some(crate::config::TcpKeepalive {
            probes: Some(3),
            time: Some(Duration::from_secs(30)),
            interval: Some(Duration::from_secs(5)),
        });
        static_cluster(c, vec![Endpoint::new(addr)])
    };
    async fn three(c: &UpstreamCluster, wait_idle: bool) {
        for _ in 0..3 {
            // The connection goes back to the pool once the body is read (in a task).
            let deadline = Instant::now() + Duration::from_secs(10);
            while wait_idle
                && c.resource_in_use(Resource::Connections) > 0
                && c.pool.idle_count() == 0
            {
                assert!(
                    Instant::now() < deadline,
                    "connection never returned to the pool"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let ep = c.pick().expect("endpoint");
            let req = Request::get("/")
                .body(http_body_util::Empty::<Bytes>::new())
                .expect("req");
            let resp = c.send(ep, req, "test").await.expect("response");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], b"ok");
        }
    }
    let reused = run(None);
    three(&reused, true).await;
    assert_eq!(
        conns.swap(0, Ordering::SeqCst),
        1,
        "keep-alive reuses the connection"
    );
    assert_eq!(reused.resource_in_use(Resource::Requests), 0);

    let one_each = run(Some(1));
    three(&one_each, false).await;
    assert_eq!(
        conns.load(Ordering::SeqCst),
        3,
        "max_requests_per_connection 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_max_concurrent_streams_opens_more_connections() {
    use std::sync::atomic::AtomicUsize;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let arrivals = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (counted, arrived, gate) = (conns.clone(), arrivals.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (arrived, gate) = (arrived.clone(), gate.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let (arrived, gate) = (arrived.clone(), gate.clone());
                    async move {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        if let Ok(p) = gate.acquire().await {
                            p.forget();
                        }
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
            });
        }
    });
    for (limit, want) in [(Some(1), 2), (None, 1)] {
        conns.store(0, Ordering::SeqCst);
        arrivals.store(0, Ordering::SeqCst);
        let mut c = eds_cluster("h2");
        c.protocol = UpstreamProtocol::Http2;
        c.connection_pool.max_concurrent_streams = limit;
        let c = static_cluster(c, vec![Endpoint::new(addr)]);
        let send = |c: Arc<UpstreamCluster>| async move {
            let ep = c.pick().expect("endpoint");
            let req = Request::get("/")
                .body(http_body_util::Empty::<Bytes>::new())
                .expect("req");
            let resp = c.send(ep, req, "test").await.expect("response");
            resp.into_body().collect().await.expect("body").to_bytes()
        };
        let a = tokio::spawn(send(c.clone()));
        let b = tokio::spawn(send(c.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while arrivals.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "both requests never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            conns.load(Ordering::SeqCst),
            want,
            "max_concurrent_streams {limit:?}"
        );
        release.add_permits(2);
        assert_eq!(&a.await.expect("a")[..], b"ok");
        assert_eq!(&b.await.expect("b")[..], b"ok");
    }
}

/// An upstream (HTTP/1.1 or h2c) answering `ok`, counting the connections it accepted.
pub(crate) async fn counting_upstream(h2: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = if h2 {
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await
                } else {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await
                };
            });
        }
    });
    (addr, conns)
}
