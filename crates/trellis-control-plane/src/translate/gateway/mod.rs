//! Gateways (`router` nodes): Istio `Gateway` servers → listeners on the router's IP, the
//! VirtualServices bound to them (`gateways:`) → route configurations, and the outbound clusters
//! and endpoints of every service the router can see, as for a sidecar (so the gateway speaks
//! auto mTLS to the mesh's sidecars).
//!
//! - [`servers`]: which Gateways select the router, their servers by port, bound hosts;
//! - [`listeners`]: one listener per port, chains by SNI for TLS servers;
//! - [`routes`]: `http.PORT` / `https.PORT.NAME.GATEWAY.NS` route configurations;
//! - [`tls`]: downstream TLS contexts and credential files.

mod listeners;
mod routes;
mod servers;
mod tls;

use trellis_xds::{NodeIdentity, to_any, type_url};

use super::scope;
use super::telemetry::{self, HcmTelemetry, Side};
use crate::model::MeshModel;
use crate::xds::ProxyResources;

pub use tls::{Credential, resolve_credential};

/// Everything the router `node` should receive for the current model.
pub fn generate(model: &MeshModel, node: &NodeIdentity) -> ProxyResources {
    let proxy = model.proxy_view(node);
    let http = scope::visible_services(model, &proxy);
    let tcp = scope::visible_tcp_services(model, &proxy);
    let mut out = super::with_outbound_clusters(model, &proxy, &http, &tcp);
    let telemetries = telemetry::applicable(model, &proxy);
    let hcm_telemetry = HcmTelemetry::of(model, &proxy, &telemetries, Side::Client);
    for (port, group) in servers::by_port(model, &proxy) {
        let Some((listener, route_configs)) =
            listeners::port_listener(model, &proxy, port, &group, &hcm_telemetry)
        else {
            continue;
        };
        out.insert(
            type_url::LISTENER,
            listener.name.clone(),
            to_any(type_url::LISTENER, &listener),
        );
        for rc in route_configs {
            out.insert(
                type_url::ROUTE,
                rc.name.clone(),
                to_any(type_url::ROUTE, &rc),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests;
