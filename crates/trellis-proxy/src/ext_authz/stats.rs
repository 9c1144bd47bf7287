//! External authorization counters, as Envoy's `http.<stat_prefix>.ext_authz.ok` / `.denied` /
//! `.error` / `.failure_mode_allowed` (Prometheus: `envoy_http_ext_authz_ok_total{
//! envoy_http_conn_manager_prefix="..."}`, the counter suffix added by the exposition format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The connection manager a check was made in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExtAuthzLabels {
    /// The HCM's `stat_prefix` (`inbound_0.0.0.0_9080`).
    pub envoy_http_conn_manager_prefix: String,
}

/// Checks by outcome.
#[derive(Debug, Clone, Default)]
pub struct ExtAuthzStats {
    /// Allowed by the authorizer.
    pub ok: Family<ExtAuthzLabels, Counter>,
    /// Denied by the authorizer.
    pub denied: Family<ExtAuthzLabels, Counter>,
    /// The check failed (unreachable, timeout, malformed answer).
    pub error: Family<ExtAuthzLabels, Counter>,
    /// Failed checks let through by `failure_mode_allow`.
    pub failure_mode_allowed: Family<ExtAuthzLabels, Counter>,
}

/// One check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Allowed.
    Ok,
    /// Denied.
    Denied,
    /// Failed and denied (`status_on_error`).
    Error,
    /// Failed and let through.
    FailureModeAllowed,
}

impl ExtAuthzStats {
    /// Adds the counters to the proxy's registry.
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, family) in [
            (
                "envoy_http_ext_authz_ok",
                "Requests the external authorizer allowed",
                &self.ok,
            ),
            (
                "envoy_http_ext_authz_denied",
                "Requests the external authorizer denied",
                &self.denied,
            ),
            (
                "envoy_http_ext_authz_error",
                "External authorization checks that failed",
                &self.error,
            ),
            (
                "envoy_http_ext_authz_failure_mode_allowed",
                "Failed checks let through by failure_mode_allow",
                &self.failure_mode_allowed,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
    }

    /// Counts one check of the connection manager with `stat_prefix` (a failure let through
    /// counts as an error too, as in Envoy).
    pub fn record(&self, stat_prefix: &str, outcome: CheckOutcome) {
        let labels = ExtAuthzLabels {
            envoy_http_conn_manager_prefix: stat_prefix.to_string(),
        };
        match outcome {
            CheckOutcome::Ok => self.ok.get_or_create(&labels).inc(),
            CheckOutcome::Denied => self.denied.get_or_create(&labels).inc(),
            CheckOutcome::Error => self.error.get_or_create(&labels).inc(),
            CheckOutcome::FailureModeAllowed => {
                self.error.get_or_create(&labels).inc();
                self.failure_mode_allowed.get_or_create(&labels).inc()
            }
        };
    }
}
