//! `Listener` (with its `HttpConnectionManager`) → [`config::Listener`].

#![allow(deprecated)]

use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3 as proto;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use trellis_xds::type_url;

use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;

use super::{
    ConvertError, Cx, decode_any, ext_authz, filters, join, jwt, rbac, reject_unsupported, tls,
};
use crate::config;

/// The TLS inspector listener filter's name.
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
/// Its config type.
pub const TLS_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
/// The HTTP inspector listener filter's name (protocol sniffing).
pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
/// Its config type (an empty message).
pub const HTTP_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector";
/// The application protocols the HTTP inspector reports, which chains may match.
const DETECTED_APPLICATION_PROTOCOLS: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];

impl TryFrom<&proto::Listener> for config::Listener {
    type Error = ConvertError;

    fn try_from(l: &proto::Listener) -> Result<Self, ConvertError> {
        let cx = Cx::new("Listener", &l.name);
        if l.name.is_empty() {
            return Err(cx.missing("name"));
        }
        reject_unsupported!(cx, "", l, proto::Listener { name, address, filter_chains, listener_filters, use_original_dst, bind_to_port }
            unsupported { additional_addresses, stat_prefix, stats_matcher, fcds_config, filter_chain_matcher, default_filter_chain, per_connection_buffer_limit_bytes, per_connection_buffer_high_watermark_timeout, metadata, deprecated_v1, drain_type, listener_filters_timeout, continue_on_listener_filters_timeout, transparent, freebind, socket_options, tcp_fast_open_queue_length, traffic_direction, udp_listener_config, api_listener, connection_balance_config, reuse_port, enable_reuse_port, access_log, tcp_backlog_size, max_connections_to_accept_per_socket_event, enable_mptcp, ignore_global_conn_limit, bypass_overload_manager, tcp_keepalive, listener_specifier });
        let address = super::socket_address(&cx, "address", l.address.as_ref())?;
        let mut tls_inspector = false;
        let mut http_inspector = false;
        let mut original_dst_filter = false;
        for (i, f) in l.listener_filters.iter().enumerate() {
            let fpath = format!("listener_filters[{i}]");
            reject_unsupported!(cx, &fpath, f, proto::ListenerFilter { name, config_type }
                unsupported { filter_disabled });
            if f.name == super::capture::ORIGINAL_DST {
                super::capture::original_dst_filter(&cx, &fpath, f)?;
                original_dst_filter = true;
                continue;
            }
            if f.name == HTTP_INSPECTOR {
                http_inspector_filter(&cx, &fpath, f)?;
                http_inspector = true;
                continue;
            }
            if f.name != TLS_INSPECTOR {
                return Err(cx.unsupported_value(&join(&fpath, "name"), &f.name));
            }
            match &f.config_type {
                None => {}
                Some(proto::listener_filter::ConfigType::TypedConfig(any)) => {
                    let tpath = join(&fpath, "typed_config");
                    let t: TlsInspector = decode_any(&cx, &tpath, any, TLS_INSPECTOR_TYPE)?;
                    reject_unsupported!(cx, &tpath, &t, TlsInspector {}
                        unsupported { enable_ja3_fingerprinting, enable_ja4_fingerprinting, initial_read_buffer_size, close_connection_on_client_hello_parsing_errors, max_client_hello_size });
                }
                Some(proto::listener_filter::ConfigType::ConfigDiscovery(_)) => {
                    return Err(cx.unsupported_field(&join(&fpath, "config_discovery")));
                }
            }
            tls_inspector = true;
        }
        if l.filter_chains.is_empty() {
            return Err(cx.missing("filter_chains"));
        }
        let mut filter_chains = Vec::with_capacity(l.filter_chains.len());
        for (i, chain) in l.filter_chains.iter().enumerate() {
            let chain = convert_chain(&cx, &format!("filter_chains[{i}]"), chain)?;
            if chain.transport_protocol == Some(config::TransportProtocol::Tls) && !tls_inspector {
                return Err(cx.err(
                    &format!("filter_chains[{i}].filter_chain_match.transport_protocol"),
                    "\"tls\" needs the envoy.filters.listener.tls_inspector listener filter",
                ));
            }
            if !chain.application_protocols.is_empty() && !http_inspector {
                return Err(cx.err(
                    &format!("filter_chains[{i}].filter_chain_match.application_protocols"),
                    "needs the envoy.filters.listener.http_inspector listener filter",
                ));
            }
            // Envoy's rule: no two chains with the same match (a server name, or none, with
            // the same transport protocol).
            let overlaps = |c: &config::FilterChain| {
                c.destination_port == chain.destination_port
                    && c.transport_protocol == chain.transport_protocol
                    && (c.application_protocols.is_empty()
                        && chain.application_protocols.is_empty()
                        || c.application_protocols
                            .iter()
                            .any(|p| chain.application_protocols.contains(p)))
                    && (c.server_names.is_empty() && chain.server_names.is_empty()
                        || c.server_names
                            .iter()
                            .any(|n| chain.server_names.contains(n)))
            };
            if let Some(j) = filter_chains.iter().position(overlaps) {
                return Err(cx.err(
                    &format!("filter_chains[{i}].filter_chain_match"),
                    format_args!("matches the same connections as filter_chains[{j}]"),
                ));
            }
            filter_chains.push(chain);
        }
        Ok(config::Listener {
            name: l.name.clone(),
            address,
            tls_inspector,
            http_inspector,
            filter_chains,
            capture: super::capture::listener_capture(l, original_dst_filter),
        })
    }
}

