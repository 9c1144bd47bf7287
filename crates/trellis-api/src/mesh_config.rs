//! Istio's mesh config (`MeshConfig`, the `mesh` key of the `istio` ConfigMap): mesh-wide
//! defaults the control plane reads from one file (`--mesh-config`). Parsed as strictly as the
//! resources: an unknown field is an error with its path, and a known field Trellis cannot honour
//! is rejected as unsupported rather than silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::networking::{OutboundTrafficMode, OutboundTrafficPolicy};
use crate::types::{Duration, istio_enum};

/// The built-in access log provider Istio always has: Envoy's file logger writing to
/// `/dev/stdout` in the mesh's `accessLogFormat`/`accessLogEncoding`.
pub const ENVOY_PROVIDER: &str = "envoy";

/// Istio's default text access log format (`EnvoyTextLogFormat` in istiod).
pub const DEFAULT_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON access log fields (`EnvoyJSONLogFormatIstio` in istiod): key → operator.
pub const DEFAULT_JSON_FORMAT: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
];

/// The mesh config. Every field is optional; absent ones take Istio's defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshConfig {
    /// Defaults for every proxy (only `tracing.sampling` is supported).
    pub default_config: Option<ProxyConfig>,
    /// Whether proxies trace (Istio's default: true; without a tracing provider nothing is sent).
    pub enable_tracing: Option<bool>,
    /// Telemetry providers referenced by name from `defaultProviders` and `Telemetry`.
    #[serde(default)]
    pub extension_providers: Vec<ExtensionProvider>,
    /// Providers used when no `Telemetry` names one.
    pub default_providers: Option<DefaultProviders>,
    /// Where every proxy writes access logs (empty: none, unless `Telemetry` enables them).
    pub access_log_file: Option<String>,
    /// `TEXT` (default) or `JSON`.
    pub access_log_encoding: Option<AccessLogEncoding>,
    /// The format (Envoy command operators); Istio's default when empty.
    pub access_log_format: Option<String>,
    /// The mesh-wide default of `Sidecar.outboundTrafficPolicy`.
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// The trust domain of workload identities (must match the control plane's `--trust-domain`).
    pub trust_domain: Option<String>,
    /// Where mesh-wide policy lives (only `istio-system` is supported).
    pub root_namespace: Option<String>,
    /// How sidecars normalize request paths before authorization and routing.
    pub path_normalization: Option<ProxyPathNormalization>,
    /// Whether HTTP/1.1 connections to declared HTTP ports are upgraded to HTTP/2 (default
    /// `DO_NOT_UPGRADE`); a DestinationRule's `connectionPool.http.h2UpgradePolicy` overrides it.
    pub h2_upgrade_policy: Option<MeshH2UpgradePolicy>,
}

istio_enum! {
    /// The mesh-wide HTTP/2 upgrade policy (`MeshConfig.H2UpgradePolicy`).
    MeshH2UpgradePolicy { DoNotUpgrade = "DO_NOT_UPGRADE", Upgrade = "UPGRADE" }
}

/// `pathNormalization`: which normalization the connection manager applies to `:path`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyPathNormalization {
    /// The normalization (absent: `DEFAULT`, which is `BASE`).
    pub normalization: Option<PathNormalizationType>,
}

istio_enum! {
    /// Path normalization levels, each including the one before (`DEFAULT` is `BASE`).
    PathNormalizationType {
        Default = "DEFAULT",
        None = "NONE",
        Base = "BASE",
        MergeSlashes = "MERGE_SLASHES",
        DecodeAndMergeSlashes = "DECODE_AND_MERGE_SLASHES",
    }
}

istio_enum! {
    /// Access log encodings.
    AccessLogEncoding { Text = "TEXT", Json = "JSON" }
}

/// The parts of Istio's `ProxyConfig` Trellis honours as mesh-wide defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// Tracing defaults.
    pub tracing: Option<ProxyTracing>,
}

