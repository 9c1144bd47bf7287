//! The immutable snapshot every proxy's config is computed from: validated resources plus the
//! service registry derived from them. A new snapshot replaces the old one as a whole.

use std::sync::Arc;

use std::collections::BTreeMap;

use trellis_api::networking::{DestinationRule, Gateway, Sidecar, VirtualService, WorkloadEntry};
use trellis_api::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use trellis_api::{Resource, Spec};
use trellis_xds::NodeIdentity;

use crate::registry::{ServiceRegistry, exported_to};

/// Istio's root namespace: a Sidecar there without a selector is the mesh-wide default.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// One generation of the mesh config.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Grows with every accepted change; proxies report the generation they have.
    pub generation: u64,
    /// What the proxies' config is computed from.
    pub model: Arc<MeshModel>,
    /// Config parts shared between proxies, translated from `model` on first use (so the
    /// cache is dropped with its generation).
    pub cache: crate::xds::ConfigCache,
}

/// A config object with its identity, for the translators.
#[derive(Debug, Clone)]
pub struct Named<T> {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// The spec.
    pub spec: T,
}

impl<T> Named<T> {
    fn of(resource: &Resource, spec: T) -> Self {
        Named {
            name: resource.meta.name.clone(),
            namespace: resource.meta.namespace.clone(),
            spec,
        }
    }
}

/// The validated mesh: services with endpoints, and the routing and policy resources.
#[derive(Debug, Default)]
pub struct MeshModel {
    /// Services and their endpoints.
    pub registry: ServiceRegistry,
    /// VirtualServices, sorted by namespace and name (Istio's tie-break for conflicts).
    pub virtual_services: Vec<Named<VirtualService>>,
    /// DestinationRules, sorted by namespace and name.
    pub destination_rules: Vec<Named<DestinationRule>>,
    /// Sidecars, sorted by namespace and name.
    pub sidecars: Vec<Named<Sidecar>>,
    /// WorkloadEntries, sorted by namespace and name (a proxy finds its own by IP).
    pub workload_entries: Vec<Named<WorkloadEntry>>,
    /// PeerAuthentications, sorted by namespace and name (Istio's tie-break: the oldest wins).
    pub peer_authentications: Vec<Named<PeerAuthentication>>,
    /// AuthorizationPolicies, sorted by namespace and name.
    pub authorization_policies: Vec<Named<AuthorizationPolicy>>,
    /// RequestAuthentications, sorted by namespace and name.
    pub request_authentications: Vec<Named<RequestAuthentication>>,
    /// The trust domain of workload identities (`spiffe://TRUST-DOMAIN/ns/NS/sa/SA`).
    pub trust_domain: String,
    /// Telemetry resources, sorted by namespace and name.
    pub telemetries: Vec<Named<trellis_api::telemetry::Telemetry>>,
    /// Istio's mesh config (defaults without a `--mesh-config` file).
    pub mesh: Arc<trellis_api::MeshConfig>,
    /// Gateways, sorted by namespace and name (routers pick theirs by `selector`).
    pub gateways: Vec<Named<Gateway>>,
    /// Where gateway `credentialName`s are resolved: `DIR/NAME/` holds `tls.crt`, `tls.key`
    /// and `ca.crt` (or `cert`, `key`, `cacert`); `None` resolves none.
    pub credentials_dir: Option<std::path::PathBuf>,
    /// How often proxies fetch a RequestAuthentication's `jwksUri` again (the remote JWKS
    /// `cache_duration`; the control plane's `--jwks-refresh-interval`).
    pub jwks_refresh_interval: std::time::Duration,
}

/// The trust domain when none is configured (Istio's).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// What the control plane knows about the proxy it generates config for: its identity, plus
/// labels and locality from its WorkloadEntry (found by IP), as Istio merges them.
#[derive(Debug, Clone)]
pub struct ProxyView<'n> {
    /// The node as it introduced itself.
    pub node: &'n NodeIdentity,
    /// Its labels: the node's, completed by its WorkloadEntry's.
    pub labels: BTreeMap<String, String>,
    /// `region/zone/subzone` from its WorkloadEntry.
    pub locality: Option<String>,
}

