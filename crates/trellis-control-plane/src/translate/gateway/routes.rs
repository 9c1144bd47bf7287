//! Route configurations of a gateway: `http.PORT` for the plaintext servers of a port, and
//! `https.PORT.PORT-NAME.GATEWAY.NAMESPACE` per HTTPS server (Istio's names). Virtual hosts
//! are the server hosts intersected with the hosts of the VirtualServices bound to the
//! Gateway, with those VirtualServices' HTTP rules; an `httpsRedirect` server answers every
//! request on its hosts with a `301` to HTTPS.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::route::v3::{
    RedirectAction, Route, RouteConfiguration, RouteMatch, VirtualHost,
    redirect_action::{RedirectResponseCode, SchemeRewriteSpecifier},
    route,
    route_match::PathSpecifier,
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::servers::{GatewayServer, bound_hosts, names_gateway};
use crate::model::{MeshModel, ProxyView};
use crate::registry::{Protocol, ServicePort};
use crate::translate::routes;

/// Istio's name of the route configuration of a port's plaintext HTTP servers.
pub fn http_route_name(port: u32) -> String {
    format!("http.{port}")
}

/// The route configuration `name` for `servers` (all on `port`).
pub fn route_config(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    name: String,
    port: u32,
    servers: &[&GatewayServer<'_>],
) -> RouteConfiguration {
    let service_port = ServicePort {
        number: port,
        name: servers
            .first()
            .map(|s| s.port_name.clone())
            .unwrap_or_default(),
        protocol: Protocol::Http,
        target_port: None,
    };
    // host → virtual host; the first server (and VirtualService) claiming a host wins.
    let mut hosts: BTreeMap<String, Vec<Route>> = BTreeMap::new();
    for server in servers {
        if matches!(
            server.kind,
            super::servers::Kind::Http {
                https_redirect: true
            }
        ) {
            for (_, host) in server.hosts() {
                hosts.entry(host).or_insert_with(|| vec![https_redirect()]);
            }
            continue;
        }
        let gateway_ref = server.gateway_ref();
        for (host, vs) in bound_hosts(model, server) {
            if hosts.contains_key(&host) {
                continue;
            }
            let bound = |gateways: &[String]| names_gateway(gateways, &vs.namespace, &gateway_ref);
            let routes = routes::gateway_routes(model, proxy, vs, &service_port, &bound);
            hosts.insert(host, routes);
        }
    }
    RouteConfiguration {
        name,
        virtual_hosts: hosts
            .into_iter()
            .map(|(host, routes)| VirtualHost {
                name: format!("{host}:{port}"),
                domains: domains(&host, port),
                routes,
                ..Default::default()
            })
            .collect(),
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// The domains of a gateway host: `*` alone; a wildcard with the port (one `*` only); an exact
/// name with any port (`host:*`), as Istio's gateways match.
fn domains(host: &str, port: u32) -> Vec<String> {
    if host == "*" {
        vec!["*".to_string()]
    } else if host.starts_with('*') {
        vec![host.to_string(), format!("{host}:{port}")]
    } else {
        vec![host.to_string(), format!("{host}:*")]
    }
}

/// `httpsRedirect`: a permanent redirect to the same URL over HTTPS.
fn https_redirect() -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::Redirect(RedirectAction {
            scheme_rewrite_specifier: Some(SchemeRewriteSpecifier::HttpsRedirect(true)),
            response_code: RedirectResponseCode::MovedPermanently as i32,
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_follow_istio_gateways() {
        assert_eq!(domains("*", 8080), vec!["*"]);
        assert_eq!(
            domains("*.example.com", 8080),
            vec!["*.example.com", "*.example.com:8080"]
        );
        assert_eq!(
            domains("a.example.com", 8080),
            vec!["a.example.com", "a.example.com:*"]
        );
    }
}
