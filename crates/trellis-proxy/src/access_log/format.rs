//! Envoy's access log format strings: literal text with `%COMMAND(ARG):MAX%` operators, parsed
//! once when the config arrives (an unknown operator is a config error), rendered per request.

use std::fmt::Write as _;

use serde::Serialize;

use super::Record;

/// One command operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Operator {
    /// `%START_TIME%`: `2026-01-02T03:04:05.678Z`.
    StartTime,
    /// `%REQ(X?Y)%`: a request header (`:method`, `:path`, `:authority`, `:scheme` included),
    /// the second when the first is absent.
    Req(String, Option<String>),
    /// `%RESP(X?Y)%`: a response header.
    Resp(String, Option<String>),
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/2`.
    Protocol,
    /// `%RESPONSE_CODE%` (0 when no response was sent).
    ResponseCode,
    /// `%RESPONSE_FLAGS%`: Envoy's short flags, comma-separated, `-` for none.
    ResponseFlags,
    /// `%RESPONSE_CODE_DETAILS%`: `via_upstream`, or why the proxy answered itself.
    ResponseCodeDetails,
    /// `%CONNECTION_TERMINATION_DETAILS%` (always empty: connections end for no proxy reason).
    ConnectionTerminationDetails,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    UpstreamTransportFailureReason,
    /// `%BYTES_RECEIVED%`: the request body (its `content-length`).
    BytesReceived,
    /// `%BYTES_SENT%`: response body bytes sent.
    BytesSent,
    /// `%DURATION%`: milliseconds from the request's start to the response's last byte.
    Duration,
    /// `%UPSTREAM_HOST%`: the endpoint's address.
    UpstreamHost,
    /// `%UPSTREAM_CLUSTER%` / `%UPSTREAM_CLUSTER_RAW%`.
    UpstreamCluster,
    /// `%UPSTREAM_LOCAL_ADDRESS%` (not tracked: always empty).
    UpstreamLocalAddress,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`.
    DownstreamLocalAddress,
    /// `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%`.
    DownstreamLocalAddressWithoutPort,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    DownstreamRemoteAddress,
    /// `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`.
    DownstreamRemoteAddressWithoutPort,
    /// `%DOWNSTREAM_PEER_URI_SAN%`: the verified client certificate's URI SAN.
    DownstreamPeerUriSan,
    /// `%REQUESTED_SERVER_NAME%` (SNI; not tracked: always empty).
    RequestedServerName,
    /// `%ROUTE_NAME%`.
    RouteName,
    /// `%HOSTNAME%`: the machine's host name.
    Hostname,
}

/// A piece of a format: text or an operator with an optional maximum length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// An operator; `Some(n)` truncates its value to `n` bytes (on a character boundary).
    Op(Operator, Option<usize>),
}

/// A parsed format string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template(pub Vec<Piece>);

/// A format string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A `%` without its closing `%`.
    #[error("unterminated command operator at byte {0}")]
    Unterminated(usize),
    /// An operator Trellis does not implement (or misspelled).
    #[error("unsupported command operator %{0}%")]
    Unsupported(String),
    /// An operator's argument or length is malformed.
    #[error("invalid command operator %{0}%: {1}")]
    Invalid(String, &'static str),
}

impl Template {
    /// Parses an Envoy format string.
    pub fn parse(text: &str) -> Result<Template, FormatError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find('%') {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after
                .find('%')
                .ok_or(FormatError::Unterminated(offset + start))?;
            let token = &after[..end];
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(parse_operator(token)?);
            let consumed = start + 1 + end + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template(pieces))
    }

    /// The value of a template that is exactly one operator (JSON keeps its type), else `None`.
    fn single(&self) -> Option<(&Operator, Option<usize>)> {
        match self.0.as_slice() {
            [Piece::Op(op, max)] => Some((op, *max)),
            _ => None,
        }
    }

    /// Renders as text; missing values are `-`, as Envoy writes them.
    pub fn render(&self, record: &Record) -> String {
        let mut out = String::with_capacity(256);
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Op(op, max) => match value(op, record) {
                    Some(v) => out.push_str(truncate(&v.text(), *max)),
                    None => out.push('-'),
                },
            }
        }
        out
    }

    /// Renders as a JSON value: a lone operator keeps its type (numbers as numbers, missing as
    /// `null`), anything else is a string.
    pub fn render_json(&self, record: &Record) -> serde_json::Value {
        if let Some((op, max)) = self.single() {
            return match value(op, record) {
                None => serde_json::Value::Null,
                Some(Value::Number(n)) => serde_json::Value::from(n),
                Some(Value::Text(t)) => serde_json::Value::from(truncate(&t, max)),
            };
        }
        serde_json::Value::from(self.render(record))
    }
}

