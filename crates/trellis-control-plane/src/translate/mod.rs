//! Istio model → Envoy xDS, per proxy. Each submodule builds one resource type; `generate`
//! puts them together for one proxy. Names follow Istio's (`outbound|PORT|SUBSET|HOST`,
//! `inbound|PORT||`) so `istioctl`-trained eyes can read `/config_dump`.

pub mod authn;
pub mod authz;
mod capture;
mod clusters;
mod endpoints;
pub mod gateway;
mod header_case;
mod listeners;
mod mtls;
pub mod nds;
mod peer_metadata;
mod policy;
mod proto;
mod routes;
mod scope;
mod sni;
mod tcp;
mod telemetry;

use trellis_xds::{NodeIdentity, to_any, type_url};

use crate::model::{MeshModel, ProxyView};
use crate::registry::{Service, ServicePort};
use crate::xds::ProxyResources;

/// The route configuration behind the outbound (`HTTP_PROXY`) listener.
pub const OUTBOUND_ROUTE_NAME: &str = "outbound";

/// The outbound cluster name for a service port and an optional subset.
pub fn outbound_cluster_name(port: u32, subset: Option<&str>, host: &str) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

/// The inbound cluster name for a workload port.
pub fn inbound_cluster_name(port: u32) -> String {
    format!("inbound|{port}||")
}

/// The resources every proxy starts from: each type present (even when empty, so that an empty
/// type can be ACKed), and the clusters and endpoints of the services it can reach over HTTP
/// and TCP.
fn with_outbound_clusters(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    http: &[(&Service, Vec<&ServicePort>)],
    tcp: &[(&Service, Vec<&ServicePort>)],
) -> ProxyResources {
    let mut out = ProxyResources::default();
    for t in [
        type_url::CLUSTER,
        type_url::LISTENER,
        type_url::ENDPOINT,
        type_url::ROUTE,
    ] {
        out.by_type.entry(t).or_default();
    }
    let mut plan = clusters::plan(model, proxy, http);
    plan.extend(clusters::plan(model, proxy, tcp));
    for c in &plan {
        let cluster = clusters::outbound(c, proxy, model);
        out.insert(
            type_url::CLUSTER,
            cluster.name.clone(),
            to_any(type_url::CLUSTER, &cluster),
        );
    }
    for cla in endpoints::outbound(&plan, proxy, model) {
        out.insert(
            type_url::ENDPOINT,
            cla.cluster_name.clone(),
            to_any(type_url::ENDPOINT, &cla),
        );
    }
    out
}

/// Everything `node` should receive for the current model: [`generate_shared`] and
/// [`generate_own`] together (a name in the own part replaces the same name in the shared one).
pub fn generate(model: &MeshModel, node: &NodeIdentity) -> ProxyResources {
    let mut out = generate_shared(model, node);
    for (type_url, resources) in generate_own(model, node).by_type {
        let of_type = out.by_type.entry(type_url).or_default();
        of_type.extend(resources);
    }
    out
}

/// What the shared part of a sidecar's config ([`generate_shared`]) depends on besides the
/// model: every proxy with the same key gets the same shared part, so the control plane
/// translates and encodes it once per key and generation. Whatever of the node the outbound
/// translators (`clusters`, `endpoints`, `routes`, `scope`, `mtls`) read must be here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedKey {
    /// The namespace: `exportTo`, Sidecar, DestinationRule and VirtualService selection.
    namespace: String,
    /// The labels as merged with the proxy's WorkloadEntry: Sidecar and DestinationRule
    /// `workloadSelector`, VirtualService `sourceLabels`, `failoverPriority` label keys.
    labels: std::collections::BTreeMap<String, String>,
    /// The locality from its WorkloadEntry: locality failover and `distribute`.
    locality: Option<String>,
    /// Whether the proxy has a workload certificate: Istio mutual TLS upstream.
    sds: bool,
    /// Captured rather than explicit (the outbound route is per proxy when captured).
    captured: bool,
}

/// The key of `node`'s shared part, or `None` for a proxy whose config is not shared (a
/// gateway: its config is all its own).
pub fn shared_key(model: &MeshModel, node: &NodeIdentity) -> Option<SharedKey> {
    if node.proxy_type == trellis_xds::ProxyType::Router {
        return None;
    }
    let proxy = model.proxy_view(node);
    Some(SharedKey {
        namespace: node.namespace.clone(),
        labels: proxy.labels,
        locality: proxy.locality,
        sds: node.sds,
        captured: node.interception == trellis_xds::InterceptionMode::Redirect,
    })
}

