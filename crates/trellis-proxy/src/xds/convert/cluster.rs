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

/// Envoy's default `dns_refresh_rate`.
const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);

impl TryFrom<&proto::Cluster> for config::Cluster {
    type Error = ConvertError;

    fn try_from(c: &proto::Cluster) -> Result<Self, ConvertError> {
        let cx = Cx::new("Cluster", &c.name);
        if c.name.is_empty() {
            return Err(cx.missing("name"));
        }
        reject_unsupported!(cx, "", c, proto::Cluster { name, upstream_bind_config, eds_cluster_config, connect_timeout, lb_policy, load_assignment, typed_extension_protocol_options, cluster_discovery_type, circuit_breakers, outlier_detection, common_lb_config, lb_config, upstream_connection_options, dns_refresh_rate, dns_lookup_family, respect_dns_ttl, transport_socket_matches, transport_socket }
            unsupported { transport_socket_matcher, alt_stat_name, stats_matcher, per_connection_buffer_limit_bytes, per_connection_buffer_high_watermark_timeout, health_checks, max_requests_per_connection, upstream_http_protocol_options, common_http_protocol_options, http_protocol_options, http2_protocol_options, dns_jitter, dns_failure_refresh_rate, dns_resolvers, use_tcp_for_dns_lookups, dns_resolution_config, typed_dns_resolver_config, wait_for_warm_on_init, cleanup_interval, lb_subset_config, metadata, protocol_selection, close_connections_on_host_health_failure, ignore_health_on_host_removal, filters, load_balancing_policy, lrs_server, lrs_report_endpoint_metrics, track_timeout_budgets, upstream_config, track_cluster_stats, preconnect_policy, connection_pool_per_downstream_connection, queuing_policies });

        use proto::cluster::{ClusterDiscoveryType as D, DiscoveryType};
        let kind = match &c.cluster_discovery_type {
            Some(D::Type(t)) => {
                DiscoveryType::try_from(*t).map_err(|_| cx.unsupported_value("type", t))?
            }
            Some(D::ClusterType(_)) => return Err(cx.unsupported_field("cluster_type")),
            None => DiscoveryType::Static,
        };
        let is_dns = matches!(kind, DiscoveryType::StrictDns | DiscoveryType::LogicalDns);
        if !is_dns {
            for (set, field) in [
                (c.dns_refresh_rate.is_some(), "dns_refresh_rate"),
                (c.dns_lookup_family != 0, "dns_lookup_family"),
                (c.respect_dns_ttl, "respect_dns_ttl"),
            ] {
                if set {
                    return Err(cx.err(
                        field,
                        "is only allowed with type: STRICT_DNS or LOGICAL_DNS",
                    ));
                }
            }
        }
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
                    return Err(cx.err(
                        "load_assignment",
                        "is only allowed with type: STATIC, STRICT_DNS or LOGICAL_DNS",
                    ));
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
            DiscoveryType::StrictDns | DiscoveryType::LogicalDns => {
                if c.eds_cluster_config.is_some() {
                    return Err(cx.err("eds_cluster_config", "is only allowed with type: EDS"));
                }
                dns_discovery(&cx, c, kind == DiscoveryType::LogicalDns)?
            }
            DiscoveryType::OriginalDst => {
                if c.eds_cluster_config.is_some() {
                    return Err(cx.err("eds_cluster_config", "is only allowed with type: EDS"));
                }
                if c.load_assignment.is_some() {
                    return Err(cx.err(
                        "load_assignment",
                        "is only allowed with type: STATIC, STRICT_DNS or LOGICAL_DNS",
                    ));
                }
                let use_http_header = match &c.lb_config {
                    Some(proto::cluster::LbConfig::OriginalDstLbConfig(o)) => {
                        let path = "original_dst_lb_config";
                        reject_unsupported!(cx, path, o, proto::cluster::OriginalDstLbConfig { use_http_header }
                            unsupported { http_header_name, upstream_port_override, metadata_key });
                        o.use_http_header
                    }
                    _ => false,
                };
                config::Discovery::OriginalDst { use_http_header }
            }
        };

