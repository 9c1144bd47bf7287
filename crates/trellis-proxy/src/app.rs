//! Wires the proxy together: stats, clusters, routes, listeners, the admin API, the health port,
//! the ADS client, and the drain on shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::sync::oneshot;
use trellis_xds::type_url;

use crate::ProxyConfig;
use crate::admin::AdminSource;
use crate::config::{Cluster, Endpoints, Listener, RouteTable};
use crate::lifecycle::drain::{DrainOutcome, drain_listeners};
use crate::lifecycle::health::Applied;
use crate::lifecycle::{Drain, Readiness, ReadinessSource};
use crate::listener::{ListenerManager, Shared};
use crate::routing::RouteStore;
use crate::stats::Stats;
use crate::tls::Secrets;
use crate::upstream::ClusterManager;
use crate::xds::client::{AdsClient, ConfigSink, XdsEvent};

/// Per-type xDS status shown in `/config_dump`.
#[derive(Debug, Default, Clone, Serialize)]
struct TypeStatus {
    version: Option<String>,
    last_nack: Option<Nack>,
}

#[derive(Debug, Clone, Serialize)]
struct Nack {
    version: String,
    error: String,
}

#[derive(Debug, Default, Serialize)]
struct Dump {
    connected: bool,
    listeners: Vec<Listener>,
    route_tables: Vec<RouteTable>,
    clusters: Vec<Cluster>,
    endpoints: Vec<Endpoints>,
    xds: BTreeMap<&'static str, TypeStatus>,
    #[serde(skip)]
    clusters_applied: bool,
    #[serde(skip)]
    listeners_applied: bool,
}

/// The running data plane: what the ADS client feeds and the admin API reads.
struct Dataplane {
    node_id: String,
    secrets: Arc<Secrets>,
    secure: bool,
    clusters: Arc<ClusterManager>,
    routes: Arc<RouteStore>,
    listeners: ListenerManager,
    stats: Arc<Stats>,
    dump: Mutex<Dump>,
    /// Set once the first full config was applied (readiness never goes back to initializing).
    initialized: AtomicBool,
    drain: Drain,
    /// Listener warming: LDS received before the first full config, bound once it is complete.
    warming: Option<Warming>,
}

/// Listeners held back until the first full config is complete (Envoy's warming at startup).
#[derive(Default)]
struct Warming {
    /// The newest LDS set not bound yet; taken (under the lock) by whoever binds next.
    pending: tokio::sync::Mutex<Option<Vec<Listener>>>,
    /// Wakes the task that binds `pending` once the config is complete.
    warmed: tokio::sync::Notify,
    /// Set once listeners were bound after warming: only then is the proxy ready.
    bound: AtomicBool,
}

impl Dataplane {
    fn dump(&self) -> std::sync::MutexGuard<'_, Dump> {
        self.dump.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the first full config still lacks (`None` once it was complete at some point).
    fn missing_config(&self) -> Option<String> {
        if self.initialized.load(Ordering::Acquire) {
            return None;
        }
        let d = self.dump();
        let missing = Applied {
            clusters: d.clusters_applied.then_some(d.clusters.as_slice()),
            endpoints: &d.endpoints,
            listeners: d.listeners_applied.then_some(d.listeners.as_slice()),
            routes: &d.route_tables,
            certificate: self.secure.then(|| self.secrets.workload().is_some()),
        }
        .missing();
        if missing.is_none() && !self.initialized.swap(true, Ordering::AcqRel) {
            tracing::info!("first full config applied: ready");
            if let Some(warming) = &self.warming {
                warming.warmed.notify_one();
            }
        }
        missing
    }
}

impl Dataplane {
    /// Binds (or updates) the listeners and records them.
    async fn bind_listeners(&self, listeners: Vec<Listener>) -> Result<(), String> {
        self.listeners
            .apply(listeners.clone())
            .await
            .map_err(|e| e.to_string())?;
        {
            let mut d = self.dump();
            d.listeners = listeners;
            d.listeners_applied = true;
        }
        if let Some(warming) = &self.warming {
            warming.bound.store(true, Ordering::Release);
        }
        self.missing_config();
        Ok(())
    }

    /// Binds the listeners held back while warming, once the first config is complete.
    async fn bind_when_warm(&self) {
        let Some(warming) = &self.warming else {
            return;
        };
        warming.warmed.notified().await;
        let mut pending = warming.pending.lock().await;
        if let Some(listeners) = pending.take()
            && !self.drain.is_draining()
            && let Err(error) = self.bind_listeners(listeners).await
        {
            tracing::warn!(%error, "warmed listeners could not be bound");
        }
    }
}

impl ReadinessSource for Dataplane {
    fn readiness(&self) -> Readiness {
        if self.drain.is_draining() {
            return Readiness::Draining;
        }
        match self.missing_config() {
            Some(why) => Readiness::Initializing(why),
            None if self
                .warming
                .as_ref()
                .is_some_and(|w| !w.bound.load(Ordering::Acquire)) =>
            {
                Readiness::Initializing("binding the warmed listeners".into())
            }
            None => Readiness::Ready,
        }
    }
}

