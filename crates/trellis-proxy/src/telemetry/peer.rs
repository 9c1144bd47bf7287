//! Who is on the other end of a request, as Istio's metadata exchange tells it: the
//! `x-envoy-peer-metadata` header (base64 of a protobuf `Struct` with Istio's node keys) and the
//! EDS endpoint metadata `filter_metadata["istio"]["workload"]`
//! (`name;namespace;canonical service;canonical revision;cluster`).
//!
//! Everything here comes from a peer or a config source and is parsed defensively: bounded
//! sizes, printable values only, and an error (never a panic) for anything else. A peer's
//! *identity* (principal) never comes from here: only from a verified certificate.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::Message as _;
use trellis_xds::node::{
    CANONICAL_REVISION_LABELS, CANONICAL_SERVICE_LABELS, canonical_revision, canonical_service,
};

/// The request/response header carrying the sender's workload metadata.
pub const PEER_METADATA_HEADER: &str = "x-envoy-peer-metadata";
/// The request/response header carrying the sender's node id.
pub const PEER_METADATA_ID_HEADER: &str = "x-envoy-peer-metadata-id";
/// The EDS `filter_metadata` key of Istio's workload metadata.
pub const ENDPOINT_METADATA_KEY: &str = "istio";
/// The field of that struct holding `name;namespace;app;version;cluster`.
pub const ENDPOINT_WORKLOAD_FIELD: &str = "workload";
/// Istio's cluster id when none is configured (a single-cluster mesh).
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";
/// The value of a label nobody told us.
pub const UNKNOWN: &str = "unknown";

/// The largest peer-metadata header accepted (Istio's are well under 1 KiB).
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The longest value accepted for one field (a DNS name's limit).
const MAX_VALUE_BYTES: usize = 253;

/// Why peer metadata was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerError {
    /// The header is larger than [`MAX_HEADER_BYTES`].
    #[error("peer metadata is {0} bytes, more than the {MAX_HEADER_BYTES} accepted")]
    TooLarge(usize),
    /// The header is not base64.
    #[error("peer metadata is not base64: {0}")]
    Base64(String),
    /// The decoded bytes are not a protobuf `Struct`.
    #[error("peer metadata is not a protobuf Struct: {0}")]
    Protobuf(String),
    /// A required field is missing or not a string.
    #[error("peer metadata has no string field {0}")]
    Missing(&'static str),
    /// A field's value is too long or has characters a label must not carry.
    #[error("peer metadata field {0} has an unacceptable value")]
    BadValue(&'static str),
    /// The endpoint metadata is not `name;namespace;app;version;cluster`.
    #[error("endpoint workload metadata {0:?} is not name;namespace;app;version;cluster")]
    BadWorkload(String),
}

/// A workload as the metrics' `source_*` / `destination_*` labels describe it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PeerWorkload {
    /// `*_workload`.
    pub workload: Arc<str>,
    /// `*_workload_namespace`.
    pub namespace: Arc<str>,
    /// `*_app`: the `app` label.
    pub app: Arc<str>,
    /// `*_version`: the `version` label.
    pub version: Arc<str>,
    /// `*_canonical_service` (Istio's `service.istio.io/canonical-name` rules).
    pub canonical_service: Arc<str>,
    /// `*_canonical_revision`.
    pub canonical_revision: Arc<str>,
    /// `*_cluster`.
    pub cluster: Arc<str>,
}

impl PeerWorkload {
    /// Every label `unknown`: a peer we know nothing about.
    pub fn unknown() -> Self {
        let u: Arc<str> = Arc::from(UNKNOWN);
        PeerWorkload {
            workload: u.clone(),
            namespace: u.clone(),
            app: u.clone(),
            version: u.clone(),
            canonical_service: u.clone(),
            canonical_revision: u.clone(),
            cluster: u,
        }
    }

    /// This proxy's own workload, from its node identity.
    pub fn from_node(node: &trellis_xds::NodeIdentity) -> Self {
        Self::from_labels(
            &node.workload,
            &node.namespace,
            &node.labels,
            DEFAULT_CLUSTER_ID,
        )
    }

    /// A workload from its name, namespace, labels and cluster: `app` and `version` are those
    /// labels (`unknown` when absent), the canonical ones follow Istio's fallbacks.
    fn from_labels(
        workload: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        cluster: &str,
    ) -> Self {
        let label = |k: &str| labels.get(k).map_or(UNKNOWN, String::as_str);
        PeerWorkload {
            workload: workload.into(),
            namespace: namespace.into(),
            app: label("app").into(),
            version: label("version").into(),
            canonical_service: canonical_service(labels, workload).into(),
            canonical_revision: canonical_revision(labels).into(),
            cluster: cluster.into(),
        }
    }

    /// Parses EDS endpoint metadata `name;namespace;canonical service;canonical revision;cluster`
    /// (empty parts become `unknown`). As in Istio, `app` and `version` are then the canonical
    /// service and revision.
    pub fn from_endpoint_metadata(text: &str) -> Result<Self, PeerError> {
        let bad = || PeerError::BadWorkload(text.chars().take(64).collect());
        let parts: Vec<&str> = text.split(';').collect();
        let [workload, namespace, service, revision, cluster] = parts.as_slice() else {
            return Err(bad());
        };
        let field = |v: &str| -> Result<Arc<str>, PeerError> {
            if v.is_empty() {
                Ok(UNKNOWN.into())
            } else if acceptable(v) {
                Ok(v.into())
            } else {
                Err(bad())
            }
        };
        let (service, revision) = (field(service)?, field(revision)?);
        Ok(PeerWorkload {
            workload: field(workload)?,
            namespace: field(namespace)?,
            app: service.clone(),
            version: revision.clone(),
            canonical_service: service,
            canonical_revision: revision,
            cluster: field(cluster)?,
        })
    }

    /// The EDS endpoint metadata text for this workload.
    pub fn endpoint_metadata(&self) -> String {
        format!(
            "{};{};{};{};{}",
            self.workload,
            self.namespace,
            self.canonical_service,
            self.canonical_revision,
            self.cluster
        )
    }

    /// Parses an `x-envoy-peer-metadata` value. Hostile input gets an error, never a panic,
    /// and nothing from it is used as an identity.
    pub fn from_header(value: &[u8]) -> Result<Self, PeerError> {
        if value.len() > MAX_HEADER_BYTES {
            return Err(PeerError::TooLarge(value.len()));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| PeerError::Base64(e.to_string()))?;
        let meta =
            Struct::decode(bytes.as_slice()).map_err(|e| PeerError::Protobuf(e.to_string()))?;
        let text = |key: &'static str| -> Result<Option<&str>, PeerError> {
            match meta.fields.get(key).map(|v| &v.kind) {
                None => Ok(None),
                Some(Some(Kind::StringValue(s))) if acceptable(s) => Ok(Some(s.as_str())),
                Some(Some(Kind::StringValue(_))) => Err(PeerError::BadValue(key)),
                Some(_) => Err(PeerError::Missing(key)),
            }
        };
        let workload = text(KEY_WORKLOAD_NAME)?.ok_or(PeerError::Missing(KEY_WORKLOAD_NAME))?;
        let namespace = text(KEY_NAMESPACE)?.ok_or(PeerError::Missing(KEY_NAMESPACE))?;
        let cluster = text(KEY_CLUSTER_ID)?.unwrap_or(UNKNOWN);
        let mut labels = BTreeMap::new();
        if let Some(Value {
            kind: Some(Kind::StructValue(s)),
        }) = meta.fields.get(KEY_LABELS)
        {
            for key in label_keys() {
                match s.fields.get(key).map(|v| &v.kind) {
                    Some(Some(Kind::StringValue(v))) if acceptable(v) => {
                        labels.insert(key.to_string(), v.clone());
                    }
                    Some(_) => return Err(PeerError::BadValue(KEY_LABELS)),
                    None => {}
                }
            }
        }
        Ok(Self::from_labels(workload, namespace, &labels, cluster))
    }
}

