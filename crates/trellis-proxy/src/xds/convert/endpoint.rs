//! `ClusterLoadAssignment` → [`config::Endpoints`].

#![allow(deprecated)]

use envoy_types::pb::envoy::config::endpoint::v3 as proto;

use super::{ConvertError, Cx, join, reject_unsupported};
use crate::config;

impl TryFrom<&proto::ClusterLoadAssignment> for config::Endpoints {
    type Error = ConvertError;

    fn try_from(la: &proto::ClusterLoadAssignment) -> Result<Self, ConvertError> {
        let cx = Cx::new("ClusterLoadAssignment", &la.cluster_name);
        if la.cluster_name.is_empty() {
            return Err(cx.missing("cluster_name"));
        }
        convert_assignment(&cx, "", la)
    }
}

/// Converts a load assignment, standalone (EDS) or inline in a STATIC cluster.
pub(crate) fn convert_assignment(
    cx: &Cx,
    path: &str,
    la: &proto::ClusterLoadAssignment,
) -> Result<config::Endpoints, ConvertError> {
    reject_unsupported!(cx, path, la, proto::ClusterLoadAssignment { cluster_name, endpoints }
        unsupported { named_endpoints, policy });
    let mut out = Vec::new();
    for (i, locality) in la.endpoints.iter().enumerate() {
        let lpath = join(path, &format!("endpoints[{i}]"));
        reject_unsupported!(cx, &lpath, locality, proto::LocalityLbEndpoints { lb_endpoints, load_balancing_weight }
            unsupported { locality, metadata, priority, proximity, lb_config });
        for (j, lb) in locality.lb_endpoints.iter().enumerate() {
            let epath = join(&lpath, &format!("lb_endpoints[{j}]"));
            reject_unsupported!(cx, &epath, lb, proto::LbEndpoint { load_balancing_weight, host_identifier }
                unsupported { health_status, metadata });
            let endpoint = match &lb.host_identifier {
                Some(proto::lb_endpoint::HostIdentifier::Endpoint(e)) => e,
                Some(proto::lb_endpoint::HostIdentifier::EndpointName(_)) => {
                    return Err(cx.unsupported_field(&join(&epath, "endpoint_name")));
                }
                None => return Err(cx.missing(&join(&epath, "endpoint"))),
            };
            let epath_e = join(&epath, "endpoint");
            reject_unsupported!(cx, &epath_e, endpoint, proto::Endpoint { address }
                unsupported { health_check_config, hostname, additional_addresses, observability_name });
            let address =
                super::socket_address(cx, &join(&epath_e, "address"), endpoint.address.as_ref())?;
            let weight = lb.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            if weight == 0 {
                return Err(cx.err(&join(&epath, "load_balancing_weight"), "must be at least 1"));
            }
            out.push(config::Endpoint { address, weight });
        }
    }
    Ok(config::Endpoints {
        cluster_name: la.cluster_name.clone(),
        endpoints: out,
    })
}
