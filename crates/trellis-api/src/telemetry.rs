//! `Telemetry`: metrics, access logging and tracing configuration (telemetry.istio.io).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{Duration, LabelSelector, PolicyTargetReference, istio_enum};

/// The spec of a Telemetry resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Telemetry {
    /// Workloads this applies to.
    pub selector: Option<LabelSelector>,
    /// Gateway API target.
    pub target_ref: Option<PolicyTargetReference>,
    /// Gateway API targets.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Tracing configuration.
    #[serde(default)]
    pub tracing: Vec<Tracing>,
    /// Metrics configuration.
    #[serde(default)]
    pub metrics: Vec<Metrics>,
    /// Access logging configuration.
    #[serde(default)]
    pub access_logging: Vec<AccessLogging>,
}

istio_enum! {
    /// Which side of the traffic a telemetry setting applies to.
    WorkloadMode { ClientAndServer = "CLIENT_AND_SERVER", Client = "CLIENT", Server = "SERVER" }
}

/// A provider reference by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderRef {
    /// Provider name from mesh config (required).
    #[serde(default)]
    pub name: String,
}

/// Traffic side selector.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingSelector {
    /// Mode.
    pub mode: Option<WorkloadMode>,
}

/// Tracing settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    /// Which side.
    #[serde(rename = "match")]
    pub match_: Option<TracingSelector>,
    /// Providers.
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    /// Sampling percentage, 0..=100.
    pub random_sampling_percentage: Option<f64>,
    /// Do not report spans.
    pub disable_span_reporting: Option<bool>,
    /// Custom span tags.
    #[serde(default)]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Use x-request-id for sampling.
    pub use_request_id_for_trace_sampling: Option<bool>,
    /// Add Istio tags.
    pub enable_istio_tags: Option<bool>,
    /// Do not propagate context.
    pub disable_context_propagation: Option<bool>,
}

/// A custom span tag: one of literal, environment, header or formatter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomTag {
    /// Literal value.
    pub literal: Option<Literal>,
    /// From an environment variable.
    pub environment: Option<Environment>,
    /// From a request header.
    pub header: Option<RequestHeader>,
    /// From a formatter expression.
    pub formatter: Option<Formatter>,
}

/// A literal tag value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Literal {
    /// The value (required).
    #[serde(default)]
    pub value: String,
}

/// A tag from an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Environment {
    /// Variable name (required).
    #[serde(default)]
    pub name: String,
    /// Default value.
    pub default_value: Option<String>,
}

/// A tag from a request header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestHeader {
    /// Header name (required).
    #[serde(default)]
    pub name: String,
    /// Default value.
    pub default_value: Option<String>,
}

/// A tag from a formatter expression.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Formatter {
    /// The expression (required).
    #[serde(default)]
    pub value: String,
}

/// Metrics settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// Providers.
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    /// Metric overrides.
    #[serde(default)]
    pub overrides: Vec<MetricsOverrides>,
    /// Reporting interval.
    pub reporting_interval: Option<Duration>,
}

istio_enum! {
    /// Istio's standard metrics.
    IstioMetric {
        AllMetrics = "ALL_METRICS",
        RequestCount = "REQUEST_COUNT",
        RequestDuration = "REQUEST_DURATION",
        RequestSize = "REQUEST_SIZE",
        ResponseSize = "RESPONSE_SIZE",
        TcpOpenedConnections = "TCP_OPENED_CONNECTIONS",
        TcpClosedConnections = "TCP_CLOSED_CONNECTIONS",
        TcpSentBytes = "TCP_SENT_BYTES",
        TcpReceivedBytes = "TCP_RECEIVED_BYTES",
        GrpcRequestMessages = "GRPC_REQUEST_MESSAGES",
        GrpcResponseMessages = "GRPC_RESPONSE_MESSAGES",
    }
}

