//! RBAC counters, as Envoy's `http.<stat_prefix>.rbac.allowed` / `.denied` (Prometheus:
//! `envoy_http_rbac_allowed_total{envoy_http_conn_manager_prefix="..."}`, the counter suffix
//! added by the exposition format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The connection manager a decision was made in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RbacLabels {
    /// The HCM's `stat_prefix` (`inbound_0.0.0.0_9080`).
    pub envoy_http_conn_manager_prefix: String,
}

/// Requests the RBAC filters let through and stopped.
#[derive(Debug, Clone, Default)]
pub struct RbacStats {
    /// Let through by every RBAC filter of the chain.
    pub allowed: Family<RbacLabels, Counter>,
    /// Stopped by one of them.
    pub denied: Family<RbacLabels, Counter>,
}

impl RbacStats {
    /// Adds the counters to the proxy's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "envoy_http_rbac_allowed",
            "Requests allowed by the RBAC filters",
            self.allowed.clone(),
        );
        registry.register(
            "envoy_http_rbac_denied",
            "Requests denied by the RBAC filters",
            self.denied.clone(),
        );
    }

    /// Counts one decision of the connection manager with `stat_prefix`.
    pub fn record(&self, stat_prefix: &str, allowed: bool) {
        let labels = RbacLabels {
            envoy_http_conn_manager_prefix: stat_prefix.to_string(),
        };
        let family = if allowed { &self.allowed } else { &self.denied };
        family.get_or_create(&labels).inc();
    }
}
