//! Route-level behaviour beyond matching and cluster choice: redirects, direct responses,
//! rewrites, header mutations, retries, mirroring, fault injection, CORS and hash policies.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::{Pattern, RouteAction};

/// What a route does with the requests it matches.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forward to a cluster.
    Route(RouteAction),
    /// Answer with a redirect (`Location` built from the request).
    Redirect(Redirect),
    /// Answer directly with a fixed status and body.
    DirectResponse(DirectResponse),
}

/// A query-parameter condition of a route (Envoy's `QueryParameterMatcher`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryParamMatcher {
    /// The parameter name (compared as decoded).
    pub name: String,
    /// The condition on its (decoded, first) value.
    pub kind: QueryParamMatchKind,
}

/// The condition a [`QueryParamMatcher`] puts on a parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryParamMatchKind {
    /// The value satisfies this string condition.
    String(StringMatch),
    /// `present_match`: the result when the parameter is present (absent never matches).
    Present(bool),
}

/// A string condition (Envoy's `StringMatcher`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StringMatch {
    /// The condition.
    pub kind: StringMatchKind,
    /// Compare ASCII case-insensitively (not applied to regexes, as in Envoy).
    pub ignore_case: bool,
}

/// The kinds of [`StringMatch`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatchKind {
    /// Equals.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Contains.
    Contains(String),
    /// The whole value matches.
    SafeRegex(Pattern),
}

impl StringMatch {
    /// Whether `value` satisfies the condition.
    pub fn matches(&self, value: &str) -> bool {
        let ic = self.ignore_case;
        match &self.kind {
            StringMatchKind::Exact(s) if ic => value.eq_ignore_ascii_case(s),
            StringMatchKind::Exact(s) => value == s,
            StringMatchKind::Prefix(s) if ic => value
                .get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s)),
            StringMatchKind::Prefix(s) => value.starts_with(s.as_str()),
            StringMatchKind::Suffix(s) if ic => value
                .len()
                .checked_sub(s.len())
                .and_then(|i| value.get(i..))
                .is_some_and(|p| p.eq_ignore_ascii_case(s)),
            StringMatchKind::Suffix(s) => value.ends_with(s.as_str()),
            StringMatchKind::Contains(s) if ic => {
                value.to_ascii_lowercase().contains(&s.to_ascii_lowercase())
            }
            StringMatchKind::Contains(s) => value.contains(s.as_str()),
            StringMatchKind::SafeRegex(re) => re.is_full_match(value),
        }
    }
}

/// Headers added and removed on a request or a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HeaderMutations {
    /// Headers to add, in order (applied after removals, as Envoy does).
    pub add: Vec<HeaderAdd>,
    /// Header names to remove (lowercase).
    pub remove: Vec<String>,
}

impl HeaderMutations {
    /// Whether nothing is added or removed.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// One header to add.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderAdd {
    /// The name (lowercase, valid).
    pub name: String,
    /// The value (valid as a header value), used verbatim.
    pub value: String,
    /// What to do when the header already exists.
    pub action: AppendAction,
}

/// Envoy's `HeaderValueOption.HeaderAppendAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppendAction {
    /// Add another value (or the header).
    AppendIfExistsOrAdd,
    /// Add only when absent.
    AddIfAbsent,
    /// Replace every value (or add).
    OverwriteIfExistsOrAdd,
    /// Replace only when present.
    OverwriteIfExists,
}

/// A redirect answer (Envoy's `RedirectAction`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Redirect {
    /// New scheme (`https_redirect` is `Some("https")`).
    pub scheme: Option<String>,
    /// New host (without port).
    pub host: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New path.
    pub path: Option<PathRedirect>,
    /// Drop the query string.
    pub strip_query: bool,
    /// 301, 302, 303, 307 or 308.
    pub response_code: u16,
}

/// How a redirect rewrites the path.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRedirect {
    /// Replace the whole path (a `?query` in it replaces the query).
    Path(String),
    /// Replace the matched prefix.
    Prefix(String),
}

