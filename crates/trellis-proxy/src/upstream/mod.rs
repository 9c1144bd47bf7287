//! Clusters, load balancing and connection pools.
//!
//! The cluster set lives in an `arc-swap` snapshot read per request; an update swaps in a new
//! map and never touches requests already holding the previous one. Clusters whose config did
//! not change keep their pools and load-balancer state.

mod lb;
mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::config::{Cluster, Discovery, Endpoint, Endpoints};
pub use pool::Pool;

/// Why forwarding to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (`UF`).
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection or stream broke before a response arrived (`UR`).
    #[error("upstream {addr} reset before responding: {source}")]
    Reset {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One endpoint of a cluster, with its count of requests in flight (for least-request).
#[derive(Debug)]
pub struct UpstreamEndpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The configured weight.
    pub weight: u32,
    active: AtomicUsize,
}

impl UpstreamEndpoint {
    fn new(e: &Endpoint) -> Self {
        UpstreamEndpoint {
            address: e.address,
            weight: e.weight,
            active: AtomicUsize::new(0),
        }
    }

    /// Requests in flight to this endpoint.
    pub fn active_requests(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// Counts a request as in flight on an endpoint until dropped.
#[derive(Debug)]
pub struct ActiveGuard(Arc<UpstreamEndpoint>);

impl ActiveGuard {
    fn new(ep: Arc<UpstreamEndpoint>) -> Self {
        ep.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(ep)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cluster as the data plane runs it: config, current endpoints, LB state and a pool.
#[derive(Debug)]
pub struct UpstreamCluster {
    config: Cluster,
    endpoints: ArcSwap<Vec<Arc<UpstreamEndpoint>>>,
    rr: AtomicUsize,
    pool: Pool,
}

impl UpstreamCluster {
    /// The cluster's config.
    pub fn config(&self) -> &Cluster {
        &self.config
    }

    /// How many endpoints the cluster has now.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.load().len()
    }

    /// Picks an endpoint by the cluster's policy; `None` when it has none.
    pub fn pick(&self) -> Option<Arc<UpstreamEndpoint>> {
        let endpoints = self.endpoints.load();
        lb::pick(
            self.config.lb_policy,
            &endpoints,
            &self.rr,
            &mut rand::rng(),
        )
        .cloned()
    }

    /// Sends `req` to `endpoint`. The request's URI must already be in the form the pool
    /// expects (see [`Pool::send`]).
    pub async fn send(
        &self,
        endpoint: Arc<UpstreamEndpoint>,
        req: Request<Incoming>,
        authority: &str,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let _guard = ActiveGuard::new(endpoint.clone());
        self.pool.send(endpoint.address, authority, req).await
    }
}

/// All clusters, plus the EDS endpoints by service name.
#[derive(Debug, Default)]
pub struct ClusterManager {
    clusters: ArcSwap<HashMap<String, Arc<UpstreamCluster>>>,
    eds: Mutex<HashMap<String, Arc<Vec<Endpoint>>>>,
}

impl ClusterManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cluster named `name`, if configured.
    pub fn get(&self, name: &str) -> Option<Arc<UpstreamCluster>> {
        self.clusters.load().get(name).cloned()
    }

    /// Replaces the cluster set. Unchanged clusters are kept as they are; changed ones keep
    /// their pool when protocol and connect timeout are the same.
    pub fn apply_clusters(&self, clusters: &[Cluster]) {
        let eds = self.eds.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.clusters.load();
        let mut next = HashMap::with_capacity(clusters.len());
        for c in clusters {
            let previous = old.get(&c.name);
            if let Some(p) = previous.filter(|p| p.config == *c) {
                next.insert(c.name.clone(), p.clone());
                continue;
            }
            let pool = match previous {
                Some(p)
                    if p.config.protocol == c.protocol
                        && p.config.connect_timeout == c.connect_timeout =>
                {
                    p.pool.clone()
                }
                _ => Pool::new(c.protocol, c.connect_timeout),
            };
            let endpoints = match &c.discovery {
                Discovery::Static(eps) => eps
                    .iter()
                    .map(|e| Arc::new(UpstreamEndpoint::new(e)))
                    .collect(),
                Discovery::Eds { service_name } => eds
                    .get(service_name)
                    .map(|eps| {
                        eps.iter()
                            .map(|e| Arc::new(UpstreamEndpoint::new(e)))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            next.insert(
                c.name.clone(),
                Arc::new(UpstreamCluster {
                    config: c.clone(),
                    endpoints: ArcSwap::from_pointee(endpoints),
                    rr: AtomicUsize::new(0),
                    pool,
                }),
            );
        }
        self.clusters.store(Arc::new(next));
    }

    /// Replaces the EDS endpoint set (every service name currently known) and updates the
    /// EDS clusters whose endpoints changed.
    pub fn apply_endpoints(&self, assignments: &[Endpoints]) {
        let mut eds = self.eds.lock().unwrap_or_else(|e| e.into_inner());
        *eds = assignments
            .iter()
            .map(|a| (a.cluster_name.clone(), Arc::new(a.endpoints.clone())))
            .collect();
        for cluster in self.clusters.load().values() {
            let Discovery::Eds { service_name } = &cluster.config.discovery else {
                continue;
            };
            let wanted: &[Endpoint] = eds.get(service_name).map_or(&[], |v| v.as_slice());
            let current = cluster.endpoints.load();
            let same = current.len() == wanted.len()
                && current
                    .iter()
                    .zip(wanted)
                    .all(|(c, w)| c.address == w.address && c.weight == w.weight);
            if !same {
                cluster.endpoints.store(Arc::new(
                    wanted
                        .iter()
                        .map(|e| Arc::new(UpstreamEndpoint::new(e)))
                        .collect(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LbPolicy, UpstreamProtocol};
    use std::time::Duration;

    fn eds_cluster(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            discovery: Discovery::Eds {
                service_name: name.into(),
            },
            connect_timeout: Duration::from_secs(1),
            lb_policy: LbPolicy::RoundRobin,
            protocol: UpstreamProtocol::Http1,
        }
    }

    #[test]
    fn eds_endpoints_arrive_before_or_after_the_cluster() {
        let cm = ClusterManager::new();
        let ep = |port| Endpoint {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            weight: 1,
        };
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
}