        let connect_timeout = match &c.connect_timeout {
            Some(d) => super::duration(&cx, "connect_timeout", d)?,
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        let (lb_policy, slow_start) = lb_policy(&cx, c)?;
        let original_dst = kind == DiscoveryType::OriginalDst;
        if original_dst != (lb_policy == config::LbPolicy::ClusterProvided) {
            return Err(cx.err(
                "lb_policy",
                "CLUSTER_PROVIDED goes with type: ORIGINAL_DST, and ORIGINAL_DST needs CLUSTER_PROVIDED",
            ));
        }

        let mut out = config::Cluster::with_defaults(
            c.name.clone(),
            discovery,
            lb_policy,
            config::UpstreamProtocol::Http1,
        );
        out.connect_timeout = connect_timeout;
        out.slow_start = slow_start;
        if let Some(b) = &c.upstream_bind_config {
            out.upstream_bind = Some(super::capture::upstream_bind(&cx, b)?);
        }
        if let Some(ts) = &c.transport_socket {
            out.transport_socket = upstream_socket(&cx, "transport_socket", ts)?;
        }
        for (i, m) in c.transport_socket_matches.iter().enumerate() {
            let path = format!("transport_socket_matches[{i}]");
            reject_unsupported!(cx, &path, m, proto::cluster::TransportSocketMatch { name, r#match, transport_socket }
                unsupported {});
            let matcher = match &m.r#match {
                Some(st) => string_struct(&cx, &join(&path, "match"), st)?,
                None => Default::default(),
            };
            let tpath = join(&path, "transport_socket");
            let socket = upstream_socket(
                &cx,
                &tpath,
                m.transport_socket
                    .as_ref()
                    .ok_or_else(|| cx.missing(&tpath))?,
            )?;
            out.transport_socket_matches
                .push(config::TransportSocketMatch {
                    name: m.name.clone(),
                    matcher,
                    socket,
                });
        }
        for (key, any) in &c.typed_extension_protocol_options {
            let path = format!("typed_extension_protocol_options[{key:?}]");
            if key != type_url::names::HTTP_PROTOCOL_OPTIONS {
                return Err(cx.unsupported_field(&path));
            }
            let options: upstream_http::HttpProtocolOptions =
                decode_any(&cx, &path, any, type_url::HTTP_PROTOCOL_OPTIONS)?;
            protocol_options(&cx, &path, &options, &mut out)?;
        }
        if let Some(cb) = &c.circuit_breakers {
            out.circuit_breakers = circuit_breakers(&cx, cb)?;
        }
        if let Some(od) = &c.outlier_detection {
            out.outlier_detection = Some(outlier_detection(&cx, od)?);
        }
        if let Some(common) = &c.common_lb_config {
            common_lb_config(&cx, common, &mut out)?;
        }
        if let Some(uco) = &c.upstream_connection_options {
            let path = "upstream_connection_options";
            reject_unsupported!(cx, path, uco, proto::UpstreamConnectionOptions { tcp_keepalive }
                unsupported { set_local_interface_name_on_upstream_connections, happy_eyeballs_config });
            if let Some(k) = &uco.tcp_keepalive {
                let core::TcpKeepalive {
                    keepalive_probes: _,
                    keepalive_time: _,
                    keepalive_interval: _,
                } = k;
                out.connection_pool.tcp_keepalive = Some(config::TcpKeepalive {
                    probes: k.keepalive_probes.map(|v| v.value),
                    time: k
                        .keepalive_time
                        .map(|v| Duration::from_secs(v.value.into())),
                    interval: k
                        .keepalive_interval
                        .map(|v| Duration::from_secs(v.value.into())),
                });
            }
        }
        Ok(out)
    }
}

