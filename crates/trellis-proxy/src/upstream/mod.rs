//! Clusters, load balancing, connection pools, circuit breakers and outlier detection.
//!
//! The cluster set lives in an `arc-swap` snapshot read per request; an update swaps in a new
//! map and never touches requests already holding the previous one. Clusters whose config did
//! not change keep their pools and load-balancer state; endpoints that keep their address keep
//! their state (requests in flight, outlier ejection, slow-start age).
//!
//! The request path uses: [`UpstreamCluster::pick_with`] (with the hash from
//! [`hash::request_hash`] and the hosts to avoid on a retry), [`UpstreamCluster::send`] (which
//! enforces the circuit breakers and reports connect failures, resets and HTTP statuses to
//! outlier detection itself), [`UpstreamCluster::report_outcome`] for what `send` cannot see
//! (a timeout), and [`UpstreamCluster::try_acquire_retry`] before each retry.

mod breaker;
mod dns;
pub mod hash;
mod lb;
mod outlier;
mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use rand::Rng;
use tokio::time::Instant;

use crate::config::{Cluster, Discovery, Endpoint, Endpoints, Locality};
pub use breaker::{Resource, ResourceGuard};
pub use hash::{HashRequest, RequestHash, request_hash};
pub use outlier::Outcome;
pub use pool::{BoxIo, IoStream, Pool, ResponseBody};

/// A boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body type the pools send (any body can be converted with [`into_request_body`]).
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The request body type (the name the request path uses).
pub type UpstreamBody = RequestBody;

/// Boxes any body into a [`RequestBody`].
pub fn into_request_body<B>(body: B) -> RequestBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

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
        source: BoxError,
    },
    /// The connection or stream broke before a response arrived (`UR`).
    #[error("upstream {addr} reset before responding: {source}")]
    Reset {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A circuit breaker is open (`UO`).
    #[error("{resource} circuit breaker ({limit}) overflowed")]
    Overflow {
        /// Which threshold.
        resource: Resource,
        /// Its value.
        limit: u32,
    },
}

/// Per-address state that survives endpoint updates.
#[derive(Debug)]
pub(crate) struct HostState {
    active: AtomicUsize,
    created: Instant,
    outlier: Mutex<outlier::HostOutlier>,
}

/// One endpoint of a cluster.
#[derive(Debug)]
pub struct UpstreamEndpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The configured weight.
    pub weight: u32,
    /// Its locality.
    pub locality: Locality,
    /// Its priority.
    pub priority: u32,
    /// Its locality's weight.
    pub locality_weight: Option<u32>,
    /// EDS health.
    pub eds_healthy: bool,
    /// `envoy.transport_socket_match` metadata.
    pub transport_socket_match: std::collections::BTreeMap<String, String>,
    /// Istio's workload metadata (`destination_*` labels of the metrics).
    pub peer: Option<Arc<crate::telemetry::PeerWorkload>>,
    state: Arc<HostState>,
}

impl UpstreamEndpoint {
    fn new(e: &Endpoint, state: Option<Arc<HostState>>) -> Self {
        UpstreamEndpoint {
            address: e.address,
            weight: e.weight,
            locality: e.locality.clone(),
            priority: e.priority,
            locality_weight: e.locality_weight,
            eds_healthy: e.healthy,
            transport_socket_match: e.transport_socket_match.clone(),
            peer: e.workload.clone(),
            state: state.unwrap_or_else(|| {
                Arc::new(HostState {
                    active: AtomicUsize::new(0),
                    created: Instant::now(),
                    outlier: Mutex::default(),
                })
            }),
        }
    }

    /// Requests in flight to this endpoint.
    pub fn active_requests(&self) -> usize {
        self.state.active.load(Ordering::Relaxed)
    }

    fn outlier(&self) -> std::sync::MutexGuard<'_, outlier::HostOutlier> {
        self.state.outlier.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether outlier detection has ejected the endpoint now.
    pub fn is_ejected(&self) -> bool {
        self.outlier().is_ejected(Instant::now())
    }

    fn is_healthy(&self, now: Instant) -> bool {
        self.eds_healthy && !self.outlier().is_ejected(now)
    }

    fn same_config(&self, e: &Endpoint) -> bool {
        self.address == e.address
            && self.weight == e.weight
            && self.locality == e.locality
            && self.priority == e.priority
            && self.locality_weight == e.locality_weight
            && self.eds_healthy == e.healthy
            && self.transport_socket_match == e.transport_socket_match
    }
}

