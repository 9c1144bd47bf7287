//! Istio's telemetry in the proxy: the standard metrics with Istio's labels, the metadata
//! exchange that tells each side who the other is, and the merged Prometheus endpoint (15020).
//!
//! Layout: `peer` (parsing and producing workload metadata), `istio` (the metric families and
//! the cardinality cap), `exchange` (one request: headers in and out, recording when the
//! response ends), `overrides` (Telemetry metric overrides: dropped metrics, label changes),
//! `merge` (the app's metrics appended to the proxy's).

mod exchange;
pub mod istio;
pub mod merge;
pub mod overrides;
pub mod peer;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderValue;

pub use exchange::{Downstream, Exchange, MeteredBody, UpstreamIdentity, UpstreamPeer, boxed};
pub use istio::{IstioMetrics, PeerLabels, Reporter, TcpLabels};
pub use overrides::MetricsConfig;
pub use peer::PeerWorkload;

/// How many distinct peer-metadata headers and service hosts are remembered parsed (a bounded
/// cache: the hot path parses each distinct peer once, not per request).
const CACHE_ENTRIES: usize = 1024;

/// `destination_service`, `destination_service_name`, `destination_service_namespace`.
type ServiceLabels = (Arc<str>, Arc<str>, Arc<str>);

/// What the request path needs to label metrics: who this proxy is, and the metric families.
pub struct Telemetry {
    /// The Istio metric families.
    pub metrics: IstioMetrics,
    own: Arc<PeerWorkload>,
    own_principal: Arc<str>,
    header: HeaderValue,
    header_id: HeaderValue,
    unknown: Arc<PeerWorkload>,
    unknown_str: Arc<str>,
    empty: Arc<str>,
    no_flags: Arc<str>,
    grpc_codes: Vec<Arc<str>>,
    peers: Mutex<HashMap<Vec<u8>, Option<Arc<PeerWorkload>>>>,
    services: Mutex<HashMap<String, ServiceLabels>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("own", &self.own)
            .field("own_principal", &self.own_principal)
            .finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new(None, None, IstioMetrics::default())
    }
}

impl Telemetry {
    /// Telemetry for the proxy of `node` (`None`: an anonymous proxy, every own label
    /// `unknown`), whose SPIFFE identity is `principal` in secure mode.
    pub fn new(
        node: Option<&trellis_xds::NodeIdentity>,
        principal: Option<String>,
        metrics: IstioMetrics,
    ) -> Self {
        let unknown: Arc<str> = Arc::from(peer::UNKNOWN);
        let (own, header, header_id) = match node {
            Some(n) => (
                PeerWorkload::from_node(n),
                HeaderValue::from_str(&peer::header_value(n)).ok(),
                HeaderValue::from_str(&n.node_id()).ok(),
            ),
            None => (PeerWorkload::unknown(), None, None),
        };
        Telemetry {
            metrics,
            own: Arc::new(own),
            own_principal: principal.map_or_else(|| unknown.clone(), Arc::from),
            header: header.unwrap_or_else(|| HeaderValue::from_static("")),
            header_id: header_id.unwrap_or_else(|| HeaderValue::from_static("")),
            unknown: Arc::new(PeerWorkload::unknown()),
            empty: Arc::from(""),
            no_flags: Arc::from("-"),
            grpc_codes: (0..=16).map(|c| Arc::from(c.to_string())).collect(),
            unknown_str: unknown,
            peers: Mutex::new(HashMap::new()),
            services: Mutex::new(HashMap::new()),
        }
    }

    /// This proxy's own workload labels.
    pub fn own(&self) -> &Arc<PeerWorkload> {
        &self.own
    }

    /// A peer from its `x-envoy-peer-metadata` value, parsed once per distinct value;
    /// malformed values are `None` (and logged at debug level).
    fn peer_from_header(&self, value: &[u8]) -> Option<Arc<PeerWorkload>> {
        let mut cache = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.get(value) {
            return hit.clone();
        }
        let parsed = match PeerWorkload::from_header(value) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::debug!(error = %e, "ignoring peer metadata");
                None
            }
        };
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(value.to_vec(), parsed.clone());
        parsed
    }

    /// The destination service labels of a host: a short name (no dot) is a service of this
    /// proxy's namespace (`NAME.NS.svc.cluster.local`, as the control plane expands it);
    /// `NAME.NAMESPACE.svc.*` gives name and namespace; any other host is its own name, in an
    /// `unknown` namespace.
    fn service(&self, host: &str) -> ServiceLabels {
        let mut cache = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.get(host) {
            return hit.clone();
        }
        let labels = if !host.is_empty() && !host.contains('.') && !host.contains(':') {
            service_labels(&format!("{host}.{}.svc.cluster.local", self.own.namespace))
        } else {
            service_labels(host)
        };
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(host.to_string(), labels.clone());
        labels
    }
}

/// See [`Telemetry::service`].
fn service_labels(host: &str) -> ServiceLabels {
    if host.is_empty() {
        let u: Arc<str> = Arc::from(peer::UNKNOWN);
        return (u.clone(), u.clone(), u);
    }
    let parts: Vec<&str> = host.split('.').collect();
    let (name, namespace) = match parts.as_slice() {
        [name, ns, "svc", ..] => (*name, *ns),
        _ => (host, peer::UNKNOWN),
    };
    (Arc::from(host), Arc::from(name), Arc::from(namespace))
}

impl Telemetry {
    /// The labels of a proxied TCP connection (`request_protocol="tcp"`): the source side knows
    /// the cluster's service (the peer's workload is not exchanged over plain TCP), the
    /// destination side the verified client certificate. `failure` is the `FLAG cause` of a
    /// connection that could not be proxied.
    pub fn tcp_labels(
        &self,
        down: exchange::Downstream<'_>,
        cluster: &str,
        failure: Option<&str>,
    ) -> TcpLabels {
        let flags: Arc<str> = failure
            .and_then(|f| f.split_whitespace().next())
            .map_or_else(|| self.no_flags.clone(), Arc::from);
        let peers = if down.inbound {
            let service = self.service("");
            PeerLabels {
                reporter: Reporter::Destination,
                source: self.unknown.clone(),
                source_principal: down
                    .peer_identity
                    .map_or_else(|| self.unknown_str.clone(), Arc::from),
                destination: self.own.clone(),
                destination_principal: self.own_principal.clone(),
                destination_service: service.0,
                destination_service_name: service.1,
                destination_service_namespace: service.2,
                connection_security_policy: if down.peer_identity.is_some() {
                    "mutual_tls"
                } else {
                    "none"
                },
            }
        } else {
            let service = self.service(exchange::cluster_host(cluster));
            PeerLabels {
                reporter: Reporter::Source,
                source: self.own.clone(),
                source_principal: self.own_principal.clone(),
                destination: self.unknown.clone(),
                destination_principal: self.unknown_str.clone(),
                destination_service: service.0,
                destination_service_name: service.1,
                destination_service_namespace: service.2,
                connection_security_policy: "unknown",
            }
        };
        TcpLabels {
            peers: Arc::new(peers),
            response_flags: flags,
        }
    }
}
