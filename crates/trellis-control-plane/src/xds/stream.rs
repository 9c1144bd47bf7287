//! One ADS stream (one proxy): subscriptions, versions, nonces, ACK/NACK, and pushes when the
//! snapshot changes. State of the world: every response carries the full set of the type's
//! resources that the proxy subscribed to.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::{mpsc, watch};
use tonic::Status;
use tracing::{debug, info, warn};
use trellis_xds::{NodeIdentity, type_url};

use super::ProxyResources;
use super::status::{NackStatus, ProxyStatus, SyncRegistry, TypeStatus};
use crate::model::Snapshot;

/// Where responses go: the gRPC response stream.
pub(super) type ResponseTx = mpsc::Sender<Result<DiscoveryResponse, Status>>;

#[derive(Debug, Default)]
struct TypeState {
    /// Names the proxy asked for (ignored for wildcard types).
    requested: BTreeSet<String>,
    /// Names in the last response (what the proxy has).
    sent_names: BTreeSet<String>,
    /// Hash of the last response's content.
    sent_hash: Option<u64>,
    sent_version: Option<String>,
    sent_nonce: Option<String>,
    acked: Option<String>,
    /// The nonce of the last response the proxy ACKed: a re-push at the same version (new
    /// resource names) is only in effect once this matches `sent_nonce`.
    acked_nonce: Option<String>,
    nack: Option<NackStatus>,
}

/// Wildcard types are subscribed to as a whole (LDS and CDS in Envoy's ADS).
fn is_wildcard(type_url: &str) -> bool {
    type_url == type_url::LISTENER || type_url == type_url::CLUSTER
}

/// The per-stream state machine.
pub(super) struct AdsStream {
    conn: u64,
    node: Option<NodeIdentity>,
    node_id: String,
    generation: u64,
    resources: ProxyResources,
    types: BTreeMap<String, TypeState>,
    nonce: u64,
    tx: ResponseTx,
    registry: SyncRegistry,
    /// Since when this proxy has been catching up with a new generation (convergence time).
    converging: Option<std::time::Instant>,
}

/// Why a stream ended early.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    /// The first request had no node, or a node we cannot parse.
    #[error("{0}")]
    BadNode(String),
    /// The proxy went away.
    #[error("response stream closed")]
    Closed,
}

impl AdsStream {
    pub(super) fn new(conn: u64, tx: ResponseTx, registry: SyncRegistry) -> Self {
        AdsStream {
            conn,
            node: None,
            node_id: String::new(),
            generation: 0,
            resources: ProxyResources::default(),
            types: BTreeMap::new(),
            nonce: 0,
            tx,
            registry,
            converging: None,
        }
    }

    /// Handles one request from the proxy.
    pub(super) async fn on_request(
        &mut self,
        request: DiscoveryRequest,
        snapshot: &Arc<Snapshot>,
    ) -> Result<(), StreamError> {
        if self.node.is_none() {
            let node = request.node.as_ref().ok_or_else(|| {
                StreamError::BadNode("the first request must carry a node".into())
            })?;
            let identity =
                NodeIdentity::from_node(node).map_err(|e| StreamError::BadNode(e.to_string()))?;
            info!(conn = self.conn, node = %node.id, "proxy connected");
            self.node_id = node.id.clone();
            self.resources = crate::translate::generate(&snapshot.model, &identity);
            self.generation = snapshot.generation;
            self.node = Some(identity);
        }
        let type_url = request.type_url.clone();
        if type_url::short_name(&type_url) == "unknown" {
            debug!(conn = self.conn, %type_url, "ignoring a request for a type we do not serve");
            return Ok(());
        }
        let state = self.types.entry(type_url.clone()).or_default();
        let first = state.sent_nonce.is_none();
        if !request.response_nonce.is_empty() {
            if state.sent_nonce.as_deref() != Some(request.response_nonce.as_str()) {
                debug!(conn = self.conn, %type_url, nonce = %request.response_nonce, "stale nonce; ignored");
                return Ok(());
            }
            match &request.error_detail {
                Some(error) => {
                    warn!(node = %self.node_id, type_ = type_url::short_name(&type_url),
                        version = %request.version_info, error = %error.message, "NACK");
                    self.registry.count_nack();
                    self.registry.metrics().reject(&type_url);
                    state.nack = Some(NackStatus {
                        version: state.sent_version.clone().unwrap_or_default(),
                        error: error.message.clone(),
                    });
                }
                None => {
                    state.acked = Some(request.version_info.clone());
                    state.acked_nonce = Some(request.response_nonce.clone());
                    state.nack = None;
                }
            }
        }
        state.requested = request.resource_names.iter().cloned().collect();
        let names_changed = !is_wildcard(&type_url) && state.requested != state.sent_names;
        if first || request.response_nonce.is_empty() || names_changed {
            self.push(&type_url).await?;
        }
        self.publish();
        Ok(())
    }

