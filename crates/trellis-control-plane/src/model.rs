//! The immutable snapshot every proxy's config is computed from: validated resources plus the
//! service registry derived from them. A new snapshot replaces the old one as a whole.

use std::sync::Arc;

use trellis_api::networking::{DestinationRule, VirtualService};
use trellis_api::{Resource, Spec};

use crate::registry::ServiceRegistry;

/// One generation of the mesh config.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Grows with every accepted change; proxies report the generation they have.
    pub generation: u64,
    /// What the proxies' config is computed from.
    pub model: Arc<MeshModel>,
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
}

impl MeshModel {
    /// Builds the model from a set of already validated resources.
    pub fn build(resources: &[Resource]) -> Self {
        let mut virtual_services = Vec::new();
        let mut destination_rules = Vec::new();
        for resource in resources {
            match &resource.spec {
                Spec::VirtualService(vs) => virtual_services.push(Named::of(resource, vs.clone())),
                Spec::DestinationRule(dr) => {
                    destination_rules.push(Named::of(resource, dr.clone()))
                }
                _ => {}
            }
        }
        let key = |n: &String, ns: &String| (ns.clone(), n.clone());
        virtual_services.sort_by_key(|v| key(&v.name, &v.namespace));
        destination_rules.sort_by_key(|d| key(&d.name, &d.namespace));
        MeshModel {
            registry: ServiceRegistry::build(resources),
            virtual_services,
            destination_rules,
        }
    }

    /// The DestinationRule that applies to a host (the first by namespace/name, as Istio picks
    /// when several match).
    pub fn destination_rule_for(&self, host: &str) -> Option<&Named<DestinationRule>> {
        self.destination_rules
            .iter()
            .find(|dr| trellis_api::resolve_host(&dr.spec.host, &dr.namespace) == host)
    }

    /// The VirtualService that routes a host for sidecars (the first by namespace/name).
    pub fn virtual_service_for(&self, host: &str) -> Option<&Named<VirtualService>> {
        self.virtual_services.iter().find(|vs| {
            let for_mesh =
                vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh");
            for_mesh
                && vs
                    .spec
                    .hosts
                    .iter()
                    .any(|h| trellis_api::resolve_host(h, &vs.namespace) == host)
        })
    }
}
