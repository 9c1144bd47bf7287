//! Istio's stats filter as both ends agree on it: the `istio.stats` HTTP filter whose config
//! (Istio's `stats.PluginConfig`, carried in a `TypedStruct` so that a stock Envoy can skip the
//! optional filter) changes Istio's standard metrics — which are dropped, which labels removed,
//! and which labels set from a value expression.
//!
//! Value expressions are the small subset of CEL that Istio's documentation uses for
//! `tagOverrides` (Trellis does not evaluate CEL): one attribute, optionally followed by
//! `| 'DEFAULT'` for when the attribute is absent. The same parser checks them in the API, the
//! control plane and the proxy.

/// The HTTP filter's name (Istio's).
pub const STATS_FILTER: &str = "istio.stats";
/// The config's outer type: a `TypedStruct` (`xds.type.v3`), as a stock Envoy skips an optional
/// filter whose inner type it has no factory for.
pub const TYPED_STRUCT_TYPE: &str = "type.googleapis.com/xds.type.v3.TypedStruct";
/// The inner type (Istio's stats plugin config).
pub const PLUGIN_CONFIG_TYPE: &str = "type.googleapis.com/stats.PluginConfig";
/// The value of a label whose expression found nothing and has no default (Istio's).
pub const UNKNOWN: &str = "unknown";

/// `xds.type.v3.TypedStruct`: an extension config as a `Struct` (the JSON form of `type_url`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypedStruct {
    /// The config's type.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The config, as JSON.
    #[prost(message, optional, tag = "2")]
    pub value: Option<envoy_types::pb::google::protobuf::Struct>,
}

/// Istio's standard metrics, by the name its stats config uses (the Prometheus name without
/// `istio_`), in Istio's `IstioMetric` order.
pub const METRICS: [(&str, &str); 10] = [
    ("REQUEST_COUNT", "requests_total"),
    ("REQUEST_DURATION", "request_duration_milliseconds"),
    ("REQUEST_SIZE", "request_bytes"),
    ("RESPONSE_SIZE", "response_bytes"),
    ("TCP_OPENED_CONNECTIONS", "tcp_connections_opened_total"),
    ("TCP_CLOSED_CONNECTIONS", "tcp_connections_closed_total"),
    ("TCP_SENT_BYTES", "tcp_sent_bytes_total"),
    ("TCP_RECEIVED_BYTES", "tcp_received_bytes_total"),
    ("GRPC_REQUEST_MESSAGES", "request_messages_total"),
    ("GRPC_RESPONSE_MESSAGES", "response_messages_total"),
];

/// The stats-config name of a standard metric named either way (`REQUEST_COUNT`,
/// `requests_total` or `istio_requests_total`).
pub fn metric_name(name: &str) -> Option<&'static str> {
    let short = name.strip_prefix("istio_").unwrap_or(name);
    METRICS
        .iter()
        .find(|(api, stats)| *api == name || *stats == short)
        .map(|(_, stats)| *stats)
}

/// Whether `name` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not `__*`).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// One attribute a label value can be read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// `request.headers['NAME']` (the name lower-cased).
    RequestHeader(String),
    /// `request.host` (the `:authority`).
    RequestHost,
    /// `request.method`.
    RequestMethod,
    /// `request.path` (with the query).
    RequestPath,
    /// `request.url_path` (without the query).
    RequestUrlPath,
    /// `request.scheme`.
    RequestScheme,
    /// `request.protocol` (`HTTP/1.1`, `HTTP/2`).
    RequestProtocol,
    /// `response.code`.
    ResponseCode,
    /// A quoted string literal.
    Literal(String),
}

/// A parsed value expression: an attribute and the value used when it is absent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueExpr {
    /// What is read.
    pub attribute: Attribute,
    /// `| 'DEFAULT'`; [`UNKNOWN`] when not given.
    pub default: String,
}

/// The attributes [`ValueExpr::parse`] accepts, for error messages and docs.
pub const SUPPORTED: &str = "request.headers['NAME'], request.host, request.method, request.path, request.url_path, request.scheme, request.protocol, response.code or a 'literal', optionally followed by | 'DEFAULT'";

