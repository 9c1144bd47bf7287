//! Wires the control plane: config store → snapshot → ADS server, plus the monitoring API.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{error, info, warn};

use crate::model::{MeshModel, Snapshot};
use crate::monitoring::{self, ConfigReport, MonitoringState};
use crate::security::{Security, SecurityConfig};
use crate::store::{DirStore, Loaded, watch_dir};
use crate::xds::{AdsServer, SyncRegistry};

/// How the control plane is run.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// The directory of Istio YAML (universal mode).
    pub config_dir: PathBuf,
    /// Istio's mesh config (`MeshConfig` YAML), watched; Istio's defaults without one.
    pub mesh_config: Option<PathBuf>,
    /// Where ADS is served (Istio: 15010).
    pub xds_address: SocketAddr,
    /// Where readiness, debug and metrics are served (Istio: 15014).
    pub monitoring_address: SocketAddr,
    /// Where ADS and the certificate service are served over TLS (Istio: 15012).
    pub secure_xds_address: SocketAddr,
    /// The CA.
    pub security: SecurityConfig,
    /// Where gateway `credentialName`s are resolved (see
    /// [`crate::translate::gateway::resolve_credential`]); `None` resolves none.
    pub credentials_dir: Option<PathBuf>,
}

/// Runs the control plane until `shutdown` resolves.
pub async fn run(
    config: ControlPlaneConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut store = DirStore::new(&config.config_dir);
    if let Some(path) = &config.mesh_config {
        store = store.with_mesh_config(path);
    }
    let first = store.reload().context("initial config load")?;
    report(&first);
    let config_report = Arc::new(RwLock::new(ConfigReport::default()));
    let trust_domain = config.security.trust_domain.clone();
    let credentials_dir = config.credentials_dir.clone();
    let jwks_refresh = config.security.jwks_refresh_interval;
    let first_snapshot = publishable(
        &first,
        1,
        &config_report,
        (&trust_domain, jwks_refresh),
        &credentials_dir,
    );
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(first_snapshot));
    let registry = SyncRegistry::default();

    let xds_listener = TcpListener::bind(config.xds_address)
        .await
        .with_context(|| {
            format!(
                "binding xDS address {} (is another control plane running?)",
                config.xds_address
            )
        })?;
    let monitoring_listener = TcpListener::bind(config.monitoring_address)
        .await
        .with_context(|| format!("binding monitoring address {}", config.monitoring_address))?;
    let secure_listener = TcpListener::bind(config.secure_xds_address)
        .await
        .with_context(|| format!("binding secure xDS address {}", config.secure_xds_address))?;
    let security = Security::start(&config.security, &serving_ips(&config))?;
    info!(xds = %config.xds_address, secure_xds = %config.secure_xds_address,
        monitoring = %config.monitoring_address, config_dir = %config.config_dir.display(),
        ca_dir = %config.security.ca_dir.display(), "control plane serving");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let ads = AdsServer::new(snapshot_rx.clone(), registry.clone());
    let xds_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                AggregatedDiscoveryServiceServer::new(ads).max_decoding_message_size(16 << 20),
            )
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(xds_listener),
                stopped(stop_rx.clone()),
            ),
    );
    let tls =
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &security.serving.cert_chain_pem,
            &security.serving.key_pem,
        ));
    let secure_ads = AdsServer::new(snapshot_rx.clone(), registry.clone());
    let secure_task = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .context("configuring TLS for the secure xDS port")?
            .add_service(
                AggregatedDiscoveryServiceServer::new(secure_ads)
                    .max_decoding_message_size(16 << 20),
            )
            .add_service(security.certificates.clone())
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(secure_listener),
                stopped(stop_rx.clone()),
            ),
    );
    let monitoring_state = MonitoringState {
        snapshots: snapshot_rx,
        registry,
        config: config_report.clone(),
        certificates: security.certificates.counters(),
    };
    let monitoring_task = tokio::spawn(
        axum::serve(monitoring_listener, monitoring::router(monitoring_state))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let dir = config.config_dir.clone();
    let mesh_file = config.mesh_config.clone();
    let watch_task = tokio::spawn(async move {
        let mut generation = 1;
        watch_dir(&dir, mesh_file.as_deref(), move || {
            match store.reload() {
                Ok(loaded) => {
                    if loaded.changed {
                        generation += 1;
                        report(&loaded);
                        let snapshot = publishable(
                            &loaded,
                            generation,
                            &config_report,
                            (&trust_domain, jwks_refresh),
                            &credentials_dir,
                        );
                        info!(
                            generation,
                            resources = loaded.resources.len(),
                            "config changed; pushing"
                        );
                        return snapshot_tx.send(Arc::new(snapshot)).is_ok();
                    }
                    // Unchanged resources, but errors may have appeared or gone.
                    if let Ok(mut r) = config_report.write()
                        && r.diagnostics.errors != loaded.diagnostics.errors
                    {
                        report(&loaded);
                        r.validation_failures += loaded.diagnostics.errors.len() as u64;
                        r.diagnostics = loaded.diagnostics;
                    }
                }
                Err(error) => error!(%error, "config reload failed; keeping the last good config"),
            }
            true
        })
        .await;
    });

    shutdown.await;
    info!("control plane shutting down");
    let _ = stop_tx.send(true);
    watch_task.abort();
    xds_task
        .await
        .context("xDS server task")?
        .context("xDS server")?;
    secure_task
        .await
        .context("secure xDS server task")?
        .context("secure xDS server")?;
    monitoring_task
        .await
        .context("monitoring task")?
        .context("monitoring server")?;
    Ok(())
}

/// The IPs the serving certificate names: the secure port's own (unless it listens on all
/// addresses) and loopback.
fn serving_ips(config: &ControlPlaneConfig) -> Vec<std::net::IpAddr> {
    let mut ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    let ip = config.secure_xds_address.ip();
    if !ip.is_unspecified() && !ips.contains(&ip) {
        ips.push(ip);
    }
    ips
}

fn publishable(
    loaded: &Loaded,
    generation: u64,
    config_report: &Arc<RwLock<ConfigReport>>,
    (trust_domain, jwks_refresh): (&str, std::time::Duration),
    credentials_dir: &Option<PathBuf>,
) -> Snapshot {
    if let Ok(mut r) = config_report.write() {
        *r = ConfigReport {
            validation_failures: r.validation_failures + loaded.diagnostics.errors.len() as u64,
            generation,
            resources: loaded
                .resources
                .iter()
                .map(|res| format!("{} ({})", res.key(), res.source.file.display()))
                .collect(),
            diagnostics: loaded.diagnostics.clone(),
        };
    }
    Snapshot {
        generation,
        model: Arc::new(
            MeshModel::build(&loaded.resources)
                .with_trust_domain(trust_domain)
                .with_jwks_refresh_interval(jwks_refresh)
                .with_mesh_config(loaded.mesh.clone())
                .with_credentials_dir(credentials_dir.clone()),
        ),
        cache: Default::default(),
    }
}

fn report(loaded: &Loaded) {
    for e in &loaded.diagnostics.errors {
        error!("invalid config: {e}");
    }
    for w in &loaded.diagnostics.warnings {
        warn!("config warning: {w}");
    }
}
