//! RequestAuthentication → the `envoy.filters.http.jwt_authn` filter of a workload's inbound
//! listeners, in istiod's shape (`pilot/pkg/security/authn`): the JWT rules of every
//! RequestAuthentication that applies to the workload (the root namespace's and its
//! namespace's without selector, and those whose selector matches it), sorted by issuer, each
//! a provider `origins-N`; one rule for every path requiring, per provider, "a valid token of
//! this provider, or no token at all". So a request with no token passes (authorization decides
//! whether that is acceptable) and one with an invalid token is rejected.
//!
//! Two choices differ from istiod's defaults and are ours to document:
//! - `payload_in_metadata` is `payload` for every provider (istiod uses the issuer, read back by
//!   its own `istio_authn` filter); Trellis' RBAC reads the payload under that one key.
//! - `jwksUri` is always fetched by the proxy (`remote_jwks`, istiod's `envoy` mode), through the
//!   mesh cluster of the URI's host and port: a ServiceEntry declares the JWKS server, and a
//!   DestinationRule with `tls.mode: SIMPLE` (and `caCertificates`) originates TLS for `https`.
//!   A URI whose host and port are not a service visible to the workload gets istiod's
//!   fallback for an unreachable JWKS: a key set no token can match, so its tokens are
//!   rejected rather than accepted unverified.
//! - The keys are fetched again in the background (`async_fetch`) every `cache_duration`, which
//!   is the control plane's `--jwks-refresh-interval` (istiod's
//!   `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`, 20 minutes by default): the interval at which
//!   istiod itself refreshes the keys in its default mode. istiod's `envoy` mode has a fixed
//!   5 minutes instead. As in Envoy, a token whose `kid` is not in the cached key set is
//!   rejected until the next refresh (Envoy does not refetch on an unknown `kid`).

use envoy_types::pb::envoy::config::core::v3::{DataSource, HttpUri, data_source, http_uri};
use envoy_types::pb::envoy::config::route::v3::{RouteMatch, route_match::PathSpecifier};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwksAsyncFetch, JwtAuthentication, JwtClaimToHeader, JwtHeader, JwtProvider, JwtRequirement,
    JwtRequirementAndList, JwtRequirementOrList, RemoteJwks, RequirementRule, jwt_provider,
    jwt_requirement::RequiresType, requirement_rule,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::google::protobuf::Empty;
use trellis_api::security::{JwtPresence, JwtRule, RequestAuthentication};
use trellis_xds::to_any;

use super::outbound_cluster_name;
use super::proto::duration;
use crate::model::{MeshModel, Named, ProxyView, ROOT_NAMESPACE};

/// The JWT filter's name.
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// Its config type.
pub const JWT_AUTHN_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
/// The dynamic-metadata key of the verified payload (the contract with the RBAC filter).
pub const PAYLOAD_METADATA_KEY: &str = "payload";
/// istiod's JWKS fetch timeout when a rule sets none.
const DEFAULT_JWKS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The key set used when a `jwksUri` cannot be reached through the mesh: one RSA key no token
/// names (its `kid`), whose modulus is not any real key's, so every token fails.
const UNREACHABLE_JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"trellis-unreachable-jwks","alg":"RS256","e":"AQAB","n":"wbmO-5VPo8hu0Oh26T33WtB5UESSUM-xU34sMVO4SpLlbUzXx3UMDa20y6O8dJWsKdhXT_KtBQ8B682XHLTE6vxSnx03ze_JlZdKt_3GiHkbqotvz7bZbG6G4fyqa0Huwc0v6u5wjPOhi_95RMSBN_qjXibBspHJ22-VW4_tQlmLvZpNKW9CxTzZeqxdhy7JK78aB3UzZQbXkgVkKYjMcQg8vnipHdOwdMnDM9d6KI2Cvyvu8_UbG2gID2hAK2rlbRNKNOSL1jjMhjxtOCT-xSS0mVZfjbcVjPuqj2az8Emp1dtkMvJtpr_24Xfr0wNWnBiIDx6AdnuSGo1MJP0eSQ"}]}"#;

/// The JWT filter for `proxy`'s inbound listeners, `None` when no RequestAuthentication
/// applies to it.
pub fn jwt_filter(model: &MeshModel, proxy: &ProxyView<'_>) -> Option<HttpFilter> {
    let config = jwt_authentication(model, proxy)?;
    Some(HttpFilter {
        name: JWT_AUTHN.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(
            JWT_AUTHN_TYPE,
            &config,
        ))),
        ..Default::default()
    })
}

/// The RequestAuthentications that apply to a sidecar, as istiod selects them: in the root
/// namespace or the workload's, without a selector or with one the workload matches. Policies
/// bound with `targetRef(s)` address gateways and waypoints, not sidecars.
pub fn policies_for<'m>(
    model: &'m MeshModel,
    proxy: &ProxyView<'_>,
) -> Vec<&'m Named<RequestAuthentication>> {
    model
        .request_authentications
        .iter()
        .filter(|ra| ra.namespace == proxy.namespace() || ra.namespace == ROOT_NAMESPACE)
        .filter(|ra| ra.spec.target_ref.is_none() && ra.spec.target_refs.is_empty())
        .filter(|ra| {
            ra.spec
                .selector
                .as_ref()
                .is_none_or(|s| proxy.has_labels(&s.match_labels))
        })
        .collect()
}

