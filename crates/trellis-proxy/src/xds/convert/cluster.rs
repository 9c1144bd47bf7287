//! `Cluster` → [`config::Cluster`].

#![allow(deprecated)]

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3 as proto;
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as upstream_http;
use trellis_xds::type_url;

use super::{ConvertError, Cx, decode_any, join, reject_unsupported};
use crate::config;

/// Envoy's default `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl TryFrom<&proto::Cluster> for config::Cluster {
    type Error = ConvertError;

    fn try_from(c: &proto::Cluster) -> Result<Self, ConvertError> {
        let cx = Cx::new("Cluster", &c.name);
        if c.name.is_empty() {
            return Err(cx.missing("name"));
        }
        reject_unsupported!(cx, "", c, proto::Cluster { name, eds_cluster_config, connect_timeout, lb_policy, load_assignment, typed_extension_protocol_options, cluster_discovery_type }
            unsupported { transport_socket_matches, transport_socket_matcher, alt_stat_name, stats_matcher, per_connection_buffer_limit_bytes, per_connection_buffer_high_watermark_timeout, health_checks, max_requests_per_connection, circuit_breakers, upstream_http_protocol_options, common_http_protocol_options, http_protocol_options, http2_protocol_options, dns_refresh_rate, dns_jitter, dns_failure_refresh_rate, respect_dns_ttl, dns_lookup_family, dns_resolvers, use_tcp_for_dns_lookups, dns_resolution_config, typed_dns_resolver_config, wait_for_warm_on_init, outlier_detection, cleanup_interval, upstream_bind_config, lb_subset_config, common_lb_config, transport_socket, metadata, protocol_selection, upstream_connection_options, close_connections_on_host_health_failure, ignore_health_on_host_removal, filters, load_balancing_policy, lrs_server, lrs_report_endpoint_metrics, track_timeout_budgets, upstream_config, track_cluster_stats, preconnect_policy, connection_pool_per_downstream_connection, queuing_policies, lb_config });

        use proto::cluster::{ClusterDiscoveryType as D, DiscoveryType};
        let kind = match &c.cluster_discovery_type {
            Some(D::Type(t)) => {
                DiscoveryType::try_from(*t).map_err(|_| cx.unsupported_value("type", t))?
            }
            Some(D::ClusterType(_)) => return Err(cx.unsupported_field("cluster_type")),
            None => DiscoveryType::Static,
        };
        let discovery = match kind {
            DiscoveryType::Static => {
                if c.eds_cluster_config.is_some() {
                    return Err(cx.err("eds_cluster_config", "is only allowed with type: EDS"));
                }
                let endpoints = match &c.load_assignment {
                    Some(la) => {
                        super::endpoint::convert_assignment(&cx, "load_assignment", la)?.endpoints
                    }
                    None => Vec::new(),
                };
                config::Discovery::Static(endpoints)
            }
            DiscoveryType::Eds => {
                if c.load_assignment.is_some() {
                    return Err(cx.err("load_assignment", "is only allowed with type: STATIC"));
                }
                let eds = c
                    .eds_cluster_config
                    .as_ref()
                    .ok_or_else(|| cx.missing("eds_cluster_config"))?;
                let proto::cluster::EdsClusterConfig {
                    eds_config,
                    service_name,
                } = eds;
                super::ads_config_source(
                    &cx,
                    "eds_cluster_config.eds_config",
                    eds_config.as_ref(),
                )?;
                let service_name = if service_name.is_empty() {
                    c.name.clone()
                } else {
                    service_name.clone()
                };
                config::Discovery::Eds { service_name }
            }
            other => return Err(cx.unsupported_value("type", other.as_str_name())),
        };

        let connect_timeout = match &c.connect_timeout {
            Some(d) => super::duration(&cx, "connect_timeout", d)?,
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        use proto::cluster::LbPolicy as L;
        let lb_policy = match L::try_from(c.lb_policy) {
            Ok(L::RoundRobin) => config::LbPolicy::RoundRobin,
            Ok(L::LeastRequest) => config::LbPolicy::LeastRequest,
            Ok(L::Random) => config::LbPolicy::Random,
            Ok(other) => return Err(cx.unsupported_value("lb_policy", other.as_str_name())),
            Err(_) => return Err(cx.unsupported_value("lb_policy", c.lb_policy)),
        };

        let mut protocol = config::UpstreamProtocol::Http1;
        for (key, any) in &c.typed_extension_protocol_options {
            let path = format!("typed_extension_protocol_options[{key:?}]");
            if key != type_url::names::HTTP_PROTOCOL_OPTIONS {
                return Err(cx.unsupported_field(&path));
            }
            let options: upstream_http::HttpProtocolOptions =
                decode_any(&cx, &path, any, type_url::HTTP_PROTOCOL_OPTIONS)?;
            protocol = protocol_options(&cx, &path, &options)?;
        }

        Ok(config::Cluster {
            name: c.name.clone(),
            discovery,
            connect_timeout,
            lb_policy,
            protocol,
        })
    }
}