impl ProxyView<'_> {
    /// The proxy's namespace.
    pub fn namespace(&self) -> &str {
        &self.node.namespace
    }

    /// Whether the proxy carries every label of `selector`.
    pub fn has_labels(&self, selector: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

impl MeshModel {
    /// Builds the model from a set of already validated resources.
    pub fn build(resources: &[Resource]) -> Self {
        let mut virtual_services = Vec::new();
        let mut destination_rules = Vec::new();
        let mut sidecars = Vec::new();
        let mut workload_entries = Vec::new();
        let mut peer_authentications = Vec::new();
        let mut authorization_policies = Vec::new();
        let mut request_authentications = Vec::new();
        let mut telemetries = Vec::new();
        let mut gateways = Vec::new();
        for resource in resources {
            match &resource.spec {
                Spec::VirtualService(vs) => virtual_services.push(Named::of(resource, vs.clone())),
                Spec::DestinationRule(dr) => {
                    destination_rules.push(Named::of(resource, dr.clone()))
                }
                Spec::Sidecar(sc) => sidecars.push(Named::of(resource, sc.clone())),
                Spec::WorkloadEntry(we) => workload_entries.push(Named::of(resource, we.clone())),
                Spec::PeerAuthentication(pa) => {
                    peer_authentications.push(Named::of(resource, pa.clone()))
                }
                Spec::AuthorizationPolicy(ap) => {
                    authorization_policies.push(Named::of(resource, ap.clone()))
                }
                Spec::RequestAuthentication(ra) => {
                    request_authentications.push(Named::of(resource, ra.clone()))
                }
                Spec::Telemetry(t) => telemetries.push(Named::of(resource, t.clone())),
                Spec::Gateway(g) => gateways.push(Named::of(resource, g.clone())),
                _ => {}
            }
        }
        let key = |n: &String, ns: &String| (ns.clone(), n.clone());
        virtual_services.sort_by_key(|v| key(&v.name, &v.namespace));
        destination_rules.sort_by_key(|d| key(&d.name, &d.namespace));
        sidecars.sort_by_key(|d| key(&d.name, &d.namespace));
        workload_entries.sort_by_key(|d| key(&d.name, &d.namespace));
        peer_authentications.sort_by_key(|d| key(&d.name, &d.namespace));
        authorization_policies.sort_by_key(|d| key(&d.name, &d.namespace));
        request_authentications.sort_by_key(|d| key(&d.name, &d.namespace));
        telemetries.sort_by_key(|d| key(&d.name, &d.namespace));
        gateways.sort_by_key(|d| key(&d.name, &d.namespace));
        MeshModel {
            registry: ServiceRegistry::build(resources),
            virtual_services,
            destination_rules,
            sidecars,
            workload_entries,
            peer_authentications,
            authorization_policies,
            request_authentications,
            trust_domain: DEFAULT_TRUST_DOMAIN.to_string(),
            telemetries,
            mesh: Arc::default(),
            gateways,
            credentials_dir: None,
            jwks_refresh_interval: crate::security::DEFAULT_JWKS_REFRESH_INTERVAL,
        }
    }

    /// The same model with proxies refreshing remote JWKS every `interval`.
    pub fn with_jwks_refresh_interval(mut self, interval: std::time::Duration) -> Self {
        self.jwks_refresh_interval = interval;
        self
    }

    /// The same model resolving gateway credentials in `dir` (see [`MeshModel::credentials_dir`]).
    pub fn with_credentials_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.credentials_dir = dir;
        self
    }

    /// The same model under the mesh config `mesh`.
    pub fn with_mesh_config(mut self, mesh: Arc<trellis_api::MeshConfig>) -> Self {
        self.mesh = mesh;
        self
    }

    /// The same model with workload identities in `trust_domain`.
    pub fn with_trust_domain(mut self, trust_domain: &str) -> Self {
        self.trust_domain = trust_domain.to_string();
        self
    }

    /// The proxy as the translators see it: labels and locality completed from the
    /// WorkloadEntry with its IP (in its namespace).
    pub fn proxy_view<'n>(&self, node: &'n NodeIdentity) -> ProxyView<'n> {
        let ip = node.ip.to_string();
        let entry = self
            .workload_entries
            .iter()
            .filter(|we| we.spec.address.as_deref() == Some(ip.as_str()))
            .min_by_key(|we| we.namespace != node.namespace);
        let mut labels = entry.map(|we| we.spec.labels.clone()).unwrap_or_default();
        labels.extend(node.labels.clone());
        ProxyView {
            node,
            labels,
            locality: entry.and_then(|we| we.spec.locality.clone()),
        }
    }

    /// The Sidecar that scopes a proxy, as Istio picks it: one in its namespace whose selector
    /// matches it, else its namespace's default (no selector), else the root namespace's default.
    pub fn sidecar_for(&self, proxy: &ProxyView<'_>) -> Option<&Named<Sidecar>> {
        let ns = proxy.namespace();
        self.sidecars
            .iter()
            .find(|s| {
                s.namespace == ns
                    && s.spec
                        .workload_selector
                        .as_ref()
                        .is_some_and(|sel| !sel.labels.is_empty() && proxy.has_labels(&sel.labels))
            })
            .or_else(|| {
                self.sidecars.iter().find(|s| {
                    s.namespace == ns
                        && s.spec
                            .workload_selector
                            .as_ref()
                            .is_none_or(|sel| sel.labels.is_empty())
                })
            })
            .or_else(|| {
                self.sidecars
                    .iter()
                    .find(|s| s.namespace == ROOT_NAMESPACE && s.spec.workload_selector.is_none())
            })
    }

    /// The DestinationRule for a host as seen by a proxy: visible to it (`exportTo`), applying
    /// to it (`workloadSelector`), preferring the proxy's namespace, then the service's, then any
    /// (first by namespace/name), as Istio does.
    pub fn destination_rule_for_proxy(
        &self,
        host: &str,
        proxy: &ProxyView<'_>,
    ) -> Option<&Named<DestinationRule>> {
        let service_ns = self.registry.service(host).map(|s| s.namespace.clone());
        let candidates: Vec<&Named<DestinationRule>> = self
            .destination_rules
            .iter()
            .filter(|dr| trellis_api::resolve_host(&dr.spec.host, &dr.namespace) == host)
            .filter(|dr| exported_to(&dr.spec.export_to, &dr.namespace, proxy.namespace()))
            .filter(|dr| match &dr.spec.workload_selector {
                Some(sel) => {
                    dr.namespace == proxy.namespace() && proxy.has_labels(&sel.match_labels)
                }
                None => true,
            })
            .collect();
        candidates
            .iter()
            .find(|dr| dr.namespace == proxy.namespace() && dr.spec.workload_selector.is_some())
            .or_else(|| {
                candidates
                    .iter()
                    .find(|dr| dr.namespace == proxy.namespace())
            })
            .or_else(|| {
                candidates
                    .iter()
                    .find(|dr| Some(&dr.namespace) == service_ns.as_ref())
            })
            .or_else(|| candidates.first())
            .copied()
    }

    /// The VirtualService that routes a host for a sidecar: bound to `mesh`, visible to the
    /// proxy (`exportTo`), an exact host before a wildcard, the first by namespace/name.
    pub fn virtual_service_for_proxy(
        &self,
        host: &str,
        proxy: &ProxyView<'_>,
    ) -> Option<&Named<VirtualService>> {
        let candidates = || {
            self.virtual_services.iter().filter(|vs| {
                let for_mesh =
                    vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh");
                for_mesh
                    && !vs.spec.hosts.is_empty()
                    && exported_to(&vs.spec.export_to, &vs.namespace, proxy.namespace())
            })
        };
        candidates()
            .find(|vs| {
                vs.spec
                    .hosts
                    .iter()
                    .any(|h| trellis_api::resolve_host(h, &vs.namespace) == host)
            })
            .or_else(|| {
                // The most specific wildcard host.
                candidates()
                    .filter_map(|vs| {
                        let best = vs
                            .spec
                            .hosts
                            .iter()
                            .filter(|h| wildcard_matches(h, host))
                            .map(|h| h.len())
                            .max()?;
                        Some((best, vs))
                    })
                    .max_by_key(|(len, _)| *len)
                    .map(|(_, vs)| vs)
            })
    }

    /// A delegate VirtualService by name and namespace.
    pub fn delegate(&self, name: &str, namespace: &str) -> Option<&Named<VirtualService>> {
        self.virtual_services
            .iter()
            .find(|vs| vs.name == name && vs.namespace == namespace)
    }
}