fn convert_chain(
    cx: &Cx,
    path: &str,
    chain: &proto::FilterChain,
) -> Result<config::FilterChain, ConvertError> {
    reject_unsupported!(cx, path, chain, proto::FilterChain { filters, filter_chain_match, transport_socket, name }
        unsupported { use_proxy_proto, metadata, transport_socket_connect_timeout });
    let mut transport_protocol = None;
    let mut destination_port = None;
    let mut server_names = Vec::new();
    let mut application_protocols = Vec::new();
    if let Some(m) = &chain.filter_chain_match {
        let mpath = join(path, "filter_chain_match");
        reject_unsupported!(cx, &mpath, m, proto::FilterChainMatch { transport_protocol, server_names, destination_port, application_protocols }
            unsupported { prefix_ranges, address_suffix, suffix_len, direct_source_prefix_ranges, source_type, source_prefix_ranges, source_ports });
        for (i, p) in m.application_protocols.iter().enumerate() {
            if !DETECTED_APPLICATION_PROTOCOLS.contains(&p.as_str()) {
                return Err(cx.unsupported_value(
                    &join(&mpath, &format!("application_protocols[{i}]")),
                    format_args!("{p:?}"),
                ));
            }
        }
        application_protocols = m.application_protocols.clone();
        server_names = convert_server_names(cx, &mpath, &m.server_names)?;
        destination_port = super::capture::destination_port(cx, &mpath, m)?;
        transport_protocol = match m.transport_protocol.as_str() {
            "" => None,
            "tls" => Some(config::TransportProtocol::Tls),
            "raw_buffer" => Some(config::TransportProtocol::RawBuffer),
            other => {
                return Err(cx.unsupported_value(
                    &join(&mpath, "transport_protocol"),
                    format_args!("{other:?}"),
                ));
            }
        };
    }
    let tls = match &chain.transport_socket {
        None => None,
        Some(ts) => {
            let tpath = join(path, "transport_socket");
            match tls::transport_socket::<DownstreamTlsContext>(
                cx,
                &tpath,
                ts,
                tls::DOWNSTREAM_TLS_TYPE,
            )? {
                tls::Socket::Raw => None,
                tls::Socket::Tls(d) => {
                    Some(tls::downstream(cx, &join(&tpath, "typed_config"), &d)?)
                }
            }
        }
    };
    if tls.is_some() && transport_protocol == Some(config::TransportProtocol::RawBuffer) {
        return Err(cx.err(
            &join(path, "transport_socket"),
            "TLS cannot be terminated on a chain matching transport_protocol \"raw_buffer\"",
        ));
    }
    // Leading `envoy.filters.network.rbac` (shadow ones, then enforcing ones) and at most one
    // `envoy.filters.network.ext_authz` between them (before a TCP proxy), then one filter.
    let rbac_count = chain
        .filters
        .iter()
        .take_while(|f| f.name == rbac::NETWORK_RBAC || f.name == ext_authz::NETWORK_EXT_AUTHZ)
        .count();
    let mut network_rbac = Vec::with_capacity(rbac_count);
    let mut shadow_rbac = Vec::new();
    let mut network_ext_authz = None;
    let mut stage = 0; // 0: shadow RBAC, 1: ext_authz, 2: enforcing RBAC
    for (i, f) in chain.filters[..rbac_count].iter().enumerate() {
        let fpath = join(path, &format!("filters[{i}]"));
        let any = match &f.config_type {
            Some(proto::filter::ConfigType::TypedConfig(any)) => any,
            Some(proto::filter::ConfigType::ConfigDiscovery(_)) => {
                return Err(cx.unsupported_field(&join(&fpath, "config_discovery")));
            }
            None => return Err(cx.missing(&join(&fpath, "typed_config"))),
        };
        let tpath = join(&fpath, "typed_config");
        let order_error = || {
            cx.err(
                &join(path, "filters"),
                "leading filters must be shadow envoy.filters.network.rbac, at most one envoy.filters.network.ext_authz, then enforcing envoy.filters.network.rbac",
            )
        };
        let this = if f.name == ext_authz::NETWORK_EXT_AUTHZ {
            if network_ext_authz.is_some() {
                return Err(order_error());
            }
            network_ext_authz = Some(ext_authz::network_ext_authz(cx, &tpath, any)?);
            1
        } else {
            match rbac::network_rbac(cx, &tpath, any)? {
                rbac::HttpRbacFilter::Shadow(s) => {
                    shadow_rbac.push(Arc::new(s));
                    0
                }
                rbac::HttpRbacFilter::Enforcing(r) => {
                    network_rbac.push(Arc::new(r));
                    2
                }
            }
        };
        if this < stage {
            return Err(order_error());
        }
        stage = this;
    }
    let network_ext_authz = network_ext_authz.map(|ext_authz| {
        Arc::new(config::NetworkExtAuthz {
            shadow_rbac,
            ext_authz,
        })
    });
    let [filter] = &chain.filters[rbac_count..] else {
        return Err(cx.err(
            &join(path, "filters"),
            format_args!(
                "exactly one filter (after any envoy.filters.network.rbac) is supported, got {}",
                chain.filters.len() - rbac_count
            ),
        ));
    };
    if rbac_count > 0 && filter.name != type_url::names::TCP_PROXY {
        return Err(cx.err(
            &join(path, "filters"),
            "envoy.filters.network.rbac is supported only before envoy.filters.network.tcp_proxy",
        ));
    }
    let path = join(path, &format!("filters[{rbac_count}]"));
    if filter.name != type_url::names::HTTP_CONNECTION_MANAGER
        && filter.name != type_url::names::TCP_PROXY
    {
        return Err(cx.unsupported_value(&join(&path, "name"), &filter.name));
    }
    let any = match &filter.config_type {
        Some(proto::filter::ConfigType::TypedConfig(any)) => any,
        Some(proto::filter::ConfigType::ConfigDiscovery(_)) => {
            return Err(cx.unsupported_field(&join(&path, "config_discovery")));
        }
        None => return Err(cx.missing(&join(&path, "typed_config"))),
    };
    let path = join(&path, "typed_config");
    let (hcm, tcp_proxy) = if filter.name == type_url::names::TCP_PROXY {
        let t = decode_any(cx, &path, any, type_url::TCP_PROXY)?;
        let t = super::tcp::convert_tcp_proxy(cx, &path, &t)?;
        (config::HttpConnectionManager::none(), Some(t))
    } else {
        let manager: hcm::HttpConnectionManager =
            decode_any(cx, &path, any, type_url::HTTP_CONNECTION_MANAGER)?;
        (convert_hcm(cx, &path, &manager)?, None)
    };
    Ok(config::FilterChain {
        name: chain.name.clone(),
        destination_port,
        transport_protocol,
        server_names,
        application_protocols,
        tls,
        hcm,
        tcp_proxy,
        network_rbac,
        network_ext_authz,
    })
}