    /// Recomputes this proxy's resources for a new snapshot and pushes what changed, in
    /// CDS → EDS → LDS → RDS order. EDS follows any CDS push and RDS any LDS push, so that
    /// clusters and listeners that Envoy re-warms get their endpoints and routes.
    pub(super) async fn on_snapshot(
        &mut self,
        snapshot: &Arc<Snapshot>,
    ) -> Result<(), StreamError> {
        let Some(node) = &self.node else {
            return Ok(());
        };
        self.resources = crate::translate::generate(&snapshot.model, node);
        if snapshot.generation > self.generation && self.converging.is_none() {
            self.converging = Some(self.registry.metrics().generation_seen(snapshot.generation));
        }
        self.generation = snapshot.generation;
        let mut pushed_clusters = false;
        let mut pushed_listeners = false;
        for type_url in type_url::PUSH_ORDER {
            let Some(state) = self.types.get(type_url) else {
                continue;
            };
            let forced = (type_url == type_url::ENDPOINT && pushed_clusters)
                || (type_url == type_url::ROUTE && pushed_listeners);
            let (_, hash) = self.selection(type_url, state);
            if forced || state.sent_hash != Some(hash) {
                self.push(type_url).await?;
                pushed_clusters |= type_url == type_url::CLUSTER;
                pushed_listeners |= type_url == type_url::LISTENER;
            }
        }
        self.publish();
        Ok(())
    }

    /// The resources of a type this proxy should get now, and a hash of them.
    fn selection(
        &self,
        type_url: &str,
        state: &TypeState,
    ) -> (Vec<(String, envoy_types::pb::google::protobuf::Any)>, u64) {
        let wildcard = is_wildcard(type_url);
        let chosen: Vec<_> = self
            .resources
            .of_type(type_url)
            .filter(|(name, _)| wildcard || state.requested.contains(*name))
            .map(|(name, any)| (name.clone(), any.clone()))
            .collect();
        let mut hasher = DefaultHasher::new();
        for (name, any) in &chosen {
            name.hash(&mut hasher);
            any.value.hash(&mut hasher);
        }
        (chosen, hasher.finish())
    }

    async fn push(&mut self, type_url: &str) -> Result<(), StreamError> {
        let Some(state) = self.types.get(type_url) else {
            return Ok(());
        };
        let (chosen, hash) = self.selection(type_url, state);
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let version = self.generation.to_string();
        let names: BTreeSet<String> = chosen.iter().map(|(n, _)| n.clone()).collect();
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: chosen.into_iter().map(|(_, any)| any).collect(),
            type_url: type_url.to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        debug!(node = %self.node_id, type_ = type_url::short_name(type_url), %version,
            count = response.resources.len(), "push");
        if self.tx.send(Ok(response)).await.is_err() {
            self.registry.metrics().push_error(type_url);
            return Err(StreamError::Closed);
        }
        self.registry.metrics().push(type_url);
        if let Some(state) = self.types.get_mut(type_url) {
            state.sent_names = names;
            state.sent_hash = Some(hash);
            state.sent_version = Some(version);
            state.sent_nonce = Some(nonce);
        }
        Ok(())
    }

    /// Whether the proxy has, and has ACKed, everything it should have now.
    fn synced(&self) -> bool {
        self.resources.by_type.iter().all(|(type_url, resources)| {
            if resources.is_empty() && !is_wildcard(type_url) {
                return true;
            }
            let Some(state) = self.types.get(*type_url) else {
                return false;
            };
            let (_, hash) = self.selection(type_url, state);
            let has_all =
                is_wildcard(type_url) || resources.keys().all(|n| state.requested.contains(n));
            has_all
                && state.sent_hash == Some(hash)
                && state.nack.is_none()
                && state.acked_nonce.is_some()
                && state.acked_nonce == state.sent_nonce
        })
    }

    fn publish(&mut self) {
        if self.node.is_none() {
            return;
        }
        let synced = self.synced();
        if synced && let Some(since) = self.converging.take() {
            self.registry.metrics().converged(since);
        }
        let types = self
            .types
            .iter()
            .map(|(t, s)| {
                let status = TypeStatus {
                    sent: s.sent_version.clone(),
                    acked: s.acked.clone(),
                    nack: s.nack.clone(),
                };
                (t.clone(), status)
            })
            .collect();
        self.registry.update(
            self.conn,
            ProxyStatus {
                id: self.node_id.clone(),
                service: self
                    .node
                    .as_ref()
                    .map(|n| n.canonical_service().to_string())
                    .unwrap_or_default(),
                generation: self.generation,
                synced,
                types,
            },
        );
    }
}

/// Drives one stream until the proxy disconnects.
pub(super) async fn run(
    mut stream: AdsStream,
    mut requests: tonic::Streaming<DiscoveryRequest>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
) {
    let conn = stream.conn;
    let registry = stream.registry.clone();
    loop {
        let result = tokio::select! {
            message = requests.message() => match message {
                Ok(Some(request)) => {
                    let snapshot = snapshots.borrow_and_update().clone();
                    stream.on_request(request, &snapshot).await
                }
                Ok(None) => break,
                Err(status) => {
                    debug!(conn, %status, "stream error");
                    break;
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                stream.on_snapshot(&snapshot).await
            }
        };
        if let Err(error) = result {
            if let StreamError::BadNode(reason) = &error {
                warn!(conn, %reason, "rejecting xDS stream");
                let _ = stream
                    .tx
                    .send(Err(Status::invalid_argument(reason.clone())))
                    .await;
            }
            break;
        }
    }
    if !stream.node_id.is_empty() {
        info!(conn, node = %stream.node_id, "proxy disconnected");
    }
    registry.remove(conn);
}
