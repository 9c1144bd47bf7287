//! The per-generation config cache: the shared part of a sidecar's config (outbound clusters,
//! endpoints and route configuration, see `translate::generate_shared`) is translated and
//! encoded once per [`SharedKey`] and generation, and every stream whose proxy has that key
//! holds the same `Arc`s. Only the proxy's own part (listeners, inbound clusters) is built per
//! proxy. The cache lives in the [`Snapshot`](crate::model::Snapshot) of its generation, so it
//! is dropped with it: no invalidation to get wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;
use trellis_xds::NodeIdentity;

use super::resources::{Part, ProxyConfig};
use crate::model::MeshModel;
use crate::translate::{self, SharedKey};

/// The shared parts of one key, by type URL.
type SharedParts = Vec<(&'static str, Arc<Part>)>;

/// Shared config parts of one generation, by [`SharedKey`].
#[derive(Debug, Default)]
pub struct ConfigCache {
    shared: Mutex<HashMap<SharedKey, Arc<OnceCell<Arc<SharedParts>>>>>,
}

impl ConfigCache {
    /// `node`'s config for `model` (the model of this cache's generation): the shared part
    /// from the cache (translated by the first stream that asks; concurrent askers of the same
    /// key wait for it rather than translate it again), plus its own part.
    pub async fn config_for(&self, model: &MeshModel, node: &NodeIdentity) -> ProxyConfig {
        let mut config = ProxyConfig::default();
        if let Some(key) = translate::shared_key(model, node) {
            let cell = {
                let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
                shared.entry(key).or_default().clone()
            };
            let parts = cell
                .get_or_init(|| async { Arc::new(shared_parts(model, node)) })
                .await;
            for (type_url, part) in parts.iter() {
                config.push(type_url, part.clone());
            }
        }
        config.push_all(translate::generate_own(model, node));
        config
    }

    /// How many distinct shared parts this generation holds (for tests and debugging).
    pub fn shared_keys(&self) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

fn shared_parts(model: &MeshModel, node: &NodeIdentity) -> SharedParts {
    translate::generate_shared(model, node)
        .by_type
        .into_iter()
        .map(|(type_url, resources)| (type_url, Arc::new(Part::new(resources))))
        .collect()
}

#[cfg(test)]
mod tests;
