//! Policy-level tests.

use super::*;
use crate::config::{Endpoint, UpstreamProtocol};
use rand::SeedableRng;
use std::net::SocketAddr;

fn endpoints(n: u16) -> Vec<Arc<UpstreamEndpoint>> {
    (0..n)
        .map(|i| {
            Arc::new(UpstreamEndpoint::new(
                &Endpoint::new(SocketAddr::from(([127, 0, 0, 1], 1000 + i))),
                None,
            ))
        })
        .collect()
}

fn cluster(policy: LbPolicy) -> Cluster {
    Cluster::with_defaults(
        "c",
        crate::config::Discovery::Static(Vec::new()),
        policy,
        UpstreamProtocol::Http1,
    )
}

fn pick_port(
    c: &Cluster,
    eps: &[Arc<UpstreamEndpoint>],
    rr: &AtomicUsize,
    rng: &mut rand::rngs::SmallRng,
) -> Option<u16> {
    let hosts: Vec<_> = eps.iter().collect();
    pick_host(c, &hosts, rr, None, |_| unreachable!(), Instant::now(), rng)
        .map(|e| e.address.port())
}

#[test]
fn round_robin_cycles() {
    let eps = endpoints(3);
    let rr = AtomicUsize::new(0);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let c = cluster(LbPolicy::RoundRobin);
    let ports: Vec<u16> = (0..6)
        .filter_map(|_| pick_port(&c, &eps, &rr, &mut rng))
        .collect();
    assert_eq!(ports, [1000, 1001, 1002, 1000, 1001, 1002]);
    assert!(pick_port(&c, &[], &rr, &mut rng).is_none());
}

#[test]
fn least_request_avoids_the_busy_endpoint() {
    let eps = endpoints(2);
    let _busy: Vec<_> = (0..5)
        .map(|_| super::super::ActiveGuard::new(&eps[0]))
        .collect();
    let rr = AtomicUsize::new(0);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let c = cluster(LbPolicy::LeastRequest);
    let to_busy = (0..1000)
        .filter(|_| pick_port(&c, &eps, &rr, &mut rng) == Some(1000))
        .count();
    // Only when both random picks land on the busy endpoint (p = 1/4).
    assert!((150..=350).contains(&to_busy), "{to_busy}");
}

#[test]
fn slow_start_factor_shape() {
    let ss = SlowStart {
        window: std::time::Duration::from_secs(10),
        aggression: 1.0,
        min_weight_percent: 10.0,
    };
    let f = |s: f64| slow_start_factor(&ss, std::time::Duration::from_secs_f64(s));
    assert!((f(0.0) - 0.1).abs() < 1e-9);
    assert!((f(5.0) - 0.5).abs() < 1e-9);
    assert!((f(10.0) - 1.0).abs() < 1e-9);
    let aggressive = SlowStart {
        aggression: 2.0,
        ..ss
    };
    assert!(
        (slow_start_factor(&aggressive, std::time::Duration::from_secs(4)) - 0.4f64.sqrt()).abs()
            < 1e-9
    );
}