/// The part of a sidecar's config that depends only on its [`SharedKey`]: the outbound
/// clusters and endpoints of every service it can reach and, in explicit mode, the outbound
/// route configuration. Every type is present (possibly empty). Empty for a gateway.
pub fn generate_shared(model: &MeshModel, node: &NodeIdentity) -> ProxyResources {
    if node.proxy_type == trellis_xds::ProxyType::Router {
        return ProxyResources::default();
    }
    let proxy = model.proxy_view(node);
    let outbound = scope::visible_services(model, &proxy);
    let outbound_tcp = scope::visible_tcp_services(model, &proxy);
    let mut out = with_outbound_clusters(model, &proxy, &outbound, &outbound_tcp);
    if node.interception != trellis_xds::InterceptionMode::Redirect {
        let mode = scope::outbound_mode(model, &proxy);
        let routes = routes::outbound(model, &proxy, &outbound, mode);
        out.insert(
            type_url::ROUTE,
            routes.name.clone(),
            to_any(type_url::ROUTE, &routes),
        );
    }
    out
}

/// The part of a proxy's config that is its own: inbound clusters and every listener (they
/// bind its IP and carry its workload's telemetry and policy), captured mode's per-proxy
/// routes and clusters, or a gateway's whole config.
pub fn generate_own(model: &MeshModel, node: &NodeIdentity) -> ProxyResources {
    if node.proxy_type == trellis_xds::ProxyType::Router {
        return gateway::generate(model, node);
    }
    let proxy = model.proxy_view(node);
    let outbound_tcp = scope::visible_tcp_services(model, &proxy);
    let inbound = inbound_ports(model, node);
    let mut out = ProxyResources::default();
    if node.interception == trellis_xds::InterceptionMode::Redirect {
        let outbound = scope::visible_services(model, &proxy);
        let captured = capture::generate(model, &proxy, &outbound, &outbound_tcp, &inbound);
        insert_captured(&mut out, captured);
        return out;
    }
    for cluster in clusters::inbound(node, &inbound) {
        out.insert(
            type_url::CLUSTER,
            cluster.name.clone(),
            to_any(type_url::CLUSTER, &cluster),
        );
    }
    let mut all_listeners = listeners::all(model, &proxy, &inbound);
    all_listeners.extend(tcp::outbound_listeners(
        model,
        &proxy,
        &outbound_tcp,
        &inbound,
    ));
    for listener in all_listeners {
        out.insert(
            type_url::LISTENER,
            listener.name.clone(),
            to_any(type_url::LISTENER, &listener),
        );
    }
    out
}

/// Captured mode's listeners, routes and clusters (see [`capture`]).
fn insert_captured(out: &mut ProxyResources, captured: capture::Captured) {
    for c in captured.clusters {
        out.insert(
            type_url::CLUSTER,
            c.name.clone(),
            to_any(type_url::CLUSTER, &c),
        );
    }
    for l in captured.listeners {
        out.insert(
            type_url::LISTENER,
            l.name.clone(),
            to_any(type_url::LISTENER, &l),
        );
    }
    for r in captured.routes {
        out.insert(type_url::ROUTE, r.name.clone(), to_any(type_url::ROUTE, &r));
    }
}

/// A port this workload serves, with whether its app speaks HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct InboundPort {
    pub port: u32,
    pub http2: bool,
    /// Opaque TCP (a TCP proxy to the app) rather than HTTP.
    pub tcp: bool,
    /// No service declares the port's protocol: captured mode sniffs it (HTTP or TCP).
    pub sniff: bool,
}

/// The ports of every service that has this workload as an endpoint.
fn inbound_ports(model: &MeshModel, node: &NodeIdentity) -> Vec<InboundPort> {
    let mut ports: Vec<InboundPort> = Vec::new();
    let ip = node.ip.to_string();
    for service in model.registry.services() {
        for endpoint in service.endpoints.iter().filter(|e| e.address == ip) {
            for port in service.ports.iter() {
                let number = endpoint.port_for(port);
                match ports.iter_mut().find(|p| p.port == number) {
                    Some(existing) => {
                        existing.http2 |= port.protocol.is_http2();
                        // HTTP wins when services disagree about a port.
                        existing.tcp &= port.protocol.is_opaque();
                        existing.sniff &= port.protocol == crate::registry::Protocol::Unknown;
                    }
                    None => ports.push(InboundPort {
                        port: number,
                        http2: port.protocol.is_http2(),
                        tcp: port.protocol.is_opaque(),
                        sniff: port.protocol == crate::registry::Protocol::Unknown,
                    }),
                }
            }
        }
    }
    ports.sort();
    ports
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
