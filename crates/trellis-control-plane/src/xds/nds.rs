//! NDS streams (Istio's DNS proxying): an ADS stream whose first request asks for the name
//! table ([`type_url::NAME_TABLE`]) is a DNS proxy's own stream (the Trellis proxy's or the
//! Envoy agent's; Envoy never asks for NDS), served here with just that one type: the proxy's
//! [`NameTable`] (see `translate::nds`), pushed again whenever a new snapshot changes it.
//! Every other stream goes to the ADS state machine (`stream.rs`) unchanged.
//!
//! An NDS stream is not listed in `/debug/syncz` (its proxy is listed once, by its main ADS
//! stream, and waiting on sync means waiting on that one); a NACK of a name table is still
//! counted in `nacks_total` and the push/reject metrics.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use prost::Message;
use tokio::sync::watch;
use tonic::{Status, Streaming};
use tracing::{debug, info, warn};
use trellis_xds::{NodeIdentity, type_url};

use super::status::SyncRegistry;
use super::stream::{self, AdsStream, ResponseTx, StreamError};
use crate::model::Snapshot;

/// Reads the stream's first request and serves the stream as an NDS stream or as ADS.
pub(super) async fn serve(
    conn: u64,
    tx: ResponseTx,
    registry: SyncRegistry,
    mut requests: Streaming<DiscoveryRequest>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
) {
    let first = match requests.message().await {
        Ok(Some(first)) => first,
        Ok(None) => return,
        Err(status) => {
            debug!(conn, %status, "stream error before the first request");
            return;
        }
    };
    if first.type_url == type_url::NAME_TABLE {
        NdsStream { conn, tx, registry }
            .run(first, requests, snapshots)
            .await;
        return;
    }
    let mut state = AdsStream::new(conn, tx.clone(), registry.clone());
    let snapshot = snapshots.borrow_and_update().clone();
    match state.on_request(first, &snapshot).await {
        Ok(()) => stream::run(state, requests, snapshots).await,
        Err(error) => {
            if let StreamError::BadNode(reason) = &error {
                warn!(conn, %reason, "rejecting xDS stream");
                let _ = tx.send(Err(Status::invalid_argument(reason.clone()))).await;
            }
            registry.remove(conn);
        }
    }
}

/// One DNS proxy's NDS stream.
struct NdsStream {
    conn: u64,
    tx: ResponseTx,
    registry: SyncRegistry,
}

/// What was last sent on an NDS stream.
#[derive(Default)]
struct Sent {
    table: Option<Vec<u8>>,
    nonce: u64,
}

impl NdsStream {
    async fn run(
        self,
        first: DiscoveryRequest,
        mut requests: Streaming<DiscoveryRequest>,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
    ) {
        let node = match first
            .node
            .as_ref()
            .ok_or_else(|| "the first request must carry a node".to_string())
            .and_then(|n| NodeIdentity::from_node(n).map_err(|e| e.to_string()))
        {
            Ok(node) => node,
            Err(reason) => {
                warn!(conn = self.conn, %reason, "rejecting NDS stream");
                let _ = self.tx.send(Err(Status::invalid_argument(reason))).await;
                return;
            }
        };
        let node_id = node.node_id();
        info!(conn = self.conn, node = %node_id, "DNS proxy connected (NDS)");
        let mut sent = Sent::default();
        let snapshot = snapshots.borrow_and_update().clone();
        if self.push(&node, &snapshot, &mut sent, true).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                message = requests.message() => match message {
                    Ok(Some(request)) => {
                        let resend = self.on_request(&node_id, &request, &sent);
                        if resend {
                            let snapshot = snapshots.borrow().clone();
                            if self.push(&node, &snapshot, &mut sent, true).await.is_err() {
                                break;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(conn = self.conn, %status, "NDS stream error");
                        break;
                    }
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    if self.push(&node, &snapshot, &mut sent, false).await.is_err() {
                        break;
                    }
                }
            }
        }
        info!(conn = self.conn, node = %node_id, "DNS proxy disconnected (NDS)");
    }

    /// Handles an ACK, a NACK or a new subscription; true when the table must be sent again
    /// (a request without a nonce: the proxy has nothing).
    fn on_request(&self, node_id: &str, request: &DiscoveryRequest, sent: &Sent) -> bool {
        if request.type_url != type_url::NAME_TABLE {
            debug!(conn = self.conn, type_url = %request.type_url, "ignoring a non-NDS request on an NDS stream");
            return false;
        }
        if request.response_nonce.is_empty() {
            return true;
        }
        if request.response_nonce != sent.nonce.to_string() {
            return false;
        }
        if let Some(error) = &request.error_detail {
            warn!(node = %node_id, version = %request.version_info, error = %error.message, "NDS NACK");
            self.registry.count_nack();
            self.registry.metrics().reject(type_url::NAME_TABLE);
        }
        false
    }

    /// Sends the table for `snapshot` if it changed (or always, when `force`).
    async fn push(
        &self,
        node: &NodeIdentity,
        snapshot: &Snapshot,
        sent: &mut Sent,
        force: bool,
    ) -> Result<(), StreamError> {
        let table = crate::translate::nds::name_table(&snapshot.model, node).encode_to_vec();
        if !force && sent.table.as_ref() == Some(&table) {
            return Ok(());
        }
        sent.nonce += 1;
        let response = DiscoveryResponse {
            version_info: snapshot.generation.to_string(),
            resources: vec![envoy_types::pb::google::protobuf::Any {
                type_url: type_url::NAME_TABLE.to_string(),
                value: table.clone(),
            }],
            type_url: type_url::NAME_TABLE.to_string(),
            nonce: sent.nonce.to_string(),
            ..Default::default()
        };
        if self.tx.send(Ok(response)).await.is_err() {
            self.registry.metrics().push_error(type_url::NAME_TABLE);
            return Err(StreamError::Closed);
        }
        self.registry.metrics().push(type_url::NAME_TABLE);
        sent.table = Some(table);
        Ok(())
    }
}
