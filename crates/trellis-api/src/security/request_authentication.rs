//! `RequestAuthentication`: JWT validation rules (security.istio.io).

use serde::{Deserialize, Serialize};

use crate::types::{Duration, LabelSelector, PolicyTargetReference, istio_enum};

/// The spec of a RequestAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthentication {
    /// Workloads this applies to.
    pub selector: Option<LabelSelector>,
    /// Gateway API target.
    pub target_ref: Option<PolicyTargetReference>,
    /// Gateway API targets.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// JWT rules.
    #[serde(default)]
    pub jwt_rules: Vec<JwtRule>,
}

istio_enum! {
    /// Whether a JWT must be present.
    JwtPresence { Optional = "OPTIONAL", Required = "REQUIRED" }
}

/// How to validate one issuer's JWTs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// Issuer.
    pub issuer: Option<String>,
    /// Accepted audiences.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// JWKS URL.
    pub jwks_uri: Option<String>,
    /// JWKS URL, snake_case spelling.
    #[serde(rename = "jwks_uri")]
    pub jwks_uri_legacy: Option<String>,
    /// Inline JWKS.
    pub jwks: Option<String>,
    /// Headers carrying the token.
    #[serde(default)]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters carrying the token.
    #[serde(default)]
    pub from_params: Vec<String>,
    /// Cookies carrying the token.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Header receiving the payload.
    pub output_payload_to_header: Option<String>,
    /// Forward the original token.
    pub forward_original_token: Option<bool>,
    /// Claims copied to headers.
    #[serde(default)]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// JWKS fetch timeout.
    pub timeout: Option<Duration>,
    /// Claims split on spaces.
    #[serde(default)]
    pub space_delimited_claims: Vec<String>,
    /// Presence requirement.
    pub presence: Option<JwtPresence>,
}

/// A header carrying a JWT.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    /// Header name (required).
    #[serde(default)]
    pub name: String,
    /// Prefix before the token.
    pub prefix: Option<String>,
}

/// A claim copied to a header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    /// Header name (required).
    #[serde(default)]
    pub header: String,
    /// Claim name (required).
    #[serde(default)]
    pub claim: String,
}
