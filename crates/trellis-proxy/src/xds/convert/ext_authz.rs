//! `envoy.filters.http.ext_authz` (`envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`) →
//! [`config::ExtAuthz`]: the fields istiod emits for AuthorizationPolicy `CUSTOM` providers,
//! every other field NACKed with its path.

#![allow(deprecated)]

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3 as proto;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use envoy_types::pb::google::protobuf::Any;

use super::{ConvertError, Cx, decode_any, duration, join, reject_unsupported};
use crate::config;

/// The HTTP ext_authz filter's name.
pub const HTTP_EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
/// Its config type.
pub const HTTP_EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";

/// The network ext_authz filter's name.
pub const NETWORK_EXT_AUTHZ: &str = "envoy.filters.network.ext_authz";
/// Its config type.
pub const NETWORK_EXT_AUTHZ_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz";

/// Envoy's `status_on_error` default.
const DEFAULT_STATUS_ON_ERROR: u16 = 403;
/// Envoy's gRPC service timeout when none is given.
const DEFAULT_GRPC_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// The filter's config in an HCM chain.
pub(crate) fn http_ext_authz(
    cx: &Cx,
    path: &str,
    any: &Any,
) -> Result<config::ExtAuthz, ConvertError> {
    let f: proto::ExtAuthz = decode_any(cx, path, any, HTTP_EXT_AUTHZ_TYPE)?;
    reject_unsupported!(cx, path, &f, proto::ExtAuthz { transport_api_version, failure_mode_allow, status_on_error, filter_enabled_metadata, allowed_headers, services, with_request_body }
        unsupported { failure_mode_allow_header_add, clear_route_cache, validate_mutations, metadata_context_namespaces, typed_metadata_context_namespaces, route_metadata_context_namespaces, route_typed_metadata_context_namespaces, filter_enabled, deny_at_disable, include_peer_certificate, stat_prefix, bootstrap_metadata_labels_key, disallowed_headers, include_tls_session, charge_cluster_response_stats, encode_raw_headers, decoder_header_mutation_rules, enable_dynamic_metadata_ingestion, filter_metadata, emit_filter_state_stats, max_denied_response_body_bytes, enforce_response_header_limits, shadow_mode, emit_client_span });
    let service = match &f.services {
        Some(proto::ext_authz::Services::GrpcService(g)) => {
            if f.transport_api_version != core::ApiVersion::V3 as i32 {
                return Err(cx.err(
                    &join(path, "transport_api_version"),
                    "must be V3 for a gRPC service",
                ));
            }
            grpc_service(cx, &join(path, "grpc_service"), g)?
        }
        Some(proto::ext_authz::Services::HttpService(h)) => {
            http_service(cx, &join(path, "http_service"), h)?
        }
        None => return Err(cx.missing(&join(path, "grpc_service"))),
    };
    let status_on_error = match &f.status_on_error {
        None => DEFAULT_STATUS_ON_ERROR,
        Some(s) => {
            let spath = join(path, "status_on_error");
            u16::try_from(s.code)
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| cx.unsupported_value(&join(&spath, "code"), s.code))?
        }
    };
    let filter_enabled_metadata = f
        .filter_enabled_metadata
        .as_ref()
        .map(|m| super::rbac::metadata(cx, &join(path, "filter_enabled_metadata"), m))
        .transpose()?;
    let allowed_headers = f
        .allowed_headers
        .as_ref()
        .map(|l| list(cx, &join(path, "allowed_headers"), l))
        .transpose()?;
    let with_request_body = f
        .with_request_body
        .as_ref()
        .map(|b| body_settings(cx, &join(path, "with_request_body"), b))
        .transpose()?;
    Ok(config::ExtAuthz {
        service,
        failure_mode_allow: f.failure_mode_allow,
        status_on_error,
        filter_enabled_metadata,
        allowed_headers,
        with_request_body,
    })
}

/// `with_request_body`: `max_request_bytes` (more than 0, as Envoy validates),
/// `allow_partial_message`, `pack_as_bytes`.
fn body_settings(
    cx: &Cx,
    path: &str,
    b: &proto::BufferSettings,
) -> Result<config::BodySettings, ConvertError> {
    reject_unsupported!(cx, path, b, proto::BufferSettings { max_request_bytes, allow_partial_message, pack_as_bytes }
        unsupported {});
    if b.max_request_bytes == 0 {
        return Err(cx.err(&join(path, "max_request_bytes"), "must be greater than 0"));
    }
    Ok(config::BodySettings {
        max_request_bytes: b.max_request_bytes,
        allow_partial_message: b.allow_partial_message,
        pack_as_bytes: b.pack_as_bytes,
    })
}

