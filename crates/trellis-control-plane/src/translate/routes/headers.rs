//! Istio `headers` (request/response set/add/remove) on routes and weighted clusters: `set`
//! overwrites (`OVERWRITE_IF_EXISTS_OR_ADD`), `add` appends (`APPEND_IF_EXISTS_OR_ADD`).

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{Route, weighted_cluster::ClusterWeight};
use trellis_api::networking::{HeaderOperations, Headers};

/// Adds the header operations to a route.
pub fn apply_route_headers(route: &mut Route, headers: Option<&Headers>) {
    let Some(h) = headers else { return };
    if let Some(ops) = &h.request {
        route.request_headers_to_add.extend(to_add(ops));
        route
            .request_headers_to_remove
            .extend(ops.remove.iter().cloned());
    }
    if let Some(ops) = &h.response {
        route.response_headers_to_add.extend(to_add(ops));
        route
            .response_headers_to_remove
            .extend(ops.remove.iter().cloned());
    }
}

/// Adds the header operations to one weighted cluster.
pub fn apply_cluster_headers(cluster: &mut ClusterWeight, headers: Option<&Headers>) {
    let Some(h) = headers else { return };
    if let Some(ops) = &h.request {
        cluster.request_headers_to_add.extend(to_add(ops));
        cluster
            .request_headers_to_remove
            .extend(ops.remove.iter().cloned());
    }
    if let Some(ops) = &h.response {
        cluster.response_headers_to_add.extend(to_add(ops));
        cluster
            .response_headers_to_remove
            .extend(ops.remove.iter().cloned());
    }
}

fn to_add(ops: &HeaderOperations) -> Vec<HeaderValueOption> {
    let option = |k: &String, v: &String, action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    ops.set
        .iter()
        .map(|(k, v)| option(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            ops.add
                .iter()
                .map(|(k, v)| option(k, v, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}
