//! Telemetry (access logs and tracing) on the HTTP connection managers of a proxy's listeners: the
//! `Telemetry` resources that apply to the proxy, merged as Istio does, plus the mesh config.
//!
//! Which Telemetry resources apply to a proxy: the root namespace's (`istio-system`) without a
//! selector, then its own namespace's without a selector, then its own namespace's whose
//! selector matches its labels; later (more specific) ones override earlier ones field by field:
//! the last non-empty `providers`, the last `filter`, the last `disabled`. Entries whose
//! `match.mode` excludes the listener's side (outbound = `CLIENT`, inbound = `SERVER`) are
//! skipped. When no Telemetry configures access logging for a side, the mesh config decides:
//! `accessLogFile` (Istio's legacy setting) plus `defaultProviders.accessLogging`.
//!
//! Tracing merges the same way (`providers`, `randomSamplingPercentage`,
//! `disableSpanReporting`; `customTags` key by key); without Telemetry tracing the mesh
//! config's `defaultProviders.tracing` and `defaultConfig.tracing.sampling` apply when
//! `enableTracing` is on. The first provider is used (as Istio); only Zipkin is emitted, as
//! istiod shapes it: `envoy.tracers.zipkin` to the provider's outbound cluster, 128-bit trace
//! ids, no shared span context, `spawn_upstream_span`, and Istio's `istio.*` literal tags.