/// Counts a request as in flight on an endpoint until dropped.
#[derive(Debug)]
pub struct ActiveGuard(Arc<HostState>);

impl ActiveGuard {
    fn new(ep: &UpstreamEndpoint) -> Self {
        ep.state.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(ep.state.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the load balancer may use to pick an endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct LbContext<'a> {
    /// The request's hash (ring hash and Maglev); see [`request_hash`].
    pub hash: Option<u64>,
    /// Endpoints to avoid when others are available (Envoy's `previous_hosts` retry predicate).
    pub exclude: &'a [SocketAddr],
    /// The request's original destination (ORIGINAL_DST clusters).
    pub original_dst: Option<SocketAddr>,
}

/// ORIGINAL_DST hosts kept at most (beyond this, idle ones are forgotten).
const MAX_ORIGINAL_DST_HOSTS: usize = 1024;

type TableCache = Mutex<Option<(Vec<(SocketAddr, u32)>, Arc<hash::Table>)>>;

/// A cluster as the data plane runs it: config, current endpoints, LB state and a pool.
#[derive(Debug)]
pub struct UpstreamCluster {
    config: Cluster,
    endpoints: ArcSwap<Vec<Arc<UpstreamEndpoint>>>,
    rr: AtomicUsize,
    pool: Pool,
    table: TableCache,
    original_dst: Mutex<HashMap<SocketAddr, Arc<UpstreamEndpoint>>>,
}

impl UpstreamCluster {
    fn new(config: Cluster, endpoints: Vec<Arc<UpstreamEndpoint>>, pool: Pool) -> Self {
        UpstreamCluster {
            config,
            endpoints: ArcSwap::from_pointee(endpoints),
            rr: AtomicUsize::new(0),
            pool,
            table: Mutex::new(None),
            original_dst: Mutex::default(),
        }
    }

    /// The host of an ORIGINAL_DST cluster for `addr` (created on first use, as Envoy does).
    fn original_dst_host(&self, addr: SocketAddr) -> Arc<UpstreamEndpoint> {
        let mut hosts = self.original_dst.lock().unwrap_or_else(|e| e.into_inner());
        if !hosts.contains_key(&addr) && hosts.len() >= MAX_ORIGINAL_DST_HOSTS {
            hosts.retain(|_, h| h.active_requests() > 0);
        }
        hosts
            .entry(addr)
            .or_insert_with(|| Arc::new(UpstreamEndpoint::new(&Endpoint::new(addr), None)))
            .clone()
    }

    /// The cluster's config.
    pub fn config(&self) -> &Cluster {
        &self.config
    }

    /// How many endpoints the cluster has now.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.load().len()
    }

    /// The cluster's endpoints now.
    pub fn endpoints(&self) -> Arc<Vec<Arc<UpstreamEndpoint>>> {
        self.endpoints.load_full()
    }

    /// Picks an endpoint with no hash and nothing to avoid.
    pub fn pick(&self) -> Option<Arc<UpstreamEndpoint>> {
        self.pick_with(&LbContext::default())
    }

    /// Picks an endpoint: the priority level (by health, overprovisioning 1.4, panic
    /// threshold), then the locality (when locality-weighted), then the host by the policy.
    /// `None` when the cluster has no usable endpoint.
    pub fn pick_with(&self, ctx: &LbContext<'_>) -> Option<Arc<UpstreamEndpoint>> {
        if let Discovery::OriginalDst { .. } = self.config.discovery {
            return ctx.original_dst.map(|a| self.original_dst_host(a));
        }
        let endpoints = self.endpoints.load();
        let now = Instant::now();
        let mut rng = rand::rng();
        let percent = match ctx.hash {
            Some(h) => h % 100,
            None => rng.random_range(0..100),
        };
        let chosen = lb::choose_priority(&self.config, &endpoints, now, percent);
        let mut hosts = chosen.hosts;
        if !ctx.exclude.is_empty() {
            let kept: Vec<_> = hosts
                .iter()
                .copied()
                .filter(|h| !ctx.exclude.contains(&h.address))
                .collect();
            if !kept.is_empty() {
                hosts = kept;
            }
        }
        let hashing = matches!(
            self.config.lb_policy,
            crate::config::LbPolicy::RingHash { .. } | crate::config::LbPolicy::Maglev { .. }
        );
        if self.config.locality_weighted && !hashing {
            hosts = lb::choose_locality(hosts, now, &mut rng);
        }
        lb::pick_host(
            &self.config,
            &hosts,
            &self.rr,
            ctx.hash,
            |hs| self.table_for(hs),
            now,
            &mut rng,
        )
        .cloned()
    }

    fn table_for(&self, hosts: &[&Arc<UpstreamEndpoint>]) -> Arc<hash::Table> {
        let key: Vec<(SocketAddr, u32)> = hosts.iter().map(|h| (h.address, h.weight)).collect();
        let mut cache = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, t)) = cache.as_ref()
            && *k == key
        {
            return t.clone();
        }
        let table = Arc::new(match self.config.lb_policy {
            crate::config::LbPolicy::Maglev { table_size } => hash::Table::maglev(&key, table_size),
            crate::config::LbPolicy::RingHash {
                minimum_ring_size,
                maximum_ring_size,
            } => hash::Table::ring(&key, minimum_ring_size, maximum_ring_size),
            _ => hash::Table::Ring(Vec::new()),
        });
        *cache = Some((key, table.clone()));
        table
    }

    /// Units of a circuit-breaker resource in use now (connections, pending requests,
    /// requests, retries).
    pub fn resource_in_use(&self, resource: Resource) -> u32 {
        self.pool.counters().in_use(resource)
    }

    /// Takes a retry slot (`max_retries` circuit breaker); `None` means the retry must not
    /// happen (Envoy: `upstream_rq_retry_overflow`). Hold the guard until the retry ends.
    pub fn try_acquire_retry(&self) -> Option<ResourceGuard> {
        self.pool
            .counters()
            .try_acquire(Resource::Retries, self.config.circuit_breakers.max_retries)
    }

    /// Reports the result of a request on `endpoint` to outlier detection. [`Self::send`]
    /// already reports connect failures, resets and response statuses; the request path
    /// reports what `send` cannot observe ([`Outcome::Timeout`]).
    pub fn report_outcome(&self, endpoint: &UpstreamEndpoint, outcome: Outcome) {
        let Some(cfg) = &self.config.outlier_detection else {
            return;
        };
        let now = Instant::now();
        let detector = endpoint.outlier().record(cfg, outcome);
        let Some(detector) = detector else {
            return;
        };
        let enforce = outlier::enforcing(cfg, detector);
        if enforce < 100 && rand::rng().random_range(0..100) >= enforce {
            return;
        }
        let endpoints = self.endpoints.load();
        let ejected = endpoints
            .iter()
            .filter(|e| !Arc::ptr_eq(&e.state, &endpoint.state) && e.outlier().is_ejected(now))
            .count();
        let mut state = endpoint.outlier();
        if state.is_ejected(now) {
            return;
        }
        if outlier::may_eject(cfg, ejected, endpoints.len()) {
            state.eject(cfg, now);
            tracing::info!(
                cluster = %self.config.name,
                endpoint = %endpoint.address,
                ?detector,
                until = ?state.ejected_until().map(|t| t.saturating_duration_since(now)),
                "outlier ejected"
            );
        } else {
            state.reset_counters();
        }
    }

    /// Opens a tunnel connection to `endpoint` (its transport socket chosen as for requests),
    /// within `max_connections`; connect failures count for outlier detection.
    pub async fn connect_tunnel(
        &self,
        endpoint: &Arc<UpstreamEndpoint>,
    ) -> Result<(BoxIo, ResourceGuard, ActiveGuard), UpstreamError> {
        let tls = match self.config.transport_for(&endpoint.transport_socket_match) {
            crate::config::TransportSocket::RawBuffer => None,
            crate::config::TransportSocket::Tls(t) => Some(t),
        };
        let active = ActiveGuard::new(endpoint);
        let result = self
            .pool
            .connect_tunnel(endpoint.address, tls, &self.config.circuit_breakers)
            .await;
        match &result {
            Ok(_) => self.report_outcome(endpoint, Outcome::Connected),
            Err(UpstreamError::Connect { .. }) => {
                self.report_outcome(endpoint, Outcome::ConnectFailure)
            }
            Err(_) => {}
        }
        result.map(|(io, slot)| (io, slot, active))
    }

    /// Sends `req` to `endpoint`, within the cluster's circuit breakers (an overflow is
    /// [`UpstreamError::Overflow`]); reports the outcome to outlier detection. The request's
    /// URI must carry at least the path and query (see [`Pool::send`]).
    pub async fn send<B>(
        &self,
        endpoint: Arc<UpstreamEndpoint>,
        req: Request<B>,
        authority: &str,
    ) -> Result<Response<ResponseBody>, UpstreamError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let guard = ActiveGuard::new(&endpoint);
        let req = req.map(into_request_body);
        let tls = match self.config.transport_for(&endpoint.transport_socket_match) {
            crate::config::TransportSocket::RawBuffer => None,
            crate::config::TransportSocket::Tls(t) => Some(t),
        };
        let result = self
            .pool
            .send_over(
                endpoint.address,
                tls,
                authority,
                req,
                &self.config.circuit_breakers,
                Box::new(guard),
            )
            .await;
        match &result {
            Ok(r) => {
                if self
                    .config
                    .outlier_detection
                    .as_ref()
                    .is_some_and(|o| o.split_external_local_origin_errors)
                {
                    self.report_outcome(&endpoint, Outcome::Connected);
                }
                self.report_outcome(&endpoint, Outcome::Status(r.status().as_u16()));
            }
            Err(UpstreamError::Connect { .. }) => {
                self.report_outcome(&endpoint, Outcome::ConnectFailure);
            }
            Err(UpstreamError::Reset { .. }) => self.report_outcome(&endpoint, Outcome::Reset),
            Err(UpstreamError::Overflow { .. }) => {}
        }
        result
    }
}

