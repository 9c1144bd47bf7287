//! The Telemetry API's metric overrides as the proxy applies them (from the `istio.stats` HTTP
//! filter of a connection manager): which of the four HTTP metrics are dropped, and for the
//! others which standard labels are removed and which labels are set from the request or
//! response.
//!
//! Request attributes an override reads are captured when the request arrives (only when some
//! override reads them); the labels are completed when the response ends.

use std::sync::Arc;

use http::Request;
use serde::Serialize;
use trellis_xds::stats::{Attribute, ValueExpr};

/// The HTTP metrics an override can change, in [`IstioMetrics`](super::IstioMetrics) order
/// (stats-config names).
pub const HTTP_METRICS: [&str; 4] = [
    "requests_total",
    "request_duration_milliseconds",
    "request_bytes",
    "response_bytes",
];

/// The labels every HTTP metric has, in encoding order; `removed` bits index into it.
pub const STANDARD_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "source_canonical_service",
    "source_canonical_revision",
    "destination_canonical_service",
    "destination_canonical_revision",
    "connection_security_policy",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
];

/// One label set from an expression (`UPSERT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Upsert {
    /// The label.
    pub name: Arc<str>,
    /// The expression as configured.
    pub source: String,
    /// The expression, parsed.
    #[serde(skip)]
    pub expr: ValueExpr,
}

/// What an override does to one metric's labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct LabelChanges {
    /// Bit `i` set: [`STANDARD_LABELS`]`[i]` is not reported.
    pub removed: u32,
    /// Labels set, by name (a standard label keeps its place, others are appended).
    pub upserts: Vec<Upsert>,
}

impl LabelChanges {
    /// Whether the metric keeps Istio's labels unchanged.
    pub fn is_empty(&self) -> bool {
        self.removed == 0 && self.upserts.is_empty()
    }
}

/// The metric overrides of one connection manager.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsConfig {
    /// Per HTTP metric ([`HTTP_METRICS`] order): `None` when dropped, else its label changes.
    pub http: [Option<Arc<LabelChanges>>; 4],
}

impl MetricsConfig {
    /// Whether some kept metric sets a label from the request.
    fn reads_request(&self) -> bool {
        self.http.iter().flatten().any(|c| {
            c.upserts.iter().any(|u| {
                !matches!(
                    u.expr.attribute,
                    Attribute::ResponseCode | Attribute::Literal(_)
                )
            })
        })
    }
}

/// The request attributes overrides read, captured when the request arrives.
#[derive(Debug, Clone, Default)]
pub struct RequestAttributes {
    host: Option<String>,
    method: String,
    path: String,
    scheme: Option<String>,
    protocol: &'static str,
    /// The headers some override reads (lower-case name, value), in config order.
    headers: Vec<(String, Option<String>)>,
}

impl RequestAttributes {
    /// What `config` reads of `req`, or `None` when it reads nothing of requests.
    pub fn capture<B>(config: &MetricsConfig, req: &Request<B>) -> Option<Box<Self>> {
        if !config.reads_request() {
            return None;
        }
        let mut headers: Vec<(String, Option<String>)> = Vec::new();
        for u in config.http.iter().flatten().flat_map(|c| c.upserts.iter()) {
            if let Attribute::RequestHeader(name) = &u.expr.attribute
                && !headers.iter().any(|(n, _)| n == name)
            {
                let value = req
                    .headers()
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                headers.push((name.clone(), value));
            }
        }
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            });
        Some(Box::new(RequestAttributes {
            host,
            method: req.method().as_str().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
            scheme: req.uri().scheme_str().map(str::to_string),
            protocol: match req.version() {
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2",
                _ => "HTTP/1.1",
            },
            headers,
        }))
    }
}

/// The value of an upserted label: the attribute, else the expression's default.
pub fn evaluate(expr: &ValueExpr, attrs: Option<&RequestAttributes>, status: u16) -> Arc<str> {
    let found: Option<String> = match (&expr.attribute, attrs) {
        (Attribute::ResponseCode, _) => Some(status.to_string()),
        (Attribute::Literal(l), _) => Some(l.clone()),
        (_, None) => None,
        (Attribute::RequestHeader(name), Some(a)) => a
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone()),
        (Attribute::RequestHost, Some(a)) => a.host.clone(),
        (Attribute::RequestMethod, Some(a)) => Some(a.method.clone()),
        (Attribute::RequestPath, Some(a)) => Some(a.path.clone()),
        (Attribute::RequestUrlPath, Some(a)) => {
            Some(a.path.split('?').next().unwrap_or_default().to_string())
        }
        (Attribute::RequestScheme, Some(a)) => a.scheme.clone(),
        (Attribute::RequestProtocol, Some(a)) => Some(a.protocol.to_string()),
    };
    Arc::from(found.unwrap_or_else(|| expr.default.clone()))
}

/// A metric's label changes with their values for one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomLabels {
    /// Bit `i`: [`STANDARD_LABELS`]`[i]` is left out.
    pub removed: u32,
    /// Upserted labels and their values.
    pub values: Vec<(Arc<str>, Arc<str>)>,
}

impl CustomLabels {
    /// `changes` evaluated for one request.
    pub fn of(changes: &LabelChanges, attrs: Option<&RequestAttributes>, status: u16) -> Self {
        CustomLabels {
            removed: changes.removed,
            values: changes
                .upserts
                .iter()
                .map(|u| (u.name.clone(), evaluate(&u.expr, attrs, status)))
                .collect(),
        }
    }
}