/// Overrides for some metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsOverrides {
    /// Which metrics.
    #[serde(rename = "match")]
    pub match_: Option<MetricSelector>,
    /// Disable them.
    pub disabled: Option<bool>,
    /// Tag changes.
    #[serde(default)]
    pub tag_overrides: BTreeMap<String, TagOverride>,
}

/// A metric selector: one of metric or customMetric, plus mode.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSelector {
    /// A standard metric.
    pub metric: Option<IstioMetric>,
    /// A custom metric name.
    pub custom_metric: Option<String>,
    /// Which side.
    pub mode: Option<WorkloadMode>,
}

istio_enum! {
    /// Tag override operations.
    TagOperation { Upsert = "UPSERT", Remove = "REMOVE" }
}

/// A change to one metric tag.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagOverride {
    /// Operation.
    pub operation: Option<TagOperation>,
    /// Value expression (UPSERT).
    pub value: Option<String>,
}

/// Access logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogging {
    /// Which side.
    #[serde(rename = "match")]
    pub match_: Option<TracingSelector>,
    /// Providers.
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    /// Disable logging.
    pub disabled: Option<bool>,
    /// CEL filter.
    pub filter: Option<AccessLogFilter>,
}

/// A CEL filter for access logs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogFilter {
    /// CEL expression.
    pub expression: Option<String>,
}

/// How an access log filter compares the response code (Envoy's `ComparisonFilter.Op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeComparison {
    /// `==`.
    Eq,
    /// `>=` (and `>` with the value plus one).
    Ge,
    /// `<=` (and `<` with the value minus one).
    Le,
}

/// An access log filter on the response code: the part of CEL Trellis supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeFilter {
    /// The comparison.
    pub op: CodeComparison,
    /// The code it compares with.
    pub value: u32,
}

impl CodeFilter {
    /// Parses `response.code OP N` (`OP` one of `>=`, `>`, `<=`, `<`, `==`; `N` an integer
    /// 0..=999). Anything else is refused with the reason: Trellis does not evaluate CEL.
    pub fn parse(expression: &str) -> Result<CodeFilter, String> {
        let unsupported = || {
            format!(
                "unsupported filter expression {expression:?}: only `response.code OP N` (OP one of >=, >, <=, <, ==) is supported"
            )
        };
        let rest = expression
            .trim()
            .strip_prefix("response.code")
            .ok_or_else(unsupported)?
            .trim_start();
        let (op, number) = [">=", "<=", "==", ">", "<"]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|n| (*op, n.trim())))
            .ok_or_else(unsupported)?;
        let n: u32 = number
            .parse()
            .ok()
            .filter(|n| *n <= 999)
            .ok_or_else(unsupported)?;
        let (op, value) = match op {
            ">=" => (CodeComparison::Ge, n),
            "<=" => (CodeComparison::Le, n),
            "==" => (CodeComparison::Eq, n),
            ">" => (CodeComparison::Ge, n + 1),
            _ => (
                CodeComparison::Le,
                n.checked_sub(1).ok_or_else(unsupported)?,
            ),
        };
        Ok(CodeFilter { op, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_filters() {
        let f = |e: &str| CodeFilter::parse(e).map(|c| (c.op, c.value));
        assert_eq!(f("response.code >= 400"), Ok((CodeComparison::Ge, 400)));
        assert_eq!(f(" response.code>399 "), Ok((CodeComparison::Ge, 400)));
        assert_eq!(f("response.code < 200"), Ok((CodeComparison::Le, 199)));
        assert_eq!(f("response.code == 503"), Ok((CodeComparison::Eq, 503)));
        for bad in [
            "response.code != 200",
            "response.code >= 4000",
            "response.code < 0",
            "response.flags == 'UH'",
            "response.code >= 400 && request.method == 'GET'",
            "",
        ] {
            let e = f(bad).expect_err(bad);
            assert!(e.contains("only `response.code OP N`"), "{e}");
        }
    }
}