/// The filter config, `None` without JWT rules.
pub fn jwt_authentication(model: &MeshModel, proxy: &ProxyView<'_>) -> Option<JwtAuthentication> {
    let mut rules: Vec<&JwtRule> = policies_for(model, proxy)
        .into_iter()
        .flat_map(|ra| ra.spec.jwt_rules.iter())
        .collect();
    if rules.is_empty() {
        return None;
    }
    // istiod sorts by issuer so the generated config is deterministic.
    rules.sort_by(|a, b| a.issuer.cmp(&b.issuer));
    let mut providers = std::collections::HashMap::new();
    let mut per_provider = Vec::new();
    let mut any_provider = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let name = format!("origins-{i}");
        providers.insert(name.clone(), provider(model, proxy, rule));
        let by_name = || JwtRequirement {
            requires_type: Some(RequiresType::ProviderName(name.clone())),
        };
        // `presence: REQUIRED`: this issuer's token must be there; otherwise it may be missing.
        per_provider.push(if rule.presence == Some(JwtPresence::Required) {
            by_name()
        } else {
            JwtRequirement {
                requires_type: Some(RequiresType::RequiresAny(JwtRequirementOrList {
                    requirements: vec![
                        by_name(),
                        JwtRequirement {
                            requires_type: Some(RequiresType::AllowMissing(Empty {})),
                        },
                    ],
                })),
            }
        });
        any_provider.push(by_name());
    }
    // One provider: {provider OR allow_missing}. Several: every provider's (provider OR
    // missing), or any single provider (tokens of several issuers may share a location).
    let requires = if per_provider.len() == 1 {
        per_provider.remove(0)
    } else {
        any_provider.push(JwtRequirement {
            requires_type: Some(RequiresType::RequiresAll(JwtRequirementAndList {
                requirements: per_provider,
            })),
        });
        JwtRequirement {
            requires_type: Some(RequiresType::RequiresAny(JwtRequirementOrList {
                requirements: any_provider,
            })),
        }
    };
    Some(JwtAuthentication {
        providers,
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
                ..Default::default()
            }),
            requirement_type: Some(requirement_rule::RequirementType::Requires(requires)),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    })
}

fn provider(model: &MeshModel, proxy: &ProxyView<'_>, rule: &JwtRule) -> JwtProvider {
    let jwks = match (
        &rule.jwks,
        rule.jwks_uri.as_ref().or(rule.jwks_uri_legacy.as_ref()),
    ) {
        (Some(inline), _) => local_jwks(inline),
        (None, Some(uri)) => match jwks_cluster(model, proxy, uri) {
            Some(cluster) => jwt_provider::JwksSourceSpecifier::RemoteJwks(RemoteJwks {
                http_uri: Some(HttpUri {
                    uri: uri.clone(),
                    timeout: Some(duration(
                        rule.timeout.map_or(DEFAULT_JWKS_TIMEOUT, |t| t.as_std()),
                    )),
                    http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster)),
                }),
                // Refetched in the background every `cache_duration` (`async_fetch`).
                cache_duration: Some(duration(model.jwks_refresh_interval)),
                async_fetch: Some(JwksAsyncFetch::default()),
                ..Default::default()
            }),
            None => local_jwks(UNREACHABLE_JWKS),
        },
        // Validation requires one of them; keep the filter valid regardless.
        (None, None) => local_jwks(UNREACHABLE_JWKS),
    };
    JwtProvider {
        issuer: rule.issuer.clone().unwrap_or_default(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token.unwrap_or(false),
        from_headers: rule
            .from_headers
            .iter()
            .map(|h| JwtHeader {
                name: h.name.clone(),
                value_prefix: h.prefix.clone().unwrap_or_default(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| JwtClaimToHeader {
                header_name: c.header.clone(),
                claim_name: c.claim.clone(),
                ..Default::default()
            })
            .collect(),
        payload_in_metadata: PAYLOAD_METADATA_KEY.to_string(),
        normalize_payload_in_metadata: (!rule.space_delimited_claims.is_empty()).then(|| {
            jwt_provider::NormalizePayload {
                space_delimited_claims: rule.space_delimited_claims.clone(),
            }
        }),
        jwks_source_specifier: Some(jwks),
        ..Default::default()
    }
}

fn local_jwks(text: &str) -> jwt_provider::JwksSourceSpecifier {
    jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
        specifier: Some(data_source::Specifier::InlineString(text.to_string())),
        ..Default::default()
    })
}

/// The mesh cluster that reaches a JWKS URI: `outbound|PORT||HOST` of the service with that
/// host and (HTTP) port, if the workload can see it.
fn jwks_cluster(model: &MeshModel, proxy: &ProxyView<'_>, uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, p.parse().ok()?)
        }
        _ => (authority, if scheme == "https" { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    super::scope::visible_services(model, proxy)
        .into_iter()
        .find(|(s, ports)| s.host == host && ports.iter().any(|p| p.number == port))
        .map(|(s, _)| outbound_cluster_name(port, None, &s.host))
}

#[cfg(test)]
mod tests;
