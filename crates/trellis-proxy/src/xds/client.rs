//! The ADS client (state of the world).
//!
//! One bidirectional stream carries all four types. CDS and LDS are wildcard subscriptions; EDS
//! follows the EDS clusters' service names and RDS the route names the listeners reference.
//! Each response is converted as a whole before anything is applied: either the entire batch
//! goes live and is ACKed, or nothing changes and it is NACKed with the reason. The client
//! reconnects forever with exponential backoff; the data plane keeps its config meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use trellis_xds::type_url;

use crate::config::{Cluster, Discovery, Endpoints, Listener, RouteSource, RouteTable};
use crate::xds::convert::{ConvertError, decode_resource};

/// First reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the ADS client delivers converted config and its status.
pub trait ConfigSink: Send + Sync + 'static {
    /// Replaces all clusters.
    fn apply_clusters(&self, clusters: Vec<Cluster>);
    /// Replaces all EDS endpoints (every subscribed service name received so far).
    fn apply_endpoints(&self, endpoints: Vec<Endpoints>);
    /// Replaces all listeners; an error (e.g. an address that cannot be bound) NACKs the update
    /// and must leave the previous listeners in force.
    fn apply_listeners(
        &self,
        listeners: Vec<Listener>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Replaces all RDS route tables (every subscribed name received so far).
    fn apply_routes(&self, tables: Vec<RouteTable>);
    /// Reports connection changes and ACK/NACK outcomes.
    fn xds_event(&self, event: XdsEvent);
}

/// What happened on the ADS stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdsEvent {
    /// The stream is up.
    Connected,
    /// The stream is down (a reconnect is scheduled).
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A response was applied and ACKed.
    Accepted {
        /// Its type URL.
        type_url: &'static str,
        /// Its version.
        version: String,
    },
    /// A response was rejected and NACKed.
    Rejected {
        /// Its type URL.
        type_url: String,
        /// The rejected version.
        version: String,
        /// The reason sent in `error_detail`.
        error: String,
    },
}

/// Why an ADS stream ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be made or broke.
    #[error("xDS transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server ended the stream with a status.
    #[error("xDS stream: {0}")]
    Status(#[from] tonic::Status),
    /// The server closed the stream.
    #[error("xDS server closed the stream")]
    Closed,
}

#[derive(Debug, Default)]
struct TypeState {
    /// The last accepted version.
    version: String,
    /// The nonce of the last response received on this stream.
    nonce: String,
    /// Subscribed names (empty = wildcard for CDS/LDS).
    names: BTreeSet<String>,
    /// Whether the node was sent on this stream for this type.
    node_sent: bool,
    /// Whether a request for this type was sent on this stream.
    subscribed: bool,
}

/// The ADS client.
#[derive(Debug)]
pub struct AdsClient<S> {
    node: Node,
    address: SocketAddr,
    sink: Arc<S>,
    types: HashMap<&'static str, TypeState>,
    endpoints: BTreeMap<String, Endpoints>,
    routes: BTreeMap<String, RouteTable>,
    /// The mesh root (PEM) when ADS runs over TLS.
    tls_root: Option<String>,
}

impl<S: ConfigSink> AdsClient<S> {
    /// A client that will present `node` to the ADS server at `address`.
    pub fn new(node: Node, address: SocketAddr, sink: Arc<S>) -> Self {
        let types = type_url::PUSH_ORDER
            .iter()
            .map(|t| (*t, TypeState::default()))
            .collect();
        AdsClient {
            node,
            address,
            sink,
            types,
            endpoints: BTreeMap::new(),
            routes: BTreeMap::new(),
            tls_root: None,
        }
    }

    /// Connects over TLS, verifying the server against `root_pem` as
    /// [`crate::CONTROL_PLANE_SNI`] (the secure port, 15012).
    pub fn with_tls(mut self, root_pem: String) -> Self {
        self.tls_root = Some(root_pem);
        self
    }