/// `filter_chain_match.server_names`: exact names or one leading `*.` wildcard, matched
/// case-insensitively (Envoy's forms; a lone `*` is not a server name).
fn convert_server_names(
    cx: &Cx,
    path: &str,
    names: &[String],
) -> Result<Vec<String>, ConvertError> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let wildcard_ok = name.strip_prefix("*.").map_or(!name.contains('*'), |rest| {
            !rest.is_empty() && !rest.contains('*')
        });
        if name.is_empty() || !wildcard_ok {
            return Err(cx.err(
                &join(path, &format!("server_names[{i}]")),
                format_args!("{name:?} is not a server name or *.suffix"),
            ));
        }
        out.push(name.to_ascii_lowercase());
    }
    Ok(out)
}

fn convert_hcm(
    cx: &Cx,
    path: &str,
    m: &hcm::HttpConnectionManager,
) -> Result<config::HttpConnectionManager, ConvertError> {
    reject_unsupported!(cx, path, m, hcm::HttpConnectionManager { codec_type, stat_prefix, http_filters, route_specifier, forward_client_cert_details, set_current_client_cert_details, access_log, tracing, normalize_path, merge_slashes, path_with_escaped_slashes_action, upgrade_configs, http_protocol_options }
        unsupported { add_user_agent, common_http_protocol_options, http1_safe_max_connection_duration, http2_protocol_options, http3_protocol_options, server_name, server_header_transformation, scheme_header_transformation, max_request_headers_kb, stream_idle_timeout, stream_flush_timeout, request_timeout, request_headers_timeout, drain_timeout, drain_timeout_jitter, delayed_close_timeout, access_log_flush_interval, flush_access_log_on_new_request, access_log_options, use_remote_address, xff_num_trusted_hops, original_ip_detection_extensions, early_header_mutation_extensions, internal_address_config, skip_xff_append, via, generate_request_id, preserve_external_request_id, always_set_request_id_in_response, forward_client_cert_matcher, proxy_100_continue, represent_ipv4_remote_address_as_ipv4_mapped_ipv6, request_id_extension, local_reply_config, strip_matching_host_port, stream_error_on_invalid_http_message, path_normalization_options, strip_trailing_host_dot, proxy_status_config, typed_header_validation_config, append_x_forwarded_port, append_local_overload, add_proxy_protocol_connection_state, forward_proto_config, strip_port_mode });
    if m.codec_type != hcm::http_connection_manager::CodecType::Auto as i32 {
        let name = hcm::http_connection_manager::CodecType::try_from(m.codec_type)
            .map(|c| c.as_str_name().to_string())
            .unwrap_or_else(|_| m.codec_type.to_string());
        return Err(cx.unsupported_value(&join(path, "codec_type"), name));
    }
    let http_filters = convert_http_filters(cx, path, &m.http_filters)?;
    use hcm::http_connection_manager::RouteSpecifier as R;
    let routes = match &m.route_specifier {
        Some(R::Rds(rds)) => {
            let rpath = join(path, "rds");
            super::ads_config_source(
                cx,
                &join(&rpath, "config_source"),
                rds.config_source.as_ref(),
            )?;
            if rds.route_config_name.is_empty() {
                return Err(cx.missing(&join(&rpath, "route_config_name")));
            }
            config::RouteSource::Rds(rds.route_config_name.clone())
        }
        Some(R::RouteConfig(rc)) => {
            let table = super::route::convert_route_table(cx, &join(path, "route_config"), rc)?;
            config::RouteSource::Inline(Arc::new(table))
        }
        Some(R::ScopedRoutes(_)) => return Err(cx.unsupported_field(&join(path, "scoped_routes"))),
        None => return Err(cx.missing(&join(path, "rds"))),
    };
    let forward_client_cert = forward_client_cert(cx, path, m)?;
    let path_normalization = path_normalization(cx, path, m)?;
    Ok(config::HttpConnectionManager {
        stat_prefix: m.stat_prefix.clone(),
        routes,
        http_filters,
        forward_client_cert,
        access_log: super::access_log::access_logs(cx, path, &m.access_log)?,
        tracing: m
            .tracing
            .as_ref()
            .map(|t| super::tracing::tracing(cx, &join(path, "tracing"), t))
            .transpose()?,
        path_normalization,
        upgrade_types: super::upgrade::upgrade_types(cx, path, &m.upgrade_configs)?,
        preserve_header_case: match &m.http_protocol_options {
            Some(o) => super::header_case::preserve_header_case(
                cx,
                &join(path, "http_protocol_options"),
                o,
            )?,
            None => false,
        },
    })
}