fn dns_discovery(
    cx: &Cx,
    c: &proto::Cluster,
    logical: bool,
) -> Result<config::Discovery, ConvertError> {
    use proto::cluster::DnsLookupFamily as F;
    let lookup_family = match F::try_from(c.dns_lookup_family) {
        Ok(F::Auto) => config::DnsLookupFamily::Auto,
        Ok(F::V4Only) => config::DnsLookupFamily::V4Only,
        Ok(F::V6Only) => config::DnsLookupFamily::V6Only,
        Ok(F::V4Preferred) => config::DnsLookupFamily::V4Preferred,
        Ok(F::All) => config::DnsLookupFamily::All,
        Err(_) => return Err(cx.unsupported_value("dns_lookup_family", c.dns_lookup_family)),
    };
    let refresh_rate = match &c.dns_refresh_rate {
        Some(d) => super::duration(cx, "dns_refresh_rate", d)?,
        None => DEFAULT_DNS_REFRESH_RATE,
    };
    if refresh_rate < Duration::from_millis(1) {
        return Err(cx.err("dns_refresh_rate", "must be at least 1ms"));
    }
    let la = c
        .load_assignment
        .as_ref()
        .ok_or_else(|| cx.missing("load_assignment"))?;
    let mut hosts = Vec::new();
    super::endpoint::for_each_endpoint(cx, "load_assignment", la, |epath, endpoint, template| {
        use core::address::Address as A;
        let path = join(epath, "address");
        let sa = match endpoint.address.as_ref().and_then(|a| a.address.as_ref()) {
            Some(A::SocketAddress(sa)) => sa,
            Some(A::Pipe(_)) => return Err(cx.unsupported_field(&join(&path, "pipe"))),
            Some(A::EnvoyInternalAddress(_)) => {
                return Err(cx.unsupported_field(&join(&path, "envoy_internal_address")));
            }
            None => return Err(cx.missing(&join(&path, "socket_address"))),
        };
        let path = join(&path, "socket_address");
        reject_unsupported!(cx, &path, sa, core::SocketAddress { address, port_specifier }
            unsupported { protocol, resolver_name, ipv4_compat, network_namespace_filepath });
        if sa.address.is_empty() {
            return Err(cx.missing(&join(&path, "address")));
        }
        let port = super::socket_port(cx, &path, sa)?;
        hosts.push(config::DnsHost {
            hostname: sa.address.clone(),
            port,
            template,
        });
        Ok(())
    })?;
    if logical && hosts.len() != 1 {
        return Err(cx.err("load_assignment", "LOGICAL_DNS needs exactly one endpoint"));
    }
    Ok(config::Discovery::Dns {
        logical,
        lookup_family,
        refresh_rate,
        hosts,
    })
}

