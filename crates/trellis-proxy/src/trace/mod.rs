//! Distributed tracing (the HCM's `tracing` with Envoy's Zipkin or OpenTelemetry tracer): the
//! trace context is read from the request (B3 or W3C, `context`), a sampling decision is made (a
//! propagated one wins), and each request gets a `SERVER` span for the downstream side and, with
//! `spawn_upstream_span`, a `CLIENT` child for the upstream side, whose context is injected into
//! the forwarded request. Spans end with the response body (`body`); sampled ones are exported
//! off the request path (`export`, `otlp`).

mod body;
mod context;
mod export;
mod otlp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, HeaderValue, Request};
use serde::Serialize;

pub use body::{SpanEnd, attach};
pub use context::{Extracted, Parent, extract, inject, trace_id_hex};
pub use export::{
    BATCH, Collector, EXPORT_TIMEOUT, Endpoint, ExportCounters, ExportProtocol, Exporters, LINGER,
    QUEUE_SPANS, Span,
};

use crate::upstream::ClusterManager;

/// The longest `http.url` tag when the config does not say (Envoy's default).
pub const DEFAULT_MAX_PATH_TAG_LENGTH: usize = 256;

/// The tracing settings of an HTTP connection manager.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TracingConfig {
    /// Where spans go.
    pub collector: Collector,
    /// New traces get 128-bit ids.
    pub trace_id_128bit: bool,
    /// Percent of requests without a propagated decision that are sampled.
    pub random_sampling: f64,
    /// Extra span tags.
    pub custom_tags: Vec<CustomTag>,
    /// The longest `http.url` tag.
    pub max_path_tag_length: usize,
    /// Whether the upstream side gets its own `CLIENT` span.
    pub spawn_upstream_span: bool,
}

/// A custom span tag and where its value comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomTag {
    /// The tag name.
    pub tag: String,
    /// Its value.
    pub value: TagSource,
}

/// The source of a custom tag's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TagSource {
    /// A fixed value.
    Literal(String),
    /// An environment variable of the proxy (read once, when converted).
    Environment {
        /// The variable.
        name: String,
        /// When unset.
        default_value: String,
    },
    /// A request header.
    RequestHeader {
        /// The header.
        name: String,
        /// When absent.
        default_value: String,
    },
}

/// The proxy's tracer: who it is (for span tags) and its exporters.
#[derive(Debug)]
pub struct Tracer {
    node_id: String,
    zone: String,
    local: Endpoint,
    exporters: Exporters,
}

/// A request being traced.
#[derive(Debug)]
pub struct ActiveTrace {
    config: Arc<TracingConfig>,
    trace_id: u128,
    wide: bool,
    parent_id: Option<u64>,
    server_id: u64,
    client_id: Option<u64>,
    sampled: bool,
    started: SystemTime,
    start: Instant,
    name: String,
    tags: std::collections::BTreeMap<String, String>,
}