/// A direct answer (Envoy's `DirectResponseAction`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirectResponse {
    /// The status code.
    pub status: u16,
    /// The body, if any.
    #[serde(serialize_with = "ser_opt_bytes")]
    pub body: Option<bytes::Bytes>,
}

/// Envoy's `regex_rewrite`: every match of `pattern` in the path is replaced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegexRewrite {
    /// The pattern (not anchored).
    pub pattern: UnanchoredPattern,
    /// The substitution (`\1` style groups, as RE2).
    pub substitution: String,
}

/// A regex used for search and replace; serializes as its source.
#[derive(Debug, Clone)]
pub struct UnanchoredPattern(pub regex::Regex);

impl PartialEq for UnanchoredPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Serialize for UnanchoredPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// When and how a failed attempt is retried (Envoy's `RetryPolicy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// The `retry_on` conditions.
    pub retry_on: Vec<RetryOn>,
    /// Retries after the first attempt.
    pub num_retries: u32,
    /// Timeout of each attempt (until the response headers).
    #[serde(serialize_with = "super::ser_opt_duration")]
    pub per_try_timeout: Option<Duration>,
    /// Status codes for `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// `envoy.retry_host_predicates.previous_hosts`: retry on another endpoint if possible.
    pub previous_hosts: bool,
    /// Endpoint picks per attempt when a predicate rejects a host.
    pub host_selection_max_attempts: u32,
}

/// One `retry_on` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// Any 5xx, connect failure or reset.
    #[serde(rename = "5xx")]
    FiveXx,
    /// 502, 503, 504, connect failure or reset.
    GatewayError,
    /// No response: the connection or stream broke.
    Reset,
    /// Reset before the request was sent (treated as a connect failure).
    ResetBeforeRequest,
    /// The connection could not be made.
    ConnectFailure,
    /// 409.
    Retriable4xx,
    /// The upstream refused the stream (HTTP/2 REFUSED_STREAM).
    RefusedStream,
    /// A status listed in `retriable_status_codes`.
    RetriableStatusCodes,
    /// The upstream answered with `x-envoy-ratelimited`.
    EnvoyRatelimited,
    /// Accepted and never true (no HTTP/3 upstreams).
    Http3PostConnectFailure,
    /// gRPC status 1.
    Cancelled,
    /// gRPC status 4.
    DeadlineExceeded,
    /// gRPC status 8.
    ResourceExhausted,
    /// gRPC status 13.
    Internal,
    /// gRPC status 14.
    Unavailable,
}

impl RetryOn {
    /// Parses one comma-separated item of `retry_on`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "5xx" => RetryOn::FiveXx,
            "gateway-error" => RetryOn::GatewayError,
            "reset" => RetryOn::Reset,
            "reset-before-request" => RetryOn::ResetBeforeRequest,
            "connect-failure" => RetryOn::ConnectFailure,
            "retriable-4xx" => RetryOn::Retriable4xx,
            "refused-stream" => RetryOn::RefusedStream,
            "retriable-status-codes" => RetryOn::RetriableStatusCodes,
            "envoy-ratelimited" => RetryOn::EnvoyRatelimited,
            "http3-post-connect-failure" => RetryOn::Http3PostConnectFailure,
            "cancelled" => RetryOn::Cancelled,
            "deadline-exceeded" => RetryOn::DeadlineExceeded,
            "resource-exhausted" => RetryOn::ResourceExhausted,
            "internal" => RetryOn::Internal,
            "unavailable" => RetryOn::Unavailable,
            _ => return None,
        })
    }
}

/// A fraction of requests (Envoy's `FractionalPercent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fraction {
    /// Numerator.
    pub numerator: u32,
    /// Denominator: 100, 10 000 or 1 000 000.
    pub denominator: u32,
}

impl Fraction {
    /// Every request.
    pub const ALL: Fraction = Fraction {
        numerator: 100,
        denominator: 100,
    };

    /// Samples one request.
    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> bool {
        if self.numerator >= self.denominator {
            return true;
        }
        self.numerator > 0 && rng.random_range(0..self.denominator) < self.numerator
    }
}