fn lb_policy(
    cx: &Cx,
    c: &proto::Cluster,
) -> Result<(config::LbPolicy, Option<config::SlowStart>), ConvertError> {
    use proto::cluster::LbConfig as C;
    use proto::cluster::LbPolicy as L;
    let policy =
        L::try_from(c.lb_policy).map_err(|_| cx.unsupported_value("lb_policy", c.lb_policy))?;
    let mismatch = |field: &str| {
        cx.err(
            field,
            format_args!("does not apply to lb_policy {}", policy.as_str_name()),
        )
    };
    let mut slow_start = None;
    let out = match policy {
        L::RoundRobin => {
            match &c.lb_config {
                None => {}
                Some(C::RoundRobinLbConfig(rr)) => {
                    let path = "round_robin_lb_config";
                    reject_unsupported!(cx, path, rr, proto::cluster::RoundRobinLbConfig { slow_start_config }
                        unsupported {});
                    if let Some(ss) = &rr.slow_start_config {
                        slow_start = slow_start_config(cx, &join(path, "slow_start_config"), ss)?;
                    }
                }
                Some(other) => return Err(mismatch(lb_config_name(other))),
            }
            config::LbPolicy::RoundRobin
        }
        L::LeastRequest => {
            match &c.lb_config {
                None => {}
                Some(C::LeastRequestLbConfig(lr)) => {
                    let path = "least_request_lb_config";
                    reject_unsupported!(cx, path, lr, proto::cluster::LeastRequestLbConfig { slow_start_config }
                        unsupported { choice_count, active_request_bias });
                    if let Some(ss) = &lr.slow_start_config {
                        slow_start = slow_start_config(cx, &join(path, "slow_start_config"), ss)?;
                    }
                }
                Some(other) => return Err(mismatch(lb_config_name(other))),
            }
            config::LbPolicy::LeastRequest
        }
        L::Random => {
            if let Some(other) = &c.lb_config {
                return Err(mismatch(lb_config_name(other)));
            }
            config::LbPolicy::Random
        }
        L::RingHash => {
            let (mut min, mut max) = (1024u64, 8 * 1024 * 1024u64);
            match &c.lb_config {
                None => {}
                Some(C::RingHashLbConfig(rh)) => {
                    let path = "ring_hash_lb_config";
                    let proto::cluster::RingHashLbConfig {
                        minimum_ring_size: _,
                        maximum_ring_size: _,
                        hash_function: _,
                    } = rh;
                    use proto::cluster::ring_hash_lb_config::HashFunction as H;
                    match H::try_from(rh.hash_function) {
                        Ok(H::XxHash) => {}
                        Ok(other) => {
                            return Err(cx.unsupported_value(
                                &join(path, "hash_function"),
                                other.as_str_name(),
                            ));
                        }
                        Err(_) => {
                            return Err(cx.unsupported_value(
                                &join(path, "hash_function"),
                                rh.hash_function,
                            ));
                        }
                    }
                    if let Some(v) = rh.minimum_ring_size {
                        min = v.value;
                    }
                    if let Some(v) = rh.maximum_ring_size {
                        max = v.value;
                    }
                    if min == 0 || max > 8 * 1024 * 1024 || min > max {
                        return Err(cx.err(
                            path,
                            format_args!("ring sizes must satisfy 0 < minimum_ring_size ({min}) <= maximum_ring_size ({max}) <= 8388608"),
                        ));
                    }
                }
                Some(other) => return Err(mismatch(lb_config_name(other))),
            }
            config::LbPolicy::RingHash {
                minimum_ring_size: min,
                maximum_ring_size: max,
            }
        }
        L::Maglev => {
            let mut table_size = 65537u64;
            match &c.lb_config {
                None => {}
                Some(C::MaglevLbConfig(m)) => {
                    let path = "maglev_lb_config";
                    let proto::cluster::MaglevLbConfig { table_size: _ } = m;
                    if let Some(v) = m.table_size {
                        table_size = v.value;
                    }
                    if !is_prime(table_size) || table_size > 5_000_011 {
                        return Err(cx.err(
                            &join(path, "table_size"),
                            format_args!("{table_size} must be a prime no larger than 5000011"),
                        ));
                    }
                }
                Some(other) => return Err(mismatch(lb_config_name(other))),
            }
            config::LbPolicy::Maglev { table_size }
        }
        L::ClusterProvided => {
            match &c.lb_config {
                None | Some(C::OriginalDstLbConfig(_)) => {}
                Some(other) => return Err(mismatch(lb_config_name(other))),
            }
            config::LbPolicy::ClusterProvided
        }
        other => return Err(cx.unsupported_value("lb_policy", other.as_str_name())),
    };
    if !matches!(policy, L::ClusterProvided)
        && let Some(C::OriginalDstLbConfig(_)) = &c.lb_config
    {
        return Err(mismatch("original_dst_lb_config"));
    }
    Ok((out, slow_start))
}

/// An upstream transport socket: raw buffer or `UpstreamTlsContext`.
fn upstream_socket(
    cx: &Cx,
    path: &str,
    ts: &core::TransportSocket,
) -> Result<config::TransportSocket, ConvertError> {
    use super::tls;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
    match tls::transport_socket::<UpstreamTlsContext>(cx, path, ts, tls::UPSTREAM_TLS_TYPE)? {
        tls::Socket::Raw => Ok(config::TransportSocket::RawBuffer),
        tls::Socket::Tls(u) => Ok(config::TransportSocket::Tls(tls::upstream(
            cx,
            &join(path, "typed_config"),
            &u,
        )?)),
    }
}

