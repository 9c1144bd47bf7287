//! Endpoints (EDS, and the inline assignment of DNS clusters): subsets filtered by labels,
//! grouped by locality, with per-proxy priorities for locality failover and weights for
//! locality `distribute`, as istiod computes them for the proxy it pushes to.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{Locality, Metadata};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use trellis_api::networking::LocalityLbSetting;

use super::clusters::OutboundCluster;
use super::proto::socket_address;
use crate::model::{MeshModel, ProxyView, wildcard_matches};
use crate::registry::Endpoint as RegistryEndpoint;

/// Assignments for every EDS cluster of the plan.
pub fn outbound(
    plan: &[OutboundCluster<'_>],
    proxy: &ProxyView<'_>,
    model: &MeshModel,
) -> Vec<ClusterLoadAssignment> {
    plan.iter()
        .filter(|c| c.is_eds())
        .map(|c| assignment(c, proxy, model))
        .collect()
}

/// An endpoint's metadata from its `filter_metadata` entries (auto mTLS's tlsMode, Istio's
/// workload metadata); `None` when it has none.
fn endpoint_metadata(
    tls_mode: Option<(String, envoy_types::pb::google::protobuf::Struct)>,
    workload: Option<(String, envoy_types::pb::google::protobuf::Struct)>,
) -> Option<Metadata> {
    let filter_metadata: std::collections::HashMap<_, _> =
        tls_mode.into_iter().chain(workload).collect();
    (!filter_metadata.is_empty()).then(|| Metadata {
        filter_metadata,
        ..Default::default()
    })
}

/// `region/zone/subzone` split into its parts (missing parts empty).
fn parse_locality(text: Option<&str>) -> (String, String, String) {
    let mut parts = text.unwrap_or("").splitn(3, '/').map(str::to_string);
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

/// The assignment of one cluster, as seen by `proxy`. Endpoints that accept mesh mutual TLS
/// carry the `tlsMode: istio` metadata auto mTLS selects on.
pub fn assignment(
    c: &OutboundCluster<'_>,
    proxy: &ProxyView<'_>,
    model: &MeshModel,
) -> ClusterLoadAssignment {
    let selected: Vec<&RegistryEndpoint> = c
        .service
        .endpoints
        .iter()
        .filter(|e| {
            c.subset_labels
                .is_none_or(|labels| labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
        })
        .collect();
    let policy = c.policy.as_ref();
    let setting: Option<&LocalityLbSetting> = policy
        .and_then(|p| p.load_balancer.as_ref())
        .and_then(|lb| lb.locality_lb_setting.as_ref())
        .filter(|l| l.enabled != Some(false));
    let outlier = policy.is_some_and(|p| p.outlier_detection.is_some());
    let enabled = policy
        .and_then(|p| p.load_balancer.as_ref())
        .and_then(|lb| lb.locality_lb_setting.as_ref())
        .is_none_or(|l| l.enabled != Some(false));
    let distribute = setting.filter(|s| !s.distribute.is_empty());
    let failover = enabled && outlier && distribute.is_none() && proxy.locality.is_some();

    // Group by (priority, locality), in a stable order.
    let mut groups: BTreeMap<(u32, String), Vec<&RegistryEndpoint>> = BTreeMap::new();
    for e in &selected {
        let priority = if failover {
            failover_priority(e, proxy, setting)
        } else {
            0
        };
        groups
            .entry((priority, e.locality.clone().unwrap_or_default()))
            .or_default()
            .push(e);
    }
    // Priorities must be consecutive from 0.
    let mut distinct: Vec<u32> = groups.keys().map(|(p, _)| *p).collect();
    distinct.dedup();
    let mut endpoints: Vec<LocalityLbEndpoints> = groups
        .into_iter()
        .map(|((priority, locality), eps)| {
            let (region, zone, sub_zone) = parse_locality(Some(&locality));
            let lb_endpoints: Vec<LbEndpoint> = eps
                .iter()
                .map(|e| {
                    let port = e.port_for(c.port);
                    LbEndpoint {
                        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                            address: Some(socket_address(&e.address, port)),
                            ..Default::default()
                        })),
                        load_balancing_weight: Some(UInt32Value { value: e.weight }),
                        metadata: endpoint_metadata(
                            super::mtls::endpoint_accepts_mtls(model, e, port)
                                .then(super::mtls::tls_mode_metadata),
                            super::peer_metadata::workload_metadata(e),
                        ),
                        ..Default::default()
                    }
                })
                .collect();
            LocalityLbEndpoints {
                locality: (!locality.is_empty()).then_some(Locality {
                    region,
                    zone,
                    sub_zone,
                }),
                load_balancing_weight: distribute.map(|_| UInt32Value {
                    value: eps.iter().map(|e| e.weight).sum(),
                }),
                priority: u32::try_from(distinct.iter().position(|p| *p == priority).unwrap_or(0))
                    .unwrap_or(0),
                lb_endpoints,
                ..Default::default()
            }
        })
        .collect();
    if let (Some(setting), Some(mine)) = (distribute, proxy.locality.as_deref()) {
        apply_distribute(&mut endpoints, setting, mine);
    }
    ClusterLoadAssignment {
        cluster_name: c.name.clone(),
        endpoints,
        ..Default::default()
    }
}