use envoy_types::pb::envoy::config::accesslog::v3::{
    AccessLog, AccessLogFilter, ComparisonFilter, StatusCodeFilter, access_log, access_log_filter,
    comparison_filter,
};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, RuntimeUInt32, SubstitutionFormatString, data_source, substitution_format_string,
};
use envoy_types::pb::envoy::config::core::v3::{
    GrpcService, HeaderValue as ProtoHeader, HeaderValueOption, HttpService, HttpUri,
    grpc_service, http_uri,
};
use envoy_types::pb::envoy::config::trace::v3::{
    OpenTelemetryConfig, ZipkinConfig, tracing as trace_proto, zipkin_config,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::r#type::tracing::v3::{CustomTag as ProtoTag, custom_tag};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use trellis_api::MeshConfig;
use trellis_api::mesh_config::{
    AccessLogEncoding, ExtensionProvider, HeaderValue, DEFAULT_JSON_FORMAT, DEFAULT_TEXT_FORMAT, ENVOY_PROVIDER,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use trellis_api::telemetry::{
    CodeComparison, CodeFilter, IstioMetric, TagOperation, Telemetry, WorkloadMode,
};
use trellis_xds::{stats as stats_names, telemetry as names, to_any};

use super::proto::duration;
use crate::model::{MeshModel, Named, ProxyView, ROOT_NAMESPACE};

/// How long one OTLP/HTTP export may take when the provider does not say (Envoy requires
/// `http_uri.timeout`).
const OTLP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Which side of the traffic a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The outbound listener (Istio's `CLIENT`).
    Client,
    /// Inbound listeners (Istio's `SERVER`).
    Server,
}

impl Side {
    fn matches(self, mode: Option<WorkloadMode>) -> bool {
        match mode.unwrap_or(WorkloadMode::ClientAndServer) {
            WorkloadMode::ClientAndServer => true,
            WorkloadMode::Client => self == Side::Client,
            WorkloadMode::Server => self == Side::Server,
        }
    }
}

/// The Telemetry resources that apply to `proxy`, least specific first.
pub fn applicable<'m>(model: &'m MeshModel, proxy: &ProxyView<'_>) -> Vec<&'m Telemetry> {
    let unselected = |t: &&Named<Telemetry>| {
        t.spec.selector.is_none() && t.spec.target_ref.is_none() && t.spec.target_refs.is_empty()
    };
    let mut out = Vec::new();
    // Istio keeps the oldest of several at one level; names sort as our stand-in for age.
    if let Some(root) = model
        .telemetries
        .iter()
        .filter(|t| t.namespace == ROOT_NAMESPACE)
        .find(unselected)
    {
        out.push(&root.spec);
    }
    if proxy.namespace() != ROOT_NAMESPACE
        && let Some(ns) = model
            .telemetries
            .iter()
            .filter(|t| t.namespace == proxy.namespace())
            .find(unselected)
    {
        out.push(&ns.spec);
    }
    if let Some(workload) = model.telemetries.iter().find(|t| {
        t.namespace == proxy.namespace()
            && t.spec
                .selector
                .as_ref()
                .is_some_and(|s| proxy.has_labels(&s.match_labels))
    }) {
        out.push(&workload.spec);
    }
    out
}

/// The access loggers for one side of a proxy.
pub fn access_logs(mesh: &MeshConfig, telemetries: &[&Telemetry], side: Side) -> Vec<AccessLog> {
    let mut configured = false;
    let mut providers: Option<Vec<String>> = None;
    let mut filter: Option<CodeFilter> = None;
    let mut disabled = false;
    for entry in telemetries
        .iter()
        .flat_map(|t| t.access_logging.iter())
        .filter(|l| side.matches(l.match_.as_ref().and_then(|m| m.mode)))
    {
        configured = true;
        if !entry.providers.is_empty() {
            providers = Some(entry.providers.iter().map(|p| p.name.clone()).collect());
        }
        if let Some(expression) = entry.filter.as_ref().and_then(|f| f.expression.as_deref()) {
            // Validated when loaded; an unparsable one cannot get here.
            filter = CodeFilter::parse(expression).ok();
        }
        if let Some(d) = entry.disabled {
            disabled = d;
        }
    }
    let defaults = || {
        mesh.default_providers
            .as_ref()
            .map(|d| d.access_logging.clone())
            .unwrap_or_default()
    };
    let mut logs = Vec::new();
    if !configured {
        if let Some(path) = mesh.access_log_file.as_deref().filter(|p| !p.is_empty()) {
            logs.push(file_log(path, mesh_format(mesh), None));
        }
    } else if disabled {
        return logs;
    }
    let names = if configured {
        providers.unwrap_or_else(defaults)
    } else {
        defaults()
    };
    for name in names {
        if name == ENVOY_PROVIDER {
            let path = mesh
                .access_log_file
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("/dev/stdout");
            logs.push(file_log(path, mesh_format(mesh), filter));
        } else if let Some(f) = mesh
            .provider(&name)
            .and_then(|p| p.envoy_file_access_log.as_ref())
        {
            let format = match f.log_format.as_ref() {
                Some(l) => match (&l.text, &l.labels) {
                    (Some(text), _) => text_format(text),
                    (None, Some(labels)) => {
                        json_format(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    }
                    (None, None) => text_format(DEFAULT_TEXT_FORMAT),
                },
                None => text_format(DEFAULT_TEXT_FORMAT),
            };
            logs.push(file_log(&f.path, format, filter));
        }
    }
    logs
}

/// The format of the mesh's own logger: `accessLogFormat` (text, or for JSON a JSON object of
/// operators) in `accessLogEncoding`, Istio's defaults when empty.
fn mesh_format(mesh: &MeshConfig) -> SubstitutionFormatString {
    let custom = mesh.access_log_format.as_deref().filter(|f| !f.is_empty());
    match mesh.access_log_encoding.unwrap_or(AccessLogEncoding::Text) {
        AccessLogEncoding::Text => text_format(custom.unwrap_or(DEFAULT_TEXT_FORMAT)),
        AccessLogEncoding::Json => {
            let parsed: Option<std::collections::BTreeMap<String, String>> =
                custom.and_then(|c| serde_json::from_str(c).ok());
            match parsed {
                Some(fields) => json_format(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                None => json_format(DEFAULT_JSON_FORMAT.iter().copied()),
            }
        }
    }
}

/// A text format; Istio appends the newline Envoy needs when it is missing.
fn text_format(text: &str) -> SubstitutionFormatString {
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    SubstitutionFormatString {
        format: Some(substitution_format_string::Format::TextFormatSource(
            DataSource {
                specifier: Some(data_source::Specifier::InlineString(text)),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn json_format<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> SubstitutionFormatString {
    let fields = fields
        .map(|(k, v)| {
            (
                k.to_string(),
                Value {
                    kind: Some(value::Kind::StringValue(v.to_string())),
                },
            )
        })
        .collect();
    SubstitutionFormatString {
        format: Some(substitution_format_string::Format::JsonFormat(Struct {
            fields,
        })),
        ..Default::default()
    }
}

/// The runtime key of the status filter (Envoy requires one; Trellis has no runtime).
const STATUS_FILTER_RUNTIME_KEY: &str = "trellis.access_log.status_code";

fn file_log(path: &str, format: SubstitutionFormatString, filter: Option<CodeFilter>) -> AccessLog {
    let config = FileAccessLog {
        path: path.to_string(),
        access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(format)),
    };
    AccessLog {
        name: names::FILE_ACCESS_LOG.to_string(),
        filter: filter.map(|f| AccessLogFilter {
            filter_specifier: Some(access_log_filter::FilterSpecifier::StatusCodeFilter(
                StatusCodeFilter {
                    comparison: Some(ComparisonFilter {
                        op: match f.op {
                            CodeComparison::Eq => comparison_filter::Op::Eq,
                            CodeComparison::Ge => comparison_filter::Op::Ge,
                            CodeComparison::Le => comparison_filter::Op::Le,
                        } as i32,
                        value: Some(RuntimeUInt32 {
                            default_value: f.value,
                            runtime_key: STATUS_FILTER_RUNTIME_KEY.to_string(),
                        }),
                    }),
                },
            )),
        }),
        config_type: Some(access_log::ConfigType::TypedConfig(to_any(
            names::FILE_ACCESS_LOG_TYPE,
            &config,
        ))),
    }
}

/// The HCM tracing settings for one side of a proxy, if it is traced.
pub fn tracing(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    telemetries: &[&Telemetry],
    side: Side,
) -> Option<Tracing> {
    let mesh = &model.mesh;
    let mut configured = false;
    let mut providers: Option<Vec<String>> = None;
    let mut sampling: Option<f64> = None;
    let mut disabled = false;
    let mut custom: std::collections::BTreeMap<String, ProtoTag> = Default::default();
    for entry in telemetries
        .iter()
        .flat_map(|t| t.tracing.iter())
        .filter(|t| side.matches(t.match_.as_ref().and_then(|m| m.mode)))
    {
        configured = true;
        if !entry.providers.is_empty() {
            providers = Some(entry.providers.iter().map(|p| p.name.clone()).collect());
        }
        if let Some(p) = entry.random_sampling_percentage {
            sampling = Some(p);
        }
        if let Some(d) = entry.disable_span_reporting {
            disabled = d;
        }
        for (tag, value) in &entry.custom_tags {
            let r#type = if let Some(l) = &value.literal {
                custom_tag::Type::Literal(custom_tag::Literal {
                    value: l.value.clone(),
                })
            } else if let Some(e) = &value.environment {
                custom_tag::Type::Environment(custom_tag::Environment {
                    name: e.name.clone(),
                    default_value: e.default_value.clone().unwrap_or_default(),
                })
            } else if let Some(h) = &value.header {
                custom_tag::Type::RequestHeader(custom_tag::Header {
                    name: h.name.clone(),
                    default_value: h.default_value.clone().unwrap_or_default(),
                })
            } else {
                continue; // formatter: not supported (validation rejects it)
            };
            custom.insert(
                tag.clone(),
                ProtoTag {
                    tag: tag.clone(),
                    r#type: Some(r#type),
                },
            );
        }
    }
    if disabled || (!configured && !mesh.tracing_enabled()) {
        return None;
    }
    let names = providers.unwrap_or_else(|| {
        mesh.default_providers
            .as_ref()
            .map(|d| d.tracing.clone())
            .unwrap_or_default()
    });
    let (provider, max_tag_length) =
        provider(model, proxy, names.first().and_then(|n| mesh.provider(n))?)?;
    let literal = |tag: &str, value: String| ProtoTag {
        tag: tag.to_string(),
        r#type: Some(custom_tag::Type::Literal(custom_tag::Literal { value })),
    };
    let labels = &proxy.labels;
    let label = |keys: &[&str], default: &str| {
        keys.iter()
            .find_map(|k| labels.get(*k).cloned())
            .unwrap_or_else(|| default.to_string())
    };
    let mut tags = vec![
        literal(
            "istio.canonical_revision",
            label(
                &["service.istio.io/canonical-revision", "version"],
                "latest",
            ),
        ),
        literal(
            "istio.canonical_service",
            label(&["service.istio.io/canonical-name", "app"], "unknown"),
        ),
        literal("istio.mesh_id", model.trust_domain.clone()),
        literal("istio.namespace", proxy.namespace().to_string()),
        literal("istio.cluster_id", "Kubernetes".to_string()),
    ];
    tags.retain(|t| !custom.contains_key(&t.tag));
    tags.extend(custom.into_values());
    Some(Tracing {
        client_sampling: Some(Percent { value: 100.0 }),
        random_sampling: Some(Percent {
            value: sampling.unwrap_or_else(|| mesh.default_sampling()),
        }),
        overall_sampling: Some(Percent { value: 100.0 }),
        max_path_tag_length: Some(UInt32Value {
            value: max_tag_length.unwrap_or(256),
        }),
        custom_tags: tags,
        provider: Some(provider),
        spawn_upstream_span: Some(BoolValue { value: true }),
        ..Default::default()
    })
}

/// The tracer of a tracing provider (Zipkin or OpenTelemetry) and its longest tag, as istiod
/// configures them; `None` for other provider kinds or when the collector is not a known
/// service (Envoy would reject a tracer whose cluster does not exist).
fn provider(
    model: &MeshModel,
    proxy: &ProxyView<'_>,
    provider: &ExtensionProvider,
) -> Option<(trace_proto::Http, Option<u32>)> {
    let typed = |name: &str, config: Any| trace_proto::Http {
        name: name.to_string(),
        config_type: Some(trace_proto::http::ConfigType::TypedConfig(config)),
    };
    if let Some(zipkin) = &provider.zipkin {
        model.registry.service(&zipkin.service)?;
        let config = ZipkinConfig {
            collector_cluster: super::outbound_cluster_name(zipkin.port, None, &zipkin.service),
            collector_endpoint: names::ZIPKIN_SPANS_PATH.to_string(),
            trace_id_128bit: true,
            shared_span_context: Some(BoolValue { value: false }),
            collector_endpoint_version: zipkin_config::CollectorEndpointVersion::HttpJson as i32,
            collector_hostname: zipkin.service.clone(),
            ..Default::default()
        };
        let http = typed(names::ZIPKIN, to_any(names::ZIPKIN_TYPE, &config));
        return Some((http, zipkin.max_tag_length));
    }
    let otel = provider.opentelemetry.as_ref()?;
    model.registry.service(&otel.service)?;
    let cluster = super::outbound_cluster_name(otel.port, None, &otel.service);
    let header = |h: &HeaderValue| ProtoHeader {
        key: h.name.clone(),
        value: h.value.clone(),
        ..Default::default()
    };
    let mut config = OpenTelemetryConfig {
        // The node's service cluster, as Envoy's Zipkin tracer names the local endpoint.
        service_name: format!("{}.{}", proxy.node.workload, proxy.namespace()),
        ..Default::default()
    };
    match &otel.http {
        Some(http) => {
            let path = http.path.as_deref().unwrap_or(names::OTLP_TRACES_PATH);
            config.http_service = Some(HttpService {
                http_uri: Some(HttpUri {
                    uri: format!(
                        "http://{}:{}/{}",
                        otel.service,
                        otel.port,
                        path.trim_start_matches('/')
                    ),
                    timeout: Some(duration(http.timeout.map_or(OTLP_TIMEOUT, |t| t.as_std()))),
                    http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster)),
                }),
                request_headers_to_add: http
                    .headers
                    .iter()
                    .map(|h| HeaderValueOption {
                        header: Some(header(h)),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            });
        }
        None => {
            let grpc = otel.grpc.clone().unwrap_or_default();
            config.grpc_service = Some(GrpcService {
                timeout: grpc.timeout.map(|t| duration(t.as_std())),
                initial_metadata: grpc.initial_metadata.iter().map(header).collect(),
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: cluster,
                        authority: otel.service.clone(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            });
        }
    }
    let http = typed(
        names::OPENTELEMETRY,
        to_any(names::OPENTELEMETRY_TYPE, &config),
    );
    Some((http, otel.max_tag_length))
}

/// The name Istio's prometheus provider is known by without an `extensionProviders` entry.
const PROMETHEUS_PROVIDER: &str = "prometheus";

/// What Telemetry `metrics` ask of one of Istio's standard metrics on one side.
#[derive(Debug, Clone, Default)]
struct MetricState {
    disabled: bool,
    /// Label → `Some(value expression)` (UPSERT) or `None` (REMOVE).
    tags: std::collections::BTreeMap<String, Option<String>>,
}

/// The `istio.stats` HTTP filter for one side of a proxy, when Telemetry `metrics` (or a mesh
/// default without a Prometheus provider) change Istio's standard metrics; `None` keeps them
/// all, with Istio's labels.
///
/// Providers: the last non-empty `metrics[].providers`, else `defaultProviders.metrics`, else
/// Istio's default `prometheus`; without a Prometheus provider every metric is dropped.
/// `overrides` whose `match.mode` covers the side apply in order (root namespace, namespace,
/// workload; in each, in list order) to the metrics they select (`ALL_METRICS` or no `match`:
/// all; `metric` / `customMetric`: one): the last `disabled` wins, `tagOverrides` merge label
/// by label. As istiod, the result is expanded per metric: `{name, drop: true}` or `{name,
/// dimensions, tags_to_remove}` in Istio's metric order.
pub fn stats_filter(
    mesh: &MeshConfig,
    telemetries: &[&Telemetry],
    side: Side,
) -> Option<HttpFilter> {
    let mut configured = false;
    let mut providers: Option<Vec<String>> = None;
    let mut state: Vec<MetricState> = vec![MetricState::default(); stats_names::METRICS.len()];
    for entry in telemetries.iter().flat_map(|t| t.metrics.iter()) {
        configured = true;
        if !entry.providers.is_empty() {
            providers = Some(entry.providers.iter().map(|p| p.name.clone()).collect());
        }
        for o in &entry.overrides {
            let selector = o.match_.as_ref();
            if !side.matches(selector.and_then(|m| m.mode)) {
                continue;
            }
            let selected = selected_metric(selector);
            for (i, metric) in state.iter_mut().enumerate() {
                if selected.is_some_and(|name| name != stats_names::METRICS[i].1) {
                    continue;
                }
                if let Some(d) = o.disabled {
                    metric.disabled = d;
                }
                for (tag, t) in &o.tag_overrides {
                    let value = match t.operation.unwrap_or(TagOperation::Upsert) {
                        TagOperation::Upsert => t.value.clone(),
                        TagOperation::Remove => None,
                    };
                    metric.tags.insert(tag.clone(), value);
                }
            }
        }
    }
    let providers = providers.unwrap_or_else(|| {
        mesh.default_providers
            .as_ref()
            .map(|d| d.metrics.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| vec![PROMETHEUS_PROVIDER.to_string()])
    });
    let prometheus = providers.iter().any(|n| {
        n == PROMETHEUS_PROVIDER || mesh.provider(n).is_some_and(|p| p.prometheus.is_some())
    });
    if !configured && prometheus {
        return None;
    }
    let metrics: Vec<Value> = if prometheus {
        state
            .iter()
            .zip(stats_names::METRICS)
            .filter(|(m, _)| m.disabled || !m.tags.is_empty())
            .map(|(m, (_, name))| metric_config(name, m))
            .collect()
    } else {
        vec![struct_value([("drop", bool_value(true))])]
    };
    if metrics.is_empty() {
        return None;
    }
    let config = stats_names::TypedStruct {
        type_url: stats_names::PLUGIN_CONFIG_TYPE.to_string(),
        value: Some(Struct {
            fields: [(
                "metrics".to_string(),
                Value {
                    kind: Some(value::Kind::ListValue(
                        envoy_types::pb::google::protobuf::ListValue { values: metrics },
                    )),
                },
            )]
            .into_iter()
            .collect(),
        }),
    };
    Some(HttpFilter {
        name: stats_names::STATS_FILTER.to_string(),
        is_optional: true,
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(
            stats_names::TYPED_STRUCT_TYPE,
            &config,
        ))),
        ..Default::default()
    })
}

/// The stats name of the one metric a selector picks (`None`: all of them). Validation has
/// refused custom metrics that are not standard ones.
fn selected_metric(
    selector: Option<&trellis_api::telemetry::MetricSelector>,
) -> Option<&'static str> {
    let selector = selector?;
    if let Some(custom) = &selector.custom_metric {
        return stats_names::metric_name(custom);
    }
    match selector.metric? {
        IstioMetric::AllMetrics => None,
        m => stats_names::metric_name(m.as_str()),
    }
}

/// One `MetricConfig` of Istio's stats config.
fn metric_config(name: &str, m: &MetricState) -> Value {
    if m.disabled {
        return struct_value([("name", string_value(name)), ("drop", bool_value(true))]);
    }
    let dimensions = Struct {
        fields: m
            .tags
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), string_value(v.as_deref()?))))
            .collect(),
    };
    let removed: Vec<Value> = m
        .tags
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| string_value(k))
        .collect();
    let mut fields = vec![("name", string_value(name))];
    if !dimensions.fields.is_empty() {
        fields.push((
            "dimensions",
            Value {
                kind: Some(value::Kind::StructValue(dimensions)),
            },
        ));
    }
    if !removed.is_empty() {
        fields.push((
            "tags_to_remove",
            Value {
                kind: Some(value::Kind::ListValue(
                    envoy_types::pb::google::protobuf::ListValue { values: removed },
                )),
            },
        ));
    }
    struct_value(fields)
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.to_string())),
    }
}

