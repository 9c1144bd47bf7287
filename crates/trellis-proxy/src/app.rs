//! Wires the proxy together: stats, clusters, routes, listeners, the admin API and the ADS client.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::oneshot;
use trellis_xds::type_url;

use crate::ProxyConfig;
use crate::admin::AdminSource;
use crate::config::{Cluster, Endpoints, Listener, RouteTable};
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
}

impl Dataplane {
    fn dump(&self) -> std::sync::MutexGuard<'_, Dump> {
        self.dump.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ConfigSink for Dataplane {
    fn apply_clusters(&self, clusters: Vec<Cluster>) {
        self.clusters.apply_clusters(&clusters);
        let mut d = self.dump();
        d.clusters = clusters;
        d.clusters_applied = true;
    }

    fn apply_endpoints(&self, endpoints: Vec<Endpoints>) {
        self.clusters.apply_endpoints(&endpoints);
        self.dump().endpoints = endpoints;
    }

    async fn apply_listeners(&self, listeners: Vec<Listener>) -> Result<(), String> {
        self.listeners
            .apply(listeners.clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut d = self.dump();
        d.listeners = listeners;
        d.listeners_applied = true;
        Ok(())
    }

    fn apply_routes(&self, tables: Vec<RouteTable>) {
        let shared: Vec<Arc<RouteTable>> = tables.iter().cloned().map(Arc::new).collect();
        self.routes.replace(&shared);
        self.dump().route_tables = tables;
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
        let d = self.dump();
        d.clusters_applied
            && d.listeners_applied
            && (!self.secure || self.secrets.workload().is_some())
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
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    /// The address the admin API is bound to (useful when configured with port 0).
    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// Stops the proxy: listeners stop accepting (connections finish), the admin API and the
    /// ADS client stop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
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
            clusters,
            stats: stats.clone(),
            secrets: secrets.clone(),
            jwks: Arc::new(crate::authn::JwksCache::new()),
            tracer: Arc::new(crate::trace::Tracer::new(
                config.node.node_id(),
                String::new(),
                format!("{}.{}", config.node.workload, config.node.namespace),
                Some(config.node.ip.to_string()),
            )),
        }),
        stats,
        dump: Mutex::new(Dump::default()),
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

    let (stop, stop_rx) = oneshot::channel::<()>();
    let (admin_stop, admin_stop_rx) = oneshot::channel::<()>();
    let admin = tokio::spawn(crate::admin::serve(
        admin_listener,
        dataplane.clone(),
        async move {
            let _ = admin_stop_rx.await;
        },
    ));
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
        let _ = stop_rx.await;
        ads.abort();
        if let Some(identity) = identity {
            identity.abort();
        }
        dataplane.listeners.stop_all().await;
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
        stop: Some(stop),
        task,
    })
}

/// Runs the proxy until `shutdown` resolves.
pub async fn run(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = start(config).await?;
    shutdown.await;
    handle.shutdown().await;
    Ok(())
}