/// A `Struct` whose values are all strings (transport socket match criteria and metadata).
pub(crate) fn string_struct(
    cx: &Cx,
    path: &str,
    st: &envoy_types::pb::google::protobuf::Struct,
) -> Result<std::collections::BTreeMap<String, String>, ConvertError> {
    use envoy_types::pb::google::protobuf::value::Kind;
    st.fields
        .iter()
        .map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(s)) => Ok((k.clone(), s.clone())),
            _ => Err(cx.err(
                &format!("{path}[{k:?}]"),
                "only string values are supported",
            )),
        })
        .collect()
}

fn lb_config_name(c: &proto::cluster::LbConfig) -> &'static str {
    use proto::cluster::LbConfig as C;
    match c {
        C::RingHashLbConfig(_) => "ring_hash_lb_config",
        C::MaglevLbConfig(_) => "maglev_lb_config",
        C::OriginalDstLbConfig(_) => "original_dst_lb_config",
        C::LeastRequestLbConfig(_) => "least_request_lb_config",
        C::RoundRobinLbConfig(_) => "round_robin_lb_config",
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut i = 2;
    while i * i <= n {
        if n.is_multiple_of(i) {
            return false;
        }
        i += 1;
    }
    true
}

fn slow_start_config(
    cx: &Cx,
    path: &str,
    ss: &proto::cluster::SlowStartConfig,
) -> Result<Option<config::SlowStart>, ConvertError> {
    let proto::cluster::SlowStartConfig {
        slow_start_window: _,
        aggression: _,
        min_weight_percent: _,
    } = ss;
    let Some(window) = &ss.slow_start_window else {
        // Envoy: no window, no slow start.
        return Ok(None);
    };
    let window = super::duration(cx, &join(path, "slow_start_window"), window)?;
    let aggression = match &ss.aggression {
        Some(a) => {
            let ap = join(path, "aggression");
            if !a.runtime_key.is_empty() {
                return Err(cx.unsupported_field(&join(&ap, "runtime_key")));
            }
            if a.default_value.is_nan() || a.default_value <= 0.0 || !a.default_value.is_finite() {
                return Err(cx.err(&join(&ap, "default_value"), "must be greater than 0"));
            }
            a.default_value
        }
        None => 1.0,
    };
    let min_weight_percent = match &ss.min_weight_percent {
        Some(p) if (0.0..=100.0).contains(&p.value) => p.value,
        Some(_) => return Err(cx.err(&join(path, "min_weight_percent"), "must be within [0, 100]")),
        None => 10.0,
    };
    if window.is_zero() {
        return Ok(None);
    }
    Ok(Some(config::SlowStart {
        window,
        aggression,
        min_weight_percent,
    }))
}

fn u32_or(v: Option<envoy_types::pb::google::protobuf::UInt32Value>, default: u32) -> u32 {
    v.map_or(default, |v| v.value)
}

fn circuit_breakers(
    cx: &Cx,
    cb: &proto::CircuitBreakers,
) -> Result<config::CircuitBreakers, ConvertError> {
    reject_unsupported!(cx, "circuit_breakers", cb, proto::CircuitBreakers { thresholds }
        unsupported { per_host_thresholds });
    let mut out = config::CircuitBreakers::default();
    for (i, t) in cb.thresholds.iter().enumerate() {
        let path = format!("circuit_breakers.thresholds[{i}]");
        reject_unsupported!(cx, &path, t, proto::circuit_breakers::Thresholds { priority, max_connections, max_pending_requests, max_requests, max_retries }
            unsupported { retry_budget, track_remaining, max_connection_pools });
        if t.priority != core::RoutingPriority::Default as i32 {
            return Err(cx.unsupported_value(
                &join(&path, "priority"),
                core::RoutingPriority::try_from(t.priority)
                    .map_or_else(|_| t.priority.to_string(), |p| p.as_str_name().to_string()),
            ));
        }
        out = config::CircuitBreakers {
            max_connections: u32_or(t.max_connections, 1024),
            max_pending_requests: u32_or(t.max_pending_requests, 1024),
            max_requests: u32_or(t.max_requests, 1024),
            max_retries: u32_or(t.max_retries, 3),
        };
    }
    Ok(out)
}