fn new_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl Tracer {
    /// A tracer for the node `node_id` (`WORKLOAD.NAMESPACE` names it in spans) counting its
    /// exports into `counters`.
    pub fn new(
        node_id: String,
        zone: String,
        service_name: String,
        ip: Option<String>,
        counters: ExportCounters,
    ) -> Self {
        Tracer {
            node_id,
            zone,
            local: Endpoint {
                service_name,
                ipv4: ip,
            },
            exporters: Exporters::new(counters),
        }
    }

    /// Starts the spans of a request: decides sampling, makes sure it has an `x-request-id`,
    /// and injects the context the next hop continues.
    pub fn start<B>(
        &self,
        config: &Arc<TracingConfig>,
        req: &mut Request<B>,
        peer: Option<SocketAddr>,
        scheme: &str,
    ) -> ActiveTrace {
        let headers = req.headers_mut();
        if headers.get("x-request-id").is_none_or(|v| v.is_empty())
            && let Ok(v) = HeaderValue::from_str(&crate::listener::new_request_id())
        {
            headers.insert("x-request-id", v);
        }
        let (trace_id, wide, parent_id, decision) = match extract(headers) {
            Extracted::Parent(p) => (p.trace_id, p.trace_id_128, Some(p.span_id), p.sampled),
            Extracted::Decision(d) => (
                self.new_trace_id(config),
                config.trace_id_128bit,
                None,
                Some(d),
            ),
            Extracted::None => (
                self.new_trace_id(config),
                config.trace_id_128bit,
                None,
                None,
            ),
        };
        let sampled =
            decision.unwrap_or_else(|| rand::random::<f64>() * 100.0 < config.random_sampling);
        let server_id = new_id();
        let client_id = config.spawn_upstream_span.then(new_id);
        match client_id {
            Some(c) => inject(headers, trace_id, wide, c, Some(server_id), sampled),
            None => inject(headers, trace_id, wide, server_id, parent_id, sampled),
        }
        let authority = crate::listener::request_authority(req).unwrap_or_default();
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut url = format!("{scheme}://{authority}{path}");
        if url.len() > config.max_path_tag_length {
            let mut end = config.max_path_tag_length;
            while !url.is_char_boundary(end) {
                end -= 1;
            }
            url.truncate(end);
        }
        let h = req.headers();
        let mut tags = std::collections::BTreeMap::new();
        tags.insert("node_id".to_string(), self.node_id.clone());
        if !self.zone.is_empty() {
            tags.insert("zone".to_string(), self.zone.clone());
        }
        tags.insert("component".to_string(), "proxy".to_string());
        tags.insert(
            "guid:x-request-id".to_string(),
            header(h, "x-request-id").unwrap_or_default(),
        );
        tags.insert("http.url".to_string(), url);
        tags.insert("http.method".to_string(), req.method().to_string());
        tags.insert(
            "http.protocol".to_string(),
            match req.version() {
                http::Version::HTTP_2 => "HTTP/2",
                http::Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            }
            .to_string(),
        );
        tags.insert(
            "user_agent".to_string(),
            header(h, "user-agent").unwrap_or_else(|| "-".to_string()),
        );
        tags.insert("downstream_cluster".to_string(), "-".to_string());
        if let Some(p) = peer {
            tags.insert("peer.address".to_string(), p.ip().to_string());
        }
        tags.insert(
            "request_size".to_string(),
            header(h, "content-length").unwrap_or_else(|| "0".to_string()),
        );
        for t in &config.custom_tags {
            let value = match &t.value {
                TagSource::Literal(v) => v.clone(),
                TagSource::Environment {
                    name,
                    default_value,
                } => std::env::var(name).unwrap_or_else(|_| default_value.clone()),
                TagSource::RequestHeader {
                    name,
                    default_value,
                } => header(h, name).unwrap_or_else(|| default_value.clone()),
            };
            tags.insert(t.tag.clone(), value);
        }
        ActiveTrace {
            config: config.clone(),
            trace_id,
            wide,
            parent_id,
            server_id,
            client_id,
            sampled,
            started: SystemTime::now(),
            start: Instant::now(),
            name: format!("{authority}/*"),
            tags,
        }
    }

    fn new_trace_id(&self, config: &TracingConfig) -> u128 {
        if config.trace_id_128bit {
            loop {
                let id: u128 = rand::random();
                if id != 0 {
                    return id;
                }
            }
        } else {
            u128::from(new_id())
        }
    }

    /// Ends the spans of a request (when its response body ends, see [`attach`]) and queues
    /// them.
    /// The `SERVER` span has the request's tags; the `CLIENT` span only the upstream ones
    /// (protocol, upstream address and cluster, status, flags), as Envoy tags them.
    pub fn finish(
        &self,
        trace: ActiveTrace,
        status: u16,
        flags: &[&'static str],
        cluster: Option<&str>,
        upstream: Option<SocketAddr>,
        clusters: &Arc<ClusterManager>,
    ) {
        if !trace.sampled {
            return;
        }
        let duration = u64::try_from(trace.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let timestamp = trace
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        let mut common = std::collections::BTreeMap::new();
        common.insert("component".to_string(), "proxy".to_string());
        common.insert("http.status_code".to_string(), status.to_string());
        common.insert(
            "response_flags".to_string(),
            if flags.is_empty() {
                "-".to_string()
            } else {
                flags.join(",")
            },
        );
        if let Some(c) = cluster {
            common.insert("upstream_cluster".to_string(), c.to_string());
            common.insert("upstream_cluster.name".to_string(), c.to_string());
        }
        if status >= 500 {
            common.insert("error".to_string(), "true".to_string());
        }
        let mut tags = trace.tags;
        let mut client_tags = common.clone();
        if let Some(p) = tags.get("http.protocol") {
            client_tags.insert("http.protocol".to_string(), p.clone());
        }
        if let Some(u) = upstream {
            client_tags.insert("upstream_address".to_string(), u.to_string());
        }
        tags.extend(common);
        let hex = |id: u64| format!("{id:016x}");
        let trace_id = trace_id_hex(trace.trace_id, trace.wide);
        let mut spans = vec![Span {
            trace_id: trace_id.clone(),
            id: hex(trace.server_id),
            parent_id: trace.parent_id.map(hex),
            name: trace.name,
            kind: "SERVER",
            timestamp,
            duration,
            local_endpoint: self.local.clone(),
            tags,
        }];
        if let (Some(client), Some(_)) = (trace.client_id, cluster) {
            spans.push(Span {
                trace_id,
                id: hex(client),
                parent_id: Some(hex(trace.server_id)),
                name: format!("router {} egress", cluster.unwrap_or_default()),
                kind: "CLIENT",
                timestamp,
                duration,
                local_endpoint: self.local.clone(),
                tags: client_tags,
            });
        }
        self.exporters
            .export(&trace.config.collector, clusters, spans);
    }
}