/// Whether an Istio host (possibly `*` or `*.suffix`) covers a concrete host.
pub fn wildcard_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

/// Cross-resource errors in VirtualService delegation that Istio would silently drop and
/// Trellis rejects: a rule delegating to its own VirtualService (a cycle), or to one that has
/// hosts (a root, which may delegate back). Each error is `(namespace, name, message)` of the
/// VirtualService holding the bad `delegate`.
pub fn delegation_errors(resources: &[Resource]) -> Vec<(String, String, String)> {
    let roots: BTreeMap<(String, String), bool> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::VirtualService(vs) => Some((
                (r.meta.namespace.clone(), r.meta.name.clone()),
                !vs.hosts.is_empty(),
            )),
            _ => None,
        })
        .collect();
    let mut errors = Vec::new();
    for r in resources {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        for (i, http) in vs.http.iter().enumerate() {
            let Some(d) = &http.delegate else { continue };
            let ns = d
                .namespace
                .clone()
                .unwrap_or_else(|| r.meta.namespace.clone());
            let target = (ns.clone(), d.name.clone());
            let me = (r.meta.namespace.clone(), r.meta.name.clone());
            let message = if target == me {
                Some(format!(
                    "spec.http[{i}].delegate: VirtualService {ns}/{} delegates to itself (a delegation cycle)",
                    d.name
                ))
            } else if roots.get(&target) == Some(&true) {
                Some(format!(
                    "spec.http[{i}].delegate: {ns}/{} has hosts, so it is not a delegate VirtualService (delegating to it could form a cycle; Istio ignores such a delegate)",
                    d.name
                ))
            } else {
                None
            };
            if let Some(m) = message {
                errors.push((r.meta.namespace.clone(), r.meta.name.clone(), m));
            }
        }
    }
    errors
}
