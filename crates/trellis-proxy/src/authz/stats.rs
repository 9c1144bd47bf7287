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

/// Requests the RBAC filters let through and stopped, counted per filter as Envoy does.
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

    /// Counts the decisions of a chain's RBAC filters for one request, as Envoy's filters
    /// share `http.<stat_prefix>.rbac.*`: `passed` filters let it through (AUDIT ones always
    /// do), and one denied it when `denied`.
    pub fn record_filters(&self, stat_prefix: &str, passed: usize, denied: bool) {
        let labels = RbacLabels {
            envoy_http_conn_manager_prefix: stat_prefix.to_string(),
        };
        if passed > 0 {
            self.allowed.get_or_create(&labels).inc_by(passed as u64);
        }
        if denied {
            self.denied.get_or_create(&labels).inc();
        }
    }
}
