//! The traffic policy in force for one cluster: the DestinationRule's top-level policy with its
//! port-level settings folded in, then the subset's policy (and its port-level settings) on
//! top, as Istio's `MergeTrafficPolicy` does. Port-level settings replace the load balancer,
//! connection pool, outlier detection and TLS as a whole (they do not inherit).

use trellis_api::networking::{DestinationRule, TrafficPolicy};

/// The effective policy for `port` of the whole service (`subset: None`) or a subset.
pub fn effective(
    rule: Option<&DestinationRule>,
    subset: Option<&str>,
    port: u32,
) -> Option<TrafficPolicy> {
    let rule = rule?;
    let top = rule
        .traffic_policy
        .as_ref()
        .map(|p| with_port(p.clone(), p, port));
    let subset_policy = subset
        .and_then(|name| rule.subsets.iter().find(|s| s.name == name))
        .and_then(|s| s.traffic_policy.as_ref());
    let Some(sp) = subset_policy else {
        return top;
    };
    let mut merged = top.unwrap_or_default();
    merged.port_level_settings.clear();
    if sp.load_balancer.is_some() {
        merged.load_balancer = sp.load_balancer.clone();
    }
    if sp.connection_pool.is_some() {
        merged.connection_pool = sp.connection_pool.clone();
    }
    if sp.outlier_detection.is_some() {
        merged.outlier_detection = sp.outlier_detection.clone();
    }
    if sp.tls.is_some() {
        merged.tls = sp.tls.clone();
    }
    if sp.tunnel.is_some() {
        merged.tunnel = sp.tunnel.clone();
    }
    if sp.proxy_protocol.is_some() {
        merged.proxy_protocol = sp.proxy_protocol.clone();
    }
    Some(with_port(merged, sp, port))
}

/// `policy` with the port-level settings of `source` for `port` applied (replacing).
fn with_port(mut policy: TrafficPolicy, source: &TrafficPolicy, port: u32) -> TrafficPolicy {
    if let Some(p) = source
        .port_level_settings
        .iter()
        .find(|p| p.port.and_then(|s| s.number) == Some(port))
    {
        policy.load_balancer = p.load_balancer.clone();
        policy.connection_pool = p.connection_pool.clone();
        policy.outlier_detection = p.outlier_detection.clone();
        policy.tls = p.tls.clone();
    }
    policy.port_level_settings.clear();
    policy
}
