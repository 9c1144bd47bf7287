//! Access logs (the HCM's `access_log` with Envoy's file logger): what a request did, written
//! when its response has been sent (the last body byte, or the client going away), in a text
//! or JSON format of Envoy command operators. Lines go to a bounded writer queue per file
//! (`writer`), never written on the request path.

mod format;
mod writer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, Request, Response};
use serde::Serialize;

pub use format::{FormatError, Operator, Piece, Template, rfc3339_millis};
pub use writer::{QUEUE_LINES, dropped_counter};

use crate::listener::{BodyObserver, ProxyBody, REASON_HEADER, observe};

/// One access logger of an HTTP connection manager.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessLogConfig {
    /// The file lines are appended to (`/dev/stdout` shares the proxy's own output).
    pub path: Arc<str>,
    /// How a line looks.
    pub format: LogFormat,
    /// Which requests are logged (all without a filter).
    pub filter: Option<StatusFilter>,
}

/// A line's format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum LogFormat {
    /// Text (`text_format_source.inline_string`), written as is.
    Text(Template),
    /// A JSON object per line (`json_format`): key → template.
    Json(Vec<(String, Template)>),
}

/// Envoy's `status_code_filter`: the response code compared with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusFilter {
    /// The comparison.
    pub op: Comparison,
    /// The value.
    pub value: u32,
}

/// `ComparisonFilter.Op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Comparison {
    /// `EQ`.
    Eq,
    /// `GE`.
    Ge,
    /// `LE`.
    Le,
}

impl StatusFilter {
    fn admits(self, status: u16) -> bool {
        let s = u32::from(status);
        match self.op {
            Comparison::Eq => s == self.value,
            Comparison::Ge => s >= self.value,
            Comparison::Le => s <= self.value,
        }
    }
}

/// The endpoint a response came from (a response extension set by the router).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamHost(pub SocketAddr);

/// The name of the route that forwarded the request (a response extension set by the router).
#[derive(Debug, Clone)]
pub struct RouteName(pub Arc<str>);

/// Everything a log line can show about one request.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the request started (wall clock).
    pub start_time: SystemTime,
    start: Instant,
    /// `:method`.
    pub method: String,
    /// `:path` (with the query).
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// `:scheme`.
    pub scheme: &'static str,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'static str,
    /// The request's headers as received.
    pub request_headers: HeaderMap,
    /// The response's headers as sent.
    pub response_headers: HeaderMap,
    /// The response code.
    pub status: u16,
    /// Response flags.
    pub flags: Vec<&'static str>,
    /// `via_upstream` or the proxy's own reason.
    pub details: String,
    /// Request body bytes (from `content-length`).
    pub bytes_received: u64,
    /// Response body bytes sent.
    pub bytes_sent: u64,
    /// Milliseconds to the last response byte.
    pub duration_ms: u64,
    /// The endpoint that answered.
    pub upstream_host: Option<SocketAddr>,
    /// The cluster used.
    pub cluster: Option<String>,
    /// The downstream connection's local address.
    pub local: Option<SocketAddr>,
    /// The downstream peer.
    pub remote: Option<SocketAddr>,
    /// The downstream peer's verified URI SAN.
    pub peer_uri_san: Option<String>,
    /// The route's name.
    pub route_name: Option<String>,
}

impl Record {
    #[cfg(test)]
    fn for_test() -> Record {
        Record {
            start_time: SystemTime::UNIX_EPOCH,
            start: Instant::now(),
            method: "GET".into(),
            path: "/p?q=1".into(),
            authority: "echo:9080".into(),
            scheme: "http",
            protocol: "HTTP/1.1",
            request_headers: HeaderMap::new(),
            response_headers: HeaderMap::new(),
            status: 200,
            flags: Vec::new(),
            details: String::new(),
            bytes_received: 0,
            bytes_sent: 0,
            duration_ms: 0,
            upstream_host: None,
            cluster: None,
            local: None,
            remote: None,
            peer_uri_san: None,
            route_name: None,
        }
    }

    fn line(&self, config: &AccessLogConfig) -> String {
        match &config.format {
            LogFormat::Text(t) => t.render(self),
            LogFormat::Json(fields) => {
                let object: serde_json::Map<String, serde_json::Value> = fields
                    .iter()
                    .map(|(k, t)| (k.clone(), t.render_json(self)))
                    .collect();
                let mut line = serde_json::Value::Object(object).to_string();
                line.push('\n');
                line
            }
        }
    }
}

