//! Names and type URLs of the telemetry extensions both ends agree on: access loggers and
//! tracers in the HTTP connection manager.

/// Envoy's file access logger.
pub const FILE_ACCESS_LOG: &str = "envoy.access_loggers.file";
/// Its config type.
pub const FILE_ACCESS_LOG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
/// The Zipkin tracer.
pub const ZIPKIN: &str = "envoy.tracers.zipkin";
/// Its config type.
pub const ZIPKIN_TYPE: &str = "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig";
/// The OpenTelemetry tracer.
pub const OPENTELEMETRY: &str = "envoy.tracers.opentelemetry";
/// Its config type.
pub const OPENTELEMETRY_TYPE: &str =
    "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";
/// The UUID request id extension (`x-request-id`).
pub const REQUEST_ID_UUID: &str = "envoy.request_id.uuid";
/// Its config type.
pub const REQUEST_ID_UUID_TYPE: &str =
    "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig";
/// OTLP/HTTP's trace export path (the OpenTelemetry provider's default `http.path`).
pub const OTLP_TRACES_PATH: &str = "/v1/traces";
/// OTLP/gRPC's trace export method (the path of its HTTP/2 request).
pub const OTLP_TRACES_GRPC_PATH: &str =
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// Zipkin's v2 JSON span endpoint (Istio's `collector_endpoint`).
pub const ZIPKIN_SPANS_PATH: &str = "/api/v2/spans";
