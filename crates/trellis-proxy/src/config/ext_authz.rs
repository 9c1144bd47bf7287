//! External authorization (`envoy.filters.http.ext_authz`, and the RBAC filter in shadow mode
//! that decides which requests it checks): Istio's AuthorizationPolicy `CUSTOM`. Run by
//! `crate::ext_authz`.

use std::time::Duration;

use serde::Serialize;

use super::{MetadataMatcher, Rbac, StringMatch};

/// An `envoy.filters.http.rbac` filter with only `shadow_rules`: it never denies, it records
/// the first matching policy's name (and the engine's result) in the request's dynamic
/// metadata under `<stat_prefix>shadow_effective_policy_id` / `shadow_engine_result`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowRbac {
    /// The rules evaluated.
    pub rules: Rbac,
    /// `shadow_rules_stat_prefix` (Istio: `istio_ext_authz_`), prepended to the metadata keys.
    pub stat_prefix: String,
}

/// Istio's CUSTOM on a TCP filter chain: the leading `envoy.filters.network.rbac` filters with
/// only shadow rules and `envoy.filters.network.ext_authz` (gRPC only; the connection is
/// checked once, before any byte is proxied, and closed when denied).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkExtAuthz {
    /// The shadow RBAC filters before it.
    pub shadow_rbac: Vec<std::sync::Arc<ShadowRbac>>,
    /// The check (`status_on_error` and `allowed_headers` do not apply).
    pub ext_authz: ExtAuthz,
}

/// An `envoy.filters.http.ext_authz` filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtAuthz {
    /// Where requests are checked.
    pub service: ExtAuthzService,
    /// `failure_mode_allow`: an unreachable or failing authorizer lets requests through.
    pub failure_mode_allow: bool,
    /// `status_on_error` (Envoy's default 403): the answer when the authorizer fails.
    pub status_on_error: u16,
    /// `filter_enabled_metadata`: only requests whose dynamic metadata matches are checked
    /// (all when `None`).
    pub filter_enabled_metadata: Option<MetadataMatcher>,
    /// `allowed_headers`: the request headers sent (all when `None`; for HTTP, Envoy always
    /// adds `Host`, `Method`, `Path`, `Content-Length` and `Authorization`).
    pub allowed_headers: Option<Vec<StringMatch>>,
    /// `with_request_body`: the request body is buffered and sent with the check.
    pub with_request_body: Option<BodySettings>,
}

/// `with_request_body` (`BufferSettings`): how much of the body the check carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BodySettings {
    /// `max_request_bytes`: the most bytes buffered and sent.
    pub max_request_bytes: u32,
    /// `allow_partial_message`: a bigger body is checked with its first `max_request_bytes`
    /// (instead of being answered `413`).
    pub allow_partial_message: bool,
    /// `pack_as_bytes`: over gRPC, the body goes in `raw_body` as it is (not in `body` as
    /// UTF-8 text).
    pub pack_as_bytes: bool,
}

/// The authorizer and how it is spoken to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtAuthzService {
    /// `grpc_service.envoy_grpc`: `envoy.service.auth.v3.Authorization/Check` over the cluster.
    Grpc {
        /// The cluster.
        cluster: String,
        /// The `:authority` of the calls (the cluster name when empty).
        authority: String,
        /// The per-check deadline.
        #[serde(serialize_with = "super::ser_duration")]
        timeout: Duration,
    },
    /// `http_service`: the request itself (path under `path_prefix`) to the cluster.
    Http {
        /// `server_uri.cluster`.
        cluster: String,
        /// `server_uri.uri`: its authority is the check request's `:authority`.
        uri: String,
        /// `server_uri.timeout`.
        #[serde(serialize_with = "super::ser_duration")]
        timeout: Duration,
        /// Prepended to the request's path.
        path_prefix: String,
        /// `authorization_request.headers_to_add`.
        headers_to_add: Vec<(String, String)>,
        /// `authorization_response.allowed_upstream_headers`: authorizer headers set on an
        /// allowed request (none when `None`).
        allowed_upstream_headers: Option<Vec<StringMatch>>,
        /// `authorization_response.allowed_client_headers`: authorizer headers passed to the
        /// client on a denial (all but `Host` when `None`).
        allowed_client_headers: Option<Vec<StringMatch>>,
        /// `authorization_response.allowed_client_headers_on_success`: authorizer headers added
        /// to the response of an allowed request (none when `None`).
        allowed_client_headers_on_success: Option<Vec<StringMatch>>,
    },
}
