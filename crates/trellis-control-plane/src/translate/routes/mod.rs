//! The outbound route table: one virtual host per service port, with the VirtualService's HTTP
//! rules translated in order (Istio's first-match semantics), or a default route to the service.

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster, header_matcher::HeaderMatchSpecifier, route, route_action::ClusterSpecifier,
    route_match::PathSpecifier, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use trellis_api::StringMatch;
use trellis_api::networking::{HttpMatchRequest, HttpRoute};
use trellis_xds::NodeIdentity;

use super::proto::duration;
use super::{OUTBOUND_ROUTE_NAME, outbound_cluster_name};
use crate::model::MeshModel;
use crate::registry::{Service, ServicePort};

/// The route configuration of the outbound listener.
pub fn outbound(
    model: &MeshModel,
    node: &NodeIdentity,
    services: &[(&Service, Vec<&ServicePort>)],
) -> RouteConfiguration {
    let mut virtual_hosts = Vec::new();
    for (service, ports) in services {
        for port in ports {
            virtual_hosts.push(VirtualHost {
                name: format!("{}:{}", service.host, port.number),
                domains: domains(&service.host, port.number, &node.namespace),
                routes: routes_for(model, service, port),
                ..Default::default()
            });
        }
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

fn routes_for(model: &MeshModel, service: &Service, port: &ServicePort) -> Vec<Route> {
    let Some(vs) = model.virtual_service_for(&service.host) else {
        return vec![default_route(service, port)];
    };
    let mut routes = Vec::new();
    for http in &vs.spec.http {
        let matches: Vec<&HttpMatchRequest> = http
            .match_
            .iter()
            .filter(|m| m.port.is_none_or(|p| p == port.number))
            .collect();
        if !http.match_.is_empty() && matches.is_empty() {
            continue; // every match is for another port
        }
        let Some(action) = route_action(http, &vs.namespace, port, model) else {
            continue;
        };
        if matches.is_empty() {
            routes.push(route(prefix_match("/"), action));
        } else {
            routes.extend(
                matches
                    .into_iter()
                    .map(|m| route(match_of(m), action.clone())),
            );
        }
    }
    routes
}

fn default_route(service: &Service, port: &ServicePort) -> Route {
    let action = RouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(outbound_cluster_name(
            port.number,
            None,
            &service.host,
        ))),
        timeout: Some(duration(std::time::Duration::ZERO)),
        ..Default::default()
    };
    route(prefix_match("/"), action)
}

fn route(matcher: RouteMatch, action: RouteAction) -> Route {
    Route {
        r#match: Some(matcher),
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

fn match_of(m: &HttpMatchRequest) -> RouteMatch {
    let path_specifier = match &m.uri {
        None => PathSpecifier::Prefix("/".to_string()),
        Some(StringMatch::Exact(path)) => PathSpecifier::Path(path.clone()),
        Some(StringMatch::Prefix(prefix)) => PathSpecifier::Prefix(prefix.clone()),
        Some(StringMatch::Regex(regex)) => PathSpecifier::SafeRegex(regex_matcher(regex)),
    };
    let headers = m
        .headers
        .iter()
        .map(|(name, value)| HeaderMatcher {
            name: name.to_ascii_lowercase(),
            header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(string_matcher(value))),
            ..Default::default()
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path_specifier),
        case_sensitive: m
            .ignore_uri_case
            .filter(|i| *i)
            .map(|_| BoolValue { value: false }),
        headers,
        ..Default::default()
    }
}

fn string_matcher(m: &StringMatch) -> StringMatcher {
    let pattern = match m {
        StringMatch::Exact(s) => MatchPattern::Exact(s.clone()),
        StringMatch::Prefix(s) => MatchPattern::Prefix(s.clone()),
        StringMatch::Regex(s) => MatchPattern::SafeRegex(regex_matcher(s)),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}

fn regex_matcher(regex: &str) -> RegexMatcher {
    RegexMatcher {
        regex: regex.to_string(),
        ..Default::default()
    }
}

/// The route action of an HTTP rule: one cluster, or weighted clusters.
fn route_action(
    http: &HttpRoute,
    namespace: &str,
    port: &ServicePort,
    model: &MeshModel,
) -> Option<RouteAction> {
    let mut clusters: Vec<(String, u32)> = Vec::new();
    let single = http.route.len() == 1;
    for destination in &http.route {
        let host = trellis_api::resolve_host(&destination.destination.host, namespace);
        let target_port = destination
            .destination
            .port
            .as_ref()
            .and_then(|p| p.number)
            .or_else(|| {
                let service = model.registry.service(&host)?;
                match service.ports.as_slice() {
                    [only] => Some(only.number),
                    _ => service
                        .ports
                        .iter()
                        .find(|p| p.number == port.number)
                        .map(|p| p.number),
                }
            })
            .unwrap_or(port.number);
        let weight = match destination.weight {
            Some(w) => u32::try_from(w).unwrap_or(0),
            None if single => 100,
            None => 0,
        };
        if weight == 0 && !single {
            continue;
        }
        let name = outbound_cluster_name(
            target_port,
            destination.destination.subset.as_deref(),
            &host,
        );
        clusters.push((name, weight));
    }
    let cluster_specifier = match clusters.as_slice() {
        [] => return None,
        [(name, _)] => ClusterSpecifier::Cluster(name.clone()),
        _ => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .into_iter()
                .map(|(name, weight)| ClusterWeight {
                    name,
                    weight: Some(UInt32Value { value: weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let timeout = http
        .timeout
        .map(|t| t.as_std())
        .unwrap_or(std::time::Duration::ZERO);
    Some(RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: Some(duration(timeout)),
        ..Default::default()
    })
}
