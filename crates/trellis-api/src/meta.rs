//! Kubernetes object metadata, resource identity and where a resource came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// The namespace used when a resource does not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The part of Kubernetes `ObjectMeta` that Trellis uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "RawObjectMeta")]
pub struct ObjectMeta {
    /// Resource name (required).
    pub name: String,
    /// Namespace, `default` when absent.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The wire form of metadata: what we use plus server-populated fields we tolerate and ignore.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct RawObjectMeta {
    #[serde(default)]
    name: String,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    creation_timestamp: Option<IgnoredAny>,
    resource_version: Option<IgnoredAny>,
    generation: Option<IgnoredAny>,
    uid: Option<IgnoredAny>,
    managed_fields: Option<IgnoredAny>,
    finalizers: Option<IgnoredAny>,
    owner_references: Option<IgnoredAny>,
    generate_name: Option<IgnoredAny>,
    self_link: Option<IgnoredAny>,
    deletion_timestamp: Option<IgnoredAny>,
    deletion_grace_period_seconds: Option<IgnoredAny>,
}

impl From<RawObjectMeta> for ObjectMeta {
    fn from(raw: RawObjectMeta) -> Self {
        ObjectMeta {
            name: raw.name,
            namespace: raw
                .namespace
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            labels: raw.labels,
            annotations: raw.annotations,
        }
    }
}

/// Identifies a resource: kind, namespace and name; displayed as `Kind namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    /// Kind, e.g. `VirtualService`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Where a resource was read from, so errors and debug output can point back to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Source {
    /// The file.
    pub file: PathBuf,
    /// 0-based index of the document in the file (counting non-empty documents).
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
}