/// The network filter's config before a TCP proxy (gRPC only).
pub(crate) fn network_ext_authz(
    cx: &Cx,
    path: &str,
    any: &Any,
) -> Result<config::ExtAuthz, ConvertError> {
    use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as Network;
    let f: Network = decode_any(cx, path, any, NETWORK_EXT_AUTHZ_TYPE)?;
    reject_unsupported!(cx, path, &f, Network { stat_prefix, grpc_service, failure_mode_allow, transport_api_version, filter_enabled_metadata }
        unsupported { include_peer_certificate, bootstrap_metadata_labels_key, include_tls_session, send_tls_alert_on_denial, metadata_context_namespaces, typed_metadata_context_namespaces, shadow_mode });
    if f.transport_api_version != core::ApiVersion::V3 as i32 {
        return Err(cx.err(&join(path, "transport_api_version"), "must be V3"));
    }
    let gpath = join(path, "grpc_service");
    let g = f.grpc_service.as_ref().ok_or_else(|| cx.missing(&gpath))?;
    let filter_enabled_metadata = f
        .filter_enabled_metadata
        .as_ref()
        .map(|m| super::rbac::metadata(cx, &join(path, "filter_enabled_metadata"), m))
        .transpose()?;
    Ok(config::ExtAuthz {
        service: grpc_service(cx, &gpath, g)?,
        failure_mode_allow: f.failure_mode_allow,
        status_on_error: DEFAULT_STATUS_ON_ERROR,
        filter_enabled_metadata,
        allowed_headers: None,
        with_request_body: None,
    })
}

/// `grpc_service.envoy_grpc{cluster_name, authority}` and `timeout`.
fn grpc_service(
    cx: &Cx,
    path: &str,
    g: &core::GrpcService,
) -> Result<config::ExtAuthzService, ConvertError> {
    reject_unsupported!(cx, path, g, core::GrpcService { timeout, target_specifier }
        unsupported { initial_metadata, retry_policy });
    let target = match &g.target_specifier {
        Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(e)) => e,
        Some(core::grpc_service::TargetSpecifier::GoogleGrpc(_)) => {
            return Err(cx.unsupported_field(&join(path, "google_grpc")));
        }
        None => return Err(cx.missing(&join(path, "envoy_grpc"))),
    };
    let tpath = join(path, "envoy_grpc");
    reject_unsupported!(cx, &tpath, target, core::grpc_service::EnvoyGrpc { cluster_name, authority }
        unsupported { retry_policy, max_receive_message_length, skip_envoy_headers });
    if target.cluster_name.is_empty() {
        return Err(cx.missing(&join(&tpath, "cluster_name")));
    }
    let timeout = match &g.timeout {
        Some(t) => duration(cx, &join(path, "timeout"), t)?,
        None => DEFAULT_GRPC_TIMEOUT,
    };
    Ok(config::ExtAuthzService::Grpc {
        cluster: target.cluster_name.clone(),
        authority: target.authority.clone(),
        timeout,
    })
}

/// `http_service{server_uri{uri, cluster, timeout}, path_prefix, authorization_request,
/// authorization_response}`.
fn http_service(
    cx: &Cx,
    path: &str,
    h: &proto::HttpService,
) -> Result<config::ExtAuthzService, ConvertError> {
    reject_unsupported!(cx, path, h, proto::HttpService { server_uri, path_prefix, authorization_request, authorization_response }
        unsupported { path_override, retry_policy });
    let upath = join(path, "server_uri");
    let uri = h.server_uri.as_ref().ok_or_else(|| cx.missing(&upath))?;
    reject_unsupported!(cx, &upath, uri, core::HttpUri { uri, timeout, http_upstream_type } unsupported {});
    let cluster = match &uri.http_upstream_type {
        Some(core::http_uri::HttpUpstreamType::Cluster(c)) if !c.is_empty() => c.clone(),
        _ => return Err(cx.missing(&join(&upath, "cluster"))),
    };
    let parsed: http::Uri = uri.uri.parse().map_err(|_| {
        cx.err(
            &join(&upath, "uri"),
            format_args!("{:?} is not a URI", uri.uri),
        )
    })?;
    if parsed.authority().is_none() {
        return Err(cx.err(
            &join(&upath, "uri"),
            format_args!("{:?} has no authority", uri.uri),
        ));
    }
    let tpath = join(&upath, "timeout");
    let timeout = duration(
        cx,
        &tpath,
        uri.timeout.as_ref().ok_or_else(|| cx.missing(&tpath))?,
    )?;
    if !h.path_prefix.is_empty() && !h.path_prefix.starts_with('/') {
        return Err(cx.err(&join(path, "path_prefix"), "must start with /"));
    }
    let mut headers_to_add = Vec::new();
    if let Some(r) = &h.authorization_request {
        let rpath = join(path, "authorization_request");
        reject_unsupported!(cx, &rpath, r, proto::AuthorizationRequest { headers_to_add }
            unsupported { allowed_headers });
        for (i, hv) in r.headers_to_add.iter().enumerate() {
            let hpath = format!("{}[{i}]", join(&rpath, "headers_to_add"));
            reject_unsupported!(cx, &hpath, hv, core::HeaderValue { key, value } unsupported { raw_value });
            if http::HeaderName::from_bytes(hv.key.as_bytes()).is_err()
                || http::HeaderValue::from_str(&hv.value).is_err()
            {
                return Err(cx.err(&hpath, "not a valid header"));
            }
            headers_to_add.push((hv.key.clone(), hv.value.clone()));
        }
    }
    let (mut upstream, mut client, mut client_on_success) = (None, None, None);
    if let Some(r) = &h.authorization_response {
        let rpath = join(path, "authorization_response");
        reject_unsupported!(cx, &rpath, r, proto::AuthorizationResponse { allowed_upstream_headers, allowed_client_headers, allowed_client_headers_on_success }
            unsupported { allowed_upstream_headers_to_append, dynamic_metadata_from_headers });
        let opt = |field: &str, l: &Option<matcher::ListStringMatcher>| {
            l.as_ref()
                .map(|l| list(cx, &join(&rpath, field), l))
                .transpose()
        };
        upstream = opt("allowed_upstream_headers", &r.allowed_upstream_headers)?;
        client = opt("allowed_client_headers", &r.allowed_client_headers)?;
        client_on_success = opt(
            "allowed_client_headers_on_success",
            &r.allowed_client_headers_on_success,
        )?;
    }
    Ok(config::ExtAuthzService::Http {
        cluster,
        uri: uri.uri.clone(),
        timeout,
        path_prefix: h.path_prefix.clone(),
        headers_to_add,
        allowed_upstream_headers: upstream,
        allowed_client_headers: client,
        allowed_client_headers_on_success: client_on_success,
    })
}