impl ConfigSink for Dataplane {
    fn apply_clusters(&self, clusters: Vec<Cluster>) {
        self.clusters.apply_clusters(&clusters);
        {
            let mut d = self.dump();
            d.clusters = clusters;
            d.clusters_applied = true;
        }
        self.missing_config();
    }

    fn apply_endpoints(&self, endpoints: Vec<Endpoints>) {
        self.clusters.apply_endpoints(&endpoints);
        self.dump().endpoints = endpoints;
        self.missing_config();
    }

    async fn apply_listeners(&self, listeners: Vec<Listener>) -> Result<(), String> {
        // A draining proxy opens no listener again.
        if self.drain.is_draining() {
            tracing::debug!("draining: listener update not applied");
            return Ok(());
        }
        if let Some(warming) = &self.warming {
            let mut pending = warming.pending.lock().await;
            if !self.initialized.load(Ordering::Acquire) {
                {
                    let mut d = self.dump();
                    d.listeners = listeners.clone();
                    d.listeners_applied = true;
                }
                if self.missing_config().is_some() {
                    tracing::debug!("listeners warming: bound once the first config is complete");
                    *pending = Some(listeners);
                    return Ok(());
                }
            }
            // Bound below; an older held-back set must not be bound after it.
            *pending = None;
            return self.bind_listeners(listeners).await;
        }
        self.bind_listeners(listeners).await
    }

    fn apply_routes(&self, tables: Vec<RouteTable>) {
        let shared: Vec<Arc<RouteTable>> = tables.iter().cloned().map(Arc::new).collect();
        self.routes.replace(&shared);
        self.dump().route_tables = tables;
        self.missing_config();
    }

    fn xds_event(&self, event: XdsEvent) {
        let mut d = self.dump();
        match event {
            XdsEvent::Connected => {
                d.connected = true;
                self.stats.xds_connected.set(1);
            }
            XdsEvent::Disconnected { .. } => {
                d.connected = false;
                self.stats.xds_connected.set(0);
            }
            XdsEvent::Accepted { type_url, version } => {
                self.stats.record_xds(type_url::short_name(type_url), true);
                self.stats
                    .record_xds_version(type_url::short_name(type_url), &version);
                d.xds
                    .entry(type_url::short_name(type_url))
                    .or_default()
                    .version = Some(version);
            }
            XdsEvent::Rejected {
                type_url,
                version,
                error,
            } => {
                let short = type_url::short_name(&type_url);
                self.stats.record_xds(short, false);
                d.xds.entry(short).or_default().last_nack = Some(Nack { version, error });
            }
        }
    }
}

impl AdminSource for Dataplane {
    fn ready(&self) -> bool {
        self.readiness().is_ready()
    }

    fn config_dump(&self) -> serde_json::Value {
        let d = self.dump();
        let mut v = serde_json::to_value(&*d)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
        if let Some(map) = v.as_object_mut() {
            map.insert("node_id".into(), self.node_id.clone().into());
        }
        v
    }

    fn prometheus(&self) -> String {
        if let Some(w) = self.secrets.workload() {
            let left = match w.not_after.duration_since(std::time::SystemTime::now()) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            };
            self.stats.cert_expiry_seconds.set(left);
        }
        let rotations = self.secrets.rotations();
        let reported = self.stats.cert_rotations.get();
        if rotations > reported {
            self.stats.cert_rotations.inc_by(rotations - reported);
        }
        self.stats.encode()
    }

    fn listeners(&self) -> Pin<Box<dyn Future<Output = serde_json::Value> + Send + '_>> {
        Box::pin(async move {
            serde_json::to_value(self.listeners.bound().await).unwrap_or(serde_json::Value::Null)
        })
    }
}

/// A started proxy.
#[derive(Debug)]
pub struct ProxyHandle {
    admin_address: SocketAddr,
    health_address: Option<SocketAddr>,
    drain_duration: Duration,
    /// Tells the proxy to stop, draining for at most the given period.
    stop: Option<oneshot::Sender<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    /// The address the admin API is bound to (useful when configured with port 0).
    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// The address the health port (`/healthz/ready`) is bound to, if served.
    pub fn health_address(&self) -> Option<SocketAddr> {
        self.health_address
    }

    /// Stops the proxy at once: listeners stop accepting and open connections are asked to
    /// finish, without waiting for them; the admin API and the ADS client stop.
    pub async fn shutdown(self) {
        self.stop_within(Duration::ZERO).await;
    }

    /// Drains, then stops: readiness turns `503`, listeners close, and open connections get
    /// until the configured drain period to finish (see [`crate::lifecycle::drain`]).
    pub async fn drain(self) {
        let period = self.drain_duration;
        self.stop_within(period).await;
    }

    async fn stop_within(mut self, period: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(period);
        }
        let _ = (&mut self.task).await;
    }
}