/// `ProxyConfig.tracing`: only the sampling rate (the collector comes from providers).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyTracing {
    /// Percent of requests sampled (Istio's default: 1).
    pub sampling: Option<f64>,
}

/// The providers used when no `Telemetry` resource names one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultProviders {
    /// Tracing providers.
    #[serde(default)]
    pub tracing: Vec<String>,
    /// Access log providers.
    #[serde(default)]
    pub access_logging: Vec<String>,
    /// Metrics providers.
    #[serde(default)]
    pub metrics: Vec<String>,
}

/// A named telemetry or authorization provider: exactly one kind.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Its name (required, unique).
    #[serde(default)]
    pub name: String,
    /// Zipkin v2 JSON over HTTP.
    pub zipkin: Option<ZipkinProvider>,
    /// OpenTelemetry (OTLP).
    pub opentelemetry: Option<OpenTelemetryProvider>,
    /// Envoy's file access logger.
    pub envoy_file_access_log: Option<FileAccessLogProvider>,
    /// External authorization over gRPC (AuthorizationPolicy `CUSTOM`).
    pub envoy_ext_authz_grpc: Option<ExtAuthzGrpcProvider>,
    /// External authorization over HTTP (AuthorizationPolicy `CUSTOM`).
    pub envoy_ext_authz_http: Option<ExtAuthzHttpProvider>,
    /// Prometheus metrics (no settings).
    pub prometheus: Option<EmptyProvider>,
}

/// A provider with no settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyProvider {}

/// Zipkin: spans are posted to `service:port` (a mesh service or ServiceEntry host).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZipkinProvider {
    /// The collector's host (required).
    #[serde(default)]
    pub service: String,
    /// The collector's port (required).
    #[serde(default)]
    pub port: u32,
    /// The longest tag value sent (Istio's default: 256).
    pub max_tag_length: Option<u32>,
}

/// OpenTelemetry: OTLP to `service:port`, over gRPC (the default) or HTTP.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenTelemetryProvider {
    /// The collector's host (required).
    #[serde(default)]
    pub service: String,
    /// The collector's port (required).
    #[serde(default)]
    pub port: u32,
    /// The longest tag value sent.
    pub max_tag_length: Option<u32>,
    /// OTLP over gRPC settings.
    pub grpc: Option<OtlpGrpc>,
    /// OTLP over HTTP settings.
    pub http: Option<OtlpHttp>,
}

/// OTLP/gRPC settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpGrpc {
    /// Call timeout.
    pub timeout: Option<Duration>,
    /// Extra request metadata.
    #[serde(default)]
    pub initial_metadata: Vec<HeaderValue>,
}

/// OTLP/HTTP settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtlpHttp {
    /// The path spans are posted to (`/v1/traces`).
    pub path: Option<String>,
    /// Call timeout.
    pub timeout: Option<Duration>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: Vec<HeaderValue>,
}

/// A header or metadata entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValue {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// Envoy's file access logger.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileAccessLogProvider {
    /// The file (e.g. `/dev/stdout`, required).
    #[serde(default)]
    pub path: String,
    /// Text or JSON format; Istio's default text format when absent.
    pub log_format: Option<LogFormat>,
}

/// One of a text format or JSON labels (key → command operator).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogFormat {
    /// Text with command operators (a newline is appended when missing).
    pub text: Option<String>,
    /// JSON object: key → command operator.
    pub labels: Option<BTreeMap<String, String>>,
}

/// External authorization over gRPC.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzGrpcProvider {
    /// The authorization service's host (required).
    #[serde(default)]
    pub service: String,
    /// Its port (required).
    #[serde(default)]
    pub port: u32,
    /// Per-check timeout.
    pub timeout: Option<Duration>,
    /// Allow requests when the service cannot be reached.
    pub fail_open: Option<bool>,
    /// Status returned when the service cannot be reached.
    pub status_on_error: Option<String>,
    /// Send the request body too.
    pub include_request_body_in_check: Option<ExtAuthzRequestBody>,
}