/// Istio's failover priority of an endpoint for a proxy: with `failoverPriority`, how many of
/// the listed labels (in order) fail to match; otherwise 0 same subzone, 1 same zone, 2 same
/// region, 3 a `failover` target region of the proxy's region, 4 anywhere else.
fn failover_priority(
    e: &RegistryEndpoint,
    proxy: &ProxyView<'_>,
    setting: Option<&LocalityLbSetting>,
) -> u32 {
    let (pr, pz, ps) = parse_locality(proxy.locality.as_deref());
    let (er, ez, es) = parse_locality(e.locality.as_deref());
    if let Some(labels) = setting
        .map(|s| &s.failover_priority)
        .filter(|l| !l.is_empty())
    {
        let mut matched = 0;
        for label in labels {
            let (key, value) = label.split_once('=').unwrap_or((label, ""));
            let same = match key {
                "topology.kubernetes.io/region" => er == pr,
                "topology.kubernetes.io/zone" => er == pr && ez == pz,
                "topology.istio.io/subzone" => er == pr && ez == pz && es == ps,
                _ if !value.is_empty() => e.labels.get(key).map(String::as_str) == Some(value),
                _ => e.labels.contains_key(key) && e.labels.get(key) == proxy.labels.get(key),
            };
            if !same {
                break;
            }
            matched += 1;
        }
        return u32::try_from(labels.len() - matched).unwrap_or(0);
    }
    if er == pr {
        if ez == pz {
            if es == ps { 0 } else { 1 }
        } else {
            2
        }
    } else if setting.is_some_and(|s| {
        s.failover
            .iter()
            .any(|f| f.from.as_deref() == Some(pr.as_str()) && f.to.as_deref() == Some(er.as_str()))
    }) {
        3
    } else {
        4
    }
}

/// Whether a locality matches a `distribute` pattern (`region/zone/*`, `*`, ...).
fn locality_matches(locality: &str, pattern: &str) -> bool {
    let l: Vec<&str> = locality.split('/').collect();
    for (i, p) in pattern.split('/').enumerate() {
        if p == "*" {
            return true;
        }
        if l.get(i).copied().unwrap_or("") != p
            && !wildcard_matches(p, l.get(i).copied().unwrap_or(""))
        {
            return false;
        }
    }
    true
}

/// Istio's `distribute`: for the first rule whose `from` matches the proxy, each `to` weight
/// is shared by the localities it matches; localities no `to` matches get no traffic.
fn apply_distribute(
    endpoints: &mut [LocalityLbEndpoints],
    setting: &LocalityLbSetting,
    mine: &str,
) {
    let Some(rule) = setting
        .distribute
        .iter()
        .find(|d| d.from.as_deref().is_some_and(|f| locality_matches(mine, f)))
    else {
        return;
    };
    let name = |l: &LocalityLbEndpoints| {
        l.locality
            .as_ref()
            .map(|l| format!("{}/{}/{}", l.region, l.zone, l.sub_zone))
            .unwrap_or_default()
    };
    let mut unmatched: Vec<bool> = vec![true; endpoints.len()];
    for (pattern, weight) in &rule.to {
        let indexes: Vec<usize> = (0..endpoints.len())
            .filter(|i| unmatched[*i] && locality_matches(&name(&endpoints[*i]), pattern))
            .collect();
        let original = |i: usize| {
            endpoints[i]
                .load_balancing_weight
                .as_ref()
                .map_or(1, |w| w.value)
        };
        let total: u32 = indexes.iter().map(|i| original(*i)).sum();
        let weights: Vec<(usize, u32)> = indexes
            .iter()
            .map(|i| {
                let w =
                    (f64::from(original(*i)) * f64::from(*weight) / f64::from(total.max(1))).ceil();
                (*i, w as u32)
            })
            .collect();
        for (i, w) in weights {
            unmatched[i] = false;
            endpoints[i].load_balancing_weight = (w > 0).then_some(UInt32Value { value: w });
        }
    }
    for (i, e) in endpoints.iter_mut().enumerate() {
        if unmatched[i] {
            e.lb_endpoints.clear();
        }
    }
}