fn protocol_options(
    cx: &Cx,
    path: &str,
    o: &upstream_http::HttpProtocolOptions,
) -> Result<config::UpstreamProtocol, ConvertError> {
    reject_unsupported!(cx, path, o, upstream_http::HttpProtocolOptions { upstream_protocol_options }
        unsupported { common_http_protocol_options, upstream_http_protocol_options, http_filters, header_validation_config, outlier_detection, request_mirror_policies, hash_policy, retry_policy });
    use upstream_http::http_protocol_options::UpstreamProtocolOptions as U;
    use upstream_http::http_protocol_options::explicit_http_config::ProtocolConfig as P;
    let explicit = match &o.upstream_protocol_options {
        Some(U::ExplicitHttpConfig(e)) => e,
        Some(U::UseDownstreamProtocolConfig(_)) => {
            return Err(cx.unsupported_field(&join(path, "use_downstream_protocol_config")));
        }
        Some(U::AutoConfig(_)) => return Err(cx.unsupported_field(&join(path, "auto_config"))),
        None => return Err(cx.missing(&join(path, "explicit_http_config"))),
    };
    let path = join(path, "explicit_http_config");
    match &explicit.protocol_config {
        Some(P::HttpProtocolOptions(h1)) => {
            let path = join(&path, "http_protocol_options");
            reject_unsupported!(cx, &path, h1, core::Http1ProtocolOptions {}
                unsupported { allow_absolute_url, accept_http_10, default_host_for_http_10, header_key_format, enable_trailers, allow_chunked_length, override_stream_error_on_invalid_http_message, send_fully_qualified_url, use_balsa_parser, allow_custom_methods, ignore_http_11_upgrade });
            Ok(config::UpstreamProtocol::Http1)
        }
        Some(P::Http2ProtocolOptions(h2)) => {
            let path = join(&path, "http2_protocol_options");
            reject_unsupported!(cx, &path, h2, core::Http2ProtocolOptions {}
                unsupported { hpack_table_size, max_concurrent_streams, initial_stream_window_size, initial_connection_window_size, allow_connect, allow_metadata, max_outbound_frames, max_outbound_control_frames, max_consecutive_inbound_frames_with_empty_payload, max_inbound_priority_frames_per_stream, max_inbound_window_update_frames_per_data_frame_sent, stream_error_on_invalid_http_messaging, override_stream_error_on_invalid_http_message, custom_settings_parameters, connection_keepalive, use_oghttp2_codec, max_metadata_size, enable_huffman_encoding, max_header_field_size_kb, disallow_obs_text, stream_reset_burst, stream_reset_rate });
            Ok(config::UpstreamProtocol::Http2)
        }
        Some(P::Http3ProtocolOptions(_)) => {
            Err(cx.unsupported_field(&join(&path, "http3_protocol_options")))
        }
        None => Err(cx.missing(&join(&path, "http_protocol_options"))),
    }
}