/// External authorization over HTTP: the request (path under `pathPrefix`, selected headers,
/// optionally the body) is sent to `service:port`; a `200` allows, anything else denies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzHttpProvider {
    /// The authorization service's host (required).
    #[serde(default)]
    pub service: String,
    /// Its port (required).
    #[serde(default)]
    pub port: u32,
    /// Per-check timeout (Istio's default: 600 s).
    pub timeout: Option<Duration>,
    /// Prepended to the request's path in the check request (must start with `/`).
    pub path_prefix: Option<String>,
    /// Allow requests when the service cannot be reached.
    pub fail_open: Option<bool>,
    /// Status returned when the service cannot be reached (Envoy's default: 403).
    pub status_on_error: Option<String>,
    /// Request headers sent in the check (`*` prefix/suffix wildcards; Envoy always sends
    /// `Host`, `Method`, `Path`, `Content-Length` and `Authorization`).
    #[serde(default)]
    pub include_request_headers_in_check: Vec<String>,
    /// Headers added to the check request.
    #[serde(default)]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// Send the request body too.
    pub include_request_body_in_check: Option<ExtAuthzRequestBody>,
    /// Authorizer response headers added to the request when it is allowed.
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Authorizer response headers passed to the client when it is denied.
    #[serde(default)]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Authorizer response headers added to the response when it is allowed.
    #[serde(default)]
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// How much of the request body the authorizer sees.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzRequestBody {
    /// The most bytes buffered for the check.
    #[serde(default)]
    pub max_request_bytes: u32,
    /// Check with the first `maxRequestBytes` instead of answering `413` to a bigger body.
    #[serde(default)]
    pub allow_partial_message: bool,
    /// Send the body as bytes (`raw_body`) rather than as UTF-8 text (`body`); gRPC only.
    #[serde(default)]
    pub pack_as_bytes: bool,
}