fn outlier_detection(
    cx: &Cx,
    od: &proto::OutlierDetection,
) -> Result<config::OutlierDetection, ConvertError> {
    let path = "outlier_detection";
    reject_unsupported!(cx, path, od, proto::OutlierDetection { consecutive_5xx, interval, base_ejection_time, max_ejection_percent, enforcing_consecutive_5xx, enforcing_success_rate, enforcing_local_origin_success_rate, consecutive_gateway_failure, enforcing_consecutive_gateway_failure, split_external_local_origin_errors, consecutive_local_origin_failure, enforcing_consecutive_local_origin_failure, max_ejection_time }
        unsupported { success_rate_minimum_hosts, success_rate_request_volume, success_rate_stdev_factor, failure_percentage_threshold, enforcing_failure_percentage, enforcing_failure_percentage_local_origin, failure_percentage_minimum_hosts, failure_percentage_request_volume, max_ejection_time_jitter, successful_active_health_check_uneject_host, monitors, always_eject_one_host, detect_degraded_hosts });
    for (field, v) in [
        ("enforcing_success_rate", od.enforcing_success_rate),
        (
            "enforcing_local_origin_success_rate",
            od.enforcing_local_origin_success_rate,
        ),
    ] {
        if v.is_some_and(|v| v.value != 0) {
            return Err(cx.err(
                &join(path, field),
                "only 0 is supported (success-rate ejection is not implemented)",
            ));
        }
    }
    let d = config::OutlierDetection::default();
    let dur = |field: &str, v: &Option<envoy_types::pb::google::protobuf::Duration>, default| {
        v.as_ref()
            .map_or(Ok(default), |v| super::duration(cx, &join(path, field), v))
    };
    let percent =
        |field: &str, v: Option<envoy_types::pb::google::protobuf::UInt32Value>, default| {
            let v = u32_or(v, default);
            if v > 100 {
                Err(cx.err(&join(path, field), "must be at most 100"))
            } else {
                Ok(v)
            }
        };
    let interval = dur("interval", &od.interval, d.interval)?;
    if interval.is_zero() {
        return Err(cx.err(&join(path, "interval"), "must be greater than 0"));
    }
    Ok(config::OutlierDetection {
        consecutive_5xx: u32_or(od.consecutive_5xx, d.consecutive_5xx),
        consecutive_gateway_failure: u32_or(
            od.consecutive_gateway_failure,
            d.consecutive_gateway_failure,
        ),
        consecutive_local_origin_failure: u32_or(
            od.consecutive_local_origin_failure,
            d.consecutive_local_origin_failure,
        ),
        split_external_local_origin_errors: od.split_external_local_origin_errors,
        interval,
        base_ejection_time: dur(
            "base_ejection_time",
            &od.base_ejection_time,
            d.base_ejection_time,
        )?,
        max_ejection_time: dur(
            "max_ejection_time",
            &od.max_ejection_time,
            d.max_ejection_time,
        )?,
        max_ejection_percent: percent(
            "max_ejection_percent",
            od.max_ejection_percent,
            d.max_ejection_percent,
        )?,
        enforcing_consecutive_5xx: percent(
            "enforcing_consecutive_5xx",
            od.enforcing_consecutive_5xx,
            d.enforcing_consecutive_5xx,
        )?,
        enforcing_consecutive_gateway_failure: percent(
            "enforcing_consecutive_gateway_failure",
            od.enforcing_consecutive_gateway_failure,
            d.enforcing_consecutive_gateway_failure,
        )?,
        enforcing_consecutive_local_origin_failure: percent(
            "enforcing_consecutive_local_origin_failure",
            od.enforcing_consecutive_local_origin_failure,
            d.enforcing_consecutive_local_origin_failure,
        )?,
    })
}