/// `normalize_path` (absent: false), `merge_slashes`, and `path_with_escaped_slashes_action`
/// `KEEP_UNCHANGED` (or unset, which Envoy treats the same by default) or
/// `UNESCAPE_AND_FORWARD` (Istio's `DECODE_AND_MERGE_SLASHES`).
fn path_normalization(
    cx: &Cx,
    path: &str,
    m: &hcm::HttpConnectionManager,
) -> Result<config::PathNormalization, ConvertError> {
    use hcm::http_connection_manager::PathWithEscapedSlashesAction as A;
    let action = m.path_with_escaped_slashes_action;
    let unescape_slashes = match A::try_from(action) {
        Ok(A::ImplementationSpecificDefault | A::KeepUnchanged) => false,
        Ok(A::UnescapeAndForward) => true,
        other => {
            let name = other
                .map(|a| a.as_str_name().to_string())
                .unwrap_or_else(|_| action.to_string());
            return Err(cx.unsupported_value(&join(path, "path_with_escaped_slashes_action"), name));
        }
    };
    Ok(config::PathNormalization {
        normalize_path: m.normalize_path.as_ref().is_some_and(|b| b.value),
        merge_slashes: m.merge_slashes,
        unescape_slashes,
    })
}

/// `forward_client_cert_details`: `SANITIZE` (the default) or `SANITIZE_SET` with
/// `set_current_client_cert_details{uri: true}`.
fn forward_client_cert(
    cx: &Cx,
    path: &str,
    m: &hcm::HttpConnectionManager,
) -> Result<config::ForwardClientCert, ConvertError> {
    use hcm::http_connection_manager::ForwardClientCertDetails as F;
    let fpath = join(path, "forward_client_cert_details");
    let mode = F::try_from(m.forward_client_cert_details)
        .map_err(|_| cx.unsupported_value(&fpath, m.forward_client_cert_details))?;
    let details_path = join(path, "set_current_client_cert_details");
    match mode {
        F::Sanitize => {
            if m.set_current_client_cert_details.is_some() {
                return Err(cx.err(&details_path, "only applies to SANITIZE_SET"));
            }
            Ok(config::ForwardClientCert::Sanitize)
        }
        F::SanitizeSet => {
            let d = m
                .set_current_client_cert_details
                .as_ref()
                .ok_or_else(|| cx.missing(&details_path))?;
            reject_unsupported!(cx, &details_path, d, hcm::http_connection_manager::SetCurrentClientCertDetails { uri }
                unsupported { subject, cert, chain, dns, issuer, format });
            if !d.uri {
                return Err(cx.err(&join(&details_path, "uri"), "must be true"));
            }
            Ok(config::ForwardClientCert::SanitizeSetUri)
        }
        other => Err(cx.unsupported_value(&fpath, other.as_str_name())),
    }
}

