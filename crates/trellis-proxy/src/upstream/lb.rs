//! Load-balancing policies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

use super::UpstreamEndpoint;
use crate::config::LbPolicy;

/// Picks an endpoint: round robin (weights ignored, as the subset documents), random, or
/// least-request as Envoy does it by default (the less loaded of two random picks).
pub(super) fn pick<'a, R: Rng + ?Sized>(
    policy: LbPolicy,
    endpoints: &'a [Arc<UpstreamEndpoint>],
    rr: &AtomicUsize,
    rng: &mut R,
) -> Option<&'a Arc<UpstreamEndpoint>> {
    let n = endpoints.len();
    if n == 0 {
        return None;
    }
    let index = match policy {
        LbPolicy::RoundRobin => rr.fetch_add(1, Ordering::Relaxed) % n,
        LbPolicy::Random => rng.random_range(0..n),
        LbPolicy::LeastRequest => {
            let a = rng.random_range(0..n);
            let b = rng.random_range(0..n);
            if endpoints[b].active_requests() < endpoints[a].active_requests() {
                b
            } else {
                a
            }
        }
    };
    endpoints.get(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Endpoint;
    use rand::SeedableRng;
    use std::net::SocketAddr;

    fn endpoints(n: u16) -> Vec<Arc<UpstreamEndpoint>> {
        (0..n)
            .map(|i| {
                Arc::new(UpstreamEndpoint::new(&Endpoint {
                    address: SocketAddr::from(([127, 0, 0, 1], 1000 + i)),
                    weight: 1,
                }))
            })
            .collect()
    }

    #[test]
    fn round_robin_cycles() {
        let eps = endpoints(3);
        let rr = AtomicUsize::new(0);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let ports: Vec<u16> = (0..6)
            .filter_map(|_| {
                pick(LbPolicy::RoundRobin, &eps, &rr, &mut rng).map(|e| e.address.port())
            })
            .collect();
        assert_eq!(ports, [1000, 1001, 1002, 1000, 1001, 1002]);
        assert!(pick(LbPolicy::Random, &[], &rr, &mut rng).is_none());
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let eps = endpoints(2);
        let _busy: Vec<_> = (0..5)
            .map(|_| super::super::ActiveGuard::new(eps[0].clone()))
            .collect();
        let rr = AtomicUsize::new(0);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut to_busy = 0;
        for _ in 0..1000 {
            if pick(LbPolicy::LeastRequest, &eps, &rr, &mut rng).map(|e| e.address.port())
                == Some(1000)
            {
                to_busy += 1;
            }
        }
        // Only when both random picks land on the busy endpoint (p = 1/4).
        assert!((150..=350).contains(&to_busy), "{to_busy}");
    }
}
