//! Istio's workload metadata on EDS endpoints: `filter_metadata["istio"]["workload"] =
//! "NAME;NAMESPACE;CANONICAL-SERVICE;CANONICAL-REVISION;CLUSTER"`, as istiod emits it. A client
//! proxy labels its `reporter="source"` metrics' `destination_*` labels from it, without having
//! to trust anything the destination says about itself.

use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

use crate::registry::Endpoint as RegistryEndpoint;

/// The `filter_metadata` key.
pub const ISTIO_KEY: &str = "istio";
/// Istio's cluster id of a single-cluster mesh.
pub const CLUSTER_ID: &str = "Kubernetes";

/// The `("istio", {workload: ...})` entry for an endpoint that comes from a WorkloadEntry (or
/// `None` for others, e.g. a ServiceEntry's inline addresses: their labels stay `unknown`).
pub fn workload_metadata(e: &RegistryEndpoint) -> Option<(String, Struct)> {
    let (_, name) = e.workload.as_deref()?.split_once('/')?;
    let app = trellis_xds::node::canonical_service(&e.labels, name);
    let version = trellis_xds::node::canonical_revision(&e.labels);
    // `;` separates the fields: a value containing one cannot be represented.
    if [name, &e.namespace, app, version]
        .iter()
        .any(|v| v.contains(';'))
    {
        return None;
    }
    let text = format!("{name};{};{app};{version};{CLUSTER_ID}", e.namespace);
    Some((
        ISTIO_KEY.to_string(),
        Struct {
            fields: [(
                "workload".to_string(),
                Value {
                    kind: Some(Kind::StringValue(text)),
                },
            )]
            .into(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(workload: Option<&str>, labels: &[(&str, &str)]) -> RegistryEndpoint {
        RegistryEndpoint {
            address: "10.0.0.1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ports: Default::default(),
            weight: 1,
            workload: workload.map(str::to_string),
            locality: None,
            service_account: None,
            namespace: "bookinfo".into(),
        }
    }

    fn text(e: &RegistryEndpoint) -> Option<String> {
        let (_, s) = workload_metadata(e)?;
        match &s.fields.get("workload")?.kind {
            Some(Kind::StringValue(v)) => Some(v.clone()),
            _ => None,
        }
    }

    #[test]
    fn workload_entries_carry_istio_workload_metadata() {
        let e = endpoint(
            Some("bookinfo/reviews-v2-0"),
            &[("app", "reviews"), ("version", "v2")],
        );
        assert_eq!(
            text(&e).as_deref(),
            Some("reviews-v2-0;bookinfo;reviews;v2;Kubernetes")
        );
        // Istio's canonical defaults: the workload name and `latest`.
        let e = endpoint(Some("bookinfo/db"), &[]);
        assert_eq!(
            text(&e).as_deref(),
            Some("db;bookinfo;db;latest;Kubernetes")
        );
        assert_eq!(text(&endpoint(None, &[("app", "x")])), None);
        assert_eq!(text(&endpoint(Some("bookinfo/a"), &[("app", "x;y")])), None);
    }
}
