//! Shipping finished spans to a collector off the request path: one task per collector
//! (cluster + path + protocol) behind a bounded queue; a full queue drops the span and counts
//! it. Spans are sent in batches (up to [`BATCH`], or whatever arrived within [`LINGER`]) through
//! the collector's cluster, like any upstream request: as Zipkin v2 JSON, or as OTLP
//! (`ExportTraceServiceRequest`) over gRPC or HTTP (see [`super::otlp`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::upstream::ClusterManager;

/// Spans that may wait for one collector before new ones are dropped.
pub const QUEUE_SPANS: usize = 4096;
/// The most spans in one POST.
pub const BATCH: usize = 128;
/// How long a batch waits for more spans.
pub const LINGER: Duration = Duration::from_millis(200);
/// How long one export may take when the config does not say.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// A finished span, in Zipkin v2's JSON shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// Hex trace id (16 or 32 digits).
    pub trace_id: String,
    /// Hex span id.
    pub id: String,
    /// Hex parent span id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The operation.
    pub name: String,
    /// `SERVER` or `CLIENT`.
    pub kind: &'static str,
    /// Start, microseconds since the epoch.
    pub timestamp: u64,
    /// Microseconds.
    pub duration: u64,
    /// Who recorded it.
    pub local_endpoint: Endpoint,
    /// Key/value annotations.
    pub tags: BTreeMap<String, String>,
}

/// A Zipkin endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The service name (Istio: `WORKLOAD.NAMESPACE`).
    pub service_name: String,
    /// The IPv4 address, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Collector {
    /// The cluster the collector is reached through.
    pub cluster: String,
    /// The POST path (`/api/v2/spans`, `/v1/traces`, or the OTLP gRPC method).
    pub path: String,
    /// The `Host` header / `:authority` (the collector's host name).
    pub hostname: String,
    /// What the spans are sent as.
    pub protocol: ExportProtocol,
    /// Extra request headers (OTLP `initial_metadata` / `request_headers_to_add`).
    pub headers: Vec<(String, String)>,
    /// How long one export may take.
    pub timeout: Duration,
}

/// The wire format of a collector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum ExportProtocol {
    /// Zipkin v2 JSON over HTTP.
    ZipkinJson,
    /// OTLP over gRPC (`TraceService/Export`); the resource's `service.name` is the string.
    OtlpGrpc(String),
    /// OTLP over HTTP (protobuf body); the resource's `service.name` is the string.
    OtlpHttp(String),
}

/// How span export went, as the proxy's metrics show it: a collector that is down or too slow
/// loses spans, and an operator must be able to see that.
#[derive(Debug, Clone, Default)]
pub struct ExportCounters {
    /// `trellis_tracing_spans_sent_total`: spans a collector accepted.
    pub sent: Counter,
    /// `trellis_tracing_spans_dropped_total`: spans lost (queue full, export failed or timed out).
    pub dropped: Counter,
}

impl ExportCounters {
    /// Adds the counters to the proxy's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "trellis_tracing_spans_sent",
            "Spans a trace collector accepted",
            self.sent.clone(),
        );
        registry.register(
            "trellis_tracing_spans_dropped",
            "Spans dropped: export queue full, export failed or timed out",
            self.dropped.clone(),
        );
    }
}

/// The exporters of one proxy, by collector.
#[derive(Debug, Default)]
pub struct Exporters {
    queues: Mutex<HashMap<Collector, mpsc::Sender<Span>>>,
    counters: ExportCounters,
}

impl Exporters {
    /// Exporters that count into `counters`.
    pub fn new(counters: ExportCounters) -> Self {
        Exporters {
            queues: Mutex::default(),
            counters,
        }
    }

    /// Queues `spans` for `collector` (its task starts on first use; needs a Tokio runtime).
    pub fn export(&self, collector: &Collector, clusters: &Arc<ClusterManager>, spans: Vec<Span>) {
        let sender = {
            let mut queues = self
                .queues
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match queues.get(collector) {
                Some(s) if !s.is_closed() => s.clone(),
                _ => {
                    let (tx, rx) = mpsc::channel(QUEUE_SPANS);
                    tokio::spawn(run(
                        collector.clone(),
                        clusters.clone(),
                        rx,
                        self.counters.clone(),
                    ));
                    queues.insert(collector.clone(), tx.clone());
                    tx
                }
            }
        };
        for span in spans {
            if sender.try_send(span).is_err() {
                self.counters.dropped.inc();
            }
        }
    }
}

async fn run(
    collector: Collector,
    clusters: Arc<ClusterManager>,
    mut rx: mpsc::Receiver<Span>,
    counters: ExportCounters,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(s) => batch.push(s),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let n = batch.len() as u64;
        match tokio::time::timeout(collector.timeout, post(&collector, &clusters, &batch)).await {
            Ok(Ok(())) => {
                counters.sent.inc_by(n);
            }
            Ok(Err(error)) => {
                counters.dropped.inc_by(n);
                tracing::debug!(cluster = %collector.cluster, %error, spans = n, "span export failed");
            }
            Err(_) => {
                counters.dropped.inc_by(n);
                tracing::debug!(cluster = %collector.cluster, spans = n, "span export timed out");
            }
        }
    }
}

async fn post(
    collector: &Collector,
    clusters: &ClusterManager,
    spans: &[Span],
) -> Result<(), String> {
    let (content_type, body) = match &collector.protocol {
        ExportProtocol::ZipkinJson => (
            "application/json",
            serde_json::to_vec(spans).map_err(|e| e.to_string())?,
        ),
        ExportProtocol::OtlpGrpc(service) => {
            ("application/grpc", super::otlp::grpc_frame(spans, service))
        }
        ExportProtocol::OtlpHttp(service) => (
            "application/x-protobuf",
            super::otlp::encode(spans, service),
        ),
    };
    let cluster = clusters
        .get(&collector.cluster)
        .ok_or_else(|| format!("no cluster {}", collector.cluster))?;
    let endpoint = cluster
        .pick()
        .ok_or_else(|| format!("no endpoint in cluster {}", collector.cluster))?;
    let grpc = matches!(collector.protocol, ExportProtocol::OtlpGrpc(_));
    let mut request = Request::post(collector.path.as_str())
        .header(http::header::HOST, collector.hostname.as_str())
        .header(http::header::CONTENT_TYPE, content_type);
    if grpc {
        request = request.header(http::header::TE, "trailers");
    }
    for (name, value) in &collector.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = cluster
        .send(endpoint, request, &collector.hostname)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    // Read the whole answer: the connection is reused, and gRPC's status is in the trailers.
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    if !parts.status.is_success() {
        return Err(format!("collector answered {}", parts.status));
    }
    if grpc {
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok());
        if status != Some("0") {
            return Err(format!(
                "collector answered grpc-status {}",
                status.unwrap_or("(none)")
            ));
        }
    }
    Ok(())
}