/// Binds the admin address and starts everything; returns once the admin API is listening.
pub async fn start(config: ProxyConfig) -> anyhow::Result<ProxyHandle> {
    let principal = config
        .security
        .as_ref()
        .map(|s| crate::identity::identity_of(&config.node, &s.trust_domain).to_string());
    let stats = Arc::new(Stats::with_telemetry(crate::telemetry::Telemetry::new(
        Some(&config.node),
        principal,
        crate::telemetry::IstioMetrics::default(),
    )));
    let secrets = Arc::new(Secrets::new());
    let clusters = Arc::new(ClusterManager::with_secrets(secrets.clone()));
    let routes = Arc::new(RouteStore::new());
    let dataplane = Arc::new(Dataplane {
        node_id: config.node.node_id(),
        secrets: secrets.clone(),
        secure: config.security.is_some(),
        clusters: clusters.clone(),
        routes: routes.clone(),
        listeners: ListenerManager::new(Shared {
            routes,
            clusters: clusters.clone(),
            stats: stats.clone(),
            secrets: secrets.clone(),
            jwks: Arc::new(crate::authn::JwksCache::with_clusters(clusters.clone())),
            tracer: Arc::new(crate::trace::Tracer::new(
                config.node.node_id(),
                String::new(),
                format!("{}.{}", config.node.workload, config.node.namespace),
                Some(config.node.ip.to_string()),
                stats.spans.clone(),
            )),
        }),
        stats,
        dump: Mutex::new(Dump::default()),
        initialized: AtomicBool::new(false),
        drain: Drain::new(),
        warming: config.lifecycle.warm_listeners.then(Warming::default),
    });
    let warm = tokio::spawn({
        let dataplane = dataplane.clone();
        async move { dataplane.bind_when_warm().await }
    });
    let admin_listener = tokio::net::TcpListener::bind(config.admin_address)
        .await
        .with_context(|| format!("binding the admin address {}", config.admin_address))?;
    let admin_address = admin_listener.local_addr().context("admin local address")?;
    let xds = config
        .security
        .as_ref()
        .map_or(config.xds_address, |s| s.ca_address);
    tracing::info!(%admin_address, %xds, secure = config.security.is_some(), node = %config.node.node_id(), "proxy starting");

    let (stop, stop_rx) = oneshot::channel::<Duration>();
    let (admin_stop, admin_stop_rx) = oneshot::channel::<()>();
    let admin = tokio::spawn(crate::admin::serve(
        admin_listener,
        dataplane.clone(),
        async move {
            let _ = admin_stop_rx.await;
        },
    ));
    let (health, health_address) = match config.lifecycle.health_address {
        None => (None, None),
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the health address {address}"))?;
            let bound = listener.local_addr().context("health local address")?;
            let server = tokio::spawn(crate::lifecycle::health::serve(
                listener,
                dataplane.clone(),
                std::future::pending(),
            ));
            (Some(server), Some(bound))
        }
    };
    let metrics_servers = crate::telemetry::merge::serve_ports(
        &config.metrics,
        config.node.app_ip(),
        dataplane.clone(),
    )
    .await;
    let (ads_client, identity) = match &config.security {
        None => (
            AdsClient::new(config.node.to_node(), config.xds_address, dataplane.clone()),
            None,
        ),
        Some(security) => {
            let id = crate::identity::identity_of(&config.node, &security.trust_domain);
            let identity = tokio::spawn(crate::identity::maintain(
                security.clone(),
                id,
                secrets.clone(),
            ));
            (
                AdsClient::new(
                    config.node.to_node(),
                    security.ca_address,
                    dataplane.clone(),
                )
                .with_tls(security.root_cert_pem.clone()),
                Some(identity),
            )
        }
    };
    let ads = tokio::spawn(ads_client.run());
    let task = tokio::spawn(async move {
        // A dropped handle stops at once.
        let period = stop_rx.await.unwrap_or(Duration::ZERO);
        dataplane.drain.start();
        // ADS and the certificate keep running while in-flight requests finish.
        match drain_listeners(&dataplane.listeners, period).await {
            DrainOutcome::Completed(took) => {
                tracing::info!(?took, "drained: every connection finished")
            }
            DrainOutcome::TimedOut(open) if period > Duration::ZERO => {
                tracing::warn!(open, ?period, "drain period over: closing open connections")
            }
            DrainOutcome::TimedOut(_) => {}
        }
        ads.abort();
        warm.abort();
        if let Some(identity) = identity {
            identity.abort();
        }
        if let Some(health) = health {
            health.abort();
        }
        for server in metrics_servers {
            server.abort();
        }
        let _ = admin_stop.send(());
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "admin server failed"),
            Err(e) => tracing::warn!(error = %e, "admin task failed"),
        }
        tracing::info!("proxy stopped");
    });
    Ok(ProxyHandle {
        admin_address,
        health_address,
        drain_duration: config.lifecycle.drain_duration,
        stop: Some(stop),
        task,
    })
}

/// Runs the proxy until `shutdown` resolves, then drains (within the configured period) and
/// stops.
pub async fn run(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = start(config).await?;
    shutdown.await;
    tracing::info!("shutdown requested: draining");
    handle.drain().await;
    Ok(())
}