fn bool_value(b: bool) -> Value {
    Value {
        kind: Some(value::Kind::BoolValue(b)),
    }
}

fn struct_value<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value {
        kind: Some(value::Kind::StructValue(Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })),
    }
}

/// What the HTTP connection managers of one side of a proxy log, trace and count.
#[derive(Debug, Clone, Default)]
pub struct HcmTelemetry {
    /// The HCM's `access_log`.
    pub access_log: Vec<AccessLog>,
    /// The HCM's `tracing`.
    pub tracing: Option<Tracing>,
    /// The `istio.stats` HTTP filter, when the standard metrics are changed.
    pub stats: Option<HttpFilter>,
}

impl HcmTelemetry {
    /// The settings of `side` of `proxy`, from the Telemetry resources that apply to it
    /// ([`applicable`]) and the mesh config.
    pub fn of(
        model: &MeshModel,
        proxy: &ProxyView<'_>,
        telemetries: &[&Telemetry],
        side: Side,
    ) -> Self {
        HcmTelemetry {
            access_log: access_logs(&model.mesh, telemetries, side),
            tracing: tracing(model, proxy, telemetries, side),
            stats: stats_filter(&model.mesh, telemetries, side),
        }
    }

    /// `filters` (ending with the router) with the stats filter, when there is one, before
    /// the router, where istiod puts it.
    pub fn http_filters(&self, mut filters: Vec<HttpFilter>) -> Vec<HttpFilter> {
        if let Some(stats) = &self.stats {
            let at = filters.len().saturating_sub(1);
            filters.insert(at, stats.clone());
        }
        filters
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn telemetry(json: &str) -> Telemetry {
        serde_json::from_str(json).expect("telemetry")
    }

    fn paths(logs: &[AccessLog]) -> Vec<(String, Option<i32>)> {
        logs.iter()
            .map(|l| {
                let Some(access_log::ConfigType::TypedConfig(any)) = &l.config_type else {
                    panic!("typed config");
                };
                let f = FileAccessLog::decode(any.value.as_slice()).expect("file log");
                let op = l.filter.as_ref().and_then(|f| match &f.filter_specifier {
                    Some(access_log_filter::FilterSpecifier::StatusCodeFilter(s)) => {
                        s.comparison.as_ref().map(|c| c.op)
                    }
                    _ => None,
                });
                (f.path, op)
            })
            .collect()
    }

    #[test]
    fn mesh_config_alone() {
        let mesh = MeshConfig::parse("accessLogFile: /tmp/a.log").expect("mesh");
        assert_eq!(
            paths(&access_logs(&mesh, &[], Side::Client)),
            [("/tmp/a.log".to_string(), None)]
        );
        assert!(access_logs(&MeshConfig::default(), &[], Side::Server).is_empty());
    }

    #[test]
    fn more_specific_telemetry_wins() {
        let mesh = MeshConfig::parse(
            "extensionProviders: [{name: f, envoyFileAccessLog: {path: /tmp/f.log}}]",
        )
        .expect("mesh");
        let root = telemetry(r#"{"accessLogging": [{"providers": [{"name": "envoy"}]}]}"#);
        let ns = telemetry(
            r#"{"accessLogging": [{"providers": [{"name": "f"}], "filter": {"expression": "response.code >= 500"}}]}"#,
        );
        let off = telemetry(r#"{"accessLogging": [{"disabled": true}]}"#);
        let server_only =
            telemetry(r#"{"accessLogging": [{"match": {"mode": "SERVER"}, "disabled": true}]}"#);
        assert_eq!(
            paths(&access_logs(&mesh, &[&root], Side::Client)),
            [("/dev/stdout".to_string(), None)]
        );
        assert_eq!(
            paths(&access_logs(&mesh, &[&root, &ns], Side::Client)),
            [(
                "/tmp/f.log".to_string(),
                Some(comparison_filter::Op::Ge as i32)
            )]
        );
        assert!(access_logs(&mesh, &[&root, &ns, &off], Side::Server).is_empty());
        assert_eq!(
            access_logs(&mesh, &[&root, &server_only], Side::Client).len(),
            1
        );
        assert!(access_logs(&mesh, &[&root, &server_only], Side::Server).is_empty());
    }

    /// The `metrics` list of the stats filter `telemetries` give `side`, as JSON.
    fn stats_json(
        mesh: &MeshConfig,
        telemetries: &[&Telemetry],
        side: Side,
    ) -> Option<serde_json::Value> {
        let filter = stats_filter(mesh, telemetries, side)?;
        assert_eq!(filter.name, "istio.stats");
        assert!(filter.is_optional, "a stock Envoy must be able to skip it");
        let Some(http_filter::ConfigType::TypedConfig(any)) = filter.config_type else {
            panic!("typed config");
        };
        assert_eq!(any.type_url, stats_names::TYPED_STRUCT_TYPE);
        let typed = stats_names::TypedStruct::decode(any.value.as_slice()).expect("typed struct");
        assert_eq!(typed.type_url, stats_names::PLUGIN_CONFIG_TYPE);
        fn json(v: &Value) -> serde_json::Value {
            match &v.kind {
                Some(value::Kind::StringValue(s)) => s.clone().into(),
                Some(value::Kind::BoolValue(b)) => (*b).into(),
                Some(value::Kind::ListValue(l)) => l.values.iter().map(json).collect(),
                Some(value::Kind::StructValue(s)) => s
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), json(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
                _ => serde_json::Value::Null,
            }
        }
        let value = typed.value.expect("value");
        Some(json(&value.fields["metrics"]))
    }

    #[test]
    fn metrics_overrides_merge_and_expand_per_metric() {
        let mesh = MeshConfig::default();
        assert!(
            stats_json(&mesh, &[], Side::Client).is_none(),
            "Istio's metrics as they are"
        );
        let root = telemetry(
            r#"{"metrics": [{"overrides": [{"tagOverrides": {"destination_version": {"operation": "REMOVE"}, "tenant": {"value": "request.headers['x-tenant']"}}}]}]}"#,
        );
        let workload = telemetry(
            r#"{"metrics": [{"overrides": [
                {"match": {"metric": "REQUEST_SIZE", "mode": "SERVER"}, "disabled": true},
                {"match": {"customMetric": "istio_response_bytes"}, "tagOverrides": {"tenant": {"operation": "REMOVE"}}}
            ]}]}"#,
        );
        let client = stats_json(&mesh, &[&root, &workload], Side::Client).expect("filter");
        let all_tags = serde_json::json!({"tenant": "request.headers['x-tenant']"});
        assert_eq!(
            client.as_array().map(Vec::len),
            Some(10),
            "every metric, expanded"
        );
        assert_eq!(client[0]["name"], "requests_total");
        assert_eq!(client[0]["dimensions"], all_tags);
        assert_eq!(
            client[0]["tags_to_remove"],
            serde_json::json!(["destination_version"])
        );
        assert_eq!(client[2]["name"], "request_bytes");
        assert!(client[2].get("drop").is_none(), "SERVER only");
        assert_eq!(
            client[3]["tags_to_remove"],
            serde_json::json!(["destination_version", "tenant"])
        );
        assert!(client[3].get("dimensions").is_none());
        let server = stats_json(&mesh, &[&root, &workload], Side::Server).expect("filter");
        assert_eq!(
            server[2],
            serde_json::json!({"name": "request_bytes", "drop": true})
        );
    }

