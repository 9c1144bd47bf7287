//! Which Gateways a router serves and how their servers share ports: Gateways whose `selector`
//! matches the router's labels (in any namespace, Istio's default), their servers grouped by
//! port, and the VirtualServices bound to each (`gateways:`), by host.

use std::collections::BTreeMap;

use trellis_api::networking::{Gateway, Server, ServerTlsMode, VirtualService};

use crate::model::{MeshModel, Named, ProxyView, wildcard_matches};

/// What a server does with the connections on its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plaintext HTTP (`HTTP`, `HTTP2`, `GRPC`); `https_redirect` answers `301` to HTTPS.
    Http {
        /// `tls.httpsRedirect`.
        https_redirect: bool,
    },
    /// `HTTPS` terminated here (`SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`, `ISTIO_MUTUAL`).
    Https(ServerTlsMode),
    /// `TLS`/`HTTPS` with `PASSTHROUGH`: routed by SNI to a TCP proxy, not decrypted.
    Passthrough,
}

impl Kind {
    /// Whether connections on the port start with a TLS handshake (the listener needs the TLS
    /// inspector and chains by SNI).
    pub fn is_tls(self) -> bool {
        !matches!(self, Kind::Http { .. })
    }
}

/// One server of one selected Gateway.
#[derive(Debug, Clone)]
pub struct GatewayServer<'m> {
    /// The Gateway.
    pub gateway: &'m Named<Gateway>,
    /// The server.
    pub server: &'m Server,
    /// Its port number.
    pub port: u32,
    /// Its port name.
    pub port_name: String,
    /// What it does.
    pub kind: Kind,
}

impl GatewayServer<'_> {
    /// `namespace/name` of its Gateway, as VirtualServices name it.
    pub fn gateway_ref(&self) -> String {
        format!("{}/{}", self.gateway.namespace, self.gateway.name)
    }

    /// Its hosts as `(namespace filter, host)`: `ns/host`, `./host` (the Gateway's namespace),
    /// `*/host` or a bare `host` (any namespace).
    pub fn hosts(&self) -> Vec<(String, String)> {
        self.server
            .hosts
            .iter()
            .map(|h| match h.split_once('/') {
                Some((".", host)) => (self.gateway.namespace.clone(), host.to_string()),
                Some((ns, host)) => (ns.to_string(), host.to_string()),
                None => ("*".to_string(), h.clone()),
            })
            .collect()
    }

    /// Whether `vs` is bound to this server's Gateway (its `gateways`, short names in its own
    /// namespace).
    pub fn binds(&self, vs: &Named<VirtualService>) -> bool {
        names_gateway(&vs.spec.gateways, &vs.namespace, &self.gateway_ref())
    }

    /// Istio's name of the route configuration of an HTTPS server:
    /// `https.PORT.PORT-NAME.GATEWAY.NAMESPACE`.
    pub fn https_route_name(&self) -> String {
        format!(
            "https.{}.{}.{}.{}",
            self.port, self.port_name, self.gateway.name, self.gateway.namespace
        )
    }
}

/// Whether `gateways` (as written in a VirtualService of `namespace`) names `gateway_ref`
/// (`namespace/name`).
pub fn names_gateway(gateways: &[String], namespace: &str, gateway_ref: &str) -> bool {
    gateways.iter().any(|g| {
        if g.contains('/') {
            g == gateway_ref
        } else {
            format!("{namespace}/{g}") == gateway_ref
        }
    })
}

/// What a server is, or why the router does not serve it.
fn kind(server: &Server) -> Result<Kind, String> {
    let protocol = server
        .port
        .as_ref()
        .map(|p| p.protocol.to_ascii_uppercase())
        .unwrap_or_default();
    let mode = server.tls.as_ref().and_then(|t| t.mode);
    match protocol.as_str() {
        "HTTP" | "HTTP2" | "GRPC" => Ok(Kind::Http {
            https_redirect: server
                .tls
                .as_ref()
                .and_then(|t| t.https_redirect)
                .unwrap_or(false),
        }),
        "HTTPS" | "TLS" => match mode {
            Some(ServerTlsMode::Passthrough) => Ok(Kind::Passthrough),
            Some(ServerTlsMode::AutoPassthrough) => {
                Err("tls.mode AUTO_PASSTHROUGH is not supported yet".to_string())
            }
            _ if protocol == "TLS" => {
                Err("protocol TLS is only served with tls.mode PASSTHROUGH so far".to_string())
            }
            Some(m) => Ok(Kind::Https(m)),
            None => Ok(Kind::Https(ServerTlsMode::Simple)),
        },
        other => Err(format!("protocol {other:?} is not served by gateways yet")),
    }
}

