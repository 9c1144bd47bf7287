//! The name table (NDS) of one proxy, as istiod builds it for Istio's DNS proxying: every
//! service host the proxy can see (its namespace's `exportTo` view and its `Sidecar` egress,
//! the same services it gets clusters for) with the ServiceEntry's addresses. Wildcard hosts
//! are never in it (the DNS proxy forwards them upstream). Kubernetes-style hosts
//! (`NAME.NS.svc.DOMAIN` of a ServiceEntry in `NS`) are marked so the DNS proxy also answers
//! their short forms (`NAME` in the same namespace, `NAME.NS`, `NAME.NS.svc`).
//!
//! A ServiceEntry without addresses gets an automatically allocated virtual IP from
//! `240.240.0.0/16`, as Istio's auto-allocation does, unless its resolution is `NONE` (plain
//! passthrough: its names go upstream). The allocation is mesh-wide and deterministic: the
//! `i`-th such host in host order gets `240.240.(i / 254).(i % 254 + 1)`, so every proxy
//! resolves a host to the same address and an unchanged registry keeps its addresses. Traffic
//! to such an address is routed by the proxy's `0.0.0.0_PORT` listener like any captured
//! connection (by `Host` for HTTP).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use trellis_api::networking::Resolution;
use trellis_xds::NodeIdentity;
use trellis_xds::nds::{NameInfo, NameTable, REGISTRY_KUBERNETES};

use super::scope;
use crate::model::MeshModel;
use crate::registry::Service;

/// The most hosts auto-allocation can give an address (`240.240.0.1`–`240.240.255.254`,
/// without `.0` and `.255`).
const AUTO_ALLOCATE_MAX: usize = 254 * 256;

/// The name table `node`'s DNS proxy answers from.
pub fn name_table(model: &MeshModel, node: &NodeIdentity) -> NameTable {
    let proxy = model.proxy_view(node);
    let mut hosts: BTreeSet<&str> = scope::visible_services(model, &proxy)
        .iter()
        .map(|(s, _)| s.host.as_str())
        .collect();
    hosts.extend(
        scope::visible_tcp_services(model, &proxy)
            .iter()
            .map(|(s, _)| s.host.as_str()),
    );
    let mut table = NameTable::default();
    let mut auto = 0usize;
    for service in model.registry.services() {
        let allocates = auto_allocated(service);
        let index = auto;
        if allocates {
            auto += 1;
        }
        if !hosts.contains(service.host.as_str()) || service.host.contains('*') {
            continue;
        }
        let ips: Vec<String> = if allocates {
            match auto_address(index) {
                Some(ip) => vec![ip.to_string()],
                None => continue,
            }
        } else {
            service
                .addresses
                .iter()
                .filter_map(|a| plain_ip(a))
                .collect()
        };
        if ips.is_empty() {
            continue;
        }
        let mut info = NameInfo {
            ips,
            ..NameInfo::default()
        };
        if let Some(short) = kubernetes_short_name(service) {
            info.registry = REGISTRY_KUBERNETES.to_string();
            info.shortname = short.to_string();
            info.namespace = service.namespace.clone();
        }
        table.table.insert(service.host.clone(), info);
    }
    table
}

/// Whether the service gets an address from `240.240.0.0/16`.
fn auto_allocated(service: &Service) -> bool {
    service.addresses.is_empty()
        && !service.host.contains('*')
        && service.resolution != Resolution::None
}

/// The `index`-th auto-allocated address.
fn auto_address(index: usize) -> Option<Ipv4Addr> {
    if index >= AUTO_ALLOCATE_MAX {
        return None;
    }
    Some(Ipv4Addr::new(
        240,
        240,
        (index / 254) as u8,
        (index % 254 + 1) as u8,
    ))
}

/// An address of a ServiceEntry as a single IP: plain IPs and host routes (`/32`, `/128`);
/// wider CIDRs name no single address to answer with.
fn plain_ip(address: &str) -> Option<String> {
    let (ip, prefix) = match address.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (address, None),
    };
    let ip: IpAddr = ip.parse().ok()?;
    let full = if ip.is_ipv4() { "32" } else { "128" };
    match prefix {
        None => Some(ip.to_string()),
        Some(p) if p == full => Some(ip.to_string()),
        Some(_) => None,
    }
}

/// `NAME` when the host is `NAME.NS.svc.DOMAIN` of a ServiceEntry in namespace `NS`.
fn kubernetes_short_name(service: &Service) -> Option<&str> {
    let mut parts = service.host.splitn(4, '.');
    let (name, namespace, svc, domain) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (namespace == service.namespace && svc == "svc" && !domain.is_empty() && !name.is_empty())
        .then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::test_support;

    #[test]
    fn auto_allocation_skips_network_and_broadcast() {
        assert_eq!(auto_address(0), Some(Ipv4Addr::new(240, 240, 0, 1)));
        assert_eq!(auto_address(253), Some(Ipv4Addr::new(240, 240, 0, 254)));
        assert_eq!(auto_address(254), Some(Ipv4Addr::new(240, 240, 1, 1)));
        assert_eq!(auto_address(AUTO_ALLOCATE_MAX), None);
    }

    #[test]
    fn addresses_are_single_ips() {
        assert_eq!(plain_ip("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(plain_ip("10.0.0.1/32").as_deref(), Some("10.0.0.1"));
        assert_eq!(plain_ip("10.0.0.0/24"), None);
        assert_eq!(plain_ip("fd00::1").as_deref(), Some("fd00::1"));
        assert_eq!(plain_ip("nope"), None);
    }

    #[test]
    fn table_has_mesh_services_entries_and_allocations() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.1.2.200]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.1.2.10}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.wild.example.com"]
  resolution: NONE
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: passthrough, namespace: default}
spec:
  hosts: [none.example.com]
  resolution: NONE
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hidden, namespace: other}
spec:
  hosts: [hidden.other.svc.cluster.local]
  addresses: [10.1.2.201]
  exportTo: ["."]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.1.2.11}]
"#;
        let model = test_support::model(yaml);
        let node = test_support::sidecar("10.1.2.2", "default");
        let table = name_table(&model, &node).table;
        let reviews = &table["reviews.default.svc.cluster.local"];
        assert_eq!(reviews.ips, vec!["10.1.2.200".to_string()]);
        assert_eq!(reviews.registry, REGISTRY_KUBERNETES);
        assert_eq!(reviews.shortname, "reviews");
        assert_eq!(reviews.namespace, "default");
        let ext = &table["api.example.com"];
        assert_eq!(ext.ips, vec!["240.240.0.1".to_string()]);
        assert!(ext.registry.is_empty());
        assert!(!table.keys().any(|h| h.contains('*')), "{table:?}");
        assert!(!table.contains_key("none.example.com"), "{table:?}");
        assert!(
            !table.contains_key("hidden.other.svc.cluster.local"),
            "{table:?}"
        );
    }
}
