//! `ClusterLoadAssignment` → [`config::Endpoints`].

#![allow(deprecated)]

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as proto;

use std::sync::Arc;

use super::{ConvertError, Cx, join, reject_unsupported};
use crate::config;
use crate::telemetry::PeerWorkload;

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
    let mut out = Vec::new();
    for_each_endpoint(cx, path, la, |epath, endpoint, template| {
        let address =
            super::socket_address(cx, &join(epath, "address"), endpoint.address.as_ref())?;
        out.push(config::Endpoint {
            address,
            ..template
        });
        Ok(())
    })?;
    Ok(config::Endpoints {
        cluster_name: la.cluster_name.clone(),
        endpoints: out,
    })
}

/// Walks a load assignment's endpoints, checking every field but the endpoint's address, and
/// calls `f(path of the endpoint, endpoint, endpoint with every attribute but the address)`.
pub(crate) fn for_each_endpoint(
    cx: &Cx,
    path: &str,
    la: &proto::ClusterLoadAssignment,
    mut f: impl FnMut(&str, &proto::Endpoint, config::Endpoint) -> Result<(), ConvertError>,
) -> Result<(), ConvertError> {
    reject_unsupported!(cx, path, la, proto::ClusterLoadAssignment { cluster_name, endpoints }
        unsupported { named_endpoints, policy });
    for (i, locality) in la.endpoints.iter().enumerate() {
        let lpath = join(path, &format!("endpoints[{i}]"));
        reject_unsupported!(cx, &lpath, locality, proto::LocalityLbEndpoints { lb_endpoints, load_balancing_weight, locality, priority }
            unsupported { metadata, proximity, lb_config });
        let loc = match &locality.locality {
            Some(l) => {
                let core::Locality {
                    region: _,
                    zone: _,
                    sub_zone: _,
                } = l;
                config::Locality {
                    region: l.region.clone(),
                    zone: l.zone.clone(),
                    sub_zone: l.sub_zone.clone(),
                }
            }
            None => config::Locality::default(),
        };
        let locality_weight = match &locality.load_balancing_weight {
            Some(w) if w.value == 0 => {
                return Err(cx.err(&join(&lpath, "load_balancing_weight"), "must be at least 1"));
            }
            Some(w) => Some(w.value),
            None => None,
        };
        if locality.priority > 128 {
            return Err(cx.err(&join(&lpath, "priority"), "must be at most 128"));
        }
        for (j, lb) in locality.lb_endpoints.iter().enumerate() {
            let epath = join(&lpath, &format!("lb_endpoints[{j}]"));
            reject_unsupported!(cx, &epath, lb, proto::LbEndpoint { load_balancing_weight, host_identifier, health_status, metadata }
                unsupported {});
            let (transport_socket_match, workload) = match &lb.metadata {
                None => Default::default(),
                Some(m) => endpoint_metadata(cx, &join(&epath, "metadata"), m)?,
            };
            use core::HealthStatus as H;
            let healthy = match H::try_from(lb.health_status) {
                Ok(H::Unknown | H::Healthy) => true,
                Ok(H::Unhealthy | H::Draining | H::Timeout) => false,
                Ok(other) => {
                    return Err(
                        cx.unsupported_value(&join(&epath, "health_status"), other.as_str_name())
                    );
                }
                Err(_) => {
                    return Err(
                        cx.unsupported_value(&join(&epath, "health_status"), lb.health_status)
                    );
                }
            };
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
            let weight = lb.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            if weight == 0 {
                return Err(cx.err(&join(&epath, "load_balancing_weight"), "must be at least 1"));
            }
            let template = config::Endpoint {
                address: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                weight,
                locality: loc.clone(),
                priority: locality.priority,
                locality_weight,
                healthy,
                transport_socket_match,
                workload: workload.clone(),
            };
            f(&epath_e, endpoint, template)?;
        }
    }
    Ok(())
}

/// The key of endpoint metadata that `transport_socket_matches` match on.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// `envoy.transport_socket_match` values.
type SocketMatch = std::collections::BTreeMap<String, String>;

/// Endpoint metadata: `filter_metadata["envoy.transport_socket_match"]` (string values) and
/// Istio's `filter_metadata["istio"]` with only `workload` = `name;namespace;app;version;cluster`.
fn endpoint_metadata(
    cx: &Cx,
    path: &str,
    m: &core::Metadata,
) -> Result<(SocketMatch, Option<Arc<PeerWorkload>>), ConvertError> {
    use crate::telemetry::peer::{ENDPOINT_METADATA_KEY, ENDPOINT_WORKLOAD_FIELD};
    reject_unsupported!(cx, path, m, core::Metadata { filter_metadata } unsupported { typed_filter_metadata });
    let mut keys: Vec<&String> = m.filter_metadata.keys().collect();
    keys.sort();
    let mut out = Default::default();
    let mut workload = None;
    for key in keys {
        let kpath = format!("{}[{key:?}]", join(path, "filter_metadata"));
        if key == ENDPOINT_METADATA_KEY {
            let fields = super::cluster::string_struct(cx, &kpath, &m.filter_metadata[key])?;
            for (field, value) in fields {
                let fpath = format!("{kpath}.{field}");
                if field != ENDPOINT_WORKLOAD_FIELD {
                    return Err(cx.err(&fpath, "is not supported"));
                }
                let peer =
                    PeerWorkload::from_endpoint_metadata(&value).map_err(|e| cx.err(&fpath, e))?;
                workload = Some(Arc::new(peer));
            }
            continue;
        }
        if key != TRANSPORT_SOCKET_MATCH {
            return Err(cx.err(&kpath, "is not supported"));
        }
        out = super::cluster::string_struct(cx, &kpath, &m.filter_metadata[key])?;
    }
    Ok((out, workload))
}
