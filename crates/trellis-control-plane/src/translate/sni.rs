//! Sidecar outbound TLS routed by SNI, as istiod builds it: an outbound listener for a port whose
//! services speak TLS (`TLS`/`HTTPS`) gets the TLS inspector and, per VirtualService `tls` route
//! match that applies to the proxy (`port`, `sourceLabels`, `sourceNamespace`, gateway `mesh`;
//! `destinationSubnets` never applies in explicit mode, where the destination is the sidecar's
//! own IP), a filter chain whose `server_names` are the match's `sniHosts` and whose TCP proxy
//! goes to the route's destinations (weighted for several). Then each service host on the port
//! not named yet gets a chain for its own name to its default cluster. The bytes are passed
//! through, never decrypted. Connections with no or another SNI fall to the listener's chain
//! without names (the port's first service, as for plain TCP).

use envoy_types::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use trellis_api::networking::TlsMatchAttributes;

use crate::model::{MeshModel, ProxyView};
use crate::registry::{Service, ServicePort};

/// The SNI chains of the outbound listener on `port` for `services` (those on that port, in
/// order), before its catch-all chain. Empty when none of them speaks TLS.
pub(super) fn chains(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    port: u32,
    services: &[(&Service, &ServicePort)],
) -> Vec<FilterChain> {
    let tls: Vec<&(&Service, &ServicePort)> = services
        .iter()
        .filter(|(_, p)| p.protocol == crate::registry::Protocol::Tls)
        .collect();
    let mut taken: Vec<String> = Vec::new();
    let mut chains = Vec::new();
    let mut seen_vs: Vec<(&str, &str)> = Vec::new();
    for (service, service_port) in &tls {
        let Some(vs) = model.virtual_service_for_proxy(&service.host, proxy) else {
            continue;
        };
        if seen_vs.contains(&(vs.namespace.as_str(), vs.name.as_str())) {
            continue;
        }
        seen_vs.push((vs.namespace.as_str(), vs.name.as_str()));
        for route in &vs.spec.tls {
            if route.route.is_empty() {
                continue;
            }
            for m in route.match_.iter().filter(|m| applies(m, proxy, port)) {
                let Some(names) = claim(&mut taken, &m.sni_hosts) else {
                    continue;
                };
                let target = super::tcp::destinations(&route.route, &vs.namespace, service_port);
                chains.push(chain(names, target, &service.host, port));
            }
        }
    }
    for (service, service_port) in &tls {
        if let Some(names) = claim(&mut taken, std::slice::from_ref(&service.host)) {
            let target = super::tcp::ClusterSpecifier::Cluster(super::outbound_cluster_name(
                service_port.number,
                None,
                &service.host,
            ));
            chains.push(chain(names, target, &service.host, port));
        }
    }
    chains
}

fn applies(m: &TlsMatchAttributes, proxy: &ProxyView<'_>, port: u32) -> bool {
    m.port.is_none_or(|p| p == port)
        && m.destination_subnets.is_empty()
        && proxy.has_labels(&m.source_labels)
        && m.source_namespace
            .as_deref()
            .is_none_or(|ns| ns == proxy.namespace())
        && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == "mesh"))
}

/// The names of `hosts` no earlier chain took (lower case, sorted); `None` when none is left.
/// `*` is not a server name: such a match is left to the catch-all chain.
fn claim(taken: &mut Vec<String>, hosts: &[String]) -> Option<Vec<String>> {
    let mut names: Vec<String> = hosts
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .filter(|h| h != "*" && !taken.contains(h))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return None;
    }
    taken.extend(names.iter().cloned());
    Some(names)
}

fn chain(
    server_names: Vec<String>,
    target: super::tcp::ClusterSpecifier,
    host: &str,
    port: u32,
) -> FilterChain {
    FilterChain {
        name: format!("outbound_{port}_sni_{}", server_names.join(",")),
        filter_chain_match: Some(FilterChainMatch {
            server_names,
            ..Default::default()
        }),
        filters: vec![super::tcp::tcp_filter(TcpProxy {
            stat_prefix: super::outbound_cluster_name(port, None, host),
            cluster_specifier: Some(target),
            ..Default::default()
        })],
        ..Default::default()
    }
}
