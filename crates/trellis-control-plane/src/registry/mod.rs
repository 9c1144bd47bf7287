//! The service registry: services and their endpoints, from ServiceEntry (hosts, ports,
//! inline endpoints, workload selector) and WorkloadEntry (the workloads it selects).

mod protocol;

pub use protocol::Protocol;

use std::collections::BTreeMap;
use std::net::IpAddr;

use trellis_api::networking::{ServiceEntry, WorkloadEntry};
use trellis_api::{Resource, Spec};

/// A port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port clients call.
    pub number: u32,
    /// The port name (it maps to WorkloadEntry `ports`).
    pub name: String,
    /// How traffic on it is treated.
    pub protocol: Protocol,
    /// Where endpoints listen when neither the endpoint nor the workload says otherwise.
    pub target_port: Option<u32>,
}

/// One instance behind a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its address.
    pub address: IpAddr,
    /// Its labels (subsets select on them).
    pub labels: BTreeMap<String, String>,
    /// Port name → port, overriding the service port.
    pub ports: BTreeMap<String, u32>,
    /// Relative weight.
    pub weight: u32,
    /// The WorkloadEntry it comes from, if any (`namespace/name`).
    pub workload: Option<String>,
}

impl Endpoint {
    /// The port this endpoint listens on for a service port.
    pub fn port_for(&self, port: &ServicePort) -> u32 {
        self.ports
            .get(&port.name)
            .copied()
            .or(port.target_port)
            .unwrap_or(port.number)
    }
}

/// A service: one host of a ServiceEntry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The fully qualified host.
    pub host: String,
    /// The namespace of the ServiceEntry.
    pub namespace: String,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// All services of the mesh, sorted by host.
#[derive(Debug, Default)]
pub struct ServiceRegistry {
    services: Vec<Service>,
}

impl ServiceRegistry {
    /// Builds the registry from validated resources.
    pub fn build(resources: &[Resource]) -> Self {
        let workload_entries: Vec<(&Resource, &WorkloadEntry)> = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::WorkloadEntry(we) => Some((r, we)),
                _ => None,
            })
            .collect();
        let mut services: BTreeMap<String, Service> = BTreeMap::new();
        for resource in resources {
            let Spec::ServiceEntry(se) = &resource.spec else {
                continue;
            };
            let namespace = &resource.meta.namespace;
            let endpoints = endpoints_of(se, namespace, &workload_entries);
            for host in &se.hosts {
                let host = trellis_api::resolve_host(host, namespace);
                // The first ServiceEntry for a host wins, as in Istio (oldest first; here by
                // namespace/name order of the sorted resource list).
                services.entry(host.clone()).or_insert_with(|| Service {
                    host,
                    namespace: namespace.clone(),
                    ports: se.ports.iter().map(ServicePort::from_api).collect(),
                    endpoints: endpoints.clone(),
                });
            }
        }
        ServiceRegistry {
            services: services.into_values().collect(),
        }
    }

    /// Every service, sorted by host.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// A service by its fully qualified host.
    pub fn service(&self, host: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| s.host.as_str().cmp(host))
            .ok()
            .map(|i| &self.services[i])
    }
}

impl ServicePort {
    fn from_api(port: &trellis_api::networking::ServicePort) -> Self {
        ServicePort {
            number: port.number,
            name: port.name.clone(),
            protocol: Protocol::of_port(port.protocol.as_deref(), &port.name),
            target_port: port.target_port,
        }
    }
}

fn endpoints_of(
    se: &ServiceEntry,
    namespace: &str,
    workload_entries: &[(&Resource, &WorkloadEntry)],
) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = se
        .endpoints
        .iter()
        .filter_map(|we| endpoint_of(we, None))
        .collect();
    if let Some(selector) = &se.workload_selector {
        for (resource, we) in workload_entries {
            let selected = resource.meta.namespace == namespace
                && selector
                    .labels
                    .iter()
                    .all(|(k, v)| we.labels.get(k) == Some(v));
            if selected {
                let id = format!("{}/{}", resource.meta.namespace, resource.meta.name);
                endpoints.extend(endpoint_of(we, Some(id)));
            }
        }
    }
    endpoints
}

fn endpoint_of(we: &WorkloadEntry, workload: Option<String>) -> Option<Endpoint> {
    let address = we.address.as_deref()?.parse().ok()?;
    Some(Endpoint {
        address,
        labels: we.labels.clone(),
        ports: we.ports.clone(),
        weight: we.weight.unwrap_or(1).max(1),
        workload,
    })
}
