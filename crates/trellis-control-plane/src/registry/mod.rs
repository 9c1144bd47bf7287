//! The service registry: services and their endpoints, from ServiceEntry (hosts, ports,
//! inline endpoints, workload selector) and WorkloadEntry (the workloads it selects).

mod protocol;

pub use protocol::Protocol;

use std::collections::BTreeMap;
use std::net::IpAddr;

use trellis_api::networking::{Location, Resolution, ServiceEntry, WorkloadEntry};
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
    /// Its address: an IP, or (DNS resolution) a host name.
    pub address: String,
    /// Its labels (subsets select on them).
    pub labels: BTreeMap<String, String>,
    /// Port name → port, overriding the service port.
    pub ports: BTreeMap<String, u32>,
    /// Relative weight.
    pub weight: u32,
    /// The WorkloadEntry it comes from, if any (`namespace/name`).
    pub workload: Option<String>,
    /// `region/zone/subzone`, if known.
    pub locality: Option<String>,
    /// The workload's service account (its identity), from its WorkloadEntry.
    pub service_account: Option<String>,
    /// The namespace of the resource the endpoint comes from (its identity's namespace).
    pub namespace: String,
}

/// The label Istio puts on workloads that have a sidecar: `istio` means the workload accepts
/// mutual TLS from the mesh (auto mTLS sends it only to such endpoints).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

impl Endpoint {
    /// Whether the workload has a sidecar that speaks Istio mutual TLS.
    pub fn has_sidecar(&self) -> bool {
        self.labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio")
    }

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
    /// How endpoints are found (`NONE`, `STATIC`, `DNS`, `DNS_ROUND_ROBIN`).
    pub resolution: Resolution,
    /// Inside or outside the mesh.
    pub location: Location,
    /// Namespaces the ServiceEntry is exported to (empty: everywhere).
    pub export_to: Vec<String>,
    /// The ServiceEntry's `subjectAltNames`: identities its endpoints may present.
    pub subject_alt_names: Vec<String>,
    /// The ServiceEntry's `addresses` (virtual IPs or CIDRs): what the DNS proxy answers.
    pub addresses: Vec<String>,
}

impl Service {
    /// Whether a proxy in `namespace` may see this service (`exportTo`, as Istio reads it).
    pub fn visible_from(&self, namespace: &str) -> bool {
        exported_to(&self.export_to, &self.namespace, namespace)
    }

    /// Whether its endpoints are DNS names resolved by the proxy.
    pub fn uses_dns(&self) -> bool {
        matches!(
            self.resolution,
            Resolution::Dns | Resolution::DnsRoundRobin | Resolution::DynamicDns
        )
    }
}

/// Istio's `exportTo` rule: empty or `*` is everywhere, `.` the owner's namespace, `~` nowhere,
/// anything else a namespace name.
pub fn exported_to(export_to: &[String], owner_namespace: &str, namespace: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == "*" || e == namespace || (e == "." && owner_namespace == namespace))
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
                let resolution = se.resolution_or_default();
                let mut endpoints = endpoints.clone();
                // DNS without endpoints: the proxy resolves the host itself, as Istio does.
                let dns = matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin);
                if dns && endpoints.is_empty() && !host.starts_with('*') {
                    endpoints.push(Endpoint {
                        address: host.clone(),
                        labels: BTreeMap::new(),
                        ports: BTreeMap::new(),
                        weight: 1,
                        workload: None,
                        locality: None,
                        service_account: None,
                        namespace: namespace.clone(),
                    });
                }
                services.entry(host.clone()).or_insert_with(|| Service {
                    host,
                    namespace: namespace.clone(),
                    ports: se.ports.iter().map(ServicePort::from_api).collect(),
                    endpoints,
                    resolution,
                    location: se.location.unwrap_or(Location::MeshExternal),
                    export_to: se.export_to.clone(),
                    subject_alt_names: se.subject_alt_names.clone(),
                    addresses: se.addresses.clone(),
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
            protocol: Protocol::select(
                port.protocol.as_deref(),
                port.app_protocol.as_deref(),
                &port.name,
            ),
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
        .filter_map(|we| endpoint_of(we, None, namespace, se.resolution_or_default()))
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
                endpoints.extend(endpoint_of(
                    we,
                    Some(id),
                    &resource.meta.namespace,
                    Resolution::Static,
                ));
            }
        }
    }
    endpoints
}

fn endpoint_of(
    we: &WorkloadEntry,
    workload: Option<String>,
    namespace: &str,
    resolution: Resolution,
) -> Option<Endpoint> {
    let address = we.address.as_deref()?;
    let is_ip = address.parse::<IpAddr>().is_ok();
    let dns = matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin);
    // Host names are only meaningful when the proxy resolves them (DNS resolution).
    if !is_ip && !dns {
        return None;
    }
    Some(Endpoint {
        address: address.to_string(),
        labels: we.labels.clone(),
        ports: we.ports.clone(),
        weight: we.weight.unwrap_or(1).max(1),
        workload,
        locality: we.locality.clone(),
        service_account: we.service_account.clone(),
        namespace: namespace.to_string(),
    })
}
