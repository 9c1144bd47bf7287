//! Prometheus metrics (prometheus-client): the proxy's own (`trellis_*`: requests per listener
//! and cluster, downstream connections, xDS state, certificate) and Istio's standard metrics
//! (see [`crate::telemetry`]). `trellis_*` label values come from config names and response
//! codes only, so their cardinality stays bounded by the config.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::Telemetry;

/// Labels of `trellis_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The listener's name.
    pub listener: String,
    /// The cluster's name, or `-` when none was chosen.
    pub cluster: String,
    /// The HTTP status code.
    pub response_code: u16,
    /// Envoy-style response flags, `-` when none.
    pub response_flags: String,
}

/// Labels of `trellis_xds_config_version`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct XdsVersionLabels {
    /// `CDS`, `EDS`, `LDS` or `RDS`.
    pub r#type: String,
    /// The `version_info` last applied.
    pub version: String,
}

/// Labels of `trellis_xds_updates_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct XdsLabels {
    /// `CDS`, `EDS`, `LDS` or `RDS`.
    pub r#type: String,
    /// `ack` or `nack`.
    pub result: String,
}

/// The proxy's metrics.
#[derive(Debug)]
pub struct Stats {
    registry: Registry,
    /// `trellis_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// Istio's standard metrics and what labels them.
    pub telemetry: Arc<Telemetry>,
    /// `envoy_http_rbac_allowed_total` / `envoy_http_rbac_denied_total`.
    pub rbac: crate::authz::RbacStats,
    /// `envoy_http_ext_authz_{ok,denied,error,failure_mode_allowed}_total`.
    pub ext_authz: crate::ext_authz::ExtAuthzStats,
    /// `trellis_downstream_connections_active`.
    pub downstream_active: Gauge,
    /// `trellis_downstream_connections_total`.
    pub downstream_total: Counter,
    /// `trellis_xds_config_version{type,version}`: 1 for the version applied per type.
    pub xds_version: Family<XdsVersionLabels, Gauge>,
    xds_current: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// `trellis_xds_config_updated_timestamp_seconds{type}`: when each type was last applied.
    pub xds_updated: Family<XdsLabels, Gauge>,
    /// `trellis_xds_updates_total`.
    pub xds_updates: Family<XdsLabels, Counter>,
    /// `trellis_xds_connected`: 1 while the ADS stream is up.
    pub xds_connected: Gauge,
    /// `trellis_cert_expiry_seconds`: seconds until the workload certificate expires.
    pub cert_expiry_seconds: Gauge,
    /// `trellis_cert_rotations_total`: certificates replaced after the first one.
    pub cert_rotations: Counter,
    /// `trellis_protocol_detection_total{protocol,reason}`: what the listener inspectors saw.
    pub detection: crate::listener::DetectionStats,
    /// `trellis_tracing_spans_{sent,dropped}_total`: what became of finished spans.
    pub spans: crate::trace::ExportCounters,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Registers all metrics, for an anonymous proxy (Istio labels of its own side `unknown`).
    pub fn new() -> Self {
        Self::with_telemetry(Telemetry::default())
    }