/// `http_filters`: an in-order subsequence of `[jwt_authn, rbac (shadow rules only),
/// ext_authz, rbac, fault, cors, istio.stats, router]` that ends with the router; both kinds of
/// `rbac` may repeat (Istio's CUSTOM shadow filter, then its AUDIT, DENY and ALLOW filters).
/// `is_optional` is accepted on `istio.stats` only (a stock Envoy skips that one).
fn convert_http_filters(
    cx: &Cx,
    path: &str,
    filters: &[hcm::HttpFilter],
) -> Result<config::HttpFilters, ConvertError> {
    const SHADOW_RBAC: &str = "envoy.filters.http.rbac (shadow_rules only)";
    const ORDER: [&str; 8] = [
        jwt::JWT_AUTHN,
        SHADOW_RBAC,
        ext_authz::HTTP_EXT_AUTHZ,
        rbac::HTTP_RBAC,
        filters::FAULT,
        filters::CORS,
        trellis_xds::stats::STATS_FILTER,
        type_url::names::ROUTER,
    ];
    let order_error = || {
        cx.err(
            &join(path, "http_filters"),
            format_args!(
                "filters must be an in-order subset of [{}] ending with {}",
                ORDER.join(", "),
                type_url::names::ROUTER
            ),
        )
    };
    let mut out = config::HttpFilters::default();
    let mut next = 0;
    for (i, filter) in filters.iter().enumerate() {
        let fpath = join(path, &format!("http_filters[{i}]"));
        if filter.name == trellis_xds::stats::STATS_FILTER {
            reject_unsupported!(cx, &fpath, filter, hcm::HttpFilter { name, config_type, is_optional }
                unsupported { disabled });
        } else {
            reject_unsupported!(cx, &fpath, filter, hcm::HttpFilter { name, config_type }
                unsupported { is_optional, disabled });
        }
        let any = match &filter.config_type {
            None => None,
            Some(hcm::http_filter::ConfigType::TypedConfig(any)) => Some(any),
            Some(hcm::http_filter::ConfigType::ConfigDiscovery(_)) => {
                return Err(cx.unsupported_field(&join(&fpath, "config_discovery")));
            }
        };
        let tpath = join(&fpath, "typed_config");
        // An RBAC filter's place depends on its kind, known once converted.
        let converted_rbac = if filter.name == rbac::HTTP_RBAC {
            let any = any.ok_or_else(|| cx.missing(&tpath))?;
            Some(rbac::http_rbac(cx, &tpath, any)?)
        } else {
            None
        };
        let pos = match &converted_rbac {
            Some(rbac::HttpRbacFilter::Shadow(_)) => 1,
            Some(rbac::HttpRbacFilter::Enforcing(_)) => 3,
            None => ORDER
                .iter()
                .position(|n| *n == filter.name)
                .filter(|p| *p != 1 && *p != 3)
                .ok_or_else(|| cx.unsupported_value(&join(&fpath, "name"), &filter.name))?,
        };
        let repeated_rbac = (pos == 1 || pos == 3) && next == pos + 1;
        if (pos < next && !repeated_rbac) || (pos + 1 < ORDER.len() && i + 1 == filters.len()) {
            return Err(order_error());
        }
        next = pos + 1;
        match (ORDER[pos], converted_rbac) {
            (_, Some(rbac::HttpRbacFilter::Shadow(s))) => out.shadow_rbac.push(Arc::new(s)),
            (_, Some(rbac::HttpRbacFilter::Enforcing(r))) => out.rbac.push(Arc::new(r)),
            (jwt::JWT_AUTHN, None) => {
                let any = any.ok_or_else(|| cx.missing(&tpath))?;
                out.jwt_authn = Some(Arc::new(jwt::jwt_authentication(cx, &tpath, any)?));
            }
            (ext_authz::HTTP_EXT_AUTHZ, None) => {
                let any = any.ok_or_else(|| cx.missing(&tpath))?;
                out.ext_authz = Some(Arc::new(ext_authz::http_ext_authz(cx, &tpath, any)?));
            }
            (filters::FAULT, None) => {
                if let Some(any) = any {
                    filters::fault_filter(cx, &tpath, any)?;
                }
                out.fault = true;
            }
            (filters::CORS, None) => {
                if let Some(any) = any {
                    filters::cors_filter(cx, &tpath, any)?;
                }
                out.cors = true;
            }
            (trellis_xds::stats::STATS_FILTER, None) => {
                let any = any.ok_or_else(|| cx.missing(&tpath))?;
                out.stats = Some(Arc::new(super::stats::stats_filter(cx, &tpath, any)?));
            }
            _ => {
                if let Some(any) = any {
                    let router: Router = decode_any(cx, &tpath, any, type_url::ROUTER)?;
                    reject_unsupported!(cx, &tpath, &router, Router {}
                        unsupported { dynamic_stats, start_child_span, upstream_log, upstream_log_options, suppress_envoy_headers, strict_check_headers, respect_expected_rq_timeout, suppress_grpc_request_failure_code_stats, upstream_http_filters, reject_connect_request_early_data });
                }
            }
        }
    }
    if next != ORDER.len() {
        return Err(order_error());
    }
    Ok(out)
}

/// `envoy.filters.listener.http_inspector`: no settings (an empty `HttpInspector`, or none).
fn http_inspector_filter(
    cx: &Cx,
    path: &str,
    f: &proto::ListenerFilter,
) -> Result<(), ConvertError> {
    match &f.config_type {
        None => Ok(()),
        Some(proto::listener_filter::ConfigType::TypedConfig(any)) => {
            let tpath = join(path, "typed_config");
            if any.type_url != HTTP_INSPECTOR_TYPE {
                return Err(cx.unsupported_value(&join(&tpath, "type_url"), &any.type_url));
            }
            if !any.value.is_empty() {
                return Err(cx.err(&tpath, "HttpInspector has no supported fields"));
            }
            Ok(())
        }
        Some(proto::listener_filter::ConfigType::ConfigDiscovery(_)) => {
            Err(cx.unsupported_field(&join(path, "config_discovery")))
        }
    }
}