fn parse_operator(token: &str) -> Result<Piece, FormatError> {
    let invalid = |why| FormatError::Invalid(token.to_string(), why);
    // NAME(ARG):MAX — the length comes after the closing parenthesis.
    let (head, max) = match token.rfind(':') {
        Some(i) if !token[..i].contains('(') || token[..i].ends_with(')') => {
            let n: usize = token[i + 1..]
                .parse()
                .map_err(|_| invalid("the length after ':' must be a number"))?;
            (&token[..i], Some(n))
        }
        _ => (token, None),
    };
    let (name, arg) = match head.find('(') {
        Some(i) => {
            let arg = head[i + 1..]
                .strip_suffix(')')
                .ok_or_else(|| invalid("missing ')'"))?;
            (&head[..i], Some(arg))
        }
        None => (head, None),
    };
    let headers = |arg: Option<&str>| -> Result<(String, Option<String>), FormatError> {
        let arg = arg
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid("needs a header name"))?;
        let (first, second) = match arg.split_once('?') {
            Some((a, b)) => (a, Some(b.to_ascii_lowercase())),
            None => (arg, None),
        };
        Ok((first.to_ascii_lowercase(), second))
    };
    let op = match (name, arg) {
        ("REQ", a) => {
            let (h, alt) = headers(a)?;
            Operator::Req(h, alt)
        }
        ("RESP", a) => {
            let (h, alt) = headers(a)?;
            Operator::Resp(h, alt)
        }
        (_, Some(_)) => return Err(FormatError::Unsupported(token.to_string())),
        ("START_TIME", None) => Operator::StartTime,
        ("PROTOCOL", None) => Operator::Protocol,
        ("RESPONSE_CODE", None) => Operator::ResponseCode,
        ("RESPONSE_FLAGS", None) => Operator::ResponseFlags,
        ("RESPONSE_CODE_DETAILS", None) => Operator::ResponseCodeDetails,
        ("CONNECTION_TERMINATION_DETAILS", None) => Operator::ConnectionTerminationDetails,
        ("UPSTREAM_TRANSPORT_FAILURE_REASON", None) => Operator::UpstreamTransportFailureReason,
        ("BYTES_RECEIVED", None) => Operator::BytesReceived,
        ("BYTES_SENT", None) => Operator::BytesSent,
        ("DURATION", None) => Operator::Duration,
        ("UPSTREAM_HOST", None) => Operator::UpstreamHost,
        ("UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW", None) => Operator::UpstreamCluster,
        ("UPSTREAM_LOCAL_ADDRESS", None) => Operator::UpstreamLocalAddress,
        ("DOWNSTREAM_LOCAL_ADDRESS", None) => Operator::DownstreamLocalAddress,
        ("DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", None) => {
            Operator::DownstreamLocalAddressWithoutPort
        }
        ("DOWNSTREAM_REMOTE_ADDRESS", None) => Operator::DownstreamRemoteAddress,
        ("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", None) => {
            Operator::DownstreamRemoteAddressWithoutPort
        }
        ("DOWNSTREAM_PEER_URI_SAN", None) => Operator::DownstreamPeerUriSan,
        ("REQUESTED_SERVER_NAME", None) => Operator::RequestedServerName,
        ("ROUTE_NAME", None) => Operator::RouteName,
        ("HOSTNAME", None) => Operator::Hostname,
        _ => return Err(FormatError::Unsupported(token.to_string())),
    };
    Ok(Piece::Op(op, max))
}

/// A rendered value.
enum Value {
    Text(String),
    Number(u64),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Text(t) => t.clone(),
            Value::Number(n) => n.to_string(),
        }
    }
}

fn truncate(s: &str, max: Option<usize>) -> &str {
    match max {
        Some(n) if s.len() > n => {
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            &s[..end]
        }
        _ => s,
    }
}