/// A `ListStringMatcher`'s patterns.
fn list(
    cx: &Cx,
    path: &str,
    l: &matcher::ListStringMatcher,
) -> Result<Vec<config::StringMatch>, ConvertError> {
    l.patterns
        .iter()
        .enumerate()
        .map(|(i, p)| super::route::string_matcher(cx, &format!("{path}.patterns[{i}]"), p))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::r#type::v3::HttpStatus;
    use trellis_xds::to_any;

    fn grpc() -> proto::ExtAuthz {
        proto::ExtAuthz {
            transport_api_version: core::ApiVersion::V3 as i32,
            services: Some(proto::ext_authz::Services::GrpcService(core::GrpcService {
                target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                    core::grpc_service::EnvoyGrpc {
                        cluster_name: "outbound|9000||authz".into(),
                        authority: "outbound_.9000_._.authz".into(),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn convert(f: proto::ExtAuthz) -> Result<config::ExtAuthz, String> {
        let cx = Cx::new("Listener", "l");
        http_ext_authz(&cx, "ext", &to_any(HTTP_EXT_AUTHZ_TYPE, &f)).map_err(|e| e.to_string())
    }

    #[test]
    fn grpc_defaults_are_envoys() {
        let c = convert(grpc()).unwrap();
        assert_eq!(c.status_on_error, 403);
        assert!(!c.failure_mode_allow);
        assert_eq!(
            c.service,
            config::ExtAuthzService::Grpc {
                cluster: "outbound|9000||authz".into(),
                authority: "outbound_.9000_._.authz".into(),
                timeout: DEFAULT_GRPC_TIMEOUT,
            }
        );
        let c = convert(proto::ExtAuthz {
            status_on_error: Some(HttpStatus { code: 503 }),
            failure_mode_allow: true,
            ..grpc()
        })
        .unwrap();
        assert_eq!((c.status_on_error, c.failure_mode_allow), (503, true));
    }

    #[test]
    fn unsupported_fields_and_versions_are_named() {
        let e = convert(proto::ExtAuthz {
            clear_route_cache: true,
            ..grpc()
        })
        .unwrap_err();
        assert!(e.contains("ext.clear_route_cache"), "{e}");
        let e = convert(proto::ExtAuthz {
            transport_api_version: 0,
            ..grpc()
        })
        .unwrap_err();
        assert!(e.contains("ext.transport_api_version: must be V3"), "{e}");
        let e = convert(proto::ExtAuthz {
            with_request_body: Some(proto::BufferSettings {
                pack_as_bytes: true,
                ..Default::default()
            }),
            ..grpc()
        })
        .unwrap_err();
        assert!(e.contains("ext.with_request_body"), "{e}");
    }

    #[test]
    fn http_service_needs_a_cluster_and_a_timeout() {
        let http = |uri: core::HttpUri| proto::ExtAuthz {
            services: Some(proto::ext_authz::Services::HttpService(
                proto::HttpService {
                    server_uri: Some(uri),
                    path_prefix: "/check".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let ok = core::HttpUri {
            uri: "http://authz.test".into(),
            timeout: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 1,
                nanos: 0,
            }),
            http_upstream_type: Some(core::http_uri::HttpUpstreamType::Cluster("c".into())),
        };
        let c = convert(http(ok.clone())).unwrap();
        let config::ExtAuthzService::Http { path_prefix, .. } = c.service else {
            panic!("HTTP service expected");
        };
        assert_eq!(path_prefix, "/check");
        let e = convert(http(core::HttpUri {
            timeout: None,
            ..ok
        }))
        .unwrap_err();
        assert!(e.contains("ext.http_service.server_uri.timeout"), "{e}");
    }
}
