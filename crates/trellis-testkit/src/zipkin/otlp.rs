//! The collector's OTLP side: gRPC framing, the protobuf request, and its spans in Zipkin's
//! JSON shape (so `trace` expectations read one format).

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::{Value, json};

use super::Body;

/// OTLP/gRPC's export method.
pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// OTLP/HTTP's trace path.
pub const HTTP_PATH: &str = "/v1/traces";

/// The message of a gRPC request body: one uncompressed, length-prefixed frame.
pub fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let (header, message) = body
        .split_at_checked(5)
        .ok_or("a gRPC frame has a 5-byte header")?;
    if header[0] != 0 {
        return Err("compressed gRPC frames are not supported".into());
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len != message.len() {
        return Err(format!(
            "the frame says {len} bytes, the body has {}",
            message.len()
        ));
    }
    Ok(message)
}

/// The spans of an `ExportTraceServiceRequest`, as Zipkin v2 JSON objects.
pub fn spans(message: &[u8]) -> Result<Vec<Value>, String> {
    let request =
        ExportTraceServiceRequest::decode(message).map_err(|e| format!("not OTLP: {e}"))?;
    let mut out = Vec::new();
    for rs in &request.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| string_value(&r.attributes, "service.name"));
        for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            let tags: serde_json::Map<String, Value> = span
                .attributes
                .iter()
                .filter_map(|kv| Some((kv.key.clone(), Value::String(text(kv)?))))
                .collect();
            let kind = match SpanKind::try_from(span.kind) {
                Ok(SpanKind::Server) => "SERVER",
                Ok(SpanKind::Client) => "CLIENT",
                Ok(SpanKind::Producer) => "PRODUCER",
                Ok(SpanKind::Consumer) => "CONSUMER",
                _ => "UNSPECIFIED",
            };
            let mut v = json!({
                "traceId": hex(&span.trace_id),
                "id": hex(&span.span_id),
                "name": span.name,
                "kind": kind,
                "tags": tags,
                "timestamp": span.start_time_unix_nano / 1000,
                "duration": span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) / 1000,
            });
            if !span.parent_span_id.is_empty() {
                v["parentId"] = Value::String(hex(&span.parent_span_id));
            }
            if let Some(s) = &service {
                v["localEndpoint"] = json!({ "serviceName": s });
            }
            out.push(v);
        }
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(kv: &KeyValue) -> Option<String> {
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn string_value(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(text)
}

/// A successful unary gRPC answer: the empty response message, then `grpc-status: 0`.
pub fn grpc_ok() -> Response<Body> {
    let message = ExportTraceServiceResponse::default().encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from(frame))),
        Ok(Frame::trailers(trailers)),
    ];
    grpc_response(StreamBody::new(futures::stream::iter(frames)).boxed())
}

/// A failed gRPC call (trailers-only): `INVALID_ARGUMENT` with the reason.
pub fn grpc_error(reason: &str) -> Response<Body> {
    let mut r = grpc_response(Full::new(Bytes::new()).boxed());
    r.headers_mut()
        .insert("grpc-status", HeaderValue::from_static("3"));
    if let Ok(v) = HeaderValue::from_str(&reason.replace(|c: char| !c.is_ascii_graphic(), " ")) {
        r.headers_mut().insert("grpc-message", v);
    }
    r
}

fn grpc_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    r
}

/// A successful OTLP/HTTP answer: the empty response message.
pub fn http_ok() -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(
            ExportTraceServiceResponse::default().encode_to_vec(),
        ))
        .boxed(),
    );
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    r
}