/// The Gateways that select this router (empty selector: every router).
pub fn selected<'m>(model: &'m MeshModel, proxy: &ProxyView<'_>) -> Vec<&'m Named<Gateway>> {
    model
        .gateways
        .iter()
        .filter(|g| proxy.has_labels(&g.spec.selector))
        .collect()
}

/// The servers of the selected Gateways by port. A port serves either plaintext HTTP or TLS
/// (terminated and passed through may mix, told apart by SNI); a server whose kind conflicts
/// with the port's first server is left out, as Istio drops conflicting servers.
pub fn by_port<'m>(
    model: &'m MeshModel,
    proxy: &ProxyView<'_>,
) -> BTreeMap<u32, Vec<GatewayServer<'m>>> {
    let mut ports: BTreeMap<u32, Vec<GatewayServer<'m>>> = BTreeMap::new();
    for gateway in selected(model, proxy) {
        for (i, server) in gateway.spec.servers.iter().enumerate() {
            let Some(port) = server.port.as_ref() else {
                continue;
            };
            let kind = match kind(server) {
                Ok(k) => k,
                Err(why) => {
                    tracing::warn!(gateway = %gateway.name, namespace = %gateway.namespace,
                        server = i, "gateway server not served: {why}");
                    continue;
                }
            };
            let entry = ports.entry(port.number).or_default();
            if entry
                .first()
                .is_some_and(|f| f.kind.is_tls() != kind.is_tls())
            {
                tracing::warn!(gateway = %gateway.name, namespace = %gateway.namespace,
                    server = i, port = port.number,
                    "gateway server not served: another server on the port speaks {}",
                    if kind.is_tls() { "plaintext" } else { "TLS" });
                continue;
            }
            entry.push(GatewayServer {
                gateway,
                server,
                port: port.number,
                port_name: port.name.clone(),
                kind,
            });
        }
    }
    ports
}

/// The more specific of two hosts when one covers the other (`*`, `*.suffix`), else `None`.
pub fn intersect(a: &str, b: &str) -> Option<String> {
    if wildcard_matches(a, b) {
        Some(b.to_string())
    } else if wildcard_matches(b, a) {
        Some(a.to_string())
    } else {
        None
    }
}

/// Whether a server host's namespace filter admits a resource of `namespace`.
pub fn namespace_admits(filter: &str, namespace: &str) -> bool {
    filter == "*" || filter == namespace
}

/// The VirtualServices bound to `server`'s Gateway, per host they serve on it (the server's
/// hosts intersected with theirs; for a host several claim, the first by namespace/name).
pub fn bound_hosts<'m>(
    model: &'m MeshModel,
    server: &GatewayServer<'_>,
) -> BTreeMap<String, &'m Named<VirtualService>> {
    let mut out = BTreeMap::new();
    for vs in model.virtual_services.iter().filter(|vs| server.binds(vs)) {
        for (ns_filter, server_host) in server.hosts() {
            if !namespace_admits(&ns_filter, &vs.namespace) {
                continue;
            }
            for vs_host in &vs.spec.hosts {
                let vs_host = trellis_api::resolve_host(vs_host, &vs.namespace);
                if let Some(host) = intersect(&server_host, &vs_host) {
                    out.entry(host).or_insert(vs);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_intersect_to_the_more_specific() {
        assert_eq!(
            intersect("*.example.com", "a.example.com").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            intersect("a.example.com", "*").as_deref(),
            Some("a.example.com")
        );
        assert_eq!(intersect("a.example.com", "b.example.com"), None);
        assert_eq!(
            intersect("*", "*.example.com").as_deref(),
            Some("*.example.com")
        );
    }

    #[test]
    fn gateway_names_resolve_in_the_virtual_service_namespace() {
        let gws = vec!["gw".to_string()];
        assert!(names_gateway(&gws, "default", "default/gw"));
        assert!(!names_gateway(&gws, "prod", "default/gw"));
        let gws = vec!["istio-system/gw".to_string()];
        assert!(names_gateway(&gws, "default", "istio-system/gw"));
        assert!(!names_gateway(
            &["mesh".to_string()],
            "default",
            "default/mesh2"
        ));
    }
}
