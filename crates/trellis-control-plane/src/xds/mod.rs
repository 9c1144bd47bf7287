//! Where xDS is pushed: the ADS server, one task per proxy stream, and the sync status that
//! `/debug/syncz` reports.

mod cache;
mod metrics;
mod names;
mod nds;
mod resources;
mod server;
mod status;
mod stream;

pub use cache::ConfigCache;
pub use metrics::XdsMetrics;
pub use resources::{Entry, Part, ProxyConfig};
pub use server::AdsServer;
pub use status::{ProxyStatus, SyncRegistry, SynczReport, TypeStatus};

use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Any;

/// Everything one proxy should have, by type URL and resource name. Produced by
/// `translate::generate` for each proxy from the current snapshot.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProxyResources {
    /// type URL → resource name → packed resource.
    pub by_type: BTreeMap<&'static str, BTreeMap<String, Any>>,
}

impl ProxyResources {
    /// Adds one resource of a type.
    pub fn insert(&mut self, type_url: &'static str, name: String, resource: Any) {
        self.by_type
            .entry(type_url)
            .or_default()
            .insert(name, resource);
    }

    /// The resources of one type (empty if none).
    pub fn of_type(&self, type_url: &str) -> impl Iterator<Item = (&String, &Any)> {
        self.by_type.get(type_url).into_iter().flatten()
    }
}