impl ValueExpr {
    /// Parses `ATTRIBUTE` or `ATTRIBUTE | 'DEFAULT'`; anything else is refused with the reason.
    pub fn parse(expression: &str) -> Result<ValueExpr, String> {
        let unsupported =
            || format!("unsupported value expression {expression:?}: supported are {SUPPORTED}");
        let (attribute, default) = match split_default(expression) {
            Some((a, d)) => (a.trim(), Some(literal(d.trim()).ok_or_else(unsupported)?)),
            None => (expression.trim(), None),
        };
        let attribute = match attribute {
            "request.host" => Attribute::RequestHost,
            "request.method" => Attribute::RequestMethod,
            "request.path" => Attribute::RequestPath,
            "request.url_path" => Attribute::RequestUrlPath,
            "request.scheme" => Attribute::RequestScheme,
            "request.protocol" => Attribute::RequestProtocol,
            "response.code" => Attribute::ResponseCode,
            other => {
                if let Some(inner) = other
                    .strip_prefix("request.headers[")
                    .and_then(|r| r.strip_suffix(']'))
                {
                    let name = literal(inner.trim())
                        .filter(|n| {
                            !n.is_empty()
                                && n.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                        })
                        .ok_or_else(unsupported)?;
                    Attribute::RequestHeader(name.to_ascii_lowercase())
                } else {
                    Attribute::Literal(literal(other).ok_or_else(unsupported)?)
                }
            }
        };
        Ok(ValueExpr {
            attribute,
            default: default.unwrap_or_else(|| UNKNOWN.to_string()),
        })
    }
}

/// `A | 'D'` split at the last `|` outside quotes.
fn split_default(expression: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    let mut split = None;
    for (i, c) in expression.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '|') => split = Some(i),
            _ => {}
        }
    }
    split.map(|i| (&expression[..i], &expression[i + 1..]))
}

/// The content of `'…'` or `"…"` (no escapes inside).
fn literal(s: &str) -> Option<String> {
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = s.strip_prefix(q)?.strip_suffix(q)?;
    (!inner.contains(q) && !inner.contains('\\')).then(|| inner.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_expressions() {
        let p = |e: &str| ValueExpr::parse(e).map(|v| (v.attribute, v.default));
        assert_eq!(
            p("request.headers['X-Tenant']"),
            Ok((Attribute::RequestHeader("x-tenant".into()), UNKNOWN.into()))
        );
        assert_eq!(
            p(" request.host | 'none' "),
            Ok((Attribute::RequestHost, "none".into()))
        );
        assert_eq!(
            p("request.headers['x'] | 'a|b'"),
            Ok((Attribute::RequestHeader("x".into()), "a|b".into()))
        );
        assert_eq!(
            p("'fixed'"),
            Ok((Attribute::Literal("fixed".into()), UNKNOWN.into()))
        );
        assert_eq!(
            p("response.code"),
            Ok((Attribute::ResponseCode, UNKNOWN.into()))
        );
        for bad in [
            "upstream_peer.labels['app']",
            "request.headers['x']['y']",
            "request.headers[x]",
            "request.headers['x a']",
            "request.headers[\"x|y\"] | ''",
            "size(request.path)",
            "request.host | unknown",
            "'a' + 'b'",
            "",
        ] {
            let e = p(bad).expect_err(bad);
            assert!(e.contains("unsupported value expression"), "{e}");
        }
    }

    #[test]
    fn metric_and_label_names() {
        assert_eq!(metric_name("REQUEST_COUNT"), Some("requests_total"));
        assert_eq!(metric_name("istio_request_bytes"), Some("request_bytes"));
        assert_eq!(metric_name("response_bytes"), Some("response_bytes"));
        assert_eq!(metric_name("my_metric"), None);
        assert!(is_label_name("x_tenant") && is_label_name("_a1"));
        assert!(!is_label_name("1a") && !is_label_name("a-b") && !is_label_name("__x"));
    }
}