fn value(op: &Operator, r: &Record) -> Option<Value> {
    let text = |s: &str| (!s.is_empty()).then(|| Value::Text(s.to_string()));
    let header = |map: &http::HeaderMap, name: &str, alt: &Option<String>| {
        let get = |n: &str| map.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        get(name)
            .or_else(|| alt.as_deref().and_then(get))
            .map(Value::Text)
    };
    match op {
        Operator::StartTime => Some(Value::Text(rfc3339_millis(r.start_time))),
        Operator::Req(name, alt) => {
            let pseudo = |n: &str| match n {
                ":method" => Some(r.method.clone()),
                ":path" => Some(r.path.clone()),
                ":authority" => Some(r.authority.clone()),
                ":scheme" => Some(r.scheme.to_string()),
                _ => None,
            };
            match pseudo(name) {
                Some(v) => text(&v),
                None => header(&r.request_headers, name, alt)
                    .or_else(|| alt.as_deref().and_then(pseudo).and_then(|v| text(&v))),
            }
        }
        Operator::Resp(name, alt) => header(&r.response_headers, name, alt),
        Operator::Protocol => text(r.protocol),
        Operator::ResponseCode => Some(Value::Number(u64::from(r.status))),
        Operator::ResponseFlags => Some(Value::Text(if r.flags.is_empty() {
            "-".to_string()
        } else {
            r.flags.join(",")
        })),
        Operator::ResponseCodeDetails => text(&r.details),
        Operator::ConnectionTerminationDetails
        | Operator::UpstreamTransportFailureReason
        | Operator::UpstreamLocalAddress
        | Operator::RequestedServerName => None,
        Operator::BytesReceived => Some(Value::Number(r.bytes_received)),
        Operator::BytesSent => Some(Value::Number(r.bytes_sent)),
        Operator::Duration => Some(Value::Number(r.duration_ms)),
        Operator::UpstreamHost => r.upstream_host.map(|a| Value::Text(a.to_string())),
        Operator::UpstreamCluster => r.cluster.as_deref().and_then(text),
        Operator::DownstreamLocalAddress => r.local.map(|a| Value::Text(a.to_string())),
        Operator::DownstreamLocalAddressWithoutPort => {
            r.local.map(|a| Value::Text(a.ip().to_string()))
        }
        Operator::DownstreamRemoteAddress => r.remote.map(|a| Value::Text(a.to_string())),
        Operator::DownstreamRemoteAddressWithoutPort => {
            r.remote.map(|a| Value::Text(a.ip().to_string()))
        }
        Operator::DownstreamPeerUriSan => r.peer_uri_san.as_deref().and_then(text),
        Operator::RouteName => r.route_name.as_deref().and_then(text),
        Operator::Hostname => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .and_then(|h| text(h.trim())),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC (Envoy's default `START_TIME`).
pub fn rfc3339_millis(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_default_format() {
        let t = Template::parse(trellis_api_default()).expect("istio's format");
        assert!(t.0.contains(&Piece::Op(
            Operator::Req("x-envoy-original-path".into(), Some(":path".into())),
            None
        )));
    }

    fn trellis_api_default() -> &'static str {
        "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
    }

    #[test]
    fn renders_text_and_json() {
        let mut r = Record::for_test();
        r.status = 503;
        r.flags = vec!["UH"];
        r.details = "no_healthy_upstream".into();
        r.request_headers
            .insert("user-agent", http::HeaderValue::from_static("curl/8"));
        let t = Template::parse(
            "\"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %REQ(USER-AGENT):4% %UPSTREAM_HOST%\n",
        )
        .expect("format");
        assert_eq!(
            t.render(&r),
            "\"GET /p?q=1 HTTP/1.1\" 503 UH no_healthy_upstream curl -\n"
        );
        assert_eq!(
            Template::parse("%RESPONSE_CODE%")
                .expect("code")
                .render_json(&r),
            serde_json::json!(503)
        );
        assert_eq!(
            Template::parse("%UPSTREAM_HOST%")
                .expect("host")
                .render_json(&r),
            serde_json::Value::Null
        );
        assert_eq!(
            Template::parse("code=%RESPONSE_CODE%")
                .expect("mixed")
                .render_json(&r),
            serde_json::json!("code=503")
        );
    }

    #[test]
    fn rejects_bad_operators() {
        assert_eq!(
            Template::parse("%NOPE%"),
            Err(FormatError::Unsupported("NOPE".into()))
        );
        assert!(matches!(
            Template::parse("%START_TIME(%s)%"),
            Err(FormatError::Invalid(..))
        ));
        assert_eq!(
            Template::parse("%START_TIME(X)%"),
            Err(FormatError::Unsupported("START_TIME(X)".into()))
        );
        assert_eq!(
            Template::parse("x %REQ(A)"),
            Err(FormatError::Unterminated(2))
        );
        assert!(matches!(
            Template::parse("%REQ()%"),
            Err(FormatError::Invalid(..))
        ));
        assert!(matches!(
            Template::parse("%REQ(A):x%"),
            Err(FormatError::Invalid(..))
        ));
    }

    #[test]
    fn start_time_is_utc_millis() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339_millis(t), "2023-11-14T22:13:20.123Z");
    }
}