/// A mesh config that cannot be used, with the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct MeshConfigError {
    /// Dotted path of the field (empty for the whole document).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl MeshConfigError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        MeshConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl MeshConfig {
    /// Parses and validates mesh config YAML (an empty document is the default config).
    pub fn parse(text: &str) -> Result<MeshConfig, Vec<MeshConfigError>> {
        let value: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| vec![MeshConfigError::new("", format!("invalid YAML: {e}"))])?;
        if value.is_null() {
            return Ok(MeshConfig::default());
        }
        let config: MeshConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            vec![MeshConfigError::new(
                e.path().to_string(),
                e.inner().to_string(),
            )]
        })?;
        let errors = config.validate();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Semantic checks: required fields, one kind per provider, unique names, references.
    fn validate(&self) -> Vec<MeshConfigError> {
        let mut errors = Vec::new();
        let mut err = |p: String, r: String| errors.push(MeshConfigError::new(p, r));
        if let Some(s) = self
            .default_config
            .as_ref()
            .and_then(|d| d.tracing.as_ref())
            .and_then(|t| t.sampling)
            && !(0.0..=100.0).contains(&s)
        {
            err(
                "defaultConfig.tracing.sampling".into(),
                format!("{s} is out of range 0..=100"),
            );
        }
        if let Some(ns) = &self.root_namespace
            && ns != "istio-system"
        {
            err(
                "rootNamespace".into(),
                format!("unsupported: only istio-system is supported, got {ns:?}"),
            );
        }
        if let Some(p) = &self.outbound_traffic_policy
            && p.egress_proxy.is_some()
        {
            err(
                "outboundTrafficPolicy.egressProxy".into(),
                "unsupported: egress proxies are not implemented".into(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.extension_providers.iter().enumerate() {
            let at = format!("extensionProviders[{i}]");
            if p.name.is_empty() {
                err(format!("{at}.name"), "name is required".into());
            } else if p.name == ENVOY_PROVIDER {
                err(
                    format!("{at}.name"),
                    format!("{ENVOY_PROVIDER:?} is the name of the built-in access log provider"),
                );
            } else if !names.insert(p.name.as_str()) {
                err(
                    format!("{at}.name"),
                    format!("duplicate provider name {:?}", p.name),
                );
            }
            let kinds = [
                p.zipkin.is_some(),
                p.opentelemetry.is_some(),
                p.envoy_file_access_log.is_some(),
                p.envoy_ext_authz_grpc.is_some(),
                p.envoy_ext_authz_http.is_some(),
                p.prometheus.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                err(
                    at.clone(),
                    "exactly one of zipkin, opentelemetry, envoyFileAccessLog, envoyExtAuthzGrpc, envoyExtAuthzHttp, prometheus is required".into(),
                );
            }
            if let Some(z) = &p.zipkin {
                service_port(&mut err, &format!("{at}.zipkin"), &z.service, z.port);
            }
            if let Some(o) = &p.opentelemetry {
                service_port(&mut err, &format!("{at}.opentelemetry"), &o.service, o.port);
                if o.http.is_some() && o.grpc.is_some() {
                    err(
                        format!("{at}.opentelemetry.http"),
                        "set one of grpc and http, not both".into(),
                    );
                }
                if let Some(path) = o.http.as_ref().and_then(|h| h.path.as_deref())
                    && !path.starts_with('/')
                {
                    err(
                        format!("{at}.opentelemetry.http.path"),
                        format!("{path:?} must start with '/'"),
                    );
                }
                let headers = [
                    (
                        "grpc.initialMetadata",
                        o.grpc.as_ref().map(|g| &g.initial_metadata),
                    ),
                    ("http.headers", o.http.as_ref().map(|h| &h.headers)),
                ];
                for (field, list) in headers {
                    for (i, h) in list.into_iter().flatten().enumerate() {
                        if http::HeaderName::from_bytes(h.name.as_bytes()).is_err()
                            || http::HeaderValue::from_str(&h.value).is_err()
                        {
                            err(
                                format!("{at}.opentelemetry.{field}[{i}]"),
                                format!("{:?}: {:?} is not a valid HTTP header", h.name, h.value),
                            );
                        }
                    }
                }
            }
            if let Some(a) = &p.envoy_ext_authz_grpc {
                let at = format!("{at}.envoyExtAuthzGrpc");
                service_port(&mut err, &at, &a.service, a.port);
                ext_authz_common(
                    &mut err,
                    &at,
                    a.status_on_error.as_deref(),
                    a.include_request_body_in_check.as_ref(),
                );
            }
            if let Some(a) = &p.envoy_ext_authz_http {
                let at = format!("{at}.envoyExtAuthzHttp");
                service_port(&mut err, &at, &a.service, a.port);
                ext_authz_common(
                    &mut err,
                    &at,
                    a.status_on_error.as_deref(),
                    a.include_request_body_in_check.as_ref(),
                );
                if let Some(prefix) = &a.path_prefix
                    && !prefix.starts_with('/')
                {
                    err(
                        format!("{at}.pathPrefix"),
                        format!("must begin with `/`, got {prefix:?}"),
                    );
                }
            }
            if let Some(f) = &p.envoy_file_access_log {
                if f.path.is_empty() {
                    err(
                        format!("{at}.envoyFileAccessLog.path"),
                        "path is required".into(),
                    );
                }
                if let Some(l) = &f.log_format
                    && l.text.is_some() == l.labels.is_some()
                {
                    err(
                        format!("{at}.envoyFileAccessLog.logFormat"),
                        "exactly one of text or labels is required".into(),
                    );
                }
            }
        }
        if let Some(d) = &self.default_providers {
            for (field, list) in [
                ("tracing", &d.tracing),
                ("accessLogging", &d.access_logging),
                ("metrics", &d.metrics),
            ] {
                for (i, name) in list.iter().enumerate() {
                    let known = self.extension_providers.iter().any(|p| &p.name == name)
                        || (field == "accessLogging" && name == ENVOY_PROVIDER)
                        || (field == "metrics" && name == "prometheus");
                    if !known {
                        err(
                            format!("defaultProviders.{field}[{i}]"),
                            format!("no extension provider named {name:?}"),
                        );
                    }
                }
            }
        }
        errors
    }

    /// The provider named `name`, if any.
    pub fn provider(&self, name: &str) -> Option<&ExtensionProvider> {
        self.extension_providers.iter().find(|p| p.name == name)
    }

    /// The mesh-wide path normalization (Istio's default: `BASE`; `DEFAULT` is `BASE`).
    pub fn path_normalization(&self) -> PathNormalizationType {
        match self
            .path_normalization
            .as_ref()
            .and_then(|p| p.normalization)
        {
            None | Some(PathNormalizationType::Default) => PathNormalizationType::Base,
            Some(n) => n,
        }
    }

    /// The mesh-wide outbound traffic mode (Istio's default: `ALLOW_ANY`).
    pub fn outbound_mode(&self) -> OutboundTrafficMode {
        self.outbound_traffic_policy
            .as_ref()
            .and_then(|p| p.mode)
            .unwrap_or(OutboundTrafficMode::AllowAny)
    }

    /// The default tracing sampling percentage (Istio's: 1 %).
    pub fn default_sampling(&self) -> f64 {
        self.default_config
            .as_ref()
            .and_then(|d| d.tracing.as_ref())
            .and_then(|t| t.sampling)
            .unwrap_or(1.0)
    }

    /// Whether tracing is on (Istio's default: true).
    pub fn tracing_enabled(&self) -> bool {
        self.enable_tracing.unwrap_or(true)
    }
}

/// What both ext_authz provider kinds check alike: `statusOnError` is an HTTP status code, and
/// a buffered body has a positive size limit.
fn ext_authz_common(
    err: &mut impl FnMut(String, String),
    at: &str,
    status_on_error: Option<&str>,
    body: Option<&ExtAuthzRequestBody>,
) {
    if let Some(s) = status_on_error
        && !s.parse::<u16>().is_ok_and(|c| (200..=599).contains(&c))
    {
        err(
            format!("{at}.statusOnError"),
            format!("{s:?} is not an HTTP status code (200..=599)"),
        );
    }
    if body.is_some_and(|b| b.max_request_bytes == 0) {
        err(
            format!("{at}.includeRequestBodyInCheck.maxRequestBytes"),
            "must be greater than 0 (Envoy's `with_request_body` rejects 0)".into(),
        );
    }
}

/// A provider's required `service` and `port`.
fn service_port(err: &mut impl FnMut(String, String), at: &str, service: &str, port: u32) {
    if service.is_empty() {
        err(format!("{at}.service"), "service is required".into());
    }
    if !(1..=65535).contains(&port) {
        err(
            format!("{at}.port"),
            format!("port {port} is out of range 1..=65535"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let m = MeshConfig::parse(
            r#"
enableTracing: true
defaultConfig: {tracing: {sampling: 100}}
accessLogFile: /dev/stdout
accessLogEncoding: JSON
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
trustDomain: cluster.local
rootNamespace: istio-system
extensionProviders:
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411, maxTagLength: 256}
- name: otel
  opentelemetry: {service: otel.example.com, port: 4317, grpc: {timeout: 1s}}
- name: file
  envoyFileAccessLog: {path: /dev/stdout, logFormat: {labels: {code: "%RESPONSE_CODE%"}}}
- name: authz
  envoyExtAuthzGrpc: {service: authz.foo.svc.cluster.local, port: 9000, timeout: 1s, failOpen: false}
defaultProviders: {tracing: [zipkin], accessLogging: [envoy, file]}
"#,
        )
        .expect("valid");
        assert_eq!(m.outbound_mode(), OutboundTrafficMode::RegistryOnly);
        assert_eq!(m.default_sampling(), 100.0);
        assert_eq!(m.access_log_encoding, Some(AccessLogEncoding::Json));
        assert!(
            m.provider("otel")
                .is_some_and(|p| p.opentelemetry.is_some())
        );
        assert_eq!(MeshConfig::parse(""), Ok(MeshConfig::default()));
    }

    #[test]
    fn path_normalization_defaults_to_base() {
        let parse = |y: &str| MeshConfig::parse(y).expect("valid").path_normalization();
        assert_eq!(parse(""), PathNormalizationType::Base);
        assert_eq!(
            parse("pathNormalization: {normalization: DEFAULT}"),
            PathNormalizationType::Base
        );
        assert_eq!(
            parse("pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}"),
            PathNormalizationType::DecodeAndMergeSlashes
        );
        assert!(MeshConfig::parse("pathNormalization: {normalization: FULL}").is_err());
    }

    #[test]
    fn unknown_fields_name_their_path() {
        let e = MeshConfig::parse(
            "extensionProviders: [{name: z, zipkin: {service: a, port: 1, bogus: 1}}]",
        )
        .expect_err("unknown field");
        assert_eq!(e[0].path, "extensionProviders[0].zipkin.bogus");
        assert!(e[0].reason.contains("unknown field `bogus`"), "{e:?}");
        let e = MeshConfig::parse("defaultConfig: {discoveryAddress: x}").expect_err("unknown");
        assert_eq!(e[0].path, "defaultConfig.discoveryAddress");
    }

    #[test]
    fn semantic_errors() {
        let e = MeshConfig::parse(
            r#"
rootNamespace: other
defaultConfig: {tracing: {sampling: 150}}
extensionProviders:
- {name: a, zipkin: {service: x, port: 0}}
- {name: a, opentelemetry: {service: y, port: 4317, http: {path: v1/traces, headers: [{name: "bad name", value: x}]}}}
- {name: b}
defaultProviders: {tracing: [nope]}
"#,
        )
        .expect_err("invalid");
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "defaultConfig.tracing.sampling",
                "rootNamespace",
                "extensionProviders[0].zipkin.port",
                "extensionProviders[1].name",
                "extensionProviders[1].opentelemetry.http.path",
                "extensionProviders[1].opentelemetry.http.headers[0]",
                "extensionProviders[2]",
                "defaultProviders.tracing[0]",
            ]
        );
        assert!(e[7].reason.contains("no extension provider named \"nope\""));
    }

    #[test]
    fn ext_authz_providers() {
        let m = MeshConfig::parse(
            r#"
extensionProviders:
- name: http
  envoyExtAuthzHttp:
    service: authz.example.test
    port: 8000
    pathPrefix: /check
    includeRequestHeadersInCheck: [x-ext-authz, "x-prefix-*"]
    headersToUpstreamOnAllow: [x-ext-authz-check-result]
    headersToDownstreamOnDeny: [x-ext-authz-check-result]
    includeRequestBodyInCheck: {maxRequestBytes: 1024, allowPartialMessage: true}
- name: grpc
  envoyExtAuthzGrpc: {service: authz.example.test, port: 9000, statusOnError: "503"}
"#,
        )
        .expect("valid");
        let http = m
            .provider("http")
            .and_then(|p| p.envoy_ext_authz_http.as_ref());
        assert_eq!(http.and_then(|h| h.path_prefix.as_deref()), Some("/check"));
        let e = MeshConfig::parse(
            r#"
extensionProviders:
- name: http
  envoyExtAuthzHttp: {service: a, port: 1, pathPrefix: check, statusOnError: nope}
- name: grpc
  envoyExtAuthzGrpc: {service: a, port: 1, includeRequestBodyInCheck: {packAsBytes: true}}
- name: grpc-zero
  envoyExtAuthzGrpc: {service: a, port: 1, includeRequestBodyInCheck: {maxRequestBytes: 0}}
"#,
        )
        .expect_err("invalid");
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "extensionProviders[0].envoyExtAuthzHttp.statusOnError",
                "extensionProviders[0].envoyExtAuthzHttp.pathPrefix",
                "extensionProviders[1].envoyExtAuthzGrpc.includeRequestBodyInCheck.maxRequestBytes",
                "extensionProviders[2].envoyExtAuthzGrpc.includeRequestBodyInCheck.maxRequestBytes",
            ]
        );
    }
}