    #[test]
    fn metrics_without_a_prometheus_provider_are_dropped() {
        let mesh = MeshConfig::parse(
            "extensionProviders: [{name: prom, prometheus: {}}, {name: z, zipkin: {service: z.default.svc.cluster.local, port: 9411}}]",
        )
        .expect("mesh");
        let named = telemetry(r#"{"metrics": [{"providers": [{"name": "prom"}]}]}"#);
        assert!(stats_json(&mesh, &[&named], Side::Client).is_none());
        let other = telemetry(r#"{"metrics": [{"providers": [{"name": "z"}]}]}"#);
        assert_eq!(
            stats_json(&mesh, &[&other], Side::Server),
            Some(serde_json::json!([{"drop": true}]))
        );
        let off = telemetry(r#"{"metrics": [{"overrides": [{"disabled": true}]}]}"#);
        let on = telemetry(
            r#"{"metrics": [{"overrides": [{"match": {"metric": "ALL_METRICS"}, "disabled": false}]}]}"#,
        );
        assert!(
            stats_json(&mesh, &[&off, &on], Side::Client).is_none(),
            "re-enabled"
        );
    }

    /// The OpenTelemetry tracer of the sidecar's outbound HCM for `provider` (YAML of one
    /// `opentelemetry` provider), with a collector ServiceEntry in the registry.
    fn otel_tracer(provider: &str) -> OpenTelemetryConfig {
        use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
        use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
        use trellis_xds::type_url;

        use crate::translate::test_support::{self, decode, decode_any};
        let model = test_support::model(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: otel, namespace: istio-system}
spec:
  hosts: [otel.istio-system.svc.cluster.local]
  ports: [{number: 4317, name: grpc, protocol: GRPC}]
  resolution: STATIC
  location: MESH_EXTERNAL
  endpoints: [{address: 127.0.0.1}]
"#,
        )
        .with_mesh_config(std::sync::Arc::new(
            MeshConfig::parse(&format!(
                "enableTracing: true\nextensionProviders: [{{name: otel, opentelemetry: {provider}}}]\ndefaultProviders: {{tracing: [otel]}}"
            ))
            .expect("mesh config"),
        ));
        let node = test_support::sidecar("127.0.9.2", "default");
        let out = crate::translate::generate(&model, &node);
        let listener: Listener = decode(&out, type_url::LISTENER, "virtualOutbound");
        let Some(filter::ConfigType::TypedConfig(any)) =
            &listener.filter_chains[0].filters[0].config_type
        else {
            panic!("no HCM");
        };
        let hcm: HttpConnectionManager = decode_any(any);
        let provider = hcm.tracing.and_then(|t| t.provider).expect("a tracer");
        assert_eq!(provider.name, names::OPENTELEMETRY);
        let Some(trace_proto::http::ConfigType::TypedConfig(any)) = provider.config_type else {
            panic!("typed config");
        };
        assert_eq!(any.type_url, names::OPENTELEMETRY_TYPE);
        decode_any(&any)
    }

    #[test]
    fn opentelemetry_over_grpc_is_an_envoy_grpc_service() {
        let config = otel_tracer(
            "{service: otel.istio-system.svc.cluster.local, port: 4317, grpc: {timeout: 3s, initialMetadata: [{name: x-tenant, value: mesh}]}}",
        );
        assert_eq!(config.service_name, "w.default");
        assert!(config.http_service.is_none());
        let grpc = config.grpc_service.expect("grpc_service");
        assert_eq!(grpc.timeout.map(|d| d.seconds), Some(3));
        assert_eq!(grpc.initial_metadata[0].key, "x-tenant");
        let Some(grpc_service::TargetSpecifier::EnvoyGrpc(e)) = grpc.target_specifier else {
            panic!("envoy_grpc");
        };
        assert_eq!(
            e.cluster_name,
            "outbound|4317||otel.istio-system.svc.cluster.local"
        );
        assert_eq!(e.authority, "otel.istio-system.svc.cluster.local");
    }

    #[test]
    fn opentelemetry_over_http_posts_to_the_path_through_the_cluster() {
        let config = otel_tracer(
            "{service: otel.istio-system.svc.cluster.local, port: 4317, http: {path: /custom/traces, headers: [{name: x-tenant, value: mesh}]}}",
        );
        assert!(config.grpc_service.is_none());
        let http = config.http_service.expect("http_service");
        let uri = http.http_uri.expect("http_uri");
        assert_eq!(
            uri.uri,
            "http://otel.istio-system.svc.cluster.local:4317/custom/traces"
        );
        assert_eq!(
            uri.timeout.map(|d| d.seconds),
            Some(5),
            "Envoy needs a timeout"
        );
        assert_eq!(
            uri.http_upstream_type,
            Some(http_uri::HttpUpstreamType::Cluster(
                "outbound|4317||otel.istio-system.svc.cluster.local".into()
            ))
        );
        let header = http.request_headers_to_add[0]
            .header
            .as_ref()
            .expect("header");
        assert_eq!(
            (header.key.as_str(), header.value.as_str()),
            ("x-tenant", "mesh")
        );
    }
}