/// A request being logged: its facts so far and the loggers it goes to.
#[derive(Debug)]
pub struct Pending {
    record: Record,
    logs: Arc<[AccessLogConfig]>,
}

/// Who sent a request, as the connection knows it.
#[derive(Debug, Clone, Copy)]
pub struct Downstream<'a> {
    /// The connection's local address.
    pub local: Option<SocketAddr>,
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// The peer's verified URI SAN.
    pub peer_uri_san: Option<&'a str>,
    /// `https` on TLS connections.
    pub scheme: &'static str,
}

/// Starts logging a request when `logs` is not empty (else `None`, at no cost).
pub fn begin<B>(
    logs: &Arc<[AccessLogConfig]>,
    downstream: Downstream<'_>,
    req: &Request<B>,
) -> Option<Pending> {
    if logs.is_empty() {
        return None;
    }
    let authority = crate::listener::request_authority(req)
        .unwrap_or_default()
        .to_string();
    let protocol = match req.version() {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    };
    Some(Pending {
        record: Record {
            start_time: SystemTime::now(),
            start: Instant::now(),
            method: req.method().as_str().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            authority,
            scheme: downstream.scheme,
            protocol,
            request_headers: req.headers().clone(),
            response_headers: HeaderMap::new(),
            status: 0,
            flags: Vec::new(),
            details: String::new(),
            bytes_received: req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            bytes_sent: 0,
            duration_ms: 0,
            upstream_host: None,
            cluster: None,
            local: downstream.local,
            remote: downstream.remote,
            peer_uri_san: downstream.peer_uri_san.map(str::to_string),
            route_name: None,
        },
        logs: logs.clone(),
    })
}

/// Completes the record with the response and wraps its body so the line is written when the
/// body ends (or is dropped). Loggers whose filter rejects the status are left out.
pub fn attach(
    pending: Option<Pending>,
    cluster: Option<&str>,
    flags: &[&'static str],
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let Some(mut pending) = pending else {
        return response;
    };
    let status = response.status().as_u16();
    if !pending.logs.iter().any(|l| admits(l, status)) {
        return response;
    }
    let r = &mut pending.record;
    r.status = status;
    r.flags = flags.to_vec();
    r.cluster = cluster.map(str::to_string);
    r.response_headers = response.headers().clone();
    r.upstream_host = response.extensions().get::<UpstreamHost>().map(|h| h.0);
    r.route_name = response
        .extensions()
        .get::<RouteName>()
        .map(|n| n.0.to_string());
    r.details = details(response.headers(), flags, r.upstream_host.is_some());
    observe(
        response,
        BodyLog {
            record: Box::new(pending.record),
            logs: pending.logs,
        },
    )
}

/// Whether `log` writes a line for a response with `status`.
fn admits(log: &AccessLogConfig, status: u16) -> bool {
    log.filter.is_none_or(|f| f.admits(status))
}

/// `%RESPONSE_CODE_DETAILS%` as Envoy names them: `via_upstream` for upstream responses, else
/// the reason of the proxy's own answer.
fn details(headers: &HeaderMap, flags: &[&'static str], upstream: bool) -> String {
    let reason = headers.get(REASON_HEADER).and_then(|v| v.to_str().ok());
    if reason.is_none() {
        return if upstream {
            "via_upstream"
        } else {
            "direct_response"
        }
        .to_string();
    }
    let known = flags.iter().find_map(|f| {
        Some(match *f {
            "UH" => "no_healthy_upstream",
            "NR" => "route_not_found",
            "FI" => "fault_filter_abort",
            "UO" => "upstream_reset_before_response_started{overflow}",
            "UF" => "upstream_reset_before_response_started{connection_failure}",
            "UPE" => "upstream_reset_before_response_started{protocol_error}",
            "UT" => "response_timeout",
            "URX" => "via_upstream",
            _ => return None,
        })
    });
    match known {
        Some(d) => d.to_string(),
        None => reason
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect(),
    }
}

/// Counts the bytes of a response body and writes the log lines when it ends or is dropped.
struct BodyLog {
    record: Box<Record>,
    /// Every logger of the connection manager: those whose filter admits the status write.
    logs: Arc<[AccessLogConfig]>,
}

impl BodyObserver for BodyLog {
    fn on_data(&mut self, len: usize) {
        self.record.bytes_sent += len as u64;
    }

    fn on_end(&mut self) {
        let record = &mut self.record;
        record.duration_ms = u64::try_from(record.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        for log in self.logs.iter().filter(|l| admits(l, record.status)) {
            writer::write(&log.path, record.line(log));
        }
    }
}