/// A mirror of the route's requests (Envoy's `RequestMirrorPolicy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MirrorPolicy {
    /// The cluster the copies go to.
    pub cluster: String,
    /// Which requests are mirrored (all when `None`).
    pub fraction: Option<Fraction>,
    /// Keep the authority as is instead of appending `-shadow`.
    pub disable_shadow_host_suffix: bool,
}

/// How a request is hashed for ring-hash / maglev load balancing (Envoy's `HashPolicy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashPolicy {
    /// A request header's value.
    Header {
        /// The header name (lowercase).
        name: String,
    },
    /// A cookie's value (generated with `ttl` and `path` when missing and `ttl` is set).
    Cookie {
        /// The cookie name.
        name: String,
        /// The generated cookie's lifetime.
        #[serde(serialize_with = "super::ser_opt_duration")]
        ttl: Option<Duration>,
        /// The generated cookie's path.
        path: Option<String>,
    },
    /// The downstream source IP.
    SourceIp,
    /// A query parameter's value.
    QueryParameter {
        /// The parameter name.
        name: String,
    },
}

/// Fault injection for a route (Envoy's `HTTPFault` in `typed_per_filter_config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FaultPolicy {
    /// A fixed delay before the request is processed further.
    pub delay: Option<FaultDelay>,
    /// An abort answered by the proxy.
    pub abort: Option<FaultAbort>,
}

/// A fixed delay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultDelay {
    /// How long.
    #[serde(serialize_with = "super::ser_duration")]
    pub duration: Duration,
    /// For which requests.
    pub percentage: Fraction,
}

/// An abort.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultAbort {
    /// The answer.
    pub kind: AbortKind,
    /// For which requests.
    pub percentage: Fraction,
}

/// What an abort answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortKind {
    /// This HTTP status.
    HttpStatus(u16),
    /// A trailers-only gRPC response with this `grpc-status`.
    GrpcStatus(u32),
}

/// A CORS policy (Envoy's `envoy.extensions.filters.http.cors.v3.CorsPolicy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorsPolicy {
    /// Origins allowed.
    pub allow_origins: Vec<StringMatch>,
    /// `access-control-allow-methods` (verbatim).
    pub allow_methods: String,
    /// `access-control-allow-headers` (verbatim).
    pub allow_headers: String,
    /// `access-control-expose-headers` (verbatim).
    pub expose_headers: String,
    /// `access-control-max-age` (verbatim).
    pub max_age: String,
    /// `access-control-allow-credentials: true`.
    pub allow_credentials: bool,
    /// Which requests the policy is enforced for (all when `None`).
    pub filter_enabled: Option<Fraction>,
    /// Preflights from origins that do not match are forwarded upstream (Envoy's default).
    pub forward_not_matching_preflights: bool,
}

/// Which optional HTTP filters a listener's connection manager runs before the router.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HttpFilters {
    /// `envoy.filters.http.jwt_authn`: the first filter, where request JWTs are verified.
    pub jwt_authn: Option<std::sync::Arc<super::JwtAuthentication>>,
    /// `envoy.filters.http.fault`.
    pub fault: bool,
    /// `envoy.filters.http.cors`.
    pub cors: bool,
    /// `envoy.filters.http.rbac`, in chain order (after `jwt_authn`, before `fault`): where
    /// requests are authorized.
    pub rbac: Vec<std::sync::Arc<super::Rbac>>,
    /// `envoy.filters.http.rbac` filters with only shadow rules (before `ext_authz`): they
    /// never deny, they record which CUSTOM rule matched.
    pub shadow_rbac: Vec<std::sync::Arc<super::ShadowRbac>>,
    /// `envoy.filters.http.ext_authz` (after the shadow RBAC filters, before the enforcing
    /// ones): external authorization.
    pub ext_authz: Option<std::sync::Arc<super::ExtAuthz>>,
    /// `istio.stats` (just before the router): Telemetry overrides of Istio's metrics (`None`:
    /// the metrics as Istio defines them).
    pub stats: Option<std::sync::Arc<crate::telemetry::MetricsConfig>>,
}

fn ser_opt_bytes<S: Serializer>(b: &Option<bytes::Bytes>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&String::from_utf8_lossy(b)),
        None => s.serialize_none(),
    }
}
