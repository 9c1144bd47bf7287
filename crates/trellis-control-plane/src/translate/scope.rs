//! What a proxy may reach: services exported to its namespace (`exportTo`), narrowed by the
//! egress hosts of the Sidecar that applies to it, as Istio scopes a sidecar's config.

use trellis_api::networking::{OutboundTrafficMode, Sidecar};

use crate::model::{MeshModel, ProxyView, wildcard_matches};
use crate::registry::{Service, ServicePort};

/// Services (with their HTTP ports) this proxy can call.
pub fn visible_services<'m>(
    model: &'m MeshModel,
    proxy: &ProxyView<'_>,
) -> Vec<(&'m Service, Vec<&'m ServicePort>)> {
    visible_ports(model, proxy, |p| p.protocol.is_http())
}

/// Services (with their opaque TCP ports) this proxy can call.
pub fn visible_tcp_services<'m>(
    model: &'m MeshModel,
    proxy: &ProxyView<'_>,
) -> Vec<(&'m Service, Vec<&'m ServicePort>)> {
    visible_ports(model, proxy, |p| p.protocol.is_opaque())
}

fn visible_ports<'m>(
    model: &'m MeshModel,
    proxy: &ProxyView<'_>,
    wanted: impl Fn(&ServicePort) -> bool,
) -> Vec<(&'m Service, Vec<&'m ServicePort>)> {
    let sidecar = model
        .sidecar_for(proxy)
        .map(|s| (&s.spec, s.namespace.as_str()));
    model
        .registry
        .services()
        .iter()
        .filter(|s| s.visible_from(proxy.namespace()))
        .map(|s| {
            let ports = s
                .ports
                .iter()
                .filter(|p| wanted(p))
                .filter(|p| sidecar.is_none_or(|(sc, ns)| egress_allows(sc, ns, s, p.number)))
                .collect::<Vec<_>>();
            (s, ports)
        })
        .filter(|(_, ports)| !ports.is_empty())
        .collect()
}

/// The outbound traffic mode for a proxy (Istio's default is `ALLOW_ANY`).
pub fn outbound_mode(model: &MeshModel, proxy: &ProxyView<'_>) -> OutboundTrafficMode {
    model
        .sidecar_for(proxy)
        .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
        .and_then(|p| p.mode)
        .unwrap_or_else(|| model.mesh.outbound_mode())
}

/// Whether a Sidecar's egress listeners let the proxy reach `service` on `port`. Without
/// egress listeners everything visible is reachable.
fn egress_allows(sidecar: &Sidecar, sidecar_ns: &str, service: &Service, port: u32) -> bool {
    if sidecar.egress.is_empty() {
        return true;
    }
    sidecar.egress.iter().any(|listener| {
        let port_ok = listener
            .port
            .as_ref()
            .is_none_or(|p| p.number == 0 || p.number == port);
        port_ok
            && listener
                .hosts
                .iter()
                .any(|h| egress_host_matches(h, sidecar_ns, service))
    })
}

/// Istio's `namespace/dnsName` egress host: `*` any namespace, `.` the Sidecar's own, `~`
/// none; the name exact, `*`, or `*.suffix`.
pub fn egress_host_matches(entry: &str, sidecar_ns: &str, service: &Service) -> bool {
    let (ns, name) = entry.split_once('/').unwrap_or(("*", entry));
    let ns_ok = match ns {
        "*" => true,
        "~" => false,
        "." => service.namespace == sidecar_ns,
        other => service.namespace == other,
    };
    ns_ok && wildcard_matches(name, &service.host)
}