const KEY_WORKLOAD_NAME: &str = trellis_xds::node::keys::WORKLOAD_NAME;
const KEY_NAMESPACE: &str = trellis_xds::node::keys::NAMESPACE;
const KEY_LABELS: &str = trellis_xds::node::keys::LABELS;
const KEY_CLUSTER_ID: &str = "CLUSTER_ID";

/// A value fit for a label: non-empty, bounded, printable ASCII without quotes or backslashes.
fn acceptable(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VALUE_BYTES
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// The labels the canonical service and revision are read from (the only ones sent).
fn label_keys() -> impl Iterator<Item = &'static str> {
    CANONICAL_SERVICE_LABELS
        .into_iter()
        .chain(CANONICAL_REVISION_LABELS)
}

/// The `x-envoy-peer-metadata` value this proxy sends: base64 of a `Struct` with
/// `WORKLOAD_NAME`, `NAMESPACE`, `CLUSTER_ID` and the canonical-service `LABELS`.
pub fn header_value(node: &trellis_xds::NodeIdentity) -> String {
    let string = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_string())),
    };
    let labels = label_keys()
        .filter_map(|k| node.labels.get(k).map(|v| (k.to_string(), string(v))))
        .collect();
    let mut fields = std::collections::HashMap::new();
    fields.insert(KEY_WORKLOAD_NAME.to_string(), string(&node.workload));
    fields.insert(KEY_NAMESPACE.to_string(), string(&node.namespace));
    fields.insert(KEY_CLUSTER_ID.to_string(), string(DEFAULT_CLUSTER_ID));
    fields.insert(
        KEY_LABELS.to_string(),
        Value {
            kind: Some(Kind::StructValue(Struct { fields: labels })),
        },
    );
    let bytes = Struct {
        fields: fields.into_iter().collect(),
    }
    .encode_to_vec();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The namespace of a SPIFFE identity (`spiffe://TD/ns/NS/sa/SA`), if it has that shape.
pub fn spiffe_namespace(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("spiffe://")?;
    let mut parts = rest.split('/');
    let (_, ns_key, ns, sa_key) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (ns_key == "ns" && sa_key == "sa").then_some(ns)
}
