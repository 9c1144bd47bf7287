//! One ADS stream (one proxy): subscriptions, versions, nonces, ACK/NACK, and pushes when the
//! snapshot changes. State of the world: every response carries the full set of the type's
//! resources that the proxy subscribed to.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::{mpsc, watch};
use tonic::Status;
use tracing::{debug, info, warn};
use trellis_xds::{NodeIdentity, type_url};

use super::names::{self, NameSet};
use super::resources::{Part, ProxyConfig, combine};
use super::status::{NackStatus, ProxyStatus, SyncRegistry, TypeStatus};
use crate::model::Snapshot;

/// Where responses go: the gRPC response stream.
pub(super) type ResponseTx = mpsc::Sender<Result<DiscoveryResponse, Status>>;

#[derive(Debug, Default)]
struct TypeState {
    /// Names the proxy asked for (ignored for wildcard types).
    /// Interned: streams asking for the same names share one set.
    requested: NameSet,
    /// `names::hash_names` of `requested`, once computed (`None`: not yet, or empty).
    requested_hash: Option<u64>,
    /// Names in the last response (what the proxy has).
    /// Names in the last response (what the proxy has), as a hash of the sorted names.
    sent_names: Option<u64>,
    /// Hash of the last response's content.
    sent_hash: Option<u64>,
    sent_version: Option<String>,
    sent_nonce: Option<String>,
    acked: Option<String>,
    /// The nonce of the last response the proxy ACKed: a re-push at the same version (new
    /// resource names) is only in effect once this matches `sent_nonce`.
    acked_nonce: Option<String>,
    nack: Option<NackStatus>,
    /// Per part (by content hash): the hash of the resources of it that were requested, and
    /// whether all of them were. Valid while `requested` does not change.
    selections: HashMap<u64, (u64, bool)>,
}

/// How many parts' selections a type remembers (a few generations' worth).
const SELECTION_MEMO: usize = 16;

impl TypeState {
    /// Takes the names of a request, unless they are those already requested (a proxy repeats
    /// them in every ACK: a thousand EDS names are compared, not rebuilt and re-hashed).
    fn set_requested(&mut self, names: &[String]) {
        if self.requested.len() == names.len() && self.requested.iter().eq(names.iter()) {
            return;
        }
        let requested: BTreeSet<String> = names.iter().cloned().collect();
        if requested != *self.requested {
            self.requested_hash = Some(names::hash_names(&requested));
            self.requested = names::intern(requested);
            self.selections.clear();
        }
    }

    fn requested_hash(&self) -> u64 {
        self.requested_hash
            .unwrap_or_else(|| names::hash_names(self.requested.iter()))
    }

    /// A hash of what this proxy gets of `parts`, and whether it asked for all of it (always,
    /// for a wildcard type). From the parts' precomputed hashes; a part's selection is
    /// computed once per requested set.
    fn summary(&mut self, parts: &[Arc<Part>], wildcard: bool) -> (u64, bool) {
        if wildcard {
            return (combine(parts.iter().map(|p| p.hash())), true);
        }
        if self.selections.len() > SELECTION_MEMO {
            self.selections.clear();
        }
        let mut complete = true;
        let mut hashes = Vec::with_capacity(parts.len());
        for part in parts {
            let requested = &self.requested;
            let (hash, all) = *self.selections.entry(part.hash()).or_insert_with(|| {
                let mut all = true;
                let hash = combine(part.entries().iter().filter_map(|e| {
                    let wanted = requested.contains(&e.name);
                    all &= wanted;
                    wanted.then_some(e.hash)
                }));
                (hash, all)
            });
            complete &= all;
            hashes.push(hash);
        }
        (combine(hashes), complete)
    }
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
    /// What the proxy should have now (shared parts are `Arc`s into the snapshot's cache).
    config: ProxyConfig,
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
            config: ProxyConfig::default(),
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
            self.config = snapshot.cache.config_for(&snapshot.model, &identity).await;
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
        state.set_requested(&request.resource_names);
        let names_changed =
            !is_wildcard(&type_url) && state.sent_names != Some(state.requested_hash());
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
        self.config = snapshot.cache.config_for(&snapshot.model, node).await;
        if snapshot.generation > self.generation && self.converging.is_none() {
            self.converging = Some(self.registry.metrics().generation_seen(snapshot.generation));
        }
        self.generation = snapshot.generation;
        let mut pushed_clusters = false;
        let mut pushed_listeners = false;
        for type_url in type_url::PUSH_ORDER {
            let Some(state) = self.types.get_mut(type_url) else {
                continue;
            };
            let forced = (type_url == type_url::ENDPOINT && pushed_clusters)
                || (type_url == type_url::ROUTE && pushed_listeners);
            let (hash, _) = state.summary(self.config.parts(type_url), is_wildcard(type_url));
            if forced || state.sent_hash != Some(hash) {
                self.push(type_url).await?;
                pushed_clusters |= type_url == type_url::CLUSTER;
                pushed_listeners |= type_url == type_url::LISTENER;
            }
        }
        self.publish();
        Ok(())
    }

    async fn push(&mut self, type_url: &str) -> Result<(), StreamError> {
        let Some(state) = self.types.get_mut(type_url) else {
            return Ok(());
        };
        let wildcard = is_wildcard(type_url);
        // Everything the parts have was requested (the usual case): no filtering needed.
        let (hash, complete) = state.summary(self.config.parts(type_url), wildcard);
        let chosen = self
            .config
            .select(type_url, |name| complete || state.requested.contains(name));
        let names = names::hash_names(chosen.iter().map(|e| &e.name));
        let resources = chosen.into_iter().map(|e| e.any.clone()).collect();
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let version = self.generation.to_string();
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources,
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
            state.sent_names = Some(names);
            state.sent_hash = Some(hash);
            state.sent_version = Some(version);
            state.sent_nonce = Some(nonce);
        }
        Ok(())
    }

    /// Whether the proxy has, and has ACKed, everything it should have now.
    fn synced(&mut self) -> bool {
        let config = &self.config;
        let types = &mut self.types;
        config.types().all(|type_url| {
            let parts = config.parts(type_url);
            let wildcard = is_wildcard(type_url);
            if !wildcard && parts.iter().all(|p| p.entries().is_empty()) {
                return true;
            }
            let Some(state) = types.get_mut(type_url) else {
                return false;
            };
            let (hash, has_all) = state.summary(parts, wildcard);
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