    /// Registers all metrics, with `telemetry` labelling Istio's.
    pub fn with_telemetry(telemetry: Telemetry) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        telemetry.metrics.register(&mut registry);
        let rbac = crate::authz::RbacStats::default();
        rbac.register(&mut registry);
        let ext_authz = crate::ext_authz::ExtAuthzStats::default();
        ext_authz.register(&mut registry);
        let detection = crate::listener::DetectionStats::default();
        detection.register(&mut registry);
        // The DNS proxy's counters (`trellis_dns_requests_total`), one set per process.
        trellis_agent::dns::stats().register(&mut registry);
        let xds_updates = Family::<XdsLabels, Counter>::default();
        let xds_connected = Gauge::default();
        registry.register(
            "trellis_requests",
            "HTTP requests handled by the proxy",
            requests.clone(),
        );
        registry.register(
            "trellis_xds_updates",
            "xDS responses applied (ack) or rejected (nack)",
            xds_updates.clone(),
        );
        registry.register(
            "trellis_xds_connected",
            "1 while the ADS stream is connected",
            xds_connected.clone(),
        );
        let cert_expiry_seconds = Gauge::default();
        let cert_rotations = Counter::default();
        registry.register(
            "trellis_cert_expiry_seconds",
            "Seconds until the workload certificate expires (secure mode)",
            cert_expiry_seconds.clone(),
        );
        registry.register(
            "trellis_cert_rotations",
            "Workload certificates replaced by a renewed one",
            cert_rotations.clone(),
        );
        let downstream_active = Gauge::default();
        let downstream_total = Counter::default();
        let xds_version = Family::<XdsVersionLabels, Gauge>::default();
        let xds_updated = Family::<XdsLabels, Gauge>::default();
        registry.register(
            "trellis_downstream_connections_active",
            "Downstream connections open now",
            downstream_active.clone(),
        );
        registry.register(
            "trellis_downstream_connections",
            "Downstream connections accepted",
            downstream_total.clone(),
        );
        registry.register(
            "trellis_xds_config_version",
            "1 for the version_info applied per xDS type",
            xds_version.clone(),
        );
        registry.register(
            "trellis_xds_config_updated_timestamp_seconds",
            "When an xDS type was last applied (ack) or rejected (nack), Unix seconds",
            xds_updated.clone(),
        );
        let spans = crate::trace::ExportCounters::default();
        spans.register(&mut registry);
        registry.register(
            "trellis_access_log_lines_dropped",
            "Access log lines dropped: a log file's queue was full or its writer failed",
            crate::access_log::dropped_counter(),
        );
        Stats {
            registry,
            cert_expiry_seconds,
            cert_rotations,
            requests,
            telemetry: Arc::new(telemetry),
            rbac,
            ext_authz,
            downstream_active,
            downstream_total,
            xds_version,
            xds_current: Default::default(),
            xds_updated,
            xds_updates,
            xds_connected,
            detection,
            spans,
        }
    }

    /// Counts a finished request.
    pub fn record_request(
        &self,
        listener: &str,
        cluster: Option<&str>,
        code: u16,
        flags: Option<&str>,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                listener: listener.to_string(),
                cluster: cluster.unwrap_or("-").to_string(),
                response_code: code,
                response_flags: flags.unwrap_or("-").to_string(),
            })
            .inc();
    }

    /// Counts an applied (`ack`) or rejected (`nack`) xDS response.
    pub fn record_xds(&self, short_type: &str, ack: bool) {
        let labels = XdsLabels {
            r#type: short_type.to_string(),
            result: if ack { "ack" } else { "nack" }.to_string(),
        };
        self.xds_updates.get_or_create(&labels).inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.xds_updated.get_or_create(&labels).set(now);
    }

    /// Remembers the version applied for an xDS type (one series per type: the old version's
    /// series is removed).
    pub fn record_xds_version(&self, short_type: &str, version: &str) {
        let mut current = self.xds_current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = current.insert(short_type.to_string(), version.to_string())
            && old != version
        {
            self.xds_version.remove(&XdsVersionLabels {
                r#type: short_type.to_string(),
                version: old,
            });
        }
        self.xds_version
            .get_or_create(&XdsVersionLabels {
                r#type: short_type.to_string(),
                version: version.to_string(),
            })
            .set(1);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A downstream connection, counted in `trellis_downstream_connections_active` until dropped.
#[derive(Debug)]
pub struct DownstreamGuard(Gauge);

impl Stats {
    /// Counts a new downstream connection; it stays active until the guard drops.
    pub fn downstream_opened(&self) -> DownstreamGuard {
        self.downstream_total.inc();
        self.downstream_active.inc();
        DownstreamGuard(self.downstream_active.clone())
    }
}

impl Drop for DownstreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