    /// Runs forever: connects, serves the stream, and reconnects with backoff.
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut progressed = false;
            let result = self.run_stream(&mut progressed).await;
            let reason = match result {
                Ok(()) => ClientError::Closed.to_string(),
                Err(e) => e.to_string(),
            };
            self.sink.xds_event(XdsEvent::Disconnected {
                reason: reason.clone(),
            });
            if progressed {
                backoff = BACKOFF_MIN;
            }
            let delay = jitter(backoff);
            tracing::warn!(%reason, address = %self.address, ?delay, "xDS stream down; reconnecting");
            tokio::time::sleep(delay).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn run_stream(&mut self, progressed: &mut bool) -> Result<(), ClientError> {
        let scheme = if self.tls_root.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", self.address))?
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true);
        if let Some(root) = &self.tls_root {
            endpoint = endpoint.tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(root))
                    .domain_name(crate::CONTROL_PLANE_SNI),
            )?;
        }
        let channel = endpoint.connect().await?;
        let mut client =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
        let (tx, rx) = mpsc::unbounded_channel();
        for state in self.types.values_mut() {
            state.node_sent = false;
            state.subscribed = false;
            state.nonce.clear();
        }
        // Wildcard CDS and LDS, and whatever EDS/RDS names we already follow, at the last
        // accepted versions.
        for t in type_url::PUSH_ORDER {
            let wildcard = t == type_url::CLUSTER || t == type_url::LISTENER;
            if wildcard || !self.state(t).names.is_empty() {
                self.send(&tx, t, None);
            }
        }
        let mut inbound = client
            .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        self.sink.xds_event(XdsEvent::Connected);
        tracing::info!(address = %self.address, "xDS stream connected");
        while let Some(response) = inbound.message().await? {
            *progressed = true;
            self.handle(&tx, response).await;
        }
        Ok(())
    }

    fn state(&mut self, t: &'static str) -> &mut TypeState {
        self.types.entry(t).or_default()
    }

    /// Sends a request for `t` with the current version, nonce and names (a NACK when `error`).
    fn send(
        &mut self,
        tx: &mpsc::UnboundedSender<DiscoveryRequest>,
        t: &'static str,
        error: Option<String>,
    ) {
        let node = self.node.clone();
        let state = self.state(t);
        let request = DiscoveryRequest {
            version_info: state.version.clone(),
            node: (!state.node_sent).then_some(node),
            resource_names: state.names.iter().cloned().collect(),
            type_url: t.to_string(),
            response_nonce: state.nonce.clone(),
            error_detail: error.map(|message| RpcStatus {
                code: tonic::Code::InvalidArgument as i32,
                message,
                details: Vec::new(),
            }),
            ..Default::default()
        };
        state.node_sent = true;
        state.subscribed = true;
        // A closed channel means the stream is gone; the reconnect re-sends everything.
        let _ = tx.send(request);
    }

    async fn handle(
        &mut self,
        tx: &mpsc::UnboundedSender<DiscoveryRequest>,
        response: DiscoveryResponse,
    ) {
        let Some(t) = type_url::PUSH_ORDER
            .into_iter()
            .find(|t| *t == response.type_url)
        else {
            tracing::warn!(type_url = %response.type_url, "ignoring response of unknown type");
            self.sink.xds_event(XdsEvent::Rejected {
                type_url: response.type_url.clone(),
                version: response.version_info.clone(),
                error: format!("type {} is not supported", response.type_url),
            });
            return;
        };
        self.state(t).nonce = response.nonce.clone();
        let outcome = match t {
            type_url::CLUSTER => self.on_clusters(&response.resources),
            type_url::ENDPOINT => self.on_endpoints(&response.resources),
            type_url::LISTENER => self.on_listeners(&response.resources).await,
            _ => self.on_routes(&response.resources),
        };
        match outcome {
            Ok(follow_up) => {
                self.state(t).version = response.version_info.clone();
                self.send(tx, t, None);
                tracing::info!(r#type = type_url::short_name(t), version = %response.version_info, "xDS update applied");
                self.sink.xds_event(XdsEvent::Accepted {
                    type_url: t,
                    version: response.version_info,
                });
                if let Some((dependent, names)) = follow_up {
                    self.resubscribe(tx, dependent, names);
                }
            }
            Err(error) => {
                tracing::warn!(r#type = type_url::short_name(t), version = %response.version_info, %error, "xDS update rejected");
                self.send(tx, t, Some(error.clone()));
                self.sink.xds_event(XdsEvent::Rejected {
                    type_url: t.to_string(),
                    version: response.version_info,
                    error,
                });
            }
        }
    }

    /// Follows a new set of EDS or RDS names: drops what is no longer wanted and asks for the set.
    fn resubscribe(
        &mut self,
        tx: &mpsc::UnboundedSender<DiscoveryRequest>,
        t: &'static str,
        names: BTreeSet<String>,
    ) {
        let state = self.state(t);
        if state.names == names && (state.subscribed || names.is_empty()) {
            return;
        }
        state.names = names.clone();
        if t == type_url::ENDPOINT {
            let before = self.endpoints.len();
            self.endpoints.retain(|k, _| names.contains(k));
            if self.endpoints.len() != before {
                self.sink
                    .apply_endpoints(self.endpoints.values().cloned().collect());
            }
        } else {
            let before = self.routes.len();
            self.routes.retain(|k, _| names.contains(k));
            if self.routes.len() != before {
                self.sink
                    .apply_routes(self.routes.values().cloned().collect());
            }
        }
        self.send(tx, t, None);
    }

    fn on_clusters(&mut self, resources: &[Any]) -> Result<FollowUp, String> {
        let clusters: Vec<Cluster> =
            convert_all("Cluster", resources, type_url::CLUSTER, |c: &Cluster| {
                &c.name
            })?;
        let names = clusters
            .iter()
            .filter_map(|c| match &c.discovery {
                Discovery::Eds { service_name } => Some(service_name.clone()),
                Discovery::Static(_) | Discovery::Dns { .. } | Discovery::OriginalDst { .. } => {
                    None
                }
            })
            .collect();
        self.sink.apply_clusters(clusters);
        Ok(Some((type_url::ENDPOINT, names)))
    }

    fn on_endpoints(&mut self, resources: &[Any]) -> Result<FollowUp, String> {
        let assignments: Vec<Endpoints> = convert_all(
            "ClusterLoadAssignment",
            resources,
            type_url::ENDPOINT,
            |e: &Endpoints| &e.cluster_name,
        )?;
        for a in assignments {
            self.endpoints.insert(a.cluster_name.clone(), a);
        }
        self.sink
            .apply_endpoints(self.endpoints.values().cloned().collect());
        Ok(None)
    }

    async fn on_listeners(&mut self, resources: &[Any]) -> Result<FollowUp, String> {
        let listeners: Vec<Listener> =
            convert_all("Listener", resources, type_url::LISTENER, |l: &Listener| {
                &l.name
            })?;
        let names = listeners
            .iter()
            .flat_map(|l| &l.filter_chains)
            .filter_map(|c| match &c.hcm.routes {
                RouteSource::Rds(name) => Some(name.clone()),
                RouteSource::Inline(_) => None,
            })
            .collect();
        self.sink.apply_listeners(listeners).await?;
        Ok(Some((type_url::ROUTE, names)))
    }

    fn on_routes(&mut self, resources: &[Any]) -> Result<FollowUp, String> {
        let tables: Vec<RouteTable> = convert_all(
            "RouteConfiguration",
            resources,
            type_url::ROUTE,
            |r: &RouteTable| &r.name,
        )?;
        for t in tables {
            self.routes.insert(t.name.clone(), t);
        }
        self.sink
            .apply_routes(self.routes.values().cloned().collect());
        Ok(None)
    }
}

/// After applying a type: the dependent type and the names it should now follow.
type FollowUp = Option<(&'static str, BTreeSet<String>)>;

/// Decodes and converts every resource of a response, or returns the first error.
fn convert_all<P, T>(
    kind: &'static str,
    resources: &[Any],
    type_url: &str,
    name: impl Fn(&T) -> &String,
) -> Result<Vec<T>, String>
where
    P: prost::Message + Default,
    T: for<'a> TryFrom<&'a P, Error = ConvertError>,
{
    let mut out: Vec<T> = Vec::with_capacity(resources.len());
    let mut seen = BTreeSet::new();
    for (i, any) in resources.iter().enumerate() {
        let proto: P = decode_resource(kind, i, any, type_url).map_err(|e| e.to_string())?;
        let item = T::try_from(&proto).map_err(|e| e.to_string())?;
        if !seen.insert(name(&item).clone()) {
            return Err(format!(
                "{kind} {}: duplicate resource name in one response",
                name(&item)
            ));
        }
        out.push(item);
    }
    Ok(out)
}

/// A delay in [d/2, d].
fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis().max(2) as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}