/// Builds the endpoint list for `wanted`, keeping the state of addresses already present.
fn rebuild(current: &[Arc<UpstreamEndpoint>], wanted: &[Endpoint]) -> Vec<Arc<UpstreamEndpoint>> {
    let by_addr: HashMap<SocketAddr, &Arc<UpstreamEndpoint>> =
        current.iter().map(|e| (e.address, e)).collect();
    wanted
        .iter()
        .map(|w| match by_addr.get(&w.address) {
            Some(c) if c.same_config(w) => (*c).clone(),
            Some(c) => Arc::new(UpstreamEndpoint::new(w, Some(c.state.clone()))),
            None => Arc::new(UpstreamEndpoint::new(w, None)),
        })
        .collect()
}

fn same_endpoints(current: &[Arc<UpstreamEndpoint>], wanted: &[Endpoint]) -> bool {
    current.len() == wanted.len() && current.iter().zip(wanted).all(|(c, w)| c.same_config(w))
}

/// All clusters, plus the EDS endpoints by service name.
#[derive(Debug, Default)]
pub struct ClusterManager {
    clusters: ArcSwap<HashMap<String, Arc<UpstreamCluster>>>,
    eds: Mutex<HashMap<String, Arc<Vec<Endpoint>>>>,
    secrets: Arc<crate::tls::Secrets>,
}

