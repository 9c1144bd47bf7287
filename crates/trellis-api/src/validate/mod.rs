//! Semantic validation after typing, following Istio's own rules.

mod authorization_policy;
pub use authorization_policy::target_refs_ignored;
mod common;
mod destination_rule;
mod others;
mod request_authentication;
mod service_entry;
mod virtual_service;
mod workload_entry;

use crate::resource::Spec;

/// Problems found in one spec, as (field path, reason) pairs; paths start at `spec`.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Problems that make the resource invalid.
    pub errors: Vec<(String, String)>,
    /// Suspicious but accepted settings.
    pub warnings: Vec<(String, String)>,
}

impl Findings {
    pub(crate) fn error(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push((path.into(), reason.into()));
    }

    pub(crate) fn warn(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push((path.into(), reason.into()));
    }
}

/// Checks one typed spec.
pub(crate) fn validate_spec(spec: &Spec, f: &mut Findings) {
    let p = "spec";
    match spec {
        Spec::VirtualService(vs) => virtual_service::validate(vs, p, f),
        Spec::DestinationRule(dr) => destination_rule::validate(dr, p, f),
        Spec::ServiceEntry(se) => service_entry::validate(se, p, f),
        Spec::WorkloadEntry(we) => workload_entry::validate(we, p, f),
        Spec::Gateway(gw) => others::gateway(gw, p, f),
        Spec::Sidecar(sc) => others::sidecar(sc, p, f),
        Spec::WorkloadGroup(wg) => others::workload_group(wg, p, f),
        Spec::PeerAuthentication(pa) => others::peer_authentication(pa, p, f),
        Spec::RequestAuthentication(ra) => request_authentication::validate(ra, p, f),
        Spec::AuthorizationPolicy(ap) => authorization_policy::validate(ap, p, f),
        Spec::Telemetry(t) => others::telemetry(t, p, f),
    }
}