fn common_lb_config(
    cx: &Cx,
    common: &proto::cluster::CommonLbConfig,
    out: &mut config::Cluster,
) -> Result<(), ConvertError> {
    let path = "common_lb_config";
    reject_unsupported!(cx, path, common, proto::cluster::CommonLbConfig { healthy_panic_threshold, locality_config_specifier }
        unsupported { update_merge_window, ignore_new_hosts_until_first_hc, close_connections_on_host_set_change, consistent_hashing_lb_config, override_host_status });
    if let Some(p) = &common.healthy_panic_threshold {
        if !(0.0..=100.0).contains(&p.value) {
            return Err(cx.err(
                &join(path, "healthy_panic_threshold"),
                "must be within [0, 100]",
            ));
        }
        out.healthy_panic_threshold = p.value;
    }
    use proto::cluster::common_lb_config::LocalityConfigSpecifier as S;
    match &common.locality_config_specifier {
        None => {}
        Some(S::LocalityWeightedLbConfig(_)) => out.locality_weighted = true,
        Some(S::ZoneAwareLbConfig(_)) => {
            return Err(cx.unsupported_field(&join(path, "zone_aware_lb_config")));
        }
    }
    Ok(())
}

fn protocol_options(
    cx: &Cx,
    path: &str,
    o: &upstream_http::HttpProtocolOptions,
    out: &mut config::Cluster,
) -> Result<(), ConvertError> {
    reject_unsupported!(cx, path, o, upstream_http::HttpProtocolOptions { upstream_protocol_options, common_http_protocol_options }
        unsupported { upstream_http_protocol_options, http_filters, header_validation_config, outlier_detection, request_mirror_policies, hash_policy, retry_policy });
    if let Some(common) = &o.common_http_protocol_options {
        let path = join(path, "common_http_protocol_options");
        reject_unsupported!(cx, &path, common, core::HttpProtocolOptions { idle_timeout, max_requests_per_connection, max_connection_duration }
            unsupported { max_connection_duration_jitter, max_headers_count, max_response_headers_kb, max_stream_duration, headers_with_underscores_action });
        if let Some(d) = &common.idle_timeout {
            let d = super::duration(cx, &join(&path, "idle_timeout"), d)?;
            // Envoy: 0 disables the idle timeout.
            out.connection_pool.idle_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = &common.max_connection_duration {
            let d = super::duration(cx, &join(&path, "max_connection_duration"), d)?;
            out.connection_pool.max_connection_duration = (!d.is_zero()).then_some(d);
        }
        if let Some(n) = common.max_requests_per_connection {
            out.connection_pool.max_requests_per_connection = (n.value != 0).then_some(n.value);
        }
    }
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
            out.connection_pool.preserve_header_case =
                super::header_case::preserve_header_case(cx, &path, h1)?;
            out.protocol = config::UpstreamProtocol::Http1;
            Ok(())
        }
        Some(P::Http2ProtocolOptions(h2)) => {
            let path = join(&path, "http2_protocol_options");
            reject_unsupported!(cx, &path, h2, core::Http2ProtocolOptions { max_concurrent_streams }
                unsupported { hpack_table_size, initial_stream_window_size, initial_connection_window_size, allow_connect, allow_metadata, max_outbound_frames, max_outbound_control_frames, max_consecutive_inbound_frames_with_empty_payload, max_inbound_priority_frames_per_stream, max_inbound_window_update_frames_per_data_frame_sent, stream_error_on_invalid_http_messaging, override_stream_error_on_invalid_http_message, custom_settings_parameters, connection_keepalive, use_oghttp2_codec, max_metadata_size, enable_huffman_encoding, max_header_field_size_kb, disallow_obs_text, stream_reset_burst, stream_reset_rate });
            if let Some(n) = h2.max_concurrent_streams {
                if n.value == 0 {
                    return Err(
                        cx.err(&join(&path, "max_concurrent_streams"), "must be at least 1")
                    );
                }
                out.connection_pool.max_concurrent_streams = Some(n.value);
            }
            out.protocol = config::UpstreamProtocol::Http2;
            Ok(())
        }
        Some(P::Http3ProtocolOptions(_)) => {
            Err(cx.unsupported_field(&join(&path, "http3_protocol_options")))
        }
        None => Err(cx.missing(&join(&path, "http_protocol_options"))),
    }
}

#[cfg(test)]
mod tests;