impl ClusterManager {
    /// An empty manager (no secrets: upstream TLS needing the workload certificate fails).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty manager whose upstream TLS uses `secrets`.
    pub fn with_secrets(secrets: Arc<crate::tls::Secrets>) -> Self {
        ClusterManager {
            secrets,
            ..Self::default()
        }
    }

    /// The cluster named `name`, if configured.
    pub fn get(&self, name: &str) -> Option<Arc<UpstreamCluster>> {
        self.clusters.load().get(name).cloned()
    }

    /// Replaces the cluster set. Unchanged clusters are kept as they are; changed ones keep
    /// their pool (and its circuit-breaker counters) when the pool's settings are the same,
    /// and their endpoints' state. DNS clusters get a resolver task (needs a Tokio runtime).
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
                Some(p) if p.pool.settings_match(c) => p.pool.clone(),
                _ => Pool::with_secrets(c, self.secrets.clone()),
            };
            let current = previous
                .map(|p| p.endpoints.load_full())
                .unwrap_or_default();
            let endpoints = match &c.discovery {
                Discovery::Static(eps) => rebuild(&current, eps),
                Discovery::Eds { service_name } => eds
                    .get(service_name)
                    .map(|eps| rebuild(&current, eps))
                    .unwrap_or_default(),
                // Keep what was resolved until the new resolver answers.
                Discovery::Dns { .. } => current.to_vec(),
                Discovery::OriginalDst { .. } => Vec::new(),
            };
            let cluster = Arc::new(UpstreamCluster::new(c.clone(), endpoints, pool));
            if let Discovery::Dns { .. } = &c.discovery {
                dns::spawn_resolver(&cluster);
            }
            next.insert(c.name.clone(), cluster);
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
            cluster.set_endpoints(wanted);
        }
    }
}

impl UpstreamCluster {
    fn set_endpoints(&self, wanted: &[Endpoint]) {
        let current = self.endpoints.load();
        if !same_endpoints(&current, wanted) {
            self.endpoints.store(Arc::new(rebuild(&current, wanted)));
        }
    }
}

#[cfg(test)]
mod tests;
