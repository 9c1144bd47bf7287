//! Endpoints (EDS): one ClusterLoadAssignment per outbound cluster, subsets filtered by labels.

use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::outbound_cluster_name;
use super::proto::socket_address;
use crate::model::MeshModel;
use crate::registry::{Service, ServicePort};

/// Assignments for every outbound cluster that `clusters::outbound` builds.
pub fn outbound(
    model: &MeshModel,
    services: &[(&Service, Vec<&ServicePort>)],
) -> Vec<ClusterLoadAssignment> {
    let mut out = Vec::new();
    for (service, ports) in services {
        let rule = model.destination_rule_for(&service.host);
        for port in ports {
            let all = |_: &crate::registry::Endpoint| true;
            out.push(assignment(
                outbound_cluster_name(port.number, None, &service.host),
                service,
                port,
                all,
            ));
            for subset in rule.iter().flat_map(|r| &r.spec.subsets) {
                let name = outbound_cluster_name(port.number, Some(&subset.name), &service.host);
                let selects = |e: &crate::registry::Endpoint| {
                    subset
                        .labels
                        .iter()
                        .all(|(k, v)| e.labels.get(k) == Some(v))
                };
                out.push(assignment(name, service, port, selects));
            }
        }
    }
    out
}

fn assignment(
    cluster_name: String,
    service: &Service,
    port: &ServicePort,
    selects: impl Fn(&crate::registry::Endpoint) -> bool,
) -> ClusterLoadAssignment {
    let lb_endpoints = service
        .endpoints
        .iter()
        .filter(|e| selects(e))
        .map(|e| LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(socket_address(e.address, e.port_for(port))),
                ..Default::default()
            })),
            load_balancing_weight: Some(UInt32Value { value: e.weight }),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let endpoints = if lb_endpoints.is_empty() {
        Vec::new()
    } else {
        vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }]
    };
    ClusterLoadAssignment {
        cluster_name,
        endpoints,
        ..Default::default()
    }
}
