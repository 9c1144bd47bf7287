//! `envoy.filters.http.jwt_authn` (`JwtAuthentication`): which JWT issuers a listener trusts,
//! where their tokens are found, and which combination of them a request must satisfy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// The JWT filter's config for one connection manager.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JwtAuthentication {
    /// Providers by name (`origins-N` from the control plane).
    pub providers: BTreeMap<String, JwtProvider>,
    /// Requirement rules, first match wins; a request no rule matches is not checked.
    pub rules: Vec<RequirementRule>,
    /// CORS preflight requests (`OPTIONS` with `origin` and `access-control-request-method`)
    /// pass without a token.
    pub bypass_cors_preflight: bool,
}

/// One rule: requests whose path starts with `prefix` must satisfy `requires`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequirementRule {
    /// `match.prefix`.
    pub prefix: String,
    /// What the request must satisfy.
    pub requires: JwtRequirement,
}

/// A requirement tree (Envoy's `JwtRequirement`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JwtRequirement {
    /// A valid token of this provider.
    ProviderName(String),
    /// Passes when no token is present; a token that is present must be valid.
    AllowMissing,
    /// Passes always; valid tokens are still verified and their payload recorded.
    AllowMissingOrFailed,
    /// Any of these.
    RequiresAny(Vec<JwtRequirement>),
    /// All of these.
    RequiresAll(Vec<JwtRequirement>),
}

/// How one issuer's tokens are found and verified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JwtProvider {
    /// The required `iss` claim (empty: any).
    pub issuer: String,
    /// Accepted `aud` values (empty: any).
    pub audiences: Vec<String>,
    /// Where the signing keys come from.
    pub jwks: JwksSource,
    /// Headers carrying the token (with the prefix before it).
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters carrying the token.
    pub from_params: Vec<String>,
    /// Cookies carrying the token.
    pub from_cookies: Vec<String>,
    /// Keep the token in the request after a successful verification.
    pub forward: bool,
    /// Header receiving the base64url-encoded payload.
    pub forward_payload_header: Option<String>,
    /// Claims copied into request headers.
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// The dynamic-metadata key the verified payload is recorded under.
    pub payload_in_metadata: Option<String>,
    /// Tolerated clock difference for `exp`/`nbf` (Envoy's default 60 s).
    pub clock_skew: Duration,
    /// Top-level claims whose string value is recorded in the metadata payload as the list of
    /// its space-separated words (`normalize_payload_in_metadata.space_delimited_claims`).
    pub space_delimited_claims: Vec<String>,
}

impl JwtProvider {
    /// Whether no location is configured, so Envoy's defaults apply (`Authorization: Bearer `
    /// and the `access_token` query parameter).
    pub fn uses_default_locations(&self) -> bool {
        self.from_headers.is_empty() && self.from_params.is_empty() && self.from_cookies.is_empty()
    }
}

/// A header carrying a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtHeader {
    /// The header name (lowercase).
    pub name: String,
    /// The text before the token (e.g. `Bearer `), may be empty.
    pub value_prefix: String,
}

/// A claim copied into a request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimToHeader {
    /// The header name (lowercase).
    pub header_name: String,
    /// The claim (nested claims with `.`).
    pub claim_name: String,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JwksSource {
    /// `local_jwks.inline_string`, parsed when the config is converted.
    Local(Arc<Jwks>),
    /// `remote_jwks`: fetched through a cluster and cached.
    Remote(RemoteJwks),
}

/// A parsed JSON Web Key Set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Jwks {
    /// The JWKS text as configured (or fetched).
    pub text: String,
    /// Its keys.
    #[serde(skip)]
    pub keys: Vec<jsonwebtoken::jwk::Jwk>,
}

/// `remote_jwks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteJwks {
    /// `http_uri.uri`: the URL (its authority and path are sent).
    pub uri: String,
    /// `http_uri.cluster`: the cluster the request goes through.
    pub cluster: String,
    /// `http_uri.timeout`.
    pub timeout: Duration,
    /// How long fetched keys are used (Envoy's default 10 minutes).
    pub cache_duration: Duration,
    /// `async_fetch`: keep the keys fresh in the background instead of on demand.
    pub async_fetch: Option<JwksAsyncFetch>,
}

/// `remote_jwks.async_fetch`: the keys are fetched again in the background every
/// `cache_duration` (5 s before they would expire when it is longer than that, as Envoy), and
/// do not expire while this runs; a failed fetch keeps the old keys and is retried after
/// `failed_refetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwksAsyncFetch {
    /// `failed_refetch_duration` (Envoy's default 1 s).
    pub failed_refetch: Duration,
}
