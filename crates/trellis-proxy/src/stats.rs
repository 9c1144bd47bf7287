//! Prometheus metrics (prometheus-client). Label values come from config names and response
//! codes only, so cardinality stays bounded by the config.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

/// Labels of `istio_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IstioRequestLabels {
    /// `source` (outbound) or `destination` (inbound).
    pub reporter: String,
    /// The destination service host, or `unknown`.
    pub destination_service: String,
    /// The HTTP status code.
    pub response_code: u16,
    /// Envoy-style response flags, `-` when none.
    pub response_flags: String,
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
    /// `istio_requests_total`.
    pub istio_requests: Family<IstioRequestLabels, Counter>,
    /// `trellis_xds_updates_total`.
    pub xds_updates: Family<XdsLabels, Counter>,
    /// `trellis_xds_connected`: 1 while the ADS stream is up.
    pub xds_connected: Gauge,
    /// `trellis_cert_expiry_seconds`: seconds until the workload certificate expires.
    pub cert_expiry_seconds: Gauge,
    /// `trellis_cert_rotations_total`: certificates replaced after the first one.
    pub cert_rotations: Counter,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let istio_requests = Family::<IstioRequestLabels, Counter>::default();
        let xds_updates = Family::<XdsLabels, Counter>::default();
        let xds_connected = Gauge::default();
        registry.register(
            "trellis_requests",
            "HTTP requests handled by the proxy",
            requests.clone(),
        );
        registry.register(
            "istio_requests",
            "Requests, with Istio's standard labels",
            istio_requests.clone(),
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
        Stats {
            registry,
            cert_expiry_seconds,
            cert_rotations,
            requests,
            istio_requests,
            xds_updates,
            xds_connected,
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
        let flags = flags.unwrap_or("-").to_string();
        self.requests
            .get_or_create(&RequestLabels {
                listener: listener.to_string(),
                cluster: cluster.unwrap_or("-").to_string(),
                response_code: code,
                response_flags: flags.clone(),
            })
            .inc();
        let reporter = if listener.starts_with("inbound") {
            "destination"
        } else {
            "source"
        };
        let destination_service = cluster
            .and_then(|c| c.rsplit('|').next())
            .filter(|h| !h.is_empty())
            .unwrap_or("unknown")
            .to_string();
        self.istio_requests
            .get_or_create(&IstioRequestLabels {
                reporter: reporter.to_string(),
                destination_service,
                response_code: code,
                response_flags: flags,
            })
            .inc();
    }

    /// Counts an applied (`ack`) or rejected (`nack`) xDS response.
    pub fn record_xds(&self, short_type: &str, ack: bool) {
        self.xds_updates
            .get_or_create(&XdsLabels {
                r#type: short_type.to_string(),
                result: if ack { "ack" } else { "nack" }.to_string(),
            })
            .inc();
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
