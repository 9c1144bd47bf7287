//! Spans as OTLP: an `ExportTraceServiceRequest` (one resource — the proxy, named by the
//! tracer's `service_name` — and one scope) carrying the same spans, ids and tags the Zipkin
//! exporter sends, in the shape Envoy's OpenTelemetry tracer exports them.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span::SpanKind, status::StatusCode,
};
use prost::Message;

use super::export::Span;

/// The request body of an OTLP/HTTP export: the protobuf message.
pub fn encode(spans: &[Span], service_name: &str) -> Vec<u8> {
    request(spans, service_name).encode_to_vec()
}

/// The request body of an OTLP/gRPC export: the message in one uncompressed gRPC frame.
pub fn grpc_frame(spans: &[Span], service_name: &str) -> Vec<u8> {
    let message = encode(spans, service_name);
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

fn request(spans: &[Span], service_name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_attribute("service.name", service_name)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "trellis".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                spans: spans.iter().map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn span(s: &Span) -> OtlpSpan {
    let start = s.timestamp.saturating_mul(1_000);
    let error = s.tags.get("error").is_some_and(|v| v == "true");
    OtlpSpan {
        trace_id: hex_id(&s.trace_id, 16),
        span_id: hex_id(&s.id, 8),
        parent_span_id: s
            .parent_id
            .as_deref()
            .map(|p| hex_id(p, 8))
            .unwrap_or_default(),
        name: s.name.clone(),
        kind: match s.kind {
            "CLIENT" => SpanKind::Client,
            _ => SpanKind::Server,
        } as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start.saturating_add(s.duration.saturating_mul(1_000)),
        attributes: s.tags.iter().map(|(k, v)| string_attribute(k, v)).collect(),
        status: error.then(|| Status {
            code: StatusCode::Error as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// A hex id as `width` big-endian bytes (64-bit trace ids are zero-extended, as OTLP wants
/// 16-byte trace ids).
fn hex_id(hex: &str, width: usize) -> Vec<u8> {
    let value = u128::from_str_radix(hex, 16).unwrap_or_default();
    value.to_be_bytes()[16 - width..].to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::trace::Endpoint;

    fn zipkin_span(kind: &'static str, trace_id: &str, error: bool) -> Span {
        let mut tags = std::collections::BTreeMap::new();
        tags.insert("http.method".to_string(), "GET".to_string());
        if error {
            tags.insert("error".to_string(), "true".to_string());
        }
        Span {
            trace_id: trace_id.to_string(),
            id: "00000000000000ab".to_string(),
            parent_id: Some("0000000000000001".to_string()),
            name: "echo:9080/*".to_string(),
            kind,
            timestamp: 1_700_000_000_000_000,
            duration: 1_500,
            local_endpoint: Endpoint {
                service_name: "echo-v1-0.default".to_string(),
                ipv4: None,
            },
            tags,
        }
    }

    #[test]
    fn spans_keep_ids_times_kinds_and_tags() {
        let spans = [
            zipkin_span("SERVER", "0123456789abcdef0123456789abcdef", false),
            zipkin_span("CLIENT", "00000000000000ff", true),
        ];
        let decoded =
            ExportTraceServiceRequest::decode(encode(&spans, "echo.default").as_slice()).unwrap();
        let rs = &decoded.resource_spans[0];
        let service = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        assert_eq!(
            service.value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("echo.default".into()))
        );
        let out = &rs.scope_spans[0].spans;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].trace_id,
            u128::from_str_radix("0123456789abcdef0123456789abcdef", 16)
                .unwrap()
                .to_be_bytes()
        );
        let mut short = [0u8; 16];
        short[15] = 0xff;
        assert_eq!(out[1].trace_id, short, "64-bit ids are zero-extended");
        assert_eq!(out[0].span_id, [0, 0, 0, 0, 0, 0, 0, 0xab]);
        assert_eq!(out[0].parent_span_id, [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(out[0].kind, SpanKind::Server as i32);
        assert_eq!(out[1].kind, SpanKind::Client as i32);
        assert_eq!(out[0].start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(
            out[0].end_time_unix_nano - out[0].start_time_unix_nano,
            1_500_000
        );
        assert!(out[0].status.is_none());
        assert_eq!(
            out[1].status.as_ref().unwrap().code,
            StatusCode::Error as i32
        );
        assert_eq!(out[0].attributes[0].key, "http.method");
    }

    #[test]
    fn grpc_frame_is_an_uncompressed_length_prefixed_message() {
        let spans = [zipkin_span("SERVER", "1", false)];
        let frame = grpc_frame(&spans, "s");
        let message = encode(&spans, "s");
        assert_eq!(frame[0], 0, "not compressed");
        assert_eq!(
            u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize,
            message.len()
        );
        assert_eq!(&frame[5..], message.as_slice());
    }
}
