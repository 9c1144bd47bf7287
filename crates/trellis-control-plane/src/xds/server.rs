//! The gRPC `AggregatedDiscoveryService` implementation.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::status::SyncRegistry;
use crate::model::Snapshot;

/// Serves ADS (state of the world) from the latest snapshot.
#[derive(Debug, Clone)]
pub struct AdsServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    registry: SyncRegistry,
    next_conn: Arc<AtomicU64>,
}

impl AdsServer {
    /// A server that follows `snapshots` and reports into `registry`.
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>, registry: SyncRegistry) -> Self {
        AdsServer {
            snapshots,
            registry,
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        // The first request tells a DNS proxy's NDS stream (`nds.rs`) from ADS (`stream.rs`).
        tokio::spawn(super::nds::serve(
            conn,
            tx,
            self.registry.clone(),
            request.into_inner(),
            self.snapshots.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not served yet; use state-of-the-world ADS (StreamAggregatedResources)",
        ))
    }
}
