//! The outbound route table: one virtual host per service port, with the VirtualService's HTTP
//! rules translated in order (Istio's first-match semantics), or a default route to the service.
//!
//! - [`matching`]: `match` → `RouteMatch`, which matches apply to this proxy and port, and the
//!   merge of a delegate's matches into its root's;
//! - [`actions`]: destinations, rewrite, redirect, direct response, timeout, retries, mirrors,
//!   hash policy;
//! - [`headers`]: request/response header operations;
//! - [`filters`]: per-route config of the fault and CORS HTTP filters.

mod actions;
mod filters;
mod headers;
mod matching;

use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route,
    route_action::ClusterSpecifier, route_match::PathSpecifier,
};
use envoy_types::pb::google::protobuf::BoolValue;
use trellis_api::networking::{HttpRoute, OutboundTrafficMode};

use super::proto::duration;
use super::{OUTBOUND_ROUTE_NAME, outbound_cluster_name};
use crate::model::{MeshModel, ProxyView};
use crate::registry::{Service, ServicePort};

pub use filters::{http_filters, upgrade_configs};

/// The name of the catch-all virtual host of `REGISTRY_ONLY` (Istio's).
pub const BLOCK_ALL: &str = "block_all";

/// The route configuration of the outbound listener.
pub fn outbound(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    services: &[(&Service, Vec<&ServicePort>)],
    mode: OutboundTrafficMode,
) -> RouteConfiguration {
    let mut virtual_hosts = Vec::new();
    for (service, ports) in services {
        for port in ports {
            virtual_hosts.push(VirtualHost {
                name: format!("{}:{}", service.host, port.number),
                domains: domains(&service.host, port.number, proxy.namespace()),
                routes: routes_for(model, proxy, service, port),
                ..Default::default()
            });
        }
    }
    // Explicit mode has no original destination to pass traffic through to, so ALLOW_ANY adds
    // nothing (unknown hosts get 404 NR); REGISTRY_ONLY answers them 502 as Istio's block_all.
    if mode == OutboundTrafficMode::RegistryOnly {
        virtual_hosts.push(VirtualHost {
            name: BLOCK_ALL.to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                r#match: Some(prefix_match("/")),
                action: Some(route::Action::DirectResponse(DirectResponseAction {
                    status: 502,
                    body: None,
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    RouteConfiguration {
        name: OUTBOUND_ROUTE_NAME.to_string(),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// The names a client may use for a service, as Istio generates them: the FQDN, and for
/// Kubernetes-style hosts `name.ns`, `name.ns.svc`, plus the bare `name` from the same
/// namespace; each with `:port`, and without it for port 80.
pub fn domains(host: &str, port: u32, client_namespace: &str) -> Vec<String> {
    let mut names = vec![host.to_string()];
    if let Some(rest) = host.strip_suffix(".svc.cluster.local")
        && let Some((name, namespace)) = rest.split_once('.')
        && !namespace.contains('.')
    {
        names.push(format!("{name}.{namespace}"));
        names.push(format!("{name}.{namespace}.svc"));
        if namespace == client_namespace {
            names.push(name.to_string());
        }
    }
    let mut domains = Vec::new();
    for name in names {
        domains.push(format!("{name}:{port}"));
        if port == 80 {
            domains.push(name);
        }
    }
    domains
}

/// Where a rule comes from: its VirtualService's namespace (short destination hosts resolve
/// there) and the rule after delegation.
struct Rule {
    namespace: String,
    http: HttpRoute,
}

/// The rules of the VirtualService for `service` with delegates expanded in place: each
/// delegate rule inherits the root rule's settings it does not set and its matches are AND-ed
/// with the root's (combinations that contradict are dropped), as Istio merges them.
fn rules_for(model: &MeshModel, proxy: &ProxyView<'_>, service: &Service) -> Option<Vec<Rule>> {
    let vs = model.virtual_service_for_proxy(&service.host, proxy)?;
    Some(rules_of(model, vs))
}

/// The HTTP rules of `vs` with delegates expanded in place (see [`rules_for`]).
fn rules_of(
    model: &MeshModel,
    vs: &crate::model::Named<trellis_api::networking::VirtualService>,
) -> Vec<Rule> {
    let mut rules = Vec::new();
    for http in &vs.spec.http {
        let Some(delegate) = &http.delegate else {
            rules.push(Rule {
                namespace: vs.namespace.clone(),
                http: http.clone(),
            });
            continue;
        };
        let ns = delegate.namespace.as_deref().unwrap_or(&vs.namespace);
        let Some(target) = model.delegate(&delegate.name, ns) else {
            continue; // Istio drops a rule whose delegate does not exist (yet).
        };
        // Only a real delegate (no hosts), visible to the root's namespace, is followed; the
        // store rejects the others (cycles).
        if !target.spec.hosts.is_empty()
            || !crate::registry::exported_to(
                &target.spec.export_to,
                &target.namespace,
                &vs.namespace,
            )
        {
            continue;
        }
        for leaf in &target.spec.http {
            if leaf.delegate.is_some() {
                continue;
            }
            if let Some(merged) = matching::merge_delegate(http, leaf) {
                rules.push(Rule {
                    namespace: target.namespace.clone(),
                    http: merged,
                });
            }
        }
    }
    rules
}

fn routes_for(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    service: &Service,
    port: &ServicePort,
) -> Vec<Route> {
    let Some(rules) = rules_for(model, proxy, service) else {
        return vec![default_route(model, proxy, service, port)];
    };
    let mesh = |gateways: &[String]| gateways.iter().any(|g| g == "mesh");
    translate_rules(model, proxy, &rules, port, &mesh)
}

/// The routes of a VirtualService on a gateway's server `port`: its HTTP rules (delegates
/// expanded) whose matches apply to the gateway (`bound` says whether a match's `gateways`
/// name it).
pub fn gateway_routes(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    vs: &crate::model::Named<trellis_api::networking::VirtualService>,
    port: &ServicePort,
    bound: &dyn Fn(&[String]) -> bool,
) -> Vec<Route> {
    translate_rules(model, proxy, &rules_of(model, vs), port, bound)
}

/// Istio's rules in order → Envoy routes (one per applicable match).
fn translate_rules(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    rules: &[Rule],
    port: &ServicePort,
    bound: &dyn Fn(&[String]) -> bool,
) -> Vec<Route> {
    let mut routes = Vec::new();
    for rule in rules {
        let http = &rule.http;
        let matches = matching::applicable_to(&http.match_, proxy, port.number, bound);
        if !http.match_.is_empty() && matches.is_empty() {
            continue; // every match is for another port, source or gateway
        }
        let mut template = Route::default();
        headers::apply_route_headers(&mut template, http.headers.as_ref());
        if !actions::apply(&mut template, http, &rule.namespace, port, model, proxy) {
            continue;
        }
        filters::apply(&mut template, http);
        if matches.is_empty() {
            let mut r = template.clone();
            r.r#match = Some(prefix_match("/"));
            routes.push(r);
        } else {
            for m in matches {
                let mut r = template.clone();
                r.r#match = Some(matching::route_match(m));
                routes.push(r);
            }
        }
    }
    routes
}

/// A service without a VirtualService: everything to the whole service, with Istio's default
/// retry policy and the DestinationRule's hash policy.
fn default_route(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    service: &Service,
    port: &ServicePort,
) -> Route {
    let action = RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(outbound_cluster_name(
            port.number,
            None,
            &service.host,
        ))),
        timeout: Some(duration(std::time::Duration::ZERO)),
        retry_policy: actions::retry_policy(None),
        hash_policy: actions::hash_policy(model, proxy, &service.host, None, port.number),
        ..Default::default()
    };
    Route {
        r#match: Some(prefix_match("/")),
        action: Some(route::Action::Route(action)),
        ..Default::default()
    }
}

fn prefix_match(prefix: &str) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix(prefix.to_string())),
        ..Default::default()
    }
}
